"""Model weights: safe reading of the official checkpoints, conversion to our `.safetensors` format, loading.

Our files are `.safetensors` whose state-dict keys are the official ones (the model modules' attribute names),
plus metadata naming the model kind and its architecture, so every file is self-describing. The kinds are
declared beside their networks and registered in ``kinds``.
"""
from .kinds import (INFERENCE, KINDS, OPTIONAL, ROLES, TRAINING, ModelKind, find_model_file, kind, kind_names,
                    missing_model_message, register_kind)
from .store import LoadedModel, ModelInfo, inspect_model_file, load_model, save_model
from .convert import convert
from .lpips import find_lpips
from .random_checkpoint import (TINY_CONFIGS, has_random_weights, make_random_checkpoint, make_tiny_model_set,
                                tiny_config)

__all__ = ["KINDS", "ModelKind", "INFERENCE", "TRAINING", "OPTIONAL", "ROLES", "kind", "kind_names",
           "register_kind", "find_model_file", "missing_model_message", "LoadedModel", "ModelInfo",
           "inspect_model_file", "load_model", "save_model", "convert", "find_lpips", "make_random_checkpoint",
           "has_random_weights", "make_tiny_model_set", "tiny_config", "TINY_CONFIGS"]
