"""Shared inputs of the engine and node tests: a portrait and driver frames from the test media, blank frames, and a tiny random
DECA whose BatchNorm statistics come from real faces (so that different faces give different codes)."""
from __future__ import annotations

import numpy as np
import torch

from conftest import require
from golden_fixtures import MEDIA
from reenact_core.faces.deca_crop import deca_crop
from reenact_core.landmarks import detect_faces
from reenact_core.faces.reference_crop import crop_using_landmarks
from reenact_core.imaging import image_to_tensor
from reenact_core.video import VideoReader
from reenact_core.weights import load_model, save_model


def calibrate_deca(path, frames: np.ndarray) -> None:
    """Sets the BatchNorm statistics of a random DECA file to those of the faces in ``frames``.

    With random statistics every face gets the same codes (to about 1e-6); with statistics of real crops the
    codes vary from face to face about as much as a trained DECA's, so different drivers give different Δp.
    """
    deca = load_model(path, "deca", trainable=True)   # unfolded BatchNorms, statistics to set
    crops, kpt68 = [], []
    for frame in frames:
        landmarks = detect_faces(frame)[0].landmarks
        crop, transform = crop_using_landmarks(frame, landmarks)
        crops.append(crop)
        kpt68.append(transform.frame_to_crop(landmarks))
    image_224, _ = deca_crop(image_to_tensor(np.stack(crops)), torch.as_tensor(np.stack(kpt68), dtype=torch.float32))
    for module in deca.module.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: the statistics of this one batch
    with torch.no_grad():
        deca.module.train()(image_224)
    save_model(path, "deca", deca.config, deca.module.state_dict(), metadata=deca.metadata)


def source_photo():
    """Path of the first test portrait (``s*.jpg`` in the test media)."""
    photos = sorted(MEDIA.glob("s*.jpg"))
    require(bool(photos), f"test photos in {MEDIA}")
    return photos[0]


def video_frames(index: int, count: int) -> np.ndarray:
    videos = sorted(MEDIA.glob("d*.mp4"))
    require(len(videos) > index, f"test videos in {MEDIA}")
    frames = VideoReader(videos[index]).chunks(count)
    return next(frames)


def with_blanks(frames: np.ndarray, at: list[int]) -> np.ndarray:
    """``frames`` with a black frame inserted before each position of ``at`` (positions in the result)."""
    out = list(frames)
    for position in sorted(at):
        out.insert(position, np.zeros_like(frames[0]))
    return np.stack(out)
