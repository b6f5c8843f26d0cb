"""Training configurations: the reference hyper-parameters as defaults, overridden by a JSON file or ``KEY=VALUE``.

Reference spec §3.2 (``libs/configs/config_arguments.py``) gives the directions defaults; ``max_iter`` counts
optimiser steps for every method (the official trainer counts epochs for real/paired, spec §5 #22).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InputError
from ..models.directions import (ANGLE_SCALES_DEG, NUM_DIRECTIONS, SHIFT_SCALE, VOXCELEB_RANGES, DirectionsConfig,
                                 Normaliser)

C = TypeVar("C", bound="TrainConfig")

CONFIG_FILE = "train-config.json"   # written beside the checkpoints
BATCH_NORM_MODES = ("frozen", "batch", "sync")   # a trained encoder's BatchNorm: fixed, per-rank or synchronised
HASH_CHUNK = 1 << 20


def check_batch_norm(mode: str, *, distributed: bool = False, device_type: str = "cpu") -> bool:
    """Checks a trained encoder's BatchNorm mode (one of ``BATCH_NORM_MODES``); returns whether its layers become
    SyncBatchNorm (``sync`` under DDP).

    Raises:
        InputError: an unknown mode, or ``sync`` under DDP on a device other than CUDA.
    """
    if mode not in BATCH_NORM_MODES:
        raise InputError(f"batch_norm must be one of {', '.join(BATCH_NORM_MODES)}, got {mode!r}")
    if mode == "sync" and distributed and device_type != "cuda":
        raise InputError("batch_norm=sync needs CUDA devices: use batch_norm=batch or frozen on this device")
    return mode == "sync" and distributed


@dataclass(frozen=True)
class TrainConfig:
    """What every trainer shares: optimisation, cadence, randomness and data loading.

    Args:
        seed: every random draw is a function of (seed, step, global sample index).
        batch_size: the global batch, over all ranks (official 12).
        max_iter: optimiser steps to run (official 100 000).
        lr: Adam's learning rate (official 1e-4).
        weight_decay: Adam's L2 weight decay (official 5e-4).
        log_every: steps between log records (official 10).
        eval_every: steps between validations (official 1000).
        save_every: steps between checkpoints (official 1000).
        keep_last: periodic checkpoints kept besides the best one.
        num_workers: DataLoader worker processes per rank (they hold no random state).
        test_batch_size: validation batch per rank (official 2).
        validation_samples: number of fixed validation pairs (official 100).
    """

    seed: int = 0
    batch_size: int = 12
    max_iter: int = 100_000
    lr: float = 1e-4
    weight_decay: float = 5e-4
    log_every: int = 10
    eval_every: int = 1000
    save_every: int = 1000
    keep_last: int = 3
    num_workers: int = 1
    test_batch_size: int = 2
    validation_samples: int = 100

    # Fields a resumed run may change; any other difference is refused.
    RESUMABLE_CHANGES = ("max_iter", "log_every", "eval_every", "save_every", "keep_last", "num_workers")

    def __post_init__(self) -> None:
        positive = ("batch_size", "max_iter", "log_every", "eval_every", "save_every", "keep_last",
                    "test_batch_size", "validation_samples")
        bad = [f"{n}={getattr(self, n)}" for n in positive if getattr(self, n) < 1]
        if bad or self.num_workers < 0 or self.lr <= 0 or self.weight_decay < 0:
            raise InputError(f"invalid training settings: {', '.join(bad) or self}; counts must be ≥ 1, "
                             "num_workers ≥ 0, lr > 0, weight_decay ≥ 0")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Config from ``to_dict`` output or a user's overrides; InputError names unknown or mistyped keys."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise InputError(f"unknown training settings {unknown}; known: {', '.join(sorted(fields))}")
        converted = {k: _convert(k, fields[k].default, v) for k, v in values.items()}
        return cls(**converted)

    def with_overrides(self: C, overrides: Mapping[str, Any]) -> C:
        return type(self).from_dict({**self.to_dict(), **overrides})

    def resume_conflicts(self, saved: Mapping[str, Any]) -> list[str]:
        """Settings that differ from a checkpoint's config and may not change on resume."""
        mine = self.to_dict()
        return sorted(k for k in set(mine) | set(saved)
                      if k not in self.RESUMABLE_CHANGES and mine.get(k) != saved.get(k))


def _convert(name: str, default: Any, value: Any) -> Any:
    """``value`` (JSON or a ``KEY=VALUE`` string) as the type of the field's default."""
    if isinstance(value, str) and not isinstance(default, str) and default is not None:
        if isinstance(default, tuple) and not value.lstrip().startswith("["):
            value = f"[{value}]"                      # 40,20,20
        try:
            value = json.loads(value.lower() if isinstance(default, bool) else value)
        except json.JSONDecodeError:
            raise InputError(f"setting {name}: {value!r} is not a {type(default).__name__}") from None
    kind = type(default)
    if default is None or isinstance(value, kind) or (kind is float and isinstance(value, int)
                                                      and not isinstance(value, bool)):
        return tuple(value) if isinstance(value, list) else (float(value) if kind is float else value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    raise InputError(f"setting {name} must be a {kind.__name__}, got {value!r}")


@dataclass(frozen=True)
class DirectionsTrainConfig(TrainConfig):
    """Training of A (reference spec §3). Defaults are the official ones unless noted.

    Args:
        method: ``synthetic`` (random z sources and targets), ``real`` (prepared real sources, synthetic
            targets), ``real_synthetic`` (half of each source kind) or ``paired`` (two frames of one video).
        num_layers_shift: W+ rows A shifts, rows 0 .. n−1 (official 8 of 14; must not exceed G's rows).
        bias: A has a bias (official True; False makes Δp = 0 an exact identity).
        init_std: std of A's initial weight (official N(0, 0.03)); the bias keeps PyTorch's default init.
        shift_scale: S, normalised Δp coordinates span [−S, S].
        ranges: the (min, max) table of the normaliser: ``voxceleb`` (the official one), or a file of at least
            15 rows × 2 (``.npy`` as the official ``ranges_*.npy``, or ``.json``) from ``dataset ranges``.
        angle_scales: degrees of yaw, pitch, roll that map to S.
        disentanglement_50: the second half of the global batch moves one random direction only (§3.4).
        truncation: ψ toward the generator's mean latent.
        lambda_*: weight of that loss term (spec §3.6; pixel and w_reg, L1 of W+ codes, only for ``paired``).
        legacy_255: the reference's LPIPS and pixel L1 on 0..255 images in paired training (spec §5 #14).
        reference_euler: the reference's Euler round trip in the single-angle ground truth.
        measure_crop: DECA on generated images through the ``canonical`` crop box, or ``landmarks`` per image
            (falling back to the canonical box without a face).
        data: prepared training data folder (real, real_synthetic, paired).
        validation_data: prepared folder of validation frames (default: ``data``; synthetic uses fixed z).
        init_directions: start from this A (a directions ``.safetensors`` or a training checkpoint), e.g. the
            previous stage's (synthetic → real_synthetic → paired); its shape must match.
    """

    method: str = "synthetic"
    num_layers_shift: int = 8
    bias: bool = True
    init_std: float = 0.03
    shift_scale: float = SHIFT_SCALE
    ranges: str = "voxceleb"
    angle_scales: tuple = ANGLE_SCALES_DEG
    disentanglement_50: bool = True
    truncation: float = 0.7
    lambda_identity: float = 10.0
    lambda_perceptual: float = 10.0
    lambda_pixel: float = 1.0
    lambda_shape: float = 1.0
    lambda_mouth: float = 1.0
    lambda_eye: float = 1.0
    lambda_w_reg: float = 0.0
    legacy_255: bool = False
    reference_euler: bool = False
    measure_crop: str = "canonical"
    data: str = ""
    validation_data: str = ""
    init_directions: str = ""

    METHODS = ("synthetic", "real", "real_synthetic", "paired")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in self.METHODS:
            raise InputError(f"unknown training method {self.method!r}; choose one of {', '.join(self.METHODS)}")
        if self.measure_crop not in ("canonical", "landmarks"):
            raise InputError(f"measure_crop must be 'canonical' or 'landmarks', got {self.measure_crop!r}")
        self.normaliser                     # checks ranges, angle_scales and shift_scale
        if self.num_layers_shift < 1 or not 0 < self.truncation <= 1:
            raise InputError(f"num_layers_shift must be ≥ 1 and truncation in (0, 1], got "
                             f"{self.num_layers_shift}, {self.truncation}")
        if self.method != "synthetic" and not self.data:
            raise InputError(f"method {self.method} needs prepared data: set data=FOLDER (see `dataset prepare`)")

    @property
    def learned_directions(self) -> int:
        return NUM_DIRECTIONS

    @property
    def normaliser(self) -> Normaliser:
        """Δp's normaliser: the ranges table, the angle scales and S of this config."""
        try:
            return Normaliser(read_ranges(self.ranges), self.angle_scales, self.shift_scale)
        except ValueError as exc:
            raise InputError(f"invalid normaliser settings: {exc}") from None

    def directions_config(self, style_dim: int) -> DirectionsConfig:
        """The architecture and normaliser of the A this config trains, for W+ rows ``style_dim`` wide."""
        n = self.normaliser
        return DirectionsConfig(input_dim=NUM_DIRECTIONS, num_layers=self.num_layers_shift, shift_dim=style_dim,
                                bias=self.bias, shift_scale=n.shift_scale, ranges=n.ranges,
                                angle_scales=n.angle_scales)

    def check_world(self, world_size: int) -> None:
        """Refuses a global batch that does not split evenly (and in even halves) over ``world_size`` ranks."""
        even = self.disentanglement_50 or self.method == "real_synthetic"
        unit = 2 * world_size if even else world_size
        if self.batch_size % unit:
            why = " (disentanglement_50 and real_synthetic split every rank's batch in halves)" if even else ""
            raise InputError(f"batch_size {self.batch_size} must be a multiple of {unit} for {world_size} "
                             f"rank(s){why}")


BUILT_IN_RANGES = {"voxceleb": VOXCELEB_RANGES}


def read_ranges(name_or_file: str) -> tuple[tuple[float, float], ...]:
    """The 15 (min, max) rows of a built-in table or of a file's first 15 rows (``.npy`` or ``.json``)."""
    if name_or_file in BUILT_IN_RANGES:
        return BUILT_IN_RANGES[name_or_file]
    path = Path(name_or_file)
    try:
        if path.suffix == ".npy":
            import numpy as np
            rows = np.load(path, allow_pickle=False).tolist()
        else:
            rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"ranges {name_or_file!r}: neither {', '.join(BUILT_IN_RANGES)} nor a readable ranges "
                         f"file ({exc})") from None
    if not isinstance(rows, list) or len(rows) < NUM_DIRECTIONS or any(
            not isinstance(r, list) or len(r) != 2 for r in rows[:NUM_DIRECTIONS]):
        raise InputError(f"ranges file {path} must hold at least {NUM_DIRECTIONS} (min, max) rows")
    return tuple((float(lo), float(hi)) for lo, hi in rows[:NUM_DIRECTIONS])


def field_help(cls: type) -> dict[str, str]:
    """Each field's description from the ``Args:`` sections of ``cls``'s docstrings (``a, b:`` and ``prefix_*:``
    entries included), so options are documented once."""
    texts: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        current = None
        for line in (klass.__doc__ or "").splitlines():
            head, sep, rest = line.strip().partition(": ")
            names = [n.strip() for n in head.split(",")]
            if sep and line.startswith(" " * 8) and not line.startswith(" " * 12) and all(
                    n.replace("*", "x").isidentifier() for n in names):
                current = names
                for n in names:
                    texts[n] = rest
            elif current and line.startswith(" " * 12):
                for n in current:
                    texts[n] += " " + line.strip()
            else:
                current = None
    fields = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for name in fields:
        pattern = next((k for k in texts if k.endswith("*") and name.startswith(k[:-1])), None)
        out[name] = texts.get(name) or (texts[pattern] if pattern else "")
    return out


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a JSON object file (a saved ``train-config.json``'s ``config`` entry works too)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the training config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"training config {path} must hold a JSON object of settings")
    return data.get("config", data) if "weights" in data else data


def write_config_file(folder: str | Path, config: TrainConfig, weight_files: Mapping[str, str | Path]) -> Path:
    """``train-config.json`` in ``folder``: the config, and the path and SHA-256 of every weight file used."""
    weights = {role: {"path": str(p), "sha256": file_sha256(p)} for role, p in sorted(weight_files.items())}
    from ..files import write_text

    return write_text(Path(folder) / CONFIG_FILE,
                      json.dumps({"config": config.to_dict(), "weights": weights}, indent=2))
