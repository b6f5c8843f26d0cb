"""The four networks of the method (and the optional FSR encoder), loaded together and checked against each other.

E (e4e) inverts a 256-px crop to W+, DECA's E_flame estimates pose and expression, A maps their difference Δp
to a W+ shift and G (StyleGAN2) renders the shifted code (reference spec §1.12).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MissingModelError, WeightsError
from ..faces.reference_crop import CROP_SIZE
from ..models.deca import N_CODES
from ..models.fsr import FeatureRefiner
from ..params import NUM_DIRECTIONS, Normaliser
from ..weights import (INFERENCE, LoadedModel, find_model_file, has_random_weights, inspect_model_file, kind_names,
                       load_model)
from ..weights.identity import check_made_for
from .pairing import warn_if_mismatched


@dataclass
class ReenactModels:
    """G, e4e, DECA and A on one device (see :func:`load_reenact_models`).

    The loaded set that a session, source preparation and editing draw on; each step takes only the networks it
    runs (:func:`~reenact_core.engine.estimate_codes` DECA, :class:`~reenact_core.engine.DriverMotion` A's
    normaliser, :func:`~reenact_core.engine.render` A, G and E_F). A set used for only some steps may leave the
    other networks None: preparing a source runs G, e4e and DECA.

    Attributes:
        generator: StyleGAN2 G; its ``mean_latent`` (1, style_dim) is the truncation centre w̄.
        e4e: the W+ encoder, 256-px crops in [-1, 1] → (B, n_latent, style_dim).
        deca: DECA's E_flame, 224-px crops in [0, 1] → (B, 236) codes.
        directions: A, Δp (B, 15) → shift (B, L, style_dim) of W+ rows 0..L−1.
        device, dtype: where the networks run, and the float type of G, A and FSR; e4e and DECA may run in
            their own (their module's dtype; their outputs are cast to ``dtype`` and float32 codes).
        fsr: the optional refinement encoder E_F (``reenact_core.models.fsr``), made for ``generator``; None
            renders without refinement.
    """

    generator: LoadedModel | None
    e4e: LoadedModel | None
    deca: LoadedModel | None
    directions: LoadedModel | None
    device: torch.device
    dtype: torch.dtype
    fsr: LoadedModel | None = None

    def __post_init__(self) -> None:
        check_compatible(self)
        warn_if_mismatched(self.e4e, self.directions)

    @property
    def mean_latent(self) -> torch.Tensor:
        """w̄, the truncation centre stored with G: (1, style_dim) on ``device`` in ``dtype``."""
        if self.generator is None:
            raise WeightsError("this step needs the StyleGAN2 generator (its mean latent), none was given")
        return self.generator.mean_latent

    @property
    def shift_scale(self) -> float:
        """S of A: Δp coordinates span [−S, S] over the training ranges."""
        return self.normaliser.shift_scale

    @property
    def normaliser(self) -> Normaliser:
        """A's normaliser (ranges, angle scales, S), stored in its file: every Δp for this A is made with it."""
        if self.directions is None:
            raise WeightsError("this step needs the directions model A (its scale S), none was given")
        return self.directions.config.normaliser

    @property
    def refiner(self) -> FeatureRefiner | None:
        """E_F's module, or None when no refinement encoder was given."""
        return None if self.fsr is None else self.fsr.module


def check_compatible(models: ReenactModels) -> None:
    """Raises WeightsError (one line) if the networks given cannot work together (W+ rows or widths differ)."""
    g, e, a, d = (None if m is None else m.config
                  for m in (models.generator, models.e4e, models.directions, models.deca))
    problems = []
    if e is not None and g is not None and (e.n_styles, e.style_dim) != (g.n_latent, g.style_dim):
        problems.append(f"e4e predicts {e.n_styles}×{e.style_dim} W+ codes, G takes {g.n_latent}×{g.style_dim}")
    if e is not None and e.input_size != CROP_SIZE:
        problems.append(f"e4e takes {e.input_size}-px images, the face crops are {CROP_SIZE} px")
    if a is not None and g is not None and (a.shift_dim != g.style_dim or a.num_layers > g.n_latent):
        problems.append(f"A shifts {a.num_layers} rows of width {a.shift_dim}, G has {g.n_latent} of width "
                        f"{g.style_dim}")
    if a is not None and a.input_dim != NUM_DIRECTIONS:
        problems.append(f"A takes {a.input_dim} directions, the method uses {NUM_DIRECTIONS}")
    if d is not None and d.out_dim != N_CODES:
        problems.append(f"DECA predicts {d.out_dim} codes, not the {N_CODES} of E_flame")
    if problems:
        raise WeightsError("the model files do not belong together: " + "; ".join(problems))
    if models.fsr is not None:
        if models.generator is None:
            raise WeightsError("the FSR refinement encoder needs the generator it was made for, none was given")
        check_made_for(models.fsr, models.generator)


def find_fsr(choice: str | Path, folders: Iterable[str | Path]) -> tuple[Path | None, str | None]:
    """The FSR file a ``--fsr`` choice names, and what to tell the user (None: nothing worth saying):
    ``"off"`` → none; ``"auto"`` → the canonical file of the first folder holding one, unless it has random
    weights (a test file is never used unasked); else a path.

    Raises:
        MissingModelError: a named file does not exist.
    """
    if str(choice) == "off":
        return None, None
    if str(choice) != "auto":
        path = Path(choice)
        if not path.is_file():
            raise MissingModelError(f"FSR file not found: {path}")
        return path, f"FSR: {path}"
    try:
        path = find_model_file("fsr", list(folders))
    except MissingModelError:
        return None, None
    if has_random_weights(inspect_model_file(path, "fsr").metadata):
        return None, f"FSR off: {path} holds random weights (a test file); name it with --fsr to use it"
    return path, f"FSR: {path}"


def load_reenact_models(folders: Iterable[str | Path], device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, fsr: str | Path | None = None, *,
                        encoder_dtype: torch.dtype | None = None, compile_encoders: bool = False) -> ReenactModels:
    """Loads G, e4e, DECA and A from their canonical files in ``folders`` (the first folder holding a file wins).

    Args:
        folders: folders to search, in order.
        device: where the networks run (``"cpu"``, ``"cuda"``, ``"mps"``, ...).
        dtype: float type of G, A and FSR (float32 default; float16 / bfloat16 on accelerators).
        fsr: the FSR refinement encoder's file, or None for none (see :func:`find_fsr` for the CLI's choices).
        encoder_dtype: float type of e4e and DECA (None: ``dtype``); their outputs are cast for the next step
            (:func:`~reenact_core.engine.speed.network_dtypes` picks both for a ``--dtype``).
        compile_encoders: compile e4e's and DECA's forward with ``torch.compile`` (opt-in: the first call per
            batch size takes tens of seconds; :func:`~reenact_core.engine.speed.compile_problem` says whether
            this machine can).

    Raises:
        MissingModelError: naming every missing file (one message, one file per line), with where to get it.
        WeightsError: a file is unreadable, of the wrong kind, or the files do not fit together (an FSR file
            made for another generator included).
    """
    folders = [Path(f) for f in folders]
    paths, missing = {}, []
    names = kind_names(INFERENCE)
    for name in names:
        try:
            paths[name] = find_model_file(name, folders)
        except MissingModelError as exc:
            missing.append(str(exc))
    if missing:
        raise MissingModelError(f"{len(missing)} of {len(names)} model files missing:\n" + "\n".join(missing))
    device = torch.device(device)
    own = {"e4e": encoder_dtype or dtype, "deca": encoder_dtype or dtype}
    loaded = {name: load_model(path, name, device, own.get(name, dtype)) for name, path in paths.items()}
    if compile_encoders:
        for name in own:
            loaded[name].module.compile()
    return ReenactModels(loaded["stylegan2"], loaded["e4e"], loaded["deca"], loaded["directions"], device, dtype,
                         None if fsr is None else load_model(fsr, "fsr", device, dtype))
