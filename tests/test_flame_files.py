"""FLAME's official files through the allow-list reader and the converter: what is read, what is refused."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from flame_fixtures import (Ch, stand_in_modules, tiny_flame_arrays, write_generic_model,
                            write_landmark_embedding)
from reenact_core.errors import MissingModelError, WeightsError
from reenact_core.models.flame import Flame
from reenact_core.weights import convert, find_model_file, load_model
from reenact_core.weights.flame_files import read_flame_model, read_landmark_embedding, scan_globals


@pytest.fixture
def tiny(tmp_path):
    arrays = tiny_flame_arrays()
    return arrays, write_landmark_embedding(tmp_path / "landmark_embedding.npy", arrays)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_reads_chumpy_and_sparse_stand_ins(tmp_path, tiny, protocol):
    arrays, _ = tiny
    pkl = write_generic_model(tmp_path / "generic_model.pkl", arrays, protocol=protocol)
    names = {f"{m}.{n}" for m, n in scan_globals(pkl.read_bytes())}
    assert {"chumpy.ch.Ch", "scipy.sparse.csc.csc_matrix"} <= names
    model = read_flame_model(pkl)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table"):
        assert np.array_equal(model[key], arrays[key]), key
    assert model["J_regressor"].shape == arrays["J_regressor"].shape


def test_reads_the_landmark_embedding_with_torch_storages(tiny):
    arrays, npy = tiny
    assert b"_load_from_bytes" in npy.read_bytes()      # the contour tables are pickled torch tensors
    lmk = read_landmark_embedding(npy)
    for key, value in lmk.items():
        expected = arrays[key].numpy() if isinstance(arrays[key], torch.Tensor) else arrays[key]
        assert np.array_equal(value, expected), key


def test_converted_model_has_deca_buffers(tmp_path, tiny):
    arrays, npy = tiny
    pkl = write_generic_model(tmp_path / "generic_model.pkl", arrays)
    out = convert(pkl, str(tmp_path / "models") + "/", landmarks=npy)
    assert out == tmp_path / "models" / "flame-generic.safetensors"
    flame = load_model(out, "flame").module
    assert isinstance(flame, Flame) and flame.config.n_vertices == arrays["v_template"].shape[0]
    assert flame.parents.tolist() == [-1, 0, 1, 1, 1]
    n_shape = flame.config.n_shape
    assert torch.equal(flame.shapedirs[..., :n_shape], torch.from_numpy(arrays["shapedirs"][..., :n_shape]))
    assert torch.equal(flame.shapedirs[..., n_shape:], torch.from_numpy(arrays["shapedirs"][..., 300:350]))
    assert torch.equal(flame.posedirs, torch.from_numpy(arrays["posedirs"].reshape(-1, 36).T.copy()))


class _Payload:
    """Pickles as a call of os.system that would create ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch '{self.path}'",)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_foreign_global_is_refused_and_never_runs(tmp_path, tiny, protocol):
    arrays, npy = tiny
    sentinel = tmp_path / "sentinel"
    pkl = write_generic_model(tmp_path / "generic_model.pkl", arrays, extra={"J": _Payload(sentinel)},
                              protocol=protocol)
    assert (os.system.__module__, "system") in scan_globals(pkl.read_bytes())
    with pytest.raises(WeightsError) as err:
        convert(pkl, tmp_path / "out.safetensors", landmarks=npy)
    message = str(err.value)
    assert "\n" not in message and f"{os.system.__module__}.system" in message
    assert not sentinel.exists() and not (tmp_path / "out.safetensors").exists()


def test_foreign_global_in_the_landmark_file_is_refused(tmp_path, tiny):
    arrays, _ = tiny
    sentinel = tmp_path / "sentinel"
    bad = dict(arrays, full_lmk_faces_idx=_Payload(sentinel))
    npy = write_landmark_embedding(tmp_path / "landmark_embedding.npy", bad)
    with pytest.raises(WeightsError, match=r"landmark_embedding\.npy: refused.*system"):
        read_landmark_embedding(npy)
    assert not sentinel.exists()


def test_chumpy_expression_without_array_is_refused(tmp_path, tiny):
    arrays, npy = tiny
    pkl = tmp_path / "generic_model.pkl"
    write_generic_model(pkl, arrays)
    with stand_in_modules():
        data = {k: arrays[k] for k in ("v_template", "f", "posedirs", "weights", "kintree_table", "J_regressor")}
        data["shapedirs"] = Ch(operands=(Ch(arrays["shapedirs"]), Ch(arrays["shapedirs"])))
        pkl.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(WeightsError, match="chumpy object without its array"):
        convert(pkl, tmp_path / "out.safetensors", landmarks=npy)


def test_flame_needs_the_landmark_file(tmp_path, tiny):
    arrays, _ = tiny
    pkl = write_generic_model(tmp_path / "generic_model.pkl", arrays)
    with pytest.raises(WeightsError, match="--landmarks landmark_embedding.npy"):
        convert(pkl, tmp_path)


def test_missing_flame_names_site_landmarks_and_command(tmp_path):
    with pytest.raises(MissingModelError) as err:
        find_model_file("flame", [tmp_path])
    message = str(err.value)
    assert "\n" not in message
    for needle in ("flame-generic.safetensors", "flame.is.tue.mpg.de", "yfeng95/DECA", "landmark_embedding.npy",
                   "convert generic_model.pkl --landmarks landmark_embedding.npy"):
        assert needle in message
