"""The model kinds we load: their architecture module, canonical file name and where the weights come from."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import MissingModelError, WeightsError

REFERENCE_REPO = "https://github.com/StelaBou/stylegan_directions_face_reenactment"


@dataclass(frozen=True)
class ModelKind:
    """One kind of network: how to build it and where its published weights come from."""

    name: str
    module: str                 # reenact_core.models.<module> holding the architecture
    model_class: str            # nn.Module class, constructed from its config
    config_class: str           # frozen dataclass with to_dict()/from_dict()
    title: str                  # what the user sees
    canonical_file: str         # file name `convert` writes and the loaders look for
    official_file: str          # the published file it is converted from
    source: str                 # where the published file comes from

    def _module(self):
        return importlib.import_module(f"reenact_core.models.{self.module}")

    def build(self, config):
        """The nn.Module for ``config`` (its own random init)."""
        return getattr(self._module(), self.model_class)(config)

    def config_from_dict(self, data: dict):
        return getattr(self._module(), self.config_class).from_dict(data)

    def config_from_state_dict(self, state_dict):
        """Architecture inferred from the shapes of an official-layout state dict (WeightsError if impossible)."""
        return self._module().config_from_state_dict(state_dict)

    def rebuilt_buffer_suffixes(self) -> tuple[str, ...]:
        """Keys (by suffix) of constant buffers that official files may lack; they are rebuilt, not loaded."""
        return tuple(getattr(self._module(), "REBUILT_BUFFER_SUFFIXES", ()))


_SOURCE = f"the official repository {REFERENCE_REPO} (links in its README)"

KINDS: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind("stylegan2", "stylegan2", "Generator", "GeneratorConfig", "StyleGAN2 generator",
              "stylegan2-voxceleb-256.safetensors", "stylegan-voxceleb.pt", _SOURCE),
    ModelKind("e4e", "e4e", "Encoder4Editing", "EncoderConfig", "e4e encoder (IR-SE-50)",
              "e4e-voxceleb-256.safetensors", "e4e-voxceleb.pt", _SOURCE),
    ModelKind("deca", "deca", "DecaEncoder", "DecaConfig", "DECA E_flame encoder",
              "deca-eflame.safetensors", "deca_model.tar",
              "DECA (https://github.com/yfeng95/DECA, registration required; non-commercial licence)"),
    ModelKind("directions", "directions", "DirectionMatrix", "DirectionsConfig", "directions matrix A",
              "directions-voxceleb.safetensors", "A_matrix.pt", _SOURCE),
    ModelKind("flame", "flame", "Flame", "FlameConfig", "FLAME head model (training losses)",
              "flame-generic.safetensors", "generic_model.pkl",
              "the FLAME website https://flame.is.tue.mpg.de (free registration, per-user licence, never shipped), "
              "with landmark_embedding.npy from https://github.com/yfeng95/DECA (data/)"),
    ModelKind("arcface", "arcface", "ArcFace", "ArcFaceConfig", "ArcFace IR-SE-50 identity network",
              "arcface-irse50.safetensors", "model_ir_se50.pth",
              "TreB1eN/InsightFace_Pytorch (https://github.com/TreB1eN/InsightFace_Pytorch, README links; the same "
              "file pSp and e4e use)"),
)}


def kind(name: str) -> ModelKind:
    """The ModelKind called ``name`` (WeightsError naming the known kinds otherwise)."""
    try:
        return KINDS[name]
    except KeyError:
        raise WeightsError(f"unknown model kind {name!r}; known kinds: {', '.join(KINDS)}") from None


def find_model_file(kind_name: str, folders: Iterable[str | Path], file_name: str | None = None) -> Path:
    """Path of a model file in the first folder that holds it.

    Raises MissingModelError naming the file, every folder searched, the official file and its source, and
    the conversion command.
    """
    k = kind(kind_name)
    name = file_name or k.canonical_file
    folders = [Path(f) for f in folders]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    searched = ", ".join(str(f) for f in folders) or "(no folder given)"
    raise MissingModelError(
        f"missing model file '{name}' ({k.title}); searched: {searched}. Download '{k.official_file}' from "
        f"{k.source}, then run: python -m reenact_core convert {k.official_file} <models>/reenact/")
