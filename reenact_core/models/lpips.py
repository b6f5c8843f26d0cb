"""LPIPS perceptual distance (Zhang et al., CVPR 2018), AlexNet v0.1, as the reference method uses it (spec §2.5).

``d(x, y) = Σ_l mean_hw( lin_l((f̂_l(x) − f̂_l(y))²) )`` where ``f̂_l`` are the AlexNet ReLU outputs 1–5 of the
shifted/scaled input, each unit-normalised over channels, and ``lin_l`` are non-negative 1×1 convs to one channel.

Attribute names are the keys of the two published files, so their state dicts load as they are:
``features.{0,3,6,8,10}.weight/bias`` of torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``; its
``classifier.*`` is not used) and ``lin{0..4}.model.1.weight`` ``[1, C, 1, 1]`` of PerceptualSimilarity v0.1
(``alex.pth``). A converted model file (``lpips-alex.safetensors``) holds both sets under the same keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reenact_core.models.config import ModelConfig
from reenact_core.models.kind import OPTIONAL, ModelKind

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
LINEAR_FILE = "alex.pth"
LINEAR_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
CONVERTED_FILE = "lpips-alex.safetensors"   # both sets of weights, official keys

# torchvision alexnet().features up to its last ReLU: (C_in, C_out, kernel, stride, padding) per conv; a 3×3/2
# max-pool follows the ReLUs of the first two convs. The ReLU outputs are at indices 1, 4, 7, 9, 11.
ALEXNET_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
                 (256, 256, 3, 1, 1))
POOLED_CONVS = 2
SHIFT = (-0.030, -0.088, -0.188)   # PerceptualSimilarity ScalingLayer: input (x − shift) / scale
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10                        # PerceptualSimilarity normalize_tensor
PROBE_SIZE = 64                    # side of the neutral images of the half-precision probe


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features[:12]``: 5 convs with ReLUs, max-pools after the first two."""
    layers: list[nn.Module] = []
    for i, (c_in, c_out, kernel, stride, padding) in enumerate(ALEXNET_CONVS):
        layers += [nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.ReLU()]
        if i < POOLED_CONVS:
            layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


class LinearHead(nn.Module):
    """PerceptualSimilarity ``NetLinLayer``: 1×1 conv C → 1 without bias (index 0 is its dropout, inactive)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@dataclass(frozen=True)
class LpipsConfig(ModelConfig):
    """LPIPS has one architecture here (AlexNet, linear heads v0.1); the config names it in model files."""

    net: str = "alex"
    version: str = "0.1"

    def __post_init__(self) -> None:
        if (self.net, self.version) != ("alex", "0.1"):
            raise ValueError(f"only LPIPS alex v0.1 is supported, got {self.net} v{self.version}")


class LPIPS(nn.Module):
    """LPIPS-AlexNet v0.1. Built with random weights; load the published ones with
    ``reenact_core.weights.find_lpips``.

    Runs in its own parameters' dtype and device (inputs are moved there); float32 is advised, as the
    normalisation's epsilon 1e-10 vanishes in float16.
    """

    def __init__(self, config: LpipsConfig = LpipsConfig()):
        super().__init__()
        self.config = config
        self.features = alexnet_features()
        self.feature_indices = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.ReLU)]
        for i, (_, channels, *_) in enumerate(ALEXNET_CONVS):
            setattr(self, f"lin{i}", LinearHead(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances of ``x`` and ``y`` ``(B, 3, H, W)`` in [-1, 1] (H, W ≥ 32) → ``(B,)``, on this module's device.

        0 for identical images; ≥ 0 with the published (non-negative) linear weights.
        """
        return self.layer_distances(x, y).sum(1)

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-layer terms ``(B, 5)`` of :meth:`forward` (same inputs), layer l = ``mean_hw(lin_l((f̂_l(x) − f̂_l(y))²))``."""
        batch = x.shape[0]
        features = self.normalised_features(torch.cat([x, y]))
        heads = [getattr(self, f"lin{i}") for i in range(len(features))]
        return torch.stack([head((f[:batch] - f[batch:]).square()).mean((1, 2, 3))
                            for head, f in zip(heads, features)], 1)

    def normalised_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The 5 ReLU outputs of ``images`` ``(B, 3, H, W)`` in [-1, 1], each divided by its channel norm."""
        weight = self.features[0].weight
        images = images.to(weight)
        h = (images - images.new_tensor(SHIFT).view(1, 3, 1, 1)) / images.new_tensor(SCALE).view(1, 3, 1, 1)
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.feature_indices:
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + EPS))
        return out


# --- model kind ---------------------------------------------------------------------------------------------

KIND = ModelKind(
    name="lpips", title="LPIPS (AlexNet, v0.1)", role=OPTIONAL, model_class=LPIPS, config_class=LpipsConfig,
    canonical_file=CONVERTED_FILE, official_file=f"{ALEXNET_FILE} + {LINEAR_FILE}",
    source=f"{ALEXNET_URL} and {LINEAR_URL}",
    probe_input=lambda config, extras, device, dtype: (
        torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=device, dtype=dtype),
        torch.full((1, 3, PROBE_SIZE, PROBE_SIZE), 0.5, device=device, dtype=dtype)),
)
