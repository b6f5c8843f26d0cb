"""The plan shared by the session and the step nodes: network windows and the one no-face policy function."""
from __future__ import annotations

import numpy as np
import pytest

from reenact_core.engine import frame_rows, windows
from reenact_core.errors import InputError, NoFaceError


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_windows_group_rows_by_frame_window(batch_size):
    rng = np.random.default_rng(batch_size)
    indices = np.flatnonzero(rng.random(40) < 0.7)          # frames with a face, gaps included
    slices = windows(indices, batch_size)
    assert np.concatenate([np.arange(len(indices))[s] for s in slices]).tolist() == list(range(len(indices)))
    for s in slices:
        assert len({int(i) // batch_size for i in indices[s]}) == 1
    assert len(slices) == len({int(i) // batch_size for i in indices})


def test_windows_of_nothing_and_bad_sizes():
    assert windows(np.zeros(0, np.int64), 8) == []
    with pytest.raises(InputError, match="batch size"):
        windows([0, 1], 0)


def test_frame_rows_pass_and_hold():
    has = [False, True, False, True, True, False]
    assert frame_rows(has, "pass").tolist() == [-1, 0, -1, 1, 2, -1]
    assert frame_rows(has, "hold").tolist() == [0, 0, 0, 1, 2, 2]
    assert frame_rows(has, "hold", held=True).tolist() == [-1, 0, 0, 1, 2, 2]
    assert frame_rows([False, False], "hold").tolist() == [-1, -1]     # nothing to show yet


def test_frame_rows_raise_names_the_first_frame_without_a_face():
    assert frame_rows([True, True], "raise").tolist() == [0, 1]
    with pytest.raises(NoFaceError, match="frame 12"):
        frame_rows([True, True, False, False], "raise", first_index=10)
    with pytest.raises(InputError):
        frame_rows([True], "skip")
