"""Every bad `reenact` argument is refused before any model is loaded: exit status 2, one line, no traceback,
and the model loader is never called (a spy replaces it)."""
from __future__ import annotations

import pytest
import torch

import reenact_core.engine
from golden_fixtures import MEDIA
from reenact_core.cli import main


def bad_cases(tmp: str, source: str, video: str, image: str) -> list[tuple[str, list[str], str]]:
    """(what, arguments after `reenact`, a word the message must hold)."""
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
    ]
    if not torch.cuda.is_available():
        cases.append(("--device cuda without a GPU",
                      ["--source", source, "--driving", video, "--out", f"{tmp}/o.mp4", "--device", "cuda"], "CUDA"))
    return cases


CASE_NAMES = [c[0] for c in bad_cases("T", "S", "V", "I")]


@pytest.mark.parametrize("what", CASE_NAMES)
def test_bad_argument_is_refused_before_loading(what, tmp_path, monkeypatch, capsys, shared_dir):
    calls = []
    monkeypatch.setattr(reenact_core.engine, "load_reenact_models", lambda *a, **k: calls.append(a))
    videos = sorted(MEDIA.glob("*.mp4"))
    source = str(sorted(MEDIA.glob("*.jpg"))[0])
    (_, argv, needle), = [c for c in bad_cases(str(tmp_path), source, str(videos[0]), source) if c[0] == what]
    code = main(["reenact", "--models", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and calls == []
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err and needle in err, err


def test_good_arguments_reach_the_loader(tmp_path, monkeypatch, capsys, shared_dir):
    """The spy sees valid arguments, so its silence above means the refusals came first."""
    from reenact_core.errors import ReenactError

    def spy(*args, **kwargs):
        raise ReenactError("loader reached")
    monkeypatch.setattr(reenact_core.engine, "load_reenact_models", spy)
    source, video = str(sorted(MEDIA.glob("*.jpg"))[0]), str(sorted(MEDIA.glob("*.mp4"))[0])
    assert main(["reenact", "--models", str(tmp_path), "--source", source, "--driving", video,
                 "--out", str(tmp_path / "o.mp4"), "--device", "cpu"]) == 2
    assert "loader reached" in capsys.readouterr().err


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
