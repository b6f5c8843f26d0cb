"""The command line's progress bars and summary, as a user reads them on stderr/stdout: tuning counts steps, a
driver of known length shows its total, counts are worded in the singular for one, and a warning printed while
a bar is shown sits on its own line (tqdm.write), not glued to the bar's text."""
from __future__ import annotations

import re


from golden_fixtures import MEDIA
from reenact_core.cli import main
from reenact_core.engine import tuning
from reenact_core.video import VideoReader

TUNE_STEPS = 2


def shortest_video():
    return min(sorted(MEDIA.glob("*.mp4")), key=lambda v: VideoReader(v).frame_count or 10 ** 9)


def bar_states(err: str, desc: str) -> list[str]:
    """Every state the bar ``desc`` was drawn in (tqdm redraws a line after a carriage return)."""
    return [part.strip() for part in re.split(r"[\r\n]", err) if part.strip().startswith(desc)]


def reenact(capsys, models_dir, tmp_path, *extra) -> tuple[int, str, str]:
    tuning._warn_mse_only.cache_clear()   # the warning is printed once per process: make this run print it
    code = main(["reenact", "--models", str(models_dir), "--device", "cpu", "--source",
                 str(sorted(MEDIA.glob("*.jpg"))[0]), "--driving", str(shortest_video()),
                 "--out", str(tmp_path / "out.mp4"), *map(str, extra)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tuning_counts_steps_and_a_warning_keeps_its_own_line(tmp_path, models_dir, capsys, shared_dir):
    code, out, err = reenact(capsys, models_dir, tmp_path, "--tune-steps", TUNE_STEPS, "--frames", 1)
    assert code == 0, err
    states = bar_states(err, "tuning G to the source")
    assert states and all("frame" not in s for s in states), states
    assert f"{TUNE_STEPS}/{TUNE_STEPS}" in states[-1] and "step" in states[-1], states[-1]
    # the LPIPS fallback warning: a line of its own (after the bar's line was cleared), no bar text on it
    (line,) = [line for line in err.split("\n") if "LPIPS" in line]
    shown = line.split("\r")[-1]
    assert shown.startswith("LPIPS weights not found") and "tuning G" not in shown, repr(line)
    assert err.count("RANDOM-WEIGHT") == 1   # the tiny files are marked: one warning
    assert re.search(r"\b1 frame at\b", out), out


def test_a_driver_of_known_length_shows_its_total(tmp_path, models_dir, capsys, shared_dir):
    length = VideoReader(shortest_video()).frame_count
    assert length, "the test video declares no frame count"
    code, out, err = reenact(capsys, models_dir, tmp_path, "--tune-steps", 0)
    assert code == 0, err
    assert not bar_states(err, "tuning G")   # no tuning, no tuning bar
    states = bar_states(err, "reenacting")
    assert states and all(f"/{length}" in s for s in states), states
    assert f"{length}/{length}" in states[-1] and "frame" in states[-1], states[-1]
    assert re.search(rf"\b{length} frames at\b", out), out
