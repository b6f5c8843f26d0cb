"""Training checkpoints: atomic writes, ``torch.load(weights_only=True)``-safe contents, last N + best kept.

A checkpoint holds plain containers and tensors only: the trainable module's and the optimiser's state, the
step, epoch and batches done in that epoch, every RNG state (Python, NumPy as ints/tensors, torch CPU and CUDA),
the config dict and the best validation score so far.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, WeightsError
from ..files import atomic_write
from ..weights.safe_load import load_checkpoint

FORMAT = "latent-reenact-training"
PERIODIC = re.compile(r"^step-(\d{8})\.pt$")
BEST_FILE = "best.pt"


def periodic_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def rng_states() -> dict[str, Any]:
    """Every global RNG state as tensors and ints (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores what :func:`rng_states` captured (CUDA states only where devices exist)."""
    py = states["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"][:torch.cuda.device_count()])


def save_atomic(obj: dict, path: Path) -> Path:
    """``torch.save`` through :func:`reenact_core.files.atomic_write`: a reader never sees half a file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(folder: Path, state: dict, keep_last: int, best: bool) -> Path:
    """Writes ``step-NNNNNNNN.pt`` (and ``best.pt`` when ``best``), then deletes all but the last ``keep_last``."""
    state = {"format": FORMAT, **state}
    path = save_atomic(state, folder / periodic_name(state["step"]))
    if best:
        save_atomic(state, folder / BEST_FILE)
    for old in periodic_checkpoints(folder)[:-keep_last]:
        old.unlink()
    return path


def periodic_checkpoints(folder: Path) -> list[Path]:
    """Periodic checkpoints in ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if PERIODIC.match(p.name)), key=lambda p: p.name)


def load_training_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, or a folder's latest; one-line errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no checkpoint to resume from: {path} does not exist")
    if path.is_dir():
        found = periodic_checkpoints(path)
        if not found:
            raise InputError(f"no checkpoint (step-*.pt) to resume from in {path}")
        path = found[-1]
    state = load_checkpoint(path)
    if state.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a training checkpoint of this project (format "
                           f"{state.get('format')!r}); export files and official A_matrix.pt cannot be resumed")
    return state
