"""`dataset prepare` end to end on real test videos and tiny random models: counts, resume, in-place completion,
bad inputs, and sharding across processes (workers and torchrun)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from golden_fixtures import MEDIA
from reenact_core.cli import main
from reenact_core.data import iter_videos, load_crop, load_deca_codes, load_w_plus
from reenact_core.data.layout import CODES_DIR, FRAMES_DIR, LATENTS_DIR, MANIFEST, SKIP_REASONS
from reenact_core.landmarks import detect_faces
from reenact_core.faces.reference_crop import CROP_SIZE
from reenact_core.files import current_umask
from reenact_core.imaging import image_to_tensor
from reenact_core.models.deca import N_CODES
from reenact_core.video import VideoReader
from reenact_core.weights import load_model

SAMPLES_PER_VIDEO = 4  # the stride is chosen so that the shorter test video gives about this many samples
ID = "speaker"


@pytest.fixture(scope="module")
def videos(shared_dir):
    """The two shortest test videos (fewest frames), whatever the media set holds."""
    found = sorted(MEDIA.glob("*.mp4"), key=lambda v: (VideoReader(v).frame_count or 10 ** 9, v.name))
    assert len(found) >= 2, "need two test videos"
    return found[:2]


@pytest.fixture(scope="module")
def stride(videos):
    return max(1, min(sum(1 for _ in VideoReader(v)) for v in videos) // SAMPLES_PER_VIDEO)


@pytest.fixture(scope="module")
def video_tree(tmp_path_factory, videos):
    """``ID/VIDEO.mp4`` links to the test videos."""
    root = tmp_path_factory.mktemp("videos")
    (root / ID).mkdir()
    for video in videos:
        (root / ID / video.name).symlink_to(video)
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def prepare(capsys, models_dir, *argv):
    return run(capsys, "dataset", "prepare", "--models", models_dir, "--device", "cpu", *argv)


def expected_counts(video: Path, stride: int) -> dict:
    """What a video holds at ``stride``: frames, sampled frames, and sampled frames with a face."""
    frames = list(VideoReader(video))
    sampled = frames[::stride]
    faces = sum(bool(detect_faces(frame)) for frame in sampled)
    return {"frames_decoded": len(frames), "frames_sampled": len(sampled), "samples": faces,
            "no_face": len(sampled) - faces}


def file_times(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for d in (FRAMES_DIR, LATENTS_DIR, CODES_DIR) for p in root.glob(f"*/*/{d}/*")}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, models_dir, video_tree, stride):
    out = tmp_path_factory.mktemp("prepared")
    code = main(["dataset", "prepare", "--models", str(models_dir), "--device", "cpu", str(video_tree), str(out),
                 "--stride", str(stride), "--batch-size", "3"])
    assert code == 0
    return out


def test_manifest_counts_match_what_the_videos_hold(prepared, videos, stride, models_dir):
    e4e = load_model(models_dir / "e4e-voxceleb-256.safetensors", "e4e")
    shape = (e4e.config.n_styles, e4e.config.style_dim)
    summary = json.loads((prepared / MANIFEST).read_text())
    assert (summary["videos"], summary["videos_done"], summary["videos_failed"]) == (len(videos), len(videos), 0)
    totals = dict.fromkeys(("frames_decoded", "frames_sampled", "samples", "no_face"), 0)
    listed = {v.video: v for v in iter_videos(prepared)}
    assert set(listed) == {v.stem for v in videos}
    for video in videos:
        want = expected_counts(video, stride)
        manifest = json.loads((prepared / ID / video.stem / MANIFEST).read_text())
        assert manifest["status"] == "done" and manifest["stride"] == stride
        for name in ("frames_decoded", "frames_sampled", "samples"):
            got = manifest[name] if name != "samples" else len(manifest["samples"])
            assert got == want[name], (video.name, name)
        assert manifest["skipped"] == {**dict.fromkeys(SKIP_REASONS, 0), "no_face": want["no_face"]}
        assert manifest["crops"] == manifest["latents"] == manifest["codes"] == want["samples"]
        assert manifest["w_plus_shape"] == list(shape)
        # the files on disk are exactly the samples, each of its kind and shape
        folder = prepared / ID / video.stem
        for sub, suffix in ((FRAMES_DIR, ".png"), (LATENTS_DIR, ".npy"), (CODES_DIR, ".npy")):
            assert sorted(p.stem for p in (folder / sub).glob("*")) == manifest["samples"]
            assert all(p.suffix == suffix for p in (folder / sub).glob("*"))
        frames = listed[video.stem].frames
        assert [f.stem for f in frames] == manifest["samples"]
        for frame in frames:
            assert load_crop(frame.crop).shape == (CROP_SIZE, CROP_SIZE, 3)
            assert load_w_plus(frame.w_plus, shape).shape == shape
            assert load_deca_codes(frame.deca_codes).shape == (N_CODES,)
        for name in totals:
            totals[name] += want[name]
    for name in ("frames_decoded", "frames_sampled", "samples"):
        assert summary[name] == totals[name], name
    mode = 0o666 & ~current_umask()   # every file written with the mode a plain open() gives
    assert {p.stat().st_mode & 0o777 for p in prepared.rglob("*") if p.is_file()} == {mode}
    assert summary["skipped"]["no_face"] == totals["no_face"]
    assert summary["crops"] == summary["latents"] == summary["codes"] == totals["samples"]


def test_latent_codes_are_the_e4e_inversions_of_the_crops(prepared, models_dir):
    e4e = load_model(models_dir / "e4e-voxceleb-256.safetensors", "e4e")
    video = next(iter_videos(prepared))
    crops = np.stack([load_crop(f.crop) for f in video.frames])
    with torch.no_grad():
        expected = e4e.module(image_to_tensor(crops)).numpy()
    saved = np.stack([load_w_plus(f.w_plus) for f in video.frames])
    np.testing.assert_allclose(saved, expected, rtol=1e-4, atol=1e-5)


def test_a_second_run_redoes_nothing(prepared, models_dir, video_tree, stride, capsys):
    before = file_times(prepared)
    assert before
    code, out, err = prepare(capsys, models_dir, video_tree, prepared, "--stride", stride)
    assert code == 0, err
    assert file_times(prepared) == before
    assert "0 now, 2 already done" in out


def test_an_interrupted_video_is_finished_without_redoing_its_files(tmp_path, prepared, models_dir, video_tree,
                                                                    stride, capsys):
    out = tmp_path / "out"
    shutil.copytree(prepared, out)
    folder = next(p for p in sorted((out / ID).iterdir()) if p.is_dir())
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).unlink()
    lost = folder / LATENTS_DIR / (manifest["samples"][-1] + ".npy")
    lost.unlink()
    before = file_times(out)
    code, _, err = prepare(capsys, models_dir, video_tree, out, "--stride", stride)
    assert code == 0, err
    after = file_times(out)
    assert lost in after
    assert {p: t for p, t in after.items() if p != lost} == before
    assert json.loads((folder / MANIFEST).read_text())["samples"] == manifest["samples"]


def test_another_stride_on_a_finished_tree_is_refused(prepared, models_dir, video_tree, stride, capsys):
    code, _, err = prepare(capsys, models_dir, video_tree, prepared, "--stride", stride + 1)
    assert code == 2 and "stride" in err and len(err.strip().splitlines()) == 1


def reference_tree(root: Path, prepared: Path, shape: tuple[int, int]) -> dict:
    """A tree as the reference scripts leave it (crops and [1, n, d] latents, no DECA codes), from ``prepared``,
    with one corrupt PNG (which has a latent and codes), one latent of the wrong shape and one crop without a
    latent. Returns the expected counts."""
    video = next(iter_videos(prepared))
    folder = root / "id00001" / "clip"
    (folder / FRAMES_DIR).mkdir(parents=True)
    (folder / LATENTS_DIR).mkdir(parents=True)
    stems = [f"00_{i:06d}" for i in range(len(video.frames))]
    faces = 0
    for stem, frame in zip(stems, video.frames):
        shutil.copy(frame.crop, folder / FRAMES_DIR / f"{stem}.png")
        np.save(folder / LATENTS_DIR / f"{stem}.npy", load_w_plus(frame.w_plus)[None])
        faces += bool(detect_faces(load_crop(frame.crop)))
    assert len(stems) >= 3, "need three crops"
    (folder / LATENTS_DIR / f"{stems[0]}.npy").unlink()                     # inverted here
    np.save(folder / LATENTS_DIR / f"{stems[1]}.npy", np.zeros((shape[0] + 1, shape[1]), np.float32))  # bad latent
    (folder / FRAMES_DIR / "00_999999.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # corrupt PNG ...
    shutil.copy(folder / LATENTS_DIR / f"{stems[-1]}.npy", folder / LATENTS_DIR / "00_999999.npy")  # ... with a
    (folder / CODES_DIR).mkdir()                                                      # latent and codes
    np.save(folder / CODES_DIR / "00_999999.npy", np.zeros(N_CODES, np.float32))
    bad_latent_had_face = bool(detect_faces(load_crop(video.frames[1].crop)))
    return {"folder": folder, "stems": stems, "sampled": len(stems) + 1, "samples": faces - bad_latent_had_face,
            "no_face": len(stems) - faces - (not bad_latent_had_face)}


def test_add_codes_completes_a_reference_tree_in_place(tmp_path, prepared, models_dir, capsys):
    e4e = load_model(models_dir / "e4e-voxceleb-256.safetensors", "e4e")
    want = reference_tree(tmp_path / "vox", prepared, (e4e.config.n_styles, e4e.config.style_dim))
    folder = want["folder"]
    kept = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    code, out, err = prepare(capsys, models_dir, "--add-codes", tmp_path / "vox")
    assert code == 0, err
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["status"] == "done" and manifest["source"] is None
    assert manifest["frames_sampled"] == want["sampled"]
    assert len(manifest["samples"]) == want["samples"]
    assert manifest["skipped"] == {"unreadable": 1, "bad_latent": 1, "no_face": want["no_face"]}
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())   # crops and latents left as they were
    for stem in manifest["samples"]:
        assert load_deca_codes(folder / CODES_DIR / f"{stem}.npy").shape == (N_CODES,)
        assert (folder / LATENTS_DIR / f"{stem}.npy").is_file()
    [video] = iter_videos(tmp_path / "vox")
    assert [f.stem for f in video.frames] == manifest["samples"]
    summary = json.loads((tmp_path / "vox" / MANIFEST).read_text())
    assert summary["skipped"]["unreadable"] == 1 and summary["codes"] == want["samples"]


def one_line_error(code: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]


def test_bad_inputs_get_one_line(tmp_path, models_dir, videos, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = prepare(capsys, models_dir, tmp_path / "empty", tmp_path / "o1")
    one_line_error(code, err, "no videos")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a video")
    code, _, err = prepare(capsys, models_dir, tmp_path / "notes", tmp_path / "o2")
    one_line_error(code, err, "no videos")
    code, _, err = prepare(capsys, models_dir, "--add-codes", tmp_path / "notes")
    one_line_error(code, err, "not a prepared tree")
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    code, _, err = prepare(capsys, models_dir, videos[0], tmp_path / "blocker" / "out")
    one_line_error(code, err, "cannot write")
    assert not list(tmp_path.glob("o1")) + list(tmp_path.glob("o2"))


def test_a_corrupt_video_is_skipped_in_one_line_and_counted(tmp_path, models_dir, capsys):
    (tmp_path / "in" / "someone").mkdir(parents=True)
    (tmp_path / "in" / "someone" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    code, _, err = prepare(capsys, models_dir, tmp_path / "in", tmp_path / "out")
    one_line_error(code, err, "broken")
    summary = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert (summary["videos"], summary["videos_failed"], summary["samples"]) == (1, 1, 0)
    assert "someone/broken" in summary["failed"][0]


def mjpeg_with_a_corrupt_frame(source: Path, path: Path, bad: int) -> None:
    """Re-encodes ``source`` as Motion-JPEG AVI (each frame its own JPEG) and zeroes the inside of frame ``bad``'s
    JPEG, which FFmpeg then refuses to decode."""
    import av

    frames = list(VideoReader(source))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuvj420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG start markers
    assert len(starts) == len(frames)
    data[starts[bad] + 20:starts[bad + 1] - 20] = bytes(starts[bad + 1] - starts[bad] - 40)
    path.write_bytes(bytes(data))


def test_a_frame_that_cannot_be_decoded_is_counted_and_ends_the_video(tmp_path, models_dir, videos, capsys):
    (tmp_path / "in" / "who").mkdir(parents=True)
    video = tmp_path / "in" / "who" / "clip.avi"
    bad = sum(1 for _ in VideoReader(videos[0])) // 2
    mjpeg_with_a_corrupt_frame(videos[0], video, bad)
    code, _, err = prepare(capsys, models_dir, tmp_path / "in", tmp_path / "out", "--stride", 1)
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "who" / "clip" / MANIFEST).read_text())
    assert manifest["status"] == "done" and manifest["frames_decoded"] == manifest["frames_sampled"] == bad
    assert manifest["skipped"]["unreadable"] == 1 and f"frame {bad}" in manifest["error"]
    assert len(manifest["samples"]) + manifest["skipped"]["no_face"] == bad
    assert len(err.strip().splitlines()) == 1 and "clip" in err


def prepared_lines(output: str) -> list[str]:
    return sorted(line.split("prepared ", 1)[1].split(":")[0] for line in output.splitlines()
                  if "prepared " in line and ":" in line and "videos prepared" not in line)


@pytest.mark.slow
def test_workers_share_the_videos_each_done_once(tmp_path, models_dir, video_tree, stride, prepared, capfd):
    code, out, err = prepare(capfd, models_dir, video_tree, tmp_path / "out", "--stride", stride, "--workers", 2,
                             "--verbose")
    assert code == 0, err
    assert prepared_lines(err) == sorted(f"{ID}/{p.stem}" for p in (video_tree / ID).iterdir())
    for video in iter_videos(prepared):
        again = json.loads((tmp_path / "out" / ID / video.video / MANIFEST).read_text())
        assert again["samples"] == video.manifest["samples"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("stop, whole_group, status", [("SIGTERM", False, 143), ("SIGINT", True, 130)])
def test_a_stop_ends_every_worker_at_once_leaving_whole_files(tmp_path, models_dir, shared_dir, stop, whole_group,
                                                               status):
    """Once the workers write, SIGTERM to the command alone (kill, timeout, docker stop) or Ctrl-C (SIGINT to the
    whole process group) stops every worker too, well before the end, through their clean-up: the command's exit
    status, no traceback, no temporary, no summary."""
    tree, out = tmp_path / "videos", tmp_path / "out"
    (tree / ID).mkdir(parents=True)
    for video in sorted(MEDIA.glob("*.mp4")):
        (tree / ID / video.name).symlink_to(video)
    total = sum(VideoReader(v).frame_count or 0 for v in (tree / ID).iterdir())
    run = subprocess.Popen([sys.executable, "-m", "reenact_core", "dataset", "prepare", "--models", str(models_dir),
                            "--device", "cpu", "--stride", "1", "--workers", "2", str(tree), str(out)],
                           cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while run.poll() is None and not any(out.rglob("*.png")):   # the workers have begun writing
            time.sleep(0.05)
        if whole_group:
            os.killpg(run.pid, getattr(signal, stop))
        else:
            run.send_signal(getattr(signal, stop))
        _, err = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == status and "Traceback" not in err, err
    written = [p for p in out.rglob(f"{FRAMES_DIR}/*.png") if ".partial" not in p.name]
    assert len(written) < total / 2, (len(written), total)   # a whole run writes nearly every frame
    assert not (out / MANIFEST).exists() and [p for p in out.rglob("*") if ".partial" in p.name] == []


@pytest.mark.ddp
@pytest.mark.slow
def test_torchrun_two_ranks_each_video_done_once(tmp_path, models_dir, video_tree, stride, prepared):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
           "reenact_core", "dataset", "prepare", "--models", str(models_dir), "--device", "cpu", "--verbose",
           "--stride", str(stride), str(video_tree), str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(2 now, 0 already done, 0 failed)" in done.stdout   # rank 0 reports both ranks' work
    assert prepared_lines(done.stderr) == sorted(f"{ID}/{p.stem}" for p in (video_tree / ID).iterdir())
    ranks = set()
    for video in iter_videos(prepared):
        again = json.loads((tmp_path / "out" / ID / video.video / MANIFEST).read_text())
        assert again["samples"] == video.manifest["samples"] and again["world_size"] == 2
        ranks.add(again["rank"])
    assert ranks == {0, 1}
    summary = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert summary["videos_done"] == 2 and summary["samples"] == sum(len(v.frames) for v in iter_videos(prepared))


@pytest.mark.slow
def test_memory_stays_flat_in_the_frames_and_the_videos(tmp_path, models_dir, videos):
    import tracemalloc

    from reenact_core.data.prepare import PrepareOptions, prepare_video
    from reenact_core.data.run import load_dataset_models, run_prepare
    from reenact_core.data.sources import VideoSource

    models = load_dataset_models([models_dir])
    longest = max(MEDIA.glob("*.mp4"), key=lambda v: VideoReader(v).frame_count or 0)
    reader = VideoReader(longest)
    n_frames, frame_bytes = sum(1 for _ in reader), reader.width * reader.height * 3

    def peak(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one_sample = PrepareOptions(stride=n_frames)   # one sample per video: the rest of the frames is only decoded
    short, long = (peak(lambda v=v: prepare_video(VideoSource("a", v.stem, v), tmp_path / "one", models, one_sample))
                   for v in (videos[0], longest))
    assert long - short < 4 * frame_bytes, (n_frames, short / frame_bytes, long / frame_bytes)

    def many(count: int) -> None:
        root = tmp_path / f"videos{count}"
        for i in range(count):
            (root / f"id{i:03d}").mkdir(parents=True)
            (root / f"id{i:03d}" / videos[0].name).symlink_to(videos[0])
        run_prepare(root, tmp_path / f"out{count}", options=PrepareOptions(stride=10 ** 6), model_folders=[models_dir])

    few, more = peak(lambda: many(2)), peak(lambda: many(10))
    assert more - few < frame_bytes, (few, more)


def test_ranges_are_the_min_and_max_of_seeded_synthetic_faces_and_go_into_a(tmp_path, models_dir, capsys):
    from reenact_core.data.ranges import RANGES_ROWS, code_statistics, read_ranges
    from reenact_core.measure import measure_codes

    samples, seed = 6, 3
    a_file = tmp_path / "a.safetensors"
    shutil.copy(models_dir / "directions-voxceleb.safetensors", a_file)
    before = load_model(a_file, "directions")
    code, out, err = run(capsys, "dataset", "ranges", "--models", models_dir, "--device", "cpu", tmp_path / "r.npy",
                         "--samples", samples, "--seed", seed, "--batch-size", 4, "--directions", a_file)
    assert code == 0, err
    ranges = read_ranges(tmp_path / "r.npy")
    assert ranges.shape == (RANGES_ROWS, 2) and ranges.dtype == np.float64
    # the same images measured in one batch: z ~ N(0, I) from a CPU generator seeded with the seed, ψ 0.7
    g = load_model(models_dir / "stylegan2-voxceleb-256.safetensors", "stylegan2")
    deca = load_model(models_dir / "deca-eflame.safetensors", "deca")
    z = torch.randn(samples, g.config.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = g.module(z, input_is_latent=False, truncation=0.7, truncation_latent=g.mean_latent)
    rows = code_statistics(measure_codes(deca.module, images)).numpy()
    np.testing.assert_allclose(ranges, np.stack([rows.min(0), rows.max(0)], 1), rtol=1e-5, atol=1e-5)
    assert np.all(ranges[:, 1] > ranges[:, 0])
    # seeded: the same file again; another seed, other ranges
    run(capsys, "dataset", "ranges", "--models", models_dir, "--device", "cpu", tmp_path / "same.npy",
        "--samples", samples, "--seed", seed)
    run(capsys, "dataset", "ranges", "--models", models_dir, "--device", "cpu", tmp_path / "other.npy",
        "--samples", samples, "--seed", seed + 1)
    np.testing.assert_array_equal(read_ranges(tmp_path / "same.npy"), ranges)
    assert not np.array_equal(read_ranges(tmp_path / "other.npy"), ranges)
    # the directions file now normalises Δp with these ranges; its weights are unchanged
    after = load_model(a_file, "directions")
    np.testing.assert_array_equal(np.array(after.config.ranges), ranges[:len(after.config.ranges)])
    assert after.config.angle_scales == before.config.angle_scales
    assert after.config.shift_scale == before.config.shift_scale
    for name, value in before.module.state_dict().items():
        assert torch.equal(after.module.state_dict()[name], value)
    assert "ranges_source" in after.metadata


def test_sources_from_a_file_a_folder_a_tree_and_a_list(tmp_path, videos):
    from reenact_core.data.sources import video_sources
    from reenact_core.errors import InputError

    (tmp_path / "mine").mkdir()
    (tmp_path / "tree" / "alice").mkdir(parents=True)
    for i, video in enumerate(videos):
        (tmp_path / "mine" / f"take{i}{video.suffix}").symlink_to(video)
        (tmp_path / "tree" / "alice" / video.name).symlink_to(video)
    keys = lambda source: [s.key for s in video_sources(source)]  # noqa: E731
    assert keys(tmp_path / "mine" / f"take0{videos[0].suffix}") == ["mine/take0"]   # identity: the folder
    assert keys(tmp_path / "mine") == [f"mine/take{i}" for i in range(len(videos))]
    assert keys(tmp_path / "tree") == sorted(f"alice/{v.stem}" for v in videos)
    listing = tmp_path / "list.txt"
    absolute = tmp_path / "tree" / "alice" / videos[0].name
    listing.write_text(f"# training videos\n\nmine/take1{videos[1].suffix}\n{absolute}\n")
    assert keys(listing) == ["mine/take1", f"alice/{videos[0].stem}"]
    listing.write_text(f"mine/take1{videos[1].suffix}\nmine/missing.mp4\n")
    with pytest.raises(InputError, match="line 2"):
        keys(listing)
    listing.write_text(f"mine/take1{videos[1].suffix}\n./mine/take1{videos[1].suffix}\n")
    with pytest.raises(InputError, match="second video"):
        keys(listing)
