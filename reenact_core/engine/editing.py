"""Editing a prepared source along the learned directions: head pose, jaw and the 11 expressions.

Each direction of A has a name (official semantics, reference spec §1.8): ``yaw``, ``pitch``, ``roll`` in
degrees, ``jaw`` (mouth opening, DECA ``pose[3]``) in radians, ``exp_00`` .. ``exp_10`` (FLAME expression
coefficients; ``exp_00`` is the smile). A value is either a target (``mode="target"``, absolute, as the
reference's sweeps) or an offset from the source's own value (``mode="offset"``); directions not named keep the
source's value. The edit is the Δp between the source and the edited parameters, rendered like a driver frame,
so an edit that changes nothing renders exactly as no edit.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..options import BATCH_SIZE, EDIT_MODE, TRUNCATION
from ..params import VOXCELEB, NUM_DIRECTIONS, NUM_EXPRESSIONS, FaceParams, Normaliser, delta_p, denormalise
from .models import ReenactModels
from .plan import windows
from .render import Rendered, render
from .source import PreparedSource

DIRECTION_NAMES = ("yaw", "pitch", "roll", "jaw", *(f"exp_{i:02d}" for i in range(NUM_EXPRESSIONS)))
DEFAULT_SWEEP_STEPS = 21  # frames of a default sweep: the reference steps by S/10 over [−S, S]


def edit_delta_p(source: FaceParams, values: Mapping[str, float | Sequence[float]], mode: str = EDIT_MODE.default, *,
                 normaliser: Normaliser) -> torch.Tensor:
    """Δp of a batch of edits of one face.

    Args:
        source: the face's parameters, batch 1.
        values: direction name → value (degrees for yaw/pitch/roll, radians for jaw, coefficients for exp_XX),
            a number or a sequence of B numbers (one per edit; numbers are broadcast).
        mode: ``"target"`` (the value replaces the source's) or ``"offset"`` (it is added to the source's).
        normaliser: the normaliser of the A in use (``ReenactModels.normaliser``).

    Returns:
        (B, 15) float32 Δp on the parameters' device; 0 for directions not named.
    """
    EDIT_MODE.check(mode)
    unknown = sorted(set(values) - set(DIRECTION_NAMES))
    if unknown:
        raise InputError(f"unknown directions {unknown}; choose from {', '.join(DIRECTION_NAMES)}")
    columns = {name: torch.as_tensor(np.asarray(v, np.float32).reshape(-1), device=source.angles.device)
               for name, v in values.items()}
    lengths = {len(c) for c in columns.values()} - {1}
    if len(lengths) > 1 or not all(torch.isfinite(c).all() for c in columns.values()):
        raise InputError(f"edit values must be finite numbers or sequences of one length, got {dict(values)}")
    batch = lengths.pop() if lengths else 1
    edited = torch.cat([source.angles, source.jaw[:, None], source.exp], 1).float().repeat(batch, 1)
    for name, column in columns.items():
        i = DIRECTION_NAMES.index(name)
        edited[:, i] = column if mode == "target" else edited[:, i] + column
    target = FaceParams(edited[:, :3], edited[:, 3], edited[:, 4:])
    return delta_p(source, target, normaliser=normaliser)


def edit(source: PreparedSource, models: ReenactModels, values: Mapping[str, float | Sequence[float]],
         mode: str = EDIT_MODE.default, *, truncation: float = TRUNCATION.default, paste_back: bool = True,
         color_match: bool = False, batch_size: int = BATCH_SIZE.default) -> Rendered:
    """Renders the source with some directions set (``mode="target"``) or moved (``"offset"``).

    Args:
        values: see :func:`edit_delta_p`; B edits give B frames. ``{}`` renders the source unedited (Δp = 0).
        truncation: ψ toward the source's mean latent.
        paste_back: also paste the crops into the source image.
        batch_size: edits per A / G window (:func:`~reenact_core.engine.plan.windows` of the edit numbers).

    Returns:
        :class:`~reenact_core.engine.render.Rendered` with one (256, 256, 3) uint8 crop per edit (and pasted
        frames and masks).
    """
    shift = edit_delta_p(source.params, values, mode, normaliser=models.normaliser)
    return Rendered.concatenate([
        render(models.directions.module, models.generator.module, source, shift[rows], fsr=models.refiner,
               truncation=truncation, paste=paste_back, color_match=color_match)
        for rows in windows(np.arange(len(shift)), batch_size)])


def sweep_range(name: str, normaliser: Normaliser) -> tuple[float, float]:
    """The values of direction ``name`` that A was trained over: Δp units [−S, S] in the direction's own unit
    (official A: yaw ±40°, pitch and roll ±20°, jaw and expressions over the training ranges)."""
    if name not in DIRECTION_NAMES:
        raise InputError(f"unknown direction {name!r}; choose from {', '.join(DIRECTION_NAMES)}")
    i = DIRECTION_NAMES.index(name)
    ends = torch.zeros(2, NUM_DIRECTIONS, dtype=torch.float64)
    ends[:, i] = torch.tensor([-normaliser.shift_scale, normaliser.shift_scale], dtype=torch.float64)
    p = denormalise(ends, normaliser=normaliser)
    column = torch.cat([p.angles, p.jaw[:, None], p.exp], 1)[:, i]
    return float(column[0]), float(column[1])


def edit_limit(name: str) -> float:
    """The edit range ±limit of direction ``name`` offered to users (its own unit): twice the largest magnitude
    the official A was trained over (:func:`sweep_range` of ``VOXCELEB``), rounded up to 0.01, fixed before any A
    is loaded."""
    lo, hi = sweep_range(name, VOXCELEB)
    return math.ceil(200 * max(abs(lo), abs(hi))) / 100


def sweep(source: PreparedSource, models: ReenactModels, name: str, values: Sequence[float] | None = None,
          mode: str = "target", *, steps: int = DEFAULT_SWEEP_STEPS, **render_options) -> Rendered:
    """Renders the source along one direction.

    Args:
        name: the direction (see ``DIRECTION_NAMES``).
        values: its values, one frame each; None: ``steps`` target values evenly over :func:`sweep_range`
            (the reference's sweep, ``mode="target"``).
        mode: ``"target"`` or ``"offset"`` (see :func:`edit_delta_p`).
        render_options: ``truncation``, ``paste_back``, ``color_match``, ``batch_size`` of :func:`edit`.

    Returns:
        :class:`~reenact_core.engine.render.Rendered` with one frame per value.
    """
    if values is None:
        if steps < 2:
            raise InputError(f"a sweep needs at least 2 steps, got {steps}")
        values = np.linspace(*sweep_range(name, models.normaliser), steps)
    if len(values) == 0:
        raise InputError("a sweep needs at least one value")
    return edit(source, models, {name: values}, mode, **render_options)
