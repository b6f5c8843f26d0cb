"""The source face prepared once: crop, W+ inversion (e4e), DECA parameters and optional tuned layers (uses e4e,
DECA and, to tune, G).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import InputError, NoFaceError
from ..faces.images import check_image, to_uint8_rgb
from ..faces.reference_crop import CropTransform, crop_using_landmarks
from ..faces.tracking import FaceTracker
from ..imaging import image_to_tensor
from ..landmarks import DEFAULT_BACKEND, LandmarkBackend, detect_faces, smallest_face_note
from ..method import TRUNCATION
from ..options import FACE, face_select
from ..params import FaceParams
from .measure import estimate_codes
from .models import ReenactModels
from .tuning import TunedLayers, tune_generator


@dataclass
class PreparedSource:
    """Everything the method needs from the source image, computed once.

    Attributes:
        image: the source image as given ((H, W) grey, (H, W, 1|3|4); uint8, uint16 or float in [0, 1]), the
            background that rendered faces are pasted into.
        crop: (256, 256, 3) uint8 RGB reference crop x_s (reference spec §1.2).
        transform: where ``crop`` lies in ``image``.
        landmarks: (68, 2) float32 iBUG-68 points ``(x, y)`` in ``image`` pixels.
        w_plus: (1, n_latent, style_dim) e4e inversion w_s (raw encoder output, no truncation).
        mean_latent: (1, style_dim) truncation centre w̄ the source is rendered with.
        deca_codes: (1, 236) float32 DECA E_flame codes of ``crop``.
        tuned: per-source generator layers (convs from 32 px up, see ``tuning``) or None.
    """

    image: np.ndarray
    crop: np.ndarray
    transform: CropTransform
    landmarks: np.ndarray
    w_plus: torch.Tensor
    mean_latent: torch.Tensor
    deca_codes: torch.Tensor
    tuned: TunedLayers | None = None

    @property
    def params(self) -> FaceParams:
        """The source's pose (degrees), jaw (radians) and 11 expression coefficients, batch 1."""
        return FaceParams.from_deca(self.deca_codes)

    def to(self, device: str | torch.device, dtype: torch.dtype) -> PreparedSource:
        """A copy whose latents and tuned layers are on ``device`` in ``dtype`` (the DECA codes stay float32)."""
        return replace(self, w_plus=self.w_plus.to(device, dtype), mean_latent=self.mean_latent.to(device, dtype),
                       deca_codes=self.deca_codes.to(device, torch.float32),
                       tuned=None if self.tuned is None else self.tuned.to(device, dtype))


def prepare_source(
    image: np.ndarray,
    models: ReenactModels,
    *,
    select: int | str = FACE.default,
    landmarks: np.ndarray | None = None,
    backend: str | LandmarkBackend = DEFAULT_BACKEND,
    tune_steps: int = 0,
    lpips: torch.nn.Module | None = None,
    progress: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PreparedSource:
    """Crops, inverts and measures a source face; optionally tunes G's convs 4..11 to it (reference "w/ opt.").

    Args:
        image: the source image ((H, W) grey, (H, W, 1|3|4); uint8, uint16 or float in [0, 1]).
        models: the loaded networks.
        select: the face to use when there are several: an index in left-to-right order, ``"largest"`` or
            ``"score"``.
        landmarks: (68, 2) iBUG-68 points ``(x, y)`` in image pixels, to skip detection.
        backend: landmark backend name or instance used for detection.
        tune_steps: generator tuning steps (official: 200 for reenactment, 0 for editing); 0 switches it off.
        lpips: LPIPS module for the tuning loss (``reenact_core.models.lpips``); None tunes on MSE alone.
        progress: tuning callback ``(step, total, eta_seconds, loss)``.
        should_stop: polled during tuning; True raises ``reenact_core.errors.Interrupted`` (G is unchanged).

    Raises:
        NoFaceError: no face (or not face ``select``) in the image.
        InputError: an invalid image, landmark set or step count.
    """
    image = np.ascontiguousarray(check_image(image))
    if tune_steps < 0:
        raise InputError(f"tune_steps must be ≥ 0, got {tune_steps}")
    rgb = to_uint8_rgb(image)
    if landmarks is None:
        faces = detect_faces(rgb, backend)
        if not faces:
            raise NoFaceError("no face found in the source image" + smallest_face_note(*rgb.shape[:2], backend))
        landmarks = FaceTracker(select=face_select(select)).update([faces])[0].face.landmarks
    landmarks = np.asarray(landmarks, dtype=np.float32)
    crop, transform = crop_using_landmarks(rgb, landmarks)
    kpt68 = transform.frame_to_crop(landmarks)[None]
    with torch.no_grad():
        e4e = models.e4e.module
        w_plus = e4e(image_to_tensor(crop).to(models.device, next(e4e.parameters()).dtype)).to(models.dtype)
    source = PreparedSource(image, crop, transform, landmarks, w_plus, models.mean_latent,
                            estimate_codes(models.deca.module, crop[None], kpt68))
    if tune_steps > 0:
        target = image_to_tensor(crop).to(models.device)
        source.tuned = tune_generator(models.generator.module, w_plus, target, mean_latent=models.mean_latent,
                                      steps=tune_steps, truncation=TRUNCATION, lpips=lpips, progress=progress,
                                      should_stop=should_stop)
    return source


