"""The on-disk layout of a prepared dataset, and a small reader for it.

A prepared tree follows the reference's VoxCeleb layout (reference spec §3.7) and adds DECA codes and manifests::

    ROOT/manifest.json                                  totals of the last run (see SUMMARY_FIELDS)
    ROOT/ID/VIDEO/manifest.json                         one video, written last: the video is finished
    ROOT/ID/VIDEO/frames_cropped/STEM.png               256×256 RGB reference crop (spec §1.2)
    ROOT/ID/VIDEO/inversion/latent_codes/STEM.npy       float32 [n_latent, 512] raw e4e W+ code (spec §1.4)
    ROOT/ID/VIDEO/deca_codes/STEM.npy                   float32 [236] DECA E_flame codes of the crop (spec §1.7)

``STEM`` is the frame index in its video, zero-padded to six digits (``000025``) for videos prepared here; trees
made by the reference scripts use ``CHUNK_FRAME`` stems (``00_000025``). A sample is a frame whose three files
exist; the reader lists only samples.

Per-video manifest fields (JSON object):
    format, version: ``"latent-reenact-dataset-video"``, ``1``.
    id, video: the two folder names.
    source: the video file it was prepared from, or ``null`` for a tree completed in place.
    status: ``"done"`` (finished; a later run skips it) or ``"failed"`` (unreadable video; retried next run).
    error: one-line reason when failed, or why decoding stopped early (the video is then done up to there; the
        frame that could not be decoded counts as unreadable), else ``null``.
    stride: frame stride (every ``stride``-th frame from frame 0 was sampled), or ``null`` in place.
    frames_decoded: frames decoded from the video (0 in place).
    frames_sampled: frames considered (at the stride, or PNGs found in place).
    samples: stems of the finished samples, in frame order.
    crops, latents, codes: files of each kind present for ``samples`` (each equals ``len(samples)``).
    skipped: counts by reason: ``unreadable`` (frames or PNGs that could not be decoded), ``no_face``,
        ``bad_latent`` (an existing latent of the wrong shape or unreadable).
    w_plus_shape: ``[n_latent, style_dim]`` of the latents.
    models: model file name by kind (``e4e``, ``deca``) used for this video.
    landmarks: the landmark backend used.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..models.deca import N_CODES

MANIFEST = "manifest.json"
FRAMES_DIR = "frames_cropped"
LATENTS_DIR = "inversion/latent_codes"
CODES_DIR = "deca_codes"
CROP_SUFFIX = ".png"
ARRAY_SUFFIX = ".npy"
VIDEO_FORMAT = "latent-reenact-dataset-video"
SUMMARY_FORMAT = "latent-reenact-dataset"
FORMAT_VERSION = 1
SKIP_REASONS = ("unreadable", "no_face", "bad_latent")
COUNT_FIELDS = ("crops", "latents", "codes")
# ROOT/manifest.json: format, version, settings (the run's options), these totals over the videos, skipped
# (totals by SKIP_REASONS) and failed (the first few "ID/VIDEO: reason" lines)
SUMMARY_FIELDS = ("videos", "videos_done", "videos_failed", "frames_decoded", "frames_sampled", "samples",
                  *COUNT_FIELDS)


def frame_stem(index: int) -> str:
    """The file stem of frame ``index`` of a video (``000025``)."""
    return f"{index:06d}"


@dataclass(frozen=True)
class PreparedFrame:
    """One sample: a frame's crop, W+ code and DECA codes (paths; load them with the ``load_*`` functions)."""

    stem: str
    crop: Path
    w_plus: Path
    deca_codes: Path


@dataclass(frozen=True)
class PreparedVideo:
    """The samples of one video of a prepared tree.

    Attributes:
        id, video: identity and video folder names.
        folder: ``ROOT/ID/VIDEO``.
        frames: its samples in stem order.
        manifest: the video's manifest (a dict, fields above), or None for a tree without one.
    """

    id: str
    video: str
    folder: Path
    frames: tuple[PreparedFrame, ...]
    manifest: dict | None


def video_folder(root: str | Path, id_: str, video: str) -> Path:
    """``ROOT/ID/VIDEO``."""
    return Path(root) / id_ / video


def sample_paths(folder: Path, stem: str) -> PreparedFrame:
    """The three file paths of frame ``stem`` of the video folder ``folder`` (they may not exist)."""
    return PreparedFrame(stem, folder / FRAMES_DIR / (stem + CROP_SUFFIX), folder / LATENTS_DIR / (stem + ARRAY_SUFFIX),
                         folder / CODES_DIR / (stem + ARRAY_SUFFIX))


def read_manifest(path: Path) -> dict | None:
    """A manifest as a dict, or None when it is absent, unreadable or of another format."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") not in (VIDEO_FORMAT, SUMMARY_FORMAT):
        return None
    return data


def iter_video_folders(root: str | Path) -> Iterator[tuple[str, str, Path]]:
    """``(id, video, folder)`` of every ``ROOT/ID/VIDEO`` folder holding a manifest or ``frames_cropped``, sorted.

    Streams: one identity folder is listed at a time.
    """
    root = Path(root)
    for id_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in id_dir.iterdir() if p.is_dir()):
            if (folder / MANIFEST).is_file() or (folder / FRAMES_DIR).is_dir():
                yield id_dir.name, folder.name, folder


def read_video(folder: Path, id_: str | None = None, video: str | None = None) -> PreparedVideo:
    """The samples of one video folder: from its manifest when finished, else every stem with all three files."""
    manifest = read_manifest(folder / MANIFEST)
    if manifest is not None and manifest.get("status") == "done":
        frames = tuple(sample_paths(folder, stem) for stem in manifest.get("samples", []))
    else:
        stems = sorted(p.stem for p in (folder / FRAMES_DIR).glob("*" + CROP_SUFFIX)) \
            if (folder / FRAMES_DIR).is_dir() else []
        frames = tuple(f for f in map(lambda s: sample_paths(folder, s), stems)
                       if f.w_plus.is_file() and f.deca_codes.is_file())
    return PreparedVideo(id_ or folder.parent.name, video or folder.name, folder, frames, manifest)


def iter_videos(root: str | Path, min_frames: int = 1) -> Iterator[PreparedVideo]:
    """Every video of a prepared tree with at least ``min_frames`` samples, sorted by id then video.

    Streams: memory holds one video's sample list at a time. Use ``min_frames=2`` for paired training.

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"prepared dataset not found: {root} is not a folder")
    for id_, video, folder in iter_video_folders(root):
        prepared = read_video(folder, id_, video)
        if len(prepared.frames) >= min_frames:
            yield prepared


def load_crop(path: str | Path) -> np.ndarray:
    """A crop as (H, W, 3) uint8 RGB (256 × 256 when prepared here). Raises InputError if unreadable."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"cannot read the crop {path}: {exc}") from None


def load_w_plus(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A W+ code as float32 (n_latent, style_dim); a leading batch axis of 1 (reference trees) is dropped.

    Raises:
        InputError: unreadable, not 2-D after that, or not ``shape`` when given.
    """
    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the latent code {path}: {exc}") from None
    if w.ndim == 3 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 2 or (shape is not None and tuple(w.shape) != tuple(shape)) or not np.issubdtype(w.dtype, np.floating):
        raise InputError(f"latent code {path} has shape {w.shape} ({w.dtype}), expected "
                         f"{tuple(shape) if shape else '(n_latent, style_dim)'} floats")
    return w.astype(np.float32, copy=False)


def load_deca_codes(path: str | Path) -> np.ndarray:
    """DECA E_flame codes as float32 (236,) (split them with ``reenact_core.models.deca.split_codes``).

    Raises InputError if unreadable or not of that shape.
    """
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the DECA codes {path}: {exc}") from None
    if codes.shape != (N_CODES,):
        raise InputError(f"DECA codes {path} have shape {codes.shape}, expected ({N_CODES},)")
    return codes.astype(np.float32, copy=False)
