"""Feature-space refinement encoder E_F (IJCV 2024 extension; spec training-and-fsr.md §1.4c, §1.5 Stage F, §5).

E_F looks at the source crop x_s, what the inversion misses of it (x_s − G_ψ(w_s)) and the coarse reenacted
face G_ψ(w_r), and predicts a shift Δf_k of one generator feature map, applied in the reenacted pass as
``f_k ← f_k + Δf_k`` to restore hair and background. No official weights exist; this is the design of the spec:

- **Trunk:** IR-SE units (the e4e / ArcFace IR-SE-50 units, ``IRSEUnit``) up to the stage at 1/8 of the input
  (32² at 256 px), so a trainer can start it from ArcFace weights; the first conv takes 9 channels.
- **Head:** FeatureStyleEncoder's ``content_layer`` (InterDigitalInc/FeatureStyleEncoder,
  ``nets/feature_style_encoder.py``): BN → conv3×3 → BN → PReLU → conv3×3 → BN, its last conv strided to 1/16
  of the input for a 16-px feature, or preceded by nearest upsampling for a 64-px one. The last BN is
  zero-initialised, so a new E_F gives Δf = 0 exactly.
- **Feature index k** counts StyledConvs as FeatureStyleEncoder does (``conv1`` is 1): k = 4 is the output of
  ``convs.2``, 16²×512 for the 256-px generator (spec §1.4c); k = 6 is 32²×512 and k = 8 64²×256 (cm 1). In
  ``reenact_core.models.stylegan2``'s own numbering (``conv1`` is 0) that is StyledConv ``k − 1``.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reenact_core.errors import InputError, WeightsError
from reenact_core.models.config import ModelConfig
from reenact_core.models.e4e import IRSEUnit
from reenact_core.models.kind import OPTIONAL, ModelKind
from reenact_core.models.stylegan2 import GeneratorConfig

DEFAULT_LAYER = 4               # spec §5 question 2: f_4 = output of convs.2 (FSE convention)
INPUT_CHANNELS = 9              # cat[x_s, x_s − G_ψ(w_s), G_ψ(w_r)], each RGB in [-1, 1] (spec §5 question 4)
TRUNK_STRIDE = 8                # the trunk ends at the 1/8 stage (32² at 256 px: FSE's block_3)
FEATURE_STRIDES = (16, 8, 4)    # feature sides E_F can emit, as input side / stride: 16, 32 and 64 px at 256 px
IDENTITY_KEYS = ("input.input",)          # tensors that identify a generator, with every ToRGB weight
IDENTITY_PATTERN = ("to_rgb", ".conv.weight")
IDENTITY_CHARS = 32             # hex digits of the SHA-256 kept


@dataclass(frozen=True)
class FSRConfig(ModelConfig):
    """Architecture of E_F for one generator feature (see ``for_generator``).

    Args:
        layer: feature index k, FeatureStyleEncoder's count (``conv1`` = 1; module docstring).
        feature_channels: C_k, channels of that feature.
        feature_size: its side H_k = W_k in pixels.
        input_size: side of the input images (the 256-px crops; larger renders are area-resampled to it).
        widths: channels of the three trunk stages (IR-SE-50: 64, 128, 256).
        units: IR-SE units per trunk stage (IR-SE-50: 3, 4, 14).
        se_reduction: channel reduction of the squeeze-excitation gates.
        head_width: channels inside the head (FSE: 512).
    """

    layer: int = DEFAULT_LAYER
    feature_channels: int = 512
    feature_size: int = 16
    input_size: int = 256
    widths: tuple[int, ...] = (64, 128, 256)
    units: tuple[int, ...] = (3, 4, 14)
    se_reduction: int = 16
    head_width: int = 512

    def __post_init__(self) -> None:
        if len(self.widths) != 3 or len(self.units) != 3 or min(self.units) < 1 or min(self.widths) < 1:
            raise ValueError(f"need 3 trunk stages with at least one unit each, got widths {self.widths}, "
                             f"units {self.units}")
        if self.se_reduction < 1 or min(self.widths) // self.se_reduction < 1:
            raise ValueError(f"se_reduction {self.se_reduction} leaves no channel for width {min(self.widths)}")
        if self.input_size < 64 or self.input_size & (self.input_size - 1):
            raise ValueError(f"input_size must be a power of two ≥ 64, got {self.input_size}")
        sides = [self.input_size // s for s in FEATURE_STRIDES]
        if self.feature_size not in sides:
            raise ValueError(f"feature_size must be one of {sides} for {self.input_size}-px input, "
                             f"got {self.feature_size}")
        if self.layer < 1 or min(self.feature_channels, self.head_width) < 1:
            raise ValueError(f"layer, feature_channels and head_width must be positive, got {self}")

    @property
    def generator_index(self) -> int:
        """The feature's StyledConv index in ``Generator.synthesize`` (``conv1`` = 0): k − 1."""
        return self.layer - 1

    @classmethod
    def for_generator(cls, generator: GeneratorConfig, layer: int = DEFAULT_LAYER, **fields) -> FSRConfig:
        """The config whose output fits feature k = ``layer`` of ``generator`` (from its channel table).

        Raises InputError when the generator has no such feature or its side is not one E_F emits.
        """
        channels, side = feature_shape(generator, layer)
        try:
            return cls(layer=layer, feature_channels=channels, feature_size=side, **fields)
        except ValueError as e:
            raise InputError(f"FSR layer {layer} ({side}×{side}×{channels}) cannot be refined: {e}") from None


def feature_shape(generator: GeneratorConfig, layer: int) -> tuple[int, int]:
    """``(C_k, H_k)`` of feature k = ``layer`` (FSE count, ``conv1`` = 1) of a generator.

    StyledConv k − 1 runs at ``4·2^⌊(k−1+1)/2⌋`` px (``conv1`` at 4, ``convs.0``/``convs.1`` at 8, ...).
    Raises InputError when k is not in 1..num_layers.
    """
    if not 1 <= layer <= generator.num_layers:
        raise InputError(f"FSR layer {layer} does not exist: this generator's StyledConvs are 1..{generator.num_layers}")
    level = layer // 2                                  # resolution step: 4 px at level 0
    return generator.widths[level], 4 * 2 ** level


class FeatureRefiner(nn.Module):
    """E_F: ``(B, 9, S, S)`` images in [-1, 1] → Δf_k ``(B, C_k, H_k, H_k)`` (module docstring).

    Use ``refiner_input`` to build the input. Attribute names follow the e4e / ArcFace IR-SE layout
    (``input_layer``, ``body``) plus FSE's ``content_layer``.
    """

    def __init__(self, config: FSRConfig = FSRConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        self.input_layer = nn.Sequential(nn.Conv2d(INPUT_CHANNELS, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]),
                                         nn.PReLU(w[0]))
        units = []
        for stage, (width, count) in enumerate(zip(w, config.units)):
            units.append(IRSEUnit(w[max(stage - 1, 0)], width, 2, config.se_reduction))
            units += [IRSEUnit(width, width, 1, config.se_reduction) for _ in range(count - 1)]
        self.body = nn.Sequential(*units)
        trunk_side = config.input_size // TRUNK_STRIDE
        stride = max(trunk_side // config.feature_size, 1)
        upsample = max(config.feature_size // trunk_side, 1)
        h = config.head_width
        self.content_layer = nn.Sequential(
            nn.BatchNorm2d(w[-1]), nn.Conv2d(w[-1], h, 3, 1, 1, bias=False), nn.BatchNorm2d(h), nn.PReLU(h),
            nn.Upsample(scale_factor=upsample, mode="nearest") if upsample > 1 else nn.Identity(),
            nn.Conv2d(h, config.feature_channels, 3, stride, 1, bias=False), nn.BatchNorm2d(config.feature_channels))
        last = self.content_layer[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (INPUT_CHANNELS, s, s):
            raise InputError(f"E_F expects inputs of shape (B, {INPUT_CHANNELS}, {s}, {s}), got {tuple(x.shape)}")
        return self.content_layer(self.body(self.input_layer(x)))


def resize_to(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, s, s)`` area-resampled to ``(B, C, size, size)`` (unchanged when ``s == size``)."""
    return image if image.shape[-1] == size else F.interpolate(image, size=(size, size), mode="area")


def source_context(crop: torch.Tensor, inversion: torch.Tensor, size: int) -> torch.Tensor:
    """The source half of E_F's input: ``cat[x_s, x_s − G_ψ(w_s)]`` ``(1, 6, size, size)``.

    Args:
        crop: x_s ``(1, 3, S, S)`` in [-1, 1].
        inversion: G_ψ(w_s) ``(1, 3, s, s)``, roughly in [-1, 1] (resampled to ``size``).
    """
    crop, inversion = resize_to(crop, size), resize_to(inversion.to(crop.dtype), size)
    return torch.cat([crop, crop - inversion], dim=1)


def refiner_input(context: torch.Tensor, reenacted: torch.Tensor) -> torch.Tensor:
    """E_F's input ``(B, 9, S, S)``: ``context`` (``source_context``, batch 1 or B) with G_ψ(w_r) ``(B, 3, s, s)``
    resampled to S."""
    reenacted = resize_to(reenacted.to(context.dtype), context.shape[-1])
    return torch.cat([context.expand(reenacted.shape[0], -1, -1, -1), reenacted], dim=1)


def check_fits(config: FSRConfig, generator: GeneratorConfig, name: str = "FSR") -> None:
    """Raises WeightsError (one line) unless E_F's output is feature k of ``generator`` in shape."""
    if not 1 <= config.layer <= generator.num_layers:
        raise WeightsError(f"{name} refines feature {config.layer}; this generator has features 1..{generator.num_layers}")
    channels, side = feature_shape(generator, config.layer)
    if (channels, side) != (config.feature_channels, config.feature_size):
        raise WeightsError(f"{name} predicts {config.feature_size}²×{config.feature_channels} shifts of feature "
                           f"{config.layer}; this generator's is {side}²×{channels}: made for another generator")


def generator_identity(tensors: Mapping[str, torch.Tensor]) -> str:
    """A fingerprint of a generator's weights: SHA-256 (first 32 hex digits) of its constant input and ToRGB
    weights as float32, in key order. Any retraining or fine-tuning changes it; the precision a copy is loaded
    in does not matter as long as the tensors given are the file's.

    Args:
        tensors: the generator's state dict, or at least the keys ``identity_keys`` lists.
    """
    digest = hashlib.sha256()
    for key in identity_keys(tensors):
        value = tensors[key].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(value.shape)};".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:IDENTITY_CHARS]


def identity_keys(keys) -> list[str]:
    """The keys of ``keys`` (a state dict or key list) that ``generator_identity`` hashes, sorted.

    Raises WeightsError when there is no constant input among them (not a generator).
    """
    keys = list(keys)
    chosen = sorted(k for k in keys if k in IDENTITY_KEYS or (k.startswith(IDENTITY_PATTERN[0])
                                                              and k.endswith(IDENTITY_PATTERN[1])))
    if not set(IDENTITY_KEYS) <= set(chosen):
        raise WeightsError(f"cannot identify a generator without {', '.join(IDENTITY_KEYS)}")
    return chosen


def randomise_output(module: FeatureRefiner, seed: int = 0) -> None:
    """Gives the zero-initialised last layer (BN scale and bias) standard-normal values drawn from ``seed``, so that
    a random-weight file (tests, self-checks) shifts the features instead of leaving them unchanged."""
    last = module.content_layer[-1]
    draw = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (last.weight, last.bias):
            p.copy_(torch.randn(p.shape, generator=draw))


KIND = ModelKind(
    name="fsr", title="FSR refinement encoder E_F", role=OPTIONAL, model_class=FeatureRefiner, config_class=FSRConfig,
    canonical_file="fsr-voxceleb-256.safetensors", official_file="",
    source="no published weights (the IJCV paper's are not released): an FSR file is trained for one generator",
    probe_input=lambda config, extras, device, dtype: (
        torch.zeros(1, INPUT_CHANNELS, config.input_size, config.input_size, device=device, dtype=dtype),),
)
