"""The self-check of `python -m reenact_core doctor`: the whole pipeline on tiny RANDOM weights.

It proves the installation works (detection, crops, e4e, DECA, A, StyleGAN2, paste-back, video writing); its
output is noise from random networks, never a real result.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .engine import DriveOptions, load_reenact_models, prepare_source
from .errors import ReenactError
from .pipeline import reenact_file
from .video import VideoReader, VideoWriter
from .weights import make_tiny_model_set

SELF_CHECK_FRAMES = 6


def sample_portrait() -> np.ndarray:
    """A public-domain portrait (scikit-image's ``astronaut``, NASA), (512, 512, 3) uint8 RGB."""
    try:
        from skimage import data
    except ImportError:
        raise ReenactError("the self-check needs scikit-image's sample portrait: pip install scikit-image") from None
    return data.astronaut()


def run_self_check(device: str = "cpu") -> str:
    """Runs source preparation, a short driven video and its writing on tiny random weights.

    Returns a one-paragraph report; raises ReenactError (or the underlying error) when a stage fails.
    """
    portrait = sample_portrait()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_tiny_model_set(tmp / "models")
        models = load_reenact_models([tmp / "models"], device=device)
        source = prepare_source(portrait, models)
        driver = tmp / "driver.mp4"
        with VideoWriter(driver, 25) as writer:   # the portrait moving a few pixels per frame
            writer.write(np.stack([np.roll(portrait, (2 * i, i), axis=(0, 1)) for i in range(SELF_CHECK_FRAMES)]))
        summary = reenact_file(models, source, driver, tmp / "out.mp4", DriveOptions(batch_size=4))
        written = sum(1 for _ in VideoReader(summary.output))
    if written != SELF_CHECK_FRAMES:
        raise ReenactError(f"self-check wrote {written} frames for a {SELF_CHECK_FRAMES}-frame driver")
    return (f"self-check passed on TINY RANDOM WEIGHTS ({device}): face found, crop, e4e inversion, DECA, "
            f"directions A, StyleGAN2, paste-back and a {written}-frame video all ran. This is NOT a real "
            f"result: the real model files are needed for that (see the README).")
