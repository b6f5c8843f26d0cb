"""Every bad `reenact` argument is refused before any model is loaded: exit status 2, one line, no traceback,
and the model loader is never called (a spy replaces it)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

import reenact_core.engine
from golden_fixtures import MEDIA
from reenact_core.cli import main


def bad_cases(tmp: str, source: str, video: str, image: str, readonly: str = "R",
              frames: str = "F") -> list[tuple[str, list[str], str]]:
    """(what, arguments after `reenact`, a word the message must hold); ``readonly``: a folder no file can be
    created in; ``frames``: a folder of driver images."""
    drive = ["--source", source, "--driving", video]
    cases = [
        ("mistyped --source", ["--source", f"{tmp}/nope.jpg", "--driving", video, "--out", f"{tmp}/o.mp4"], "nope.jpg"),
        ("mistyped --driving", ["--source", source, "--driving", f"{tmp}/nope.mp4", "--out", f"{tmp}/o.mp4"],
         "nope.mp4"),
        ("missing --source-in", ["--source-in", f"{tmp}/s.safetensors", "--driving", video, "--out", f"{tmp}/o.mp4"],
         "s.safetensors"),
        ("no source", ["--driving", video, "--out", f"{tmp}/o.mp4"], "--source"),
        ("no driver, no edit", ["--source", source, "--out", f"{tmp}/o.png"], "--edit"),
        ("--edit to a video file", ["--source", source, "--edit", "yaw=10", "--out", f"{tmp}/x.mp4"], "x.mp4"),
        ("malformed --edit", ["--source", source, "--edit", "yaw", "--out", f"{tmp}/x.png"], "NAME=VALUE"),
        ("multi-frame driver to an image", ["--source", source, "--driving", video, "--out", f"{tmp}/x.png"],
         "x.png"),
        ("--device gpu", ["--source", source, "--driving", video, "--out", f"{tmp}/o.mp4", "--device", "gpu"],
         "gpu"),
        ("--frames 0", ["--source", source, "--driving", video, "--out", f"{tmp}/o.mp4", "--frames", "0"], "--frames"),
        ("output under a file", ["--source", source, "--driving", video, "--out", f"{image}/o.mp4"], "not a folder"),
        ("--source-out under a file", ["--source", source, "--driving", video, "--out", f"{tmp}/o.mp4",
                                       "--source-out", f"{image}/s.safetensors"], "not a folder"),
        ("read-only output folder", [*drive, "--out", f"{readonly}/o.mp4"], "cannot write"),
        ("read-only --source-out folder", [*drive, "--out", f"{tmp}/o.mp4", "--source-out",
                                           f"{readonly}/s.safetensors"], "--source-out"),
        ("read-only --png-frames folder", [*drive, "--out", f"{tmp}/o.mp4", "--png-frames", f"{readonly}/png"],
         "--png-frames"),
        ("existing --png-frames folder in a read-only one", [*drive, "--out", f"{tmp}/o.mp4", "--png-frames",
                                                             f"{readonly}/frames"], "--png-frames"),
        ("--out is a folder", [*drive, "--out", tmp], "is a folder"),
        ("--source with --source-in", ["--source-in", image, *drive, "--out", f"{tmp}/o.mp4"], "--source-in"),
        ("--tune-steps with --source-in", ["--source-in", image, "--driving", video, "--out", f"{tmp}/o.mp4",
                                           "--tune-steps", "50"], "--tune-steps 50"),
        ("--edit beyond its limit", ["--source", source, "--edit", "yaw=500", "--out", f"{tmp}/x.png"], "yaw"),
        ("--edit of an unknown direction", ["--source", source, "--edit", "smile=1", "--out", f"{tmp}/x.png"],
         "smile"),
        ("--edit with --driving", [*drive, "--edit", "yaw=10", "--out", f"{tmp}/o.mp4"], "--edit"),
        ("--fps with a video driver", [*drive, "--out", f"{tmp}/o.mp4", "--fps", "12"], "--fps"),
        ("--fps for an edit", ["--source", source, "--edit", "yaw=10", "--out", f"{tmp}/x.png", "--fps", "12"],
         "--fps"),
        ("image folder to an image", ["--source", source, "--driving", frames, "--out", f"{tmp}/x.png"], "x.png"),
    ]
    if not torch.cuda.is_available():
        cases.append(("--device cuda without a GPU",
                      ["--source", source, "--driving", video, "--out", f"{tmp}/o.mp4", "--device", "cuda"], "CUDA"))
    return cases


CASE_NAMES = [c[0] for c in bad_cases("T", "S", "V", "I")]


@pytest.fixture
def readonly(tmp_path, monkeypatch):
    """A folder without write permission. Root ignores permission bits, so where a file can still be created
    in it, creating one there (the check's probe) is refused as the kernel refuses other users."""
    folder = tmp_path / "read-only"
    (folder / "frames").mkdir(parents=True)   # an earlier run's frames folder: replaced whole, so its parent is probed
    folder.chmod(0o555)
    try:
        (folder / "probe").write_bytes(b"")
        (folder / "probe").unlink()
    except PermissionError:
        pass   # a user the permission bits bind: the real refusal is tested
    else:
        real = tempfile.mkstemp

        def refusing(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == folder:
                raise PermissionError(13, "Permission denied")
            return real(*args, dir=dir, **kwargs)
        monkeypatch.setattr(tempfile, "mkstemp", refusing)
    yield folder
    folder.chmod(0o755)


def frame_folder(tmp_path: Path, count: int) -> Path:
    """A folder of ``count`` copies of a test portrait: an image-sequence driver."""
    folder = tmp_path / "frames"
    folder.mkdir()
    image = sorted(MEDIA.glob("*.jpg"))[0]
    for i in range(count):
        (folder / f"{i}{image.suffix}").write_bytes(image.read_bytes())
    return folder


@pytest.mark.parametrize("what", CASE_NAMES)
def test_bad_argument_is_refused_before_loading(what, tmp_path, readonly, monkeypatch, capsys, shared_dir):
    calls = []
    monkeypatch.setattr(reenact_core.engine, "load_reenact_models", lambda *a, **k: calls.append(a))
    videos = sorted(MEDIA.glob("*.mp4"))
    source = str(sorted(MEDIA.glob("*.jpg"))[0])
    frames = str(frame_folder(tmp_path, 2))
    (_, argv, needle), = [c for c in bad_cases(str(tmp_path), source, str(videos[0]), source, str(readonly), frames)
                          if c[0] == what]
    code = main(["reenact", "--models", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and calls == []
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err and needle in err, err


GOOD = {
    "video driver": lambda source, video, frames, out: ["--source", source, "--driving", video, "--out", out],
    "image folder at a given rate": lambda source, video, frames, out: ["--source", source, "--driving", frames,
                                                                        "--fps", "12.5", "--out", out],
    "prepared source, auto tuning": lambda source, video, frames, out: ["--source-in", source, "--driving", video,
                                                                        "--out", out, "--tune-steps", "auto"],
    "edits within their limits": lambda source, video, frames, out: ["--source", source, "--edit", "yaw=-40",
                                                             "--edit", "exp_00=0.5", "--out", out[:-4] + ".png"],
}


@pytest.mark.parametrize("what", GOOD)
def test_good_arguments_reach_the_loader(what, tmp_path, monkeypatch, capsys, shared_dir):
    """The spy sees valid arguments, so its silence above means the refusals came first."""
    from reenact_core.errors import ReenactError

    def spy(*args, **kwargs):
        raise ReenactError("loader reached")
    monkeypatch.setattr(reenact_core.engine, "load_reenact_models", spy)
    source, video = str(sorted(MEDIA.glob("*.jpg"))[0]), str(sorted(MEDIA.glob("*.mp4"))[0])
    argv = GOOD[what](source, video, str(frame_folder(tmp_path, 2)), str(tmp_path / "o.mp4"))
    assert main(["reenact", "--models", str(tmp_path), *argv, "--device", "cpu"]) == 2
    assert "loader reached" in capsys.readouterr().err


def test_write_check_leaves_nothing_and_creates_nothing(tmp_path):
    from reenact_core.arguments import check_writable

    check_writable("--out", str(tmp_path / "new" / "deeper" / "o.mp4"))
    check_writable("--png-frames", str(tmp_path), folder=True)
    assert list(tmp_path.iterdir()) == []


def test_edit_limits_are_the_node_sliders():
    """One set of limits: the CLI accepts exactly the Edit Directions sliders' range (the node schema snapshot)."""
    import json

    from reenact_core.arguments import parse_edits
    from reenact_core.errors import ReenactError

    schema = json.loads((Path(__file__).parent / "node_schemas.json").read_text())["LatentReenactEditDirections"]
    names = reenact_core.engine.DIRECTION_NAMES
    sliders = {e["name"]: (e["min"], e["max"]) for e in schema["inputs"] if e["name"] in names}
    assert set(sliders) == set(names)
    for name, (low, high) in sliders.items():
        assert parse_edits([f"{name}={low}", f"{name}={high}"]) == {name: high}
        for beyond in (low - 0.01, high + 0.01):
            with pytest.raises(ReenactError, match=name):
                parse_edits([f"{name}={beyond}"])


def test_evaluate_refuses_videos_of_different_lengths_before_loading(tmp_path, monkeypatch, capsys, shared_dir):
    from fractions import Fraction

    from reenact_core.video import VideoReader, VideoWriter

    calls = []
    monkeypatch.setattr(reenact_core.engine, "load_reenact_models", lambda *a, **k: calls.append(a))
    video = sorted(MEDIA.glob("*.mp4"))[0]
    reader = VideoReader(video)
    with VideoWriter(tmp_path / "short.mp4", Fraction(reader.fps)) as writer:
        writer.write(next(iter(reader))[None])
    code = main(["evaluate", "--models", str(tmp_path), "--source", str(sorted(MEDIA.glob("*.jpg"))[0]),
                 "--driving", str(video), "--output", str(tmp_path / "short.mp4"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and calls == [] and "\n" not in err and "1 frame," in err, err


def test_evaluation_of_unequal_streams_is_an_input_error():
    import numpy as np

    from reenact_core.errors import InputError
    from reenact_core.evaluation import evaluate

    frame = np.zeros((8, 8, 3), np.uint8)
    face = lambda img: np.zeros(2)  # noqa: E731
    none = lambda img: None  # noqa: E731
    for outputs, drivers in (([frame] * 3, [frame] * 2), ([frame] * 2, [frame] * 3)):
        with pytest.raises(InputError, match="evaluate"):
            evaluate(frame, outputs, drivers, embedder=face, estimator=none, landmarks=none)
