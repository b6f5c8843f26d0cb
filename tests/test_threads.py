"""Threads: the command line sets torch's thread count for its run (``--threads``, else the declared default,
else 1 per rank under torchrun) and gives the caller's count back; the library never sets it
(test_host_effects.py; the nodes: test_comfy_nodes.py)."""
from __future__ import annotations

import argparse

import pytest
import torch

from reenact_core import cli, options
from reenact_core.errors import InputError
from reenact_core.threads import SPIN_COUNT, thread_count

COMPUTING = ["reenact", "doctor", "evaluate", "dataset prepare", "dataset ranges", "train directions",
             "train joint", "train fsr"]


def test_thread_count_rule():
    assert thread_count(None) == options.THREADS.default
    assert thread_count(None, world_size=4) == 1           # torchrun: one thread per rank
    assert thread_count(3, world_size=4) == 3              # an explicit count wins
    with pytest.raises(InputError, match="threads"):
        thread_count(-1)


def subparser(path: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    for word in path.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return parser


@pytest.mark.parametrize("command", COMPUTING)
def test_computing_commands_take_threads(command):
    (action,) = [a for a in subparser(command)._actions if "--threads" in a.option_strings]
    assert action.default is None and action.type("2") == 2 and str(options.THREADS.default) in action.help
    with pytest.raises(argparse.ArgumentTypeError):
        action.type("-1")


@pytest.mark.parametrize("argv, world, expected", [
    (["--threads", "3"], None, 3),
    ([], None, options.THREADS.default or None),   # None: torch's own count, left as it was
    (["--threads", "0"], None, None),
    ([], "2", 1),
])
def test_the_command_line_sets_threads_for_its_run_only(argv, world, expected, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_doctor", lambda args: seen.append(torch.get_num_threads()) or 0)
    if world:
        monkeypatch.setenv("WORLD_SIZE", world)
    before = torch.get_num_threads()
    other = before + 1
    torch.set_num_threads(other)
    try:
        assert cli.main(["doctor", *argv]) == 0
        assert seen == [expected or other] and torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)


SPY_ON_TORCH_IMPORT = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append((os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY")))
sys.meta_path.insert(0, Spy())
from reenact_core import cli
cli.main(["doctor", "--models", sys.argv[1]])
print("at torch import:", seen[0])
"""


@pytest.mark.parametrize("given, expected", [
    ({}, (SPIN_COUNT, None)),
    ({"GOMP_SPINCOUNT": "5"}, ("5", None)),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, (None, "ACTIVE")),
])
def test_the_command_line_limits_openmp_spinning_unless_told(given, expected, tmp_path):
    """OpenMP reads its settings when torch loads it: the command line sets a short spin before that, and keeps
    the user's own setting."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", SPY_ON_TORCH_IMPORT, str(tmp_path)], env={**env, **given},
                          capture_output=True, text=True, timeout=300)
    assert f"at torch import: {expected!r}" in proc.stdout, proc.stderr[-2000:]
