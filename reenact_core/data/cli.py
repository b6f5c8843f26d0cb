"""``python -m reenact_core dataset prepare|ranges``: argument parsing and printing only."""
from __future__ import annotations

import argparse
from collections.abc import Callable


def _prepare(args: argparse.Namespace) -> int:
    import torch

    from ..cli import _device, model_folders
    from ..errors import InputError
    from .layout import SKIP_REASONS
    from .prepare import PrepareOptions
    from .run import run_prepare

    if args.add_codes and args.out is not None:
        raise InputError("--add-codes completes the tree VIDEOS in place: give no OUT")
    if not args.add_codes and args.out is None:
        raise InputError("give the output folder OUT (or --add-codes to complete a prepared tree in place)")
    options = PrepareOptions(stride=args.stride, batch_size=args.batch_size, backend=args.landmarks)
    summary, stats = run_prepare(args.videos, args.out, options=options, model_folders=model_folders(args),
                                 device=_device(args.device), dtype=getattr(torch, args.dtype), workers=args.workers,
                                 add_codes=args.add_codes, verbose=args.verbose)
    if summary is not None:
        skipped = ", ".join(f"{summary['skipped'][r]} {r.replace('_', ' ')}" for r in SKIP_REASONS)
        out = args.videos if args.add_codes else args.out
        print(f"{summary['videos_done']} of {summary['videos']} videos prepared ({stats.prepared} now, "
              f"{stats.already_done} already done, {summary['videos_failed']} failed): {summary['samples']} samples "
              f"(crops, W+ codes, DECA codes); skipped frames: {skipped}; summary in {out}/manifest.json")
    return 0


def register(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Adds the ``dataset`` command (``prepare``, ``ranges``) to the main parser's subparsers."""
    from ..cli import DTYPES
    from ..landmarks import DEFAULT_BACKEND, backend_names
    from .prepare import DEFAULT_BATCH_SIZE, DEFAULT_STRIDE
    from .sources import VIDEO_SUFFIXES

    data = sub.add_parser("dataset", help="prepare training data (crops, W+ codes, DECA codes) and parameter ranges")
    commands = data.add_subparsers(dest="dataset_command", required=True)
    prep = commands.add_parser(
        "prepare", help="videos → reference crops, e4e W+ codes and DECA codes (resumable, sharded)",
        description="Samples every --stride-th frame of each video, crops the face the reference way (256 px), "
                    "inverts it with e4e and measures it with DECA, into OUT/ID/VIDEO/{frames_cropped/*.png, "
                    "inversion/latent_codes/*.npy, deca_codes/*.npy, manifest.json}. Finished videos are skipped; "
                    "run it under torchrun or with --workers N to share the videos between processes.")
    common(prep)
    prep.add_argument("videos", help=f"a video ({', '.join(VIDEO_SUFFIXES)}), a folder of videos (identity = the "
                                     f"folder's name), a tree ID/VIDEO.mp4, or a text file listing videos; with "
                                     f"--add-codes, a prepared tree ID/VIDEO/frames_cropped/*.png")
    prep.add_argument("out", nargs="?", help="output folder of the prepared tree")
    prep.add_argument("--add-codes", action="store_true",
                      help="complete a prepared (e.g. VoxCeleb) tree in place: W+ codes and DECA codes of its crops")
    prep.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                      help=f"sample every N-th frame, from frame 0 (default {DEFAULT_STRIDE}, the reference's)")
    prep.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                      help=f"crops per e4e / DECA batch (default {DEFAULT_BATCH_SIZE})")
    prep.add_argument("--landmarks", choices=backend_names(), default=DEFAULT_BACKEND,
                      help=f"face detector and landmark backend (default {DEFAULT_BACKEND})")
    prep.add_argument("--workers", type=int, default=1, help="processes sharing the videos (default 1)")
    prep.add_argument("--dtype", choices=DTYPES, default="float32")
    prep.add_argument("--verbose", action="store_true", help="print one line per prepared video")
    prep.set_defaults(run=_prepare)
