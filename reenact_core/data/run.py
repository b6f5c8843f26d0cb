"""Preparing many videos: one shard per process (``torchrun`` ranks or ``--workers N``), progress, the summary.

Videos are taken in a fixed order and video ``i`` goes to process ``i mod N``, so each is done by exactly one
process; every process writes only its own videos' folders. Once all are done, process 0 sums the per-video
manifests into ``ROOT/manifest.json``. Under ``torchrun`` the processes meet at a barrier of a ``gloo`` group;
with ``--workers`` the calling process spawns them and waits.
"""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import active_children, get_context
from pathlib import Path

import torch

from ..engine.models import ReenactModels
from ..errors import InputError
from ..memory import fix_heap_threshold
from ..signals import worker_signals
from ..weights import find_model_file, load_model
from ..files import probe_writable, write_text
from .layout import (COUNT_FIELDS, FORMAT_VERSION, MANIFEST, SKIP_REASONS, SUMMARY_FIELDS, SUMMARY_FORMAT,
                     iter_video_folders, read_manifest)
from .prepare import PrepareOptions, complete_video, prepare_video
from .sources import VideoSource, video_sources

MAX_LISTED_FAILURES = 20  # failed videos named in the summary manifest (all are counted)
DATASET_KINDS = ("e4e", "deca")  # the networks preparation runs


@dataclass
class ShardStats:
    """What one process did in this run."""

    prepared: int = 0
    already_done: int = 0
    failed: int = 0
    samples: int = 0

    @classmethod
    def total(cls, parts: Iterable[ShardStats]) -> ShardStats:
        """The stats of several processes added up."""
        parts = list(parts)
        return cls(*(sum(getattr(p, name) for p in parts) for name in cls.__dataclass_fields__))


def load_dataset_models(folders: Iterable[str | Path], device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> ReenactModels:
    """e4e and DECA from their canonical files in ``folders`` (G and A are not needed to prepare data).

    Raises MissingModelError (one line, naming the file, the folders and the source) for an absent file.
    """
    folders = [Path(f) for f in folders]
    e4e, deca = (load_model(find_model_file(name, folders), name, device, dtype) for name in DATASET_KINDS)
    return ReenactModels(None, e4e, deca, None, torch.device(device), dtype)


def check_writable(out: Path) -> None:
    """Creates ``out`` and writes a probe file in it; InputError (one line) when that fails."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_writable(out)
    except OSError as exc:
        raise InputError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None


def tasks(videos: Path, out: Path, add_codes: bool) -> Iterator[tuple[Path, VideoSource | None]]:
    """``(video folder, source video)`` of every video, in the fixed order (source None: complete in place).

    Raises InputError when there is nothing to do (no videos; no ``ID/VIDEO/frames_cropped`` tree).
    """
    if not add_codes:
        return ((out / s.id / s.video, s) for s in video_sources(videos))
    if not videos.is_dir():
        raise InputError(f"prepared tree not found: {videos} is not a folder")
    folders = ((folder, None) for _, _, folder in iter_video_folders(videos))
    first = next(folders, None)
    if first is None:
        raise InputError(f"{videos} is not a prepared tree: expected ID/VIDEO/frames_cropped/*.png folders")
    return (item for items in ([first], folders) for item in items)


def _shard(items: Iterable, rank: int, world_size: int) -> Iterator:
    return (item for i, item in enumerate(items) if i % world_size == rank)


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def run_shard(videos: Path, out: Path, options: PrepareOptions, model_folders: list[Path], device: str,
              dtype: torch.dtype, add_codes: bool, rank: int, world_size: int, verbose: bool,
              threads: int | None = None) -> ShardStats:
    """Prepares this process's share of the videos (``i mod world_size == rank``), with a progress bar."""
    from tqdm import tqdm

    fix_heap_threshold()
    if threads:
        torch.set_num_threads(threads)
    models = load_dataset_models(model_folders, device, dtype)
    total = sum(1 for _ in _shard(tasks(videos, out, add_codes), rank, world_size))
    stats = ShardStats()
    prefix = f"rank {rank}: " if world_size > 1 else ""
    with tqdm(total=total, desc=f"{prefix}preparing", unit="video", position=rank, file=sys.stderr,
              disable=None) as bar:
        for folder, source in _shard(tasks(videos, out, add_codes), rank, world_size):
            if source is None:
                result = complete_video(folder, models, options, rank=rank, world_size=world_size)
            else:
                result = prepare_video(source, out, models, options, rank=rank, world_size=world_size)
            m = result.manifest
            key = f"{m['id']}/{m['video']}"
            if m["status"] != "done":
                stats.failed += 1
                _say(f"warning: {prefix}skipped {key}: {m['error']}")
            elif result.computed:
                if m["error"]:
                    _say(f"warning: {prefix}{key}: {m['error']}")
                stats.prepared += 1
                stats.samples += len(m["samples"])
                if verbose:
                    skipped = ", ".join(f"{n} {r}" for r, n in m["skipped"].items() if n) or "none skipped"
                    _say(f"{prefix}prepared {key}: {len(m['samples'])} samples ({skipped})")
            else:
                stats.already_done += 1
            bar.update(1)
            bar.set_postfix(samples=stats.samples, failed=stats.failed, refresh=False)
    return stats


def summarise(folders: Iterable[Path], settings: dict) -> dict:
    """Totals over the per-video manifests of ``folders`` (the ``ROOT/manifest.json`` content)."""
    totals, skipped, failures = Counter(), Counter(), []
    for folder in folders:
        totals["videos"] += 1
        m = read_manifest(folder / MANIFEST)
        if m is None:
            continue
        if m.get("status") != "done":
            totals["videos_failed"] += 1
            if len(failures) < MAX_LISTED_FAILURES:
                failures.append(f"{folder.parent.name}/{folder.name}: {m.get('error')}")
            continue
        totals["videos_done"] += 1
        totals["samples"] += len(m["samples"])
        for name in ("frames_decoded", "frames_sampled", *COUNT_FIELDS):
            totals[name] += m.get(name, 0)
        skipped.update({reason: m["skipped"].get(reason, 0) for reason in SKIP_REASONS})
    summary = {"format": SUMMARY_FORMAT, "version": FORMAT_VERSION, "settings": settings}
    summary.update({name: totals[name] for name in SUMMARY_FIELDS})
    summary["skipped"] = {reason: skipped[reason] for reason in SKIP_REASONS}
    summary["failed"] = failures
    return summary


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment ((0, 1, 0) without it)."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def _device_for(device: str, index: int) -> str:
    if device == "cuda" and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return device


def run_prepare(videos: str | Path, out: str | Path | None, *, options: PrepareOptions = PrepareOptions(),
                model_folders: Iterable[str | Path], device: str = "cpu", dtype: torch.dtype = torch.float32,
                workers: int = 1, add_codes: bool = False, verbose: bool = False) -> tuple[dict | None, ShardStats]:
    """Prepares every video of ``videos`` into ``out`` (``add_codes``: completes the tree ``videos`` in place).

    Returns:
        ``(summary, stats)``: the summary written to ``ROOT/manifest.json`` (None on ranks other than 0) and
        what was done in this run, summed over the processes.

    Raises:
        InputError: no videos or not a prepared tree, an output folder that cannot be written, ``workers`` with
            torchrun, a folder prepared with another stride.
        MissingModelError: e4e or DECA absent.
    """
    videos = Path(videos)
    out = videos if add_codes else Path(out)
    model_folders = [Path(f) for f in model_folders]
    next(tasks(videos, out, add_codes))  # bad input fails here, before any model is loaded
    for name in DATASET_KINDS:
        find_model_file(name, model_folders)
    check_writable(out)
    rank, world_size, local_rank = distributed_env()
    if workers < 1 or (workers > 1 and world_size > 1):
        raise InputError(f"--workers must be ≥ 1 and cannot be combined with torchrun (got {workers} workers, "
                         f"{world_size} ranks)")
    common = dict(videos=videos, out=out, options=options, model_folders=model_folders, dtype=dtype,
                  add_codes=add_codes, verbose=verbose)
    own_group = False
    if workers > 1:
        threads = max(1, torch.get_num_threads() // workers)
        children_before = set(active_children())
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=worker_signals) as pool:
            futures = [pool.submit(run_shard, device=_device_for(device, r), rank=r, world_size=workers,
                                   threads=threads, **common) for r in range(workers)]
            try:
                parts = [f.result() for f in futures]
            except BaseException:   # an error, Ctrl-C or SIGTERM: every worker stops now, through its clean-up
                for worker in set(active_children()) - children_before:
                    worker.terminate()
                raise
        stats = ShardStats.total(parts)
    else:
        own_group = _join_group(world_size)
        stats = run_shard(device=_device_for(device, local_rank), rank=rank, world_size=world_size, **common)
        if world_size > 1:
            stats = _summed(stats)
    summary = None
    if rank == 0:
        settings = {"stride": None if add_codes else options.stride, "landmarks": options.backend,
                    "in_place": add_codes, "models": {n: find_model_file(n, model_folders).name for n in DATASET_KINDS}}
        summary = summarise((folder for folder, _ in tasks(videos, out, add_codes)), settings)
        write_text(out / MANIFEST, json.dumps(summary, indent=1) + "\n")
    if world_size > 1:
        torch.distributed.barrier()
    if own_group:
        torch.distributed.destroy_process_group()
    return summary, stats


def _summed(stats: ShardStats) -> ShardStats:
    """The stats of every rank added up (also a barrier: every rank has finished its videos)."""
    total = torch.tensor([getattr(stats, name) for name in ShardStats.__dataclass_fields__], dtype=torch.int64)
    torch.distributed.all_reduce(total)
    return ShardStats(*(int(v) for v in total))


def _join_group(world_size: int) -> bool:
    """Joins torchrun's process group (gloo: only barriers and a sum are needed) when there are several ranks and
    none is set up; True when it was created here."""
    if world_size <= 1 or torch.distributed.is_initialized():
        return False
    torch.distributed.init_process_group("gloo")
    return True
