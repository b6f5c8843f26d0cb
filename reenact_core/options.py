"""The user-facing options, declared once: name, choices or range, default and meaning.

The library checks values with these declarations, the command line builds its flags from them
(:func:`add_argument`) and the ComfyUI nodes build their widgets from them, so a choice list, a default or a range
exists in one place. Importing this module imports nothing heavy (no torch).

Names follow the method: the driver's motion is Δp (``delta_p``), scaled by ``strength``; ``smoothing`` is the
One-Euro smoothing strength of landmarks and parameters, in [0, 1].
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .method import TRUNCATION as _PSI
from .method import TUNE_STEPS as _REENACT_TUNE_STEPS

AUTO = "auto"
AUTO_STEPS = -1      # "auto" tuning where a widget holds only numbers (the Reenact nodes' tune_steps)


def _label(name: str) -> str:
    return name.replace("_", " ")


@dataclass(frozen=True)
class Choice:
    """An option taking one of ``choices`` (strings); ``default`` is one of them."""

    name: str
    choices: tuple[str, ...]
    default: str
    help: str

    def check(self, value: str) -> str:
        """``value`` when it is one of the choices, else InputError naming the option and the choices."""
        if value not in self.choices:
            raise InputError(f"{_label(self.name)} must be one of {', '.join(self.choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class Number:
    """A number option in ``[minimum, maximum]`` (``integer``: whole numbers only); ``step`` is a widget's step."""

    name: str
    default: float | int
    minimum: float | int
    maximum: float | int
    help: str
    integer: bool = False
    step: float | None = None

    def check(self, value: float | int) -> float | int:
        """``value`` when it is a finite number in range (a whole one for integer options), else InputError."""
        whole = isinstance(value, int) and not isinstance(value, bool)
        if (self.integer and not whole) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not self.minimum <= value <= self.maximum:
            what = "a whole number" if self.integer else "a number"
            raise InputError(f"{_label(self.name)} must be {what} in [{self.minimum}, {self.maximum}], "
                             f"got {value!r}")
        return value


DEVICES = "auto, cpu, cuda, cuda:N or mps"   # what --device takes (checked by reenact_core.arguments.check_device)
MODE = Choice("mode", ("absolute", "relative"), "absolute",
              "absolute: the source takes the driver's pose and expression (the paper); relative: the source keeps "
              "its own and moves as the driver moves from its first face")
NO_FACE = Choice("no_face", ("raise", "pass", "hold"), "hold",
                 "Driver frames without a face: raise stops with an error naming the frame, pass outputs the "
                 "unchanged source, hold repeats the previous result")
FACE = Choice("face", ("largest", "score"), "largest",
              "which face to take when there are several: the largest or the most confident detection (or an index "
              "from the left, 0 = leftmost)")
LENGTH = Choice("length", ("stop", "loop", "pingpong"), "stop",
                "when the requested length exceeds the driver: stop at its end, loop it, or play it forward and "
                "backward")
EDIT_MODE = Choice("edit_mode", ("offset", "target"), "offset",
                   "offset: edit values are added to the source's own; target: they are the values the face takes")

STRENGTH = Number("strength", 1.0, 0.0, 3.0, "Factor on the motion Δp (1 = as measured; above 1 exaggerates)",
                  step=0.05)
SMOOTHING = Number("smoothing", 0.5, 0.0, 1.0,
                   "Temporal smoothing of the driver's landmarks and parameters (One-Euro; 0 = off)",
                   step=0.05)
FPS = Number("fps", 30.0, 1.0, 240.0,
             "frame rate of frames that carry none (image sequences, image batches): the smoothing's time "
             "constants and an image driver's output rate", step=0.001)
TRUNCATION = Number("truncation", _PSI, 0.0, 1.0, "Truncation ψ toward the mean face (the paper: 0.7; 1 = none)",
                    step=0.01)
BATCH_SIZE = Number("batch_size", 8, 1, 256, "Frames per network batch (more is faster on a GPU, uses more memory)",
                    integer=True)
TUNE_STEPS = Number("tune_steps", _REENACT_TUNE_STEPS, 0, 5000,
                    "steps tuning the generator's upper layers to the source (the paper reenacts with 200 and edits "
                    "with 0; 0 = off)", integer=True)
EDIT_TUNE_STEPS = 0   # the paper edits from the e4e inversion alone
COMPILE = Choice("compile", ("off", "on"), "off",
                 "on: compile e4e and DECA with torch.compile (about 0.6-0.85x their time after a first call of tens "
                 "of seconds; needs a C++ compiler on a CPU, Triton on a GPU)")
THREADS = Number("threads", 0, 0, 1024,
                 "CPU threads of torch in this process; 0 = torch's own count, one per core, which bench/threads.py "
                 "measured best both alone and beside other work with the command line's short OpenMP spin "
                 "(README: 'Shared machines'); under torchrun the default is 1 per rank", integer=True)
FACE_INDEX = Number("face_index", 0, 0, 63, "position of the face from the left (0 = leftmost)", integer=True)


def tune_steps(value: int | str, *, driving: bool, joint_pair: bool = False) -> int:
    """Tuning steps for ``value``: a count, or ``"auto"`` (:data:`AUTO_STEPS` from a widget) = 0 for an encoder
    and A trained together (``joint_pair``, training-and-fsr §1.5) or for editing, else 200 for reenactment
    (``driving``)."""
    if value in (AUTO, AUTO_STEPS):
        return EDIT_TUNE_STEPS if joint_pair or not driving else TUNE_STEPS.default
    return TUNE_STEPS.check(value)


def face_select(value: str | int) -> str | int:
    """A face selection: one of :data:`FACE`'s choices, or a face index ≥ 0 (digits accepted)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return FACE.check(value)


def add_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, option: Choice | Number, flag: str,
                 help: str | None = None, **kwargs: Any) -> argparse.Action:
    """Adds ``flag`` for ``option`` with its choices or type, its default and its help (``help`` replaces it).

    ``default=None`` leaves the flag unset when not given (the caller tells an explicit value from the default,
    which the help still shows)."""
    text = (help or option.help).replace("%", "%%")
    if isinstance(option, Choice):
        kwargs.setdefault("choices", option.choices)
    else:
        kwargs.setdefault("type", _checked(option))
    kwargs.setdefault("default", option.default)
    shown = option.default if kwargs["default"] is None else kwargs["default"]
    return parser.add_argument(flag, help=f"{text} (default {shown})", **kwargs)


def _checked(option: Number):
    def parse(text: str):
        try:
            value = int(text) if option.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option.name} takes a {'whole ' if option.integer else ''}number, "
                                             f"got {text!r}") from None
        try:
            return option.check(value)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = option.name
    return parse
