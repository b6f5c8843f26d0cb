"""Head pose and expression: Extract 3DMM Params (DECA on aligned faces), Apply Directions (a driver's motion as
Δp, the engine's ``DriverMotion``) and Edit Directions (named sliders, the engine's ``edit_delta_p``).

DECA and the Δp smoothing run in the windows a driving session uses (``reenact_core.engine.windows`` of
``batch_size`` frames), in frame order, so with the same batch size Apply Directions gives the session's Δp bit
for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from .common import (CATEGORY, Align, Deca, Directions, Latent, Params, Progress, Source, combo, comfy_to_frames,
                     number, reenact_models)
from .latent import LatentBatch, stored_source
from .reenact import BATCH_TOOLTIP

if TYPE_CHECKING:
    from .align import Alignment

ANGLE_STEP_DEG = 0.5
VALUE_STEP = 0.01


@dataclass(frozen=True, eq=False)
class FaceCodes:
    """DECA codes of aligned faces (the REENACT_PARAMS value).

    Attributes:
        codes: (N, 236) float32 DECA E_flame codes, one per aligned face, on ComfyUI's intermediate device.
        alignment: the faces' alignment (frame indices, frame count, no-face policy, fps).
    """

    codes: torch.Tensor
    alignment: Alignment

    def __len__(self) -> int:
        return len(self.codes)


class LatentReenactExtractParams(io.ComfyNode):
    """Measures head pose and expression of aligned faces with DECA."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core.options import BATCH_SIZE

        return io.Schema(
            node_id="LatentReenactExtractParams",
            display_name="Extract 3DMM Params (Latent Reenact)",
            category=CATEGORY,
            description="Runs DECA on every face crop of Face Align (its 224-px crop from the landmarks) and keeps "
                        "its codes: head pose (yaw, pitch, roll), jaw opening and expression coefficients.",
            inputs=[
                io.Image.Input("aligned", tooltip="Face Align's 256-px crops (e.g. of the driving video)"),
                Align.Input("align", tooltip="Face Align's alignment of those crops"),
                Deca.Input("deca", tooltip="DECA encoder"),
                number(BATCH_SIZE, optional=True, tooltip=BATCH_TOOLTIP),
            ],
            outputs=[Params.Output(display_name="params", tooltip="DECA codes per aligned face, with the frame "
                                                                   "index of each")],
        )

    @classmethod
    def execute(cls, aligned, align, deca, batch_size=None) -> io.NodeOutput:
        import comfy.model_management as mm
        from reenact_core.engine import estimate_codes, windows
        from reenact_core.options import BATCH_SIZE
        from reenact_core.faces.images import to_uint8_rgb
        from reenact_core.models.deca import N_CODES

        align.check_crops(aligned, "aligned")
        models = reenact_models(None, None, deca, None)
        crops = np.stack([to_uint8_rgb(f) for f in comfy_to_frames(aligned)]) if len(align) else None
        progress = Progress(len(align))
        codes = [torch.zeros(0, N_CODES)]
        for rows in windows(align.indices, batch_size or BATCH_SIZE.default):
            progress.check()
            codes.append(estimate_codes(models.deca.module, crops[rows], align.kpt68[rows]).cpu())
            progress.update(rows.stop - rows.start)
        return io.NodeOutput(FaceCodes(torch.cat(codes).to(mm.intermediate_device()), align))


class LatentReenactApplyDirections(io.ComfyNode):
    """Moves the source with a driver's head pose and expression."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core import options

        return io.Schema(
            node_id="LatentReenactApplyDirections",
            display_name="Apply Directions (Latent Reenact)",
            category=CATEGORY,
            description="Turns the driver's head pose and expression, frame by frame, into Δp, the input of the "
                        "learned directions A, and gives the source's W+ codes shifted by A(Δp) for StyleGAN2 "
                        "Decode.",
            inputs=[
                Source.Input("source", tooltip="The prepared source (Invert to W+ or Load Source)"),
                Params.Input("params", tooltip="The driver's DECA codes (Extract 3DMM Params)"),
                Directions.Input("directions", tooltip="Directions matrix A mapping Δp to a W+ shift"),
                combo(options.MODE),
                io.Boolean.Input("pose", default=True, tooltip="Transfer the head pose (yaw, pitch, roll)"),
                io.Boolean.Input("expression", default=True,
                                 tooltip="Transfer the jaw and the 11 expression coefficients"),
                number(options.STRENGTH),
                number(options.SMOOTHING,
                       tooltip="Temporal smoothing of the driver's parameters (One-Euro in Δp units, at Face "
                               "Align's fps; 0 = off); the same value as Face Align's smoothing gives what Reenact "
                               "does"),
                number(options.BATCH_SIZE, optional=True, tooltip=BATCH_TOOLTIP),
            ],
            outputs=[Latent.Output(display_name="latent", tooltip="One W+ code per driver face (the source's code "
                                                                   "shifted by A(Δp)), for StyleGAN2 Decode")],
        )

    @classmethod
    def execute(cls, source, params, directions, mode, pose, expression, strength, smoothing,
                batch_size=None) -> io.NodeOutput:
        from reenact_core.engine import DriveOptions, DriverMotion, windows
        from reenact_core.params import NUM_DIRECTIONS

        models = reenact_models(None, None, None, directions)
        options = DriveOptions(mode=mode, pose=pose, expression=expression, strength=strength, smoothing=smoothing)
        on_device = source.to(models.device, models.dtype)
        motion = DriverMotion(on_device.params, models.normaliser, options, fps=params.alignment.fps)
        delta_p = [torch.zeros(0, NUM_DIRECTIONS)]
        for rows in windows(params.alignment.indices, batch_size or options.batch_size):
            delta_p.append(motion(params.codes[rows].to(models.device)).cpu())
        return io.NodeOutput(LatentBatch(stored_source(source), torch.cat(delta_p), directions,
                                         params.alignment.indices))


def _slider(name: str) -> io.Float.Input:
    from reenact_core.engine import DIRECTION_NAMES, edit_limit
    from reenact_core.params import POSE_DIRECTIONS

    limit = edit_limit(name)
    if name in DIRECTION_NAMES[POSE_DIRECTIONS]:
        what = f"Head {name} in degrees (A was trained on ±{limit / 2:g}°)"
        step = ANGLE_STEP_DEG
    elif name == "jaw":
        what = "Jaw opening in radians (DECA pose[3])"
        step = VALUE_STEP
    else:
        what = f"FLAME expression coefficient {name[4:]}" + (" (smile)" if name == "exp_00" else "")
        step = VALUE_STEP
    return io.Float.Input(name, default=0.0, min=-limit, max=limit, step=step,
                          tooltip=f"{what}: the change (offset) or the value (target)")


class LatentReenactEditDirections(io.ComfyNode):
    """Edits the source's head pose and expression with named sliders."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core.engine import DIRECTION_NAMES
        from reenact_core.options import EDIT_MODE

        return io.Schema(
            node_id="LatentReenactEditDirections",
            display_name="Edit Directions (Latent Reenact)",
            category=CATEGORY,
            description="Turns the head and changes the expression of the source along the learned directions: "
                        "yaw, pitch, roll in degrees, jaw opening in radians, FLAME expression coefficients.",
            inputs=[
                Source.Input("source", tooltip="The prepared source (Invert to W+ or Load Source)"),
                Directions.Input("directions", tooltip="Directions matrix A mapping Δp to a W+ shift"),
                io.Combo.Input("mode", options=list(EDIT_MODE.choices), default=EDIT_MODE.default,
                               tooltip="offset: each slider is added to the source's own value (all 0 = the source "
                                       "unedited); target: each slider is the value the face takes (all 0 = "
                                       "frontal, mouth closed, neutral)"),
                *(_slider(name) for name in DIRECTION_NAMES),
            ],
            outputs=[Latent.Output(display_name="latent", tooltip="The edited W+ code, for StyleGAN2 Decode")],
        )

    @classmethod
    def execute(cls, source, directions, mode, **values) -> io.NodeOutput:
        from reenact_core.engine import edit_delta_p

        models = reenact_models(None, None, None, directions)
        delta_p = edit_delta_p(source.to(models.device, models.dtype).params, values, mode,
                               normaliser=models.normaliser)
        return io.NodeOutput(LatentBatch(stored_source(source), delta_p.cpu(), directions,
                                         np.arange(len(delta_p), dtype=np.int64)))


NODES = [LatentReenactExtractParams, LatentReenactApplyDirections, LatentReenactEditDirections]
