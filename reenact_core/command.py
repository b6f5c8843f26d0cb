"""The command line's name for this install, for messages that tell the user what to run.

``latent-reenact`` is the console command of ``pip install -e .`` (or ``pip install`` of the pack folder), declared in
pyproject.toml's ``[project.scripts]``. Where that command is not beside the running Python (the library is used
from the pack folder without being installed), the equivalent is ``python -m reenact_core`` run from the folder
that holds ``reenact_core/``, spelled with this Python's full path.
"""
import os
import shlex
import sys
import sysconfig

COMMAND = "latent-reenact"


def command() -> str:
    """The exact command to type in a shell on this install, e.g. ``latent-reenact`` or
    ``cd /pack && /venv/bin/python -m reenact_core``."""
    scripts = sysconfig.get_path("scripts")
    if any(os.path.isfile(os.path.join(scripts, COMMAND + ext)) for ext in ("", ".exe")):
        return COMMAND
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"cd {shlex.quote(root)} && {shlex.quote(sys.executable)} -m reenact_core"
