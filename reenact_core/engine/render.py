"""The render step: the source under a batch of Δp, ``w_r = w_s + A(Δp)`` on W+ rows ``0..L−1``, then G with
truncation ψ toward the source's mean latent w̄ and the checkpoint noise (reference spec §1.12); refined by the FSR
encoder when one is given (training-and-fsr §1.5). Takes A, G and, when given, E_F.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..imaging import image_to_tensor
from ..method import CROP_SIZE, TRUNCATION
from ..models.directions import DirectionMatrix, apply_shift
from ..models.fsr import FeatureRefiner, refiner_input, source_context
from ..models.stylegan2 import Generator, Synthesis
from .composite import composite
from .source import PreparedSource


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


def synthesize(generator: Generator, source: PreparedSource, w_plus: torch.Tensor, truncation: float,
               **kwargs) -> Synthesis:
    """G_ψ(w_plus) for ``source``: its tuned layers when it has them, truncation ψ toward its mean latent, the
    checkpoint noise; ``kwargs`` go to ``Generator.synthesize`` (feature reads, shifts, resume points)."""
    kwargs.update(truncation=truncation, truncation_latent=source.mean_latent)
    if source.tuned is None:
        return generator.synthesize(w_plus, **kwargs)
    return source.tuned.synthesize(generator, w_plus, **kwargs)


def fsr_context(generator: Generator, fsr: FeatureRefiner, source: PreparedSource,
                truncation: float = TRUNCATION) -> torch.Tensor:
    """The source half of the refinement encoder's input, ``cat[x_s, x_s − G_ψ(w_s)]`` ``(1, 6, S, S)`` on G's
    device in its dtype (one generator pass). A session computes it once per source."""
    weight = next(generator.parameters())
    source = source.to(weight.device, weight.dtype)
    with torch.no_grad():
        inversion = synthesize(generator, source, source.w_plus, truncation).image
        crop = image_to_tensor(source.crop).to(weight)
        return source_context(crop, inversion, fsr.config.input_size)


def _images(generator: Generator, fsr: FeatureRefiner | None, source: PreparedSource, w_plus: torch.Tensor,
            truncation: float, context: torch.Tensor | None) -> torch.Tensor:
    """G_ψ(w_r) ``(B, 3, s, s)``; with FSR the refined render: the coarse pass gives E_F's third input and, from its
    state after feature k, the second pass continues with ``f_k + Δf_k`` (layers before k run once)."""
    if fsr is None:
        return synthesize(generator, source, w_plus, truncation).image
    k = fsr.config.generator_index
    coarse = synthesize(generator, source, w_plus, truncation, keep_resume_point=k)
    if context is None:
        context = fsr_context(generator, fsr, source, truncation)
    delta_f = fsr(refiner_input(context, coarse.image))
    return synthesize(generator, source, w_plus, truncation, resume_from=coarse.resume,
                      feature_shifts={k: delta_f}).image


def render(directions: DirectionMatrix, generator: Generator, source: PreparedSource, delta_p: torch.Tensor, *,
           fsr: FeatureRefiner | None = None, truncation: float = TRUNCATION, paste: bool = True,
           color_match: bool = False, context: torch.Tensor | None = None) -> Rendered:
    """Renders the source under a batch of Δp (A, shift of rows 0..L−1, truncation, G; reference spec §1.12), refined
    by ``fsr`` when given (``f_k ← f_k + E_F(cat[x_s, x_s − G_ψ(w_s), G_ψ(w_r)])``, training-and-fsr §1.5).

    Args:
        directions: A (``LoadedModel.module`` of a ``directions`` file), on G's device in its dtype.
        generator: G (``LoadedModel.module`` of a ``stylegan2`` file); the render runs where its weights are.
        source: the prepared source (any device; moved to G's).
        delta_p: (B, 15) normalised pose/expression differences (:func:`reenact_core.params.delta_p`).
        fsr: the refinement encoder E_F made for ``generator``, or None (no refinement).
        truncation: ψ toward ``source.mean_latent``.
        paste: also paste each crop into ``source.image`` (the composite step, :func:`.composite.composite`).
        color_match: match the crops' colour statistics to the image under the mask before pasting.
        context: :func:`fsr_context` of this source and ψ, to skip recomputing it (FSR only).

    Returns:
        :class:`Rendered` with B crops (and pasted frames and masks when ``paste``).

    Raises:
        InputError: the source was prepared for a generator of another W+ shape.
    """
    g = generator.config
    if tuple(source.w_plus.shape[1:]) != (g.n_latent, g.style_dim):
        raise InputError(f"the prepared source holds a {tuple(source.w_plus.shape[1:])} W+ code, this generator "
                         f"takes ({g.n_latent}, {g.style_dim}): prepare it again with these models")
    weight = next(generator.parameters())
    source = source.to(weight.device, weight.dtype)
    with torch.no_grad():
        shift = directions(delta_p.to(weight))
        w_plus = apply_shift(source.w_plus.expand(shift.shape[0], -1, -1), shift)
        crops = image_to_uint8(_images(generator, fsr, source, w_plus, truncation, context))
    if not paste:
        return Rendered(crops, None, None)
    return Rendered(crops, *composite(source, crops, color_match=color_match))


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


