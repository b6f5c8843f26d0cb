"""The registry of model kinds: every network the library loads, declared beside it as ``KIND``.

A new kind is a network module in ``reenact_core.models`` with a ``KIND = ModelKind(...)`` (see
``reenact_core.models.kind`` for the hooks) registered here with :func:`register_kind`. Its ``role`` says who
needs it: ``inference`` kinds make up the set reenactment needs (``make_tiny_model_set``, ``doctor``,
``load_reenact_models``), ``training`` kinds only the trainers, ``optional`` kinds improve a step when present.
"""
from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

from ..command import command
from ..errors import MissingModelError, WeightsError
from ..files import find_file
from ..models import arcface, deca, directions, e4e, flame, fsr, lpips, stylegan2
from ..models.kind import INFERENCE, OPTIONAL, ROLES, TRAINING, ModelKind

__all__ = ["KINDS", "ModelKind", "INFERENCE", "TRAINING", "OPTIONAL", "ROLES", "register_kind", "kind",
           "kind_names", "find_model_file", "missing_model_message"]

KINDS: dict[str, ModelKind] = {}


def register_kind(model_kind: ModelKind) -> ModelKind:
    """Add ``model_kind`` to ``KINDS`` (WeightsError if another kind has its name or canonical file)."""
    for other in KINDS.values():
        if other.name == model_kind.name or other.canonical_file == model_kind.canonical_file:
            raise WeightsError(f"model kind {model_kind.name!r} collides with {other.name!r}")
    KINDS[model_kind.name] = model_kind
    return model_kind


for _module in (stylegan2, e4e, deca, directions, lpips, fsr, flame, arcface):
    register_kind(_module.KIND)


def kind(name: str) -> ModelKind:
    """The ModelKind called ``name`` (WeightsError naming the known kinds otherwise)."""
    try:
        return KINDS[name]
    except KeyError:
        raise WeightsError(f"unknown model kind {name!r}; known kinds: {', '.join(KINDS)}") from None


def kind_names(role: str | None = None) -> tuple[str, ...]:
    """Names of the registered kinds with ``role`` (all kinds for None), in registration order."""
    if role is not None and role not in ROLES:
        raise WeightsError(f"unknown model role {role!r}; roles: {', '.join(ROLES)}")
    return tuple(name for name, k in KINDS.items() if role is None or k.role == role)


def missing_model_message(kind_name: str, folders: Iterable[str | Path], file_name: str | None = None) -> str:
    """The one-line message for an absent model file: the file, the folders searched, its source and the
    conversion command (for a kind without a published file, where such a file comes from)."""
    k = kind(kind_name)
    folders = [str(f) for f in folders]
    searched = ", ".join(folders) or "(no folder given)"
    if not k.official_file:   # nothing published to convert
        return f"missing model file '{file_name or k.canonical_file}' ({k.title}); searched: {searched}. {k.source}"
    target = shlex.quote(folders[0]) if folders else "MODELS_FOLDER"
    source = " ".join(filter(None, (k.official_file.split(" + ")[0], k.convert_options)))
    return (f"missing model file '{file_name or k.canonical_file}' ({k.title}); searched: {searched}. Download "
            f"'{k.official_file}' from {k.source}, then run: {command()} convert {source} {target}")


def find_model_file(kind_name: str, folders: Iterable[str | Path], file_name: str | None = None) -> Path:
    """Path of a model file (the kind's canonical one unless ``file_name``) in the first folder holding it.

    Raises MissingModelError (see :func:`missing_model_message`).
    """
    folders = [Path(f) for f in folders]
    found = find_file(file_name or kind(kind_name).canonical_file, folders)
    if found is None:
        raise MissingModelError(missing_model_message(kind_name, folders, file_name))
    return found
