"""Valid model files with random weights, for tests and the self-check (never presented as results)."""
from __future__ import annotations

from pathlib import Path

import torch

from .kinds import kind as get_kind
from .store import MEAN_LATENT_KEY, save_model

RANDOM_MEAN_LATENT_SAMPLES = 512


def make_random_checkpoint(kind_name: str, config, path: str | Path, seed: int = 0) -> Path:
    """Write a model file of ``kind_name`` with architecture ``config`` and seeded random weights.

    Use tiny configs: a full-size e4e is ~840 MB. The file's metadata says ``random_weights: true``.
    """
    k = get_kind(kind_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = k.build(config).eval()
    extra = {}
    if kind_name == "stylegan2":
        with torch.no_grad():
            extra[MEAN_LATENT_KEY] = model.mean_latent(RANDOM_MEAN_LATENT_SAMPLES, seed)
    return save_model(path, kind_name, config, model.state_dict(), extra_tensors=extra,
                      metadata={"random_weights": "true", "seed": str(seed)})
