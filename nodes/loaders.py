"""Model loaders: one node per model kind, reading our `.safetensors` files from the `reenact` model folder.

Each loader validates its file before the run (missing, unreadable or of another kind: the prompt is refused with
our one-line message) and returns a shared :class:`~.common.ModelHandle`. ``auto`` precision is fp16 on a CUDA
device ComfyUI runs in fp16, bf16 where ComfyUI prefers it, fp32 otherwise (CPU, MPS); a half-precision model
whose forward pass on its kind's neutral input (hook ``probe_input``: the mean face for G, mid-grey images for the
encoders, Δp = 0 for A) is not finite is used in fp32 instead, with a warning in the log.
"""
from __future__ import annotations

import functools
import logging
import os
import weakref

import comfy.model_management as mm
import folder_paths
import torch
from comfy_api.v0_0_2 import io

from reenact_core.weights.kinds import KINDS

from . import MODEL_FOLDER_KEY
from .common import DTYPES, MODEL_TYPES, MODELS_CATEGORY, ModelHandle

logger = logging.getLogger(__name__)

DTYPE_CHOICES = ("auto", *DTYPES)
_FINITE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # handle → its probe forward was finite


def model_files(kind: str) -> list[str]:
    """Files a loader offers: the kind's canonical file first (listed even when absent, so validation can say
    where to get it), then every other `.safetensors` in the folder except the other kinds' canonical files."""
    canonical = KINDS[kind].canonical_file
    others = {k.canonical_file for k in KINDS.values()} - {canonical}
    listed = [f for f in folder_paths.get_filename_list(MODEL_FOLDER_KEY)
              if f != canonical and os.path.basename(f) not in others]
    return [canonical, *listed]


def check_model_file(kind: str, name: str) -> str | None:
    """Why ``name`` cannot be loaded as a ``kind`` model (our one-line message), or None when it can."""
    from reenact_core.errors import MissingModelError
    from reenact_core.weights import find_model_file

    path = folder_paths.get_full_path(MODEL_FOLDER_KEY, name)
    if path is None:
        try:
            path = str(find_model_file(kind, folder_paths.get_folder_paths(MODEL_FOLDER_KEY), name))
        except MissingModelError as exc:
            return str(exc)
    stat = os.stat(path)
    return _header_problem(path, stat.st_mtime_ns, stat.st_size, kind)


@functools.lru_cache(maxsize=64)
def _header_problem(path: str, mtime_ns: int, size: int, kind: str) -> str | None:
    """The header check of one version of a file (cached: validation runs on every queued prompt)."""
    from reenact_core.errors import WeightsError
    from reenact_core.weights import inspect_model_file

    try:
        inspect_model_file(path, kind)
    except WeightsError as exc:
        return str(exc)
    return None


def resolve_dtype(choice: str) -> torch.dtype:
    """The float type for a dtype choice; ``auto`` follows ComfyUI's device and precision settings."""
    if choice != "auto":
        return DTYPES[choice]
    device = mm.get_torch_device()
    if mm.is_device_cpu(device) or mm.is_device_mps(device):
        return torch.float32
    if mm.should_use_fp16(device):
        return torch.float16
    if mm.should_use_bf16(device):
        return torch.bfloat16
    return torch.float32


def open_model(kind: str, name: str, choice: str) -> ModelHandle:
    """The handle of model file ``name`` in the precision ``choice`` asks for (see the module docstring)."""
    handle = ModelHandle.open(kind, folder_paths.get_full_path_or_raise(MODEL_FOLDER_KEY, name), resolve_dtype(choice))
    if choice != "auto" or handle.dtype == torch.float32:
        return handle
    if handle not in _FINITE:
        _FINITE[handle] = _forward_is_finite(handle)
    if _FINITE[handle]:
        return handle
    logger.warning("%s gives NaN/Inf in %s on %s; using float32", name, handle.dtype, handle.patcher.load_device)
    return handle.with_dtype(torch.float32)


def _forward_is_finite(handle: ModelHandle) -> bool:
    model = handle.loaded()
    module, config, device, dtype = model.module, model.config, handle.patcher.load_device, handle.dtype
    probe = KINDS[handle.kind].probe_input
    if probe is None:   # a kind without a neutral input is trusted in the precision asked for
        return True
    with torch.inference_mode():
        out = module(*probe(config, model.extras, device, dtype))
    return bool(torch.isfinite(out).all())


class _ModelLoader(io.ComfyNode):
    """A loader of one model kind; subclasses set the kind, node id and names."""

    KIND: str
    NODE_ID: str
    DISPLAY_NAME: str
    OUTPUT_NAME: str

    @classmethod
    def define_schema(cls) -> io.Schema:
        k = KINDS[cls.KIND]
        if k.official_file:
            origin = (f"Converted from the official '{k.official_file}' with: latent-reenact convert "
                      f"{k.official_file} <ComfyUI>/models/{MODEL_FOLDER_KEY}/")
            made = f"converted from the official '{k.official_file}'"
        else:   # nothing published to convert
            origin, made = f"The file: {k.source}.", "none is published"
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=MODELS_CATEGORY,
            description=f"Loads the {k.title} from models/{MODEL_FOLDER_KEY}/ (or a folder given for "
                        f"'{MODEL_FOLDER_KEY}' in extra_model_paths.yaml). {origin}",
            inputs=[
                io.Combo.Input("model_file", options=model_files(cls.KIND), default=k.canonical_file,
                               tooltip=f"{k.title} file in models/{MODEL_FOLDER_KEY}/; default "
                                       f"'{k.canonical_file}', {made}"),
                io.Combo.Input("dtype", options=list(DTYPE_CHOICES), default="auto",
                               tooltip="Precision of the weights. auto: fp16 on a CUDA GPU ComfyUI runs in fp16, "
                                       "bf16 where ComfyUI prefers it, fp32 on CPU and MPS; falls back to fp32 "
                                       "when half precision gives NaN. Loaders feeding one node should agree "
                                       "(otherwise everything runs in fp32)."),
            ],
            outputs=[MODEL_TYPES[cls.KIND].Output(
                display_name=cls.OUTPUT_NAME,
                tooltip=f"The {k.title}, shared by every loader of the same file and precision; moved to the "
                        f"GPU when used and released by ComfyUI's model management")],
        )

    @classmethod
    def validate_inputs(cls, model_file: str) -> bool | str:
        return check_model_file(cls.KIND, model_file) or True

    @classmethod
    def fingerprint_inputs(cls, model_file: str, dtype: str):
        path = folder_paths.get_full_path(MODEL_FOLDER_KEY, model_file)
        return (model_file, dtype, os.stat(path).st_mtime_ns if path else None)

    @classmethod
    def execute(cls, model_file: str, dtype: str) -> io.NodeOutput:
        return io.NodeOutput(open_model(cls.KIND, model_file, dtype))


class LatentReenactLoadGenerator(_ModelLoader):
    KIND, NODE_ID = "stylegan2", "LatentReenactLoadGenerator"
    DISPLAY_NAME, OUTPUT_NAME = "Load StyleGAN2 Generator (Latent Reenact)", "generator"


class LatentReenactLoadEncoder(_ModelLoader):
    KIND, NODE_ID = "e4e", "LatentReenactLoadEncoder"
    DISPLAY_NAME, OUTPUT_NAME = "Load e4e Encoder (Latent Reenact)", "encoder"


class LatentReenactLoadDeca(_ModelLoader):
    KIND, NODE_ID = "deca", "LatentReenactLoadDeca"
    DISPLAY_NAME, OUTPUT_NAME = "Load DECA Encoder (Latent Reenact)", "deca"


class LatentReenactLoadDirections(_ModelLoader):
    KIND, NODE_ID = "directions", "LatentReenactLoadDirections"
    DISPLAY_NAME, OUTPUT_NAME = "Load Directions A (Latent Reenact)", "directions"


class LatentReenactLoadFSR(_ModelLoader):
    KIND, NODE_ID = "fsr", "LatentReenactLoadFSR"
    DISPLAY_NAME, OUTPUT_NAME = "Load FSR Encoder (Latent Reenact)", "fsr"


NODES = [LatentReenactLoadGenerator, LatentReenactLoadEncoder, LatentReenactLoadDeca, LatentReenactLoadDirections,
         LatentReenactLoadFSR]
