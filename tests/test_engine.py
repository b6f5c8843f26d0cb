"""The engine on tiny random weights: model loading, source preparation and files, driving sessions (chunking,
no-face policies, modes, smoothing, paste-back), tuning integration and precision.

Faces come from the real test media (a photo as the source, talking-head videos as drivers); frames without a
face are blank frames inserted into a driver.
"""
from __future__ import annotations

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from engine_fixtures import calibrate_deca, source_photo, video_frames, with_blanks
from golden_fixtures import cases, filled_state_dict, layout, load_case, manifest
from manifest_prose import tolerance
from reenact_core.engine import (DriveOptions, DrivenChunk, DriveSession, PreparedSource, ReenactModels, Rendered,
                                 drive, estimate_codes, load_reenact_models, load_source, prepare_source, render,
                                 save_source)
from reenact_core.engine.render import image_to_uint8
from reenact_core.engine.tuning import TunedLayers
from reenact_core.errors import Interrupted, MissingModelError, NoFaceError, WeightsError
from reenact_core.faces.reference_crop import CROP_SIZE, CropTransform, crop_using_landmarks
from reenact_core.imaging import image_to_tensor
from reenact_core.params import FaceParams, delta_p
from reenact_core.weights import (INFERENCE, KINDS, convert, kind_names, load_model, make_random_checkpoint,
                                  make_tiny_model_set, tiny_config)
from reenact_core.weights.official import write_official

BATCH = 2  # small windows, so that a few frames span several of them
DRIVER_FRAMES = 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, driver):
    folder = tmp_path_factory.mktemp("tiny_models")
    make_tiny_model_set(folder)
    calibrate_deca(folder / KINDS["deca"].canonical_file, driver)
    return folder


@pytest.fixture(scope="module")
def models(model_dir):
    return load_reenact_models([model_dir])


@pytest.fixture(scope="module")
def source_image():
    return np.array(Image.open(source_photo()).convert("RGB"))


@pytest.fixture(scope="module")
def source(models, source_image):
    return prepare_source(source_image, models)


@pytest.fixture(scope="module")
def driver():
    """(n, H, W, 3) uint8 frames of a talking head."""
    return video_frames(0, DRIVER_FRAMES)


def chunked(session: DriveSession, frames: np.ndarray, sizes: list[int]) -> DrivenChunk:
    parts, start = [], 0
    for size in sizes:
        parts.append(session.process(frames[start:start + size]))
        start += size
    return DrivenChunk.concatenate(parts + [session.process(frames[start:]), session.finish()])


def assert_same(a: DrivenChunk, b: DrivenChunk) -> None:
    for name in ("crops", "frames", "masks", "indices"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), name
    assert a.status == b.status


def generator_hash(models) -> str:
    digest = hashlib.sha256()
    for name, tensor in models.generator.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --- models -----------------------------------------------------------------------------------------------------

def test_missing_model_files_are_named_one_per_line(model_dir, tmp_path):
    missing = ("stylegan2", "deca")
    for k in set(kind_names(INFERENCE)) - set(missing):
        shutil.copy(model_dir / KINDS[k].canonical_file, tmp_path)
    with pytest.raises(MissingModelError) as error:
        load_reenact_models([tmp_path])
    header, *lines = str(error.value).splitlines()
    assert f"{len(missing)} of {len(kind_names(INFERENCE))}" in header and len(lines) == len(missing)
    for k in kind_names(INFERENCE):
        named = [line for line in lines if KINDS[k].canonical_file in line]
        assert len(named) == (k in missing)
        assert all(str(tmp_path) in line and "convert" in line for line in named)


def test_models_that_do_not_fit_together_are_refused(model_dir, tmp_path):
    for k in kind_names(INFERENCE):
        shutil.copy(model_dir / KINDS[k].canonical_file, tmp_path)
    narrow = dataclasses.replace(tiny_config("directions"), shift_dim=tiny_config("stylegan2").style_dim // 2)
    make_random_checkpoint("directions", narrow, tmp_path / KINDS["directions"].canonical_file)
    with pytest.raises(WeightsError, match="do not belong together"):
        load_reenact_models([tmp_path])


# --- source -----------------------------------------------------------------------------------------------------

def test_prepared_source_crop_inversion_and_given_landmarks(models, source, source_image):
    g = models.generator.config
    assert tuple(source.w_plus.shape) == (1, g.n_latent, g.style_dim)
    assert torch.equal(source.mean_latent, models.mean_latent)
    assert source.image.shape == source_image.shape and source.transform.frame_hw == source_image.shape[:2]
    crop, transform = crop_using_landmarks(source_image, source.landmarks)
    assert np.array_equal(source.crop, crop) and source.transform == transform
    with torch.no_grad():
        assert torch.equal(source.w_plus, models.e4e.module(image_to_tensor(crop)))
    # the crop's similarity maps the landmarks onto the official template: their extent spans half the crop, centred
    # across it and a twelfth of it below its middle (box = 2·extent, shifted up by extent/6), to a frame pixel
    points = transform.frame_to_crop(source.landmarks)
    pixel = CROP_SIZE / (transform.box[2] - transform.box[0])   # crop pixels per frame pixel
    assert CROP_SIZE / 2 <= np.ptp(points, 0).max() < CROP_SIZE / 2 + pixel
    centre = (points.min(0) + points.max(0)) / 2
    assert np.abs(centre - [(CROP_SIZE - 1) / 2, (CROP_SIZE - 1) / 2 + CROP_SIZE / 12]).max() <= pixel
    again = prepare_source(source_image, models, landmarks=source.landmarks)
    assert torch.equal(again.w_plus, source.w_plus) and torch.equal(again.deca_codes, source.deca_codes)


def test_source_without_face_raises(models):
    with pytest.raises(NoFaceError, match="source image"):
        prepare_source(np.full((256, 256, 3), 128, np.uint8), models)


def test_saved_source_reloads_to_identical_output(models, source, driver, tmp_path):
    path = save_source(source, tmp_path / "source.safetensors")
    reloaded = load_source(path)
    assert np.array_equal(reloaded.image, source.image) and reloaded.transform == source.transform
    options = DriveOptions(batch_size=BATCH)
    assert_same(drive(models, reloaded, driver, options), drive(models, source, driver, options))


# --- sessions ---------------------------------------------------------------------------------------------------

BLANKS = [0, 1, 4, 5, DRIVER_FRAMES + 3]  # where blank frames go: leading, inside a window, across windows


@pytest.fixture(scope="module", params=["pass", "hold"])
def with_gaps(request, models, source, driver):
    """(policy, driver frames with blanks, their one-shot output) under the ``"pass"`` and ``"hold"`` policies."""
    frames = with_blanks(driver, BLANKS)
    return request.param, frames, drive(models, source, frames, DriveOptions(no_face=request.param,
                                                                              batch_size=BATCH))


def test_chunked_run_equals_one_shot_and_keeps_every_frame(models, source, with_gaps):
    policy, frames, one_shot = with_gaps
    assert np.array_equal(one_shot.indices, np.arange(len(frames)))
    assert len(one_shot.crops) == len(one_shot.frames) == len(one_shot.masks) == len(frames)
    session = DriveSession(models, source, DriveOptions(no_face=policy, batch_size=BATCH))
    assert_same(chunked(session, frames, [1, 1, BATCH + 2, 1]), one_shot)


def test_frames_pasted_one_at_a_time_equal_the_chunks_frames(models, source, with_gaps):
    """composite=False: chunks hold crops only, and output_frames pastes each frame, bit for bit the same."""
    policy, frames, one_shot = with_gaps
    session = DriveSession(models, source, DriveOptions(no_face=policy, batch_size=BATCH), composite=False)
    parts = [session.process(frames[:BATCH + 1]), session.process(frames[BATCH + 1:]), session.finish()]
    assert all(part.frames is None and part.masks is None for part in parts)
    lazy = [frame for part in parts for frame in session.output_frames(part)]
    assert len(lazy) == len(one_shot)
    for ours, theirs in zip(lazy, one_shot.frames):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


@pytest.mark.parametrize("options", [DriveOptions(color_match=True), DriveOptions(paste_back=False)])
def test_frames_pasted_one_at_a_time_follow_the_paste_options(models, source, driver, options):
    one_shot = drive(models, source, driver[:BATCH + 1], options)
    session = DriveSession(models, source, options, composite=False)
    parts = [session.process(driver[:BATCH + 1]), session.finish()]
    lazy = [frame for part in parts for frame in session.output_frames(part)]
    expected = one_shot.frames if options.paste_back else one_shot.crops
    assert len(lazy) == len(expected) and all(np.array_equal(a, b) for a, b in zip(lazy, expected))


def test_no_face_policies_fill_the_gaps(source, with_gaps):
    policy, _, out = with_gaps
    assert [s != "driven" for s in out.status] == [i in BLANKS for i in range(len(out))]
    first = min(set(range(len(out))) - set(BLANKS))
    for i in BLANKS:
        if policy == "pass":
            assert out.status[i] == "passed" and not out.masks[i].any()
            assert np.array_equal(out.frames[i], source.image) and np.array_equal(out.crops[i], source.crop)
            continue
        reference = first if i < first else i - 1  # leading frames get the first driven output
        assert out.status[i] == "held"
        for name in ("crops", "frames", "masks"):
            assert np.array_equal(getattr(out, name)[i], getattr(out, name)[reference])  # bit for bit


def test_hold_without_any_face_raises_at_the_end(models, source, driver):
    session = DriveSession(models, source, DriveOptions(no_face="hold", batch_size=BATCH))
    assert len(session.process(np.zeros((BATCH + 1, *driver.shape[1:]), np.uint8))) == 0
    with pytest.raises(NoFaceError, match="any of the"):
        session.finish()


def test_raise_names_the_frame_without_a_face(models, source, driver):
    assert len(drive(models, source, driver[:2], DriveOptions(no_face="raise"))) == 2
    with pytest.raises(NoFaceError, match="frame 2"):
        drive(models, source, with_blanks(driver[:3], [2]), DriveOptions(no_face="raise"))


def test_paste_back_is_on_by_default_and_leaves_the_rest_of_the_image(models, source, driver):
    out = drive(models, source, driver[:1])
    assert out.frames.shape == (1, *source.image.shape) and out.frames.dtype == source.image.dtype
    outside = out.masks[0] == 0
    assert outside.any() and np.array_equal(out.frames[0][outside], source.image[outside])
    assert not np.array_equal(out.frames[0], source.image)
    crops_only = drive(models, source, driver[:1], DriveOptions(paste_back=False))
    assert crops_only.frames is None and crops_only.masks is None
    assert np.array_equal(crops_only.crops, out.crops)


def render_with(models: ReenactModels, source: PreparedSource, shifts: torch.Tensor, **options) -> Rendered:
    """The render step with the networks of ``models`` it runs."""
    return render(models.directions.module, models.generator.module, source, shifts, fsr=models.refiner, **options)


def unedited(models, source) -> np.ndarray:
    """The source rendered with Δp = 0, alone in its batch."""
    return render_with(models, source, torch.zeros(1, 15), paste=False).crops[0]


def test_relative_mode_starts_from_the_unedited_source(models, source, driver):
    options = DriveOptions(mode="relative", batch_size=1, paste_back=False)
    relative = drive(models, source, driver[:3], options)
    absolute = drive(models, source, driver[:1], dataclasses.replace(options, mode="absolute"))
    assert np.array_equal(relative.crops[0], unedited(models, source))
    assert not np.array_equal(absolute.crops[0], relative.crops[0])
    assert any(not np.array_equal(c, relative.crops[0]) for c in relative.crops[1:])


def test_nothing_transferred_renders_the_unedited_source(models, source, driver):
    still = DriveOptions(pose=False, expression=False, batch_size=1, paste_back=False)
    for out in (drive(models, source, driver[:2], still),
                drive(models, source, driver[:2], DriveOptions(strength=0.0, batch_size=1, paste_back=False))):
        assert all(np.array_equal(c, unedited(models, source)) for c in out.crops)
    pose_only = drive(models, source, driver[:1], dataclasses.replace(still, pose=True))
    assert not np.array_equal(pose_only.crops[0], unedited(models, source))


def test_drivers_with_different_motion_give_different_outputs(models, source):
    first, other = video_frames(0, 1), video_frames(1, 1)
    options = DriveOptions(batch_size=1, paste_back=False)
    a, b = drive(models, source, first, options), drive(models, source, other, options)
    assert np.abs(a.crops.astype(int) - b.crops).mean() > 1


def test_smoothing_changes_only_what_follows_the_first_frame(models, source, driver):
    raw = drive(models, source, driver, DriveOptions(smoothing=0.0, paste_back=False, batch_size=BATCH))
    smooth = drive(models, source, driver, DriveOptions(smoothing=1.0, paste_back=False, batch_size=BATCH))
    assert np.abs(raw.crops[0].astype(int) - smooth.crops[0]).max() <= 1  # the filter starts at the first value
    assert max(np.abs(r.astype(int) - s).mean() for r, s in zip(raw.crops[1:], smooth.crops[1:])) > 0.1


# --- golden --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", cases("reenact_pipeline"))
def test_engine_reproduces_the_golden_pipeline(case, tmp_path):
    """Codes, Δp and rendering through the engine, with the official architectures and the golden weights.

    The stored w_s stands in for the e4e inversion (checked by test_golden.py), so e4e is not loaded.
    """
    spec, stored = manifest()["cases"][case], load_case(case)
    loaded = {"e4e": None}
    for model_case in spec["models"].values():
        kind = layout(model_case).kind
        if kind == "e4e":
            continue
        official = write_official(tmp_path / f"{model_case}.pt", kind, filled_state_dict(model_case),
                                  extras=layout(model_case).extras)
        loaded[kind] = load_model(convert(official, tmp_path / f"{model_case}.safetensors", expected_kind=kind))
    normaliser = loaded["directions"].config.normaliser
    crop = stored["source_crop"][0].numpy()
    codes_s = estimate_codes(loaded["deca"].module, crop[None], stored["source_kpt68"].numpy())
    codes_t = estimate_codes(loaded["deca"].module, stored["target_crops"].numpy(), stored["target_kpt68"].numpy())
    assert (codes_s - stored["p_s"]).abs().max() <= tolerance("p_s")
    assert (codes_t - stored["p_t"]).abs().max() <= tolerance("p_t")
    source = PreparedSource(crop, crop, CropTransform((0, 0, crop.shape[1], crop.shape[0]), crop.shape[:2]),
                            stored["source_kpt68"][0].numpy(), stored["w_s"], stored["truncation_latent"], codes_s)
    shifts = delta_p(source.params, FaceParams.from_deca(codes_t), normaliser=normaliser)
    assert (shifts - stored["delta_p"]).abs().max() <= tolerance("delta_p")
    crops = render(loaded["directions"].module, loaded["stylegan2"].module, source, shifts,
                   truncation=spec["constants"]["truncation"], paste=False).crops
    expected = image_to_uint8(stored["image"])
    assert np.abs(crops.astype(int) - expected).max() <= 1  # the float images agree to 1e-4


# --- tuning -----------------------------------------------------------------------------------------------------

def test_tuned_source_renders_its_own_layers_and_leaves_the_generator(models, source_image, source, tmp_path):
    before = generator_hash(models)
    steps = []
    tuned = prepare_source(source_image, models, tune_steps=2, progress=lambda *a: steps.append(a[:2]))
    assert steps == [(1, 2), (2, 2)] and isinstance(tuned.tuned, TunedLayers)
    assert generator_hash(models) == before
    with pytest.raises(Interrupted):
        prepare_source(source_image, models, tune_steps=2, should_stop=lambda: bool(steps.append(None) or
                                                                                  len(steps) > 3))
    assert generator_hash(models) == before
    shifts = torch.zeros(1, 15)
    assert not np.array_equal(render_with(models, tuned, shifts).crops, render_with(models, source, shifts).crops)
    reloaded = load_source(save_source(tuned, tmp_path / "tuned.safetensors"))
    assert np.array_equal(render_with(models, reloaded, shifts).frames, render_with(models, tuned, shifts).frames)


BF16_MEAN_ERROR = 0.02   # mean |bf16 − fp32| of the frames, as a fraction of full scale (bf16: 8 bits of mantissa)


# --- precision --------------------------------------------------------------------------------------------------

def test_bfloat16_models_drive_a_source(model_dir, source_image, driver):
    half = load_reenact_models([model_dir], dtype=torch.bfloat16)
    assert half.generator.module.input.input.dtype == torch.bfloat16
    full = load_reenact_models([model_dir])
    src = prepare_source(source_image, full)          # one source: the comparison is of the driving precision
    out = drive(half, src, driver[:2], DriveOptions(batch_size=2))
    assert out.crops.shape == (2, 256, 256, 3) and out.frames.dtype == source_image.dtype
    reference = drive(full, src, driver[:2], DriveOptions(batch_size=2)).crops.astype(np.float64)
    error = np.abs(out.crops - reference).mean()
    assert error <= BF16_MEAN_ERROR * 255, f"bf16 frames differ from fp32 by {error:.2f} levels on average"
    assert np.abs(reference - reference.mean()).mean() > 4 * error, "the images are flat: the check proves little"
