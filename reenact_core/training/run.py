"""One directions training run: networks from files, the loop, and the export of the best (else last) A."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .checkpoint import BEST_FILE, load_training_checkpoint
from .config import DirectionsTrainConfig, file_sha256
from .directions import DirectionsMethod
from .distributed import DistContext
from .export import export_directions
from .loop import CHECKPOINT_DIR, TrainResult, train

EXPORT_DIR = "export"


def run_directions_training(config: DirectionsTrainConfig, folders: Sequence[Path], generator: str | None,
                            out: str | Path, ctx: DistContext, resume: str | None = None,
                            name: str | None = None) -> tuple[TrainResult, list[Path]]:
    """Trains A as ``config`` says and, unless interrupted, exports it (rank 0); returns the written files."""
    from .networks import build_networks

    nets = build_networks(config, folders, generator, ctx.device)
    method = DirectionsMethod(config, nets, ctx)
    result = train(method, out, ctx, resume)
    exported: list[Path] = []
    if ctx.is_main and not result.interrupted:
        exported = list(export_run(method, Path(out), name or nets.files["generator"].stem.replace("stylegan2-", ""),
                                   result.step))
    ctx.barrier()
    return result, exported


def export_run(method: DirectionsMethod, out: Path, name: str, step: int) -> tuple[Path, Path]:
    """Exports the best checkpoint's A (by validation) or, without one, the current A (``step``), to
    ``out/export``."""
    best = out / CHECKPOINT_DIR / BEST_FILE
    directions = method.directions
    if best.is_file():
        state = load_training_checkpoint(best)
        directions = type(directions)(directions.config)
        directions.load_state_dict(state["model"])
        step = state["step"]
    files = method.weight_files()
    provenance = {"trainer": "python -m reenact_core train directions", "method": method.config.method,
                  "weights": {role: {"file": Path(p).name, "sha256": file_sha256(p)} for role, p in files.items()},
                  "random_weights": method.nets.random_weights}
    return export_directions(directions, method.config, out / EXPORT_DIR, name, step, provenance)
