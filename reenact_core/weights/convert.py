"""`python -m reenact_core convert SRC DST`: official checkpoint → our `.safetensors` model file.

The steps common to every kind are here; what differs per kind is in its ``KIND`` hooks (``config_from_state_dict``,
``from_official``, ``converted_extras``, ``file_name``; see ``reenact_core.models.kind``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import WeightsError
from ..files import read_safetensors
from ..wording import article
from ..models.kind import OfficialParts
from .kinds import kind as get_kind
from .official import read_official
from .store import FORMAT, check_state_dict_shapes, save_model


def _refuse_converted(src: Path) -> None:
    """WeightsError when ``src`` is already one of our model files (nothing to convert)."""
    if src.suffix != ".safetensors" or not src.is_file():
        return
    _, meta = read_safetensors(src, tensors=False)
    if meta.get("format") == FORMAT:
        title = get_kind(meta.get("kind", "?")).title
        raise WeightsError(f"{src.name}: already converted ({article(title)} {title} model file); put it in a model "
                           f"folder as it is")


def convert(src: str | Path, dst: str | Path, expected_kind: str | None = None,
            landmarks: str | Path | None = None) -> Path:
    """Convert an official checkpoint to a model file and return its path.

    The architecture is inferred from the tensor shapes; every key and shape is checked strictly (only the
    constant buffers of the kind's ``rebuilt_buffer_suffixes`` may be missing, and are rebuilt). ``dst`` may be
    a folder (existing, or ending in a path separator): the kind's file name is then used. ``expected_kind``
    refuses other kinds. The file is written atomically with mode ``0666 & ~umask``. FLAME's
    ``generic_model.pkl`` needs ``landmarks``, DECA's ``landmark_embedding.npy`` (both read through an
    allow-list unpickler).
    """
    src = Path(src)
    if src.suffix == ".pkl" or landmarks is not None:
        return _convert_flame(src, dst, landmarks, expected_kind)
    _refuse_converted(src)
    official = read_official(src)
    if expected_kind is not None and official.kind != expected_kind:
        title, expected = get_kind(official.kind).title, get_kind(expected_kind).title
        raise WeightsError(f"{src.name}: holds {article(title)} {title} ({official.layout}), "
                           f"not {article(expected)} {expected}")
    k = get_kind(official.kind)
    try:
        config = k.config_class() if k.config_from_state_dict is None else k.config_from_state_dict(official.state_dict)
        parts = OfficialParts(config, dict(official.state_dict), official.latent_avg, dict(official.extras))
        converted = k.from_official(parts)
    except WeightsError as exc:
        raise WeightsError(f"{src.name}: {exc}") from None
    config, state_dict = converted.config, converted.state_dict
    with torch.device("meta"):
        reference = k.build(config)
    expected = {name: tuple(t.shape) for name, t in reference.state_dict().items()}
    check_state_dict_shapes(src.name, expected, {n: tuple(t.shape) for n, t in state_dict.items()},
                            may_lack=k.rebuilt_buffer_suffixes)
    module = None
    if any(name not in state_dict for name in expected):
        module = k.build(config)      # constructed values of the constant buffers the file lacks
        state_dict.update({n: t for n, t in module.state_dict().items() if n not in state_dict})
    state_dict = {n: state_dict[n].to(torch.float32) if state_dict[n].is_floating_point() else state_dict[n]
                  for n in expected}
    _check_finite(src, state_dict)

    extra, metadata = dict(converted.extra_tensors), {"source_file": src.name, "source_layout": official.layout}
    metadata.update(converted.metadata)
    if k.converted_extras is not None:
        module = module or k.build(config)
        module.load_state_dict(state_dict, strict=True)
        more_tensors, more_metadata = k.converted_extras(module.eval(), parts)
        extra.update(more_tensors)
        metadata.update(more_metadata)
    if _is_folder(dst):
        dst = Path(dst) / k.converted_file_name(config, metadata)
    return save_model(dst, official.kind, config, state_dict, extra_tensors=extra, metadata=metadata)


def _is_folder(dst: str | Path) -> bool:
    """An existing folder, or a path written with a trailing separator (which ``Path`` would drop)."""
    return str(dst).endswith(("/", "\\")) or Path(dst).is_dir()


def _convert_flame(src: Path, dst: str | Path, landmarks: str | Path | None, expected_kind: str | None) -> Path:
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
    metadata = {"source_file": src.name, "landmarks_file": Path(landmarks).name,
                "source_layout": "FLAME generic_model.pkl + DECA landmark_embedding.npy"}
    if _is_folder(dst):
        dst = Path(dst) / get_kind("flame").converted_file_name(config, metadata)
    return save_model(dst, "flame", config, state_dict, metadata=metadata)


def _check_finite(src: Path, state_dict: dict[str, torch.Tensor]) -> None:
    bad = [n for n, t in state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise WeightsError(f"{src.name}: non-finite values (NaN/Inf) in {', '.join(bad[:4])}")
