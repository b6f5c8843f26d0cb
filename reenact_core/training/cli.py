"""``python -m reenact_core train directions|joint|fsr ...``: options generated from each trainer's config dataclass
(each setting is declared once, in its config), the run under torchrun or alone, and the export."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .config import BATCH_NORM_MODES, DirectionsTrainConfig, TrainConfig, field_help, read_config_file
from .fsr import FSRTrainConfig
from .joint import CYCLES, JointTrainConfig

METHODS = DirectionsTrainConfig.METHODS
CHOICES = {"method": METHODS, "cycle": CYCLES, "batch_norm": BATCH_NORM_MODES}


def add_train_parser(sub, folders: Callable[[argparse.Namespace], list], device: Callable[[str], str],
                     threads: Callable[[argparse.ArgumentParser], None]) -> None:
    """Adds ``train`` (with its ``directions``, ``joint`` and ``fsr`` sub-commands) to the top-level sub-parsers.

    Args:
        folders: parsed arguments → the model folders to search (``--models``, $REENACT_MODELS, default).
        device: a ``--device`` value → the torch device name (``auto`` resolved).
        threads: adds the ``--threads`` option to a parser (the command line applies it).
    """
    train = sub.add_parser("train", help="train directions A, the encoder E_w jointly with A, or the FSR encoder "
                                         "E_F for a StyleGAN2 (torchrun for several processes)",
                           description="Training. Runs alone or under torchrun --nproc_per_node=N.")
    kinds = train.add_subparsers(dest="trainer", required=True)
    p = kinds.add_parser("directions", help="train A (synthetic, real, real_synthetic or paired)",
                         description="Train the directions matrix A for any StyleGAN2 (reference hyper-parameters "
                                     "by default). Settings: --config FILE (JSON), then the options below.")
    _add_run_options(p, threads, DirectionsTrainConfig, "directions-NAME.safetensors",
                     "20 steps of each method on tiny random networks and data it makes (no files needed)")
    p.set_defaults(run=partial(run_directions, folders=folders, device=device))
    p = kinds.add_parser("joint", help="train the encoder E_w jointly with A (cycle loss): no per-source tuning",
                         description="Train E_w (from an e4e file) and A (--init-directions, or fresh) together on "
                                     "paired frames of prepared videos, with the cycle loss (training-and-fsr §1.5 "
                                     "Stage J); the exported pair needs no per-source generator tuning. Settings: "
                                     "--config FILE (JSON), then the options below.")
    p.add_argument("--encoder", help="e4e .safetensors E_w starts from (default: the canonical file)")
    _add_run_options(p, threads, JointTrainConfig, "e4e-NAME.safetensors and directions-NAME.safetensors",
                     "20 steps of each cycle variant on tiny random networks and data it makes (no files needed)")
    p.set_defaults(run=partial(run_joint, folders=folders, device=device))
    p = kinds.add_parser("fsr", help="train the feature-space refinement encoder E_F (G, E_w, A frozen)",
                         description="Train E_F, which shifts one generator feature to restore hair and background, "
                                     "on prepared paired frames (training-and-fsr §1.5 Stage F). Settings: --config "
                                     "FILE (JSON), then the options below.")
    p.add_argument("--directions", help="directions .safetensors of A, frozen (default: the canonical file)")
    _add_run_options(p, threads, FSRTrainConfig, "fsr-NAME.safetensors",
                     "20 steps on tiny random networks and data it makes (no files needed)")
    p.set_defaults(run=partial(run_fsr, folders=folders, device=device))


def _add_run_options(p: argparse.ArgumentParser, threads: Callable[[argparse.ArgumentParser], None],
                     config_class: type[TrainConfig], export: str, self_check: str) -> None:
    threads(p)
    p.add_argument("--out", help="run folder: train-config.json, checkpoints/, logs/, export/")
    p.add_argument("--config", help="JSON file of settings (a saved train-config.json works)")
    p.add_argument("--resume", nargs="?", const="", metavar="CHECKPOINT",
                   help="continue bit for bit from a checkpoint (default: the run folder's latest)")
    p.add_argument("--models", action="append", metavar="DIR",
                   help="folder with the model files (repeatable; default models/reenact, $REENACT_MODELS)")
    p.add_argument("--generator", help="StyleGAN2 .safetensors to train for (default: the canonical file)")
    p.add_argument("--name", help=f"export name: {export} (default: generator file stem)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (under torchrun: cpu or cuda)")
    p.add_argument("--self-check", action="store_true", help=self_check)
    helps = field_help(config_class)
    for f in dataclasses.fields(config_class):
        choices = CHOICES.get(f.name)
        p.add_argument("--" + f.name.replace("_", "-"), dest=f"set_{f.name}", default=None, choices=choices,
                       metavar=None if choices else f.name.upper(),
                       help=f"{helps[f.name]} (default {f.default!r})".replace("%", "%%"))
    p.set_defaults(config_class=config_class)


def settings(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then the options given."""
    overrides = read_config_file(args.config) if args.config else {}
    overrides.update({k[4:]: v for k, v in vars(args).items() if k.startswith("set_") and v is not None})
    return getattr(args, "config_class", DirectionsTrainConfig).from_dict(overrides)


def run_directions(args: argparse.Namespace, folders: Callable, device: Callable) -> int:
    from .run import run_directions_training
    from .selfcheck import directions_self_check

    return _run(args, device, directions_self_check, lambda config, resume, ctx: run_directions_training(
        config, folders(args), args.generator, args.out, ctx, resume, args.name))


def run_joint(args: argparse.Namespace, folders: Callable, device: Callable) -> int:
    from .joint_run import joint_self_check, run_joint_training

    return _run(args, device, joint_self_check, lambda config, resume, ctx: run_joint_training(
        config, folders(args), args.generator, args.encoder, args.out, ctx, resume, args.name))


def run_fsr(args: argparse.Namespace, folders: Callable, device: Callable) -> int:
    from .fsr_run import fsr_self_check, run_fsr_training

    return _run(args, device, fsr_self_check, lambda config, resume, ctx: run_fsr_training(
        config, folders(args), args.generator, args.directions, args.out, ctx, resume, args.name))


def _run(args: argparse.Namespace, device: Callable, self_check, run) -> int:
    """The self-check, or the settings, the run and its export (printed), under torchrun or alone."""
    from ..errors import InputError
    from .distributed import from_environment

    ctx = from_environment(device(args.device))
    try:
        if args.self_check:
            for line in self_check(ctx):
                if ctx.is_main:
                    print(line)
            ctx.barrier()   # every rank done before the group is torn down (gloo may abort a rank otherwise)
            return 0
        if not args.out:
            raise InputError(f"train {args.trainer} needs --out RUN_FOLDER (or --self-check)")
        config = settings(args)
        resume = None if args.resume is None else (args.resume or str(Path(args.out) / "checkpoints"))
        result, exported = run(config, resume, ctx)
        if ctx.is_main:
            for path in exported:
                print(f"wrote {path}")
        return 130 if result.interrupted else 0
    finally:
        ctx.close()
