"""ComfyUI nodes of Latent Reenact: thin adapters between ComfyUI types and reenact_core.

Registers the `reenact` model folder (models/reenact/, also reachable through extra_model_paths.yaml),
listing `.safetensors` files only, has ComfyUI's model unload also clear the library's helper-model caches, and
collects the V3 node classes of every node module (`NODES` lists).
"""
import importlib
import os

import folder_paths

MODEL_FOLDER_KEY = "reenact"
folder_paths.add_model_folder_path(MODEL_FOLDER_KEY, os.path.join(folder_paths.models_dir, MODEL_FOLDER_KEY))
folder_paths.folder_names_and_paths[MODEL_FOLDER_KEY][1].add(".safetensors")

NODE_MODULES = ("loaders", "align", "latent", "params", "paste", "reenact", "refine")

importlib.import_module(".common", __name__).clear_library_caches_on_unload()

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _name in NODE_MODULES:
    for _cls in importlib.import_module(f".{_name}", __name__).NODES:
        _schema = _cls.define_schema()
        NODE_CLASS_MAPPINGS[_schema.node_id] = _cls
        NODE_DISPLAY_NAME_MAPPINGS[_schema.node_id] = _schema.display_name
