"""Valid model files with random weights, for tests and the self-check (never presented as results)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from ..files import read_safetensors
from ..models.fsr import randomise_output
from ..models.kind import INFERENCE
from .identity import with_identity
from .kinds import kind as get_kind, kind_names
from .store import save_model

# A consistent set of tiny architectures (one W+ width shared by G, e4e and A; 256-px images as the method's
# real crops), small enough to build, save and run in well under a second each. A kind without an entry here
# has no tiny form and is built with its default config.
TINY_CONFIGS: dict[str, dict] = {
    "stylegan2": {"size": 256, "style_dim": 32, "n_mlp": 2, "channels": [32, 32, 32, 32, 16, 16, 8]},
    "e4e": {"size": 256, "input_size": 256, "style_dim": 32, "widths": [8, 16, 24, 32], "units": [1, 1, 1, 1],
            "se_reduction": 4},
    "deca": {"base_width": 8, "blocks": [1, 1, 1, 1], "hidden": 32},
    "directions": {"shift_dim": 32},
    "fsr": {"layer": 4, "feature_channels": 32, "feature_size": 16, "widths": [8, 16, 24], "units": [1, 1, 1],
            "se_reduction": 4, "head_width": 16},
    "arcface": {"widths": [8, 16, 24, 32], "units": [1, 1, 1, 1], "se_reduction": 4, "embedding_dim": 16},
    "flame": {"n_shape": 10, "n_exp": 10, "n_vertices": 60, "n_faces": 40},
}


def tiny_config(kind_name: str):
    """The tiny architecture of ``kind_name`` (see TINY_CONFIGS; the default config for kinds without one)."""
    return get_kind(kind_name).config_from_dict(TINY_CONFIGS.get(kind_name, {}))


def has_random_weights(metadata: dict[str, str]) -> bool:
    """Whether a model file's metadata marks it as a random-weight test file (``random_weights: true``)."""
    return metadata.get("random_weights") == "true"


def make_random_checkpoint(kind_name: str, config, path: str | Path, seed: int = 0) -> Path:
    """Write a model file of ``kind_name`` with architecture ``config`` and seeded random weights.

    Use tiny configs (``tiny_config``): a full-size e4e is ~840 MB. The metadata says ``random_weights: true``.
    """
    k = get_kind(kind_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = k.build(config).eval()
    with torch.no_grad():
        extra = k.extra_tensors(model, config, seed)
    return save_model(path, kind_name, config, model.state_dict(), extra_tensors=extra,
                      metadata={"random_weights": "true", "seed": str(seed)})


def make_random_fsr(path: str | Path, generator_path: str | Path, config=None, seed: int = 0) -> Path:
    """Write an FSR file with seeded random weights for the generator file ``generator_path`` (its identity in
    the metadata). Unlike a new E_F, its last layer is random too, so that it changes images; ``config``
    defaults to the tiny one. The metadata says ``random_weights: true``."""
    k = get_kind("fsr")
    config = config or tiny_config("fsr")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = k.build(config).eval()
    randomise_output(model, seed)
    generator, _ = read_safetensors(Path(generator_path))
    metadata = with_identity({"random_weights": "true", "seed": str(seed)}, generator)
    return save_model(path, "fsr", config, model.state_dict(), metadata=metadata)


def make_tiny_model_set(folder: str | Path, seed: int = 0, kinds: Iterable[str] | None = None) -> dict[str, Path]:
    """Write one tiny random model file per kind under its canonical name in ``folder``.

    Args:
        kinds: the kinds to write; by default the inference set (the kinds whose role is ``inference``), so
            registering training or optional kinds never changes what callers get by default. ``"fsr"`` is made
            for the generator of ``folder`` (written first when also asked for).

    Returns:
        kind name → path written.
    """
    folder = Path(folder)
    order = kind_names()   # each kind's seed offset is its registry position, whatever else is written
    names = kind_names(INFERENCE) if kinds is None else tuple(kinds)
    paths = {name: make_random_checkpoint(name, tiny_config(name), folder / get_kind(name).canonical_file,
                                          seed + order.index(get_kind(name).name))
             for name in names if name != "fsr"}
    if "fsr" in names:
        paths["fsr"] = make_random_fsr(folder / get_kind("fsr").canonical_file,
                                       folder / get_kind("stylegan2").canonical_file, seed=seed + order.index("fsr"))
    return paths
