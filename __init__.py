"""ComfyUI entry point of the Latent Reenact node pack (comfyui-latent-reenact).

ComfyUI imports this file as a package and reads NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS.
Importing it loads no weights and opens no model file. The pack folder is put on ``sys.path`` so that its
library, ``reenact_core``, imports by name without being pip-installed. Outside ComfyUI (a test runner collecting
the repository as a package, say) there is nothing to register, so the ComfyUI-facing modules are not imported.
"""
import importlib.util
import os
import sys

if __package__ and importlib.util.find_spec("folder_paths") is not None:
    _pack_dir = os.path.dirname(os.path.abspath(__file__))
    if importlib.util.find_spec("reenact_core") is None:
        sys.path.insert(0, _pack_dir)
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
