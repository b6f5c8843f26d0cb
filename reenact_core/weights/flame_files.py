"""Reading FLAME's ``generic_model.pkl`` and DECA's ``landmark_embedding.npy`` without chumpy, scipy or any code
from the files (training-and-fsr §3.2, §3.5).

Both are pickles. Every global they name is checked against an allow-list *before* anything is built
(``scan_globals``), and the unpickler's ``find_class`` returns only the allowed objects or stand-ins: chumpy
``Ch`` objects become their ``x`` array (a chumpy expression without an array is refused), scipy CSC matrices
are densified with NumPy, torch storages are read with ``torch.load(weights_only=True)``. The result is the
state dict of :class:`reenact_core.models.flame.Flame` (DECA's buffer names and slices).
"""
from __future__ import annotations

import io
import pickle
import pickletools
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError

try:  # NumPy 2 moved the module; both spellings occur in files
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import _reconstruct

FLAME_SITE = "https://flame.is.tue.mpg.de (free registration; per-user licence)"
LANDMARKS_SITE = "https://github.com/yfeng95/DECA (data/landmark_embedding.npy)"
# Columns of generic_model.pkl's shapedirs where the expression basis starts (300 identity components first).
EXPRESSION_OFFSET = 300


class _ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps only the array ``x`` of its pickled state."""

    def __setstate__(self, state):
        x = state.get("x") if isinstance(state, dict) else None
        if not isinstance(x, np.ndarray):
            raise WeightsError("a chumpy object without its array 'x' (a chumpy expression) cannot be read")
        self.x = x


class _CscMatrix:
    """Stand-in for ``scipy.sparse.csc_matrix``: densified from ``data``, ``indices``, ``indptr``, shape."""

    def __setstate__(self, state):
        try:
            shape = tuple(int(n) for n in state.get("_shape", state.get("shape")))
            data, indices, indptr = (np.asarray(state[k]) for k in ("data", "indices", "indptr"))
            dense = np.zeros(shape, dtype=data.dtype)
            for col in range(shape[1]):
                rows = indices[indptr[col]:indptr[col + 1]]
                dense[rows, col] = data[indptr[col]:indptr[col + 1]]
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise WeightsError(f"malformed sparse matrix in the FLAME file: {exc}") from None
        self.x = dense


_STAND_INS = (_ChumpyArray, _CscMatrix)


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (protocol 0/1 files), for the stand-ins only."""
    if cls not in _STAND_INS or base is not object or state is not None:
        raise WeightsError(f"refused object reconstruction of {getattr(cls, '__name__', cls)!r}")
    return object.__new__(cls)


def _latin1_encode(text, encoding=None):
    """``_codecs.encode`` as Python 3 re-saves of py2 byte strings use it: only (str, 'latin1')."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise WeightsError("refused _codecs.encode call other than (str, 'latin1')")
    return text.encode("latin1")


def _load_storage(data):
    """``torch.storage._load_from_bytes``: a legacy torch.save storage, read with weights_only=True."""
    if not isinstance(data, bytes):
        raise WeightsError("refused torch storage that is not a byte string")
    storage = torch.load(io.BytesIO(data), weights_only=True)
    if not isinstance(storage, torch.storage.TypedStorage):
        raise WeightsError("a torch storage entry holds something else than a storage")
    return storage


def _rebuild_tensor(storage, offset, size, stride, *_):
    """``torch._utils._rebuild_tensor_v2`` restricted to storages read by ``_load_storage``."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise WeightsError("refused tensor rebuild from something else than a storage")
    return torch.empty(0, dtype=storage.dtype).set_(storage._untyped_storage, int(offset), tuple(size), tuple(stride))


_COMMON = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
}
MODEL_GLOBALS = _COMMON | {
    ("chumpy.ch", "Ch"): _ChumpyArray,
    ("scipy.sparse.csc", "csc_matrix"): _CscMatrix,
    ("scipy.sparse._csc", "csc_matrix"): _CscMatrix,
    ("scipy.sparse", "csc_matrix"): _CscMatrix,
    ("__builtin__", "set"): set, ("builtins", "set"): set,
    ("__builtin__", "object"): object, ("builtins", "object"): object,
    ("copy_reg", "_reconstructor"): _reconstructor, ("copyreg", "_reconstructor"): _reconstructor,
}
LANDMARK_GLOBALS = _COMMON | {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _load_storage,
}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def scan_globals(data: bytes) -> set[tuple[str, str]]:
    """Every (module, name) a pickle refers to, read from its opcodes without executing anything.

    Raises WeightsError for data that is not a readable pickle.
    """
    found: set[tuple[str, str]] = set()
    strings: list[str] = []        # strings pushed so far (STACK_GLOBAL takes the last two)
    top: str | None = None         # the string on top of the stack, if the last push was one
    memo: dict = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            pushed = None
            if op.name in _STRING_OPS:
                pushed = arg if isinstance(arg, str) else str(arg)
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(arg)
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if op.name == "MEMOIZE" else arg] = top
                continue
            elif op.name in ("GLOBAL", "INST"):
                module, _, name = arg.partition(" ")
                found.add((module, name))
            elif op.name == "STACK_GLOBAL":
                found.add((strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?"))
            elif op.name in ("EXT1", "EXT2", "EXT4"):
                found.add(("copyreg extension", str(arg)))
            if isinstance(pushed, str):
                strings.append(pushed)
            top = pushed if isinstance(pushed, str) else None
    except (ValueError, EOFError) as exc:
        raise WeightsError(f"not a readable pickle: {exc}") from None
    return found


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: dict):
        super().__init__(file, encoding="latin1")
        self._allowed = allowed

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise WeightsError(f"refused: the file needs the Python global '{module}.{name}'") from None

    def persistent_load(self, pid):
        raise WeightsError("refused: the file uses pickle persistent ids")


def restricted_load(data: bytes, allowed: dict, what: str):
    """Unpickle ``data`` allowing only the globals in ``allowed`` (a (module, name) → object map).

    The opcodes are scanned first, so a foreign global is refused before any object is built. Raises
    WeightsError naming ``what`` and the first refused global.
    """
    foreign = sorted(g for g in scan_globals(data) if g not in allowed)
    if foreign:
        raise WeightsError(f"{what}: refused to read: it needs the Python global '{'.'.join(foreign[0])}' "
                           f"(only NumPy arrays, chumpy arrays, sparse matrices and torch storages are accepted)")
    try:
        return _AllowListUnpickler(io.BytesIO(data), allowed).load()
    except WeightsError as exc:
        raise WeightsError(f"{what}: {exc}") from None
    except Exception as exc:  # malformed data raises many types; all become one line
        raise WeightsError(f"{what}: cannot read the pickle (truncated or corrupt?): {exc}") from None


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise WeightsError(f"file not found: {path}")
    return path.read_bytes()


def _array(value, what: str) -> np.ndarray:
    if isinstance(value, _STAND_INS):
        value = value.x
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if not isinstance(value, np.ndarray) or value.dtype == object:
        raise WeightsError(f"{what} is a {type(value).__name__}, expected a numeric array")
    return value


def read_flame_model(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a FLAME ``generic_model.pkl`` (chumpy/sparse entries as plain arrays)."""
    path = Path(path)
    content = restricted_load(_read_bytes(path), MODEL_GLOBALS, path.name)
    if not isinstance(content, dict):
        raise WeightsError(f"{path.name}: expected a dict of FLAME arrays, found {type(content).__name__}")
    keys = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
    missing = [k for k in keys if k not in content]
    if missing:
        raise WeightsError(f"{path.name}: not a FLAME model file (lacks {', '.join(missing)})")
    return {k: _array(content[k], f"{path.name}: '{k}'") for k in keys}


def read_landmark_embedding(path: str | Path) -> dict[str, np.ndarray]:
    """The six arrays of DECA's ``landmark_embedding.npy`` (an object ``.npy`` holding a pickled dict)."""
    path = Path(path)
    data = _read_bytes(path)
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(stream)
    except (ValueError, OSError) as exc:
        raise WeightsError(f"{path.name}: not a .npy file: {exc}") from None
    if dtype != object:
        raise WeightsError(f"{path.name}: expected an object .npy holding the landmark dict, found dtype {dtype}")
    content = restricted_load(data[stream.tell():], LANDMARK_GLOBALS, path.name)
    if isinstance(content, np.ndarray) and content.dtype == object and content.shape == ():
        content = content[()]
    keys = ("static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
            "full_lmk_faces_idx", "full_lmk_bary_coords")
    if not isinstance(content, dict) or any(k not in content for k in keys):
        raise WeightsError(f"{path.name}: not DECA's landmark embedding (needs {', '.join(keys)})")
    return {k: _array(content[k], f"{path.name}: '{k}'") for k in keys}


def flame_state_dict(model_path: str | Path, landmarks_path: str | Path, n_shape: int = 100,
                     n_exp: int = 50) -> dict[str, torch.Tensor]:
    """The :class:`~reenact_core.models.flame.Flame` state dict from the two official files, as DECA's
    ``FLAME.__init__`` builds its buffers (float32 values, int64 indices; shape columns ``[:n_shape]`` and
    expression columns ``[300:300 + n_exp]``). Raises WeightsError (one line) for unsafe or malformed files."""
    m = read_flame_model(model_path)
    lmk = read_landmark_embedding(landmarks_path)
    name = Path(model_path).name
    shapedirs = m["shapedirs"]
    if shapedirs.ndim != 3 or shapedirs.shape[2] < EXPRESSION_OFFSET + n_exp or shapedirs.shape[2] < n_shape:
        raise WeightsError(f"{name}: shapedirs has shape {shapedirs.shape}, "
                           f"expected (V, 3, ≥{EXPRESSION_OFFSET + n_exp})")
    parents = m["kintree_table"][0].astype(np.int64)
    parents[0] = -1

    def f32(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def i64(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return {
        "v_template": f32(m["v_template"]),
        "shapedirs": torch.cat([f32(shapedirs[:, :, :n_shape]),
                                f32(shapedirs[:, :, EXPRESSION_OFFSET:EXPRESSION_OFFSET + n_exp])], 2),
        "posedirs": f32(np.reshape(m["posedirs"], [-1, m["posedirs"].shape[-1]]).T),
        "J_regressor": f32(m["J_regressor"]),
        "parents": i64(parents),
        "lbs_weights": f32(m["weights"]),
        "faces_tensor": i64(m["f"]),
        "lmk_faces_idx": i64(lmk["static_lmk_faces_idx"]),
        "lmk_bary_coords": f32(lmk["static_lmk_bary_coords"]),
        "dynamic_lmk_faces_idx": i64(lmk["dynamic_lmk_faces_idx"]),
        "dynamic_lmk_bary_coords": f32(lmk["dynamic_lmk_bary_coords"]),
        "full_lmk_faces_idx": i64(lmk["full_lmk_faces_idx"]),
        "full_lmk_bary_coords": f32(lmk["full_lmk_bary_coords"]),
    }

