"""`python -m reenact_core convert SRC DST`: official checkpoint → our `.safetensors` model file."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..errors import WeightsError
from .kinds import kind as get_kind
from .official import OfficialCheckpoint, read_official
from .store import MEAN_LATENT_KEY, check_state_dict_shapes, save_model

# Truncation centre of converted generators without a stored w_avg: mean of mapping(z) over this many z
# drawn from a CPU generator with this seed (the official code draws 4096 unseeded; reference-method §5 #10).
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0


def convert(src: str | Path, dst: str | Path, expected_kind: str | None = None,
            landmarks: str | Path | None = None) -> Path:
    """Convert an official checkpoint to a model file and return its path.

    The architecture is inferred from the tensor shapes; every key and shape is checked strictly (only the
    constant blur/upsample kernels may be missing, and are rebuilt). ``dst`` may be a folder (existing, or
    ending in a path separator): the canonical file name is then used. ``expected_kind`` refuses other kinds.
    FLAME's ``generic_model.pkl`` needs ``landmarks``, DECA's ``landmark_embedding.npy`` (both read through an
    allow-list unpickler).
    """
    src = Path(src)
    if src.suffix == ".pkl" or landmarks is not None:
        return _convert_flame(src, Path(dst), landmarks, expected_kind)
    official = read_official(src)
    if expected_kind is not None and official.kind != expected_kind:
        raise WeightsError(f"{src.name}: holds a {get_kind(official.kind).title} ({official.layout}), "
                           f"not a {get_kind(expected_kind).title}")
    k = get_kind(official.kind)
    try:
        config = _config(official)
    except WeightsError as exc:
        raise WeightsError(f"{src.name}: {exc}") from None
    state_dict = dict(official.state_dict)
    if official.kind == "e4e" and official.latent_avg is not None:
        state_dict["latent_avg"] = official.latent_avg.reshape(config.n_styles, config.style_dim) \
            if official.latent_avg.numel() == config.n_styles * config.style_dim else official.latent_avg
    with torch.device("meta"):
        reference = k.build(config)
    expected = {name: tuple(t.shape) for name, t in reference.state_dict().items()}
    check_state_dict_shapes(src.name, expected, {n: tuple(t.shape) for n, t in state_dict.items()},
                            may_lack=k.rebuilt_buffer_suffixes())
    model = None
    if any(name not in state_dict for name in expected):
        model = k.build(config)      # constructed values of the constant buffers the file lacks
        state_dict.update({n: t for n, t in model.state_dict().items() if n not in state_dict})
    state_dict = {n: state_dict[n].to(torch.float32) if state_dict[n].is_floating_point() else state_dict[n]
                  for n in expected}
    _check_finite(src, state_dict)

    extra, metadata = {}, {"source_file": src.name, "source_layout": official.layout}
    if official.kind == "e4e":
        metadata["adds_latent_avg"] = str(official.latent_avg is not None).lower()
    if official.kind == "stylegan2":
        extra[MEAN_LATENT_KEY], metadata["mean_latent"] = _mean_latent(official, config, state_dict, model, k)

    return save_model(_destination(Path(dst), official, config, k.canonical_file), official.kind, config,
                      state_dict, extra_tensors=extra, metadata=metadata)


def _convert_flame(src: Path, dst: Path, landmarks: str | Path | None, expected_kind: str | None) -> Path:
    from ..models.flame import config_from_state_dict
    from .flame_files import LANDMARKS_SITE, flame_state_dict

    if expected_kind not in (None, "flame"):
        raise WeightsError(f"{src.name}: a FLAME model file, not a {get_kind(expected_kind).title}")
    if landmarks is None:
        raise WeightsError(f"{src.name}: FLAME needs DECA's landmark file too: add --landmarks "
                           f"landmark_embedding.npy (from {LANDMARKS_SITE})")
    if src.suffix != ".pkl":
        raise WeightsError(f"{src.name}: --landmarks goes with FLAME's generic_model.pkl")
    state_dict = flame_state_dict(src, landmarks)
    config = config_from_state_dict(state_dict)
    _check_finite(src, state_dict)
    k = get_kind("flame")
    target = dst / k.canonical_file if _is_folder(dst) else dst
    return save_model(target, "flame", config, state_dict,
                      metadata={"source_file": src.name, "landmarks_file": Path(landmarks).name,
                                "source_layout": "FLAME generic_model.pkl + DECA landmark_embedding.npy"})


def _config(official: OfficialCheckpoint):
    k = get_kind(official.kind)
    if official.kind == "directions":
        return _directions_config(official.state_dict, official.extras)
    config = k.config_from_state_dict(official.state_dict)
    if official.kind == "e4e" and official.latent_avg is not None:
        config = dataclasses.replace(config, add_latent_avg=True)
    return config


def _directions_config(state_dict, extras: dict):
    """A's architecture from its shapes and A_matrix.pt's scalars (a self-trained file may lack shift_dim)."""
    from ..models.directions import DEFAULT_SHIFT_DIM, config_from_state_dict

    if extras.get("w_plus", True) is not True:
        raise WeightsError("w_plus=False (a shift of W, not W+) is not supported")
    config = config_from_state_dict(state_dict, shift_dim=int(extras.get("shift_dim", DEFAULT_SHIFT_DIM)))
    if "num_layers_shift" in extras and int(extras["num_layers_shift"]) != config.num_layers:
        raise WeightsError(f"num_layers_shift={extras['num_layers_shift']} does not match the "
                           f"{config.num_layers * config.shift_dim} outputs of the linear layer")
    if "learned_directions" in extras and int(extras["learned_directions"]) != config.input_dim:
        raise WeightsError(f"learned_directions={extras['learned_directions']} but the linear layer "
                           f"takes {config.input_dim} inputs")
    return dataclasses.replace(config, shift_scale=float(extras.get("shift_scale", config.shift_scale)))


def _mean_latent(official: OfficialCheckpoint, config, state_dict, model, k) -> tuple[torch.Tensor, str]:
    if official.latent_avg is not None:
        if official.latent_avg.numel() != config.style_dim:
            raise WeightsError(f"latent_avg has shape {tuple(official.latent_avg.shape)}, expected [{config.style_dim}]")
        return official.latent_avg.reshape(1, config.style_dim).to(torch.float32), "checkpoint latent_avg"
    model = model or k.build(config)
    model.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        w_bar = model.mean_latent(MEAN_LATENT_SAMPLES, MEAN_LATENT_SEED)
    return w_bar, f"mean of mapping(z) over {MEAN_LATENT_SAMPLES} z, CPU generator seed {MEAN_LATENT_SEED}"


def _check_finite(src: Path, state_dict: dict[str, torch.Tensor]) -> None:
    bad = [n for n, t in state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise WeightsError(f"{src.name}: non-finite values (NaN/Inf) in {', '.join(bad[:4])}")


def _destination(dst: Path, official: OfficialCheckpoint, config, canonical: str) -> Path:
    if not _is_folder(dst):
        return dst
    return dst / canonical_file_name(official, config, canonical)


def _is_folder(dst: Path) -> bool:
    """An existing folder, or a path ending in a separator."""
    return dst.is_dir() or str(dst).endswith(("/", "\\"))


def canonical_file_name(official: OfficialCheckpoint, config, default: str) -> str:
    """The file name the loaders look for: the method's VoxCeleb files get the names in KINDS; others say
    what they are (e.g. an FFHQ generator ``stylegan2-ffhq-1024.safetensors``)."""
    if official.kind == "stylegan2" and (official.latent_avg is not None or config.size != 256):
        return f"stylegan2-{'ffhq' if official.latent_avg is not None else 'custom'}-{config.size}.safetensors"
    if official.kind == "e4e" and (official.latent_avg is not None or config.size != 256):
        return f"e4e-{'ffhq' if official.latent_avg is not None else 'custom'}-{config.size}.safetensors"
    return default
