"""Frame rates as exact fractions (30000/1001 stays 30000/1001, never 29.97)."""
from __future__ import annotations

from fractions import Fraction

from ..errors import InputError

MAX_RATE_DENOMINATOR = 65535  # MPEG-4 Part 2 time bases must fit 16 bits (FFmpeg's mpeg4 encoder)


def exact_rate(fps: Fraction | float | int) -> Fraction:
    """A frame rate in frames per second as a ``Fraction``; floats snap to the nearest ratio with denominator ≤ 65535.

    Raises:
        InputError: the rate is not positive.
    """
    rate = Fraction(fps).limit_denominator(MAX_RATE_DENOMINATOR)
    if rate <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    return rate
