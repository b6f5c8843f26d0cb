"""Installing and running as the README says: the pack with and without the library installed, and the
documented commands run by the installed `latent-reenact` command from folders outside the repository."""
from __future__ import annotations

import re
import shlex
import os
import shutil
import subprocess
import sys
import sysconfig
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import require
from golden_fixtures import MEDIA
from reenact_core.command import COMMAND
from reenact_core.video import VideoReader, VideoWriter
from reenact_core.weights import kind, make_tiny_model_set
from reenact_core.weights.official import write_official
from reenact_core.weights.random_checkpoint import tiny_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Loads the pack's __init__.py as a plain module (nothing registered outside ComfyUI), with site-packages on
# sys.path but without their .pth files (-S), so an editable install of the library is not seen; argv[3:] are
# folders put first on sys.path (an "installed" copy).
PACK_SCRIPT = r"""
import importlib.util, os, sys
sys.path += sys.argv[1].split(os.pathsep)
sys.path[0:0] = sys.argv[3:]
spec = importlib.util.spec_from_file_location("pack_entry", sys.argv[2] + "/__init__.py")
pack = importlib.util.module_from_spec(spec); spec.loader.exec_module(pack)
print(pack.use_library(sys.argv[2]))
import reenact_core, reenact_core.cli
reenact_core.cli.build_parser()
print(reenact_core.__file__)
"""


def run_pack(tmp_path, *installed: Path) -> list[str]:
    packages = os.pathsep.join(p for p in sys.path if Path(p).name in ("site-packages", "dist-packages"))
    done = subprocess.run([sys.executable, "-S", "-c", PACK_SCRIPT, packages, str(ROOT),
                           *map(str, installed)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_pack_without_installed_library_uses_its_own_copy(tmp_path):
    message, imported = run_pack(tmp_path)
    assert Path(imported).resolve().parent == (ROOT / "reenact_core").resolve()
    assert "from the pack folder" in message and str((ROOT / "reenact_core").resolve()) in message


def test_pack_with_installed_library_says_which_copy(tmp_path):
    site_dir = tmp_path / "site"
    shutil.copytree(ROOT / "reenact_core", site_dir / "reenact_core", ignore=shutil.ignore_patterns("__pycache__"))
    message, imported = run_pack(tmp_path, site_dir)
    assert Path(imported).resolve().parent == (site_dir / "reenact_core").resolve()
    assert "installed copy" in message and str(site_dir / "reenact_core") in message
    assert str((ROOT / "reenact_core").resolve()) in message and "not used" in message


# ---------------------------------------------------------------------------------------------------------------
# The documented commands. Each entry is a command line exactly as the README prints it (checked), the folder it
# runs from ("work": a folder outside the repository; "comfy": the folder holding a ComfyUI-like tree) and extra
# options that keep it quick on tiny models.
OFFICIAL = {"stylegan-voxceleb.pt": "stylegan2", "e4e-voxceleb.pt": "e4e", "deca_model.tar": "deca",
            "A_matrix.pt": "directions"}
DIRECTIONS_EXTRAS = {"learned_directions": 15, "shift_scale": 6.0, "w_plus": True, "num_layers_shift": 8}
QUICK = ["--device", "cpu", "--tune-steps", "0"]
RANGES = ["--device", "cpu", "--samples", "4"]   # a few synthetic images instead of the reference's thousands
COMMANDS = [
    *[(f".venv/bin/latent-reenact convert {name} models/reenact/", "work", []) for name in OFFICIAL],
    (".venv/bin/latent-reenact convert model_ir_se50.pth    models/reenact/", "work", []),
    ("latent-reenact doctor", "work", []),
    (".venv/bin/latent-reenact reenact --source portrait.jpg --driving clip.mp4 --out out.mp4", "work", QUICK),
    ("latent-reenact evaluate --source portrait.jpg --driving clip.mp4 --output out.mp4", "work", ["--device", "cpu"]),
    ("latent-reenact dataset ranges ranges_mygan.npy --generator G.safetensors", "work", RANGES),
    ("latent-reenact dataset ranges ranges_mygan.npy --directions A.safetensors", "work", RANGES),
    ("latent-reenact train directions --self-check", "work", ["--device", "cpu"]),
    *[(f"latent-reenact convert {name} ComfyUI/models/reenact/", "comfy", []) for name in OFFICIAL],
]


def documented(line: str) -> list[str]:
    """The command line's arguments after the command, checked to be printed in the README (spacing aside)."""
    words = shlex.split(line)
    pattern = r"\s+".join(map(re.escape, words))
    assert re.search(rf"(^|`){pattern}(\s|`|$)", README, re.M), f"not in the README: {line}"
    return words[1:]


def installed_command() -> Path:
    scripts = Path(sysconfig.get_path("scripts"))
    found = next((p for p in (scripts / COMMAND, scripts / f"{COMMAND}.exe") if p.is_file()), None)
    require(found is not None, f"the {COMMAND} command (pip install --no-deps -e . ; bash .ci/setup does it)")
    return found


def write_inputs(work: Path, comfy: Path) -> None:
    """Tiny official checkpoints under the README's names in both folders, a portrait and a 3-frame clip."""
    for folder in (work, comfy):
        for name, kind_name in OFFICIAL.items():
            config = tiny_config(kind_name)
            state = kind(kind_name).build(config).state_dict()
            extras = dict(DIRECTIONS_EXTRAS, shift_dim=config.shift_dim) if kind_name == "directions" else None
            write_official(folder / name, kind_name, state, extras=extras)
    write_official(work / "model_ir_se50.pth", "arcface", kind("arcface").build(tiny_config("arcface")).state_dict())
    shutil.copy(sorted(MEDIA.glob("*.jpg"))[0], work / "portrait.jpg")
    video = sorted(MEDIA.glob("*.mp4"))[0]
    reader = VideoReader(video)
    with VideoWriter(work / "clip.mp4", Fraction(reader.fps)) as writer:
        for index, frame in enumerate(reader):
            if index == 3:
                break
            writer.write(frame[None])


@pytest.mark.slow
def test_documented_commands_run_from_outside_the_repository(tmp_path, shared_dir):
    exe = installed_command()
    work, comfy = tmp_path / "work", tmp_path / "comfy"
    (comfy / "ComfyUI" / "custom_nodes").mkdir(parents=True)
    work.mkdir()
    write_inputs(work, comfy)
    for line, where, extra in COMMANDS:
        argv = documented(line)
        if "G.safetensors" in argv or "A.safetensors" in argv:   # the README's names for the user's own files
            for name, own in (("stylegan2", "G.safetensors"), ("directions", "A.safetensors")):
                shutil.copy(work / "models" / "reenact" / kind(name).canonical_file, work / own)
        done = subprocess.run([str(exe), *argv, *extra], cwd=work if where == "work" else comfy,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}: {done.stderr}"
    for name in ("stylegan2", "e4e", "deca", "directions"):
        assert (work / "models" / "reenact" / kind(name).canonical_file).is_file()
        assert (comfy / "ComfyUI" / "models" / "reenact" / kind(name).canonical_file).is_file()
    assert (work / "models" / "reenact" / kind("arcface").canonical_file).is_file()
    assert VideoReader(work / "out.mp4").frame_count == 3
    assert (work / "ranges_mygan.npy").is_file()


def test_missing_model_message_gives_a_command_that_works(tmp_path):
    """The message lists one missing file per line, the folder searched and a convert command that runs as is."""
    exe = installed_command()
    models = tmp_path / "models"
    make_tiny_model_set(models, kinds=["stylegan2", "e4e", "deca"])
    shutil.copy(sorted(MEDIA.glob("*.jpg"))[0], tmp_path / "portrait.jpg")
    done = subprocess.run([str(exe), "reenact", "--models", str(models), "--source", "portrait.jpg",
                           "--edit", "yaw=10", "--out", "o.png", *QUICK], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "1 of 4 model files missing" in lines[0]
    assert str(models) in lines[1] and kind("directions").canonical_file in lines[1]
    command = lines[1].split("then run: ", 1)[1]
    assert command.startswith(f"{COMMAND} convert A_matrix.pt ")
    config = tiny_config("directions")
    write_official(tmp_path / "A_matrix.pt", "directions", kind("directions").build(config).state_dict(),
                   extras=dict(DIRECTIONS_EXTRAS, shift_dim=config.shift_dim))
    convert = subprocess.run([str(exe), *shlex.split(command)[1:]], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert convert.returncode == 0, convert.stderr
    assert (models / kind("directions").canonical_file).is_file()
