"""Quality measures of a reenactment: identity kept, pose and expression followed, temporal stability.

* identity: with ArcFace IR-SE-50 present, the cosine similarity (CSIM, higher is better) of ArcFace embeddings
  of the source and each output frame, each face aligned by 5 points to ArcFace's 112-px template
  (training-and-fsr §4.1); otherwise the distance between 128-D dlib face descriptors (offline; dlib's guide:
  below 0.6 means the same person; lower is better). The report names the measure used;
* pose error: mean over frames of (|Δyaw| + |Δpitch| + |Δroll|) / 3 in degrees between output and driver, and
* expression error: mean |n(x_out) − n(x_driver)| over the jaw and 11 expression coefficients with
  n(x) = (x − min) / (max − min) from the parameter ranges (reference-method §3.8), both from a 3DMM estimator;
* jitter: landmark jitter of the output (reenact_core.faces.temporal_metrics.landmark_jitter).
Estimators are passed in, so each measure can be tested with estimators whose outputs are known.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

import numpy as np
import torch

from .caches import cached
from .errors import InputError, NoFaceError
from .faces.temporal_metrics import landmark_jitter
from .params import EXPRESSION_DIRECTIONS, VOXCELEB, FaceParams, Normaliser
from .wording import count

DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"  # shipped by face-recognition-models
DLIB_MEASURE = "dlib descriptor distance (lower is better)"
ARCFACE_MEASURE = "ArcFace cosine similarity (higher is better)"
JITTER_MIN_FRAMES = 3   # landmark jitter is a second difference over time
# ArcFace's 112-px template of the 5 points below (x, y pixels), as the authors' CSIM uses it.
ARCFACE_TEMPLATE = ((35.34, 51.70), (76.45, 51.50), (56.03, 71.74), (39.14, 92.37), (73.18, 92.20))
ARCFACE_SIZE = 112

Embedder = Callable[[np.ndarray], Optional[np.ndarray]]          # RGB uint8 frame → descriptor, None: no face
ParamsEstimator = Callable[[np.ndarray], Optional[FaceParams]]   # RGB uint8 frame → FaceParams (batch 1)
LandmarkFinder = Callable[[np.ndarray], Optional[np.ndarray]]    # RGB uint8 frame → (68, 2) points


@cached
def _descriptor_model():
    import dlib

    from .landmarks.dlib_backend import dlib_model_file

    return dlib.face_recognition_model_v1(str(dlib_model_file(DESCRIPTOR_FILE)))


def dlib_descriptor(frame: np.ndarray, backend: str = "dlib") -> np.ndarray | None:
    """The 128-D dlib identity descriptor of the largest plausible face of an RGB uint8 frame, or None."""
    import dlib

    from .faces.tracking import choose_face
    from .landmarks import detect_faces

    face = choose_face(detect_faces(frame, backend), "largest")
    if face is None:
        return None
    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    shape = dlib.full_object_detection(dlib.rectangle(x1, y1, x2, y2),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks])
    return np.asarray(_descriptor_model().compute_face_descriptor(np.ascontiguousarray(frame), shape))


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two identity descriptors (dlib: < 0.6 is the same person)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (ArcFace CSIM: 1 for the same image)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """ArcFace's 5 points ``(5, 2)`` from iBUG-68 landmarks: eye centres (36–41, 42–47), nose tip (30), mouth
    corners (48, 54)."""
    p = np.asarray(landmarks68, np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity ``(2, 3)`` mapping points ``src (N, 2)`` onto ``dst (N, 2)`` (Umeyama, as
    skimage's ``estimate_transform('similarity', src, dst)``)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / (s ** 2).sum(1).mean()
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def align_arcface(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Faces ``(B, 3, 112, 112)`` warped from ``images (B, 3, H, W)`` so that their 5 points ``(B, 5, 2)`` (pixels)
    land on :data:`ARCFACE_TEMPLATE` (bilinear, zero padding; the authors' affine_grid normalisation)."""
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    thetas = []
    for pts in points.detach().cpu().numpy():
        a = similarity_transform(np.array(ARCFACE_TEMPLATE), pts)      # template pixel → image pixel
        row = []
        for r, side in ((0, w), (1, h)):
            c0, c1 = a[r, 0] * ARCFACE_SIZE / side, a[r, 1] * ARCFACE_SIZE / side
            row.append([c0, c1, 2 * a[r, 2] / side + c0 + c1 - 1])
        thetas.append(row)
    theta = torch.tensor(thetas, dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta, [images.shape[0], 3, ARCFACE_SIZE, ARCFACE_SIZE], align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


def arcface_embedder(arcface: torch.nn.Module, landmarks: LandmarkFinder) -> Embedder:
    """An :data:`Embedder` with ArcFace: 68 landmarks of the frame → 5-point alignment → embedding, or None."""
    parameter = next(arcface.parameters())

    def embed(frame: np.ndarray) -> np.ndarray | None:
        from .imaging import image_to_tensor

        points = landmarks(frame)
        if points is None:
            return None
        image = image_to_tensor(np.ascontiguousarray(frame[..., :3])[None]).to(parameter)
        face = align_arcface(image, torch.from_numpy(five_points(points))[None])
        with torch.no_grad():
            return arcface(face)[0].cpu().double().numpy()
    return embed


def pose_error_deg(output: FaceParams, driver: FaceParams) -> torch.Tensor:
    """(B,) mean absolute yaw/pitch/roll difference in degrees."""
    return (output.angles.double() - driver.angles.double()).abs().mean(dim=1)


def expression_error(output: FaceParams, driver: FaceParams, normaliser: Normaliser = VOXCELEB) -> torch.Tensor:
    """(B,) mean |n(out) − n(driver)| over jaw and the 11 expressions, n(x) = (x − min) / (max − min) with the
    ranges of ``normaliser`` (by default the official VoxCeleb ones, as the reference's metrics)."""
    lo_hi = torch.tensor(normaliser.ranges[EXPRESSION_DIRECTIONS], dtype=torch.float64)
    span = lo_hi[:, 1] - lo_hi[:, 0]
    out = torch.cat([output.jaw[:, None], output.exp], dim=1).double()
    drv = torch.cat([driver.jaw[:, None], driver.exp], dim=1).double()
    return ((out - drv).abs() / span).mean(dim=1)


class DecaMeasurer:
    """Landmarks (dlib, largest face) and DECA parameters of frames, for :func:`evaluate`.

    Each frame is detected once: the last frame's result is reused for its landmarks and its parameters.
    """

    def __init__(self, deca: torch.nn.Module, backend: str = "dlib"):
        self.deca, self.backend = deca, backend
        self._last: tuple[int, np.ndarray | None] | None = None

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """(68, 2) points of the largest plausible face, or None."""
        from .faces.tracking import choose_face
        from .landmarks import detect_faces

        if self._last is None or self._last[0] != id(frame):
            face = choose_face(detect_faces(frame, self.backend), "largest")
            self._last = (id(frame), None if face is None else face.landmarks)
        return self._last[1]

    def params(self, frame: np.ndarray) -> FaceParams | None:
        """DECA's pose and expression of the largest face (the engine's crop → DECA path), or None."""
        from .engine.measure import estimate_codes
        from .faces.images import to_uint8_rgb
        from .faces.reference_crop import crop_using_landmarks

        points = self.landmarks(frame)
        if points is None:
            return None
        crop, transform = crop_using_landmarks(to_uint8_rgb(frame), points)
        codes = estimate_codes(self.deca, crop[None], transform.frame_to_crop(points)[None])
        return FaceParams.from_deca(codes)


@dataclass
class EvaluationReport:
    """Mean measures over the frames where they could be taken (counts say how many)."""

    frames: int
    identity: float | None
    identity_frames: int
    pose_error_deg: float | None
    expression_error: float | None
    params_frames: int
    jitter: float | None
    identity_measure: str = DLIB_MEASURE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self) -> str:
        def fmt(v, why, unit=""):
            return f"n/a ({why})" if v is None else f"{v:.4f}{unit}"
        no_pair = "no frame with a face in both the output and the driver"
        rows = [("frames", str(self.frames)),
                (f"identity: {self.identity_measure} ({count(self.identity_frames, 'frame')})",
                 fmt(self.identity, "no face found in any output frame")),
                (f"pose error ({count(self.params_frames, 'frame')})", fmt(self.pose_error_deg, no_pair, " deg")),
                (f"expression error ({count(self.params_frames, 'frame')})", fmt(self.expression_error, no_pair)),
                ("landmark jitter (per inter-ocular distance)",
                 fmt(self.jitter, f"landmarks found in fewer than {JITTER_MIN_FRAMES} output frames"))]
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def evaluate(source: np.ndarray, outputs: Iterable[np.ndarray], drivers: Iterable[np.ndarray], *,
             embedder: Embedder, estimator: ParamsEstimator, landmarks: LandmarkFinder,
             compare: Callable[[np.ndarray, np.ndarray], float] = identity_distance,
             identity_measure: str = DLIB_MEASURE) -> EvaluationReport:
    """Compare output frames with the source (identity) and with their driving frames (pose, expression).

    Args:
        source: (H, W, 3) uint8 RGB source portrait.
        outputs, drivers: equal-length iterables of (H, W, 3) uint8 RGB frames (streamed, one at a time).
        embedder, estimator, landmarks: per-frame measurement functions returning None when no face is found.
        compare, identity_measure: how two embeddings compare (dlib distance by default; ``cosine_similarity``
            with ``arcface_embedder``) and the name the report gives it.

    Raises:
        NoFaceError: no face in the source. InputError: outputs and drivers of different lengths.
    """
    reference = embedder(source)
    if reference is None:
        raise NoFaceError("evaluate: no face found in the source image")
    distances, pose_errors, expr_errors, points = [], [], [], []
    frames = 0
    outputs, drivers = iter(outputs), iter(drivers)
    for out in outputs:
        drv = next(drivers, None)
        if drv is None:
            raise InputError(f"evaluate: the output has more frames than the driver's {count(frames, 'frame')}")
        frames += 1
        descriptor = embedder(out)
        if descriptor is not None:
            distances.append(compare(reference, descriptor))
        p_out, p_drv = estimator(out), estimator(drv)
        if p_out is not None and p_drv is not None:
            pose_errors.append(float(pose_error_deg(p_out, p_drv)[0]))
            expr_errors.append(float(expression_error(p_out, p_drv)[0]))
        lms = landmarks(out)
        if lms is not None:
            points.append(np.asarray(lms, np.float64))
    if next(drivers, None) is not None:
        raise InputError(f"evaluate: the output ends after {count(frames, 'frame')}, before the driver")
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    jitter = landmark_jitter(np.stack(points)) if len(points) >= JITTER_MIN_FRAMES else None
    return EvaluationReport(frames, mean(distances), len(distances), mean(pose_errors), mean(expr_errors),
                            len(pose_errors), jitter, identity_measure)
