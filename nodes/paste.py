"""Paste Back: 256-px face crops put back into their images with a soft edge (``reenact_core.faces.paste_back``),
one output frame per frame Face Align was given."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from .common import CATEGORY, Align, Progress, Source, comfy_to_frames, frames_to_comfy, masks_to_comfy


class LatentReenactPasteBack(io.ComfyNode):
    """Puts generated face crops back into their images."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core.faces.paste_back import DEFAULT_FEATHER

        return io.Schema(
            node_id="LatentReenactPasteBack",
            display_name="Paste Back (Latent Reenact)",
            category=CATEGORY,
            description="Blends each 256-px face crop into its image where its face was cut out, with a soft edge. "
                        "With an alignment, gives one frame per frame Face Align was given: frames without a face "
                        "are left unchanged (no_face = pass) or show the previous face (hold). Reenactment: the "
                        "driver's align, the source, and the source image as background.",
            inputs=[
                io.Image.Input("image", tooltip="The 256-px face crops (StyleGAN2 Decode, or any processing of Face "
                                                "Align's crops), one per aligned face"),
                io.Image.Input("background", tooltip="The image(s) to paste into: one image for every frame (e.g. "
                                                     "the source image), or one per frame"),
                Align.Input("align", optional=True,
                            tooltip="The alignment the crops follow (e.g. the driver's): which frame each crop "
                                    "belongs to and what frames without a face become; without source, also where "
                                    "each crop goes in its frame. Without it: one frame per crop"),
                Source.Input("source", optional=True,
                             tooltip="Paste every crop where this source's face was cut out (reenactment and "
                                     "editing: the background is the source image)"),
                io.Float.Input("feather", default=DEFAULT_FEATHER, min=0.0, max=128.0, step=1.0,
                               tooltip="Width of the soft edge in crop pixels (of 256; 0 = hard edge)"),
                io.Boolean.Input("color_match", default=False,
                                 tooltip="Match the faces' colours to the background under the mask before pasting "
                                         "(mean and spread per CIE Lab channel)"),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The background with the faces pasted in, one frame per "
                                                              "aligned frame (or per crop without an alignment)"),
                io.Mask.Output(display_name="mask", tooltip="Blend weight of the pasted face per pixel, 0..1 (0 where "
                                                            "the background is unchanged)"),
            ],
        )

    @classmethod
    def execute(cls, image, background, feather, color_match, align=None, source=None) -> io.NodeOutput:
        import numpy as np
        from reenact_core.errors import InputError
        from reenact_core.faces.paste_back import paste_back

        if align is None and source is None:
            raise InputError("Paste Back needs align or source (or both) to know where the faces go")
        crops = comfy_to_frames(image)
        faces = len(align) if align is not None else len(crops)
        if len(crops) != faces:
            raise InputError(f"image holds {len(crops)} crops, the alignment has {faces} faces")
        rows = align.frame_rows() if align is not None else np.arange(faces)
        if source is not None:
            frame_hw, transforms = source.transform.frame_hw, [source.transform] * faces
        else:
            frame_hw, transforms = align.frame_hw, align.transforms
        if background.shape[0] not in (1, len(rows)) or tuple(background.shape[1:3]) != tuple(frame_hw):
            raise InputError(f"background holds {background.shape[0]} images of {background.shape[2]}×"
                             f"{background.shape[1]} px; the faces go into 1 or {len(rows)} images of "
                             f"{frame_hw[1]}×{frame_hw[0]} px")
        backgrounds = comfy_to_frames(background)
        progress = Progress(len(rows))
        frames, masks, done = [], [], {}
        for i, row in enumerate(rows):
            progress.check()
            b = 0 if len(backgrounds) == 1 else i
            if (b, row) not in done:   # a held face on a shared background is the same frame again
                done[b, row] = ((backgrounds[b], np.zeros(frame_hw, np.float32)) if row < 0 else
                                paste_back(backgrounds[b], crops[row], transforms[row].crop_to_frame_matrix(),
                                           feather=feather, color_match=color_match))
            frames.append(done[b, row][0])
            masks.append(done[b, row][1])
            progress.update()
        return io.NodeOutput(frames_to_comfy(frames), masks_to_comfy(masks))


NODES = [LatentReenactPasteBack]
