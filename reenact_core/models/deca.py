"""DECA's coarse encoder E_flame: a 224 px face crop → 236 FLAME/camera/light codes (spec §1.7, §2.3).

``ResnetEncoder(outsize=236)`` of yfeng95/DECA: a torchvision-layout ResNet-50 trunk under ``encoder.`` (no
fc), a global average pool and the MLP head ``layers``. Attribute names are the keys of
``deca_model.tar['E_flame']``. Only the crop's pose and expression codes are used by the method.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reenact_core.errors import InputError, WeightsError
from reenact_core.models.config import ModelConfig, check, count_indexed, shape_of
from reenact_core.models.kind import INFERENCE, ModelKind, folded_channels_last_at_inference

INPUT_SIZE = 224  # side of E_flame's input crop (official `TestData(crop_size=224)`)

# Bottleneck output width / inner width (torchvision ResNet-50 `Bottleneck.expansion`).
EXPANSION = 4

# Layout of the 236 codes: DECA decalib/deca.py `param_dict` (n_shape 100, n_tex 50, n_exp 50, n_pose 6,
# n_cam 3, n_light 27), concatenated in that order.
CODE_SLICES: dict[str, slice] = {
    "shape": slice(0, 100),
    "tex": slice(100, 150),
    "exp": slice(150, 200),
    "pose": slice(200, 206),
    "cam": slice(206, 209),
    "light": slice(209, 236),
}
N_CODES = CODE_SLICES["light"].stop


@dataclass(frozen=True)
class DecaConfig(ModelConfig):
    """Architecture of E_flame; the defaults are the official ResNet-50 + MLP(2048 → 1024 → 236).

    Args:
        base_width: inner width of the first bottleneck stage (stage k has ``base_width·2^k``, times 4 out).
        blocks: bottlenecks per stage (ResNet-50: 3, 4, 6, 3).
        hidden: width of the MLP head's hidden layer.
        out_dim: number of regressed codes (236 = the split of ``CODE_SLICES``).
    """

    base_width: int = 64
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    hidden: int = 1024
    out_dim: int = N_CODES

    def __post_init__(self) -> None:
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"need 4 stages with at least one bottleneck each, got {self.blocks}")
        if min(self.base_width, self.hidden, self.out_dim) < 1:
            raise ValueError(f"widths must be positive, got {self}")

    @property
    def feature_dim(self) -> int:
        """Width of the pooled trunk feature (2048 for ResNet-50)."""
        return self.base_width * 2 ** (len(self.blocks) - 1) * EXPANSION


@dataclass(frozen=True)
class DecaCodes:
    """E_flame's output split by meaning, in the units DECA regresses.

    Attributes:
        shape: ``(B, 100)`` FLAME identity shape.
        tex: ``(B, 50)`` albedo.
        exp: ``(B, 50)`` FLAME expression.
        pose: ``(B, 6)`` axis-angle in radians: global head rotation, then jaw.
        cam: ``(B, 3)`` orthographic camera (scale, tx, ty).
        light: ``(B, 9, 3)`` spherical-harmonics lighting per RGB channel.
    """

    shape: torch.Tensor
    tex: torch.Tensor
    exp: torch.Tensor
    pose: torch.Tensor
    cam: torch.Tensor
    light: torch.Tensor

    @property
    def global_pose(self) -> torch.Tensor:
        """``(B, 3)`` head rotation, axis-angle in radians."""
        return self.pose[:, :3]

    @property
    def jaw_pose(self) -> torch.Tensor:
        """``(B, 3)`` jaw rotation, axis-angle in radians (component 0 opens the mouth)."""
        return self.pose[:, 3:]


def split_codes(params: torch.Tensor) -> DecaCodes:
    """Splits E_flame's ``(B, 236)`` output into ``DecaCodes`` (views, no copy)."""
    if params.ndim != 2 or params.shape[1] != N_CODES:
        raise InputError(f"DECA codes must have shape (B, {N_CODES}), got {tuple(params.shape)}")
    parts = {name: params[:, s] for name, s in CODE_SLICES.items()}
    parts["light"] = parts["light"].reshape(-1, 9, 3)
    return DecaCodes(**parts)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: ``relu(bn3(conv3(relu(bn2(conv2_s(relu(bn1(conv1(x)))))))) + shortcut(x))``.

    The stride sits on the 3×3 ``conv2``; ``downsample`` (1×1 conv + BN) projects the shortcut when the
    stride or the width changes.
    """

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()      # without autograd the fresh maps can be reused
        y = F.relu(self.bn1(self.conv1(x)), inplace=inplace)
        y = F.relu(self.bn2(self.conv2(y)), inplace=inplace)
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y.add_(shortcut) if inplace else y + shortcut, inplace=inplace)


class ResNetTrunk(nn.Module):
    """ResNet trunk: 7×7/2 conv, BN, ReLU, 3×3/2 max-pool, four bottleneck stages (the first of stages 2–4
    with stride 2), global average pool. ``(B, 3, H, W)`` → ``(B, feature_dim)``."""

    def __init__(self, config: DecaConfig):
        super().__init__()
        base = config.base_width
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        in_channels = base
        for k, count in enumerate(config.blocks):
            width = base * 2**k
            stage = [Bottleneck(in_channels, width, 1 if k == 0 else 2)]
            stage += [Bottleneck(width * EXPANSION, width, 1) for _ in range(count - 1)]
            self.add_module(f"layer{k + 1}", nn.Sequential(*stage))
            in_channels = width * EXPANSION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=not torch.is_grad_enabled()), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # On the 7×7 map of a 224 px input this is the official AvgPool2d(7).
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class DecaEncoder(nn.Module):
    """E_flame: crop ``(B, 3, 224, 224)`` RGB in [0, 1], no mean/std normalisation → ``params (B, out_dim)``.

    The output is raw (no last op); split it with ``split_codes``.
    """

    def __init__(self, config: DecaConfig = DecaConfig()):
        super().__init__()
        self.config = config
        self.encoder = ResNetTrunk(config)
        self.layers = nn.Sequential(
            nn.Linear(config.feature_dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.out_dim)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise InputError(f"DECA expects images of shape (B, 3, 224, 224), got {tuple(image.shape)}")
        return self.layers(self.encoder(image))


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> DecaConfig:
    """Architecture of an official-layout E_flame state dict (``deca_model.tar['E_flame']``).

    Raises WeightsError if a needed key is missing or the shapes read do not form an E_flame.
    """
    name = "DECA E_flame"
    hidden, feature_dim = shape_of(state_dict, "layers.0.weight", name)
    try:
        config = DecaConfig(
            base_width=shape_of(state_dict, "encoder.conv1.weight", name)[0],
            blocks=tuple(count_indexed(state_dict, f"encoder.layer{k}.", ".conv1.weight") for k in range(1, 5)),
            hidden=hidden,
            out_dim=shape_of(state_dict, "layers.2.weight", name)[0],
        )
    except ValueError as e:
        raise WeightsError(f"{name} weights: inconsistent architecture ({e})") from None
    check(feature_dim == config.feature_dim, name,
          f"the head takes {feature_dim} features, the trunk of width {config.base_width} gives {config.feature_dim}")
    return config


# Largest |bf16 − fp32| code difference as a fraction of the fp32 output's range (full-size random weights: about
# 0.8 % measured; README "Speed and precision").
BF16_ERROR = 0.02


# --- model kind ---------------------------------------------------------------------------------------------

KIND = ModelKind(
    name="deca", title="DECA E_flame encoder", role=INFERENCE, model_class=DecaEncoder, config_class=DecaConfig,
    canonical_file="deca-eflame.safetensors", official_file="deca_model.tar",
    source="DECA (https://github.com/yfeng95/DECA, registration required; non-commercial licence)",
    config_from_state_dict=config_from_state_dict, set_mode=folded_channels_last_at_inference,
    # mid-grey in DECA's [0, 1] range
    probe_input=lambda config, extras, device, dtype: (
        torch.full((1, 3, INPUT_SIZE, INPUT_SIZE), 0.5, device=device, dtype=dtype),),
)
