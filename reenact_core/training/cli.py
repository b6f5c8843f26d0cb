"""``python -m reenact_core train directions ...``: options generated from the config dataclass (each setting is
declared once, in :mod:`.config`), the run under torchrun or alone, and the export."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .config import DirectionsTrainConfig, field_help, read_config_file

METHODS = DirectionsTrainConfig.METHODS


def add_train_parser(sub, folders: Callable[[argparse.Namespace], list], device: Callable[[str], str]) -> None:
    """Adds ``train`` (with its ``directions`` sub-command) to the top-level sub-parsers.

    Args:
        folders: parsed arguments → the model folders to search (``--models``, $REENACT_MODELS, default).
        device: a ``--device`` value → the torch device name (``auto`` resolved).
    """
    train = sub.add_parser("train", help="train directions A for a StyleGAN2 (torchrun for several processes)",
                           description="Training. Runs alone or under torchrun --nproc_per_node=N.")
    kinds = train.add_subparsers(dest="trainer", required=True)
    p = kinds.add_parser("directions", help="train A (synthetic, real, real_synthetic or paired)",
                         description="Train the directions matrix A for any StyleGAN2 (reference hyper-parameters "
                                     "by default). Settings: --config FILE (JSON), then the options below.")
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
                   help="20 steps of each method on tiny random networks and data it makes (no files needed)")
    helps = field_help(DirectionsTrainConfig)
    for f in dataclasses.fields(DirectionsTrainConfig):
        choices = METHODS if f.name == "method" else None
        p.add_argument("--" + f.name.replace("_", "-"), dest=f"set_{f.name}", default=None, choices=choices,
                       metavar=None if choices else f.name.upper(),
                       help=f"{helps[f.name]} (default {f.default!r})".replace("%", "%%"))
    p.set_defaults(run=partial(run_directions, folders=folders, device=device))


def settings(args: argparse.Namespace) -> DirectionsTrainConfig:
    """Defaults, then the --config file, then the options given."""
    overrides = read_config_file(args.config) if args.config else {}
    overrides.update({k[4:]: v for k, v in vars(args).items() if k.startswith("set_") and v is not None})
    return DirectionsTrainConfig.from_dict(overrides)


def run_directions(args: argparse.Namespace, folders: Callable, device: Callable) -> int:
    from ..errors import InputError
    from .distributed import from_environment
    from .run import run_directions_training

    ctx = from_environment(device(args.device))
    try:
        if args.self_check:
            from .selfcheck import directions_self_check
            for line in directions_self_check(ctx):
                if ctx.is_main:
                    print(line)
            return 0
        if not args.out:
            raise InputError("train directions needs --out RUN_FOLDER (or --self-check)")
        config = settings(args)
        resume = None if args.resume is None else (args.resume or str(Path(args.out) / "checkpoints"))
        result, exported = run_directions_training(config, folders(args), args.generator, args.out, ctx,
                                                   resume, args.name)
        if ctx.is_main:
            for path in exported:
                print(f"wrote {path}")
        return 130 if result.interrupted else 0
    finally:
        ctx.close()
