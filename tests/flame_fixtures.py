"""Synthetic FLAME files in the official formats, for tests: ``generic_model.pkl`` pickled with stand-in
``chumpy.ch.Ch`` and ``scipy.sparse`` CSC classes (neither package is needed), and DECA's object
``landmark_embedding.npy`` whose contour tables are torch tensors, as in the real file.

``synthetic_flame_arrays`` rebuilds the arrays of the golden training set by its rule (golden training
README, section 2) for any seed; ``tiny_flame_arrays`` makes a small model of the same structure.
"""
from __future__ import annotations

import contextlib
import pickle
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch


def draw(seed: int, key: str, shape) -> np.ndarray:
    """The golden weight rule's draw: float32 randn from a CPU generator seeded with seed + crc32(key)."""
    g = torch.Generator().manual_seed(seed + zlib.crc32(key.encode("utf-8")))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32).numpy()


def norm_rows(u: np.ndarray) -> np.ndarray:
    """Each last-axis row divided by its float32 sum taken strictly left to right."""
    s = u[..., 0].copy()
    for i in range(1, u.shape[-1]):
        s = s + u[..., i]
    return u / s[..., None]


def synthetic_flame_arrays(seed: int, n_vertices: int = 5023, n_faces: int = 9976, n_basis: int = 400,
                           j_taps: int = 16) -> dict[str, np.ndarray | torch.Tensor]:
    """Every array of generic_model.pkl and landmark_embedding.npy, made by the golden rule (float32
    elementwise). With the default sizes these are the golden set's arrays bit for bit."""
    f32 = np.float32
    v, nf = n_vertices, n_faces
    r = draw(seed, "v_template", (v, 3))
    s = (np.abs(r[:, 0]) + np.abs(r[:, 1])) + np.abs(r[:, 2])
    out: dict = {"v_template": (r / s[:, None]) * np.array([0.09, 0.12, 0.10], dtype=f32)}
    out["shapedirs"] = draw(seed, "shapedirs", (v, 3, n_basis)) * f32(0.001)
    out["posedirs"] = draw(seed, "posedirs", (v, 3, 36)) * f32(0.01)
    j = np.zeros((5, v), dtype=f32)
    for joint in range(5):
        for k in range(j_taps):
            j[joint, (1000 * joint + 61 * k) % v] = f32(1 / j_taps)
    out["J_regressor"] = j
    out["weights"] = norm_rows(np.abs(draw(seed, "weights", (v, 5))) * np.array([0.5, 2, 1, 0.25, 0.25], dtype=f32))
    out["kintree_table"] = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
    out["f"] = ((3 * np.arange(nf)[:, None] + np.arange(3)[None]) % v).astype(np.uint32)

    def bary(key, shape):
        return norm_rows(draw(seed, key, shape) * f32(0.2) + f32(1))

    out["static_lmk_faces_idx"] = (193 * np.arange(51) + 17) % nf
    out["static_lmk_bary_coords"] = bary("static_lmk_bary_coords", (51, 3)).astype(np.float64)
    i, jj = np.meshgrid(np.arange(79), np.arange(17), indexing="ij")
    out["dynamic_lmk_faces_idx"] = torch.from_numpy((53 * (17 * i + jj) + 11) % nf).to(torch.int64)
    out["dynamic_lmk_bary_coords"] = torch.from_numpy(bary("dynamic_lmk_bary_coords", (79, 17, 3)))
    out["full_lmk_faces_idx"] = ((139 * np.arange(68) + 23) % nf)[None].astype(np.int64)
    out["full_lmk_bary_coords"] = bary("full_lmk_bary_coords", (1, 68, 3))
    out["static_lmk_faces_idx"] = out["static_lmk_faces_idx"].astype(np.int64)
    return out


def tiny_flame_arrays(seed: int = 0) -> dict:
    """A small FLAME-structured model (60 vertices, 40 faces, 360 basis columns) by the same rule."""
    return synthetic_flame_arrays(seed, n_vertices=60, n_faces=40, n_basis=360, j_taps=4)


MODEL_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


class Ch:
    """Stand-in for ``chumpy.ch.Ch``: pickles its ``__dict__`` state like chumpy (``x`` plus bookkeeping).
    ``x=None`` makes an expression node, whose state has no array ``x`` but its operands."""

    def __init__(self, x=None, operands=()):
        if x is not None:
            self.x = x
        else:
            self.a, self.b = operands
        self._dirty_vars = set()
        self._itr = None

    def __getstate__(self):
        return dict(self.__dict__)


class csc_matrix:  # noqa: N801 - the scipy class name the file refers to
    """Stand-in for ``scipy.sparse.csc_matrix`` with scipy's pickled attributes."""

    def __init__(self, dense: np.ndarray):
        cols = [np.nonzero(dense[:, c])[0] for c in range(dense.shape[1])]
        self.indices = np.concatenate(cols).astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
        self.data = np.concatenate([dense[c_idx, c] for c, c_idx in enumerate(cols)]).astype(dense.dtype)
        self._shape = dense.shape
        self.maxprint = 50


@contextlib.contextmanager
def stand_in_modules():
    """Registers Ch as ``chumpy.ch.Ch`` and csc_matrix as ``scipy.sparse.csc.csc_matrix`` while pickling."""
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch", "scipy.sparse.csc")}
    chumpy_ch = types.ModuleType("chumpy.ch")
    csc = types.ModuleType("scipy.sparse.csc")
    for module, classes in ((chumpy_ch, (Ch,)), (csc, (csc_matrix,))):
        for cls in classes:
            setattr(module, cls.__name__, cls)
    originals = {cls: cls.__module__ for cls in (Ch, csc_matrix)}
    Ch.__module__ = "chumpy.ch"
    csc_matrix.__module__ = "scipy.sparse.csc"
    sys.modules.update({"chumpy": types.ModuleType("chumpy"), "chumpy.ch": chumpy_ch, "scipy.sparse.csc": csc})
    try:
        yield
    finally:
        for cls, module in originals.items():
            cls.__module__ = module
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_generic_model(path: Path, arrays: dict, *, chumpy: bool = True, protocol: int = 2,
                        extra: dict | None = None) -> Path:
    """``generic_model.pkl`` as FLAME ships it: a dict with ``shapedirs`` (and ``posedirs``) as chumpy objects
    when ``chumpy``, ``J_regressor`` a CSC matrix, the rest ndarrays; ``extra`` entries are added as they are."""
    content = {k: arrays[k] for k in MODEL_KEYS}
    with stand_in_modules():
        if chumpy:
            content["shapedirs"] = Ch(arrays["shapedirs"])
            content["posedirs"] = Ch(arrays["posedirs"])
        content["J_regressor"] = csc_matrix(arrays["J_regressor"])
        content["bs_style"], content["bs_type"] = "lbs", "lrotmin"
        content.update(extra or {})
        path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


LANDMARK_KEYS = ("static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx",
                 "dynamic_lmk_bary_coords", "full_lmk_faces_idx", "full_lmk_bary_coords")


def write_landmark_embedding(path: Path, arrays: dict) -> Path:
    """DECA's ``landmark_embedding.npy``: an object .npy holding the dict (contour tables as torch tensors)."""
    content = np.empty((), dtype=object)
    content[()] = {k: arrays[k] for k in LANDMARK_KEYS}
    with open(path, "wb") as f:
        np.save(f, content, allow_pickle=True)
    return path
