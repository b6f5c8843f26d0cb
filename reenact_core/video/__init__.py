"""Streaming video input and output: frames are decoded and encoded a chunk at a time, never all at once.

Frames are ``(H, W, 3)`` uint8 RGB arrays; chunks are ``(n, H, W, 3)`` uint8 RGB. A driver is a video file
(anything FFmpeg reads, through PyAV), a folder of ``*.png``/``*.jpg`` images or a single image. Memory stays
flat on long videos: a reader holds one chunk, a writer one chunk plus the encoder's own look-ahead.
"""
from .policies import LENGTH_POLICIES, driver_chunks, driver_frames
from .rate import exact_rate
from .reader import DEFAULT_FPS, IMAGE_SUFFIXES, VideoReader, batched, is_image_driver
from .writer import PngFramesWriter, VideoWriter, pick_video_codec

__all__ = ["DEFAULT_FPS", "IMAGE_SUFFIXES", "LENGTH_POLICIES", "PngFramesWriter", "VideoReader", "VideoWriter",
           "batched", "driver_chunks", "driver_frames", "exact_rate", "is_image_driver", "pick_video_codec"]
