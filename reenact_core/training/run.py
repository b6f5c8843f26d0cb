"""One training run of any method: the loop, then (rank 0, unless interrupted) the export of the best (else last)
weights to ``<out>/export``; and the directions trainer's run and export."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .checkpoint import BEST_FILE, load_training_checkpoint
from .config import DirectionsTrainConfig, file_sha256
from .directions import DirectionsMethod
from .distributed import DistContext
from .export import export_directions
from .loop import CHECKPOINT_DIR, TrainResult, TrainingMethod, train

EXPORT_DIR = "export"


def run_method(method: TrainingMethod, out: str | Path, ctx: DistContext, resume: str | None,
               export: Callable[[Path, int], Sequence[Path]]) -> tuple[TrainResult, list[Path]]:
    """Trains ``method`` into ``out`` and, unless interrupted, calls ``export(out, last_step)`` on rank 0; every rank
    then meets at a barrier. Returns the loop's result and the exported files (empty on other ranks)."""
    result = train(method, out, ctx, resume)
    exported: list[Path] = []
    if ctx.is_main and not result.interrupted:
        exported = list(export(Path(out), result.step))
    ctx.barrier()
    return result, exported


def best_state(out: Path) -> dict | None:
    """The best checkpoint's state (by validation) in ``out``, or None when no validation has saved one."""
    best = out / CHECKPOINT_DIR / BEST_FILE
    return load_training_checkpoint(best) if best.is_file() else None


def provenance(trained: TrainingMethod, trainer: str, /, **extra) -> dict:
    """An export's provenance: the command that trained it, ``extra`` fields, the weight files it was trained
    with (name and SHA-256 each) and whether those were random."""
    return {"trainer": trainer, **extra,
            "weights": {role: {"file": Path(p).name, "sha256": file_sha256(p)}
                        for role, p in trained.weight_files().items()},
            "random_weights": trained.nets.random_weights}


def default_name(files: dict) -> str:
    """An export's default name: the generator file's stem without ``stylegan2-``."""
    return files["generator"].stem.replace("stylegan2-", "")


def run_directions_training(config: DirectionsTrainConfig, folders: Sequence[Path], generator: str | None,
                            out: str | Path, ctx: DistContext, resume: str | None = None,
                            name: str | None = None) -> tuple[TrainResult, list[Path]]:
    """Trains A as ``config`` says and, unless interrupted, exports it (rank 0); returns the written files."""
    from .networks import build_networks

    nets = build_networks(config, folders, generator, ctx.device)
    method = DirectionsMethod(config, nets, ctx)
    return run_method(method, out, ctx, resume,
                      lambda folder, step: export_run(method, folder, name or default_name(nets.files), step))


def export_run(method: DirectionsMethod, out: Path, name: str, step: int) -> tuple[Path, Path]:
    """Exports the best checkpoint's A (by validation) or, without one, the current A (``step``), to
    ``out/export``."""
    directions = method.directions
    state = best_state(out)
    if state is not None:
        directions = type(directions)(directions.config)
        directions.load_state_dict(state["model"])
        step = state["step"]
    return export_directions(directions, method.config, out / EXPORT_DIR, name, step,
                             provenance(method, "python -m reenact_core train directions",
                                        method=method.config.method))
