"""The driving session's steps on their own (align, measure, motion, render, composite; each given only the
networks it runs), composed by ``windows`` and ``frame_rows`` as the granular ComfyUI nodes
compose them: they give the session's output bit for bit at every batch size.

Tiny random networks (DECA calibrated on the driver, see test_engine); real faces from the test media.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine_fixtures import calibrate_deca, video_frames, with_blanks
from reenact_core.engine import (DriveOptions, DriverMotion, ReenactModels, composite, drive, estimate_codes,
                                 frame_rows, load_reenact_models, prepare_source, render, windows)
from reenact_core.errors import NoFaceError, WeightsError
from reenact_core.faces.alignment import FaceAligner
from reenact_core.landmarks import detect_faces
from reenact_core.faces.reference_crop import crop_using_landmarks
from reenact_core.faces.smoothing import DEFAULT_FPS
from reenact_core.weights import KINDS, load_model, make_random_checkpoint, make_tiny_model_set, tiny_config

DRIVER_FRAMES = 6
BATCH_SIZES = (1, 3, 8)   # one frame a window; blanks at a window's start and inside one; all frames in one window
BLANKS = [0, 4]           # positions of blank (faceless) frames in the driver


@pytest.fixture(scope="module")
def driver():
    return with_blanks(video_frames(0, DRIVER_FRAMES), BLANKS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, driver):
    folder = tmp_path_factory.mktemp("tiny_models")
    make_tiny_model_set(folder)
    calibrate_deca(folder / KINDS["deca"].canonical_file, np.delete(driver, BLANKS, axis=0))
    return folder


@pytest.fixture(scope="module")
def models(model_dir):
    return load_reenact_models([model_dir])


@pytest.fixture(scope="module")
def source(models):
    return prepare_source(video_frames(1, 1)[0], models)


def only(models: ReenactModels, *names: str) -> ReenactModels:
    """The same networks with all but ``names`` left out."""
    kept = {name: getattr(models, name) if name in names else None
            for name in ("generator", "e4e", "deca", "directions")}
    return ReenactModels(**kept, device=models.device, dtype=models.dtype)


def drive_by_steps(models, source, frames, options: DriveOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops, pasted frames and the rows of the faces they show, from the steps: every frame aligned, then DECA,
    Δp and G per window of ``batch_size`` frame indices, each given only the networks it runs, then the no-face
    policy and paste-back."""
    aligner = FaceAligner(options.select, options.no_face, options.smoothing, DEFAULT_FPS, options.backend)
    aligned = [aligner(frame) for frame in frames]
    faces = [face for face in aligned if face is not None]
    motion = DriverMotion(source.params, models.directions.config.normaliser, options, fps=DEFAULT_FPS)
    crops = []
    for rows in windows([face.index for face in faces], options.batch_size):
        group = faces[rows]
        codes = estimate_codes(models.deca.module, np.stack([f.crop for f in group]),
                               np.stack([f.kpt68 for f in group]))
        crops.append(render(models.directions.module, models.generator.module, source, motion(codes),
                            truncation=options.truncation, paste=False).crops)
    crops = np.concatenate(crops)
    pasted, _ = composite(source, crops)
    return crops, pasted, frame_rows([face is not None for face in aligned], options.no_face)


@pytest.mark.parametrize("batch_size, no_face, mode", [(b, *case) for b, case in zip(BATCH_SIZES, [
    ("hold", "absolute"), ("pass", "relative"), ("hold", "relative")])])
def test_steps_composed_by_windows_give_the_session_output(models, source, driver, no_face, mode, batch_size):
    options = DriveOptions(no_face=no_face, mode=mode, batch_size=batch_size)
    out = drive(models, source, driver, options)
    crops, pasted, rows = drive_by_steps(models, source, driver, options)
    assert out.indices.tolist() == list(range(len(driver))) and len(rows) == len(driver)
    assert [status == "driven" for status in out.status] == [i not in BLANKS for i in range(len(driver))]
    for frame, row in enumerate(rows):
        if row >= 0:
            assert np.array_equal(out.crops[frame], crops[row]) and np.array_equal(out.frames[frame], pasted[row])
        else:
            assert no_face == "pass" and np.array_equal(out.frames[frame], source.image)
    assert len({c.tobytes() for c in crops}) > 1, "the driver does not move the face: the comparison proves little"


def test_sessions_of_other_batch_sizes_agree_to_rounding(models, source, driver):
    """Batching changes only the float rounding of DECA and G: frames of batch sizes 1 and 8 agree to 1 level."""
    one, eight = (drive(models, source, driver, DriveOptions(batch_size=b)) for b in (1, 8))
    assert np.abs(one.crops.astype(int) - eight.crops).max() <= 1


def test_aligner_without_smoothing_crops_at_the_detected_landmarks(driver):
    aligner = FaceAligner(smoothing=0.0, no_face="pass")
    results = [aligner(frame) for frame in driver]
    assert [r is None for r in results] == [i in BLANKS for i in range(len(driver))]
    face = next(r for r in results if r is not None)
    landmarks = detect_faces(driver[face.index])[0].landmarks
    crop, transform = crop_using_landmarks(driver[face.index], landmarks)
    assert np.array_equal(face.landmarks, landmarks) and np.array_equal(face.crop, crop)
    assert face.transform == transform
    assert np.allclose(transform.crop_to_frame(face.kpt68), landmarks, atol=1e-3)


def test_aligner_raise_policy_names_the_frame(driver):
    aligner = FaceAligner(no_face="raise")
    aligner(driver[1])
    with pytest.raises(NoFaceError, match="frame 1"):
        aligner(driver[BLANKS[0]])


def test_partial_model_sets_say_which_network_a_step_lacks(models):
    with pytest.raises(WeightsError, match="directions"):
        _ = only(models, "deca").shift_scale
    with pytest.raises(WeightsError, match="generator"):
        _ = only(models, "directions").mean_latent


def test_partial_model_sets_are_checked_against_each_other(models, tmp_path):
    config = tiny_config("directions")
    narrow = dataclasses.replace(config, shift_dim=config.shift_dim // 2)
    other = load_model(make_random_checkpoint("directions", narrow, tmp_path / "a.safetensors"), "directions")
    ReenactModels(None, None, models.deca, other, models.device, models.dtype)   # nothing to compare A with
    with pytest.raises(WeightsError, match="do not belong together"):
        ReenactModels(models.generator, None, None, other, models.device, models.dtype)
