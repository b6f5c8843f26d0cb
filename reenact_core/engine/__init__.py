"""The reenactment engine: prepared sources, driving sessions, editing and per-source generator tuning."""
from .editing import DIRECTION_NAMES, EDIT_MODES, edit, edit_delta_p, sweep, sweep_range
from .models import ReenactModels, find_fsr, load_reenact_models
from .session import FRAME_STATUSES, MODES, DriveOptions, DrivenChunk, DriveSession, DriverMotion, drive
from .source import (TRUNCATION, PreparedSource, Rendered, estimate_codes, fsr_context, load_source, prepare_source,
                     render, save_source)
from .tuning import TunedLayers, tune_generator

__all__ = ["DIRECTION_NAMES", "EDIT_MODES", "FRAME_STATUSES", "MODES", "TRUNCATION", "DriveOptions", "DriveSession",
           "DrivenChunk", "DriverMotion", "PreparedSource", "ReenactModels", "Rendered", "TunedLayers", "drive",
           "edit", "edit_delta_p", "estimate_codes", "find_fsr", "fsr_context", "load_reenact_models", "load_source",
           "prepare_source", "render", "save_source", "sweep", "sweep_range", "tune_generator"]
