"""e4e inversion encoder E_w: a face crop in [-1, 1] → its W+ code ``w_plus`` (spec §1.4, §2.2).

The network is ``Encoder4Editing(50, 'ir_se', size)`` of omertov/encoder4editing as shipped by the official
reenactment repo: an IR-SE-50 trunk, a feature pyramid over its last three stages and one GradualStyleBlock
per W+ row. Attribute names are the keys of ``checkpoint['e']``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from reenact_core.errors import InputError, WeightsError
from reenact_core.models.config import ModelConfig, check, count_indexed, shape_of
from reenact_core.models.kind import (INFERENCE, Converted, ModelKind, OfficialParts,
                                      folded_channels_last_at_inference)
from reenact_core.models.stylegan2 import REFERENCE_SOURCE, EqualLinear

# First W+ row fed by each pyramid level (c3, p2, p1): e4e psp_encoders.py `coarse_ind = 3`, `middle_ind = 7`.
PYRAMID_LEVEL_STARTS = (0, 3, 7)


@dataclass(frozen=True)
class EncoderConfig(ModelConfig):
    """Architecture of the e4e encoder; the defaults are the official ``Encoder4Editing(50, 'ir_se', 256)``.

    Args:
        size: generator resolution; the encoder predicts ``n_styles = 2·log2(size) − 2`` W+ rows.
        input_size: side of the square input image (the official encoder always takes 256 px, also for a
            1024 px generator).
        style_dim: width of one W+ row.
        widths: channels of the four IR-SE stages; consecutive stages must differ (their boundaries are
            read from channel changes in a state dict).
        units: IR-SE units per stage (IR-50: 3, 4, 14, 3).
        se_reduction: channel reduction of the squeeze-excitation gates.
        add_latent_avg: hold a ``latent_avg`` buffer ``(n_styles, style_dim)`` added to the output, as
            omertov's e4e ``pSp.forward`` does; the official reenactment code adds none.
    """

    size: int = 256
    input_size: int = 256
    style_dim: int = 512
    widths: tuple[int, ...] = (64, 128, 256, 512)
    units: tuple[int, ...] = (3, 4, 14, 3)
    se_reduction: int = 16
    add_latent_avg: bool = False

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.units) != 4 or min(self.units) < 1:
            raise ValueError(f"need 4 stages with at least one unit each, got widths {self.widths}, units {self.units}")
        if any(a == b for a, b in zip(self.widths, self.widths[1:])):
            raise ValueError(f"consecutive stage widths must differ, got {self.widths}")
        if self.se_reduction < 1 or min(self.widths) // self.se_reduction < 1:
            raise ValueError(f"se_reduction {self.se_reduction} leaves no channel for width {min(self.widths)}")
        if not _is_power_of_two(self.size) or self.size < 4:
            raise ValueError(f"size must be a power of two >= 4, got {self.size}")
        if not _is_power_of_two(self.input_size) or self.input_size < 32:
            raise ValueError(f"input_size must be a power of two >= 32, got {self.input_size}")

    @property
    def n_styles(self) -> int:
        """Number of W+ rows, ``2·log2(size) − 2`` (14 at 256 px, 18 at 1024 px)."""
        return 2 * int(math.log2(self.size)) - 2

    @property
    def tap_units(self) -> tuple[int, int, int]:
        """Body indices of the last units of stages 2, 3, 4, whose outputs are c1, c2, c3 (IR-50: 6, 20, 23)."""
        ends = [sum(self.units[: k + 1]) - 1 for k in range(4)]
        return ends[1], ends[2], ends[3]


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class SqueezeExcite(nn.Module):
    """Channel gate ``x · sigmoid(fc2(relu(fc1(avgpool(x)))))`` with bias-free 1×1 convs."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)


class IRSEUnit(nn.Module):
    """IR-SE unit: ``shortcut(x) + SE(BN(conv3×3_s(PReLU(conv3×3(BN(x))))))``, no activation after the sum.

    The shortcut is a stride-``s`` subsampling (``MaxPool2d(1, s)``) when the width is kept, else a 1×1
    conv with stride ``s`` followed by BN.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, se_reduction: int):
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            SqueezeExcite(out_channels, se_reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_layer(x) + self.res_layer(x)


def irse_input_layer(width: int) -> nn.Sequential:
    """IR-SE stem: 3×3 conv (no bias) 3 → ``width``, BN, PReLU; keeps the resolution."""
    return nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


def irse_body(widths: tuple[int, ...], units: tuple[int, ...], se_reduction: int) -> nn.Sequential:
    """The IR-SE stages: ``units[k]`` units of width ``widths[k]``, the first of each with stride 2."""
    layers = []
    for stage, (width, count) in enumerate(zip(widths, units)):
        layers.append(IRSEUnit(widths[max(stage - 1, 0)], width, 2, se_reduction))
        layers += [IRSEUnit(width, width, 1, se_reduction) for _ in range(count - 1)]
    return nn.Sequential(*layers)


def irse_stages(state_dict: Mapping[str, torch.Tensor], name: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(widths, units, se_reduction) of the ``body.*`` IR-SE stages of a state dict, read from the channel
    changes along the body. Raises WeightsError unless there are 4 stages."""
    n_units = count_indexed(state_dict, "body.", ".res_layer.1.weight")
    depths = [shape_of(state_dict, f"body.{i}.res_layer.1.weight", name)[0] for i in range(max(n_units, 1))]
    starts = [0] + [i for i in range(1, n_units) if depths[i] != depths[i - 1]]
    check(len(starts) == 4, name, f"{len(starts)} IR-SE stages found, expected 4")
    fc1_out = shape_of(state_dict, f"body.{n_units - 1}.res_layer.5.fc1.weight", name)[0]
    units = tuple(b - a for a, b in zip(starts, starts[1:] + [n_units]))
    return tuple(depths[i] for i in starts), units, depths[-1] // max(fc1_out, 1)


class GradualStyleBlock(nn.Module):
    """One W+ row from a feature map: ``num_convs`` stride-2 3×3 convs with LeakyReLU(0.01) down to 1×1, then
    StyleGAN2's EqualLinear (lr_mul 1, no activation). ``(B, in_channels, 2^n, 2^n)`` → ``(B, style_dim)``."""

    def __init__(self, in_channels: int, style_dim: int, num_convs: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else style_dim, style_dim, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(style_dim, style_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(features).flatten(1))


def _upsample_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """FPN merge: bilinear (align_corners=True) upsampling of ``coarse`` to ``lateral``'s size, plus ``lateral``."""
    return F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """e4e encoder: image ``(B, 3, input_size, input_size)`` RGB in [-1, 1] → ``w_plus (B, n_styles, style_dim)``.

    Row 0 is ``w0 = styles[0](c3)``; row i > 0 is ``w0 + styles[i](f)`` with f = c3, p2 or p1 by pyramid level
    (``PYRAMID_LEVEL_STARTS``). With ``add_latent_avg`` the ``latent_avg`` buffer is added to every code.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        self.input_layer = irse_input_layer(w[0])
        self.body = irse_body(w, config.units, config.se_reduction)
        # c3 is input_size / 16 px wide; each pyramid level doubles it and needs one more stride-2 conv.
        c3_convs = int(math.log2(config.input_size)) - len(w)
        self.styles = nn.ModuleList(
            GradualStyleBlock(w[3], config.style_dim, c3_convs + self._level(i)) for i in range(config.n_styles)
        )
        self.latlayer1 = nn.Conv2d(w[2], w[3], 1)
        self.latlayer2 = nn.Conv2d(w[1], w[3], 1)
        if config.add_latent_avg:
            self.register_buffer("latent_avg", torch.zeros(config.n_styles, config.style_dim))

    @staticmethod
    def _level(row: int) -> int:
        """Pyramid level feeding W+ row ``row``: 0 = c3, 1 = p2, 2 = p1."""
        return sum(row >= start for start in PYRAMID_LEVEL_STARTS) - 1

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, s, s):
            raise InputError(f"e4e expects images of shape (B, 3, {s}, {s}), got {tuple(image.shape)}")
        x = self.input_layer(image)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.config.tap_units:
                taps.append(x)
        c1, c2, c3 = taps
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))
        pyramid = (c3, p2, p1)
        w0 = self.styles[0](c3)
        rows = [w0] + [w0 + self.styles[i](pyramid[self._level(i)]) for i in range(1, self.config.n_styles)]
        w_plus = torch.stack(rows, dim=1)
        if self.config.add_latent_avg:
            w_plus = w_plus + self.latent_avg
        return w_plus


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> EncoderConfig:
    """Architecture of an official-layout e4e state dict (``checkpoint['e']``, plus ``latent_avg`` if any).

    Stages are read from the channel changes along ``body``, ``size`` from the number of style blocks and
    ``input_size`` from the convs of ``styles.0``. Raises WeightsError if a needed key is missing or the
    shapes read do not form an e4e encoder.
    """
    name = "e4e"
    widths, units, se_reduction = irse_stages(state_dict, name)
    n_styles = count_indexed(state_dict, "styles.", ".linear.weight")
    style_dim = shape_of(state_dict, "styles.0.linear.weight", name)[0]
    c3_convs = count_indexed(state_dict, "styles.0.convs.", ".weight", step=2)
    check(n_styles % 2 == 0, name, f"{n_styles} style blocks; 2·log2(size) − 2 is even")
    try:
        config = EncoderConfig(
            size=2 ** (n_styles // 2 + 1),
            input_size=2 ** (c3_convs + len(widths)),
            style_dim=style_dim,
            widths=widths,
            units=units,
            se_reduction=se_reduction,
            add_latent_avg="latent_avg" in state_dict,
        )
    except ValueError as e:
        raise WeightsError(f"{name} weights: inconsistent architecture ({e})") from None
    return config


# Largest |bf16 − fp32| W+ difference as a fraction of the fp32 output's range (full-size random weights: about
# 0.8 % measured; README "Speed and precision").
BF16_ERROR = 0.02


# --- model kind ---------------------------------------------------------------------------------------------

def _from_official(parts: OfficialParts) -> Converted:
    """An original e4e checkpoint's ``latent_avg`` becomes the ``latent_avg`` buffer the encoder adds."""
    config, state_dict, metadata = parts.config, dict(parts.state_dict), {}
    if parts.latent_avg is not None:
        config = replace(config, add_latent_avg=True)
        avg = parts.latent_avg
        state_dict["latent_avg"] = avg.reshape(config.n_styles, config.style_dim) \
            if avg.numel() == config.n_styles * config.style_dim else avg
    metadata["adds_latent_avg"] = str(parts.latent_avg is not None).lower()
    return Converted(config, state_dict, metadata=metadata)


def _file_name(config: EncoderConfig, metadata: Mapping[str, str]) -> str:
    """The method's VoxCeleb encoder keeps the canonical name; others say what they are."""
    from_ffhq = metadata.get("adds_latent_avg") == "true"
    if not from_ffhq and config.size == 256:
        return KIND.canonical_file
    return f"e4e-{'ffhq' if from_ffhq else 'custom'}-{config.size}.safetensors"


KIND = ModelKind(
    name="e4e", title="e4e encoder (IR-SE-50)", role=INFERENCE, model_class=Encoder4Editing,
    config_class=EncoderConfig, canonical_file="e4e-voxceleb-256.safetensors", official_file="e4e-voxceleb.pt",
    source=REFERENCE_SOURCE, config_from_state_dict=config_from_state_dict, from_official=_from_official,
    # mid-grey in the encoder's [-1, 1] range
    probe_input=lambda config, extras, device, dtype: (
        torch.zeros(1, 3, config.input_size, config.input_size, device=device, dtype=dtype),),
    file_name=_file_name, set_mode=folded_channels_last_at_inference,
)
