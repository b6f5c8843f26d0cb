"""The losses of training A (and the joint E_w / refinement trainers): shape, eye and mouth on FLAME decodes,
identity (ArcFace), LPIPS and pixel L1 (reference-method §3.5–3.6; official ``libs/criteria/losses.py``,
``id_loss.py``, ``utils_train.py: calculate_losses(_paired)``).

Images are ``(B, 3, 256, 256)`` RGB in [-1, 1]. FLAME parameters are DECA's: shape ``(B, 100)``, expression
``(B, 50)``, pose ``(B, 6)`` (axis-angle radians, global then jaw). Both meshes are decoded with the fixed camera
``[8, 0, 0]`` into the 224-px frame, so the geometric losses are in pixels of that frame.

The frozen networks (FLAME, ArcFace, LPIPS) are held by :class:`Frozen`: they stay in eval mode and get no
gradient whatever a trainer's ``.train()`` does, while gradients flow through them to the images and
parameters.

Reference mode (``LossOptions.reference()``) reproduces the reference, quirks included: ``legacy_255`` runs
LPIPS and the pixel L1 of paired training on 0..255 images (out of LPIPS's domain, and the L1 127.5× larger);
the default uses [-1, 1]. The Euler quirk of the ground truth is ``reference_euler`` of
:mod:`reenact_core.training.sampling`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..imaging import to_deca_input
from ..models.flame import FlameDecode

# iBUG-68 landmark pairs whose per-axis distances the eye and mouth losses compare (official losses.py).
EYE_PAIRS = ((36, 39), (37, 41), (38, 40), (42, 45), (43, 47), (44, 46))
MOUTH_PAIRS = ((48, 54), (49, 59), (50, 58), (51, 57), (52, 56), (53, 55), (60, 64), (61, 67), (62, 66), (63, 65))
# Identity crop of a 256-px image (pSp/e4e IDLoss): rows 35..222, columns 32..219, pooled to ArcFace's 112.
ID_CROP_SIZE = 256
ID_CROP_ROWS = (35, 223)
ID_CROP_COLS = (32, 220)
ID_INPUT_SIZE = 112
COSINE_EPS = 1e-6


class Frozen(nn.Module):
    """Holds a network frozen: eval mode and no parameter gradients, whatever ``train()`` is called with.

    ``Frozen(net)(...)`` calls ``net``; gradients still flow through it to its inputs.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> Frozen:
        self.training = mode
        self.network.eval()
        return self

    def forward(self, *args, **kwargs):
        return self.network(*args, **kwargs)


class FlameParams(NamedTuple):
    """DECA's FLAME parameters: shape ``(B, 100)``, exp ``(B, 50)``, pose ``(B, 6)`` (axis-angle radians)."""

    shape: torch.Tensor
    exp: torch.Tensor
    pose: torch.Tensor


class GeometryLosses(NamedTuple):
    """Shape, eye and mouth losses (scalars, pixels of the 224-px frame) and the per-pair terms ``(6,)``, ``(10,)``."""

    shape: torch.Tensor
    eye: torch.Tensor
    mouth: torch.Tensor
    eye_per_pair: torch.Tensor
    mouth_per_pair: torch.Tensor


def shape_loss(trans_verts_gt: torch.Tensor, trans_verts: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the decoded vertices ``(B, V, 3)`` over x, y and z (pixels)."""
    return (trans_verts_gt - trans_verts).abs().mean()


def landmark_pair_loss(landmarks_gt: torch.Tensor, landmarks: torch.Tensor,
                       pairs: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over ``pairs`` of ``mean |d_gt − d|``, with d the per-axis absolute difference of the two landmarks
    of a pair (``(B, 68, 2)`` inputs). Returns the loss and the per-pair terms ``(P,)``."""
    a, b = [list(side) for side in zip(*pairs)]
    d_gt = (landmarks_gt[:, a] - landmarks_gt[:, b]).abs()
    d = (landmarks[:, a] - landmarks[:, b]).abs()
    per_pair = (d_gt - d).abs().mean((0, 2))
    total = per_pair[0]
    for term in per_pair[1:]:
        total = total + term
    return total / len(pairs), per_pair


def geometry_losses(gt: FlameDecode, reenacted: FlameDecode) -> GeometryLosses:
    """Shape (all vertices), eye and mouth (2-D landmarks with the dynamic contour) losses of two decodes."""
    eye, eye_pairs = landmark_pair_loss(gt.landmarks2d, reenacted.landmarks2d, EYE_PAIRS)
    mouth, mouth_pairs = landmark_pair_loss(gt.landmarks2d, reenacted.landmarks2d, MOUTH_PAIRS)
    return GeometryLosses(shape_loss(gt.trans_verts, reenacted.trans_verts), eye, mouth, eye_pairs, mouth_pairs)


def identity_input(images: torch.Tensor) -> torch.Tensor:
    """The ID loss's face: ``images[:, :, 35:223, 32:220]`` of a 256-px image (the box scaled for other
    sizes), adaptive-average-pooled to 112 → ``(B, 3, 112, 112)``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"identity loss expects images (B, 3, H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    rows = [round(r * h / ID_CROP_SIZE) for r in ID_CROP_ROWS]
    cols = [round(c * w / ID_CROP_SIZE) for c in ID_CROP_COLS]
    return F.adaptive_avg_pool2d(images[:, :, rows[0]:rows[1], cols[0]:cols[1]], ID_INPUT_SIZE)


class IdentityLoss(nn.Module):
    """``1 − cos(φ(x), φ(x_ref))`` per sample ``(B,)``, φ = ArcFace on :func:`identity_input` (no alignment)."""

    def __init__(self, arcface: nn.Module):
        super().__init__()
        self.arcface = Frozen(arcface)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """ArcFace embeddings ``(B, 512)`` of ``(B, 3, 256, 256)`` images in [-1, 1]."""
        return self.arcface(identity_input(images))

    def similarity(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Cosine similarity ``(B,)`` of the two images' embeddings (torch's, eps 1e-6)."""
        return F.cosine_similarity(self.embed(images), self.embed(reference), dim=1, eps=COSINE_EPS)

    def forward(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return 1 - self.similarity(images, reference)


@dataclass(frozen=True)
class LossWeights:
    """λ of each term (official defaults; ``pixel`` is 1 in paired training, 0 otherwise)."""

    shape: float = 1.0
    eye: float = 1.0
    mouth: float = 1.0
    identity: float = 10.0
    lpips: float = 10.0
    pixel: float = 0.0


@dataclass(frozen=True)
class LossOptions:
    """How the losses are computed.

    Attributes:
        weights: the λ of each term.
        legacy_255: LPIPS and pixel L1 on 0..255 images (the reference's paired training) instead of [-1, 1].
        reference_euler: ground truth of a single-angle change through the reference's Euler round trip
            (read by the trainer for :func:`reenact_core.training.sampling.ground_truth_params`).
    """

    weights: LossWeights = LossWeights()
    legacy_255: bool = False
    reference_euler: bool = False

    @classmethod
    def reference(cls, paired: bool = False) -> LossOptions:
        """The reference's behaviour, quirks included (``paired`` adds the pixel term with λ 1)."""
        return cls(weights=LossWeights(pixel=1.0 if paired else 0.0), legacy_255=paired, reference_euler=True)

    def with_weights(self, **weights: float) -> LossOptions:
        return replace(self, weights=replace(self.weights, **weights))


def pixel_range(images: torch.Tensor, legacy_255: bool) -> torch.Tensor:
    """Images as LPIPS and the pixel loss see them: unchanged ([-1, 1]), or the reference's
    ``(clamp(x, −1, 1) + 1) / (2 + 1e-5) · 255`` when ``legacy_255``."""
    return to_deca_input(images) if legacy_255 else images


def pixel_loss(images: torch.Tensor, reference: torch.Tensor, legacy_255: bool = False) -> torch.Tensor:
    """Mean absolute difference of the images in :func:`pixel_range`."""
    return (pixel_range(images, legacy_255) - pixel_range(reference, legacy_255)).abs().mean()


def lpips_loss(lpips: nn.Module, images: torch.Tensor, reference: torch.Tensor,
               legacy_255: bool = False) -> torch.Tensor:
    """Batch mean of LPIPS on the images in :func:`pixel_range` (0 for identical images)."""
    return lpips(pixel_range(images, legacy_255), pixel_range(reference, legacy_255)).mean()


class TrainingLosses(nn.Module):
    """The weighted training objective. Networks absent (None) contribute no term (their λ must be 0).

    ``forward(images, reference, gt, reenacted)``:
        images: ``(B, 3, 256, 256)`` generated x_r in [-1, 1]; reference: the image it is compared with
            (the source for synthetic/real training, the target frame for paired training).
        gt, reenacted: :class:`FlameParams` of the ground truth and of DECA's estimate of x_r.
    Returns a dict of scalars: ``shape``, ``eye``, ``mouth``, ``identity``, ``lpips``, ``pixel`` (those
    computed) and ``total`` = Σ λ·term.
    """

    def __init__(self, flame: nn.Module, arcface: nn.Module | None = None, lpips: nn.Module | None = None,
                 options: LossOptions = LossOptions()):
        super().__init__()
        w = options.weights
        for name, net, weight in (("ArcFace", arcface, w.identity), ("LPIPS", lpips, w.lpips)):
            if net is None and weight:
                raise InputError(f"the {name} term has weight {weight} but no {name} network was given")
        self.options = options
        self.flame = Frozen(flame)
        self.identity = IdentityLoss(arcface) if arcface is not None else None
        self.lpips = Frozen(lpips) if lpips is not None else None

    def decode(self, params: FlameParams) -> FlameDecode:
        """FLAME decode with the fixed training camera."""
        return self.flame.network.decode(params.shape, params.exp, params.pose)

    def forward(self, images: torch.Tensor, reference: torch.Tensor, gt: FlameParams,
                reenacted: FlameParams) -> dict[str, torch.Tensor]:
        w, legacy = self.options.weights, self.options.legacy_255
        geometry = geometry_losses(self.decode(gt), self.decode(reenacted))
        terms = {"shape": geometry.shape, "eye": geometry.eye, "mouth": geometry.mouth}
        if self.identity is not None:
            terms["identity"] = self.identity(images, reference).mean()
        if self.lpips is not None:
            terms["lpips"] = lpips_loss(self.lpips, images, reference, legacy)
        if w.pixel:
            terms["pixel"] = pixel_loss(images, reference, legacy)
        # Accumulated in the reference's order: shape terms, then identity, LPIPS, pixel.
        total = (w.mouth * terms["mouth"] + w.shape * terms["shape"]) + w.eye * terms["eye"]
        for name in ("identity", "lpips", "pixel"):
            if name in terms:
                total = total + getattr(w, name) * terms[name]
        terms["total"] = total
        return terms
