"""What the node modules share: the pack's custom types, model handles under ComfyUI's model management, IMAGE/MASK
conversions, and progress with interrupts.

Nothing here opens a model file or imports the heavy parts of reenact_core at import time.
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import numpy as np
import torch
from comfy_api.v0_0_2 import io

if TYPE_CHECKING:
    from reenact_core.engine import ReenactModels
    from reenact_core.weights import LoadedModel

CATEGORY = "Latent Reenact"
MODELS_CATEGORY = f"{CATEGORY}/models"

# Model handles, one type per model kind (the kind names of reenact_core.weights.KINDS).
Generator = io.Custom("REENACT_GENERATOR")
Encoder = io.Custom("REENACT_ENCODER")
Deca = io.Custom("REENACT_DECA")
Directions = io.Custom("REENACT_DIRECTIONS")
FSR = io.Custom("REENACT_FSR")
MODEL_TYPES = {"stylegan2": Generator, "e4e": Encoder, "deca": Deca, "directions": Directions, "fsr": FSR}

# Data passed between the granular nodes.
Align = io.Custom("REENACT_ALIGN")        # per-frame crop transforms, landmarks, kept frame indices, frame size
Source = io.Custom("REENACT_SOURCE")      # a reenact_core.engine.PreparedSource
Params = io.Custom("REENACT_PARAMS")      # per-frame FaceParams / DECA codes with their frame indices
Latent = io.Custom("REENACT_LATENT")      # codes to decode: a source and Δp per frame (w_s shifted by A(Δp))

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _tooltip(option, tooltip: str | None) -> str:
    return tooltip or option.help


def combo(option, *, tooltip: str | None = None, **kwargs) -> io.Combo.Input:
    """The widget of a choice option of ``reenact_core.options``: its name, choices and default."""
    return io.Combo.Input(option.name, options=list(option.choices), default=option.default,
                          tooltip=_tooltip(option, tooltip), **kwargs)


def number(option, *, tooltip: str | None = None, **kwargs) -> io.Int.Input | io.Float.Input:
    """The widget of a number option of ``reenact_core.options``: its name, default, range and step
    (``kwargs`` may override the default or the minimum, e.g. where a node's use has its own)."""
    kind = io.Int if option.integer else io.Float
    kwargs.setdefault("default", option.default)
    kwargs.setdefault("min", option.minimum)
    kwargs.setdefault("max", option.maximum)
    if option.step is not None:
        kwargs.setdefault("step", option.step)
    return kind.Input(option.name, tooltip=_tooltip(option, tooltip), **kwargs)


@dataclass(eq=False)
class ModelHandle:
    """One model file in one dtype, managed by ComfyUI (moved to the GPU on use, released on /free).

    Attributes:
        kind: the model kind (``"stylegan2"``, ``"e4e"``, ``"deca"``, ``"directions"``, ``"fsr"``).
        path: the model file.
        dtype: float type of the weights.
        model: the network as read, on ComfyUI's offload device; ``mean_latent`` (G only) kept on the CPU.
        patcher: the ``comfy.model_patcher.ModelPatcher`` wrapping ``model.module``.
    """

    kind: str
    path: Path
    dtype: torch.dtype
    model: LoadedModel
    patcher: comfy.model_patcher.ModelPatcher

    @classmethod
    def open(cls, kind: str, path: str | os.PathLike, dtype: torch.dtype) -> ModelHandle:
        """The handle of ``path`` in ``dtype``: the same object for as long as anyone holds it and the file's
        modification time is unchanged, so two loader nodes of one file share one model.

        Reads the weights to ComfyUI's offload device (the CPU unless ``--gpu-only``/``--highvram``).

        Raises:
            reenact_core.errors.WeightsError: unreadable file or not of ``kind``.
        """
        path = Path(path).resolve()
        key = (str(path), path.stat().st_mtime_ns, kind, str(dtype))
        with _HANDLES_LOCK:
            handle = _HANDLES.get(key)
            if handle is None:
                from reenact_core.weights import load_model

                model = load_model(path, kind, device=mm.unet_offload_device(), dtype=dtype)
                model.extras = {name: t.cpu() for name, t in model.extras.items()}
                patcher = comfy.model_patcher.ModelPatcher(model.module, load_device=mm.get_torch_device(),
                                                           offload_device=mm.unet_offload_device())
                handle = _HANDLES[key] = cls(kind, path, dtype, model, patcher)
            return handle

    def with_dtype(self, dtype: torch.dtype) -> ModelHandle:
        """The handle of the same file in another dtype (this one when ``dtype`` is its own)."""
        return self if dtype == self.dtype else ModelHandle.open(self.kind, self.path, dtype)

    def loaded(self) -> LoadedModel:
        """The network on the load device, ready to run (``reenact_core.weights.LoadedModel``)."""
        load_on_device([self])
        return self._on_device()

    def _on_device(self) -> LoadedModel:
        return replace(self.model, module=self.patcher.model,
                       extras={name: t.to(self.patcher.load_device) for name, t in self.model.extras.items()})


def clear_library_caches_on_unload() -> None:
    """Makes ComfyUI's ``unload_all_models`` (what ``/free`` with ``unload_models`` runs) also drop the library's
    helper-model caches (``reenact_core.caches``: dlib, FAN on the GPU, landmark backends, evaluation)."""
    original = mm.unload_all_models
    if getattr(original, "clears_reenact_caches", False):
        return

    def unload_all_models(*args, **kwargs):
        from reenact_core.caches import clear_caches

        result = original(*args, **kwargs)
        clear_caches()
        return result

    unload_all_models.clears_reenact_caches = True
    mm.unload_all_models = unload_all_models


_HANDLES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_HANDLES_LOCK = threading.Lock()


def load_on_device(handles: Sequence[ModelHandle]) -> None:
    """Moves the handles' networks to ComfyUI's device through its model management (which may unload others).

    Always whole: plain modules cannot run partially offloaded the way ComfyUI's own models can.
    """
    mm.load_models_gpu([h.patcher for h in handles], force_full_load=True)


def reenact_models(generator: ModelHandle | None, encoder: ModelHandle | None, deca: ModelHandle | None,
                   directions: ModelHandle | None, fsr: ModelHandle | None = None) -> ReenactModels:
    """The handles as ``reenact_core.engine.ReenactModels``, loaded together on ComfyUI's device.

    A node passes None for the networks it does not use (``fsr``: no refinement). The engine runs every network
    in one dtype: handles of different dtypes are all used in float32.

    Raises:
        reenact_core.errors.WeightsError: the files do not belong together (an FSR file made for another
            generator included).
    """
    from reenact_core import engine

    given = [h for h in (generator, encoder, deca, directions, fsr) if h is not None]
    dtypes = {h.dtype for h in given}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    handles = [None if h is None else h.with_dtype(dtype) for h in (generator, encoder, deca, directions, fsr)]
    load_on_device([h for h in handles if h is not None])
    g, e, d, a, f = (None if h is None else h._on_device() for h in handles)
    return engine.ReenactModels(g, e, d, a, torch.device(given[0].patcher.load_device), dtype, f)


def comfy_to_frames(images: torch.Tensor) -> list[np.ndarray]:
    """ComfyUI IMAGE ``[B, H, W, C]`` float in [0, 1] to a list of B ``(H, W, 3)`` float32 arrays in [0, 1]
    (alpha, if any, dropped)."""
    array = images[..., :3].detach().to("cpu", torch.float32).numpy()
    return list(array)


def frames_to_comfy(frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Frames ((H, W, 3) uint8, uint16 or float in [0, 1]; list or stacked array) to a ComfyUI IMAGE:
    ``[B, H, W, 3]`` float32 in [0, 1] on ComfyUI's intermediate device."""
    from reenact_core.faces.images import to_float_rgb

    images = np.stack([to_float_rgb(np.asarray(f)) for f in frames]) if len(frames) else np.zeros((0, 1, 1, 3))
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(mm.intermediate_device())


def masks_to_comfy(masks: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Masks ((H, W) float in [0, 1]; list or stacked array) to a ComfyUI MASK: ``[B, H, W]`` float32 on ComfyUI's
    intermediate device."""
    array = np.stack([np.asarray(m, np.float32) for m in masks]) if len(masks) else np.zeros((0, 1, 1))
    return torch.from_numpy(np.clip(array, 0.0, 1.0).astype(np.float32)).to(mm.intermediate_device())


class Progress:
    """A ComfyUI progress bar plus the interrupt checks the engine's loops take.

    ``should_stop`` is the engine's ``should_stop`` callback (True once the user pressed Cancel); ``check`` raises
    ComfyUI's ``InterruptProcessingException`` then; ``update``/``update_absolute`` move the bar (and, through
    ComfyUI's progress hook, also raise on an interrupt).
    """

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(max(int(total), 1))

    @staticmethod
    def should_stop() -> bool:
        return mm.processing_interrupted()

    @staticmethod
    def check() -> None:
        mm.throw_exception_if_processing_interrupted()

    def update(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def update_absolute(self, value: int, total: int | None = None) -> None:
        self.bar.update_absolute(value, total)


def progress_and_interrupt(total: int) -> Progress:
    """A :class:`Progress` of ``total`` steps."""
    return Progress(total)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turns the engine's ``Interrupted`` (raised when ``should_stop`` answered True) into ComfyUI's
    ``InterruptProcessingException``, so the run ends as interrupted, not as failed."""
    from reenact_core.errors import Interrupted

    try:
        yield
    except Interrupted:
        mm.interrupt_current_processing(False)
        raise mm.InterruptProcessingException() from None
