"""The reenactment engine: five steps, composed by a driving session (and by the ComfyUI step nodes).

align (``faces.alignment.FaceAligner``: detect, track, smooth, crop) → measure (:mod:`.measure`, DECA) → motion
(:mod:`.motion`, Δp with A's normaliser) → render (:mod:`.render`, A + G, FSR) → composite (:mod:`.composite`, paste
back); :mod:`.plan` holds the network windows and the no-face policy; :mod:`.source` prepares a source and
:mod:`.source_file` stores it; :mod:`.session` composes the steps over a video.
"""
from .composite import composite
from .editing import DIRECTION_NAMES, edit, edit_delta_p, edit_limit, sweep, sweep_range
from .measure import estimate_codes
from .models import ReenactModels, find_fsr, load_reenact_models
from .motion import DriverMotion
from .plan import frame_rows, windows
from .render import Rendered, fsr_context, image_to_uint8, render
from .session import DriveOptions, DrivenChunk, DriveSession, drive
from .source import PreparedSource, prepare_source
from .source_file import load_source, save_source
from .tuning import TunedLayers, tune_generator

__all__ = ["DIRECTION_NAMES", "DriveOptions", "DriveSession", "DrivenChunk", "DriverMotion",
           "PreparedSource", "ReenactModels", "Rendered", "TunedLayers", "composite", "drive", "edit",
           "edit_delta_p", "edit_limit", "estimate_codes", "find_fsr", "frame_rows", "fsr_context", "image_to_uint8",
           "load_reenact_models", "load_source", "prepare_source", "render", "save_source", "sweep", "sweep_range",
           "tune_generator", "windows"]
