"""Optional landmark backend: the 2D-FAN-4 network of the ``face-alignment`` package (Bulat & Tzimiropoulos).

This is the landmark network of the reference method (reference spec §1.2 step 4). ``face-alignment`` ships
no weights and its constructor downloads them from the internet when they are not in the torch hub cache;
here the files are looked up first, in the caller's models folder and in the torch hub cache, and a
MissingModelError names them when absent. The network is built from ``face_alignment.models.FAN`` and loaded
from the file found, so nothing is ever downloaded and nothing is compiled.

Faces are found by dlib's HOG detector (as in the dlib backend, no file needed) or, with
``detector="sfd"``, by face-alignment's S3FD (its weights file must be present too). Box → FAN input as in
face-alignment and the reference: centre = box centre moved up by 0.12 × box height, the 256-px input covers
``200 · (w + h) / 195`` frame pixels; heatmap maxima get a ±0.25-cell shift toward the larger neighbour and
are mapped back through the same transform (sub-pixel, not rounded to whole pixels as face-alignment does).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..caches import cached
from ..errors import InputError, MissingDependencyError, MissingModelError
from ..faces.images import downscaled
from ..files import find_file
from ..weights.safe_load import load_checkpoint
from .dlib_backend import DETECT_MAX_SIDE, DlibBackend
from .backend import LandmarkBackend

_RELEASES = "https://www.adrianbulat.com/downloads/python-fan/"  # face-alignment 1.5 `models_urls`
FAN_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"  # face-alignment 1.5 `models_urls['2DFAN-4']`
S3FD_WEIGHTS = "s3fd-619a316812.pth"  # face-alignment 1.5 sfd `models_urls['s3fd']`
FAN_INPUT_SIZE = 256  # FAN input side (face-alignment CROP_RESOLUTION)
FAN_HEATMAP_SIZE = 64  # FAN heatmap side (face-alignment HEATMAP_RESOLUTION)
REFERENCE_SCALE = 195.0  # FAN scale = (box w + h) / 195 (face-alignment REFERENCE_SCALE, reference §1.2)
SCALE_TO_PIXELS = 200.0  # the input covers 200 · scale frame pixels (face-alignment SCALE_FACTOR)
CENTER_Y_OFFSET = 0.12  # centre moved up by 0.12 × box height (face-alignment CENTER_Y_OFFSET, reference §1.2)


def weight_folders(models_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where weight files are looked for: ``models_dir`` then the torch hub cache's ``checkpoints`` folder
    (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``)."""
    folders = [Path(models_dir)] if models_dir is not None else []
    return folders + [Path(torch.hub.get_dir()) / "checkpoints"]


def find_weights(file_name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """The path of ``file_name`` in :func:`weight_folders`; MissingModelError naming file, folders and source."""
    folders = weight_folders(models_dir)
    found = find_file(file_name, folders)
    if found is not None:
        return found
    raise MissingModelError(
        f"face-alignment weights {file_name} not found in {', '.join(str(f) for f in folders)}; "
        f"download {_RELEASES}{file_name} into one of them"
    )


def _require_package() -> None:
    if importlib.util.find_spec("face_alignment") is None:
        raise MissingDependencyError(
            "the 'face-alignment' landmark backend needs the optional package: pip install face-alignment"
        )


@cached
def _load_fan(path: Path, device: torch.device) -> torch.nn.Module:
    from face_alignment.models import FAN

    net = FAN(4)
    net.load_state_dict(load_checkpoint(path))
    return net.to(device).eval()


@cached
def _load_s3fd(path: Path, device: torch.device):
    from face_alignment.detection.sfd import FaceDetector

    return FaceDetector(device=str(device), path_to_detector=str(path))


class FanBackend(LandmarkBackend):
    """2D-FAN-4 landmarks on dlib HOG (default) or S3FD boxes.

    Args:
        models_dir: a folder searched for the weight files before the torch hub cache.
        device: torch device the networks run on.
        detector: ``"dlib"`` (HOG, no file) or ``"sfd"`` (needs ``s3fd-619a316812.pth``).
        max_detect_side: long side in pixels of the copy the detector sees.
    """

    name = "face-alignment"

    def __init__(self, models_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 detector: str = "dlib", max_detect_side: int = DETECT_MAX_SIDE):
        if detector not in ("dlib", "sfd"):
            raise InputError(f"unknown face detector {detector!r} for face-alignment; use 'dlib' or 'sfd'")
        _require_package()
        fan_path = find_weights(FAN_WEIGHTS, models_dir)
        s3fd_path = find_weights(S3FD_WEIGHTS, models_dir) if detector == "sfd" else None
        self.device = torch.device(device)
        self.max_detect_side = max_detect_side
        self._net = _load_fan(fan_path, self.device)
        self._s3fd = _load_s3fd(s3fd_path, self.device) if s3fd_path is not None else None
        self._hog = DlibBackend(models_dir, max_detect_side) if s3fd_path is None else None

    def min_face_side(self, height: int, width: int) -> float | None:
        """dlib's with the dlib detector; None with S3FD."""
        return None if self._hog is None else self._hog.min_face_side(height, width)

    def detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        if self._hog is not None:
            return self._hog.detect_boxes(rgb)
        small, scale = downscaled(rgb, self.max_detect_side)
        found = self._s3fd.detect_from_image(np.ascontiguousarray(small))
        return [((np.asarray(b[:4], dtype=np.float64).reshape(2, 2) / scale).reshape(4), float(b[4]))
                for b in found]

    @torch.no_grad()
    def predict_landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (float(v) for v in box)
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2 - CENTER_Y_OFFSET * (y2 - y1)])
        extent = SCALE_TO_PIXELS * ((x2 - x1) + (y2 - y1)) / REFERENCE_SCALE
        crop, zoom = fan_input(rgb, centre, extent)
        x = torch.from_numpy(crop).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        heatmaps = self._net(x)[-1][0].float().cpu().numpy()
        points = heatmap_peaks(heatmaps) * (FAN_INPUT_SIZE / FAN_HEATMAP_SIZE) + 1.5  # heatmap → input pixels
        return (centre + (points - (FAN_INPUT_SIZE - 1) / 2) / zoom).astype(np.float32)


def fan_input(rgb: np.ndarray, centre: np.ndarray, extent: float) -> tuple[np.ndarray, float]:
    """The 256-px FAN input: the square of side ``extent`` frame pixels around ``centre``, zeros outside.

    Large faces are first reduced with cv2 INTER_AREA (cut to the square's bounds), then warped bilinearly.

    Returns:
        ``(crop, zoom)``: (256, 256, 3) uint8 RGB, and input pixels per frame pixel; frame point ``p`` lies at
        ``(p - centre) · zoom + 127.5`` in the crop (pixel centres on integers).
    """
    zoom = FAN_INPUT_SIZE / extent
    origin = centre - (FAN_INPUT_SIZE - 1) / 2 / zoom  # frame point at crop pixel (0, 0)
    source, offset, step = rgb, np.zeros(2), np.ones(2)  # frame point = offset + (source point + 0.5) · step − 0.5
    if zoom < 1:
        h, w = rgb.shape[:2]
        lo = np.maximum(np.floor(centre - extent / 2).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(centre + extent / 2).astype(int) + 2, [w, h])
        if (hi <= lo).any():
            return np.zeros((FAN_INPUT_SIZE, FAN_INPUT_SIZE, 3), np.uint8), zoom
        region = rgb[lo[1]:hi[1], lo[0]:hi[0]]
        size = np.maximum(np.rint((hi - lo) * zoom).astype(int), 1)
        source = cv2.resize(region, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA)
        offset, step = lo.astype(np.float64), (hi - lo) / size
    # crop point c = (frame point − origin) · zoom; frame point = offset + (s + 0.5) · step − 0.5
    scale = step * zoom
    shift = (offset + 0.5 * step - 0.5 - origin) * zoom
    matrix = np.array([[scale[0], 0.0, shift[0]], [0.0, scale[1], shift[1]]])
    crop = cv2.warpAffine(np.ascontiguousarray(source), matrix, (FAN_INPUT_SIZE, FAN_INPUT_SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, zoom


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """Heatmap maxima, moved 0.25 cell toward the larger neighbour where both neighbours exist.

    Args:
        heatmaps: (68, S, S) float heatmaps.

    Returns:
        (68, 2) float64 ``(x, y)`` in heatmap cells (cell centres on integers).
    """
    n, size, _ = heatmaps.shape
    flat = heatmaps.reshape(n, -1).argmax(1)
    ys, xs = np.divmod(flat, size)
    peaks = np.stack([xs, ys], axis=1).astype(np.float64)
    inner = (xs > 0) & (xs < size - 1) & (ys > 0) & (ys < size - 1)
    k, x, y = np.nonzero(inner)[0], xs[inner], ys[inner]
    peaks[inner, 0] += 0.25 * np.sign(heatmaps[k, y, x + 1] - heatmaps[k, y, x - 1])
    peaks[inner, 1] += 0.25 * np.sign(heatmaps[k, y + 1, x] - heatmaps[k, y - 1, x])
    return peaks
