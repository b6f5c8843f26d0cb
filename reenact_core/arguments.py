"""Checks of the `reenact` and `evaluate` commands' arguments that need no model: run before anything is loaded or tuned, so a
mistyped path or an impossible output is refused at once (ReenactError: one line, exit status 2).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import InputError, ReenactError
from .video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoReader, check_frames_folder, video_encoder
from .wording import count

DEVICES = "auto, cpu, cuda, cuda:N or mps"


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


def check_writable(option: str, path: str) -> None:
    """ReenactError unless a file can be created at ``path`` (its nearest existing folder accepts a new file)."""
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ReenactError(f"{option} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReenactError(f"{option} {path}: cannot write in {folder}")


def parse_edits(items: list[str]) -> dict[str, float]:
    """``--edit NAME=VALUE`` items → {name: value} (ReenactError for a malformed item)."""
    edits = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            edits[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ReenactError(f"--edit expects NAME=VALUE (e.g. yaw=20), got {item!r}")
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
    check_output_kinds(args.out, args.png_frames)
    for option, path in (("--out", args.out), ("--source-out", args.source_out), ("--png-frames", args.png_frames)):
        if path:
            check_writable(option, path)


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
