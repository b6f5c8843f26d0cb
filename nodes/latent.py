"""The source in W+ and back: Invert to W+ (with optional generator tuning and a saved copy), Load Source, and
StyleGAN2 Decode of the codes the direction nodes make.

Codes are decoded in the windows a driving session batches them in (``reenact_core.engine.windows`` of
``batch_size`` consecutive frame indices), so with the same batch size the images are those of the engine's
``drive`` and ``edit`` bit for bit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import folder_paths
import numpy as np
import torch
from comfy_api.v0_0_2 import io

from . import MODEL_FOLDER_KEY
from .common import (CATEGORY, Align, Deca, Encoder, Generator, Latent, ModelHandle, Progress, Source,
                     comfy_to_frames, frames_to_comfy, interruptible, number, reenact_models)
from .reenact import BATCH_TOOLTIP

if TYPE_CHECKING:
    from reenact_core.engine import PreparedSource

SOURCES_FOLDER = "reenact_sources"  # prepared sources are saved to and loaded from <output>/reenact_sources/
SOURCE_SUFFIX = ".safetensors"


@dataclass(frozen=True, eq=False)
class LatentBatch:
    """W+ codes to decode (the REENACT_LATENT value): the source's code w_s shifted by A(Δp) on rows 0..L−1.

    Attributes:
        source: the prepared source (its w_s, mean latent w̄ and tuned layers).
        delta_p: (N, 15) float32 Δp, one code each.
        directions: the handle of A, which maps Δp to the W+ shift.
        indices: (N,) int64 frame index of each code (the driver frame, or the edit's number): codes are decoded
            in the same batches as a driving session's.
        fsr: the refinement encoder E_F that FSR Refine attached (StyleGAN2 Decode computes Δf per batch with
            it), or None.
    """

    source: PreparedSource
    delta_p: torch.Tensor
    directions: ModelHandle
    indices: np.ndarray
    fsr: ModelHandle | None = None

    def __len__(self) -> int:
        return len(self.indices)


def stored_source(source: PreparedSource) -> PreparedSource:
    """The source as nodes pass it on: on ComfyUI's intermediate device in float32 (exact for fp16/bf16 codes)."""
    import comfy.model_management as mm

    return source.to(mm.intermediate_device(), torch.float32)


def sources_dir() -> str:
    return os.path.join(folder_paths.get_output_directory(), SOURCES_FOLDER)


def source_files() -> list[str]:
    """The prepared-source files in <output>/reenact_sources/, sorted."""
    folder = sources_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder)
                  if f.endswith(SOURCE_SUFFIX) and os.path.isfile(os.path.join(folder, f)))


def check_save_name(name: str) -> str | None:
    """Why ``name`` cannot name a saved source (a plain file name), or None when it can (empty: do not save)."""
    if name and (os.path.basename(name) != name or name in (".", "..") or "\\" in name):
        return f"save_as must be a plain file name (saved in output/{SOURCES_FOLDER}/), got {name!r}"
    return None


class LatentReenactInvert(io.ComfyNode):
    """Prepares the source face: e4e inversion to W+, its DECA parameters, optionally G tuned to it."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core import options

        return io.Schema(
            node_id="LatentReenactInvert",
            display_name="Invert to W+ (Latent Reenact)",
            category=CATEGORY,
            description="Inverts one face found by Face Align into StyleGAN2's W+ space with the e4e encoder, "
                        "measures its head pose and expression with DECA, and optionally tunes the generator's "
                        "32–256 px layers to it (the paper's 'w/ opt.'; the shared generator is never changed). "
                        f"Can save the result to output/{SOURCES_FOLDER}/ for Load Source.",
            inputs=[
                io.Image.Input("image", tooltip="The image(s) given to Face Align: the face is inverted from its "
                                                "frame, which is also the background the face is rendered into"),
                Align.Input("align", tooltip="Face Align's alignment of that image"),
                Generator.Input("generator", tooltip="StyleGAN2 generator G: its mean latent, and the layers tuned "
                                                     "when tune_steps > 0"),
                Encoder.Input("encoder", tooltip="e4e encoder that inverts the 256-px crop to W+"),
                Deca.Input("deca", tooltip="DECA encoder measuring the source's head pose and expression"),
                io.Int.Input("face", default=0, min=0, max=1_000_000,
                             tooltip="Which aligned face to invert: 0 = the first frame with a face, 1 = the next…"),
                number(options.TUNE_STEPS, default=options.EDIT_TUNE_STEPS,
                       tooltip="Steps tuning G's upper layers to this face for a closer likeness. 0 (default) "
                               "= e4e alone, as the paper edits; the paper reenacts with 200. Slow on a CPU "
                               "with the full-size models (seconds a step). Uses lpips-alex.safetensors from "
                               f"models/{MODEL_FOLDER_KEY}/ when present, else the pixel loss alone"),
                io.String.Input("save_as", default="",
                                tooltip=f"File name to save the prepared source under output/{SOURCES_FOLDER}/ "
                                        f"('{SOURCE_SUFFIX}' added), for Load Source; empty = do not save"),
            ],
            outputs=[Source.Output(display_name="source", tooltip="The prepared source: its W+ code, DECA "
                                   "parameters, crop, place in its image and tuned layers")],
        )

    @classmethod
    def validate_inputs(cls, save_as: str) -> bool | str:
        return check_save_name(save_as) or True

    @classmethod
    def execute(cls, image, align, generator, encoder, deca, face, tune_steps, save_as) -> io.NodeOutput:
        from reenact_core.engine import prepare_source, save_source
        from reenact_core.errors import InputError, NoFaceError
        from reenact_core.weights import find_lpips

        align.check_frames(image, "image")
        if not len(align):
            raise NoFaceError("Face Align found no face to invert")
        if face >= len(align):
            raise InputError(f"face {face} asked for, Face Align found {len(align)}")
        models = reenact_models(generator, encoder, deca, None)
        index = int(align.indices[face])
        frame = comfy_to_frames(image[index:index + 1])[0]
        folders = folder_paths.get_folder_paths(MODEL_FOLDER_KEY)
        lpips = find_lpips(folders, device=models.device) if tune_steps else None
        progress = Progress(tune_steps)
        with interruptible():
            source = prepare_source(frame, models, landmarks=align.landmarks[face], tune_steps=tune_steps,
                                    lpips=lpips, should_stop=progress.should_stop,
                                    progress=lambda step, total, eta, loss: progress.update_absolute(step, total))
        source = stored_source(source)
        if save_as:
            name = save_as if save_as.endswith(SOURCE_SUFFIX) else save_as + SOURCE_SUFFIX
            save_source(source, os.path.join(sources_dir(), name))
        return io.NodeOutput(source)


class LatentReenactLoadSource(io.ComfyNode):
    """Loads a prepared source saved by Invert to W+."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentReenactLoadSource",
            display_name="Load Source (Latent Reenact)",
            category=CATEGORY,
            description=f"Loads a prepared source (W+ code, DECA parameters, tuned layers, image) saved by Invert "
                        f"to W+ in output/{SOURCES_FOLDER}/, so inversion and tuning are not repeated.",
            inputs=[io.Combo.Input("source_file", options=source_files(),
                                   tooltip=f"A prepared source in output/{SOURCES_FOLDER}/")],
            outputs=[
                Source.Output(display_name="source", tooltip="The prepared source as it was saved"),
                io.Image.Output(display_name="image", tooltip="The source's image, the background to paste its "
                                                              "rendered faces into"),
            ],
        )

    @classmethod
    def validate_inputs(cls, source_file: str) -> bool | str:
        if source_file not in source_files():
            return f"prepared source '{source_file}' not found in {sources_dir()}"
        return True

    @classmethod
    def fingerprint_inputs(cls, source_file: str):
        path = os.path.join(sources_dir(), source_file)
        return (source_file, os.stat(path).st_mtime_ns if os.path.isfile(path) else None)

    @classmethod
    def execute(cls, source_file) -> io.NodeOutput:
        from reenact_core.engine import load_source

        source = stored_source(load_source(os.path.join(sources_dir(), source_file)))
        return io.NodeOutput(source, frames_to_comfy([source.image]))


class LatentReenactDecode(io.ComfyNode):
    """Renders W+ codes with StyleGAN2 into 256-px face crops."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core import options

        return io.Schema(
            node_id="LatentReenactDecode",
            display_name="StyleGAN2 Decode (Latent Reenact)",
            category=CATEGORY,
            description="Renders each W+ code with the generator (with the source's tuned layers when it was "
                        "tuned, refined by the FSR encoder when FSR Refine attached one) into a 256×256 face crop; "
                        "Paste Back puts the crops into their images.",
            inputs=[
                Latent.Input("latent", tooltip="W+ codes from Apply Directions or Edit Directions"),
                Generator.Input("generator", tooltip="StyleGAN2 generator G"),
                number(options.TRUNCATION),
                number(options.BATCH_SIZE, optional=True, tooltip=BATCH_TOOLTIP),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="One 256×256 face crop per code")],
        )

    @classmethod
    def execute(cls, latent, generator, truncation, batch_size=None) -> io.NodeOutput:
        from reenact_core.engine import fsr_context, render, windows
        from reenact_core.options import BATCH_SIZE

        models = reenact_models(generator, None, None, latent.directions, latent.fsr)
        generator, directions, fsr = models.generator.module, models.directions.module, models.refiner
        context = None if fsr is None else fsr_context(generator, fsr, latent.source, truncation)
        progress = Progress(len(latent))
        crops = []
        for rows in windows(latent.indices, batch_size or BATCH_SIZE.default):
            progress.check()
            crops.append(render(directions, generator, latent.source, latent.delta_p[rows], fsr=fsr,
                                truncation=truncation, paste=False, context=context).crops)
            progress.update(rows.stop - rows.start)
        return io.NodeOutput(frames_to_comfy(np.concatenate(crops) if crops else []))


NODES = [LatentReenactInvert, LatentReenactLoadSource, LatentReenactDecode]
