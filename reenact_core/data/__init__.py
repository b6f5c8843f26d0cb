"""Training data: videos prepared into reference crops, e4e W+ codes and DECA codes.

``layout`` (imported here) is the on-disk layout and its reader; ``sources``, ``prepare`` and ``run`` make a
tree (``python -m reenact_core dataset prepare``), ``ranges`` measures a generator's parameter ranges.
"""
from .layout import (PreparedFrame, PreparedVideo, frame_stem, iter_videos, load_crop, load_deca_codes, load_w_plus,
                     read_video, sample_paths, video_folder)

__all__ = ["PreparedFrame", "PreparedVideo", "frame_stem", "iter_videos", "load_crop", "load_deca_codes",
           "load_w_plus", "read_video", "sample_paths", "video_folder"]
