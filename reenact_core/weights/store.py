"""Our weight format: `.safetensors` with the official state-dict keys and self-describing metadata."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch

from ..command import command
from ..errors import WeightsError
from ..files import read_safetensors, write_safetensors
from ..wording import article
from ..models.stylegan2 import MEAN_LATENT_KEY
from .kinds import kind as get_kind

logger = logging.getLogger(__name__)

FORMAT = "latent-reenact"
FORMAT_VERSION = "2"          # 2: directions files store their normaliser in the config
READABLE_VERSIONS = ("1", "2")


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
    """A network built from one file: the module plus the file's non-module data.

    Attributes:
        kind, config, path, metadata: what the file says.
        module: the network, in eval mode without gradients, or trainable (``load_model(trainable=True)``).
        extras: the tensors stored beside the state dict (kind hook ``extra_shapes``), on the module's device
            in its dtype; for StyleGAN2 the truncation centre ``mean_latent`` [1, style_dim].
    """

    kind: str
    config: Any
    module: torch.nn.Module
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def mean_latent(self) -> torch.Tensor | None:
        """StyleGAN2 only: the truncation centre w̄ (1, style_dim); None for other kinds."""
        return self.extras.get(MEAN_LATENT_KEY)

    @mean_latent.setter
    def mean_latent(self, value: torch.Tensor) -> None:
        self.extras[MEAN_LATENT_KEY] = value


def save_model(path: str | Path, kind_name: str, config, state_dict: Mapping[str, torch.Tensor],
               extra_tensors: Mapping[str, torch.Tensor] | None = None,
               metadata: Mapping[str, str] | None = None) -> Path:
    """Write a model file atomically: the state dict and extra tensors (contiguous CPU copies) and metadata
    (kind, config JSON, format)."""
    get_kind(kind_name)
    tensors = dict(state_dict)
    for k, v in (extra_tensors or {}).items():
        if k in tensors:
            raise WeightsError(f"extra tensor {k!r} collides with a state-dict key")
        tensors[k] = v
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind_name,
            "config": json.dumps(config.to_dict(), sort_keys=True)}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    return write_safetensors(path, tensors, meta)


def inspect_model_file(path: str | Path, expected_kind: str | None = None) -> ModelInfo:
    """Read and validate a model file's header (kind, config, tensor names and shapes) without its tensors.

    Raises WeightsError (one line) for a missing, corrupt or foreign file, a kind other than
    ``expected_kind``, or tensors that do not match the architecture the metadata describes.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    header, meta = read_safetensors(path, tensors=False)
    shapes = {k: tuple(t.shape) for k, t in header.items()}
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path.name}: not a Latent Reenact model file (no '{FORMAT}' metadata); convert the "
                           f"official checkpoint with: {command()} convert SRC DST")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise WeightsError(f"{path.name}: format version {meta.get('format_version')!r} is not supported "
                           f"(this version reads {', '.join(READABLE_VERSIONS)})")
    k = get_kind(meta.get("kind", "?"))
    if expected_kind is not None and k.name != expected_kind:
        expected = get_kind(expected_kind).title
        raise WeightsError(f"{path.name}: holds {article(k.title)} {k.title} ('{k.name}'), expected "
                           f"{article(expected)} {expected} ('{expected_kind}')")
    try:
        config_dict = json.loads(meta["config"])
        config = k.config_from_dict(config_dict)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path.name}: invalid architecture metadata: {exc}") from None
    expected = {name: tuple(t.shape) for name, t in _meta_module(k, config).state_dict().items()}
    expected.update(k.extra_shapes(config))
    check_state_dict_shapes(path.name, expected, shapes)
    notice = k.legacy_notice(config_dict)
    if notice:
        _say_once(str(path.resolve()), f"{path.name}: {notice}")
    return ModelInfo(path, k.name, config, meta, shapes)


@lru_cache(maxsize=None)
def _say_once(_key: str, message: str) -> None:
    logger.warning(message)


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
               dtype: torch.dtype = torch.float32, *, trainable: bool = False) -> LoadedModel:
    """Build the network a model file describes and load its weights strictly.

    Floating-point tensors are cast to ``dtype``; integer buffers (BatchNorm counters) keep theirs. The module
    is put in the kind's eval mode without gradients, or with ``trainable=True`` in its trainable mode (kind
    hook ``set_mode``; by default ``train()`` with gradients on every parameter).
    """
    info = inspect_model_file(path, expected_kind)
    k = get_kind(info.kind)
    tensors, _ = read_safetensors(info.path)
    extras = {name: tensors.pop(name) for name in k.extra_shapes(info.config)}
    module = _meta_module(k, info.config)
    module.load_state_dict(tensors, strict=True, assign=True)
    module = module.to(device=device)
    module = module.to(dtype=dtype) if dtype is not None else module
    module = k.set_mode(module, trainable)
    extras = {name: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
              for name, t in extras.items()}
    return LoadedModel(info.kind, info.config, module, info.path, info.metadata, extras)
