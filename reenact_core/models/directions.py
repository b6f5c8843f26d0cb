"""The direction matrix A and its normaliser: a pose/expression difference ``delta_p`` → a W+ shift.

Reference spec §1.8 (normalisation), §1.9 (A) and §2.4 (file).

``w_r = w_s + A(delta_p)`` on the first ``num_layers`` W+ rows. The layout is the official ``A_matrix.pt``:
``state_dict = {'linear.weight', 'linear.bias'}`` plus the extras ``learned_directions`` (= ``input_dim``),
``num_layers_shift`` (= ``num_layers``), ``shift_dim`` and ``shift_scale``, held here in ``DirectionsConfig``.

A was trained on Δp normalised with one table of parameter ranges, angle scales and S (spec §1.8), so that
normaliser is part of A's config and is stored with it in every directions file; Δp for an A is always
computed with that A's normaliser (``DirectionsConfig.normaliser``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from reenact_core.errors import WeightsError
from reenact_core.models.config import ModelConfig, check, shape_of
from reenact_core.models.kind import INFERENCE, Converted, ModelKind, OfficialParts
from reenact_core.models.stylegan2 import REFERENCE_SOURCE

NUM_DIRECTIONS = 15  # learned directions of A: 3 angles, jaw, 11 expressions (official `learned_directions`)
SHIFT_SCALE = 6.0  # S of the official A: Δp units per normalised range half-width (`shift_scale`)
ANGLE_SCALES_DEG = (40.0, 20.0, 20.0)  # yaw, pitch, roll degrees that map to S (official `voxceleb_dict`)
# Width of one W+ row when an A file does not record it: the official trainer omits `shift_dim` (spec §5 #12).
DEFAULT_SHIFT_DIM = 512

# The normaliser of the official VoxCeleb A (`A_matrix.pt`): rows 0..14 (min, max) of the official
# `libs/configs/ranges_voxceleb.npy` (float64; StelaBou/stylegan_directions_face_reenactment; spec §1.8): yaw,
# pitch, roll (degrees; informative only, the angles use ANGLE_SCALES_DEG), jaw pose[3] (radians), exp0..exp10.
VOXCELEB_RANGES: tuple[tuple[float, float], ...] = (
    (-46.37108612060547, 45.77767562866211),
    (-12.206389427185059, 29.508052825927734),
    (-20.664846420288086, 23.006832122802734),
    (-0.11169847846031189, 0.19479338824748993),
    (-0.9968752861022949, 2.3540308475494385),
    (-0.9558461308479309, 1.6016768217086792),
    (-0.2513495981693268, 0.6300631761550903),
    (-0.3255189061164856, 1.6557607650756836),
    (-1.8895974159240723, 1.3332788944244385),
    (-1.3506605625152588, 1.2258248329162598),
    (-1.1249886751174927, 1.052120327949524),
    (-1.6779751777648926, 0.9289817810058594),
    (-0.9170559644699097, 1.0866150856018066),
    (-0.7737163305282593, 1.8717907667160034),
    (-1.6655000448226929, 0.8243483901023865),
)
POSE_DIRECTIONS = slice(0, 3)  # Δp coordinates of the head pose (yaw, pitch, roll)
EXPRESSION_DIRECTIONS = slice(3, NUM_DIRECTIONS)  # Δp coordinates of the jaw and expressions


@dataclass(frozen=True)
class Normaliser:
    """How raw pose/expression values become Δp units for one A (spec §1.8).

    Raw values ``(B, 15)``: yaw, pitch, roll in degrees, jaw (radians), 11 expression coefficients. Angles map
    as ``angle · S / scale``; jaw and expressions by the line ``a·x + b`` taking row ``[min, max]`` to ``[−S, S]``.

    Attributes:
        ranges: 15 ``(min, max)`` rows; rows 0..2 (angles) are informative only.
        angle_scales: degrees of yaw, pitch, roll that map to S.
        shift_scale: S.
    """

    ranges: tuple[tuple[float, float], ...] = VOXCELEB_RANGES
    angle_scales: tuple[float, float, float] = ANGLE_SCALES_DEG
    shift_scale: float = SHIFT_SCALE

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", tuple((float(lo), float(hi)) for lo, hi in self.ranges))
        object.__setattr__(self, "angle_scales", tuple(float(s) for s in self.angle_scales))
        if len(self.ranges) != NUM_DIRECTIONS or any(not hi > lo for lo, hi in self.ranges):
            raise ValueError(f"ranges must be {NUM_DIRECTIONS} (min, max) rows with max > min")
        if len(self.angle_scales) != 3 or min(self.angle_scales) <= 0 or not self.shift_scale > 0:
            raise ValueError(f"angle_scales must be 3 positive degrees and S positive, got {self.angle_scales}, "
                             f"{self.shift_scale}")

    def line(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slope ``a = 2S/(max − min)`` and offset ``b = S − a·max`` of rows 3..14, computed in float64 and
        rounded to ``like``'s dtype and device."""
        rows = torch.tensor(self.ranges[EXPRESSION_DIRECTIONS], dtype=torch.float64)
        a = 2 * self.shift_scale / (rows[:, 1] - rows[:, 0])
        b = self.shift_scale - a * rows[:, 1]
        return a.to(like), b.to(like)

    def apply(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw values ``(B, 15)`` → Δp units ``(B, 15)``, in the input's dtype and device."""
        a, b = self.line(raw)
        angles = raw[:, POSE_DIRECTIONS] * self.shift_scale / raw.new_tensor(self.angle_scales)
        return torch.cat([angles, a * raw[:, EXPRESSION_DIRECTIONS] + b], 1)

    def invert(self, n: torch.Tensor) -> torch.Tensor:
        """Δp units ``(B, 15)`` → raw values ``(B, 15)`` (inverse of :meth:`apply`)."""
        a, b = self.line(n)
        angles = n[:, POSE_DIRECTIONS] * n.new_tensor(self.angle_scales) / self.shift_scale
        return torch.cat([angles, (n[:, EXPRESSION_DIRECTIONS] - b) / a], 1)


VOXCELEB = Normaliser()  # the official VoxCeleb A's normaliser


@dataclass(frozen=True)
class DirectionsConfig(ModelConfig):
    """Shape, metadata and normaliser of A; the defaults are the official VoxCeleb ``A_matrix.pt``.

    Args:
        input_dim: number of learned directions k, the length of ``delta_p`` (``learned_directions``).
        num_layers: W+ rows shifted, rows ``0 .. num_layers − 1`` (``num_layers_shift``).
        shift_dim: width of one W+ row (``shift_dim``).
        bias: whether A has a bias (official: True, so ``delta_p = 0`` still shifts).
        shift_scale: S, the range ``[−S, S]`` that ``delta_p`` coordinates are normalised to (``shift_scale``).
        ranges: the ``(min, max)`` table A's Δp was normalised with (see ``Normaliser``), one row per direction.
        angle_scales: degrees of yaw, pitch, roll that map to S.
    """

    input_dim: int = NUM_DIRECTIONS
    num_layers: int = 8
    shift_dim: int = DEFAULT_SHIFT_DIM
    bias: bool = True
    shift_scale: float = SHIFT_SCALE
    ranges: tuple[tuple[float, float], ...] = VOXCELEB_RANGES
    angle_scales: tuple[float, float, float] = ANGLE_SCALES_DEG

    def __post_init__(self) -> None:
        if min(self.input_dim, self.num_layers, self.shift_dim) < 1 or self.shift_scale <= 0:
            raise ValueError(f"dimensions and shift_scale must be positive, got {self}")
        normaliser = self.normaliser   # checks the table
        object.__setattr__(self, "ranges", normaliser.ranges)
        object.__setattr__(self, "angle_scales", normaliser.angle_scales)

    @property
    def normaliser(self) -> Normaliser:
        """The normaliser of Δp for this A."""
        return Normaliser(self.ranges, self.angle_scales, self.shift_scale)


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


# --- model kind ---------------------------------------------------------------------------------------------

def _from_official(parts: OfficialParts) -> Converted:
    """A's architecture from its shapes and A_matrix.pt's scalars (a self-trained file may lack shift_dim);
    the official A gets the VoxCeleb normaliser it was trained with."""
    extras = parts.extras
    if extras.get("w_plus", True) is not True:
        raise WeightsError("w_plus=False (a shift of W, not W+) is not supported")
    config = config_from_state_dict(parts.state_dict, shift_dim=int(extras.get("shift_dim", DEFAULT_SHIFT_DIM)))
    if "num_layers_shift" in extras and int(extras["num_layers_shift"]) != config.num_layers:
        raise WeightsError(f"num_layers_shift={extras['num_layers_shift']} does not match the "
                           f"{config.num_layers * config.shift_dim} outputs of the linear layer")
    if "learned_directions" in extras and int(extras["learned_directions"]) != config.input_dim:
        raise WeightsError(f"learned_directions={extras['learned_directions']} but the linear layer "
                           f"takes {config.input_dim} inputs")
    config = replace(config, shift_scale=float(extras.get("shift_scale", config.shift_scale)),
                     ranges=VOXCELEB.ranges, angle_scales=VOXCELEB.angle_scales)
    return Converted(config, dict(parts.state_dict), metadata={"normaliser": "VoxCeleb (official ranges_voxceleb.npy)"})


def _legacy_notice(config: Mapping) -> str | None:
    if "ranges" in config and "angle_scales" in config:
        return None
    return ("was written before directions files stored their normaliser; using the official VoxCeleb ranges "
            "and angle scales (convert or train it again to store its own)")


KIND = ModelKind(
    name="directions", title="directions matrix A", role=INFERENCE, model_class=DirectionMatrix,
    config_class=DirectionsConfig, canonical_file="directions-voxceleb.safetensors", official_file="A_matrix.pt",
    source=REFERENCE_SOURCE, from_official=_from_official, legacy_notice=_legacy_notice,
    probe_input=lambda config, extras, device, dtype: (torch.zeros(1, config.input_dim, device=device, dtype=dtype),),
)
