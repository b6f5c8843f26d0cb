"""Model weights: safe reading of the official checkpoints, conversion to our `.safetensors` format, loading.

Our files are `.safetensors` whose state-dict keys are the official ones (the model modules' attribute names),
plus metadata naming the model kind and its architecture, so every file is self-describing.
"""
from .kinds import KINDS, ModelKind, find_model_file, kind
from .store import LoadedModel, ModelInfo, inspect_model_file, load_model, save_model
from .convert import convert
from .random_checkpoint import TINY_CONFIGS, make_random_checkpoint, make_tiny_model_set, tiny_config

__all__ = ["KINDS", "ModelKind", "kind", "find_model_file", "LoadedModel", "ModelInfo", "inspect_model_file",
           "load_model", "save_model", "convert", "make_random_checkpoint", "make_tiny_model_set",
           "tiny_config", "TINY_CONFIGS"]
