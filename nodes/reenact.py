"""All-in-one reenactment: a source portrait driven by IMAGE frames ("Reenact") or by a video streamed from file to
file ("Reenact Video"), through reenact_core's DriveSession, with the options of the command line."""
from __future__ import annotations

import os
import uuid

import folder_paths
import numpy as np
from comfy_api.v0_0_2 import io

from . import MODEL_FOLDER_KEY
from .common import (CATEGORY, FSR, Deca, Directions, Encoder, Generator, Progress, combo, comfy_to_frames,
                     frames_to_comfy, interruptible, masks_to_comfy, number, reenact_models)

BATCH_TOOLTIP = ("Frames per network batch: DECA, A and G run on windows of this many consecutive frames (more is "
                 "faster on a GPU and uses more memory); the step-by-step nodes give the same frames with the same "
                 "batch_size")



def _model_inputs() -> list:
    return [
        Generator.Input("generator", tooltip="StyleGAN2 generator G (Load StyleGAN2 Generator)"),
        Encoder.Input("encoder", tooltip="e4e encoder that inverts the source crop to W+ (Load e4e Encoder)"),
        Deca.Input("deca", tooltip="DECA encoder measuring head pose and expression (Load DECA Encoder)"),
        Directions.Input("directions", tooltip="Directions matrix A mapping Δp to a W+ shift (Load Directions A)"),
    ]


def _drive_inputs() -> list:
    """Widgets shared by both nodes, in their order (a saved workflow's widget values follow it)."""
    from reenact_core import options

    return [
        combo(options.MODE),
        io.Boolean.Input("pose", default=True, tooltip="Transfer the head pose (yaw, pitch, roll)"),
        io.Boolean.Input("expression", default=True, tooltip="Transfer the jaw and the 11 expression coefficients"),
        number(options.STRENGTH),
        number(options.SMOOTHING),
        combo(options.NO_FACE),
        number(options.TUNE_STEPS, default=options.AUTO_STEPS, min=options.AUTO_STEPS,
               tooltip="Steps tuning G's upper layers to the source, for a closer likeness (the paper: 200; "
                       "0 = off; -1 = auto: 0 for an encoder and directions trained together by `train joint`, "
                       "else 200). Slow on a CPU: with the full-size models about 0.7 s a step on 2 cores, more "
                       "with LPIPS (200 steps ≈ 2.5–3 min); far faster on a GPU. Uses lpips-alex.safetensors from "
                       "models/reenact/ when present, else the pixel loss alone"),
        io.Boolean.Input("paste_back", default=True,
                         tooltip="Paste each rendered face into the source image (off: output the 256-px crops)"),
        io.Boolean.Input("color_match", default=False,
                         tooltip="Match the rendered faces' colours to the source image before pasting"),
        number(options.TRUNCATION),
        number(options.BATCH_SIZE, tooltip=BATCH_TOOLTIP),
    ]


def _fsr_input() -> io.Input:
    return FSR.Input("fsr", optional=True, tooltip="Optional FSR refinement encoder (Load FSR Encoder), trained for "
                                                   "this generator: restores hair and background")


def _face_inputs() -> list:
    from reenact_core.landmarks import DEFAULT_BACKEND, backend_names
    from reenact_core.options import FACE

    return [
        io.Combo.Input("source_face", options=list(FACE.choices), default=FACE.default,
                       tooltip="Which face of the source image to animate when it holds several: the largest or "
                               "the most confident detection"),
        io.Combo.Input("backend", options=list(backend_names()), default=DEFAULT_BACKEND,
                       tooltip="Face detector and 68-point landmarks: dlib (built in) or face-alignment (FAN; the "
                               "optional face-alignment package and its weights must be installed)"),
    ]


def _options(mode, pose, expression, strength, smoothing, no_face, paste_back, color_match, truncation, batch_size,
             backend):
    from reenact_core.engine import DriveOptions

    return DriveOptions(mode=mode, pose=pose, expression=expression, strength=strength, smoothing=smoothing,
                        no_face=no_face, backend=backend, paste_back=paste_back, color_match=color_match,
                        truncation=truncation, batch_size=batch_size)


def _tune_steps(value: int, models) -> int:
    """The widget's steps, with -1 (auto) resolved by the library from the encoder and directions files."""
    from reenact_core.engine.pairing import resolve_tune_steps

    return resolve_tune_steps(value, models.e4e, models.directions)


def _prepare(models, image: np.ndarray, source_face: str, backend: str, tune_steps: int, progress: Progress):
    """The prepared source of ``image`` ((H, W, 3) float32 in [0, 1] or uint8); tuning moves ``progress`` and stops
    on Cancel."""
    from reenact_core.engine import prepare_source
    from reenact_core.weights import find_lpips

    lpips = find_lpips(folder_paths.get_folder_paths(MODEL_FOLDER_KEY), device=models.device) if tune_steps else None
    return prepare_source(image, models, select=source_face, backend=backend,
                          tune_steps=tune_steps, lpips=lpips,
                          progress=lambda step, total, eta, loss: progress.update_absolute(step),
                          should_stop=progress.should_stop)


class LatentReenactReenact(io.ComfyNode):
    """Reenact a source portrait with a batch of driving frames (IMAGE in, IMAGE out)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core import options

        return io.Schema(
            node_id="LatentReenactReenact",
            display_name="Reenact (Latent Reenact)",
            category=CATEGORY,
            description="Animates the face of the source image with the head pose and expression of every driving "
                        "frame: e4e inversion to W+, DECA parameters, learned directions, StyleGAN2, paste-back. "
                        "For long videos use Reenact Video, which streams from file to file.",
            inputs=[
                io.Image.Input("source", tooltip="Source portrait; of a batch, the first image is used"),
                io.Image.Input("driving", tooltip="Driving frames (a batch, e.g. from Get Video Components)"),
                *_model_inputs(),
                *_drive_inputs(),
                number(options.FPS, tooltip="Frame rate of the driving frames (link Get Video Components' fps); "
                                            "sets the smoothing's time constants"),
                *_face_inputs(),
                _fsr_input(),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="One output frame per driving frame: the source "
                                "image with the reenacted face pasted in (or the 256-px crops without paste-back)"),
                io.Mask.Output(display_name="masks", tooltip="Where each face was pasted, blend weights in 0..1 "
                               "(all ones at 256 px without paste-back)"),
                io.Image.Output(display_name="crops", tooltip="The rendered 256-px face crops"),
            ],
        )

    @classmethod
    def execute(cls, source, driving, generator, encoder, deca, directions, mode, pose, expression, strength,
                smoothing, no_face, tune_steps, paste_back, color_match, truncation, batch_size, fps, source_face,
                backend, fsr=None) -> io.NodeOutput:
        from reenact_core.engine import DrivenChunk, DriveSession

        drive_options = _options(mode, pose, expression, strength, smoothing, no_face, paste_back, color_match,
                                 truncation, batch_size, backend)
        models = reenact_models(generator, encoder, deca, directions, fsr)
        tune_steps = _tune_steps(tune_steps, models)
        frames = comfy_to_frames(driving)
        progress = Progress(tune_steps + len(frames))
        with interruptible():
            prepared = _prepare(models, comfy_to_frames(source[:1])[0], source_face, backend, tune_steps, progress)
            session = DriveSession(models, prepared, drive_options, fps=fps)
            chunks = []
            for start in range(0, len(frames), batch_size):   # Cancel is checked once per network batch
                progress.check()
                batch = frames[start:start + batch_size]
                chunks.append(session.process(batch))
                progress.update_absolute(tune_steps + start + len(batch))
            chunks.append(session.finish())
        result = DrivenChunk.concatenate(chunks)
        crops = frames_to_comfy(result.crops)
        if not paste_back:
            return io.NodeOutput(crops, masks_to_comfy(np.ones(result.crops.shape[:3], np.float32)), crops)
        return io.NodeOutput(frames_to_comfy(result.frames), masks_to_comfy(result.masks), crops)


class LatentReenactReenactVideo(io.ComfyNode):
    """Reenact a source portrait with a driving video, streamed from file to file (VIDEO in, VIDEO out)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from reenact_core import options

        return io.Schema(
            node_id="LatentReenactReenactVideo",
            display_name="Reenact Video (Latent Reenact)",
            category=CATEGORY,
            description="Animates the source face with every frame of a driving video, decoding, reenacting and "
                        "encoding a batch at a time so memory stays flat however long the video. Writes an H.264 "
                        "video to ComfyUI's temp folder at the driver's frame rate, with the driver's audio; save "
                        "it with Save Video.",
            inputs=[
                io.Video.Input("video", tooltip="Driving video (e.g. from Load Video); read frame by frame from its "
                                                "file"),
                io.Image.Input("source", tooltip="Source portrait; of a batch, the first image is used"),
                *_model_inputs(),
                *_drive_inputs(),
                io.Int.Input("frames", default=0, min=0, max=1_000_000,
                             tooltip="Output length in frames (0 = the driver's length)"),
                combo(options.LENGTH, tooltip="When 'frames' exceeds the driver: stop at its end, loop it, or "
                                              "play it forward and backward (pingpong)"),
                *_face_inputs(),
                _fsr_input(),
            ],
            outputs=[io.Video.Output(display_name="video", tooltip="The reenacted video (the source image with "
                                     "the driven face, or the 256-px crops without paste-back), at the driver's "
                                     "frame rate with its audio")],
        )

    @classmethod
    def execute(cls, video, source, generator, encoder, deca, directions, mode, pose, expression, strength,
                smoothing, no_face, tune_steps, paste_back, color_match, truncation, batch_size, frames, length,
                source_face, backend, fsr=None) -> io.NodeOutput:
        from comfy_api.v0_0_2 import InputImpl
        from reenact_core.faces.images import to_uint8_rgb
        from reenact_core.pipeline import reenact_file

        drive_options = _options(mode, pose, expression, strength, smoothing, no_face, paste_back, color_match,
                                 truncation, batch_size, backend)
        models = reenact_models(generator, encoder, deca, directions, fsr)
        tune_steps = _tune_steps(tune_steps, models)
        out = os.path.join(folder_paths.get_temp_directory(), f"latent_reenact_{uuid.uuid4().hex}.mp4")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with interruptible(), _driver_file(video) as driving:
            # the video is 8-bit: an 8-bit source makes each pasted full-size frame a quarter of a float one
            image = to_uint8_rgb(comfy_to_frames(source[:1])[0])
            prepared = _prepare(models, image, source_face, backend, tune_steps, Progress(tune_steps))
            progress = Progress(frames or 1)

            def advance(done: int, total: int | None) -> None:
                progress.update_absolute(done, total or max(done, 1))
                progress.check()

            try:   # chunks of one network batch: Cancel is checked after each
                reenact_file(models, prepared, driving, out, drive_options, num_frames=frames or None,
                             length_policy=length, chunk=batch_size, progress=advance)
            except BaseException:
                if os.path.exists(out):
                    os.remove(out)
                raise
        return io.NodeOutput(InputImpl.VideoFromFile(out))


class _driver_file:
    """The driving video as a file path: its own file when it has one, else a temporary copy (removed on exit)."""

    def __init__(self, video):
        self.video, self.temp = video, None

    def __enter__(self) -> str:
        from comfy_api.v0_0_2 import InputImpl

        source = self.video.get_stream_source() if isinstance(self.video, InputImpl.VideoFromFile) else None
        if isinstance(source, str):
            return source
        self.temp = os.path.join(folder_paths.get_temp_directory(), f"latent_reenact_driver_{uuid.uuid4().hex}.mp4")
        os.makedirs(os.path.dirname(self.temp), exist_ok=True)
        if source is not None:          # a file held in memory
            with open(self.temp, "wb") as f:
                f.write(source.getvalue())
        else:                           # frames held in memory (e.g. from Create Video)
            self.video.save_to(self.temp)
        return self.temp

    def __exit__(self, *exc) -> None:
        if self.temp is not None and os.path.exists(self.temp):
            os.remove(self.temp)


NODES = [LatentReenactReenact, LatentReenactReenactVideo]
