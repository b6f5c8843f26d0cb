"""Preparing one video (or completing one reference-made video folder): crops, W+ codes, DECA codes, manifest.

A video streams through :class:`~reenact_core.video.VideoReader`; every ``stride``-th frame (from frame 0; the
reference samples VoxCeleb every 25 frames, spec §1.2 step 6) is aligned (detect → track one face →
reference crop, spec §1.2), and the crops are inverted by e4e (raw W+, spec §1.4) and measured by DECA (its
kpt68 crop from the frame landmarks mapped into the crop, spec §1.7) ``batch_size`` at a time. Memory holds one
frame and one batch of crops. Every file is written atomically, so an interrupted run leaves only whole files;
a frame whose three files exist is not computed again, and a video whose manifest says ``"done"`` is skipped.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..engine.models import ReenactModels
from ..engine.source import estimate_codes
from ..errors import InputError
from ..faces.alignment import FaceAligner
from ..landmarks import DEFAULT_BACKEND, detect_faces
from ..faces.reference_crop import CROP_SIZE
from ..imaging import image_to_tensor
from ..video import VideoReader
from .files import write_npy, write_png, write_text
from .layout import (CROP_SUFFIX, FORMAT_VERSION, FRAMES_DIR, MANIFEST, SKIP_REASONS, VIDEO_FORMAT, frame_stem,
                     load_crop, load_w_plus, read_manifest, sample_paths)
from .sources import VideoSource

DEFAULT_STRIDE = 25  # frames between samples (reference VoxCeleb preparation: `REF_FPS = 25` frame skip)
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class PrepareOptions:
    """How frames are sampled and aligned.

    Args:
        stride: every ``stride``-th frame is sampled, from frame 0.
        batch_size: crops per e4e / DECA batch.
        backend: landmark backend name.
        select: the face to follow in each video: an index from the left, ``"largest"`` or ``"score"``.
    """

    stride: int = DEFAULT_STRIDE
    batch_size: int = DEFAULT_BATCH_SIZE
    backend: str = DEFAULT_BACKEND
    select: int | str = "largest"

    def __post_init__(self) -> None:
        if self.stride < 1 or self.batch_size < 1:
            raise InputError(f"stride and batch size must be ≥ 1, got {self.stride} and {self.batch_size}")


@dataclass
class VideoResult:
    """What one call did: the video's manifest and whether anything was computed (False: already done)."""

    manifest: dict
    computed: bool


@dataclass
class _Counts:
    frames_decoded: int = 0
    frames_sampled: int = 0
    samples: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


class _Batch:
    """Crops waiting for e4e and DECA; each flush writes the missing files of its frames and records samples."""

    def __init__(self, folder: Path, models: ReenactModels, batch_size: int, counts: _Counts):
        self.folder, self.models, self.batch_size, self.counts = folder, models, batch_size, counts
        self.items: list[tuple[str, np.ndarray, np.ndarray, bool, bool]] = []

    def add(self, stem: str, crop: np.ndarray, kpt68: np.ndarray, *, write_crop: bool, need_w_plus: bool) -> None:
        self.items.append((stem, crop, kpt68, write_crop, need_w_plus))
        if len(self.items) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.items:
            return
        items, self.items = self.items, []
        models = self.models
        crops = np.stack([item[1] for item in items])
        codes = estimate_codes(models, crops, np.stack([item[2] for item in items])).cpu().numpy()
        invert = [i for i, item in enumerate(items) if item[4]]
        w_plus = {}
        if invert:
            with torch.no_grad():
                x = image_to_tensor(crops[invert]).to(models.device, models.dtype)
                w_plus = dict(zip(invert, models.e4e.module(x).float().cpu().numpy()))
        for i, (stem, crop, _, write_crop, _) in enumerate(items):
            paths = sample_paths(self.folder, stem)
            if write_crop:
                write_png(paths.crop, crop)
            if i in w_plus:
                write_npy(paths.w_plus, w_plus[i])
            write_npy(paths.deca_codes, codes[i])
            self.counts.samples.append(stem)


def w_plus_shape(models: ReenactModels) -> tuple[int, int]:
    """(n_latent, style_dim) of the W+ codes e4e predicts."""
    config = models.e4e.config
    return config.n_styles, config.style_dim


def _manifest(counts: _Counts, *, id_: str, video: str, source: Path | None, stride: int | None,
              models: ReenactModels, options: PrepareOptions, status: str = "done", error: str | None = None,
              rank: int = 0, world_size: int = 1) -> dict:
    samples = sorted(counts.samples)
    return {
        "format": VIDEO_FORMAT, "version": FORMAT_VERSION, "id": id_, "video": video,
        "source": None if source is None else str(source), "status": status, "error": error, "stride": stride,
        "frames_decoded": counts.frames_decoded, "frames_sampled": counts.frames_sampled, "samples": samples,
        "crops": len(samples), "latents": len(samples), "codes": len(samples),
        "skipped": {reason: counts.skipped[reason] for reason in SKIP_REASONS},
        "w_plus_shape": list(w_plus_shape(models)),
        "models": {"e4e": models.e4e.path.name, "deca": models.deca.path.name},
        "landmarks": options.backend, "rank": rank, "world_size": world_size,
    }


def _write_manifest(folder: Path, manifest: dict) -> dict:
    write_text(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _finished(folder: Path, stride: int | None) -> dict | None:
    """The manifest of a finished video, None if it must be (re)done; InputError if done another way."""
    old = read_manifest(folder / MANIFEST)
    if old is None or old.get("status") != "done":
        return None
    if old.get("stride") != stride:
        raise InputError(f"{folder} was prepared with stride {old.get('stride')}, not {stride}: use another output "
                         f"folder or the same --stride")
    return old


def _complete(paths) -> bool:
    return paths.crop.is_file() and paths.w_plus.is_file() and paths.deca_codes.is_file()


def prepare_video(source: VideoSource, out: Path, models: ReenactModels, options: PrepareOptions = PrepareOptions(),
                  *, rank: int = 0, world_size: int = 1) -> VideoResult:
    """Prepares one video into ``out/ID/VIDEO`` (see the module docstring), or skips it when finished.

    A video that cannot be opened or holds no decodable frame gets a ``"failed"`` manifest (retried by the
    next run); a decoding error later in the video ends it there, counted as one unreadable frame.

    Raises:
        InputError: the folder was finished with another stride.
    """
    folder = out / source.id / source.video
    old = _finished(folder, options.stride)
    if old is not None:
        return VideoResult(old, False)
    counts = _Counts()
    common = dict(id_=source.id, video=source.video, source=source.path, stride=options.stride, models=models,
                  options=options, rank=rank, world_size=world_size)
    try:
        frames = VideoReader(source.path).frames()
        first = next(frames)
    except InputError as exc:
        return VideoResult(_write_manifest(folder, _manifest(counts, status="failed", error=str(exc), **common)), True)
    aligner = FaceAligner(options.select, "pass", 0.0, backend=options.backend)
    batch = _Batch(folder, models, options.batch_size, counts)
    for index, frame in enumerate(_readable(first, frames, counts)):
        if index % options.stride:
            continue
        counts.frames_sampled += 1
        stem = frame_stem(index)
        if _complete(sample_paths(folder, stem)):
            counts.samples.append(stem)
            continue
        face = aligner(frame)
        if face is None:
            counts.skipped["no_face"] += 1
            continue
        batch.add(stem, face.crop, face.kpt68, write_crop=True, need_w_plus=True)
    batch.flush()
    return VideoResult(_write_manifest(folder, _manifest(counts, **common)), True)


def _readable(first: np.ndarray, frames: Iterator[np.ndarray], counts: _Counts) -> Iterator[np.ndarray]:
    """``first`` then ``frames``, counted; a decoding error ends them, counted as one unreadable frame."""
    counts.frames_decoded += 1
    yield first
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except InputError:
            counts.skipped["unreadable"] += 1
            return
        counts.frames_decoded += 1
        yield frame


def complete_video(folder: Path, models: ReenactModels, options: PrepareOptions = PrepareOptions(), *,
                   rank: int = 0, world_size: int = 1) -> VideoResult:
    """Completes a reference-made video folder in place: W+ codes and DECA codes for ``frames_cropped/*.png``.

    Existing latents of the right shape are kept (one of another shape, or unreadable: the frame is skipped as
    ``bad_latent``); a crop that cannot be decoded or is not 256×256 RGB is skipped as ``unreadable``, one
    without a face as ``no_face``. Landmarks are detected on the crop itself. Crops are never rewritten.
    """
    old = _finished(folder, None)
    if old is not None:
        return VideoResult(old, False)
    counts = _Counts()
    shape = w_plus_shape(models)
    batch = _Batch(folder, models, options.batch_size, counts)
    for png in sorted((folder / FRAMES_DIR).glob("*" + CROP_SUFFIX)):
        counts.frames_sampled += 1
        paths = sample_paths(folder, png.stem)
        has_w_plus = paths.w_plus.is_file()
        if has_w_plus:
            try:
                load_w_plus(paths.w_plus, shape)
            except InputError:
                counts.skipped["bad_latent"] += 1
                continue
            if paths.deca_codes.is_file():
                counts.samples.append(png.stem)
                continue
        try:
            crop = load_crop(png)
        except InputError:
            crop = None
        if crop is None or crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            counts.skipped["unreadable"] += 1
            continue
        faces = detect_faces(crop, options.backend)
        if not faces:
            counts.skipped["no_face"] += 1
            continue
        kpt68 = max(faces, key=lambda face: face.area).landmarks
        batch.add(png.stem, crop, kpt68, write_crop=False, need_w_plus=not has_w_plus)
    batch.flush()
    manifest = _manifest(counts, id_=folder.parent.name, video=folder.name, source=None, stride=None, models=models,
                         options=options, rank=rank, world_size=world_size)
    return VideoResult(_write_manifest(folder, manifest), True)

