"""StyleGAN2 generator G (Karras et al., CVPR 2020) in pure PyTorch, in the rosinality layout (spec §1.5, §2.1).

Module attribute names are the keys of an official ``checkpoint['g_ema']``, so official state dicts load with
``strict=True``. ``G(w_plus)`` maps a W+ code ``(B, n_latent, style_dim)`` to an image ``(B, 3, size, size)``,
roughly in [-1, 1] and not clamped.

W+ rows, StyledConvs and noise inputs (``n_latent = 2·log2(size) − 2``; ``j`` = resolution step, 8 px at j = 0):

| layer                | W+ row   | noise            | feature index k |
|----------------------|----------|------------------|-----------------|
| ``conv1`` (4 px)     | 0        | ``noise_0``      | 0               |
| ``to_rgb1``          | 1        | —                | —               |
| ``convs[2j]`` (up)   | 2j + 1   | ``noise_{2j+1}`` | 2j + 1          |
| ``convs[2j+1]``      | 2j + 2   | ``noise_{2j+2}`` | 2j + 2          |
| ``to_rgbs[j]``       | 2j + 3   | —                | —               |

So StyledConv k uses W+ row k and noise k, and the ToRGB after StyledConv k (k even) uses row k + 1.
"""
from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from reenact_core.errors import WeightsError
from reenact_core.models.config import ModelConfig, check, count_indexed, shape_of
from reenact_core.models.kind import INFERENCE, Converted, ModelKind, OfficialParts

# Constant buffers that official files may lack (the authors load with strict=False, spec §2.1); they are
# rebuilt from the constructor instead of being loaded.
REBUILT_BUFFER_SUFFIXES = ("conv.blur.kernel", "upsample.kernel")

BLUR_KERNEL = (1, 3, 3, 1)           # rosinality model.py Generator(blur_kernel=[1, 3, 3, 1])
UPSAMPLE_GAIN = 4.0                  # factor² for 2× upsampling: rosinality Blur/Upsample scale the kernel by it
LEAKY_SLOPE = 0.2                    # rosinality op/fused_act.py FusedLeakyReLU negative_slope
ACTIVATION_GAIN = math.sqrt(2)       # rosinality op/fused_act.py FusedLeakyReLU scale
EPS = 1e-8                           # rosinality model.py PixelNorm and ModulatedConv2d demodulation
MIN_SIZE, MAX_SIZE = 32, 1024        # output sizes supported here (the method uses 256 and 1024)


def standard_channels(size: int, channel_multiplier: int = 1) -> tuple[int, ...]:
    """Channel widths of the official generator at resolutions 4, 8, ..., ``size``.

    rosinality ``Generator.channels``: 512 up to 32 px, then 256·cm at 64 px, halving at each doubling.
    """
    return tuple(512 if res <= 32 else 2 ** 14 * channel_multiplier // res
                 for res in (2 ** i for i in range(2, int(math.log2(size)) + 1)))


@dataclass(frozen=True)
class GeneratorConfig(ModelConfig):
    """Architecture of G; the defaults are the official ``Generator(256, 512, n_mlp=8, channel_multiplier=1)``.

    Args:
        size: output side in pixels, a power of two in [32, 1024].
        style_dim: width of z, w and of one W+ row.
        n_mlp: number of linear layers of the mapping network.
        channel_multiplier: scales the widths from 64 px up (``standard_channels``); ignored if ``channels``.
        channels: optional width override, one channel count per resolution 4, 8, ..., ``size``.
        lr_mlp: learning-rate multiplier of the mapping network (it scales its weights at run time).
    """

    size: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 1
    channels: tuple[int, ...] | None = None
    lr_mlp: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size & (self.size - 1) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be a power of two in [{MIN_SIZE}, {MAX_SIZE}], got {self.size}")
        if min(self.style_dim, self.n_mlp, self.channel_multiplier) < 1 or self.lr_mlp <= 0:
            raise ValueError(f"style_dim, n_mlp, channel_multiplier and lr_mlp must be positive, got {self}")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
            if len(self.channels) != self.log_size - 1 or min(self.channels) < 1:
                raise ValueError(f"channels needs {self.log_size - 1} positive widths (4 px to {self.size} px), "
                                 f"got {self.channels}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Rows of a W+ code: 2·log2(size) − 2 (14 at 256 px, 18 at 1024 px)."""
        return 2 * self.log_size - 2

    @property
    def num_layers(self) -> int:
        """Number of StyledConvs, which is also the number of noise inputs: 2·log2(size) − 3."""
        return 2 * self.log_size - 3

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel widths at resolutions 4, 8, ..., size."""
        return self.channels if self.channels is not None else standard_channels(self.size, self.channel_multiplier)


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> GeneratorConfig:
    """Architecture of an official-layout generator state dict (``checkpoint['g_ema']``), from its keys and shapes.

    The size comes from the number of ``to_rgbs``, ``style_dim`` and ``n_mlp`` from the mapping layers and
    the widths from the conv weights. Standard widths give ``channel_multiplier`` 1 or 2 and ``channels=None``.
    ``lr_mlp`` cannot be read from weights and keeps the official 0.01. Raises WeightsError (one line) when a
    key read here is missing or the shapes read do not chain into one generator.
    """
    name = "StyleGAN2 generator"
    style_dim = shape_of(state_dict, "style.1.weight", name)[1]
    mapping = sorted(int(m[1]) for m in map(re.compile(r"style\.(\d+)\.weight").fullmatch, state_dict) if m)
    check(mapping == list(range(1, len(mapping) + 1)), name,
          f"mapping layers style.<i>.weight for i in {mapping}, not 1..n")
    for i in mapping:
        check(shape_of(state_dict, f"style.{i}.weight", name) == (style_dim, style_dim), name,
              f"style.{i}.weight is not [{style_dim}, {style_dim}] like style.1.weight")
    n_rgb = count_indexed(state_dict, "to_rgbs.", ".conv.weight")
    size = 2 ** (n_rgb + 2)
    check(MIN_SIZE <= size <= MAX_SIZE, name, f"{n_rgb} to_rgbs layers means {size} px, "
                                              f"outside the supported {MIN_SIZE}-{MAX_SIZE} px")
    widths = (shape_of(state_dict, "conv1.conv.weight", name)[1],) + tuple(
        shape_of(state_dict, f"convs.{2 * m}.conv.weight", name)[1] for m in range(n_rgb))
    expected = {"input.input": (1, widths[0], 4, 4), "conv1.conv.weight": (1, widths[0], widths[0], 3, 3)}
    for m, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
        expected[f"convs.{2 * m}.conv.weight"] = (1, c_out, c_in, 3, 3)
        expected[f"convs.{2 * m + 1}.conv.weight"] = (1, c_out, c_out, 3, 3)
    for key, shape in expected.items():
        got = shape_of(state_dict, key, name)
        check(got == shape, name, f"'{key}' has shape {list(got)}, the other layers need {list(shape)}")
    standard = [cm for cm in (1, 2) if widths == standard_channels(size, cm)]
    try:
        return GeneratorConfig(size=size, style_dim=style_dim, n_mlp=len(mapping),
                               channel_multiplier=standard[0] if standard else 1,
                               channels=None if standard else widths)
    except ValueError as e:
        raise WeightsError(f"{name} weights: inconsistent architecture ({e})") from None


def _conv_memory_format(x: torch.Tensor) -> torch.memory_format:
    """Channels-last for convolutions on CPU/CUDA (oneDNN and cuDNN are faster with it); contiguous elsewhere."""
    return torch.channels_last if x.device.type in ("cpu", "cuda") else torch.contiguous_format


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter and downsample each channel (StyleGAN2's ``upfirdn2d``).

    Args:
        x: ``(B, C, H, W)``.
        kernel: ``(kh, kw)`` FIR filter, applied as a true convolution (flipped, then correlated).
        up: zero insertion factor: ``up − 1`` zeros after every sample, on both axes.
        down: keep every ``down``-th output sample.
        pad: ``(before, after)`` zero padding of both axes after upsampling; negative values crop.

    Returns:
        ``(B, C, (H·up + before + after − kh) // down + 1, (W·up + before + after − kw) // down + 1)``.
    """
    b, c, h, w = x.shape
    if up > 1:
        upsampled = x.new_zeros(b, c, h * up, w * up)
        upsampled[:, :, ::up, ::up] = x
        x = upsampled
    before, after = pad
    symmetric = before == after and before >= 0
    if not symmetric:
        x = F.pad(x, (before, after, before, after))
    x = x.contiguous(memory_format=_conv_memory_format(x))
    weight = kernel.flip((0, 1)).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, padding=before if symmetric else 0, groups=c)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``leaky_relu(x + bias, 0.2)·√2`` with ``bias`` on dim 1 of ``x`` (rosinality's FusedLeakyReLU, CPU path)."""
    bias = bias.view(1, -1, *[1] * (x.ndim - 2))
    if inplace:
        return F.leaky_relu_(x.add_(bias), LEAKY_SLOPE).mul_(ACTIVATION_GAIN)
    return F.leaky_relu(x + bias, LEAKY_SLOPE) * ACTIVATION_GAIN


def truncate(w_plus: torch.Tensor, truncation: float, truncation_latent: torch.Tensor | None) -> torch.Tensor:
    """Truncation trick ``w̄ + ψ·(w − w̄)`` on every row of ``w_plus``; ψ = 1 returns ``w_plus`` itself.

    Args:
        w_plus: ``(B, n_latent, D)`` codes.
        truncation: ψ.
        truncation_latent: w̄, ``(1, D)`` or anything broadcastable to ``w_plus``; needed unless ψ = 1.
    """
    if truncation == 1:
        return w_plus
    if truncation_latent is None:
        raise ValueError(f"truncation {truncation} needs a truncation_latent (e.g. Generator.mean_latent())")
    w_bar = truncation_latent.to(dtype=w_plus.dtype, device=w_plus.device)
    return w_bar + truncation * (w_plus - w_bar)


class PixelNorm(nn.Module):
    """``x / sqrt(mean(x²) + 1e-8)`` over the last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + EPS)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: ``y = x @ (W·lr_mul/√in)ᵀ + b·lr_mul``.

    With ``activation`` the fused leaky ReLU follows (bias added inside it).
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class FirFilter(nn.Module):
    """A fixed 2-D FIR filter, ``outer(k, k) / sum(k)² · gain``, applied by ``upfirdn2d``."""

    def __init__(self, kernel_1d: tuple[int, ...], pad: tuple[int, int], up: int = 1, gain: float = 1.0):
        super().__init__()
        k = torch.tensor(kernel_1d, dtype=torch.float32)
        self.register_buffer("kernel", torch.outer(k, k) / k.sum() ** 2 * gain)
        self.pad = pad
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.up, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style, then (optionally) demodulated.

    Official form: ``W'_b = W/√(C_in·k²) · s_b`` and ``W''_b = W'_b / √(Σ W'_b² + 1e-8)`` per output channel,
    then a grouped conv. Computed here in the equal, faster form that modulates the activations:
    ``conv(x·s_b, W/√(C_in·k²)) · d_b`` with one shared-weight conv for the whole batch, where
    ``d_b[o] = 1/√(Σ_i s_b[i]²·Σ_kk (W[o,i]/√(C_in·k²))² + 1e-8)``. 1×1 convs use the per-sample weights
    ``W''_b`` in a batched matmul. ``upsample`` doubles the size: transposed conv with stride 2, then
    the [1,3,3,1] blur.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        if upsample:
            # rosinality ModulatedConv2d: p = (len(blur) − factor) − (k − 1),
            # pad = ((p+1)//2 + factor − 1, p//2 + 1)
            p = (len(BLUR_KERNEL) - 2) - (kernel_size - 1)
            self.blur = FirFilter(BLUR_KERNEL, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=UPSAMPLE_GAIN)
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self._weight_cache = None                               # see _prepared_weight

    def forward(self, x: torch.Tensor, w: torch.Tensor, overwrite_input: bool = False) -> torch.Tensor:
        """``x (B, C_in, H, W)``, ``w (B, style_dim)`` → ``(B, C_out, H', W')`` (``H' = 2H`` if upsampling).

        ``overwrite_input`` lets the modulation reuse ``x``'s memory (only when the caller no longer needs it).
        """
        out, d = self.undemodulated(x, w, overwrite_input)
        if d is None:
            return out
        return out * d if torch.is_grad_enabled() else out.mul_(d)

    def undemodulated(self, x: torch.Tensor, w: torch.Tensor,
                      overwrite_input: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(out, d)``: the output before demodulation and the demodulation factors ``d (B, C_out, 1, 1)``
        (None for 1×1 convolutions and without demodulation, whose ``out`` is final); ``forward`` is ``out·d``.
        A caller multiplies ``d`` in together with its own per-channel terms (one pass over the map)."""
        s = self.modulation(w)                                  # (B, C_in)
        if self.kernel_size == 1:
            return self._pointwise(x, self.weight[0, :, :, 0, 0] * self.scale, s), None
        b = s.shape[0]
        s_map = s.view(b, -1, 1, 1)
        memory_format = _conv_memory_format(x)
        x = (x.mul_(s_map) if overwrite_input else x * s_map).contiguous(memory_format=memory_format)
        weight, squares = self._prepared_weight(memory_format)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.kernel_size // 2)
        if not self.demodulate:
            return out, None
        return out, torch.rsqrt(s.square() @ squares + EPS).view(b, -1, 1, 1)

    def _prepared_weight(self, memory_format: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv weight (scaled, transposed for upsampling, in ``memory_format``) and ``Σ_kk W²`` as
        ``(C_in, C_out)``.

        Unless autograd must see the ops (gradients enabled and ``self.weight`` requiring them) the pair is kept
        and reused while ``self.weight`` is the same tensor object with the same storage and version counter, so
        in-place updates (optimiser steps, ``load_state_dict``), swapped parameters
        (``torch.func.functional_call``) and ``.to()`` all recompute it.
        """
        param = self.weight
        grad = torch.is_grad_enabled()
        key = None
        if not (grad and param.requires_grad) and not param.is_inference():
            key = (param.data_ptr(), param._version, param.dtype, param.device, memory_format)
            cached = self._weight_cache
            if (cached is not None and cached[0]() is param and cached[1] == key
                    and not (grad and cached[2][0].is_inference())):
                return cached[2]
        weight = param[0] * self.scale                          # (C_out, C_in, k, k)
        squares = weight.square().sum((2, 3)).t()
        if self.upsample:
            weight = weight.transpose(0, 1)
        prepared = weight.contiguous(memory_format=memory_format), squares.contiguous()
        if key is not None:
            self._weight_cache = (weakref.ref(param), key, prepared)
        return prepared

    def _pointwise(self, x: torch.Tensor, weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        weight = weight * s[:, None, :]                         # (B, C_out, C_in)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(2, keepdim=True) + EPS)
        b, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, c)     # a view for channels-last x
        return torch.bmm(pixels, weight.transpose(1, 2)).view(b, h, w, -1).permute(0, 3, 1, 2)


class NoiseInjection(nn.Module):
    """``x + weight·noise`` with one learned scalar ``weight``; ``noise`` is ``(B or 1, 1, H, W)``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return x.addcmul_(self.weight, noise) if inplace else torch.addcmul(x, self.weight, noise)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU (slope 0.2) and gain √2."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, inplace)


class StyledConv(nn.Module):
    """Modulated 3×3 conv (demodulated, optionally upsampling), then noise, bias and leaky ReLU.

    ``fused_epilogue`` (class attribute, True): without autograd, demodulation, noise, bias and activation run
    as two passes over the map (equal up to float rounding); False runs them one by one (bench comparison).
    """

    fused_epilogue = True

    def __init__(self, in_channel: int, out_channel: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor,
                overwrite_input: bool = False) -> torch.Tensor:
        """``x (B, C_in, H, W)``, ``w (B, style_dim)``, ``noise (B or 1, 1, H', W')`` → ``(B, C_out, H', W')``."""
        if torch.is_grad_enabled() or not self.fused_epilogue:
            out = self.conv(x, w, overwrite_input)
            inplace = not torch.is_grad_enabled()               # ``out`` is ours: reuse it unless autograd records
            return self.activate(self.noise(out, noise, inplace), inplace)
        # Without autograd, in two passes over the map instead of five: leaky_relu is positively homogeneous, so
        # leaky(out·d + n·noise + bias)·g = leaky(out·(d·g) + (n·g)·noise + bias·g), the first two terms in one op.
        out, d = self.conv.undemodulated(x, w, overwrite_input)
        gain = ACTIVATION_GAIN
        torch.addcmul(self.activate.bias.view(1, -1, 1, 1) * gain, out, d * gain, out=out)
        return F.leaky_relu_(out.addcmul_(self.noise.weight * gain, noise), LEAKY_SLOPE)


class ToRGB(nn.Module):
    """Modulated 1×1 conv to RGB (no demodulation) plus bias, added to the upsampled RGB skip of the step before."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            # rosinality Upsample(factor 2): p = len(kernel) − factor, pad = ((p+1)//2 + factor − 1, p//2)
            p = len(BLUR_KERNEL) - 2
            self.upsample = FirFilter(BLUR_KERNEL, pad=((p + 1) // 2 + 1, p // 2), up=2, gain=UPSAMPLE_GAIN)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, C, H, W)``, ``w (B, style_dim)``, ``skip (B, 3, H/2, W/2)`` → ``(B, 3, H, W)``."""
        out = self.conv(x, w) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    """The learned 4×4 input tensor of the synthesis network."""

    def __init__(self, channels: int):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        """``(batch, C, 4, 4)`` copies of the constant."""
        return self.input.repeat(batch, 1, 1, 1)


@dataclass(frozen=True)
class ResumePoint:
    """The synthesis state right after StyledConv ``layer``, before any shift there and its ToRGB: what a second
    pass with the same code needs to continue from that layer without recomputing the ones before.

    Attributes:
        layer: StyledConv index k (see the module docstring).
        feature: its output ``(B, C_k, H_k, W_k)`` (never modified in place).
        skip: the RGB accumulated before it, ``(B, 3, H, W)``; None when k = 0.
    """

    layer: int
    feature: torch.Tensor
    skip: torch.Tensor | None


@dataclass
class Synthesis:
    """Result of ``Generator.synthesize``.

    Attributes:
        image: ``(B, 3, size, size)``, roughly in [-1, 1], not clamped.
        w_plus: ``(B, n_latent, style_dim)`` code the synthesis used (after mapping and truncation).
        features: StyledConv outputs by index k (see the module docstring), after any shift at k.
        resume: the state after the layer ``keep_resume_point`` named, else None.
    """

    image: torch.Tensor
    w_plus: torch.Tensor
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    resume: ResumePoint | None = None


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network ``style`` (z → w) and the synthesis network (W+ → image).

    For speed, run it under ``torch.inference_mode()`` or ``torch.no_grad()``: without autograd it reuses
    its own intermediate tensors in place. Any float dtype works once the module is cast (``.to(dtype)``).
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        c, widths = config, config.widths
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(c.style_dim, c.style_dim, lr_mul=c.lr_mlp, activation=True) for _ in range(c.n_mlp)])
        self.input = ConstantInput(widths[0])
        self.conv1 = StyledConv(widths[0], widths[0], c.style_dim)
        self.to_rgb1 = ToRGB(widths[0], c.style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for in_channel, out_channel in zip(widths, widths[1:]):
            self.convs.append(StyledConv(in_channel, out_channel, c.style_dim, upsample=True))
            self.convs.append(StyledConv(out_channel, out_channel, c.style_dim))
            self.to_rgbs.append(ToRGB(out_channel, c.style_dim))
        self.noises = nn.Module()
        for k in range(c.num_layers):
            side = 2 ** ((k + 5) // 2)                          # 4, 8, 8, 16, 16, ...
            self.noises.register_buffer(f"noise_{k}", torch.randn(1, 1, side, side))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping network f: ``z (..., style_dim)`` → ``w (..., style_dim)`` (official ``G.style``)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Truncation centre w̄ ``(1, style_dim)``: mean of ``mapping(z)`` over ``n`` standard-normal z.

        z is drawn on the CPU from ``torch.Generator().manual_seed(seed)``, so w̄ is the same on every device.
        """
        z = torch.randn(n, self.config.style_dim, generator=torch.Generator().manual_seed(seed))
        ref = self.input.input
        return self.mapping(z.to(device=ref.device, dtype=ref.dtype)).mean(0, keepdim=True)

    def forward(self, latent: torch.Tensor, **kwargs) -> torch.Tensor:
        """The image ``(B, 3, size, size)`` of ``synthesize(latent, **kwargs)``."""
        return self.synthesize(latent, **kwargs).image

    def synthesize(
        self,
        latent: torch.Tensor,
        *,
        input_is_latent: bool = True,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        randomize_noise: bool = False,
        generator: torch.Generator | None = None,
        read_features: Iterable[int] = (),
        feature_shifts: Mapping[int, torch.Tensor] | None = None,
        keep_resume_point: int | None = None,
        resume_from: ResumePoint | None = None,
    ) -> Synthesis:
        """Generate images, optionally reading or shifting intermediate features.

        Args:
            latent: w ``(B, style_dim)`` (used for every row) or W+ ``(B, n_latent, style_dim)``; z of the
                same shapes when ``input_is_latent`` is False (the mapping is applied first).
            truncation: ψ; ``w̄ + ψ·(w − w̄)`` is applied to every W+ row (also for W/W+ input, as in the
                official fork). ψ = 1: none.
            truncation_latent: w̄ ``(1, style_dim)``, e.g. ``mean_latent()``; needed unless ψ = 1.
            randomize_noise: False uses the stored ``noises.noise_k`` buffers (deterministic, the official
                fork's default); True draws fresh ``(B, 1, H, W)`` normal noise per layer.
            generator: random source of the fresh noise (on its own device), for reproducible draws.
            read_features: indices k of the StyledConv outputs to return in ``Synthesis.features``.
            feature_shifts: ``{k: Δf_k}``, each broadcastable to StyledConv k's output ``(B, C_k, H_k, W_k)``,
                added to it before the next layer (``f_k ← f_k + Δf_k``); earlier layers are unaffected.
            keep_resume_point: a StyledConv index k whose state to return in ``Synthesis.resume``.
            resume_from: a ``ResumePoint`` of an earlier call with the same ``latent`` and settings: layers up
                to its k are not run again (shifts before k are then not applied); its tensors are not changed.

        Returns:
            ``Synthesis`` with the image ``(B, 3, size, size)``, the W+ code used and the requested features.
        """
        c = self.config
        read = set(read_features)
        shifts = dict(feature_shifts or {})
        kept = {keep_resume_point} - {None}
        bad = sorted(k for k in read | set(shifts) | kept if not 0 <= k < c.num_layers)
        if bad:
            raise ValueError(f"feature indices {bad} out of range: StyledConvs are 0..{c.num_layers - 1}")
        w_plus = truncate(self._w_plus(latent, input_is_latent), truncation, truncation_latent)
        batch = w_plus.shape[0]
        noises = self._noises(batch, randomize_noise, generator, w_plus)
        autograd = torch.is_grad_enabled()
        to_rgbs = [self.to_rgb1, *self.to_rgbs]
        layers = [self.conv1, *self.convs]
        start, resume, features = 0, None, {}
        if resume_from is not None:
            start, x, skip = resume_from.layer, resume_from.feature, resume_from.skip
            if tuple(x.shape[:1]) != (batch,):
                raise ValueError(f"the resume point holds {x.shape[0]} samples, the latent {batch}")
        else:
            x, skip = self.input(batch), None
        for k in range(start, c.num_layers):
            # The input of layer k may be reused in place unless it is the constant, a returned or kept feature
            # or needed by autograd.
            if resume_from is None or k > start:
                x = layers[k](x, w_plus[:, k], noises[k],
                              overwrite_input=k > 0 and not ({k - 1} & (read | kept)) and not autograd)
            if k in kept:
                resume = ResumePoint(k, x, skip)
            if k in shifts:
                shift = shifts[k].to(dtype=x.dtype, device=x.device)
                x = x + shift if autograd or k == start or k in kept else x.add_(shift)
            if k in read:
                features[k] = x
            if k % 2 == 0:
                skip = to_rgbs[k // 2](x, w_plus[:, k + 1], skip)
        return Synthesis(skip.contiguous(), w_plus, features, resume)

    def _w_plus(self, latent: torch.Tensor, input_is_latent: bool) -> torch.Tensor:
        """``(B, n_latent, style_dim)`` code in the module's dtype from w / W+ (or z) input."""
        c = self.config
        if latent.shape[-1] != c.style_dim or latent.ndim not in (2, 3) or \
                (latent.ndim == 3 and latent.shape[1] != c.n_latent):
            raise ValueError(f"latent must be (B, {c.style_dim}) or (B, {c.n_latent}, {c.style_dim}), "
                             f"got {tuple(latent.shape)}")
        latent = latent.to(dtype=self.input.input.dtype)
        if not input_is_latent:
            latent = self.mapping(latent)
        return latent if latent.ndim == 3 else latent[:, None].expand(-1, c.n_latent, -1)

    def _noises(self, batch: int, randomize: bool, generator: torch.Generator | None,
                like: torch.Tensor) -> list[torch.Tensor]:
        """Noise input of every StyledConv: the stored buffers ``(1, 1, H, W)`` or fresh ``(B, 1, H, W)`` draws."""
        stored = [getattr(self.noises, f"noise_{k}") for k in range(self.config.num_layers)]
        if not randomize:
            return stored
        device = generator.device if generator is not None else like.device
        return [torch.randn((batch, 1, *n.shape[2:]), generator=generator, device=device, dtype=like.dtype)
                .to(like.device) for n in stored]


# --- model kind ---------------------------------------------------------------------------------------------

REFERENCE_SOURCE = ("the official repository https://github.com/StelaBou/stylegan_directions_face_reenactment "
                    "(links in its README)")
MEAN_LATENT_KEY = "mean_latent"  # model files: the truncation centre w̄, [1, style_dim], beside the state dict
# Truncation centre of converted generators without a stored w_avg: mean of mapping(z) over this many z
# drawn from a CPU generator with this seed (the official code draws 4096 unseeded; reference-method §5 #10).
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0
RANDOM_MEAN_LATENT_SAMPLES = 512  # w̄ of a random test generator (cheaper; its value is not a result)


def _from_official(parts: OfficialParts) -> Converted:
    converted = Converted(parts.config, dict(parts.state_dict))
    if parts.latent_avg is not None:
        if parts.latent_avg.numel() != parts.config.style_dim:
            raise WeightsError(f"latent_avg has shape {tuple(parts.latent_avg.shape)}, "
                               f"expected [{parts.config.style_dim}]")
        converted.extra_tensors[MEAN_LATENT_KEY] = parts.latent_avg.reshape(1, -1).to(torch.float32)
        converted.metadata[MEAN_LATENT_KEY] = "checkpoint latent_avg"
    return converted


def _converted_extras(module: Generator, parts: OfficialParts) -> tuple[dict, dict]:
    if parts.latent_avg is not None:
        return {}, {}
    with torch.no_grad():
        w_bar = module.mean_latent(MEAN_LATENT_SAMPLES, MEAN_LATENT_SEED)
    how = f"mean of mapping(z) over {MEAN_LATENT_SAMPLES} z, CPU generator seed {MEAN_LATENT_SEED}"
    return {MEAN_LATENT_KEY: w_bar}, {MEAN_LATENT_KEY: how}


def _file_name(config: GeneratorConfig, metadata: Mapping[str, str]) -> str:
    """The method's VoxCeleb generator keeps the canonical name; others say what they are."""
    from_ffhq = metadata.get(MEAN_LATENT_KEY) == "checkpoint latent_avg"
    if not from_ffhq and config.size == 256:
        return KIND.canonical_file
    return f"stylegan2-{'ffhq' if from_ffhq else 'custom'}-{config.size}.safetensors"


KIND = ModelKind(
    name="stylegan2", title="StyleGAN2 generator", role=INFERENCE, model_class=Generator,
    config_class=GeneratorConfig, canonical_file="stylegan2-voxceleb-256.safetensors",
    official_file="stylegan-voxceleb.pt", source=REFERENCE_SOURCE,
    rebuilt_buffer_suffixes=REBUILT_BUFFER_SUFFIXES, config_from_state_dict=config_from_state_dict,
    from_official=_from_official, converted_extras=_converted_extras,
    extra_tensors=lambda module, config, seed: {MEAN_LATENT_KEY: module.mean_latent(RANDOM_MEAN_LATENT_SAMPLES, seed)},
    extra_shapes=lambda config: {MEAN_LATENT_KEY: (1, config.style_dim)},
    probe_input=lambda config, extras, device, dtype: (extras[MEAN_LATENT_KEY].to(device, dtype),),
    file_name=_file_name,
)
