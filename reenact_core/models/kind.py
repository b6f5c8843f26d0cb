"""How a network declares itself as a model kind: its config, file names, source and per-kind hooks.

Each network module declares one ``KIND = ModelKind(...)`` beside its ``nn.Module``; the registry
(``reenact_core.weights.kinds``) collects them. Only torch is needed here, so networks stay free of the
weight, parameter and engine layers.

Hooks (all optional; the defaults suit a plain network):
    * ``config_from_state_dict(state_dict) -> config``: architecture from an official state dict (converter;
      without it the converter starts from the default config).
    * ``from_official(OfficialParts) -> Converted``: the kind's part of a conversion (config fields and
      tensors held outside the state dict, metadata).
    * ``converted_extras(module, OfficialParts) -> (tensors, metadata)``: what a conversion adds once the
      module holds the final weights (e.g. the generator's mean latent when the checkpoint has none).
    * ``extra_tensors(module, config, seed) -> {name: tensor}``: tensors written beside the state dict of a
      freshly built (random) model, e.g. the generator's mean latent.
    * ``extra_shapes(config) -> {name: shape}``: the shapes of those extra tensors, checked on load.
    * ``probe_input(config, extras, device, dtype) -> (inputs, ...)``: the positional arguments of a neutral
      forward pass whose output must be finite in half precision (the loaders fall back to float32 otherwise).
    * ``file_name(config, metadata) -> str``: the file name ``convert`` gives a converted file.
    * ``set_mode(module, trainable) -> module``: eval mode without gradients, or the trainable mode.
    * ``legacy_notice(config_dict) -> str | None``: what to tell the user once when a file predates a field.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .folding import fold_batch_norms

INFERENCE = "inference"   # needed to reenact: written by make_tiny_model_set, checked by doctor
TRAINING = "training"     # needed only by the trainers (losses, fixed networks)
OPTIONAL = "optional"     # improves a step when present (e.g. LPIPS for generator tuning)
ROLES = (INFERENCE, TRAINING, OPTIONAL)


@dataclass
class OfficialParts:
    """What the converter read from an official checkpoint, handed to the kind's ``from_official`` hook."""

    config: Any                                   # from config_from_state_dict
    state_dict: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None = None        # StyleGAN2 w_avg or original-e4e latent_avg, when stored
    extras: dict = field(default_factory=dict)    # scalars stored beside the state dict (A_matrix.pt)


@dataclass
class Converted:
    """The kind's result of a conversion: final config and state dict, plus what the file stores besides."""

    config: Any
    state_dict: dict[str, torch.Tensor]
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def _no_extras(*_args) -> dict:
    return {}


def eval_mode(module: nn.Module, trainable: bool) -> nn.Module:
    """Default ``set_mode``: ``train()`` with gradients when trainable, else ``eval()`` without gradients."""
    return module.train().requires_grad_(True) if trainable else module.eval().requires_grad_(False)


def folded_channels_last_at_inference(module: nn.Module, trainable: bool) -> nn.Module:
    """``eval_mode``, and at inference every BatchNorm that follows a convolution folded into it
    (:func:`~reenact_core.models.folding.fold_batch_norms`: equal up to float rounding, the state dict loses the
    folded BN keys) and the 4-D weights in channels-last layout (oneDNN's and cuDNN's fast one: convolutions then
    run in it end to end). Trainable modules are left as built."""
    module = eval_mode(module, trainable)
    return module if trainable else fold_batch_norms(module).to(memory_format=torch.channels_last)


def _same_parts(parts: OfficialParts) -> Converted:
    return Converted(parts.config, dict(parts.state_dict))


@dataclass(frozen=True)
class ModelKind:
    """One kind of network: how to build it, where its published weights come from and its hooks.

    Attributes:
        name: registry key, also stored in every model file's metadata.
        title: what the user sees.
        role: ``INFERENCE``, ``TRAINING`` or ``OPTIONAL`` (see ``ROLES``).
        model_class: the ``nn.Module``, built as ``model_class(config)``.
        config_class: its frozen config dataclass (``ModelConfig``: ``to_dict``/``from_dict``).
        canonical_file: the file name ``convert`` writes and the loaders look for.
        official_file: the published file(s) it is converted from (as the user should name them).
        source: where the published file comes from.
        rebuilt_buffer_suffixes: keys (by suffix) of constant buffers official files may lack (rebuilt).
        convert_options: options the ``convert`` command needs besides the first official file (e.g. FLAME's
            ``--landmarks landmark_embedding.npy``), shown in the missing-file message.
    """

    name: str
    title: str
    role: str
    model_class: type[nn.Module]
    config_class: type
    canonical_file: str
    official_file: str
    source: str
    rebuilt_buffer_suffixes: tuple[str, ...] = ()
    convert_options: str = ""
    config_from_state_dict: Callable[[Mapping[str, torch.Tensor]], Any] | None = None
    from_official: Callable[[OfficialParts], Converted] = _same_parts
    converted_extras: Callable[[nn.Module, OfficialParts], tuple[dict, dict]] | None = None
    extra_tensors: Callable[[nn.Module, Any, int], dict[str, torch.Tensor]] = _no_extras
    extra_shapes: Callable[[Any], dict[str, tuple[int, ...]]] = _no_extras
    probe_input: Callable[[Any, Mapping[str, torch.Tensor], torch.device, torch.dtype], tuple] | None = None
    file_name: Callable[[Any, Mapping[str, str]], str] | None = None
    set_mode: Callable[[nn.Module, bool], nn.Module] = eval_mode
    legacy_notice: Callable[[Mapping[str, Any]], str | None] = lambda _config: None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"model kind {self.name!r}: role must be one of {ROLES}, got {self.role!r}")

    def build(self, config) -> nn.Module:
        """The nn.Module for ``config`` (its own random init)."""
        return self.model_class(config)

    def config_from_dict(self, data: Mapping[str, Any]):
        """The config stored in a model file's metadata (WeightsError if invalid)."""
        return self.config_class.from_dict(data)

    def converted_file_name(self, config, metadata: Mapping[str, str]) -> str:
        """The name a converted file gets in a destination folder (``canonical_file`` unless the hook says)."""
        return self.canonical_file if self.file_name is None else self.file_name(config, metadata)
