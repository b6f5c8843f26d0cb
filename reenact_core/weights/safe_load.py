"""Reading official `.pt` / `.tar` checkpoints without ever unpickling arbitrary code."""
from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

import torch

from ..errors import WeightsError

# Classes the official files are known to hold besides tensors and containers: rosinality's training
# script stores its argparse options (`args`) in FFHQ checkpoints.
ALLOWED_GLOBALS = (argparse.Namespace,)


def load_checkpoint(path: str | Path) -> dict:
    """Load a PyTorch checkpoint with ``torch.load(weights_only=True)`` on the CPU.

    Raises WeightsError (one line) for a missing, truncated or corrupt file, and for a file that needs any
    global beyond plain tensors/containers and ``argparse.Namespace`` (the message names the global).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for bad files; all become one message
        raise WeightsError(_describe_load_failure(path, exc)) from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path.name}: expected a checkpoint dict, found {type(obj).__name__}")
    return obj


def _describe_load_failure(path: Path, exc: Exception) -> str:
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"{path.name}: refused to load: it needs the Python global '{found.group(1)}', which could run "
                f"arbitrary code; only tensors, containers and argparse.Namespace are accepted")
    if not zipfile.is_zipfile(path) and not _looks_like_pickle(path):
        return (f"{path.name}: not a checkpoint (neither a PyTorch zip archive nor a pickle); give the official "
                f".pt/.pth/.tar file")
    if "Unsupported operand" in text or not zipfile.is_zipfile(path):
        return (f"{path.name}: refused to load: it is a raw pickle that needs instructions outside the safe "
                f"weights-only subset (it could run arbitrary code)")
    return f"{path.name}: cannot read the checkpoint (truncated or corrupt file?): {text.splitlines()[0][:160]}"


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"
