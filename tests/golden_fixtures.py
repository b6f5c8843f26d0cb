"""Access to the golden fixture set in ../shared/golden: the manifest, the stored tensors and the weight rule.

The fixtures were made by the official reference code with weights rebuilt from ``manifest["seed"]`` by a
documented rule (golden README, section 1). Tests read every case, seed and shape from the manifest, so they
hold for any fixture set made the same way.
"""
from __future__ import annotations

import json
import math
import os
import re
import zlib
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file

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


def _fill_value(rule: str, r: torch.Tensor, shape: list[int]) -> torch.Tensor:
    if rule == "r":
        return r
    if rule == "100*r":
        return r * 100
    if rule == "0.1*r":
        return r * 0.1
    if rule == "0.03*r":
        return r * 0.03
    if rule == "1+0.1*r":
        return r * 0.1 + 1
    if rule == "|0.1*r|":
        return (r * 0.1).abs()
    if rule == "1+|0.1*r|":
        return (r * 0.1).abs() + 1
    if rule == "0.25+0.05*r":
        return r * 0.05 + 0.25
    if rule == "r/sqrt(fan_in)":
        return r * torch.tensor(1 / math.sqrt(math.prod(shape[1:])), dtype=torch.float32)
    raise ValueError(f"unknown fill rule {rule!r}")


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
        out[key] = _fill_value(rule, r, shape)
    return out


def tolerance(case: str, tensor: str) -> float:
    """Absolute tolerance of one stored tensor (golden README, section 5)."""
    return TOLERANCES[case_kind(case)][tensor]


def case_kind(case: str) -> str:
    return "stylegan2" if case.startswith("stylegan2_") else case


# Golden README section 5, "suggested abs tol". Keys are the stored tensor names; 0.0 means exact.
TOLERANCES: dict[str, dict[str, float]] = {
    "stylegan2": {"z": 0.0, "wplus": 0.0, "w_from_z": 5e-5, "truncation_latent": 5e-5,
                  "image": 1e-4, "image_truncated_0.7": 1e-4},
    "e4e_irse50_256": {"image": 0.0, "wplus": 1e-5},
    "deca_crop": {"crop256": 0.0, "kpt68": 0.0, "theta": 1e-4, "image_224": 5e-5},
    "deca_encoder": {"image": 0.0, "params": 1e-5, "jaw": 1e-5, "exp11": 1e-5, "pose_euler_deg": 1e-4},
    "direction_matrix": {"delta_p": 0.0, "shift": 1e-5},
    "shift_vector_voxceleb": {"pose_source": 0.0, "pose_target": 0.0, "exp_source": 0.0, "exp_target": 0.0,
                              "angles_source": 1e-4, "angles_target": 1e-4, "delta_p": 2e-5},
    "reenact_pipeline": {"source_crop": 0.0, "target_crops": 0.0, "source_kpt68": 0.0, "target_kpt68": 0.0,
                         "truncation_latent": 0.0, "w_s": 1e-5, "theta_source": 1e-4, "theta_target": 1e-4,
                         "p_s": 1e-5, "p_t": 1e-5, "angles_s": 2e-4, "angles_t": 2e-4, "delta_p": 1e-4,
                         "shift": 2e-5, "w_r": 2e-5, "w_r_truncated": 2e-5, "image": 1e-4},
}


class Comparer:
    """Compares computed tensors with a case's stored ones and fails if a stored tensor is left unchecked."""

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
        tol = self.tolerances[name] if self.tolerances is not None else tolerance(self.case, name)
        if tol == 0.0:
            assert torch.equal(actual.to(expected.dtype), expected), f"{self.case}.{name}: not bit-exact"
        else:
            err = (actual.double() - expected.double()).abs().max().item()
            assert err <= tol, f"{self.case}.{name}: max |err| {err:.3g} > tol {tol:.3g}"
        self.checked.add(name)

    def assert_all_checked(self) -> None:
        left = set(self.stored) - self.checked
        assert not left, f"{self.case}: stored tensors left uncompared: {sorted(left)}"


# The container key named in a case's `checkpoint_layout` → our model kind.
LAYOUT_KINDS = (("g_ema", "stylegan2"), ("['e']", "e4e"), ("E_flame", "deca"), ("A_matrix", "directions"))


def kind_of(case: str) -> str:
    layout = manifest()["cases"][case]["checkpoint_layout"]
    for needle, kind in LAYOUT_KINDS:
        if needle in layout:
            return kind
    raise AssertionError(f"{case}: unknown checkpoint layout {layout!r}")


def layout_extras(case: str) -> dict:
    """Scalars written beside the state dict, parsed from e.g. 'A_matrix.pt: dict(A_matrix=state_dict, k=v, ...)'."""
    found = re.search(r"dict\((.*)\)", manifest()["cases"][case]["checkpoint_layout"])
    extras = {}
    for item in (found.group(1).split(",") if found else []):
        key, _, value = (s.strip() for s in item.partition("="))
        if value and value != "state_dict":
            extras[key] = {"True": True, "False": False}.get(value) if value in ("True", "False") else \
                (float(value) if "." in value else int(value))
    return extras
