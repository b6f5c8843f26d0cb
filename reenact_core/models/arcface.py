"""ArcFace IR-SE-50, the identity network of the training losses and of the CSIM metric (training-and-fsr §4.1;
reference-method §2.5; TreB1eN/InsightFace_Pytorch ``Backbone(112, 50, 'ir_se')`` as pSp/e4e ship it).

A 112×112 RGB face in [-1, 1] → an L2-normalised 512-d embedding. Attribute names are the keys of
``model_ir_se50.pth`` (a plain state dict): ``input_layer.*`` and ``body.*`` are the same IR-SE units as e4e's,
``output_layer.{0,3,4}`` are BN2d → Dropout → Flatten → Linear → BN1d.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from reenact_core.errors import InputError, WeightsError
from reenact_core.models.config import ModelConfig, shape_of
from reenact_core.models.kind import TRAINING, ModelKind
from reenact_core.models.e4e import irse_body, irse_input_layer, irse_stages

INPUT_SIZE = 112          # ArcFace's aligned face side
DROP_RATIO = 0.6          # TreB1eN's drop_ratio (inactive in eval mode)


@dataclass(frozen=True)
class ArcFaceConfig(ModelConfig):
    """Architecture of the IR-SE ArcFace network; the defaults are ``model_ir_se50.pth``.

    Args:
        widths: channels of the four IR-SE stages (each halves the resolution: 112 → 7).
        units: IR-SE units per stage (IR-50: 3, 4, 14, 3).
        se_reduction: channel reduction of the squeeze-excitation gates.
        embedding_dim: length of the embedding.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512)
    units: tuple[int, ...] = (3, 4, 14, 3)
    se_reduction: int = 16
    embedding_dim: int = 512

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.units) != 4 or min(self.units) < 1:
            raise ValueError(f"need 4 stages with at least one unit each, got widths {self.widths}, units {self.units}")
        if self.se_reduction < 1 or min(self.widths) // self.se_reduction < 1 or self.embedding_dim < 1:
            raise ValueError(f"invalid ArcFace config {self}")

    @property
    def feature_side(self) -> int:
        """Side of the last feature map (7 for a 112-px input)."""
        return INPUT_SIZE // 2 ** len(self.widths)


class ArcFace(nn.Module):
    """IR-SE ArcFace: ``(B, 3, 112, 112)`` RGB in [-1, 1] → ``(B, embedding_dim)`` unit vectors.

    Dropout (p 0.6) and BatchNorm are active only in training mode; the losses hold it frozen in eval mode.
    """

    def __init__(self, config: ArcFaceConfig = ArcFaceConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        self.input_layer = irse_input_layer(w[0])
        self.body = irse_body(w, config.units, config.se_reduction)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(w[-1]), nn.Dropout(DROP_RATIO), nn.Flatten(),
            nn.Linear(w[-1] * config.feature_side ** 2, config.embedding_dim), nn.BatchNorm1d(config.embedding_dim),
        )

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        if face.ndim != 4 or tuple(face.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise InputError(f"ArcFace expects faces of shape (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), "
                             f"got {tuple(face.shape)}")
        x = self.output_layer(self.body(self.input_layer(face)))
        return x / torch.linalg.vector_norm(x, dim=1, keepdim=True)


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> ArcFaceConfig:
    """Architecture of an official-layout IR-SE state dict (``model_ir_se50.pth``).

    Raises WeightsError if a needed key is missing or the shapes do not form this network.
    """
    name = "ArcFace IR-SE"
    widths, units, se_reduction = irse_stages(state_dict, name)
    try:
        config = ArcFaceConfig(widths=widths, units=units, se_reduction=se_reduction,
                               embedding_dim=shape_of(state_dict, "output_layer.3.weight", name)[0])
    except ValueError as e:
        raise WeightsError(f"{name} weights: inconsistent architecture ({e})") from None
    in_features = shape_of(state_dict, "output_layer.3.weight", name)[1]
    if in_features != widths[-1] * config.feature_side ** 2:
        raise WeightsError(f"{name} weights: the embedding layer takes {in_features} features, a 112-px input gives "
                           f"{widths[-1] * config.feature_side ** 2}")
    return config


def _frozen(module: nn.Module, trainable: bool) -> nn.Module:
    """ArcFace is a fixed measure: eval mode (BatchNorm statistics, no Dropout) without gradients either way."""
    return module.eval().requires_grad_(False)


KIND = ModelKind(
    name="arcface", title="ArcFace IR-SE-50 identity network", role=TRAINING, model_class=ArcFace,
    config_class=ArcFaceConfig, canonical_file="arcface-irse50.safetensors", official_file="model_ir_se50.pth",
    source="TreB1eN/InsightFace_Pytorch (https://github.com/TreB1eN/InsightFace_Pytorch, README links; the file "
           "pSp and e4e use)",
    config_from_state_dict=config_from_state_dict, set_mode=_frozen,
    probe_input=lambda config, extras, device, dtype: (
        torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=device, dtype=dtype),),
)
