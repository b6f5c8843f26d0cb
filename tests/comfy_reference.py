"""What the ComfyUI tests put in a server's base folder, and the engine's results for the same inputs.

The example workflows read ``astronaut.png`` (``skimage.data.astronaut``, public domain), ``driver.png`` and
``driver.mp4``; the tests write the first from scikit-image and the drivers from the test media (which never
ship). Model files are tiny random ones (``make_tiny_model_set``, with an FSR file) in ``models/reenact/``, DECA's
normalisation statistics set from driver faces so that different faces give different parameters
(``calibrate_deca``).

The engine runs here in the test process with the same inputs and weights: images as ComfyUI's Load Image
gives them (float32 RGB in [0, 1]), and the Reenact node's widget values turned into engine arguments.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from conftest import require
from golden_fixtures import MEDIA
from reenact_core.engine import DriveOptions, load_reenact_models, prepare_source
from reenact_core.engine.pairing import resolve_tune_steps
from reenact_core.video import VideoReader
from reenact_core.weights import INFERENCE, KINDS, kind_names, make_tiny_model_set

MODEL_FOLDER = "reenact"                          # ComfyUI's models/reenact/ (the pack's folder key)
SOURCE_IMAGE, DRIVER_IMAGE, DRIVER_VIDEO = "astronaut.png", "driver.png", "driver.mp4"
REENACT_NODES = ("LatentReenactReenact", "LatentReenactReenactVideo")
CALIBRATION_FRAMES = 5                            # driver frames that set DECA's normalisation statistics
SAVED_TOLERANCE = 1e-5                            # engine float output vs the workflow's, before 8-bit saving


def prepare_base(base: Path) -> Path:
    """Writes the tiny model set and the example workflows' input files under ComfyUI base folder ``base``."""
    videos = sorted(MEDIA.glob("d*.mp4"))
    require(bool(videos), f"test videos in {MEDIA}")
    from engine_fixtures import calibrate_deca   # reads the shared golden manifest on import: after the check above

    folder = base / "models" / MODEL_FOLDER
    make_tiny_model_set(folder, kinds=[*kind_names(INFERENCE), "fsr"])
    calibrate_deca(folder / KINDS["deca"].canonical_file, next(VideoReader(videos[0]).chunks(CALIBRATION_FRAMES)))
    inputs = base / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(inputs / SOURCE_IMAGE)
    shutil.copy(videos[0], inputs / DRIVER_VIDEO)
    Image.fromarray(next(iter(VideoReader(videos[0])))).save(inputs / DRIVER_IMAGE)
    return base


def load_image(path: Path) -> np.ndarray:
    """An image file as ComfyUI's Load Image gives it: (H, W, 3) float32 RGB, 8-bit values / 255."""
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0


def with_widgets(prompt: dict, class_types: tuple[str, ...] = REENACT_NODES, **values) -> dict:
    """A copy of an API prompt with widget ``values`` set on every node of ``class_types``."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        if node["class_type"] in class_types:
            assert values.keys() <= node["inputs"].keys(), f"{node['class_type']} lacks {values.keys()}"
            node["inputs"].update(values)
    return prompt


def nodes_of(prompt: dict, class_type: str) -> list[str]:
    return [key for key, node in prompt.items() if node["class_type"] == class_type]


def engine_models(base: Path):
    return load_reenact_models([base / "models" / MODEL_FOLDER])


def drive_options(inputs: dict):
    """DriveOptions from a reenact node's widget values."""
    return DriveOptions(mode=inputs["mode"], pose=inputs["pose"], expression=inputs["expression"],
                        strength=inputs["strength"], smoothing=inputs["smoothing"], no_face=inputs["no_face"],
                        backend=inputs["backend"], paste_back=inputs["paste_back"],
                        color_match=inputs["color_match"], truncation=inputs["truncation"],
                        batch_size=inputs["batch_size"])


def prepared_source(models, inputs: dict, image: np.ndarray):
    """The engine's prepared source for a reenact node's widget values (tuning on MSE alone: no LPIPS file)."""
    return prepare_source(image, models, select=inputs["source_face"], backend=inputs["backend"],
                          tune_steps=resolve_tune_steps(inputs["tune_steps"], models.e4e, models.directions))


def assert_saved(png: np.ndarray, expected: np.ndarray, tol: float = SAVED_TOLERANCE) -> None:
    """Checks an 8-bit image written by Save Image against the engine's float image ``expected`` (H, W, 3) in
    [0, 1]: every pixel must be what Save Image writes (``uint8(clip(255·x))``) for some x within ``tol`` of the
    engine's value."""
    assert png.shape == expected.shape, f"saved {png.shape}, engine {expected.shape}"
    low, high = (np.clip(255.0 * (expected.astype(np.float64) + d), 0, 255).astype(np.uint8) for d in (-tol, tol))
    bad = (png < low) | (png > high)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{int(bad.sum())} values differ from the engine's beyond {tol}; first at {at}: "
                             f"saved {png[at]}, engine {expected[at]:.6f}")
