"""A source face prepared once (crop, W+ inversion, DECA parameters, optional tuned layers) and rendered under Δp.

Rendering follows the official order (reference spec §1.12): ``Δw = A(Δp)`` is added to W+ rows ``0..L−1`` of
the source's code, then G applies truncation ψ toward the stored mean latent w̄ and uses its checkpoint noise.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ..errors import InputError, NoFaceError
from ..faces.images import check_image, to_uint8_rgb
from ..landmarks import DEFAULT_BACKEND, LandmarkBackend, detect_faces
from ..faces.paste_back import paste_back
from ..faces.reference_crop import CROP_SIZE, CropTransform, crop_using_landmarks
from ..faces.tracking import FaceTracker
from ..files import read_safetensors, write_safetensors
from ..imaging import image_to_tensor
from ..measure import measure_codes
from ..models.directions import apply_shift
from ..models.fsr import refiner_input, source_context
from ..models.stylegan2 import Synthesis
from ..params import FaceParams
from .models import ReenactModels
from .tuning import DEFAULT_TRUNCATION as TRUNCATION, TunedLayers, tune_generator

SOURCE_FORMAT = "latent-reenact-source"
SOURCE_FORMAT_VERSION = "1"
_TUNED_PREFIX = "tuned."


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


@dataclass
class Rendered:
    """Faces rendered from a prepared source.

    Attributes:
        crops: (n, 256, 256, 3) uint8 RGB generated crops.
        frames: (n, *source.image.shape) the crops pasted into the source image, in its layout and dtype; None
            without paste-back.
        masks: (n, H, W) float32 blend weights in [0, 1] of the pasted face; None without paste-back.
    """

    crops: np.ndarray
    frames: np.ndarray | None
    masks: np.ndarray | None

    def __len__(self) -> int:
        return len(self.crops)

    @classmethod
    def concatenate(cls, parts: Sequence[Rendered]) -> Rendered:
        """One result holding the frames of ``parts`` (at least one, all of this class), in order."""
        def join(values):
            if values[0] is None:
                return None
            return sum(values, ()) if isinstance(values[0], tuple) else np.concatenate(values)

        return cls(**{f.name: join([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def estimate_codes(models: ReenactModels, crops: np.ndarray, kpt68: np.ndarray) -> torch.Tensor:
    """DECA E_flame codes of reference crops, batched (official ``calculate_shapemodel`` on the 256-px crops).

    Args:
        crops: (B, 256, 256, 3) uint8 RGB crops.
        kpt68: (B, 68, 2) landmarks ``(x, y)`` in crop pixels (frame landmarks mapped by the crops' transforms).

    Returns:
        (B, 236) float32 codes on ``models.device``.
    """
    return measure_codes(models.deca.module, image_to_tensor(crops).to(models.device),
                         torch.as_tensor(np.asarray(kpt68, np.float32)))


def synthesize(models: ReenactModels, source: PreparedSource, w_plus: torch.Tensor, truncation: float,
               **kwargs) -> Synthesis:
    """G_ψ(w_plus) for ``source``: its tuned layers when it has them, truncation ψ toward its mean latent, the
    checkpoint noise; ``kwargs`` go to ``Generator.synthesize`` (feature reads, shifts, resume points)."""
    kwargs.update(truncation=truncation, truncation_latent=source.mean_latent)
    if source.tuned is None:
        return models.generator.module.synthesize(w_plus, **kwargs)
    return source.tuned.synthesize(models.generator.module, w_plus, **kwargs)


def fsr_context(models: ReenactModels, source: PreparedSource, truncation: float = TRUNCATION) -> torch.Tensor:
    """The source half of the refinement encoder's input, ``cat[x_s, x_s − G_ψ(w_s)]`` ``(1, 6, S, S)`` on the
    models' device (one generator pass; ``models.fsr`` is needed). A session computes it once per source."""
    source = source.to(models.device, models.dtype)
    with torch.no_grad():
        inversion = synthesize(models, source, source.w_plus, truncation).image
        crop = image_to_tensor(source.crop).to(models.device, models.dtype)
        return source_context(crop, inversion, models.fsr_module.config.input_size)


def _images(models: ReenactModels, source: PreparedSource, w_plus: torch.Tensor, truncation: float,
            context: torch.Tensor | None) -> torch.Tensor:
    """G_ψ(w_r) ``(B, 3, s, s)``; with FSR the refined render: the coarse pass gives E_F's third input and, from its
    state after feature k, the second pass continues with ``f_k + Δf_k`` (layers before k run once)."""
    if models.fsr is None:
        return synthesize(models, source, w_plus, truncation).image
    fsr = models.fsr_module
    k = fsr.config.generator_index
    coarse = synthesize(models, source, w_plus, truncation, keep_resume_point=k)
    if context is None:
        context = fsr_context(models, source, truncation)
    delta_f = fsr(refiner_input(context, coarse.image))
    return synthesize(models, source, w_plus, truncation, resume_from=coarse.resume,
                      feature_shifts={k: delta_f}).image


def render(models: ReenactModels, source: PreparedSource, delta_p: torch.Tensor, *, truncation: float = TRUNCATION,
           paste: bool = True, color_match: bool = False, context: torch.Tensor | None = None) -> Rendered:
    """Renders the source under a batch of Δp (A, shift of rows 0..L−1, truncation, G; reference spec §1.12), refined
    by ``models.fsr`` when given (``f_k ← f_k + E_F(cat[x_s, x_s − G_ψ(w_s), G_ψ(w_r)])``, training-and-fsr §1.5).

    Args:
        delta_p: (B, 15) normalised pose/expression differences (:func:`reenact_core.params.delta_p`).
        truncation: ψ toward ``source.mean_latent``.
        paste: also paste each crop into ``source.image`` (soft edge, see ``faces.paste_back``).
        color_match: match the crops' colour statistics to the image under the mask before pasting.
        context: :func:`fsr_context` of this source and ψ, to skip recomputing it (FSR only).

    Returns:
        :class:`Rendered` with B crops (and pasted frames and masks when ``paste``).
    """
    g = models.generator.config
    if tuple(source.w_plus.shape[1:]) != (g.n_latent, g.style_dim):
        raise InputError(f"the prepared source holds a {tuple(source.w_plus.shape[1:])} W+ code, this generator "
                         f"takes ({g.n_latent}, {g.style_dim}): prepare it again with these models")
    source = source.to(models.device, models.dtype)
    with torch.no_grad():
        shift = models.directions.module(delta_p.to(models.device, models.dtype))
        w_plus = apply_shift(source.w_plus.expand(shift.shape[0], -1, -1), shift)
        crops = image_to_uint8(_images(models, source, w_plus, truncation, context))
    if not paste:
        return Rendered(crops, None, None)
    matrix = source.transform.crop_to_frame_matrix()
    frames = np.empty((len(crops), *source.image.shape), source.image.dtype)
    masks = np.empty((len(crops), *source.image.shape[:2]), np.float32)
    for crop, frame, mask in zip(crops, frames, masks):
        frame[...], mask[...] = paste_back(source.image, crop, matrix, color_match=color_match)
    return Rendered(crops, frames, masks)


def image_to_uint8(image: torch.Tensor) -> np.ndarray:
    """Generator images (B, 3, s, s), roughly in [-1, 1], to (B, 256, 256, 3) uint8 RGB crops.

    Other sizes are area-resampled to 256 px (the official ``generate_image`` average-pools larger outputs);
    then clamp to [-1, 1] and ``⌊(x + 1)/2 · 255 + 0.5⌋``, as the official ``save_image(normalize=True)``.
    """
    image = image.float()
    if image.shape[-1] != CROP_SIZE:
        image = F.interpolate(image, size=(CROP_SIZE, CROP_SIZE), mode="area")
    u8 = ((image.clamp(-1, 1) + 1) / 2 * 255 + 0.5).to(torch.uint8)
    return u8.permute(0, 2, 3, 1).cpu().numpy()


def prepare_source(
    image: np.ndarray,
    models: ReenactModels,
    *,
    select: int | str = "largest",
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
            raise NoFaceError("no face found in the source image")
        landmarks = FaceTracker(select=select).update([faces])[0].face.landmarks
    landmarks = np.asarray(landmarks, dtype=np.float32)
    crop, transform = crop_using_landmarks(rgb, landmarks)
    kpt68 = transform.frame_to_crop(landmarks)[None]
    with torch.no_grad():
        w_plus = models.e4e.module(image_to_tensor(crop).to(models.device, models.dtype))
    source = PreparedSource(image, crop, transform, landmarks, w_plus, models.mean_latent,
                            estimate_codes(models, crop[None], kpt68))
    if tune_steps > 0:
        target = image_to_tensor(crop).to(models.device)
        source.tuned = tune_generator(models.generator.module, w_plus, target, mean_latent=models.mean_latent,
                                      steps=tune_steps, truncation=TRUNCATION, lpips=lpips, progress=progress,
                                      should_stop=should_stop)
    return source


def save_source(source: PreparedSource, path: str | Path) -> Path:
    """Writes a prepared source to one ``.safetensors`` file (tensors as float32 on the CPU; the image as is),
    atomically, with mode ``0666 & ~umask``."""
    tensors = {
        "image": torch.from_numpy(np.array(source.image)),   # a writable copy (inputs may be read-only views)
        "crop": torch.from_numpy(np.array(source.crop)),
        "landmarks": torch.from_numpy(np.array(source.landmarks, dtype=np.float32)),
        "w_plus": source.w_plus.detach().float().cpu().contiguous(),
        "mean_latent": source.mean_latent.detach().float().cpu().contiguous(),
        "deca_codes": source.deca_codes.detach().float().cpu().contiguous(),
    }
    if source.tuned is not None:
        for name, value in source.tuned.state_dict().items():
            tensors[_TUNED_PREFIX + name] = value.float()
    t = source.transform
    meta = {"format": SOURCE_FORMAT, "format_version": SOURCE_FORMAT_VERSION,
            "crop_transform": json.dumps({"box": list(t.box), "frame_hw": list(t.frame_hw), "size": t.size})}
    return write_safetensors(path, tensors, meta)


def load_source(path: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> PreparedSource:
    """Reads a file written by :func:`save_source`, latents and tuned layers on ``device`` in ``dtype``.

    Raises:
        InputError: the file is missing, unreadable or not a prepared source.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prepared source not found: {path}")
    tensors, meta = read_safetensors(path, error=InputError)
    if meta.get("format") != SOURCE_FORMAT or meta.get("format_version") != SOURCE_FORMAT_VERSION:
        raise InputError(f"{path.name}: not a prepared source (format {meta.get('format')!r} "
                         f"version {meta.get('format_version')!r})")
    required = ("image", "crop", "landmarks", "w_plus", "mean_latent", "deca_codes")
    absent = [k for k in required if k not in tensors]
    if absent or "crop_transform" not in meta:
        raise InputError(f"{path.name}: incomplete prepared source, lacks {absent or ['crop_transform']}")
    t = json.loads(meta["crop_transform"])
    tuned = {k[len(_TUNED_PREFIX):]: v for k, v in tensors.items() if k.startswith(_TUNED_PREFIX)}
    source = PreparedSource(
        image=tensors["image"].numpy(), crop=tensors["crop"].numpy(), landmarks=tensors["landmarks"].numpy(),
        transform=CropTransform(tuple(t["box"]), tuple(t["frame_hw"]), t["size"]),
        w_plus=tensors["w_plus"], mean_latent=tensors["mean_latent"], deca_codes=tensors["deca_codes"],
        tuned=TunedLayers.from_state_dict(tuned) if tuned else None)
    return source.to(device, dtype)
