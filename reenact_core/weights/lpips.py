"""Finding and loading LPIPS, the optional kind used by generator tuning and the training losses."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from ..errors import MissingModelError
from ..files import find_file
from ..models.lpips import ALEXNET_FILE, ALEXNET_URL, LINEAR_FILE, LINEAR_URL, LPIPS, LpipsConfig
from .kinds import kind
from .official import read_lpips_official
from .store import check_state_dict_shapes, load_model


def find_lpips(folders: Iterable[str | Path], device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, *, trainable: bool = False) -> LPIPS | None:
    """LPIPS from the first of ``folders`` holding ``lpips-alex.safetensors`` (a converted model file), else
    from ``alexnet-owt-7be5be79.pth`` and ``alex.pth`` (each looked up in ``folders`` in order, read with
    ``torch.load(weights_only=True)``); None when none of them is present.

    Returns the module in eval mode without gradients (``trainable=False``). Raises MissingModelError when
    only one of the two published files is found, WeightsError for bad files.
    """
    folders = [Path(f) for f in folders]
    k = kind("lpips")
    converted = find_file(k.canonical_file, folders)
    if converted is not None:
        return load_model(converted, "lpips", device, dtype, trainable=trainable).module
    found = {name: find_file(name, folders) for name in (ALEXNET_FILE, LINEAR_FILE)}
    if all(path is None for path in found.values()):
        return None
    for name, url in ((ALEXNET_FILE, ALEXNET_URL), (LINEAR_FILE, LINEAR_URL)):
        if found[name] is None:
            searched = ", ".join(str(f) for f in folders)
            raise MissingModelError(f"missing LPIPS file '{name}' (the other one was found); searched: {searched}. "
                                    f"Download it from {url}")
    state_dict = read_lpips_official(found[ALEXNET_FILE], found[LINEAR_FILE])
    config = LpipsConfig()
    with torch.device("meta"):
        expected = {n: tuple(t.shape) for n, t in k.build(config).state_dict().items()}
    check_state_dict_shapes(f"LPIPS weights {ALEXNET_FILE} + {LINEAR_FILE}", expected,
                            {n: tuple(t.shape) for n, t in state_dict.items()})
    module = k.build(config)
    module.load_state_dict(state_dict, strict=True)
    return k.set_mode(module.to(device=device, dtype=dtype), trainable)
