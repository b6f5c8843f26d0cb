"""Whether the encoder E_w and the directions A were trained together (``train joint``), and what follows from it.

A jointly trained pair makes per-source generator tuning unnecessary (training-and-fsr §1.5, "optimisation-free
inference"): both exported files carry the same ``joint_pair`` value in their metadata. ``tune_steps = "auto"``
then means no tuning; otherwise the reference's 200 steps when reenacting. A joint encoder (or A) used with
another partner still runs, with a one-time warning.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from .. import options
from ..weights import LoadedModel

logger = logging.getLogger(__name__)

JOINT_PAIR_KEY = "joint_pair"     # metadata of both files of a pair exported by ``train joint``


def joint_pair_of(model: LoadedModel | None) -> str | None:
    """The ``joint_pair`` value in a loaded model file's metadata, or None."""
    return None if model is None else (model.metadata or {}).get(JOINT_PAIR_KEY)


def is_joint_pair(e4e: LoadedModel | None, directions: LoadedModel | None) -> bool:
    """True when both files were exported together by ``train joint`` (the same ``joint_pair`` value)."""
    pair = joint_pair_of(e4e)
    return pair is not None and pair == joint_pair_of(directions)


def warn_if_mismatched(e4e: LoadedModel | None, directions: LoadedModel | None) -> bool:
    """Logs a warning, once per pair of files and process, when one of the two was trained jointly with another
    partner than the other; returns whether they are mismatched."""
    if e4e is None or directions is None:
        return False
    pairs = joint_pair_of(e4e), joint_pair_of(directions)
    if pairs == (None, None) or pairs[0] == pairs[1]:
        return False
    _warn_once(Path(e4e.path).name, Path(directions.path).name, pairs[0] is not None)
    return True


@lru_cache(maxsize=None)
def _warn_once(e4e_name: str, directions_name: str, encoder_is_joint: bool) -> None:
    joint, other = (e4e_name, directions_name) if encoder_is_joint else (directions_name, e4e_name)
    logger.warning("%s was trained jointly with another %s than %s: results may be worse, and source tuning "
                   "stays at the reference's default; use the pair exported together by `train joint`",
                   joint, "A" if encoder_is_joint else "encoder", other)


def resolve_tune_steps(requested: int | str, e4e: LoadedModel | None, directions: LoadedModel | None,
                       reenacting: bool = True) -> int:
    """Generator tuning steps for a source (:func:`reenact_core.options.tune_steps` with the pair's metadata):
    ``requested`` when it is a count; ``"auto"`` (or ``options.AUTO_STEPS``): 0 for a jointly trained pair or
    when only editing (``reenacting=False``), else the reference's 200.

    Raises:
        InputError: neither a count in range nor "auto".
    """
    return options.tune_steps(requested, driving=reenacting, joint_pair=is_joint_pair(e4e, directions))
