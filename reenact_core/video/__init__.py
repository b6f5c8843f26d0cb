"""Streaming video input and output: frames are decoded and encoded a chunk at a time, never all at once.

Frames are ``(H, W, 3)`` uint8 RGB arrays; chunks are ``(n, H, W, 3)`` uint8 RGB. A driver is a video file
(anything FFmpeg reads, through PyAV), a folder of ``*.png``/``*.jpg`` images or a single image. Memory stays
flat on long videos: a reader holds one chunk, a writer one chunk plus the encoder's own look-ahead.
"""
from .policies import LENGTH_POLICIES, driver_frames, timed_driver_chunks, timed_driver_frames
from .rate import exact_rate
from .reader import DEFAULT_FPS, IMAGE_SUFFIXES, VideoReader, batched, is_image_driver
from .writer import (OUTPUT_FORMATS, VIDEO_SUFFIXES, PngFramesWriter, VideoWriter, check_frames_folder,
                     output_format, video_encoder)

__all__ = ["DEFAULT_FPS", "IMAGE_SUFFIXES", "LENGTH_POLICIES", "OUTPUT_FORMATS", "PngFramesWriter", "VIDEO_SUFFIXES",
           "VideoReader", "VideoWriter", "batched", "check_frames_folder", "driver_frames",
           "exact_rate", "is_image_driver", "output_format", "timed_driver_chunks",
           "timed_driver_frames", "video_encoder"]
