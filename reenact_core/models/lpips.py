"""LPIPS perceptual distance (Zhang et al., CVPR 2018), AlexNet v0.1, as the reference method uses it (spec §2.5).

``d(x, y) = Σ_l mean_hw( lin_l((f̂_l(x) − f̂_l(y))²) )`` where ``f̂_l`` are the AlexNet ReLU outputs 1–5 of the
shifted/scaled input, each unit-normalised over channels, and ``lin_l`` are non-negative 1×1 convs to one channel.

Attribute names are the keys of the two published files, so their state dicts load as they are:
``features.{0,3,6,8,10}.weight/bias`` of torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``; its
``classifier.*`` is not used) and ``lin{0..4}.model.1.weight`` ``[1, C, 1, 1]`` of PerceptualSimilarity v0.1
(``alex.pth``). A converted ``.safetensors`` holds both sets under the same keys.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from reenact_core.errors import MissingModelError, WeightsError
from reenact_core.weights.safe_load import load_checkpoint
from reenact_core.weights.store import check_state_dict_shapes

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


class LPIPS(nn.Module):
    """LPIPS-AlexNet v0.1. Built with random weights; load the published ones with ``load_lpips``/``find_lpips``.

    Runs in its own parameters' dtype and device (inputs are moved there); float32 is advised, as the
    normalisation's epsilon 1e-10 vanishes in float16.
    """

    def __init__(self):
        super().__init__()
        self.features = alexnet_features()
        self.feature_indices = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.ReLU)]
        for i, (_, channels, *_) in enumerate(ALEXNET_CONVS):
            setattr(self, f"lin{i}", LinearHead(channels))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

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
        h = (images.to(self.shift) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.feature_indices:
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + EPS))
        return out


def load_lpips(paths: Iterable[str | Path], device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> LPIPS:
    """LPIPS from weight files whose keys together cover the model: ``alexnet-owt-7be5be79.pth`` and ``alex.pth``
    (read with ``torch.load(weights_only=True)``), or one converted ``.safetensors``.

    AlexNet's ``classifier.*`` entries are ignored. Returns the module in eval mode without gradients.
    Raises WeightsError (one line) for an unreadable file or missing, unexpected or mis-shaped keys.
    """
    paths = [Path(p) for p in paths]
    state_dict: dict[str, torch.Tensor] = {}
    for path in paths:
        state_dict.update({k: v for k, v in _read_state_dict(path).items() if not k.startswith("classifier.")})
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in LPIPS().state_dict().items()}
    check_state_dict_shapes("LPIPS weights " + " + ".join(p.name for p in paths), expected,
                            {k: tuple(v.shape) for k, v in state_dict.items()})
    module = LPIPS()
    module.load_state_dict(state_dict, strict=True)
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)


def find_lpips(folders: Iterable[str | Path], device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> LPIPS | None:
    """LPIPS from :func:`lpips_files` of ``folders``; None when none of the files is present.

    Raises MissingModelError when only one of the two published files is found, WeightsError for bad files.
    """
    paths = lpips_files(folders)
    return load_lpips(paths, device, dtype) if paths else None


def lpips_files(folders: Iterable[str | Path]) -> list[Path]:
    """The first ``lpips-alex.safetensors`` in ``folders``, else ``alexnet-owt-7be5be79.pth`` and ``alex.pth``
    (each looked up in ``folders`` in order); ``[]`` when none of them is present.

    Raises MissingModelError when only one of the two published files is found.
    """
    folders = [Path(f) for f in folders]
    found = {name: next((f / name for f in folders if (f / name).is_file()), None)
             for name in (CONVERTED_FILE, ALEXNET_FILE, LINEAR_FILE)}
    if found[CONVERTED_FILE] is not None:
        return [found[CONVERTED_FILE]]
    if found[ALEXNET_FILE] is None and found[LINEAR_FILE] is None:
        return []
    for name, url in ((ALEXNET_FILE, ALEXNET_URL), (LINEAR_FILE, LINEAR_URL)):
        if found[name] is None:
            searched = ", ".join(str(f) for f in folders)
            raise MissingModelError(f"missing LPIPS file '{name}' (the other one was found); searched: {searched}. "
                                    f"Download it from {url}")
    return [found[ALEXNET_FILE], found[LINEAR_FILE]]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        state_dict = load_checkpoint(path)
        if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise WeightsError(f"{path.name}: expected a flat state dict of tensors")
        return state_dict
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path.name}: not a readable .safetensors file (truncated or corrupt?): {exc}") from None
