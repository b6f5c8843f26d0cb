"""Per-source generator tuning, PTI-like (spec §1.6): fit the generator's upper StyledConvs to one source crop.

The shared generator is never changed. The tuned parameters are copies, kept per source in ``TunedLayers``, and
the shared module is run with them through ``torch.func.functional_call``, which puts them in place only for the
duration of one call and restores the shared tensors afterwards, also on errors (so do not render with the same
generator from another thread during that call).

Which parameters: the official code trains ``G.convs[4..11]`` of its 256-px generator, the StyledConvs at
32–256 px (conv weight, modulation weight/bias, noise weight, activation bias). For any size this is read as
"every StyledConv from 32 px up": ``convs[4..]`` (``convs[2j]``, ``convs[2j+1]`` run at 2^(j+3) px), so
``convs[4..15]`` at 1024 px. ``conv1``, ``convs[0..3]``, the ToRGBs and the mapping stay shared.

Precision: the tuned parameters are float32 copies (Adam's epsilon and small updates need it); the generator
runs in its own dtype with them cast to it, and the losses are computed in float32.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from itertools import chain

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from reenact_core.errors import InputError, Interrupted, WeightsError
from reenact_core.method import TRUNCATION, TUNE_STEPS
from reenact_core.models.lpips import ALEXNET_FILE, CONVERTED_FILE, LINEAR_FILE, LPIPS
from reenact_core.models.stylegan2 import Generator, Synthesis

logger = logging.getLogger(__name__)

TUNED_FROM_RESOLUTION = 32    # spec §1.6: convs[4..11] = the StyledConvs at 32-256 px of the 256-px generator
MSE_WEIGHT = 100.0            # spec §1.6: pt_l2_lambda = 100 when only some layers are tuned
LPIPS_WEIGHT = 1.0            # spec §1.6: hyperparameters.pt_lpips_lambda = 1
DEFAULT_LR = 3e-3             # spec §1.6: Adam(lr=3e-3), default betas

_TUNED_NAME = re.compile(r"convs\.(\d+)\.(conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias|"
                         r"noise\.weight|activate\.bias)")

ProgressCallback = Callable[[int, int, float, float], None]


def tuned_parameter_names(generator: Generator) -> list[str]:
    """Names (official keys) of the parameters tuning trains: every StyledConv ``convs[i]`` from 32 px up."""
    first = 2 * (int(math.log2(TUNED_FROM_RESOLUTION)) - 3)
    return [name for name, _ in generator.named_parameters()
            if (found := _TUNED_NAME.fullmatch(name)) and int(found[1]) >= first]


@dataclass
class TunedLayers:
    """Per-source values of the tuned generator parameters, to run the shared generator with.

    Attributes:
        params: official key (e.g. ``"convs.4.conv.weight"``) → tensor, float32 unless converted with ``to``.
    """

    params: dict[str, torch.Tensor]

    def synthesize(self, generator: Generator, latent: torch.Tensor, **kwargs) -> Synthesis:
        """``generator.synthesize(latent, **kwargs)`` with these parameters in place of the shared ones.

        The parameters are cast to the generator's device and dtype. Raises WeightsError when they do not fit
        this generator (tuned for another architecture).
        """
        self._check_fits(generator)
        return _synthesize_with(generator, self.params, latent, kwargs)

    def __call__(self, generator: Generator, latent: torch.Tensor, **kwargs) -> torch.Tensor:
        """The image ``(B, 3, size, size)`` of ``synthesize``."""
        return self.synthesize(generator, latent, **kwargs).image

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> TunedLayers:
        """A copy on ``device`` in ``dtype`` (to avoid converting at every call); no copy where nothing changes."""
        return TunedLayers({k: v.to(device=device, dtype=dtype) for k, v in self.params.items()})

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Contiguous CPU copies of ``params``, e.g. for ``safetensors.torch.save_file``."""
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.params.items()}

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> TunedLayers:
        """TunedLayers from ``state_dict()`` output. Raises WeightsError for a key that tuning never trains."""
        bad = [k for k in state_dict if not _TUNED_NAME.fullmatch(k)]
        if bad or not state_dict:
            raise WeightsError(f"not a set of tuned generator layers: unexpected keys {bad[:4]}" if bad
                               else "not a set of tuned generator layers: it is empty")
        return cls({k: v.detach().clone() for k, v in state_dict.items()})

    def _check_fits(self, generator: Generator) -> None:
        shared = dict(generator.named_parameters())
        wrong = [f"{k} {tuple(v.shape)}" for k, v in self.params.items()
                 if k not in shared or shared[k].shape != v.shape]
        if wrong:
            raise WeightsError(f"the tuned layers do not fit this generator (tuned for another one?): "
                               f"{', '.join(wrong[:4])}")


def tune_generator(
    generator: Generator,
    w_plus: torch.Tensor,
    target: torch.Tensor,
    *,
    mean_latent: torch.Tensor | None,
    steps: int = TUNE_STEPS,
    lr: float = DEFAULT_LR,
    truncation: float = TRUNCATION,
    lpips: LPIPS | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TunedLayers:
    """Fit the StyledConvs from 32 px up to one source (spec §1.6), leaving ``generator`` untouched.

    Minimises ``100·MSE(x̂, x_s) + 1·LPIPS(x̂, x_s)`` over ``steps`` Adam steps, where
    ``x̂ = G(w_s)`` with truncation ψ toward ``mean_latent`` and the stored noise; ``w_s`` is fixed. Without
    ``lpips`` the MSE term is used alone (a warning says so once per process). Works under
    ``torch.inference_mode()`` too.

    Args:
        generator: the shared generator (eval mode, no gradients); any device and dtype.
        w_plus: w_s, ``(1, n_latent, style_dim)``.
        target: x_s, ``(1, 3, S, S)`` in [-1, 1]; S = the generator's size, or a divisor of it (the render is
            then average-pooled to S, as the official ``generate_image``).
        mean_latent: w̄ ``(1, style_dim)``, the truncation centre used everywhere else (spec §5 #10); may be
            None only with ``truncation=1``.
        steps: Adam steps; lr: its learning rate; truncation: ψ.
        lpips: the perceptual term, e.g. from ``reenact_core.weights.find_lpips``.
        progress: called after every step as ``progress(step, steps, eta_seconds, loss)``, step counting from
            1; the ETA is the mean step time so far times the steps left.
        should_stop: polled before every step; True raises ``Interrupted``.

    Returns:
        The tuned parameters (float32, on the generator's device).
    """
    size = generator.config.size
    if w_plus.ndim != 3 or w_plus.shape[0] != 1:
        raise InputError(f"w_plus must be one W+ code (1, n_latent, style_dim), got {tuple(w_plus.shape)}")
    if target.ndim != 4 or target.shape[:2] != (1, 3) or target.shape[2] != target.shape[3] \
            or size % target.shape[2]:
        raise InputError(f"target must be one square image (1, 3, S, S) with S dividing {size}, "
                         f"got {tuple(target.shape)}")
    if steps < 0:
        raise ValueError(f"steps must be ≥ 0, got {steps}")
    if lpips is None:
        _warn_mse_only()
    names = tuned_parameter_names(generator)
    with torch.inference_mode(False), torch.enable_grad():
        shared = dict(chain(generator.named_parameters(), generator.named_buffers()))
        # Tensors made under inference mode cannot be saved for backward: run with normal copies of those.
        frozen = {k: v.clone() for k, v in shared.items() if v.is_inference() and k not in names}
        tuned = {k: shared[k].detach().to(torch.float32, copy=True).requires_grad_(True) for k in names}
        optimizer = torch.optim.Adam(tuned.values(), lr=lr)
        w_plus, target = w_plus.detach().clone(), target.detach().to(torch.float32, copy=True)
        mean_latent = None if mean_latent is None else mean_latent.detach().clone()
        started = time.perf_counter()
        for step in range(1, steps + 1):
            if should_stop is not None and should_stop():
                raise Interrupted(f"generator tuning stopped by the user at step {step} of {steps}")
            image = _synthesize_with(generator, {**frozen, **tuned}, w_plus, {
                "truncation": truncation, "truncation_latent": mean_latent}).image
            loss = reconstruction_loss(image, target, lpips)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(step, steps, elapsed / step * (steps - step), loss.item())
    return TunedLayers({k: v.detach() for k, v in tuned.items()})


def reconstruction_loss(image: torch.Tensor, target: torch.Tensor, lpips: LPIPS | None = None) -> torch.Tensor:
    """``100·MSE + 1·LPIPS`` (spec §1.6) of ``image`` against ``target`` ``(B, 3, S', S')`` in [-1, 1], float32.

    ``image`` ``(B, 3, S, S)`` is average-pooled to the target's size S' first when larger. Without ``lpips``
    only the MSE term.
    """
    image = image.to(torch.float32)
    if image.shape[-1] != target.shape[-1]:
        image = F.adaptive_avg_pool2d(image, target.shape[-2:])
    loss = MSE_WEIGHT * F.mse_loss(image, target)
    if lpips is not None:
        loss = loss + LPIPS_WEIGHT * lpips(image, target).mean().to(loss.device)
    return loss


class _Synthesize(nn.Module):
    """Runs ``generator.synthesize`` as its forward, so that ``functional_call`` can run it with other tensors."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor, kwargs: dict) -> Synthesis:
        return self.generator.synthesize(latent, **kwargs)


def _synthesize_with(generator: Generator, tensors: Mapping[str, torch.Tensor], latent: torch.Tensor,
                     kwargs: dict) -> Synthesis:
    """``generator.synthesize`` with ``tensors`` (official keys) in place of its own, cast to its device/dtype."""
    ref = generator.input.input
    replaced = {f"generator.{k}": v.to(device=ref.device, dtype=ref.dtype) for k, v in tensors.items()}
    return functional_call(_Synthesize(generator), replaced, (latent, kwargs))


@cache
def _warn_mse_only() -> None:
    logger.warning("LPIPS weights not found (%s, or %s and %s in the model folders): generator tuning uses the MSE "
                   "term alone", CONVERTED_FILE, ALEXNET_FILE, LINEAR_FILE)
