"""Preparing one video (or completing one reference-made video folder): crops, W+ codes, DECA codes, manifest.

A video streams through :class:`~reenact_core.video.VideoReader`; in every ``stride``-th frame (from frame 0;
the reference samples VoxCeleb every 25 frames, spec §1.2 step 6) the chosen face (``select``, by default the
largest) is cropped the reference way from its 68 landmarks (spec §1.2), and the crops are inverted by e4e
(raw W+, spec §1.4) and measured by DECA (its kpt68 crop from the frame landmarks mapped into the crop, spec
§1.7) ``batch_size`` at a time. Memory holds one frame and one batch of crops. Every file is written
atomically, so an interrupted run leaves only whole files; a frame whose three files exist is not computed again,
and a video whose manifest says ``"done"`` is skipped.
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
from ..engine.measure import estimate_codes
from ..errors import InputError
from ..faces.geometry import Face
from ..faces.images import save_image
from ..faces.reference_crop import CROP_SIZE, crop_using_landmarks
from ..faces.tracking import FaceTracker
from ..files import write_text
from ..imaging import image_to_tensor
from ..landmarks import DEFAULT_BACKEND, detect_faces
from ..video import VideoReader
from .files import write_npy
from .layout import (CROP_SUFFIX, FORMAT_VERSION, FRAMES_DIR, MANIFEST, SKIP_REASONS, VIDEO_FORMAT, PreparedFrame,
                     frame_stem, load_crop, load_w_plus, read_manifest, sample_paths)
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
        select: the face taken in each frame: an index from the left, ``"largest"`` or ``"score"``.
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
    error: str | None = None  # why decoding stopped before the end of the video


class _Batch:
    """Crops waiting for e4e and DECA; each flush writes the files its frames lack and records them as samples."""

    def __init__(self, folder: Path, models: ReenactModels, batch_size: int, counts: _Counts):
        self.folder, self.models, self.batch_size, self.counts = folder, models, batch_size, counts
        self.items: list[tuple[PreparedFrame, np.ndarray, np.ndarray]] = []

    def add(self, stem: str, crop: np.ndarray, kpt68: np.ndarray) -> None:
        """Queues frame ``stem``: its (256, 256, 3) uint8 crop and (68, 2) landmarks in crop pixels."""
        self.items.append((sample_paths(self.folder, stem), crop, kpt68))
        if len(self.items) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        items, self.items = self.items, []
        models = self.models
        measure = [i for i, (paths, _, _) in enumerate(items) if not paths.deca_codes.is_file()]
        invert = [i for i, (paths, _, _) in enumerate(items) if not paths.w_plus.is_file()]
        codes, w_plus = {}, {}
        if measure:
            crops = np.stack([items[i][1] for i in measure])
            kpt68 = np.stack([items[i][2] for i in measure])
            codes = dict(zip(measure, estimate_codes(models.deca.module, crops, kpt68).cpu().numpy()))
        if invert:
            with torch.no_grad():
                x = image_to_tensor(np.stack([items[i][1] for i in invert])).to(models.device, models.dtype)
                w_plus = dict(zip(invert, models.e4e.module(x).float().cpu().numpy()))
        for i, (paths, crop, _) in enumerate(items):
            if not paths.crop.is_file():
                save_image(paths.crop, crop)
            if i in w_plus:
                write_npy(paths.w_plus, w_plus[i])
            if i in codes:
                write_npy(paths.deca_codes, codes[i])
            self.counts.samples.append(paths.stem)


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
        "source": None if source is None else str(source), "status": status, "error": error or counts.error,
        "stride": stride,
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


def _chosen_face(rgb: np.ndarray, options: PrepareOptions) -> Face | None:
    """The face of one (H, W, 3) uint8 RGB image picked by ``options.select``, or None. Each frame is taken on
    its own, as the reference crops each frame: no tracking, which a stride of many frames would break."""
    return FaceTracker(options.select, "pass").update([detect_faces(rgb, options.backend)])[0].face


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
    batch = _Batch(folder, models, options.batch_size, counts)
    for index, frame in enumerate(_readable(first, frames, counts)):
        if index % options.stride:
            continue
        counts.frames_sampled += 1
        stem = frame_stem(index)
        if _complete(sample_paths(folder, stem)):
            counts.samples.append(stem)
            continue
        face = _chosen_face(frame, options)
        if face is None:
            counts.skipped["no_face"] += 1
            continue
        crop, transform = crop_using_landmarks(frame, face.landmarks)
        batch.add(stem, crop, transform.frame_to_crop(face.landmarks).astype(np.float32))
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
        except InputError as exc:
            counts.skipped["unreadable"] += 1
            counts.error = f"decoding stopped at frame {counts.frames_decoded}: {exc}"
            return
        counts.frames_decoded += 1
        yield frame


def complete_video(folder: Path, models: ReenactModels, options: PrepareOptions = PrepareOptions(), *,
                   rank: int = 0, world_size: int = 1) -> VideoResult:
    """Completes a reference-made video folder in place: W+ codes and DECA codes for ``frames_cropped/*.png``.

    Every crop is decoded: one that cannot be, or is not 256×256 RGB, is skipped as ``unreadable``. Existing
    latents of the right shape are kept (one of another shape, or unreadable: the frame is skipped as
    ``bad_latent``); a crop without a face is skipped as ``no_face``. Landmarks are detected on the crop itself.
    Crops are never rewritten.
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
        try:
            crop = load_crop(png)
        except InputError:
            crop = None
        if crop is None or crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            counts.skipped["unreadable"] += 1
            continue
        if paths.w_plus.is_file():
            try:
                load_w_plus(paths.w_plus, shape)
            except InputError:
                counts.skipped["bad_latent"] += 1
                continue
            if paths.deca_codes.is_file():
                counts.samples.append(png.stem)
                continue
        face = _chosen_face(crop, options)
        if face is None:
            counts.skipped["no_face"] += 1
            continue
        batch.add(png.stem, crop, face.landmarks)
    batch.flush()
    manifest = _manifest(counts, id_=folder.parent.name, video=folder.name, source=None, stride=None, models=models,
                         options=options, rank=rank, world_size=world_size)
    return VideoResult(_write_manifest(folder, manifest), True)

