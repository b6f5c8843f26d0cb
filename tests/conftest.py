"""Test configuration: under CI=true nothing may be skipped except tests marked `gpu`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helper modules (golden_fixtures, comfy_server)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Skip when ``what`` is unavailable on a developer machine; fail under CI, where it must be present."""
    if not available:
        (pytest.fail if IN_CI else pytest.skip)(f"{what} is not available")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("gpu") is None and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where only GPU tests may skip: {report.longrepr}"


def pytest_collection_modifyitems(config, items):
    import torch

    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    for item in items:
        if item.get_closest_marker("gpu") and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA or MPS device"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    from golden_fixtures import SHARED

    require((SHARED / "golden" / "manifest.json").is_file(), f"the shared fixtures folder ({SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A folder of the tiny random inference model files (``make_tiny_model_set``), shared by the whole run:
    read it, never write into it. The inference kinds only: no LPIPS or FSR file (tests rely on their absence)."""
    from reenact_core.weights import make_tiny_model_set

    folder = tmp_path_factory.mktemp("models")
    make_tiny_model_set(folder)
    return folder
