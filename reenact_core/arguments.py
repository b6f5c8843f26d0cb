"""Checks of the `reenact` and `evaluate` commands' arguments that need no model: run before anything is loaded
or tuned, so a mistyped path or an impossible output is refused at once (ReenactError: one line, exit status 2).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import InputError, ReenactError
from .files import probe_writable
from .options import DEVICES
from .video import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoReader, check_frames_folder, is_image_driver,
                    video_encoder)
from .wording import count


def check_device(name: str) -> None:
    """ReenactError unless ``name`` is ``auto`` or a device this machine has (``cuda:N`` with N below the count)."""
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ReenactError(f"--device {name}: not a device ({DEVICES})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReenactError(f"--device {name}: no CUDA GPU is available here (use cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ReenactError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ReenactError(f"--device {name}: MPS is not available here (use cpu or auto)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ReenactError(f"--device {name}: not supported ({DEVICES})")


def check_writable(option: str, path: str, *, folder: bool = False) -> None:
    """ReenactError unless a file (``folder``: a folder, created or replaced whole) can be made at ``path``.

    Outputs are written under a temporary name beside ``path`` and renamed to it, so the nearest existing folder
    above ``path`` is probed (:func:`~reenact_core.files.probe_writable`)."""
    target = Path(path).absolute()
    if not folder and target.is_dir():
        raise ReenactError(f"{option} {path}: is a folder; give a file name")
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ReenactError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        probe_writable(existing)
    except OSError as exc:
        raise ReenactError(f"{option} {path}: cannot write in {existing} ({exc.strerror or exc})") from None


def parse_edits(items: list[str]) -> dict[str, float]:
    """``--edit NAME=VALUE`` items → {name: value}: a known direction and a value within its edit range (the
    limits the Edit Directions node's sliders have, ``reenact_core.engine.edit_limit``), else ReenactError."""
    from .engine import DIRECTION_NAMES, edit_limit

    edits = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            edits[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ReenactError(f"--edit expects NAME=VALUE (e.g. yaw=20), got {item!r}")
        if name not in DIRECTION_NAMES:
            raise ReenactError(f"--edit {item}: unknown direction {name!r}; choose from {', '.join(DIRECTION_NAMES)}")
        limit = edit_limit(name)
        if not abs(edits[name]) <= limit:
            raise ReenactError(f"--edit {item}: {name} takes values in [{-limit:g}, {limit:g}]")
    return edits


def check_reenact_arguments(args: argparse.Namespace) -> None:
    """Everything about `reenact`'s inputs and outputs that can be known without a model (ReenactError)."""
    check_device(args.device)
    if args.source_in:
        if not Path(args.source_in).is_file():
            raise ReenactError(f"--source-in {args.source_in}: file not found")
    elif not args.source:
        raise ReenactError("give --source IMAGE or --source-in SAVED.safetensors")
    elif not Path(args.source).is_file():
        raise ReenactError(f"--source {args.source}: file not found")
    if args.frames is not None and args.frames < 1:
        raise ReenactError(f"--frames {args.frames}: give at least 1")
    as_image = Path(args.out).suffix.lower() in IMAGE_SUFFIXES
    if not args.driving:
        if not args.edit:
            raise ReenactError("give --driving VIDEO|IMAGE|FOLDER, or --edit NAME=VALUE for editing")
        parse_edits(args.edit)
        if not as_image:
            raise ReenactError(f"--out {args.out}: an edit is one image; give a {'/'.join(IMAGE_SUFFIXES)} file")
    else:
        if not Path(args.driving).exists():
            raise ReenactError(f"--driving {args.driving}: not found")
        if as_image:
            frames = args.frames or VideoReader(args.driving).frame_count
            if frames != 1:
                raise ReenactError(f"--out {args.out}: an image holds one frame, the driver gives "
                                   f"{frames or 'several'}; give a video file (.mp4) or --frames 1")
    for option, path in (("--out", args.out), ("--source-out", args.source_out)):
        if path:
            check_writable(option, path)
    check_output_kinds(args.out, args.png_frames)
    if args.png_frames:
        check_writable("--png-frames", args.png_frames, folder=True)
    check_unused_options(args)


def check_unused_options(args: argparse.Namespace) -> None:
    """Options that would be ignored are refused rather than silently dropped: ``--edit`` with ``--driving``,
    ``--source`` or a ``--tune-steps`` count with ``--source-in`` (a prepared source is already inverted and
    tuned), ``--fps`` with a video driver (it has its own rate)."""
    from .options import AUTO

    if args.driving and args.edit:
        raise ReenactError("--edit edits a still portrait: with --driving it would be ignored; give one of them")
    if args.source_in and args.source:
        raise ReenactError("--source-in loads a prepared source: --source would be ignored; give only one of them")
    if args.source_in and args.tune_steps != AUTO:
        raise ReenactError(f"--tune-steps {args.tune_steps} with --source-in: a prepared source keeps the tuning "
                           "it was saved with; tune when preparing it (--source ... --source-out)")
    if args.fps is not None and not (args.driving and is_image_driver(args.driving)):
        raise ReenactError(f"--fps {args.fps:g} sets the rate of an image or image-folder driver; "
                           + ("a driving video has its own" if args.driving else "an edit has no frame rate"))


def check_output_kinds(out: str, png_frames: str | None) -> None:
    """ReenactError unless ``out`` is an image or a video container this FFmpeg build can encode, and
    ``png_frames`` (if given) a folder the frames may replace."""
    if Path(out).suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise ReenactError(f"--out {out}: unknown output type {Path(out).suffix or '(no suffix)'}; give a video "
                           f"({', '.join(VIDEO_SUFFIXES)}) or an image ({', '.join(IMAGE_SUFFIXES)})")
    for option, check, path in (("--out", video_encoder, out if Path(out).suffix.lower() in VIDEO_SUFFIXES else None),
                                ("--png-frames", check_frames_folder, png_frames)):
        try:
            if path:
                check(path)
        except InputError as exc:
            raise ReenactError(f"{option} {path}: {exc}") from None


def check_evaluate_arguments(args: argparse.Namespace) -> None:
    """`evaluate`'s device, files and frame alignment (output and driver of one length), without a model."""
    check_device(args.device)
    if not Path(args.source).is_file():
        raise ReenactError(f"--source {args.source}: file not found")
    output, driving = VideoReader(args.output), VideoReader(args.driving)   # InputError naming a missing one
    if output.frame_count and driving.frame_count and output.frame_count != driving.frame_count:
        raise ReenactError(f"--output has {count(output.frame_count, 'frame')}, --driving "
                           f"{count(driving.frame_count, 'frame')}: evaluate compares them frame by frame")
    if args.json:
        check_writable("--json", args.json)
