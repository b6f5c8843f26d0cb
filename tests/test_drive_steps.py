"""The driving session's steps on their own (face alignment, driver motion, networks run from model sets holding
only what a step needs), composed by frame windows as the granular ComfyUI nodes compose them: they give the
session's output bit for bit.

Tiny random networks (DECA calibrated on the driver, see test_engine); real faces from the test media.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine_fixtures import calibrate_deca, video_frames, with_blanks
from reenact_core.engine import (DriveOptions, DriverMotion, ReenactModels, drive, estimate_codes,
                                 load_reenact_models, prepare_source, render)
from reenact_core.errors import NoFaceError, WeightsError
from reenact_core.faces.alignment import FaceAligner
from reenact_core.landmarks import detect_faces
from reenact_core.faces.reference_crop import crop_using_landmarks
from reenact_core.faces.smoothing import DEFAULT_FPS
from reenact_core.weights import KINDS, load_model, make_random_checkpoint, make_tiny_model_set, tiny_config

DRIVER_FRAMES = 5
BATCH = 3          # windows of 3 frames: the blank frames fall at a window's start and inside one
BLANKS = [0, 4]    # positions of blank (faceless) frames in the driver


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


def drive_by_steps(models, source, frames, options: DriveOptions) -> tuple[list[int], np.ndarray]:
    """Frame indices with a face and their crops, from the steps: every frame aligned, then DECA, Δp and G per
    window of ``batch_size`` frame indices, each on a model set holding only the networks it runs."""
    aligner = FaceAligner(options.select, options.no_face, options.smoothing, DEFAULT_FPS, options.backend)
    faces = [face for face in map(aligner, frames) if face is not None]
    motion = DriverMotion(source.params, models.normaliser, options, fps=DEFAULT_FPS)
    crops = []
    for window in sorted({face.index // options.batch_size for face in faces}):
        group = [face for face in faces if face.index // options.batch_size == window]
        codes = estimate_codes(only(models, "deca"), np.stack([f.crop for f in group]),
                               np.stack([f.kpt68 for f in group]))
        crops.append(render(only(models, "generator", "directions"), source, motion(codes),
                            truncation=options.truncation, paste=False).crops)
    return [face.index for face in faces], np.concatenate(crops)


@pytest.mark.parametrize("no_face, mode", [("hold", "absolute"), ("pass", "relative")])
def test_steps_composed_by_windows_give_the_session_output(models, source, driver, no_face, mode):
    options = DriveOptions(no_face=no_face, mode=mode, batch_size=BATCH)
    out = drive(models, source, driver, options)
    indices, crops = drive_by_steps(models, source, driver, options)
    driven = np.array([status == "driven" for status in out.status])
    assert indices == out.indices[driven].tolist()
    assert np.array_equal(crops, out.crops[driven])


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
