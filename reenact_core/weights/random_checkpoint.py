"""Valid model files with random weights, for tests and the self-check (never presented as results)."""
from __future__ import annotations

from pathlib import Path

import torch

from .kinds import INFERENCE_KINDS, KINDS, kind as get_kind
from .store import MEAN_LATENT_KEY, save_model

RANDOM_MEAN_LATENT_SAMPLES = 512

# A consistent set of tiny architectures (one W+ width shared by G, e4e and A; 256-px images as the method's
# real crops), small enough to build, save and run in well under a second each.
TINY_CONFIGS: dict[str, dict] = {
    "stylegan2": {"size": 256, "style_dim": 32, "n_mlp": 2, "channels": [32, 32, 32, 32, 16, 16, 8]},
    "e4e": {"size": 256, "input_size": 256, "style_dim": 32, "widths": [8, 16, 24, 32], "units": [1, 1, 1, 1],
            "se_reduction": 4},
    "deca": {"base_width": 8, "blocks": [1, 1, 1, 1], "hidden": 32},
    "directions": {"shift_dim": 32},
    "fsr": {"layer": 4, "feature_channels": 32, "feature_size": 16, "widths": [8, 16, 24], "units": [1, 1, 1],
            "se_reduction": 4, "head_width": 16},
}


def tiny_config(kind_name: str):
    """The tiny architecture of ``kind_name`` (see TINY_CONFIGS)."""
    return get_kind(kind_name).config_from_dict(TINY_CONFIGS[kind_name])


def make_random_checkpoint(kind_name: str, config, path: str | Path, seed: int = 0) -> Path:
    """Write a model file of ``kind_name`` with architecture ``config`` and seeded random weights.

    Use tiny configs (``tiny_config``): a full-size e4e is ~840 MB. The metadata says ``random_weights: true``.
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


def make_random_fsr(path: str | Path, generator_path: str | Path, config=None, seed: int = 0) -> Path:
    """Write an FSR file with random weights (its last layer too, so it changes images) for the generator file
    ``generator_path``; ``config`` defaults to the tiny one."""
    from ..models.fsr import randomise_output
    from .identity import with_identity
    from .store import _read_tensors

    k = get_kind("fsr")
    config = config or tiny_config("fsr")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = k.build(config).eval()
    randomise_output(model, seed)
    metadata = with_identity({"random_weights": "true", "seed": str(seed)}, _read_tensors(Path(generator_path)))
    return save_model(path, "fsr", config, model.state_dict(), metadata=metadata)


def make_tiny_model_set(folder: str | Path, seed: int = 0, fsr: bool = False) -> dict[str, Path]:
    """Write one tiny random model file of every inference kind under its canonical name in ``folder``; with
    ``fsr`` also a random FSR file for that generator."""
    folder = Path(folder)
    paths = {name: make_random_checkpoint(name, tiny_config(name), folder / k.canonical_file, seed + i)
             for i, (name, k) in enumerate(KINDS.items()) if name in INFERENCE_KINDS}
    if fsr:
        paths["fsr"] = make_random_fsr(folder / KINDS["fsr"].canonical_file, paths["stylegan2"], seed=seed)
    return paths
