"""The prepared-source file: one ``.safetensors`` file holding a :class:`PreparedSource` (format
``latent-reenact-source`` version 1; tensors as float32, the image as is, the crop transform as JSON metadata).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..faces.reference_crop import CropTransform
from ..files import read_safetensors, write_safetensors
from .source import PreparedSource
from .tuning import TunedLayers

SOURCE_FORMAT = "latent-reenact-source"
SOURCE_FORMAT_VERSION = "1"
_TUNED_PREFIX = "tuned."


def save_source(source: PreparedSource, path: str | Path) -> Path:
    """Writes a prepared source to one ``.safetensors`` file (tensors as float32 on the CPU; the image as is),
    atomically, with mode ``0666 & ~umask``."""
    tensors = {
        "image": torch.from_numpy(np.array(source.image)),   # a writable copy (inputs may be read-only views)
        "crop": torch.from_numpy(np.array(source.crop)),
        "landmarks": torch.from_numpy(np.array(source.landmarks, dtype=np.float32)),
        "w_plus": source.w_plus.detach().float().cpu().contiguous(),
        "mean_latent": source.mean_latent.detach().float().cpu().contiguous(),
        "deca_codes": source.deca_codes.detach().float().cpu().contiguous(),
    }
    if source.tuned is not None:
        for name, value in source.tuned.state_dict().items():
            tensors[_TUNED_PREFIX + name] = value.float()
    t = source.transform
    meta = {"format": SOURCE_FORMAT, "format_version": SOURCE_FORMAT_VERSION,
            "crop_transform": json.dumps({"box": list(t.box), "frame_hw": list(t.frame_hw), "size": t.size})}
    return write_safetensors(path, tensors, meta)


def load_source(path: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> PreparedSource:
    """Reads a file written by :func:`save_source`, latents and tuned layers on ``device`` in ``dtype``.

    Raises:
        InputError: the file is missing, unreadable or not a prepared source.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prepared source not found: {path}")
    tensors, meta = read_safetensors(path, error=InputError)
    if meta.get("format") != SOURCE_FORMAT or meta.get("format_version") != SOURCE_FORMAT_VERSION:
        raise InputError(f"{path.name}: not a prepared source (format {meta.get('format')!r} "
                         f"version {meta.get('format_version')!r})")
    required = ("image", "crop", "landmarks", "w_plus", "mean_latent", "deca_codes")
    absent = [k for k in required if k not in tensors]
    if absent or "crop_transform" not in meta:
        raise InputError(f"{path.name}: incomplete prepared source, lacks {absent or ['crop_transform']}")
    t = json.loads(meta["crop_transform"])
    tuned = {k[len(_TUNED_PREFIX):]: v for k, v in tensors.items() if k.startswith(_TUNED_PREFIX)}
    source = PreparedSource(
        image=tensors["image"].numpy(), crop=tensors["crop"].numpy(), landmarks=tensors["landmarks"].numpy(),
        transform=CropTransform(tuple(t["box"]), tuple(t["frame_hw"]), t["size"]),
        w_plus=tensors["w_plus"], mean_latent=tensors["mean_latent"], deca_codes=tensors["deca_codes"],
        tuned=TunedLayers.from_state_dict(tuned) if tuned else None)
    return source.to(device, dtype)
