"""The file layer: atomic writes with the umask's mode, for every file the library writes."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from reenact_core.engine import PreparedSource, save_source
from reenact_core.errors import InputError, WeightsError
from reenact_core.faces.reference_crop import CropTransform
from reenact_core.files import atomic_write, current_umask, find_file, read_safetensors, write_safetensors
from reenact_core.weights import convert, kind, make_tiny_model_set, tiny_config
from reenact_core.weights.official import write_official


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_write_gives_the_mode_of_the_umask(tmp_path, mask):
    with umask(mask):
        assert current_umask() == mask
        path = atomic_write(tmp_path / "sub" / "a.bin", lambda tmp: tmp.write_bytes(b"x"))
    assert path.read_bytes() == b"x" and mode(path) == 0o666 & ~mask
    assert leftovers(path.parent) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_model_files_sources_and_converted_files_are_0644_under_umask_022(tmp_path):
    with umask(0o022):
        written = list(make_tiny_model_set(tmp_path / "set").values())
        official = write_official(tmp_path / "deca.pt", "deca", kind("deca").build(tiny_config("deca")).state_dict())
        written.append(convert(official, tmp_path / "converted" / "deca.safetensors"))
        source = PreparedSource(np.zeros((8, 8, 3), np.uint8), np.zeros((256, 256, 3), np.uint8),
                                CropTransform((0, 0, 8, 8), (8, 8)), np.zeros((68, 2), np.float32),
                                torch.zeros(1, 14, 32), torch.zeros(1, 32), torch.zeros(1, 236))
        written.append(save_source(source, tmp_path / "sources" / "s.safetensors"))
    assert [mode(p) for p in written] == [0o644] * len(written)
    assert all(leftovers(p.parent) == [] for p in written)


def test_safetensors_round_trip_and_errors(tmp_path):
    path = write_safetensors(tmp_path / "t.safetensors", {"a": torch.arange(6.0).view(2, 3)}, {"k": "v"})
    tensors, meta = read_safetensors(path)
    assert torch.equal(tensors["a"], torch.arange(6.0).view(2, 3)) and meta == {"k": "v"}
    header, _ = read_safetensors(path, tensors=False)
    assert header["a"].shape == (2, 3) and header["a"].device.type == "meta"
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="bad.safetensors"):
        read_safetensors(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="not found"):
        read_safetensors(tmp_path / "absent.safetensors", error=InputError)


def test_find_file_takes_the_first_folder_holding_it(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    (tmp_path / "b" / "f").write_text("b")
    assert find_file("f", [tmp_path / "a", tmp_path / "b"]) == tmp_path / "b" / "f"
    (tmp_path / "a" / "f").write_text("a")
    assert find_file("f", [tmp_path / "a", tmp_path / "b"]) == tmp_path / "a" / "f"
    assert find_file("g", [tmp_path / "a"]) is None


def test_videos_and_frames_appear_whole_with_the_umask_mode(tmp_path):
    from reenact_core.video import PngFramesWriter, VideoWriter

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with umask(0o022):
        with VideoWriter(tmp_path / "v" / "out.mp4", 25) as writer:
            writer.write(frames)
            assert not (tmp_path / "v" / "out.mp4").exists()          # published when closed
        with PngFramesWriter(tmp_path / "png") as writer:
            writer.write(frames)
    written = [tmp_path / "v" / "out.mp4", *sorted((tmp_path / "png").iterdir())]
    assert len(written) == 3 and [mode(p) for p in written] == [0o644] * 3
    assert leftovers(tmp_path / "v") == [] and leftovers(tmp_path / "png") == []


def test_a_video_stopped_by_an_error_leaves_nothing(tmp_path):
    from reenact_core.video import VideoWriter

    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "out.mp4", 25) as writer:
            writer.write(np.zeros((2, 16, 16, 3), np.uint8))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
