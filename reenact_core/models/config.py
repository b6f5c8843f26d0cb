"""What every model config shares: a JSON round trip, and the key/shape reads that infer it from a state dict.

Inference reads only the keys it needs; the complete key and shape check of a file is the loader's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import torch

from reenact_core.errors import WeightsError

C = TypeVar("C", bound="ModelConfig")


class ModelConfig:
    """Mixin for frozen dataclass configs: ``to_dict`` gives JSON-ready values, ``from_dict`` reads them back."""

    def to_dict(self) -> dict[str, Any]:
        """Field values with tuples as lists, so ``json.dumps`` and ``from_dict`` round-trip them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Config from ``to_dict`` output; absent fields take their defaults. Raises WeightsError if invalid."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise WeightsError(f"{cls.__name__}: unknown config fields {unknown}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{cls.__name__}: invalid config {dict(values)}: {e}") from None


def shape_of(state_dict: Mapping[str, torch.Tensor], key: str, model: str) -> tuple[int, ...]:
    """Shape of ``state_dict[key]``; raises WeightsError naming the model if the key is missing."""
    if key not in state_dict:
        raise WeightsError(f"{model} weights lack the key '{key}': another kind of file, or a truncated one")
    return tuple(state_dict[key].shape)


def count_indexed(state_dict: Mapping[str, torch.Tensor], prefix: str, suffix: str, step: int = 1) -> int:
    """Number of consecutive indices i = 0, step, 2·step, ... for which ``f"{prefix}{i}{suffix}"`` is a key."""
    n = 0
    while f"{prefix}{n * step}{suffix}" in state_dict:
        n += 1
    return n


def check(condition: bool, model: str, message: str) -> None:
    """Raises WeightsError ``"{model} weights: {message}"`` unless ``condition`` holds."""
    if not condition:
        raise WeightsError(f"{model} weights: {message}")

