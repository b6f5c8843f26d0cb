"""Face Align: one person's face found, tracked, smoothed and cropped in every frame (the method's 256-px crop).

The frames are aligned as a driving session aligns its driver (``reenact_core.faces.alignment.FaceAligner``), so
the granular nodes downstream compute what the engine computes. Frames without the tracked face give no crop;
REENACT_ALIGN keeps the frame index of every crop and the no-face policy, from which Paste Back restores one
output frame per input frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from comfy_api.v0_0_2 import io

from .common import CATEGORY, Align, combo, comfy_to_frames, frames_to_comfy, number, progress_and_interrupt

if TYPE_CHECKING:
    from reenact_core.faces.reference_crop import CropTransform

INDEX = "index"   # the face choice that takes face_index (the others are reenact_core.options.FACE's)


@dataclass(frozen=True, eq=False)
class Alignment:
    """What Face Align found in a batch of frames (the REENACT_ALIGN value).

    Attributes:
        frame_count: frames given.
        frame_hw: ``(height, width)`` of the frames, in pixels.
        indices: (N,) int64 frame index of each aligned face, increasing (the frames with the tracked face).
        transforms: N crop transforms, where each 256-px crop lies in its frame.
        landmarks: (N, 68, 2) float32 smoothed iBUG-68 points ``(x, y)`` in frame pixels.
        kpt68: (N, 68, 2) float32 the same points in crop pixels.
        no_face: ``"raise"``, ``"pass"`` or ``"hold"``: what the frames without a face become (see
            :meth:`frame_rows`).
        fps: frame rate the landmarks were smoothed at, passed on to the parameter smoothing.
    """

    frame_count: int
    frame_hw: tuple[int, int]
    indices: np.ndarray
    transforms: tuple[CropTransform, ...]
    landmarks: np.ndarray
    kpt68: np.ndarray
    no_face: str
    fps: float

    def __len__(self) -> int:
        return len(self.indices)

    def frame_rows(self) -> np.ndarray:
        """The aligned face each frame shows: (frame_count,) int64 row into the N faces, −1 for none
        (``reenact_core.engine.frame_rows`` under this alignment's no-face policy)."""
        from reenact_core.engine.plan import frame_rows

        return frame_rows(np.isin(np.arange(self.frame_count), self.indices), self.no_face)

    def check_frames(self, images, what: str) -> None:
        """Raises InputError unless IMAGE ``images`` ``[B, H, W, C]`` holds this alignment's frames."""
        from reenact_core.errors import InputError

        if images.shape[0] != self.frame_count or tuple(images.shape[1:3]) != tuple(self.frame_hw):
            raise InputError(f"{what} holds {images.shape[0]} frames of {images.shape[2]}×{images.shape[1]} px; "
                             f"the alignment was made on {self.frame_count} of "
                             f"{self.frame_hw[1]}×{self.frame_hw[0]} px: give it the images Face Align was given")

    def check_crops(self, crops, what: str) -> None:
        """Raises InputError unless IMAGE ``crops`` holds one 256-px crop per aligned face."""
        from reenact_core.errors import InputError
        from reenact_core.faces.reference_crop import CROP_SIZE

        if crops.shape[0] != len(self) or (len(self) and tuple(crops.shape[1:3]) != (CROP_SIZE, CROP_SIZE)):
            raise InputError(f"{what} holds {crops.shape[0]} images of {crops.shape[2]}×{crops.shape[1]} px; "
                             f"the alignment has {len(self)} faces of {CROP_SIZE}×{CROP_SIZE} px")


class LatentReenactFaceAlign(io.ComfyNode):
    """Finds one person's face in every frame and crops it as the method's 256-px reference crop."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core import options
        from reenact_core.landmarks import DEFAULT_BACKEND, backend_names

        return io.Schema(
            node_id="LatentReenactFaceAlign",
            display_name="Face Align (Latent Reenact)",
            category=CATEGORY,
            description="Detects faces and their 68 landmarks, follows one person through the frames, smooths the "
                        "landmarks over time and cuts the 256-px face crop the models work on (the reference "
                        "method's crop). Frames without the face give no crop; Paste Back restores them.",
            inputs=[
                io.Image.Input("image", tooltip="A portrait, or the frames of a video as a batch"),
                io.Combo.Input("backend", options=list(backend_names()), default=DEFAULT_BACKEND,
                               tooltip="Face detector and 68-point landmarks: dlib (built in; its landmark model "
                                       "was trained on iBUG 300-W, not licensed for commercial use) or "
                                       "face-alignment (FAN, as the paper; the optional face-alignment package "
                                       "and its weights must be installed)"),
                io.Combo.Input("face", options=[*options.FACE.choices, INDEX], default=options.FACE.default,
                               tooltip="Which face to follow, chosen on the first frame that has one: the "
                                       "largest, the most confident detection, or the one at face_index from the "
                                       "left; later frames keep the same person"),
                number(options.FACE_INDEX, tooltip="With face = index: position of the face from the left "
                                                   "(0 = leftmost)"),
                combo(options.NO_FACE, tooltip="Frames without the face: raise stops with an error naming the "
                                               "frame; pass leaves them unchanged at Paste Back; hold repeats the "
                                               "previous face's result there (frames before the first face get "
                                               "the first)"),
                number(options.SMOOTHING, tooltip="Temporal smoothing of the landmarks (One-Euro filter; 0 = off, "
                                                  "1 = heaviest); no effect on a single image"),
                number(options.FPS, tooltip="Frame rate of the frames (link Get Video Components' fps); sets the "
                                            "smoothing's time constants here and in Apply Directions"),
            ],
            outputs=[
                io.Image.Output(display_name="aligned", tooltip="One 256×256 face crop per frame with the face, "
                                                                 "in frame order"),
                Align.Output(display_name="align", tooltip="Where each crop lies in its frame, its landmarks, the "
                                                          "frame index of each crop, the frame count and size, and "
                                                          "the no-face policy"),
            ],
        )

    @classmethod
    def execute(cls, image, backend, face, face_index, no_face, smoothing, fps) -> io.NodeOutput:
        from reenact_core.errors import NoFaceError
        from reenact_core.faces.alignment import FaceAligner
        from reenact_core.faces.geometry import NUM_POINTS
        from reenact_core.faces.reference_crop import CROP_SIZE

        frames = comfy_to_frames(image)
        aligner = FaceAligner(face_index if face == INDEX else face, no_face, smoothing, fps, backend)
        progress = progress_and_interrupt(len(frames))
        faces = []
        for frame in frames:
            progress.check()
            aligned = aligner(frame)
            if aligned is not None:
                faces.append(aligned)
            progress.update()
        if not faces and no_face == "hold":
            raise NoFaceError(f"no face found in any of the {len(frames)} frames")
        alignment = Alignment(
            frame_count=len(frames), frame_hw=tuple(image.shape[1:3]),
            indices=np.array([f.index for f in faces], np.int64), transforms=tuple(f.transform for f in faces),
            landmarks=np.stack([f.landmarks for f in faces]) if faces else np.zeros((0, NUM_POINTS, 2), np.float32),
            kpt68=np.stack([f.kpt68 for f in faces]) if faces else np.zeros((0, NUM_POINTS, 2), np.float32),
            no_face=no_face, fps=float(fps))
        crops = np.stack([f.crop for f in faces]) if faces else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        return io.NodeOutput(frames_to_comfy(crops), alignment)


NODES = [LatentReenactFaceAlign]
