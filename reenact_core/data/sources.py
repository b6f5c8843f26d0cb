"""Which videos a dataset is prepared from: a video file, a folder of videos, a tree ``ID/VIDEO.mp4`` or a list file.

Every video gets an identity and a video name, the two folder levels of the prepared tree (``ROOT/ID/VIDEO``):
the video's file stem and the name of the folder holding it (so a user video without an identity level gets
its folder's name). Sources stream in a fixed, sorted order, which is what shards them across processes.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from ..errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
LIST_COMMENT = "#"
_EXPECTED = ("expected a video file, a folder of videos, a folder tree ID/VIDEO.mp4 or a list file of video paths "
             f"({', '.join(VIDEO_SUFFIXES)})")


@dataclass(frozen=True)
class VideoSource:
    """One input video: its identity (``id``), its name in the tree (``video``) and its file (``path``)."""

    id: str
    video: str
    path: Path

    @property
    def key(self) -> str:
        """``ID/VIDEO``, its place in the prepared tree."""
        return f"{self.id}/{self.video}"


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _source(path: Path) -> VideoSource:
    return VideoSource(path.absolute().parent.name, path.stem, path)


def _folder_videos(folder: Path) -> Iterator[VideoSource]:
    """The videos directly in ``folder``, sorted; two files with one stem are an error."""
    videos = sorted(p for p in folder.iterdir() if p.is_file() and is_video(p))
    stems = [p.stem for p in videos]
    for stem in {s for s in stems if stems.count(s) > 1}:
        raise InputError(f"{folder} holds several videos named {stem!r} (different suffixes): keep one")
    return map(_source, videos)


def _tree(root: Path) -> Iterator[VideoSource]:
    """Videos directly in ``root``, then those of each sub-folder ``root/ID/``, in sorted order (one folder
    listed at a time)."""
    yield from _folder_videos(root)
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        yield from _folder_videos(sub)


def _listed(list_file: Path) -> Iterator[VideoSource]:
    """The videos named one per line in ``list_file`` (relative paths from its folder; ``#`` comments)."""
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list file {list_file}: {exc}") from None
    seen = set()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith(LIST_COMMENT):
            continue
        path = Path(line) if Path(line).is_absolute() else list_file.parent / line
        if not path.is_file() or not is_video(path):
            raise InputError(f"{list_file} line {number}: {line} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
        source = _source(path)
        if source.key in seen:
            raise InputError(f"{list_file} line {number}: a second video for {source.key} (same folder and name)")
        seen.add(source.key)
        yield source


def video_sources(videos: str | Path) -> Iterator[VideoSource]:
    """The videos named by ``videos``, in a fixed order (see the module docstring).

    Raises:
        InputError: ``videos`` does not exist, holds no video, or names two videos for one ``ID/VIDEO``.
    """
    videos = Path(videos)
    if not videos.exists():
        raise InputError(f"videos not found: {videos}")
    if videos.is_dir():
        sources = _tree(videos)
    elif is_video(videos):
        sources = iter([_source(videos)])
    else:
        sources = _listed(videos)
    first = next(sources, None)
    if first is None:
        raise InputError(f"no videos in {videos}: {_EXPECTED}")
    return chain([first], sources)
