"""Our weight format: `.safetensors` with the official state-dict keys and self-describing metadata."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import WeightsError
from .kinds import kind as get_kind

FORMAT = "latent-reenact"
FORMAT_VERSION = "1"
MEAN_LATENT_KEY = "mean_latent"  # StyleGAN2 files: the truncation centre w̄, [1, style_dim]


@dataclass(frozen=True)
class ModelInfo:
    """What a model file's header says, read without loading its tensors."""

    path: Path
    kind: str
    config: Any
    metadata: dict[str, str]
    tensor_shapes: dict[str, tuple[int, ...]]


@dataclass
class LoadedModel:
    """A network built from one file: the module (eval mode) plus the file's non-module data."""

    kind: str
    config: Any
    module: torch.nn.Module
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)
    mean_latent: torch.Tensor | None = None   # StyleGAN2 only: [1, style_dim], on the module's device/dtype


def save_model(path: str | Path, kind_name: str, config, state_dict: Mapping[str, torch.Tensor],
               extra_tensors: Mapping[str, torch.Tensor] | None = None,
               metadata: Mapping[str, str] | None = None) -> Path:
    """Write a model file: the state dict (contiguous CPU copies) and metadata (kind, config JSON, format)."""
    get_kind(kind_name)
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    for k, v in (extra_tensors or {}).items():
        if k in tensors:
            raise WeightsError(f"extra tensor {k!r} collides with a state-dict key")
        tensors[k] = v.detach().to("cpu").contiguous()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind_name,
            "config": json.dumps(config.to_dict(), sort_keys=True)}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def inspect_model_file(path: str | Path, expected_kind: str | None = None) -> ModelInfo:
    """Read and validate a model file's header (kind, config, tensor names and shapes) without its tensors.

    Raises WeightsError (one line) for a missing, corrupt or foreign file, a kind other than
    ``expected_kind``, or tensors that do not match the architecture the metadata describes.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path.name}: not a readable .safetensors file (truncated or corrupt?): {exc}") from None
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path.name}: not a Latent Reenact model file (no '{FORMAT}' metadata); convert the "
                           f"official checkpoint with: python -m reenact_core convert SRC DST")
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path.name}: format version {meta.get('format_version')!r} is not supported "
                           f"(this version reads {FORMAT_VERSION})")
    k = get_kind(meta.get("kind", "?"))
    if expected_kind is not None and k.name != expected_kind:
        raise WeightsError(f"{path.name}: holds a {k.title} ('{k.name}'), expected "
                           f"a {get_kind(expected_kind).title} ('{expected_kind}')")
    try:
        config = k.config_from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path.name}: invalid architecture metadata: {exc}") from None
    expected = {name: tuple(t.shape) for name, t in _meta_module(k, config).state_dict().items()}
    if k.name == "stylegan2":
        expected[MEAN_LATENT_KEY] = (1, config.style_dim)
    check_state_dict_shapes(path.name, expected, shapes)
    return ModelInfo(path, k.name, config, meta, shapes)


def _meta_module(k, config) -> torch.nn.Module:
    """The module built on the meta device: its state-dict keys and shapes, at no memory cost."""
    with torch.device("meta"):
        return k.build(config)


def check_state_dict_shapes(what: str, expected: Mapping[str, tuple], actual: Mapping[str, tuple],
                            may_lack: tuple[str, ...] = ()) -> None:
    """Raise WeightsError (one line) on any missing, unexpected or mis-shaped key.

    Keys ending in one of ``may_lack`` may be absent from ``actual``.
    """
    missing = [k for k in expected if k not in actual and not k.endswith(may_lack)]
    extra = [k for k in actual if k not in expected]
    wrong = [f"{k} {tuple(actual[k])} (expected {tuple(expected[k])})" for k in expected
             if k in actual and tuple(actual[k]) != tuple(expected[k])]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes", wrong)):
        if items:
            shown = ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise WeightsError(f"{what}: does not match the architecture; " + "; ".join(problems))


def load_model(path: str | Path, expected_kind: str | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Build the network a model file describes, load its weights strictly and put it in eval mode.

    Floating-point tensors are cast to ``dtype``; integer buffers (BatchNorm counters) keep theirs.
    """
    info = inspect_model_file(path, expected_kind)
    k = get_kind(info.kind)
    tensors = _read_tensors(info.path)
    mean_latent = tensors.pop(MEAN_LATENT_KEY, None)
    module = _meta_module(k, info.config)
    module.load_state_dict(tensors, strict=True, assign=True)
    module = module.to(device=device)
    module = module.to(dtype=dtype) if dtype is not None else module
    module.eval().requires_grad_(False)
    if mean_latent is not None:
        mean_latent = mean_latent.to(device=device, dtype=dtype)
    return LoadedModel(info.kind, info.config, module, info.path, info.metadata, mean_latent)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k).clone() for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path.name}: cannot read its tensors (truncated or corrupt?): {exc}") from None
