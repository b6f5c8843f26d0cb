"""ComfyUI entry point of the Latent Reenact node pack (comfyui-latent-reenact).

ComfyUI imports this file as a package and reads NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS.
Importing it loads no weights and opens no model file. Outside ComfyUI (a test runner collecting the
repository as a package, say) there is nothing to register, so the ComfyUI-facing modules are not imported.
"""
import importlib.util

if __package__ and importlib.util.find_spec("folder_paths") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
