"""The library leaves its host alone: importing every module and running a driving session changes neither
glibc's heap settings (``mallopt``: only the command line sets it), nor ``sys.path``, nor torch's thread
settings (environment variables are left out: OpenCV's import sets Qt and library paths of its own). Run in a fresh interpreter, as a host such as ComfyUI would import the library."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import ctypes, json, pkgutil, importlib, sys
calls = []
class Recording(ctypes.CDLL):                      # records every mallopt a module would make
    def __getattr__(self, name):
        if name == "mallopt":
            calls.append(name)
        return super().__getattr__(name)
ctypes.CDLL = Recording
import torch
before = (list(sys.path), torch.get_num_threads(), torch.get_num_interop_threads())
import reenact_core
for info in pkgutil.walk_packages(reenact_core.__path__, "reenact_core."):
    if ".training" not in info.name and info.name not in ("reenact_core.cli", "reenact_core.__main__"):
        importlib.import_module(info.name)
import numpy as np, tempfile
from pathlib import Path
from reenact_core.engine import DriveOptions, load_reenact_models, prepare_source
from reenact_core.pipeline import reenact_file
from reenact_core.weights import make_tiny_model_set
from reenact_core.video import VideoReader
folder = Path(tempfile.mkdtemp())
make_tiny_model_set(folder)
models = load_reenact_models([folder])
frames = next(VideoReader(sys.argv[1]).chunks(3))
source = prepare_source(frames[0], models)
out = reenact_file(models, source, sys.argv[1], folder / "out.mp4", DriveOptions(batch_size=2, no_face="pass"),
                   num_frames=3)
after = (list(sys.path), torch.get_num_threads(), torch.get_num_interop_threads())
print(json.dumps({"calls": calls, "same": [a == b for a, b in zip(before, after)], "frames": out.frames}))
'''


def test_import_and_session_leave_the_host_as_it_was(shared_dir):
    from golden_fixtures import MEDIA

    video = sorted(MEDIA.glob("d*.mp4"))[0]
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(video)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["frames"] == 3
    assert report["calls"] == [], "the library set glibc's heap parameters"
    assert report["same"] == [True, True, True], "sys.path or torch's thread settings changed"

