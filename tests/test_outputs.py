"""Outputs: every container with a codec and audio that fit it, files that appear whole or not at all (errors,
interrupts), and PNG outputs that keep the source's alpha and bit depth. Inputs are built here from the test
media and ``skimage.data.astronaut()``; expectations come from those inputs, never from one particular file."""
from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import require
from engine_fixtures import with_blanks
from golden_fixtures import MEDIA
from reenact_core import files, signals
from reenact_core.cli import main
from reenact_core.errors import InputError
from reenact_core.pipeline import DEFAULT_CHUNK
from reenact_core.faces.images import save_image, to_uint8_rgb
from reenact_core.video import writer as writer_module
from reenact_core.video import (IMAGE_SUFFIXES, OUTPUT_FORMATS, VIDEO_SUFFIXES, PngFramesWriter, VideoReader,
                                VideoWriter, output_format, video_encoder)
from test_video_io import frame_index, indexed_frame

SIZE = (48, 64)                 # (H, W) of the synthetic frames
AUDIO_RATE = 44100              # Hz: not an Opus rate, so webm output resamples
DRIVER_FRAMES = 6               # frames of the real-face drivers of the command-line runs
BLANKS = [2, 3]                 # black frames inserted there for --no-face raise


# --- inputs built here -------------------------------------------------------------------------------------------

def media_driver(path: Path, frames: np.ndarray, rate=Fraction(25), audio: str | None = None,
                 audio_seconds: float = 0.0, video_start: float = 0.0) -> Path:
    """A video of ``frames`` (H.264/MPEG-4 in ``path``'s container) whose first frame starts at ``video_start``
    seconds, with ``audio_seconds`` of a stereo 440 Hz sine from 0 s in the ``audio`` codec."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_encoder(path), rate=rate)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt, video.codec_context.time_base = "yuv420p", 1 / rate
        sound = None if audio is None else container.add_stream(audio, rate=AUDIO_RATE, layout="stereo")
        first = round(video_start * rate)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = first + i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            t = np.arange(int(AUDIO_RATE * audio_seconds)) / AUDIO_RATE
            samples = av.AudioFrame.from_ndarray(np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32),
                                                 format="fltp", layout="stereo")
            samples.sample_rate, samples.pts = AUDIO_RATE, 0
            container.mux(sound.encode(samples))
            container.mux(sound.encode(None))
    return path


def synthetic_frames(count: int) -> np.ndarray:
    return np.stack([indexed_frame(i, *SIZE) for i in range(count)])


def read_back(path: Path) -> dict:
    """What a player sees in a media file: video codec, frame count, pixel format, audio codec and seconds."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {"video": video.codec_context.name, "pix_fmt": video.codec_context.pix_fmt,
                "frames": [f.to_ndarray(format="rgb24") for f in container.decode(video)]}
    with av.open(str(path)) as container:
        info["audio"] = container.streams.audio[0].codec_context.name if container.streams.audio else None
        end = 0.0
        for frame in container.decode(audio=0) if container.streams.audio else ():
            end = max(end, float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate)
        info["audio_seconds"] = end
    return info


def same_codec(decoder_name: str, encoder_name: str) -> bool:
    return av.Codec(decoder_name, "r").id == av.Codec(encoder_name, "w").id


def leftovers(folder: Path) -> list[Path]:
    """Temporary files or folders left anywhere under ``folder`` (names given by ``files.temporary_beside``)."""
    return [p for p in folder.rglob("*") if ".partial" in p.name]


def snapshot(paths: list[Path]) -> dict:
    """Every file under ``paths`` (files or folders) → its bytes."""
    out = {}
    for path in paths:
        for p in ([path] if path.is_file() else sorted(path.rglob("*"))):
            out[p] = p.read_bytes()
    return out


# --- kind 7: containers and codecs -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", VIDEO_SUFFIXES)
@pytest.mark.parametrize("driver_container, audio_codec", [(".mov", "pcm_s16le"), (".mp4", "aac")])
def test_each_container_gets_a_codec_and_audio_that_fit(tmp_path, suffix, driver_container, audio_codec):
    count, rate = 20, Fraction(25)
    driver = media_driver(tmp_path / f"driver{driver_container}", synthetic_frames(count), rate, audio_codec,
                          audio_seconds=2 * count / rate)
    out = tmp_path / f"out{suffix}"
    with VideoWriter(out, rate, audio_from=driver) as writer:
        for start in range(0, count, 7):
            writer.write(synthetic_frames(count)[start:start + 7])
    info, fmt = read_back(out), output_format(out)
    assert same_codec(info["video"], video_encoder(out))
    assert [frame_index(f[:SIZE[0], :SIZE[1]]) for f in info["frames"]] == list(range(count))
    if not fmt.audio:                                               # GIF: no audio at all
        assert info["audio"] is None and not writer.audio_written
        return
    copied = fmt.copied is None or audio_codec in fmt.copied
    assert info["audio"] == audio_codec if copied else same_codec(info["audio"], next(
        e for e in fmt.audio if e in av.codecs_available))
    assert writer.audio_written
    assert abs(info["audio_seconds"] - count / rate) < 0.1                  # trimmed to the video
    if suffix in (".mp4", ".m4v", ".mov"):
        assert info["audio"] == "aac", "PCM (or anything but AAC) in an MPEG-4 file"


def test_webm_is_vp9_with_opus_when_the_build_has_them(tmp_path):
    """The bundled FFmpeg's encoders decide: VP9 and Opus where present (what pip's PyAV wheels carry)."""
    out = tmp_path / "x.webm"
    expected = "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
    assert video_encoder(out) == expected
    driver = media_driver(tmp_path / "d.mp4", synthetic_frames(5), audio="aac", audio_seconds=1.0)
    with VideoWriter(out, 25, audio_from=driver) as writer:
        writer.write(synthetic_frames(5))
    info = read_back(out)
    assert same_codec(info["video"], expected) and info["pix_fmt"] == "yuv420p"
    if "libopus" in av.codecs_available:
        assert info["audio"] == "opus"


def budget_holding(frames: int, size: tuple[int, int] = SIZE) -> int:
    """A ``LOOKAHEAD_BYTES`` under which the encoders may hold ``frames`` yuv420p frames of ``size``."""
    return frames * size[0] * size[1] * 3 // 2


@pytest.mark.parametrize("held", [1, 3, writer_module.X264_MIN_LOOKAHEAD - 1, writer_module.X264_MIN_LOOKAHEAD, 30,
                                  400])
def test_h264_of_frames_too_big_for_the_budget_holds_fewer(tmp_path, monkeypatch, held):
    """What libx264 wrote in its settings (the stream's SEI) on a 16-CPU machine: lookahead and threads within the
    frame budget, and the low-memory setting when too few frames fit."""
    require("libx264" in av.codecs_available, "FFmpeg's libx264 encoder")
    cpus, size = 16, (256, 64)   # x264 runs up to 4 frame threads on frames 256 rows high
    monkeypatch.setattr(writer_module, "_cpu_count", lambda: cpus)
    monkeypatch.setattr(writer_module, "LOOKAHEAD_BYTES", budget_holding(held, size))
    out = tmp_path / "x.mp4"
    with VideoWriter(out, 25) as writer:
        writer.write(np.resize(synthetic_frames(5), (5, *size, 3)))
    settings = dict(item.split("=", 1) for item in
                    out.read_bytes().split(b"options: ", 1)[1].split(b"\0", 1)[0].decode().split() if "=" in item)
    assert settings["crf"].startswith(str(writer_module.X264_CRF)), settings
    if held < writer_module.X264_MIN_LOOKAHEAD:
        assert (settings["ref"], settings["bframes"], settings["rc_lookahead"]) == ("2", "1", "1"), settings
    else:
        assert settings["rc_lookahead"] == str(min(writer_module.X264_LOOKAHEAD, held)), settings
    if held < cpus * 3 // 2:
        assert int(settings["threads"]) <= held, settings


@pytest.mark.parametrize("held", [0, 3])
def test_vp9_of_frames_too_big_for_the_budget_lags_fewer_frames(monkeypatch, held):
    """libvpx-vp9 gives its first packet after its lag in frames (25 by default): after ``held`` under the budget."""
    require("libvpx-vp9" in av.codecs_available, "FFmpeg's libvpx-vp9 encoder")
    monkeypatch.setattr(writer_module, "LOOKAHEAD_BYTES", budget_holding(held))
    with av.open(io.BytesIO(), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=25,
                                      options=writer_module.frame_size_options("libvpx-vp9", *SIZE))
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        fed = 0
        for frame in synthetic_frames(writer_module.VPX_LAG):
            fed += 1
            if stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                break
        stream.encode()
    assert fed <= held + 1


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
@pytest.mark.parametrize("gap", [0.4, 2.0])
def test_audio_entirely_before_the_first_frame_adds_no_audio(tmp_path, gap, suffix):
    """Audio that ends before the first video frame: no audio stream, and the writer says so."""
    driver = media_driver(tmp_path / "d.mp4", synthetic_frames(10), audio="aac", audio_seconds=gap / 2,
                          video_start=gap)
    with VideoWriter(tmp_path / f"o{suffix}", 25, audio_from=driver) as writer:
        writer.write(synthetic_frames(10))
    assert not writer.audio_written and read_back(tmp_path / f"o{suffix}")["audio"] is None


@pytest.mark.parametrize("name", ["x.avi", "x.xyz", "x", "x.flv"])
def test_unknown_containers_are_refused_before_any_work(tmp_path, name):
    assert Path(name).suffix.lower() not in VIDEO_SUFFIXES + IMAGE_SUFFIXES
    with pytest.raises(InputError, match="unknown container"):
        VideoWriter(tmp_path / name, 25)
    assert list(tmp_path.iterdir()) == []


# --- kind 6: outputs appear whole or not at all ------------------------------------------------------------------

class Interrupt(KeyboardInterrupt):
    """Ctrl-C, injected."""


def half_then_interrupt(temporary, path):
    """Stands in for ``files.publish``: the temporary file loses half its bytes, then Ctrl-C."""
    data = Path(temporary).read_bytes()
    Path(temporary).write_bytes(data[:len(data) // 2])
    raise Interrupt


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_an_interrupted_video_leaves_the_previous_file(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    with VideoWriter(out, 25) as writer:
        writer.write(synthetic_frames(4))
    before = out.read_bytes()
    with pytest.raises(Interrupt):
        with VideoWriter(out, 25) as writer:
            writer.write(synthetic_frames(8)[4:])
            raise Interrupt
    assert out.read_bytes() == before and leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_an_interrupted_frames_folder_leaves_the_previous_frames(tmp_path, monkeypatch):
    folder = tmp_path / "png"
    with PngFramesWriter(folder) as writer:
        writer.write(synthetic_frames(5))
    before = snapshot([folder])
    calls = []
    real = files.atomic_write

    def interrupted_third(path, write):
        calls.append(path)
        if len(calls) == 3:
            raise Interrupt
        return real(path, write)

    monkeypatch.setattr("reenact_core.faces.images.atomic_write", interrupted_third)
    with pytest.raises(Interrupt):
        with PngFramesWriter(folder) as writer:
            writer.write(synthetic_frames(7)[:1])                 # a first chunk written whole
            writer.write(synthetic_frames(7)[1:])                 # interrupted at its second frame
    assert snapshot([folder]) == before and leftovers(tmp_path) == []
    monkeypatch.undo()
    with PngFramesWriter(folder) as writer:                        # a finished run replaces the frames whole
        writer.write(synthetic_frames(3))
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:06d}.png" for i in range(3)]
    assert leftovers(tmp_path) == []


def test_frames_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="other files"):
        PngFramesWriter(tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".safetensors"])
def test_a_write_interrupted_half_way_leaves_the_previous_file(tmp_path, monkeypatch, suffix):
    """Image and prepared-source files: half the bytes written, then Ctrl-C."""
    import torch

    out = tmp_path / f"out{suffix}"
    def write(): return (files.write_safetensors(out, {"x": torch.arange(1000.0)}) if suffix == ".safetensors"
                         else save_image(out, synthetic_frames(1)[0]))
    write()
    before = out.read_bytes()
    monkeypatch.setattr(files, "publish", half_then_interrupt)
    with pytest.raises(Interrupt):
        write()
    assert out.read_bytes() == before and leftovers(tmp_path) == []


# --- kind 8: alpha and bit depth ---------------------------------------------------------------------------------

def astronaut_with_alpha(dtype=np.uint8) -> np.ndarray:
    """The astronaut as RGBA with its top quarter transparent and a soft alpha ramp below."""
    from skimage import data

    rgb = data.astronaut()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:rgb.shape[0] // 4] = 0
    alpha[rgb.shape[0] // 4:rgb.shape[0] // 2] = np.linspace(0, 255, rgb.shape[0] // 4, dtype=np.uint8)[:, None]
    rgba = np.dstack([rgb, alpha])
    return rgba if dtype == np.uint8 else rgba.astype(np.uint16) * 257 + np.uint16(3)


def read_unchanged(path: Path) -> np.ndarray:
    """A PNG as stored: channels in RGB(A) order, 8 or 16 bits."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        image = image[..., [2, 1, 0, 3][:image.shape[2]]]
    return image


@pytest.mark.parametrize("layout", ["rgba8", "rgba16", "rgb16", "grey16", "grey8", "float"])
def test_png_keeps_channels_alpha_and_depth(tmp_path, layout):
    rgba = astronaut_with_alpha(np.uint16 if "16" in layout else np.uint8)
    image = {"rgba8": rgba, "rgba16": rgba, "rgb16": rgba[..., :3], "grey16": rgba[..., 0], "grey8": rgba[..., 1],
             "float": rgba[..., :3] / np.float32(255)}[layout]
    written = read_unchanged(save_image(tmp_path / "o.png", image))
    if layout == "float":
        assert written.dtype == np.uint16 and np.abs(written / 65535.0 - image).max() <= 1 / 65535
    else:
        np.testing.assert_array_equal(written, image)
    jpg = np.asarray(Image.open(save_image(tmp_path / "o.jpg", image)))
    assert jpg.dtype == np.uint8 and jpg.shape == image.shape[:2] + (3,)   # JPEG: 8-bit RGB, alpha dropped
    assert np.abs(jpg.astype(int) - to_uint8_rgb(image)).mean() < 3


def test_png_frames_keep_alpha_and_depth(tmp_path):
    frames = np.stack([astronaut_with_alpha(np.uint16)[::4, ::4]] * 3)
    frames[1, ..., :3] //= 2
    with PngFramesWriter(tmp_path / "f") as writer:
        writer.write(frames)
    written = np.stack([read_unchanged(p) for p in sorted((tmp_path / "f").iterdir())])
    np.testing.assert_array_equal(written, frames)


def test_videos_are_8_bit_rgb_and_refuse_deeper_frames(tmp_path):
    with VideoWriter(tmp_path / "o.mp4", 25) as writer:
        with pytest.raises(InputError, match="uint8 RGB"):
            writer.write(astronaut_with_alpha(np.uint16)[None, ::8, ::8])
        with pytest.raises(InputError, match="uint8 RGB"):
            writer.write(astronaut_with_alpha()[None, ::8, ::8])
        writer.write(to_uint8_rgb(astronaut_with_alpha())[None, ::8, ::8])
    assert all(fmt.pix_fmt in ("yuv420p", "pal8") for fmt in OUTPUT_FORMATS.values())
    assert read_back(tmp_path / "o.mp4")["pix_fmt"] == "yuv420p"


# --- through the command line ------------------------------------------------------------------------------------

def real_frames(count: int) -> np.ndarray:
    """The first ``count`` frames of the shortest test video (a real face in each)."""
    videos = sorted(MEDIA.glob("d*.mp4"))
    assert videos, "no test videos"
    shortest = min(videos, key=lambda v: VideoReader(v).frame_count or 10 ** 9)
    return next(VideoReader(shortest).chunks(count))


def portrait(tmp_path: Path, layout: str) -> Path:
    """The astronaut as an RGBA PNG (transparent top rows) or an 8-bit RGB PNG."""
    image = astronaut_with_alpha() if layout == "rgba" else astronaut_with_alpha()[..., :3]
    path = tmp_path / f"astronaut_{layout}.png"
    Image.fromarray(image).save(path)
    return path


def reenact(capsys, models_dir, *argv) -> tuple[int, str, str]:
    tuning = [] if "--source-in" in argv else ["--tune-steps", "0"]   # a prepared source keeps its tuning
    code = main(["reenact", "--models", str(models_dir), "--device", "cpu", *tuning, *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".mp4", ".webm", *(pytest.param(s, marks=pytest.mark.slow) for s in (".gif", ".mkv"))])
def test_command_line_containers_and_its_audio_summary(tmp_path, models_dir, capsys, shared_dir, suffix):
    frames = real_frames(DRIVER_FRAMES)
    driver = media_driver(tmp_path / "d.mov", frames, audio="pcm_s16le", audio_seconds=2.0)
    code, out, err = reenact(capsys, models_dir, "--source", portrait(tmp_path, "rgb"), "--driving", driver,
                             "--out", tmp_path / f"o{suffix}")
    assert code == 0, err
    info, fmt = read_back(tmp_path / f"o{suffix}"), output_format(tmp_path / f"o{suffix}")
    assert len(info["frames"]) == DRIVER_FRAMES and same_codec(info["video"], video_encoder(tmp_path / f"o{suffix}"))
    assert (info["audio"] is not None) == bool(fmt.audio) == ("audio from the driver" in out)
    assert info["audio"] != "pcm_s16le" or suffix == ".mkv"


def test_command_line_does_not_claim_audio_that_precedes_the_video(tmp_path, models_dir, capsys, shared_dir):
    driver = media_driver(tmp_path / "d.mp4", real_frames(DRIVER_FRAMES), audio="aac", audio_seconds=0.5,
                          video_start=1.0)
    assert VideoReader(driver).has_audio
    code, out, err = reenact(capsys, models_dir, "--source", portrait(tmp_path, "rgb"), "--driving", driver,
                             "--out", tmp_path / "o.mp4")
    assert code == 0, err
    assert "audio" not in out and read_back(tmp_path / "o.mp4")["audio"] is None


@pytest.mark.parametrize("out", ["o.avi", "o.xyz", "frames"])
def test_command_line_refuses_unknown_outputs_before_loading_models(tmp_path, capsys, monkeypatch, out):
    def no_models(*args, **kwargs):
        raise AssertionError("models loaded before the output was checked")

    monkeypatch.setattr("reenact_core.engine.load_reenact_models", no_models)
    code, _, err = reenact(capsys, tmp_path, "--source", __file__, "--driving", __file__, "--out", tmp_path / out)
    assert code == 2 and "unknown output type" in err and "Traceback" not in err
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "notes.txt").write_text("keep")
    code, _, err = reenact(capsys, tmp_path, "--source", __file__, "--driving", __file__, "--out", tmp_path / "o.mp4",
                           "--png-frames", tmp_path / "png")
    assert code == 2 and "--png-frames" in err and "other files" in err


def previous_outputs(tmp_path: Path, capsys, models_dir, source: Path) -> tuple[list[Path], dict]:
    """A finished run's video, PNG frames and prepared source, and their bytes."""
    outputs = [tmp_path / "o.mp4", tmp_path / "png", tmp_path / "s.safetensors"]
    driver = media_driver(tmp_path / "good.mp4", real_frames(3))
    code, _, err = reenact(capsys, models_dir, "--source", source, "--driving", driver, "--out", outputs[0],
                           "--png-frames", outputs[1], "--source-out", outputs[2])
    assert code == 0, err
    return outputs, snapshot(outputs)


@pytest.mark.slow
def test_no_face_raise_leaves_the_previous_outputs(tmp_path, models_dir, capsys, shared_dir):
    source = portrait(tmp_path, "rgb")
    outputs, before = previous_outputs(tmp_path, capsys, models_dir, source)
    faces = real_frames(DRIVER_FRAMES)
    first_chunk = np.resize(faces, (DEFAULT_CHUNK, *faces.shape[1:]))   # written before the blanks are reached
    blanks = [DEFAULT_CHUNK + b for b in BLANKS]
    driver = media_driver(tmp_path / "blanks.mp4", with_blanks(np.concatenate([first_chunk, faces]), blanks))
    code, _, err = reenact(capsys, models_dir, "--source-in", outputs[2], "--driving", driver, "--out", outputs[0],
                           "--png-frames", outputs[1], "--no-face", "raise")
    assert code == 2 and "Traceback" not in err and "face" in err
    assert snapshot(outputs) == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("at", [pytest.param(1, marks=pytest.mark.slow), 4])
def test_ctrl_c_mid_write_leaves_the_previous_outputs(tmp_path, models_dir, capsys, shared_dir, monkeypatch, at):
    """Ctrl-C while the ``at``-th PNG frame is written (the video half-encoded): every earlier output is intact."""
    source = portrait(tmp_path, "rgb")
    outputs, before = previous_outputs(tmp_path, capsys, models_dir, source)
    calls, real = [], files.atomic_write

    def interrupted(path, write):
        calls.append(path)
        if len(calls) == at:
            raise Interrupt
        return real(path, write)

    monkeypatch.setattr("reenact_core.faces.images.atomic_write", interrupted)
    driver = media_driver(tmp_path / "d.mp4", real_frames(DRIVER_FRAMES))
    code, _, err = reenact(capsys, models_dir, "--source-in", outputs[2], "--driving", driver, "--out", outputs[0],
                           "--png-frames", outputs[1])
    assert code == 130 and "interrupted" in err, err
    assert snapshot(outputs) == before and leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_terminated_run_leaves_the_previous_outputs(tmp_path, models_dir, capsys, shared_dir):
    """SIGTERM (kill, timeout, a job scheduler) once the outputs are being written stops the command line as Ctrl-C
    does: exit 143, every earlier output intact, nothing partial left."""
    source = portrait(tmp_path, "rgb")
    outputs, before = previous_outputs(tmp_path, capsys, models_dir, source)
    driver = media_driver(tmp_path / "d.mp4", real_frames(DRIVER_FRAMES))
    run = subprocess.Popen([sys.executable, "-m", "reenact_core", "reenact", "--models", str(models_dir),
                            "--source-in", str(outputs[2]), "--driving", str(driver), "--out", str(outputs[0]),
                            "--png-frames", str(outputs[1]), "--frames", str(10 ** 6), "--length", "loop"],
                           cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        while not leftovers(tmp_path) and run.poll() is None:   # the outputs' temporaries: writing has begun
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM and "terminated" in err, err
    assert snapshot(outputs) == before and leftovers(tmp_path) == []


def test_the_command_line_takes_sigterm_for_its_run_only(monkeypatch):
    seen = []
    monkeypatch.setattr("reenact_core.cli._doctor", lambda args: seen.append(signal.getsignal(signal.SIGTERM)) or 0)

    def callers(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, callers)
    try:
        assert main(["doctor"]) == 0
        assert seen == [signals._raise_terminated] and signal.getsignal(signal.SIGTERM) is callers
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_handler_installed_from_c_is_left_in_place(monkeypatch):
    """signal.signal gives None for a handler set from C (an embedding host): nothing to put back, no TypeError."""
    calls = []
    monkeypatch.setattr(signals.signal, "signal", lambda signum, handler: calls.append(handler))
    restore = signals.handle(signal.SIGTERM, signals._raise_terminated)
    restore()
    assert calls == [signals._raise_terminated]


def test_ctrl_c_while_the_prepared_source_is_saved_leaves_the_previous_one(tmp_path, models_dir, capsys, shared_dir,
                                                                            monkeypatch):
    source = portrait(tmp_path, "rgb")
    outputs, before = previous_outputs(tmp_path, capsys, models_dir, source)
    monkeypatch.setattr(files, "publish", half_then_interrupt)
    code, _, err = reenact(capsys, models_dir, "--source", source, "--driving", tmp_path / "good.mp4",
                           "--out", outputs[0], "--png-frames", outputs[1], "--source-out", outputs[2])
    assert code == 130 and "interrupted" in err, err
    assert snapshot(outputs) == before and leftovers(tmp_path) == []


def test_rgba_source_keeps_its_alpha_in_png_outputs(tmp_path, models_dir, capsys, shared_dir):
    """Edit to PNG and --png-frames: RGBA out, the source's alpha everywhere (face region included)."""
    source = portrait(tmp_path, "rgba")
    alpha = np.asarray(Image.open(source))[..., 3]
    code, _, err = reenact(capsys, models_dir, "--source", source, "--out", tmp_path / "edit.png", "--edit", "yaw=15")
    assert code == 0, err
    edited = read_unchanged(tmp_path / "edit.png")
    assert edited.shape == alpha.shape + (4,) and edited.dtype == np.uint8
    np.testing.assert_array_equal(edited[..., 3], alpha)
    assert (edited[alpha == 0, 3] == 0).all() and (alpha == 0).any()
    driver = media_driver(tmp_path / "d.mp4", real_frames(2))
    code, _, err = reenact(capsys, models_dir, "--source", source, "--driving", driver, "--out", tmp_path / "o.mp4",
                           "--png-frames", tmp_path / "png")
    assert code == 0, err
    for png in sorted((tmp_path / "png").iterdir()):
        frame = read_unchanged(png)
        assert frame.shape == alpha.shape + (4,)
        np.testing.assert_array_equal(frame[..., 3], alpha)
    assert read_back(tmp_path / "o.mp4")["pix_fmt"] == "yuv420p"            # the video: 8-bit RGB content


def test_command_line_summary_says_what_it_wrote(tmp_path, models_dir, capsys, shared_dir):
    """A one-frame driver into an image: "an image", no frame rate; the PNG frames folder named."""
    Image.fromarray(real_frames(1)[0]).save(tmp_path / "driver.png")
    out, frames = tmp_path / "o.png", tmp_path / "png"
    code, printed, err = reenact(capsys, models_dir, "--source", portrait(tmp_path, "rgb"), "--driving",
                                 tmp_path / "driver.png", "--out", out, "--png-frames", frames)
    assert code == 0, err
    assert f"wrote {out}: an image (" in printed and "fps" not in printed, printed
    assert f"PNG frames in {frames}" in printed, printed


def test_16_bit_source_gives_16_bit_png_outputs(tmp_path, models_dir, shared_dir):
    """Through the library (the command line reads the same array from a 16-bit file): edit and reenact."""
    from reenact_core.engine import DriveOptions, edit, load_reenact_models, prepare_source
    from reenact_core.pipeline import reenact_file

    image = astronaut_with_alpha(np.uint16)[..., :3]
    models = load_reenact_models([models_dir])
    source = prepare_source(image, models, tune_steps=0)
    rendered = edit(source, models, {"yaw": 15.0})
    written = read_unchanged(save_image(tmp_path / "edit.png", rendered.frames[0]))
    assert written.dtype == np.uint16 and written.shape == image.shape
    np.testing.assert_array_equal(written, rendered.frames[0])
    untouched = (written == image).all(-1)
    assert untouched.mean() > 0.5 and (image[untouched] % 257 != 0).any(), "16-bit values were reduced to 8 bits"
    driver = media_driver(tmp_path / "d.mp4", real_frames(2))
    reenact_file(models, source, driver, tmp_path / "o.mp4", DriveOptions(), png_dir=tmp_path / "png")
    pngs = [read_unchanged(p) for p in sorted((tmp_path / "png").iterdir())]
    assert len(pngs) == 2 and all(p.dtype == np.uint16 and p.shape == image.shape for p in pngs)
