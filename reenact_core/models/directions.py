"""The direction matrix A: a pose/expression difference ``delta_p`` → a W+ shift (spec §1.9, §2.4).

``w_r = w_s + A(delta_p)`` on the first ``num_layers`` W+ rows. The layout is the official ``A_matrix.pt``:
``state_dict = {'linear.weight', 'linear.bias'}`` plus the extras ``learned_directions`` (= ``input_dim``),
``num_layers_shift`` (= ``num_layers``), ``shift_dim`` and ``shift_scale``, held here in ``DirectionsConfig``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from reenact_core.errors import WeightsError
from reenact_core.models.config import ModelConfig, check, shape_of
from reenact_core.params import NUM_DIRECTIONS, SHIFT_SCALE

# Width of one W+ row when an A file does not record it: the official trainer omits `shift_dim` (spec §5 #12).
DEFAULT_SHIFT_DIM = 512


@dataclass(frozen=True)
class DirectionsConfig(ModelConfig):
    """Shape and metadata of A; the defaults are the official VoxCeleb ``A_matrix.pt``.

    Args:
        input_dim: number of learned directions k, the length of ``delta_p`` (``learned_directions``).
        num_layers: W+ rows shifted, rows ``0 .. num_layers − 1`` (``num_layers_shift``).
        shift_dim: width of one W+ row (``shift_dim``).
        bias: whether A has a bias (official: True, so ``delta_p = 0`` still shifts).
        shift_scale: S, the range ``[−S, S]`` that ``delta_p`` coordinates are normalised to (``shift_scale``).
    """

    input_dim: int = NUM_DIRECTIONS
    num_layers: int = 8
    shift_dim: int = DEFAULT_SHIFT_DIM
    bias: bool = True
    shift_scale: float = SHIFT_SCALE

    def __post_init__(self) -> None:
        if min(self.input_dim, self.num_layers, self.shift_dim) < 1 or self.shift_scale <= 0:
            raise ValueError(f"dimensions and shift_scale must be positive, got {self}")


class DirectionMatrix(nn.Module):
    """A as one linear map: ``delta_p (B, input_dim)`` → ``shift (B, num_layers, shift_dim)``.

    Output index r of the linear layer is W+ row ``r // shift_dim``, channel ``r % shift_dim``.
    """

    def __init__(self, config: DirectionsConfig = DirectionsConfig()):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.input_dim, config.num_layers * config.shift_dim, bias=config.bias)

    def forward(self, delta_p: torch.Tensor) -> torch.Tensor:
        c = self.config
        return self.linear(delta_p.reshape(-1, c.input_dim)).view(-1, c.num_layers, c.shift_dim)


def apply_shift(w_plus: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shifted code ``w_plus`` with ``shift`` added to rows ``0 .. L − 1`` (official ``w[:, :L] += shift``).

    Args:
        w_plus: ``(B, n, D)`` W+ codes; not modified.
        shift: ``(B, L, D)`` or ``(1, L, D)`` shift from ``DirectionMatrix``, ``L <= n``.

    Returns:
        ``(B, n, D)`` new tensor; rows ``L ..`` are copies of the input's.
    """
    if shift.ndim != 3 or w_plus.ndim != 3 or shift.shape[1] > w_plus.shape[1] or shift.shape[2] != w_plus.shape[2]:
        raise WeightsError(
            f"direction shift {tuple(shift.shape)} does not fit W+ codes {tuple(w_plus.shape)}: "
            "A and the generator disagree on rows or width"
        )
    rows = shift.shape[1]
    return torch.cat([w_plus[:, :rows] + shift, w_plus[:, rows:]], dim=1)


def config_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], shift_dim: int = DEFAULT_SHIFT_DIM
) -> DirectionsConfig:
    """Shape of an official-layout A (``A_matrix.pt['A_matrix']``) whose W+ rows are ``shift_dim`` wide.

    Pass the file's ``shift_dim`` extra when it has one; ``shift_scale`` keeps its default (set it from the
    file's extras). Raises WeightsError if ``linear.weight`` is missing or its outputs do not split into rows.
    """
    name = "direction matrix A"
    out_dim, input_dim = shape_of(state_dict, "linear.weight", name)
    check(out_dim % shift_dim == 0, name, f"{out_dim} outputs is not a whole number of {shift_dim}-wide W+ rows")
    try:
        config = DirectionsConfig(
            input_dim=input_dim,
            num_layers=out_dim // shift_dim,
            shift_dim=shift_dim,
            bias="linear.bias" in state_dict,
        )
    except ValueError as e:
        raise WeightsError(f"{name} weights: inconsistent architecture ({e})") from None
    return config
