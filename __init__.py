"""ComfyUI entry point of the Latent Reenact node pack (comfyui-latent-reenact).

ComfyUI imports this file as a package and reads NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS.
Importing it loads no weights and opens no model file. The library, ``reenact_core``, is either installed
(``pip install -e .`` in the pack folder, which also gives the ``latent-reenact`` command) or, when it is not, the
pack folder is put on ``sys.path`` so that the pack's own copy imports by name. One log line says which copy is used.
Outside ComfyUI (a test runner collecting the repository as a package, say) there is nothing to register, so the
ComfyUI-facing modules are not imported.
"""
import importlib.util
import logging
import os
import sys


def use_library(pack_dir: str) -> str:
    """Make ``reenact_core`` importable and return the one log line naming the copy that will be imported.

    pack_dir: the pack folder (it holds its own ``reenact_core/``). An installed copy found on ``sys.path`` is
    used as is; otherwise ``pack_dir`` is put first on ``sys.path``.
    """
    spec = importlib.util.find_spec("reenact_core")
    if spec is None:
        sys.path.insert(0, pack_dir)
        spec = importlib.util.find_spec("reenact_core")
    used = os.path.dirname(os.path.realpath(spec.origin))
    own = os.path.realpath(os.path.join(pack_dir, "reenact_core"))
    if used == own:
        return f"Latent Reenact: reenact_core from the pack folder ({used})"
    return f"Latent Reenact: reenact_core from the installed copy at {used}; the pack's copy at {own} is not used"


if __package__ and importlib.util.find_spec("folder_paths") is not None:
    logging.getLogger(__name__).info(use_library(os.path.dirname(os.path.abspath(__file__))))
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
