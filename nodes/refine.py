"""FSR Refine: attaches the feature-space refinement encoder E_F to W+ codes, so that StyleGAN2 Decode renders them
refined (``f_k ← f_k + E_F(cat[x_s, x_s − G_ψ(w_s), G_ψ(w_r)])``, IJCV 2024's hair and background restoration)."""
from __future__ import annotations

import dataclasses

from comfy_api.v0_0_2 import io

from .common import CATEGORY, FSR, Generator, Latent


class LatentReenactFSRRefine(io.ComfyNode):
    """Refines decoded faces with the FSR encoder (checked against the generator now, applied by Decode)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentReenactFSRRefine",
            display_name="FSR Refine (Latent Reenact)",
            category=CATEGORY,
            description="Feature-space refinement (the IJCV version of the method): an encoder looks at the source "
                        "crop, what its inversion misses and the reenacted face, and shifts one generator feature "
                        "map to restore hair and background. StyleGAN2 Decode applies it, a batch of frames at a "
                        "time. The FSR file must have been trained for this generator.",
            inputs=[
                Latent.Input("latent", tooltip="W+ codes from Apply Directions or Edit Directions"),
                Generator.Input("generator", tooltip="The StyleGAN2 generator Decode will use: the FSR file must "
                                                     "have been made for it"),
                FSR.Input("fsr", tooltip="The FSR refinement encoder (Load FSR Encoder)"),
            ],
            outputs=[Latent.Output(display_name="latent", tooltip="The same codes, decoded with the refinement")],
        )

    @classmethod
    def execute(cls, latent, generator, fsr) -> io.NodeOutput:
        from reenact_core.weights.identity import check_made_for

        check_made_for(fsr.model, generator.model)
        return io.NodeOutput(dataclasses.replace(latent, fsr=fsr))


NODES = [LatentReenactFSRRefine]
