"""``python -m reenact_core dataset prepare|ranges``: argument parsing and printing only."""
from __future__ import annotations

import argparse
from collections.abc import Callable


def _prepare(args: argparse.Namespace, folders: Callable, device: Callable) -> int:
    import torch

    from ..errors import InputError
    from .layout import SKIP_REASONS
    from .prepare import PrepareOptions
    from .run import run_prepare

    if args.add_codes and args.out is not None:
        raise InputError("--add-codes completes the tree VIDEOS in place: give no OUT")
    if not args.add_codes and args.out is None:
        raise InputError("give the output folder OUT (or --add-codes to complete a prepared tree in place)")
    options = PrepareOptions(stride=args.stride, batch_size=args.batch_size, backend=args.landmarks)
    summary, stats = run_prepare(args.videos, args.out, options=options, model_folders=folders(args),
                                 device=device(args.device), dtype=getattr(torch, args.dtype), workers=args.workers,
                                 add_codes=args.add_codes, verbose=args.verbose)
    if summary is not None:
        skipped = ", ".join(f"{summary['skipped'][r]} {r.replace('_', ' ')}" for r in SKIP_REASONS)
        out = args.videos if args.add_codes else args.out
        print(f"{summary['videos_done']} of {summary['videos']} videos prepared ({stats.prepared} now, "
              f"{stats.already_done} already done, {summary['videos_failed']} failed): {summary['samples']} samples "
              f"(crops, W+ codes, DECA codes); skipped frames: {skipped}; summary in {out}/manifest.json")
        return 1 if summary["videos_failed"] else 0
    return 0


def _ranges(args: argparse.Namespace, folders: Callable, device: Callable) -> int:
    import torch
    from tqdm import tqdm

    from ..measure import measure_codes
    from ..weights import find_model_file, load_model
    from .ranges import measure_ranges, save_ranges, write_normaliser

    found, device_name, dtype = folders(args), device(args.device), getattr(torch, args.dtype)
    generator = load_model(args.generator or find_model_file("stylegan2", found), "stylegan2", device_name, dtype)
    deca = load_model(find_model_file("deca", found), "deca", device_name, dtype)
    with tqdm(total=args.samples, desc="measuring", unit="image", disable=None) as bar:
        ranges = measure_ranges(generator.module, generator.mean_latent, lambda x: measure_codes(deca.module, x),
                                samples=args.samples, seed=args.seed, batch_size=args.batch_size,
                                truncation=args.truncation, progress=lambda done: bar.update(done - bar.n))
    print(f"wrote {save_ranges(args.out, ranges)}: yaw [{ranges[0, 0]:.2f}, {ranges[0, 1]:.2f}] deg, jaw "
          f"[{ranges[3, 0]:.4f}, {ranges[3, 1]:.4f}] rad over {args.samples} images of {generator.path.name}")
    note = f"{args.samples} images of {generator.path.name}, seed {args.seed}, truncation {args.truncation}"
    for path in args.directions:
        print(f"wrote the normaliser of {write_normaliser(path, ranges, note)}")
    return 0


def register(sub, common: Callable[[argparse.ArgumentParser], None], folders: Callable[[argparse.Namespace], list],
             device: Callable[[str], str], dtypes: tuple[str, ...]) -> None:
    """Adds the ``dataset`` command (``prepare``, ``ranges``) to the main parser's subparsers.

    Args:
        common: adds the shared ``--models`` and ``--device`` options to a parser.
        folders: parsed arguments → the model folders to search.
        device: a ``--device`` value → the torch device name.
        dtypes: the ``--dtype`` choices.
    """
    from functools import partial

    from ..landmarks import DEFAULT_BACKEND, backend_names
    from .prepare import DEFAULT_BATCH_SIZE, DEFAULT_STRIDE
    from .ranges import RANGES_SAMPLES, RANGES_TRUNCATION
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
    prep.add_argument("--dtype", choices=dtypes, default="float32")
    prep.add_argument("--verbose", action="store_true", help="print one line per prepared video")
    prep.epilog = "Exit status: 0 when every video is done, 1 when some could not be read (listed in the summary)."
    prep.set_defaults(run=partial(_prepare, folders=folders, device=device))

    rng = commands.add_parser(
        "ranges", help="a generator's pose/expression ranges (ranges_*.npy), optionally into directions files",
        description="Renders --samples images from seeded z ~ N(0, I) with truncation ψ toward the generator's w̄, "
                    "measures them with DECA (canonical box of the aligned 256-px face) and writes the per-"
                    "parameter (min, max), float64 [54, 2]: yaw, pitch, roll (degrees), jaw (radians), 50 "
                    "expressions, as the reference's extract_statistics.py. --directions writes the jaw and "
                    "expression rows into the normaliser of directions files trained with this generator.")
    common(rng)
    rng.add_argument("out", help="output .npy file (e.g. ranges_mygenerator.npy)")
    rng.add_argument("--generator", help="StyleGAN2 model file (default: the canonical one in the model folders)")
    rng.add_argument("--samples", type=int, default=RANGES_SAMPLES,
                     help=f"synthetic images (default {RANGES_SAMPLES}, the reference's)")
    rng.add_argument("--seed", type=int, default=0, help="seed of the latent codes z (default 0)")
    rng.add_argument("--truncation", type=float, default=RANGES_TRUNCATION,
                     help=f"ψ of the rendered images (default {RANGES_TRUNCATION}, the reference's)")
    rng.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    rng.add_argument("--dtype", choices=dtypes, default="float32")
    rng.add_argument("--directions", action="append", default=[], metavar="FILE",
                     help="directions file (A) whose normaliser takes these ranges (repeatable)")
    rng.set_defaults(run=partial(_ranges, folders=folders, device=device))
