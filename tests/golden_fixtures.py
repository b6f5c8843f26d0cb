"""Access to the golden fixture set in ../shared/golden: the manifest, the stored tensors and the weight rule.

The fixtures were made by the official reference code with weights rebuilt from ``manifest["seed"]`` by a
documented rule (golden README, section 1). Tests read every case, seed and shape from the manifest, so they
hold for any fixture set made the same way; the manifest's prose fields are read by ``manifest_prose`` only.
"""
from __future__ import annotations

import json
import os
import zlib
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file

from manifest_prose import Layout, checkpoint_layout, fill_rule, tolerance

SHARED = Path(os.environ.get("REENACT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
GOLDEN = SHARED / "golden"
TRAINING = GOLDEN / "training"     # training-side set: FLAME, Δp / ground truth, losses (its own manifest)
MEDIA = SHARED / "media"


@lru_cache(maxsize=None)
def manifest(folder: Path = GOLDEN) -> dict:
    with open(folder / "manifest.json", encoding="utf-8") as f:
        return json.load(f)


def cases(prefix: str = "") -> list[str]:
    """Names of the manifest's cases that start with ``prefix``, in manifest order."""
    return [name for name in manifest()["cases"] if name.startswith(prefix)]


def load_case(name: str, folder: Path = GOLDEN) -> dict[str, torch.Tensor]:
    """Every tensor stored for one case, copied (safetensors hands out unaligned memory)."""
    return {k: v.clone() for k, v in load_file(str(folder / f"{name}.safetensors")).items()}


def filled_state_dict(case: str, folder: Path = GOLDEN) -> dict[str, torch.Tensor]:
    """The official-layout state dict of a model case, filled by the manifest's weight rule.

    ``keep`` entries get the value the official constructor makes: the [1,3,3,1] blur/upsample kernels
    (outer product / 64 * 4), int64 zeros for ``num_batches_tracked`` and LPIPS's input shift/scale.
    """
    from reenact_core.models.lpips import SCALE, SHIFT

    spec = manifest(folder)["cases"][case]
    seed = manifest(folder)["seed"]
    dtypes = spec.get("state_dict_dtypes_not_float32", {})
    out: dict[str, torch.Tensor] = {}
    for key, shape in spec["state_dict_shapes"].items():
        rule = spec["fill"][key]
        if rule == "keep":
            if key.endswith("num_batches_tracked"):
                out[key] = torch.zeros(shape, dtype=getattr(torch, dtypes.get(key, "int64")))
            elif key.endswith(".kernel"):
                k = torch.tensor([1.0, 3.0, 3.0, 1.0])
                out[key] = torch.outer(k, k) / 64 * 4
            elif key in ("net.mean", "net.std"):
                out[key] = torch.tensor(SHIFT if key == "net.mean" else SCALE, dtype=torch.float32).view(shape)
            else:
                raise ValueError(f"no constructor value known for kept key {key}")
            continue
        g = torch.Generator()
        g.manual_seed(seed + zlib.crc32(key.encode("utf-8")))
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        out[key] = fill_rule(rule)(r, shape)
    return out


class Comparer:
    """Compares computed tensors with a case's stored ones and fails if a stored tensor is left unchecked.

    Tolerances: ``tolerances`` (a case's own table, as the training manifest gives) or else by the tensor's role
    (:func:`manifest_prose.tolerance`).
    """

    def __init__(self, case: str, stored: dict[str, torch.Tensor], tolerances: dict[str, float] | None = None):
        self.case, self.stored, self.checked = case, stored, set()
        self.tolerances = tolerances

    def mark_input(self, *names: str) -> None:
        """Names of stored tensors used as inputs (they are compared by being used)."""
        self.checked.update(names)

    def check(self, name: str, actual: torch.Tensor) -> None:
        expected = self.stored[name]
        actual = actual.detach().to("cpu")
        assert tuple(actual.shape) == tuple(expected.shape), f"{self.case}.{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        tol = self.tolerances[name] if self.tolerances is not None else tolerance(name)
        if tol == 0.0:
            assert torch.equal(actual.to(expected.dtype), expected), f"{self.case}.{name}: not bit-exact"
        else:
            err = (actual.double() - expected.double()).abs().max().item()
            assert err <= tol, f"{self.case}.{name}: max |err| {err:.3g} > tol {tol:.3g}"
        self.checked.add(name)

    def assert_all_checked(self) -> None:
        left = set(self.stored) - self.checked
        assert not left, f"{self.case}: stored tensors left uncompared: {sorted(left)}"


def layout(case: str) -> Layout:
    """Our model kind of a model case and the scalars stored beside its state dict (its ``checkpoint_layout``)."""
    return checkpoint_layout(manifest()["cases"][case]["checkpoint_layout"])
