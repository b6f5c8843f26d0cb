"""Real-world inputs, built at test time from the test media and skimage's astronaut: videos stored sideways with
a display rotation, images of high bit depth, float, 1-bit, CMYK and alpha modes, and variable-frame-rate drivers.
Expectations are derived from the inputs built here, never from a particular media file."""
from __future__ import annotations

import json
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import require
from golden_fixtures import MEDIA
from input_fixtures import H264, write_clip
from reenact_core.cli import main
from reenact_core.engine import DriveOptions, load_reenact_models, prepare_source
from reenact_core.errors import InputError
from reenact_core.faces.alignment import FaceAligner
from reenact_core.faces.images import from_pil, read_image, to_uint8_rgb
from reenact_core.faces.smoothing import smooth_sequence
from reenact_core.pipeline import reenact_file
from reenact_core.video import VideoReader, VideoWriter, timed_driver_frames
from reenact_core.video.orientation import matrix_orientation

CLIP_FRAMES = 6          # driver frames taken from a test video
CLIP_HEIGHT = 256        # the clips are downscaled to this height (faces stay well above the detector's window)
ROTATIONS = (90, 180, 270)
EXIF_ORIENTATION = 0x0112  # the EXIF tag of the orientation
GREY_LEVEL_TOLERANCE = 1  # 8-bit levels between a high-depth image read here and its 8-bit rendering
CODING_TOLERANCE = 12     # mean 8-bit difference allowed by lossy coding when comparing decoded frames


# --- inputs built at test time -----------------------------------------------------------------------------------

def media_frames(count: int = CLIP_FRAMES) -> tuple[np.ndarray, Fraction]:
    """The first ``count`` frames of the first test video, downscaled to CLIP_HEIGHT rows, and its frame rate."""
    videos = sorted(MEDIA.glob("d*.mp4"))
    require(bool(videos), f"test videos in {MEDIA}")
    reader = VideoReader(videos[0])
    frames = next(reader.chunks(count))
    width = round(frames.shape[2] * CLIP_HEIGHT / frames.shape[1] / 2) * 2
    return np.stack([cv2.resize(f, (width, CLIP_HEIGHT), interpolation=cv2.INTER_AREA) for f in frames]), reader.fps


def vfr_patterns(count: int) -> dict[str, list[int]]:
    """Timestamps in ticks of 1/fps: every third frame dropped after the first third (original times kept), and
    durations alternating between one and two ticks."""
    kept = [i for i in range(count * 2) if i < count // 3 or i % 3 != 2][:count]
    alternating = np.cumsum([0] + [1 + i % 2 for i in range(count - 1)]).tolist()
    return {"dropped": kept, "alternating": alternating}


def output_times(path: Path) -> list[Fraction]:
    """Presentation times (seconds from the first frame) of a video's frames, in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        return [(p - pts[0]) * stream.time_base for p in pts]


def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- kind 1: video orientation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rotation", ROTATIONS)
def test_rotated_video_reads_upright(tmp_path, shared_dir, rotation):
    frames, fps = media_frames(3)
    path = write_clip(tmp_path / "rotated.mp4", frames, list(range(len(frames))), 1 / fps, rotation=rotation)
    reader = VideoReader(path)
    assert (reader.height, reader.width) == frames.shape[1:3]
    decoded = np.stack(list(reader))
    assert decoded.shape == frames.shape
    error = np.abs(decoded.astype(int) - frames).mean()
    assert error < CODING_TOLERANCE, f"mean difference {error:.1f} from the upright frames"
    stored = np.rot90(decoded, -rotation // 90, axes=(1, 2))   # the frames as coded, what ignoring the matrix gives
    if stored.shape == frames.shape:
        assert np.abs(stored.astype(int) - frames).mean() > 2 * error
    # a seek (the backward passes of pingpong) gives the same upright frames
    assert np.array_equal(next(reader.frames(len(frames) - 1)), decoded[-1])


@pytest.mark.parametrize("degrees", (0, 90, 180, 270))
@pytest.mark.parametrize("hflip, vflip", [(False, True), (True, False), (True, True)])
def test_mirrored_display_matrices_read_upright(tmp_path, degrees, hflip, vflip):
    """PyAV's writer says how a matrix of rotation + mirrors shows frames; the reader must show them so."""
    upright = np.zeros((48, 80, 3), np.uint8)
    upright[:16, :24] = 255
    upright[32:, 64:, 1] = 255
    stored = upright[::-1] if vflip else upright
    stored = np.ascontiguousarray(np.rot90(stored[:, ::-1] if hflip else stored, -degrees // 90))
    with av.open(str(tmp_path / "m.mp4"), "w") as container:
        stream = container.add_stream(H264, rate=10)
        stream.height, stream.width, stream.pix_fmt = *stored.shape[:2], "yuv420p"
        stream.set_display_rotation(degrees, hflip, vflip)
        frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    (decoded,) = list(VideoReader(tmp_path / "m.mp4"))
    assert decoded.shape == upright.shape and np.abs(decoded.astype(int) - upright).mean() < CODING_TOLERANCE


def test_display_rotation_off_quarter_turns_is_refused():
    angle = np.radians(30)
    matrix = (round(np.cos(angle) * 65536), round(-np.sin(angle) * 65536), 0,
              round(np.sin(angle) * 65536), round(np.cos(angle) * 65536), 0, 0, 0, 1 << 30)
    with pytest.raises(InputError, match="multiple of 90"):
        matrix_orientation(matrix)


@pytest.mark.slow
@pytest.mark.parametrize("rotation", ROTATIONS)
def test_rotated_driver_is_driven_and_evaluated_through_the_command_line(tmp_path, models_dir, capsys, shared_dir,
                                                                       rotation):
    frames, fps = media_frames()
    driver = write_clip(tmp_path / "rotated.mp4", frames, list(range(len(frames))), 1 / fps, rotation=rotation)
    source = tmp_path / "source.png"
    Image.fromarray(frames[0]).save(source)
    code, out, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", source,
                         "--driving", driver, "--out", tmp_path / "out.mp4", "--tune-steps", 0, "--no-face", "raise")
    assert code == 0, err   # "raise": every frame had a face
    assert f"{len(frames)} driven" in out
    # evaluate: the upright clip as the "output" of the rotated driver; pose is measured only where both
    # show a face, so every frame is measured only when the driver is read upright
    upright = write_clip(tmp_path / "upright.mp4", frames, list(range(len(frames))), 1 / fps)
    code, _, err = run(capsys, "evaluate", "--models", models_dir, "--device", "cpu", "--source", source,
                       "--driving", driver, "--output", upright, "--json", tmp_path / "m.json")
    assert code == 0, err
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["frames"] == len(frames) and report["params_frames"] == len(frames)


# --- kind 2: image modes at their real range ---------------------------------------------------------------------

def grey_8bit(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def mode_instances(rgb: np.ndarray) -> dict[str, tuple[Image.Image, np.ndarray]]:
    """PIL images of several modes made from ``rgb``, each with the (H, W, 3) uint8 RGB it should read as."""
    grey = grey_8bit(rgb)
    grey3 = np.repeat(grey[..., None], 3, axis=2)
    wide = grey.astype(np.uint16) * 257
    bits = Image.fromarray(grey).convert("1")
    alpha = np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None].repeat(rgb.shape[0], 0)
    la = Image.fromarray(np.dstack([grey, alpha]), "LA")
    palette = Image.fromarray(rgb).convert("P")
    pa = Image.merge("PA", (palette, Image.fromarray(alpha)))
    pa.putpalette(palette.getpalette())
    cmyk = Image.fromarray(rgb).convert("CMYK")
    return {
        "I;16": (Image.fromarray(wide), grey3),
        "I;16B": (Image.frombytes("I;16B", wide.shape[::-1], wide.astype(">u2").tobytes()), grey3),
        "I": (Image.fromarray(wide.astype(np.int32), "I"), grey3),
        "I 8-bit": (Image.fromarray(grey.astype(np.int32), "I"), grey3),
        "F": (Image.fromarray(wide.astype(np.float32) / 65535, "F"), grey3),
        "F 8-bit": (Image.fromarray(grey.astype(np.float32), "F"), grey3),
        "1": (bits, np.repeat(np.asarray(bits.convert("L"))[..., None], 3, axis=2)),
        "LA": (la, grey3),
        "PA": (pa, np.asarray(palette.convert("RGB"))),
        "CMYK": (cmyk, np.asarray(cmyk.convert("RGB"))),
    }


MODES = ("I;16", "I;16B", "I", "I 8-bit", "F", "F 8-bit", "1", "LA", "PA", "CMYK")


@pytest.mark.parametrize("mode", MODES)
def test_every_pil_mode_reads_at_its_real_range(tmp_path, mode):
    rgb = astronaut()[::4, ::4].copy()
    image, expected = mode_instances(rgb)[mode]
    if mode == "PA":   # no file format PIL writes holds PA: read the image itself
        read, naive = from_pil(image), np.asarray(image.convert("RGB"))
    else:
        path = tmp_path / ("image.png" if image.mode in ("I;16", "I;16B", "1", "LA") else "image.tif")
        image.save(path)
        read, naive = read_image(path), np.asarray(Image.open(path).convert("RGB"))
    assert read.shape[:2] == rgb.shape[:2]
    difference = np.abs(to_uint8_rgb(read).astype(int) - expected).max()
    assert difference <= GREY_LEVEL_TOLERANCE, f"{mode}: {difference} levels from the expected image"
    if mode in ("I;16", "I;16B", "I", "F"):   # the instances that PIL's convert("RGB") crushes
        assert np.abs(naive.astype(int) - expected).mean() > 16 * GREY_LEVEL_TOLERANCE
    if mode in ("LA", "PA"):
        assert read.shape[2] == 4 and np.array_equal(read[..., 3], np.asarray(image.getchannel("A")))


def test_sixteen_bit_depth_is_kept(tmp_path):
    rgb = astronaut()[::4, ::4].copy()
    wide = (rgb.astype(np.uint16) * 257) | 0x7f   # low bytes an 8-bit rendering drops
    Image.fromarray(wide[..., 0]).save(tmp_path / "grey.png")
    assert np.array_equal(read_image(tmp_path / "grey.png"), wide[..., 0])
    for name in ("rgb48.png", "rgb48.tif"):   # 16-bit RGB, which PIL opens as 8-bit; written by OpenCV
        cv2.imwrite(str(tmp_path / name), wide[..., ::-1])
        assert np.array_equal(read_image(tmp_path / name), wide)
    rgba = np.dstack([wide, wide[..., :1]])
    cv2.imwrite(str(tmp_path / "rgba64.png"), rgba[..., [2, 1, 0, 3]])
    assert np.array_equal(read_image(tmp_path / "rgba64.png"), rgba)


def with_exif_orientation(png: bytes, orientation: int) -> bytes:
    """A PNG file with an eXIf chunk holding an EXIF orientation, placed after the header chunk."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    data = exif.tobytes().removeprefix(b"Exif\x00\x00")
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    header_end = 8 + 25   # the signature and the IHDR chunk
    return png[:header_end] + chunk + png[header_end:]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_colour_is_turned_upright_like_eight_bit(tmp_path, orientation):
    rgb = astronaut()[::8, ::6].copy()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(rgb).save(tmp_path / "eight.png", exif=exif)
    ok, png = cv2.imencode(".png", (rgb.astype(np.uint16) * 257)[..., ::-1])
    (tmp_path / "wide.png").write_bytes(with_exif_orientation(png.tobytes(), orientation))
    wide, eight = read_image(tmp_path / "wide.png"), read_image(tmp_path / "eight.png")
    assert wide.dtype == np.uint16 and np.array_equal(to_uint8_rgb(wide), eight)


def test_float_images_with_nan_are_refused_and_premultiplied_alpha_is_read(tmp_path):
    nan = Image.fromarray(np.full((8, 8), np.nan, np.float32), "F")
    nan.save(tmp_path / "nan.tif")
    with pytest.raises(InputError, match="NaN"):
        read_image(tmp_path / "nan.tif")
    premultiplied = Image.new("La", (8, 8), (200, 255))
    assert from_pil(premultiplied).shape == (8, 8, 4)


@pytest.mark.parametrize("mode", ("I;16", "I;16B"))
def test_image_drivers_of_high_depth_read_like_their_8_bit_rendering(tmp_path, mode):
    rgb = astronaut()[::4, ::4].copy()
    image, expected = mode_instances(rgb)[mode]
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(2):
        image.save(folder / f"{index}.png")
    frames = list(VideoReader(folder))
    assert len(frames) == 2
    for frame in frames:
        assert frame.dtype == np.uint8 and np.abs(frame.astype(int) - expected).max() <= GREY_LEVEL_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("mode", ("I;16", "I", "F", "1"))
def test_high_depth_sources_find_the_face_through_the_command_line(tmp_path, models_dir, capsys, mode):
    rgb = astronaut()
    if mode == "1":   # a halftone scan: 1-bit dots at three times the size, grey again once downscaled
        rgb = np.asarray(Image.fromarray(rgb).resize((3 * rgb.shape[1], 3 * rgb.shape[0]), Image.BICUBIC))
    image, expected = mode_instances(rgb)[mode]
    path = tmp_path / ("source.png" if mode in ("I;16", "1") else "source.tif")
    image.save(path)
    code, out, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", path,
                         "--out", tmp_path / "edit.png", "--edit", "yaw=5", "--tune-steps", 0,
                         "--source-out", tmp_path / "prepared.safetensors")
    assert code == 0, err
    # the same face is found as in the 8-bit rendering of the same picture
    Image.fromarray(expected).save(tmp_path / "eight.png")
    models = load_reenact_models([models_dir], device="cpu")
    ours = prepare_source(read_image(path), models, tune_steps=0)
    eight = prepare_source(read_image(tmp_path / "eight.png"), models, tune_steps=0)
    assert np.abs(ours.crop.astype(int) - eight.crop).mean() <= GREY_LEVEL_TOLERANCE


# --- kind 4: variable frame rate ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ("dropped", "alternating"))
def test_variable_frame_rate_timestamps_are_read(tmp_path, shared_dir, pattern):
    frames, fps = media_frames(3 * CLIP_FRAMES)
    pts = vfr_patterns(len(frames))[pattern]
    path = write_clip(tmp_path / "vfr.mp4", frames, pts, 1 / fps, rate=fps)
    times = [t for t, _ in VideoReader(path).timed_frames()]
    assert times == [p / fps for p in pts]
    assert [t for t, _ in timed_driver_frames(VideoReader(path))] == times


def max_error_in_frames(out: Path, driver_times: list[Fraction], fps: Fraction) -> float:
    written = output_times(out)
    assert len(written) == len(driver_times), "one output frame per driver frame"
    return max(abs(float((a - b) * fps)) for a, b in zip(written, driver_times))


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ("dropped", "alternating"))
def test_variable_frame_rate_output_keeps_the_driver_timing(tmp_path, models_dir, capsys, shared_dir, pattern):
    frames, fps = media_frames(2 * CLIP_FRAMES)
    pts = vfr_patterns(len(frames))[pattern]
    driver = write_clip(tmp_path / "vfr.mp4", frames, pts, 1 / fps, rate=fps)
    driver_times = [p / fps for p in pts]
    source = tmp_path / "source.png"
    Image.fromarray(frames[0]).save(source)
    models = load_reenact_models([models_dir], device="cpu")
    prepared = prepare_source(read_image(source), models, tune_steps=0)
    reenact_file(models, prepared, driver, tmp_path / "library.mp4", DriveOptions(paste_back=False), chunk=4)
    assert max_error_in_frames(tmp_path / "library.mp4", driver_times, VideoReader(driver).fps) < 0.5
    code, _, err = run(capsys, "reenact", "--models", models_dir, "--device", "cpu", "--source", source,
                       "--driving", driver, "--out", tmp_path / "cli.mp4", "--tune-steps", 0, "--no-paste-back")
    assert code == 0, err
    assert max_error_in_frames(tmp_path / "cli.mp4", driver_times, VideoReader(driver).fps) < 0.5


@pytest.mark.parametrize("pattern", ("dropped", "alternating"))
def test_writer_places_frames_at_given_times(tmp_path, pattern):
    fps = Fraction(25)
    pts = vfr_patterns(12)[pattern]
    times = [p / fps for p in pts]
    frames = np.zeros((len(pts), 32, 48, 3), np.uint8)
    with VideoWriter(tmp_path / "out.mp4", fps, time_base=1 / fps) as writer:
        writer.write(frames[:5], times[:5])
        writer.write(frames[5:], times[5:])
    assert output_times(tmp_path / "out.mp4") == times
    with pytest.raises(InputError, match="frame times"), VideoWriter(tmp_path / "bad.mp4", fps) as writer:
        writer.write(frames[:2], times[:1])


@pytest.mark.parametrize("codec", ("mpeg4", H264))
def test_fine_time_units_are_kept_within_half_a_frame(tmp_path, codec):
    """A 1/90000 s unit (MPEG-TS, phones): kept by H.264; MPEG-4 Part 2 needs a 16-bit unit and rounds."""
    fps, unit = Fraction(30000, 1001), Fraction(1, 90000)
    ticks = [round(p / fps / unit) for p in vfr_patterns(8)["dropped"]]
    times = [t * unit for t in ticks]
    with VideoWriter(tmp_path / "out.mp4", fps, codec=codec, time_base=unit) as writer:
        writer.write(np.zeros((len(times), 32, 48, 3), np.uint8), times)
    written = output_times(tmp_path / "out.mp4")
    assert len(written) == len(times)
    assert max(abs(float((a - b) * fps)) for a, b in zip(written, times)) < 0.5


def test_loop_and_pingpong_keep_the_driver_spacing(tmp_path, shared_dir):
    frames, fps = media_frames(CLIP_FRAMES)
    pts = vfr_patterns(len(frames))["alternating"]
    reader = VideoReader(write_clip(tmp_path / "vfr.mp4", frames, pts, 1 / fps, rate=fps))
    times = [p / fps for p in pts]
    gaps = np.diff([float(t) for t in times])
    looped = [t for t, _ in timed_driver_frames(reader, 2 * len(frames), "loop")]
    assert np.allclose(np.diff([float(t) for t in looped]), [*gaps, 1 / float(reader.fps), *gaps])
    bounced = [t for t, _ in timed_driver_frames(reader, 2 * len(frames) - 2, "pingpong")]
    assert np.allclose(np.diff([float(t) for t in bounced]), [*gaps, *gaps[:0:-1]])


def test_smoother_steps_by_the_real_time_between_frames():
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=(40, 3)), axis=0)
    fps = 30.0
    uniform = smooth_sequence(values, "params", fps=fps)
    assert np.allclose(smooth_sequence(values, "params", fps=fps, times=np.arange(40) / fps), uniform, rtol=1e-9)
    # frames twice as far apart smooth as a video at half the rate, whatever fps is declared
    assert np.allclose(smooth_sequence(values, "params", fps=fps, times=2 * np.arange(40) / fps),
                       smooth_sequence(values, "params", fps=fps / 2))
    gappy = np.sort(rng.choice(np.arange(80), 40, replace=False)) / fps
    assert not np.allclose(smooth_sequence(values, "params", fps=fps, times=gappy), uniform)
    with pytest.raises(InputError, match="increase"):
        smooth_sequence(values[:3], "params", times=[0.0, 0.1, 0.1])


def test_aligner_smooths_by_the_frames_times(shared_dir):
    """Frames 1/fps apart smooth as without times; frames 3/fps apart as a video at a third of the rate."""
    frames, fps = media_frames(4)
    fps = float(fps)

    def landmarks(aligner, times):
        return np.stack([aligner(f, t).landmarks for f, t in zip(frames, times)])

    plain = FaceAligner(fps=fps)
    reference = np.stack([plain(f).landmarks for f in frames])
    assert np.allclose(landmarks(FaceAligner(fps=fps), np.arange(len(frames)) / fps), reference, atol=1e-4)
    spread = landmarks(FaceAligner(fps=fps), 3 * np.arange(len(frames)) / fps)
    slow = FaceAligner(fps=fps / 3)
    assert np.allclose(spread, np.stack([slow(f).landmarks for f in frames]), atol=1e-4)
    assert not np.allclose(spread, reference, atol=1e-2)
