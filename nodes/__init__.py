"""ComfyUI nodes of Latent Reenact: thin adapters between ComfyUI types and reenact_core.

Registers the `reenact` model folder (models/reenact/, also reachable through extra_model_paths.yaml),
listing `.safetensors` files only.
"""
import os

import folder_paths

MODEL_FOLDER_KEY = "reenact"
folder_paths.add_model_folder_path(MODEL_FOLDER_KEY, os.path.join(folder_paths.models_dir, MODEL_FOLDER_KEY))
folder_paths.folder_names_and_paths[MODEL_FOLDER_KEY][1].add(".safetensors")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
