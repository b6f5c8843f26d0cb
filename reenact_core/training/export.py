"""Export of a trained A: ``directions-*.safetensors`` (engine and ComfyUI loader) and an official-layout
``A_matrix.pt`` (reference spec §2.4, with the ``shift_dim`` the official trainer forgets, §5 #12)."""
from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write
from ..models.directions import DirectionMatrix
from ..weights.official import write_official
from ..weights.store import save_model
from .config import DirectionsTrainConfig

OFFICIAL_FILE = "A_matrix.pt"


def export_directions(directions: DirectionMatrix, config: DirectionsTrainConfig, folder: str | Path, name: str,
                      step: int, provenance: dict) -> tuple[Path, Path]:
    """Writes ``folder/directions-<name>.safetensors`` and ``folder/A_matrix.pt``; returns both paths.

    The file's config holds A's normaliser; its metadata ``provenance`` (JSON: method, step, training config,
    weight files and hashes), and ``random_weights: true`` when the networks trained with were random.
    """
    folder = Path(folder)
    state = {k: v.detach().cpu() for k, v in directions.state_dict().items()}
    a = directions.config
    metadata = {"provenance": json.dumps({**provenance, "step": step, "config": config.to_dict()}, sort_keys=True)}
    if provenance.get("random_weights"):
        metadata["random_weights"] = "true"
    path = save_model(folder / f"directions-{name}.safetensors", "directions", a, state, metadata=metadata)
    official = atomic_write(folder / OFFICIAL_FILE, lambda tmp: write_official(tmp, "directions", state, extras={
        "learned_directions": a.input_dim, "shift_scale": float(a.shift_scale), "w_plus": True,
        "num_layers_shift": a.num_layers, "shift_dim": a.shift_dim, "step": step}))
    return path, official
