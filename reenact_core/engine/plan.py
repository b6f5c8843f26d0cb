"""How a driving run is planned over frames, shared by the session and the step nodes.

* :func:`windows`: the network batches. DECA, A and G run on windows of ``batch_size`` consecutive frame indices
  starting at multiples of ``batch_size``, whatever chunks the frames arrive in, so a chunked run and the step
  nodes compute what a one-shot run computes.
* :func:`frame_rows`: the no-face policy, the one place that turns "which frames had the tracked face" into
  output frames.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import NoFaceError
from ..options import BATCH_SIZE, NO_FACE


def windows(indices: Sequence[int] | np.ndarray, batch_size: int = BATCH_SIZE.default) -> list[slice]:
    """The network batches of faces at frame ``indices``.

    Args:
        indices: (N,) increasing frame indices of the faces (frames without a face are absent).
        batch_size: frames per window (≥ 1).

    Returns:
        Slices into the N rows, one per window holding at least one face, in order: rows whose frame indices
        fall in ``[k·batch_size, (k+1)·batch_size)``.
    """
    window = np.asarray(indices, np.int64) // BATCH_SIZE.check(int(batch_size))
    starts = [0, *(np.flatnonzero(np.diff(window)) + 1).tolist(), len(window)]
    return [slice(a, b) for a, b in zip(starts[:-1], starts[1:]) if b > a]


def frame_rows(has_face: Sequence[bool] | np.ndarray, no_face: str, *, first_index: int = 0,
               held: bool = False) -> np.ndarray:
    """What each of consecutive frames shows under the no-face policy.

    Args:
        has_face: (n,) whether each frame had the tracked face; its faces are rows 0, 1, … in frame order.
        no_face: ``"raise"``, ``"pass"`` or ``"hold"`` (:data:`reenact_core.options.NO_FACE`).
        first_index: frame index of ``has_face[0]`` (for the error message).
        held: ``"hold"`` only: an output of an earlier frame exists (frames before these ones had a face).

    Returns:
        (n,) int64: the row of the face each frame shows, or −1. A frame with a face shows its own. Under
        ``"pass"`` −1 is a frame without a face, shown as the source (or background) unchanged. Under ``"hold"``
        a frame without a face shows the last face before it; frames before the first face show the output held
        from earlier frames (−1, when ``held``) or else the first face; −1 everywhere when there is neither
        (nothing to show yet).

    Raises:
        NoFaceError: under ``"raise"``, naming the first frame without a face.
    """
    present = np.asarray(has_face, bool)
    NO_FACE.check(no_face)
    rows = np.where(present, np.cumsum(present) - 1, -1).astype(np.int64)
    if no_face == "raise" and not present.all():
        raise NoFaceError(f"no face to track in frame {first_index + int(np.argmin(present))}")
    if no_face == "hold" and present.any():
        rows = np.maximum.accumulate(rows)
        if not held:
            rows[rows < 0] = 0
    return rows
