"""The command line end to end on tiny random weights and real media: reenact, editing, doctor, evaluate."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from engine_fixtures import calibrate_deca
from golden_fixtures import MEDIA
from reenact_core.cli import main
from reenact_core.engine import DriveOptions, drive, load_reenact_models, load_source
from reenact_core.evaluation import ARCFACE_MEASURE, DLIB_MEASURE
from reenact_core.faces.images import to_uint8_rgb
from reenact_core.video import VideoReader
from reenact_core.wording import count
from reenact_core.weights import INFERENCE, KINDS, kind_names, make_tiny_model_set

PNG_FRAMES = 9   # driver frames of the --png-frames comparison: windows of 1, 3 and 8 (one partial)


def short_driver() -> str:
    """The shortest test video (fewest frames), so the run stays quick whatever the media set holds."""
    videos = sorted(MEDIA.glob("*.mp4"))
    assert videos, "no test videos"
    return str(min(videos, key=lambda v: VideoReader(v).frame_count or 10 ** 9))


def portrait() -> str:
    return str(sorted(MEDIA.glob("*.jpg"))[0])


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_reenact_keeps_frame_count_fps_and_audio(tmp_path, models_dir, capsys, shared_dir):
    driver = short_driver()
    code, out, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", portrait(),
                         "--driving", driver, "--out", tmp_path / "out.mp4", "--tune-steps", 0,
                         "--source-out", tmp_path / "source.safetensors", "--png-frames", tmp_path / "a")
    assert code == 0, err
    src, res = VideoReader(driver), VideoReader(tmp_path / "out.mp4")
    frames = list(res)
    assert len(frames) == sum(1 for _ in src)
    assert res.fps == src.fps and res.has_audio == src.has_audio
    # a saved source reloads to identical output
    code, _, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu",
                       "--source-in", tmp_path / "source.safetensors", "--driving", driver,
                       "--out", tmp_path / "again.mp4", "--png-frames", tmp_path / "b")
    assert code == 0, err
    a, b = sorted((tmp_path / "a").glob("*.png")), sorted((tmp_path / "b").glob("*.png"))
    assert len(a) == len(b) == len(frames)
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes()


def test_loop_policy_sets_the_length(tmp_path, models_dir, capsys, shared_dir):
    driver = short_driver()
    n = 2 * sum(1 for _ in VideoReader(driver)) + 3
    code, out, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", portrait(),
                         "--driving", driver, "--out", tmp_path / "loop.mp4", "--tune-steps", 0,
                         "--frames", n, "--length", "loop", "--no-paste-back")
    assert code == 0, err
    reader = VideoReader(tmp_path / "loop.mp4")
    frames = list(reader)
    assert len(frames) == n and frames[0].shape == (256, 256, 3)
    assert reader.fps == VideoReader(driver).fps and isinstance(reader.fps, Fraction)
    if VideoReader(driver).has_audio:   # the audio is the driver's, once: the summary says where it stops
        length = sum(1 for _ in VideoReader(driver))
        assert f"first {count(length, 'frame')} only" in out and "not looped" in out, out


def test_image_folder_driver_takes_fps(tmp_path, models_dir, capsys, shared_dir):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(next(VideoReader(short_driver()).chunks(3))):
        Image.fromarray(frame).save(folder / f"{i}.png")
    code, out, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", portrait(),
                         "--driving", folder, "--fps", "12.5", "--out", tmp_path / "o.mp4", "--tune-steps", 0,
                         "--no-paste-back")
    assert code == 0, err
    assert VideoReader(tmp_path / "o.mp4").fps == Fraction(25, 2) and "12.500 fps" in out, out


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory):
    """Tiny models whose DECA tells the driver's faces apart (see engine_fixtures.calibrate_deca)."""
    folder = tmp_path_factory.mktemp("calibrated")
    make_tiny_model_set(folder)
    calibrate_deca(folder / KINDS["deca"].canonical_file, next(VideoReader(short_driver()).chunks(PNG_FRAMES)))
    return folder


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_png_frames_are_the_engine_frames(tmp_path, calibrated_dir, capsys, shared_dir, batch_size):
    """--png-frames writes exactly the frames the engine's session gives for the same options and batch size."""
    driver = short_driver()
    code, _, err = run(capsys, "reenact", "--models", calibrated_dir, "--device", "cpu", "--source", portrait(),
                       "--driving", driver, "--out", tmp_path / "out.mp4", "--tune-steps", 0, "--frames",
                       PNG_FRAMES, "--batch-size", batch_size, "--source-out", tmp_path / "s.safetensors",
                       "--png-frames", tmp_path / "png")
    assert code == 0, err
    models = load_reenact_models([calibrated_dir])
    frames = next(VideoReader(driver).chunks(PNG_FRAMES))
    expected = drive(models, load_source(tmp_path / "s.safetensors"), frames, DriveOptions(batch_size=batch_size),
                     fps=float(VideoReader(driver).fps))
    written = [np.asarray(Image.open(f)) for f in sorted((tmp_path / "png").glob("*.png"))]
    assert len(written) == PNG_FRAMES
    for png, frame in zip(written, expected.frames):
        assert np.array_equal(png, to_uint8_rgb(frame))
    assert len({c.tobytes() for c in expected.crops}) > 1, "the driver does not move the face: this proves little"


def test_editing_writes_an_image(tmp_path, models_dir, capsys, shared_dir):
    code, out, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", portrait(),
                         "--out", tmp_path / "edit.png", "--edit", "yaw=20", "--edit", "jaw=0.1")
    assert code == 0, err
    code, out, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", portrait(),
                         "--out", tmp_path / "same.png", "--edit", "yaw=0")
    assert code == 0, err
    edited, unedited = (np.asarray(Image.open(tmp_path / name), np.int16) for name in ("edit.png", "same.png"))
    assert edited.shape == unedited.shape and np.abs(edited - unedited).max() > 25, "the edit changes nothing"
    code, _, err = run(capsys, "reenact", "--models", models_dir, "--source", portrait(),
                       "--out", tmp_path / "x.png", "--edit", "yaw")
    assert code == 2 and "NAME=VALUE" in err


def test_missing_models_are_named(tmp_path, capsys, shared_dir):
    code, _, err = run(capsys, "reenact", "--models", tmp_path, "--source", portrait(), "--driving", short_driver(),
                       "--out", tmp_path / "o.mp4")
    assert code == 2
    header, *lines = err.strip().splitlines()
    assert header.startswith("error:") and len(lines) == len(kind_names(INFERENCE))   # one missing file per line
    assert "Traceback" not in err
    for line in lines:
        assert str(tmp_path) in line and " convert " in line
    assert any("stylegan2-voxceleb-256.safetensors" in line for line in lines)


def test_doctor_labels_the_self_check(capsys):
    code, out, _ = run(capsys, "doctor", "--device", "cpu", "--models", "does-not-exist")
    assert code == 0
    assert "TINY RANDOM WEIGHTS" in out and "NOT a real result" in out and "MISSING" in out


@pytest.mark.slow
def test_evaluate_reports_measures(tmp_path, models_dir, capsys, shared_dir):
    driver = short_driver()
    assert main(["reenact", "--models", str(models_dir), "--device", "cpu", "--source", portrait(), "--driving",
                 driver, "--out", str(tmp_path / "out.mp4"), "--tune-steps", "0"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "evaluate", "--models", models_dir, "--device", "cpu", "--source", portrait(),
                         "--driving", driver, "--output", tmp_path / "out.mp4", "--json", tmp_path / "m.json")
    assert code == 0, err
    import json
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["frames"] == sum(1 for _ in VideoReader(driver))
    assert report["identity_measure"] == DLIB_MEASURE and f"identity: {DLIB_MEASURE}" in out
    # With an ArcFace file beside the models, identity is ArcFace's cosine similarity, and the report says so.
    arcface_dir = tmp_path / "arcface"
    make_tiny_model_set(arcface_dir, kinds=["arcface"])
    code, out, err = run(capsys, "evaluate", "--models", models_dir, "--models", arcface_dir, "--device", "cpu",
                         "--source", portrait(), "--driving", driver, "--output", tmp_path / "out.mp4",
                         "--json", tmp_path / "a.json")
    assert code == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["identity_measure"] == ARCFACE_MEASURE and f"identity: {ARCFACE_MEASURE}" in out
    assert report["identity_frames"] == 0 or -1.0 <= report["identity"] <= 1.0
