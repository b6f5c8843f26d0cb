"""``python -m reenact_core train directions ...``: options generated from the config dataclass (each setting is
declared once, in :mod:`.config`), the run under torchrun or alone, and the export."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .config import DirectionsTrainConfig, field_help, read_config_file

def add_train_parser(sub) -> None:
    """Adds ``train`` (with its ``directions`` and ``joint`` sub-commands) to the top-level sub-parsers."""
    from .joint import JointTrainConfig

    train = sub.add_parser("train", help="train directions A, or E_w and A jointly (torchrun for several processes)",
                           description="Training. Runs alone or under torchrun --nproc_per_node=N.")
    kinds = train.add_subparsers(dest="trainer", required=True)
    p = kinds.add_parser("directions", help="train A (synthetic, real, real_synthetic or paired)",
                         description="Train the directions matrix A for any StyleGAN2 (reference hyper-parameters "
                                     "by default). Settings: --config FILE (JSON), then the options below.")
    _add_run_options(p, DirectionsTrainConfig, "20 steps of each method")
    p.set_defaults(run=run_training, config_class=DirectionsTrainConfig)
    j = kinds.add_parser("joint", help="train the encoder E_w jointly with A (cycle loss): no per-source tuning",
                         description="Train E_w (from an e4e file) and A (--init-directions, or fresh) "
                                     "together on paired frames of prepared videos, with the cycle loss. The "
                                     "exported pair needs no per-source generator tuning. Settings: --config FILE "
                                     "(JSON), then the options below.")
    j.add_argument("--encoder", help="e4e .safetensors to start E_w from (default: the canonical file)")
    _add_run_options(j, JointTrainConfig, "20 steps of each cycle variant")
    j.set_defaults(run=run_training, config_class=JointTrainConfig)


def _add_run_options(p: argparse.ArgumentParser, config_class: type, self_check: str) -> None:
    """The options every trainer shares, then one per field of ``config_class``."""
    p.add_argument("--out", help="run folder: train-config.json, checkpoints/, logs/, export/")
    p.add_argument("--config", help="JSON file of settings (a saved train-config.json works)")
    p.add_argument("--resume", nargs="?", const="", metavar="CHECKPOINT",
                   help="continue bit for bit from a checkpoint (default: the run folder's latest)")
    p.add_argument("--models", action="append", metavar="DIR",
                   help="folder with the model files (repeatable; default models/reenact, $REENACT_MODELS)")
    p.add_argument("--generator", help="StyleGAN2 .safetensors to train for (default: the canonical file)")
    p.add_argument("--name", help="export name: directions-NAME.safetensors (default: generator file stem)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (under torchrun: cpu or cuda)")
    p.add_argument("--self-check", action="store_true",
                   help=f"{self_check} on tiny random networks and data it makes (no files needed)")
    helps = field_help(config_class)
    for f in dataclasses.fields(config_class):
        choices = config_class.METHODS if f.name == "method" else None
        p.add_argument("--" + f.name.replace("_", "-"), dest=f"set_{f.name}", default=None, choices=choices,
                       metavar=None if choices else f.name.upper(),
                       help=f"{helps[f.name]} (default {f.default!r})".replace("%", "%%"))


def settings(args: argparse.Namespace) -> DirectionsTrainConfig:
    """Defaults, then the --config file, then the options given."""
    overrides = read_config_file(args.config) if args.config else {}
    overrides.update({k[4:]: v for k, v in vars(args).items() if k.startswith("set_") and v is not None})
    return args.config_class.from_dict(overrides)


def run_training(args: argparse.Namespace) -> int:
    """``train directions`` or ``train joint`` (``args.trainer``): the self-check, or a run and its export."""
    from ..cli import _device, model_folders
    from ..errors import InputError
    from .distributed import from_environment

    ctx = from_environment(_device(args.device))
    try:
        if args.self_check:
            if args.trainer == "joint":
                from .joint_run import joint_self_check as self_check
            else:
                from .selfcheck import directions_self_check as self_check
            for line in self_check(ctx):
                if ctx.is_main:
                    print(line)
            return 0
        if not args.out:
            raise InputError(f"train {args.trainer} needs --out RUN_FOLDER (or --self-check)")
        config = settings(args)
        resume = None if args.resume is None else (args.resume or str(Path(args.out) / "checkpoints"))
        if args.trainer == "joint":
            from .joint_run import run_joint_training
            result, exported = run_joint_training(config, model_folders(args), args.generator, args.encoder,
                                                  args.out, ctx, resume, args.name)
        else:
            from .run import run_directions_training
            result, exported = run_directions_training(config, model_folders(args), args.generator, args.out, ctx,
                                                       resume, args.name)
        if ctx.is_main:
            for path in exported:
                print(f"wrote {path}")
        return 130 if result.interrupted else 0
    finally:
        ctx.close()
