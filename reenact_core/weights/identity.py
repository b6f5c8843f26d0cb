"""Which generator a refinement encoder (FSR) file was made for: the generator's fingerprint, stored in the FSR
file's metadata and compared with the generator in use."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from ..errors import WeightsError
from ..files import read_safetensors
from ..models.fsr import check_fits, generator_identity
from .store import LoadedModel

GENERATOR_IDENTITY_KEY = "generator_identity"   # FSR file metadata: generator_identity() of its base generator


def identity_of(generator: LoadedModel) -> str:
    """``generator_identity`` of a loaded generator, from the tensors of its file as stored (so the same in every
    precision it is loaded in); a generator built in memory, without a file, from its module's tensors."""
    path = Path(generator.path)
    if not path.is_file():
        return generator_identity(generator.module.state_dict())
    stat = path.stat()
    return _file_identity(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _file_identity(path: str, mtime_ns: int, size: int) -> str:
    return generator_identity(read_safetensors(path)[0])


def check_made_for(fsr: LoadedModel, generator: LoadedModel) -> None:
    """Raises WeightsError (one line) unless ``fsr`` was made for ``generator``: its output fits the generator's
    feature k and the generator identity in its metadata is this generator's."""
    check_fits(fsr.config, generator.config, Path(fsr.path).name)
    made_for = fsr.metadata.get(GENERATOR_IDENTITY_KEY)
    if not made_for:
        raise WeightsError(f"{Path(fsr.path).name}: no '{GENERATOR_IDENTITY_KEY}' in its metadata, so the generator "
                           f"it was trained for is unknown")
    used = identity_of(generator)
    if made_for != used:
        raise WeightsError(f"{Path(fsr.path).name} was made for the generator with identity {made_for}, not "
                           f"{Path(generator.path).name} ({used}): use the generator it was trained with, or no FSR")


def with_identity(metadata: dict, generator_tensors: dict[str, torch.Tensor]) -> dict:
    """``metadata`` plus the identity of the generator whose state dict is ``generator_tensors``."""
    return {**metadata, GENERATOR_IDENTITY_KEY: generator_identity(generator_tensors)}
