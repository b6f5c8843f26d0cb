"""Streaming video I/O: exact rates and counts, chunking, length policies, audio, errors, flat memory."""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from golden_fixtures import MEDIA
from reenact_core.errors import InputError
from reenact_core.video import (DEFAULT_FPS, LENGTH_POLICIES, PngFramesWriter, VideoReader, VideoWriter,
                                driver_frames, timed_driver_chunks, video_encoder)

SIZE = (48, 64)  # (H, W) of the synthetic videos
RATES = [Fraction(25), Fraction(30000, 1001)]
PATCH = 16  # the frame index is written as two base-16 digits, one grey 16×16 patch each (robust to lossy coding)


def indexed_frame(index: int, height: int = SIZE[0], width: int = SIZE[1]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a moving gradient with the index's two base-16 digits as grey patches at the top left."""
    y, x = np.mgrid[:height, :width]
    rgb = np.stack([(4 * x + index) % 256, (4 * y) % 256, (2 * (x + y) + 3 * index) % 256], -1).astype(np.uint8)
    rgb[:PATCH, :PATCH] = 16 * (index % 16) + 8
    rgb[:PATCH, PATCH:2 * PATCH] = 16 * (index // 16 % 16) + 8
    return rgb


def frame_index(rgb: np.ndarray) -> int:
    """The index written by ``indexed_frame``, read back from the centres of its two patches."""
    low, high = (int(rgb[4:PATCH - 4, x0 + 4:x0 + PATCH - 4].mean()) // 16 for x0 in (0, PATCH))
    return 16 * high + low


def make_video(path: Path, num_frames: int, rate=Fraction(25), size=SIZE, audio: str | None = None,
               audio_seconds: float | None = None, gop: int = 10) -> Path:
    """Write a synthetic video of indexed frames (H.264 with B-frames, key frames every ``gop`` frames at most),
    optionally with a 440 Hz sine in the ``audio`` codec."""
    codec = video_encoder(path)
    quality = {"preset": "ultrafast"} if codec == "libx264" else {"flags": "+qscale", "qmin": "2", "qmax": "2"}
    options = {"bf": "2", **quality}
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=rate, options=options)
        video.width, video.height, video.pix_fmt = size[1], size[0], "yuv420p"
        video.codec_context.gop_size = gop
        sound = None if audio is None else container.add_stream(audio, rate=16000, layout="mono")
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(indexed_frame(i, *size), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            seconds = audio_seconds if audio_seconds is not None else num_frames / rate
            t = np.arange(int(sound.rate * seconds)) / sound.rate
            sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            samples = av.AudioFrame.from_ndarray(sine, format="flt", layout="mono")
            samples.sample_rate, samples.pts = sound.rate, 0
            container.mux(sound.encode(samples))
            container.mux(sound.encode(None))
    return path


def streams_of(path: Path) -> dict[str, tuple[str, Fraction | None]]:
    """Stream type → (codec name, duration in seconds) of a media file."""
    with av.open(str(path)) as container:
        return {s.type: (s.codec_context.name, s.duration * s.time_base if s.duration else None)
                for s in container.streams}


def decoded(reader_or_frames) -> list[int]:
    return [frame_index(f) for f in reader_or_frames]


@pytest.mark.parametrize("rate", RATES, ids=str)
def test_fps_and_frame_count_survive_read_and_write(tmp_path, rate):
    src = make_video(tmp_path / "in.mp4", 37, rate)
    reader = VideoReader(src)
    assert reader.fps == rate and isinstance(reader.fps, Fraction)
    assert (reader.height, reader.width) == SIZE and not reader.has_audio
    assert reader.frame_count == 37 and not reader.frame_count_exact  # declared by the container
    assert decoded(reader) == list(range(37))
    assert reader.frame_count == 37 and reader.frame_count_exact
    with VideoWriter(tmp_path / "out.mp4", reader.fps) as writer:
        for chunk in reader.chunks(8):
            writer.write(chunk)
    assert writer.frames_written == 37
    out = VideoReader(tmp_path / "out.mp4")
    assert out.fps == rate and (out.height, out.width) == SIZE
    assert decoded(out) == list(range(37)) and out.frame_count == 37


@pytest.mark.parametrize("size", [1, 7, 16, 45, 100])
def test_chunks_equal_one_shot_reading(tmp_path, size):
    reader = VideoReader(make_video(tmp_path / "in.mp4", 45))
    whole = np.stack(list(reader.frames()))
    chunks = list(reader.chunks(size))
    assert all(c.dtype == np.uint8 and c.shape[1:] == (*SIZE, 3) for c in chunks)
    assert [len(c) for c in chunks[:-1]] == [size] * (len(chunks) - 1) and 1 <= len(chunks[-1]) <= size
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_reading_from_a_start_frame_matches_decoding_from_the_beginning(tmp_path):
    reader = VideoReader(make_video(tmp_path / "in.mp4", 60, gop=8))
    whole = np.stack(list(reader.frames()))  # this pass records key frames, later starts seek to them
    for start in [0, 1, 7, 8, 9, 31, 59]:
        np.testing.assert_array_equal(np.stack(list(reader.frames(start))), whole[start:])
    assert list(reader.frames(60)) == []


def expected_indices(length: int, wanted: int | None, policy: str) -> list[int]:
    if wanted is None:
        return list(range(length))
    if policy == "stop":
        return list(range(min(length, wanted)))
    if policy == "loop":
        return [i % length for i in range(wanted)]
    period = max(2 * length - 2, 1)
    return [min(i % period, period - i % period) for i in range(wanted)]


@pytest.mark.parametrize("wanted", [None, 0, 5, 12, 41])
@pytest.mark.parametrize("policy", LENGTH_POLICIES)
def test_length_policies_on_a_video(tmp_path, policy, wanted):
    reader = VideoReader(make_video(tmp_path / "in.mp4", 12, gop=4))
    frames = driver_frames(reader, wanted, policy, block=3)
    assert decoded(frames) == expected_indices(12, wanted, policy)


@pytest.mark.parametrize("length", [1, 2, 3])
@pytest.mark.parametrize("policy", LENGTH_POLICIES)
def test_length_policies_on_short_image_drivers(tmp_path, policy, length):
    for i in range(length):
        Image.fromarray(indexed_frame(i)).save(tmp_path / f"{i}.png")
    reader = VideoReader(tmp_path)
    assert decoded(driver_frames(reader, 9, policy, block=2)) == expected_indices(length, 9, policy)


def test_driver_chunks_and_bad_policy(tmp_path):
    reader = VideoReader(make_video(tmp_path / "in.mp4", 10))
    chunks = [frames for _, frames in timed_driver_chunks(reader, 4, 13, "pingpong")]
    assert [len(c) for c in chunks] == [4, 4, 4, 1]
    assert decoded(np.concatenate(chunks)) == expected_indices(10, 13, "pingpong")
    with pytest.raises(InputError, match="bounce"):
        list(driver_frames(reader, 5, "bounce"))


@pytest.mark.parametrize("audio_codec, container, copied", [("aac", "mp4", True), ("pcm_mulaw", "mov", False)])
def test_driver_audio_is_muxed_and_trimmed(tmp_path, audio_codec, container, copied):
    rate = Fraction(30000, 1001)
    src = make_video(tmp_path / f"in.{container}", 30, rate, audio=audio_codec, audio_seconds=3.0)
    reader = VideoReader(src)
    assert reader.has_audio
    with VideoWriter(tmp_path / "out.mp4", reader.fps, audio_from=src) as writer:
        for chunk in reader.chunks(7):
            writer.write(chunk)
    streams = streams_of(tmp_path / "out.mp4")
    assert streams["audio"][0] == (audio_codec if copied else "aac")
    video_seconds = Fraction(30) / rate
    assert video_seconds - Fraction(1, 10) <= streams["audio"][1] <= video_seconds + Fraction(1, 10)
    assert decoded(VideoReader(tmp_path / "out.mp4")) == list(range(30))


def test_no_audio_stream_without_driver_audio(tmp_path):
    src = make_video(tmp_path / "in.mp4", 10)
    with VideoWriter(tmp_path / "out.mp4", 25, audio_from=src) as writer:
        writer.write(np.stack([indexed_frame(i) for i in range(10)]))
    assert set(streams_of(tmp_path / "out.mp4")) == {"video"}
    assert not VideoReader(tmp_path / "out.mp4").has_audio


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_odd_sizes_are_padded_to_even_for_h264_only(tmp_path, suffix):
    frames = np.stack([indexed_frame(i, 47, 63) for i in range(5)])
    out = tmp_path / f"odd{suffix}"
    with VideoWriter(out, 25) as writer:
        writer.write(frames)
    reader = VideoReader(out)
    even = video_encoder(out) == "libx264"
    assert (reader.height, reader.width) == ((48, 64) if even else (47, 63))
    assert decoded(reader) == list(range(5))
    assert np.abs(next(iter(reader))[:47, :63].astype(int) - frames[0]).mean() < 4


def test_mpeg4_codec_and_codec_choice(tmp_path):
    assert video_encoder(tmp_path / "x.mp4") == ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    with VideoWriter(tmp_path / "m.mp4", Fraction(30000, 1001), codec="mpeg4") as writer:
        writer.write(np.stack([indexed_frame(i) for i in range(12)]))
    assert streams_of(tmp_path / "m.mp4")["video"][0] == "mpeg4"
    reader = VideoReader(tmp_path / "m.mp4")
    assert reader.fps == Fraction(30000, 1001) and decoded(reader) == list(range(12))


def test_writer_rejects_bad_frames_and_leaves_no_file_when_empty(tmp_path):
    with VideoWriter(tmp_path / "v.mp4", 25) as writer:
        with pytest.raises(InputError, match="uint8"):
            writer.write(np.zeros((2, *SIZE, 3), np.float32))
        with pytest.raises(InputError, match="uint8"):
            writer.write(np.zeros((*SIZE, 3), np.uint8))
    assert not (tmp_path / "v.mp4").exists()
    with pytest.raises(InputError, match="v.unknownformat"):
        VideoWriter(tmp_path / "v.unknownformat", 25)
    with VideoWriter(tmp_path / "v.mp4", 25) as writer:
        writer.write(np.zeros((1, *SIZE, 3), np.uint8))
        with pytest.raises(InputError, match="earlier"):
            writer.write(np.zeros((1, 32, 32, 3), np.uint8))


def test_png_frames_writer_round_trip(tmp_path):
    frames = np.stack([indexed_frame(i) for i in range(7)])
    with PngFramesWriter(tmp_path / "frames") as writer:
        writer.write(frames[:3])
        writer.write(frames[3:])
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{i:06d}.png" for i in range(7)]
    reader = VideoReader(tmp_path / "frames")
    assert reader.frame_count == 7 and reader.frame_count_exact
    np.testing.assert_array_equal(np.concatenate(list(reader.chunks(4))), frames)


def test_image_folder_and_single_image(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in [(0, "f1.png"), (1, "f2.jpg"), (2, "f10.png")]:  # natural order: f1, f2, f10
        Image.fromarray(indexed_frame(i)).save(folder / name, quality=95)
    (folder / "notes.txt").write_text("not a frame")
    Image.fromarray(indexed_frame(0)[..., 0]).convert("L").save(tmp_path / "grey.png")
    reader = VideoReader(folder)
    assert (reader.height, reader.width, reader.frame_count, reader.has_audio) == (*SIZE, 3, False)
    assert decoded(reader) == [0, 1, 2]
    assert reader.fps == DEFAULT_FPS
    single = VideoReader(tmp_path / "grey.png", image_fps=12)
    assert single.frame_count == 1 and single.fps == 12
    (frame,) = list(single.frames())
    assert frame.shape == (*SIZE, 3) and frame.dtype == np.uint8
    Image.new("RGB", (10, 10)).save(folder / "f11.png")
    with pytest.raises(InputError, match="f11.png"):
        list(VideoReader(folder))


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "audio only", "empty folder", "bad image"])
def test_unreadable_inputs_raise_input_error(tmp_path, case):
    path = tmp_path / "x.mp4"
    if case == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif case == "truncated":
        path.write_bytes(make_video(tmp_path / "ok.mp4", 10).read_bytes()[:64])
    elif case == "audio only":
        path = tmp_path / "x.m4a"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=16000, layout="mono")
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
            samples.sample_rate = 16000
            container.mux(stream.encode(samples))
            container.mux(stream.encode(None))
    elif case == "empty folder":
        path = tmp_path / "frames"
        path.mkdir()
    elif case == "bad image":
        path = tmp_path / "x.jpg"
        path.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=path.name) as exc_info:
        list(VideoReader(path))
    assert "\n" not in str(exc_info.value)


def write_packets(path: Path, codec: str, payloads: list[bytes]) -> Path:
    """A 64×48 video stream of ``codec`` whose packets hold ``payloads`` as they are (the encoder is bypassed)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i, payload in enumerate(payloads):
            packet = av.Packet(payload)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
            container.mux(packet)
    return path


def test_video_without_decodable_frames_raises_when_iterated(tmp_path):
    path = write_packets(tmp_path / "empty.mp4", "mpeg2video", [bytes(16)] * 3)  # packets without any picture
    reader = VideoReader(path)
    with pytest.raises(InputError, match="empty.mp4.*no decodable"):
        next(reader.chunks(4))


def test_undecodable_video_raises_input_error(tmp_path):
    path = write_packets(tmp_path / "junk.mp4", video_encoder(tmp_path / "junk.mp4"), [bytes(16)] * 3)
    with pytest.raises(InputError, match="junk.mp4"):
        list(VideoReader(path))


MEMORY_PROBE = """
import resource, sys
from pathlib import Path
from reenact_core.video import VideoReader, VideoWriter

def rss_mib(field):
    # Linux: VmRSS (now) and VmHWM (peak) of this process. getrusage's ru_maxrss is a fallback only: on Linux it
    # starts at the parent's RSS (kept across fork + exec), which would hide any growth here.
    status = Path("/proc/self/status")
    if status.exists():
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith(field)) / 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)

reader = VideoReader(sys.argv[1])
with VideoWriter(sys.argv[2], reader.fps, audio_from=sys.argv[1]) as writer:
    chunks = reader.chunks(16)
    for _ in range(int(sys.argv[3])):
        writer.write(next(chunks))
    after_warm_up = rss_mib("VmRSS:")
    for chunk in chunks:
        writer.write(chunk)
print(after_warm_up, rss_mib("VmHWM:"), writer.frames_written)
"""


def test_memory_stays_flat_on_long_videos(tmp_path):
    pytest.importorskip("resource")  # POSIX only; the probe below uses it
    growth = {}
    for length in (100, 1000):
        src = make_video(tmp_path / f"in{length}.mp4", length, size=(256, 256), audio="aac", gop=250)
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(src), str(tmp_path / f"out{length}.mp4"), "4"],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        after_warm_up, peak, written = out.stdout.split()
        assert int(written) == length
        growth[length] = float(peak) - float(after_warm_up)
        print(f"{length} frames: RSS after warm-up {float(after_warm_up):.1f} MiB, peak {float(peak):.1f} MiB")
    assert growth[1000] - growth[100] <= 20, growth


REAL_VIDEOS = sorted(MEDIA.glob("*.mp4"))


@pytest.mark.parametrize("path", REAL_VIDEOS, ids=lambda p: p.name)
def test_real_videos_decode_like_opencv(path):
    cv2 = pytest.importorskip("cv2")
    capture = cv2.VideoCapture(str(path))
    declared, cv2_fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
    ok, first_bgr = capture.read()
    cv2_count = int(ok)
    while capture.grab():
        cv2_count += 1
    capture.release()
    reader = VideoReader(path)
    assert reader.frame_count == declared and reader.fps == pytest.approx(cv2_fps)
    count = 0
    for chunk in reader.chunks(32):
        if count == 0:
            assert chunk.shape[1:] == first_bgr.shape
            assert np.abs(chunk[0].astype(int) - first_bgr[..., ::-1]).mean() < 2  # RGB order, same pixels
        count += len(chunk)
    assert count == cv2_count and reader.frame_count == count and reader.frame_count_exact


@pytest.mark.parametrize("path", REAL_VIDEOS, ids=lambda p: p.name)
def test_real_video_head_is_rewritten_with_its_audio(tmp_path, path):
    reader = VideoReader(path)
    head = np.concatenate([frames for _, frames in timed_driver_chunks(reader, 8, 16)])
    with VideoWriter(tmp_path / "out.mp4", reader.fps, audio_from=path) as writer:
        writer.write(head)
    out = VideoReader(tmp_path / "out.mp4")
    assert out.fps == reader.fps and out.has_audio == reader.has_audio
    np.testing.assert_allclose(np.stack(list(out)).mean(axis=(1, 2, 3)), head.mean(axis=(1, 2, 3)), atol=2)
    if reader.has_audio:
        audio_seconds = streams_of(tmp_path / "out.mp4")["audio"][1]
        assert abs(audio_seconds - len(head) / reader.fps) < Fraction(1, 10)
