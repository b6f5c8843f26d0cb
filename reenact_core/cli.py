"""Command-line entry point: `latent-reenact <command>` (the console command of `pip install -e .`) or
`python -m reenact_core <command>`: convert, reenact, doctor, evaluate, dataset, train."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import options
from .command import COMMAND
from .wording import count
from .errors import ReenactError
from .options import add_argument
from .signals import SIGTERM_EXIT, Terminated, stop_on_sigterm

DTYPES = ("float32", "float16", "bfloat16")


def _face(text: str) -> str | int:
    try:
        return options.face_select(text)
    except ReenactError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tune_steps(text: str) -> str | int:
    if text == options.AUTO:
        return text
    try:
        return options.TUNE_STEPS.check(int(text))
    except (ValueError, ReenactError):
        raise argparse.ArgumentTypeError(f"tune steps take {options.AUTO} or a whole number in "
                                         f"[{options.TUNE_STEPS.minimum}, {options.TUNE_STEPS.maximum}], "
                                         f"got {text!r}") from None


def model_folders(args: argparse.Namespace) -> list[Path]:
    """--models folders, then $REENACT_MODELS (os.pathsep-separated), then ./models/reenact."""
    folders = [Path(p) for p in (args.models or [])]
    folders += [Path(p) for p in os.environ.get("REENACT_MODELS", "").split(os.pathsep) if p]
    return folders + [Path("models") / "reenact"]


def _device(name: str) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def _progress_bar(total: int | None, desc: str, unit: str = "frame"):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

    def update(done: int, new_total: int | None = None) -> None:
        bar.total = new_total if new_total is not None else bar.total
        bar.update(done - bar.n)
    return bar, update


def _frame_count(driving: str) -> int | None:
    """The driver's frame count when its container says (for the bar's total and ETA), else None."""
    from .video import VideoReader

    try:
        return VideoReader(driving).frame_count
    except ReenactError:   # an unreadable driver is reported by the run itself
        return None


def _convert(args: argparse.Namespace) -> int:
    from .weights import convert, inspect_model_file

    out = convert(args.src, args.dst, expected_kind=args.kind, landmarks=args.landmarks)
    info = inspect_model_file(out)
    print(f"wrote {out} ({info.kind}: {info.config})")
    return 0


def _warn_random_weights(models) -> None:
    """One warning when model files are random-weight test files (marked in their metadata, as doctor shows)."""
    from .weights import has_random_weights

    loaded = [models.generator, models.e4e, models.deca, models.directions, models.fsr]
    random = [m.path.name for m in loaded if m is not None and has_random_weights(m.metadata)]
    if random:
        print(f"warning: RANDOM-WEIGHT test files ({', '.join(random)}): the output is noise, not a result "
              f"(doctor lists the model files found)", file=sys.stderr)


def _reenact(args: argparse.Namespace) -> int:
    import torch
    from .arguments import check_reenact_arguments, parse_edits
    from .engine import DriveOptions, edit, find_fsr, load_reenact_models, load_source, prepare_source, save_source
    from .engine.pairing import resolve_tune_steps
    from .engine.speed import compile_problem, network_dtypes
    from .faces.images import read_image, save_image
    from .memory import fix_heap_threshold
    from .pipeline import reenact_file
    from .video import IMAGE_SUFFIXES
    from .weights import find_lpips

    check_reenact_arguments(args)   # before any model is loaded
    folders = model_folders(args)
    device = _device(args.device)
    fsr, note = find_fsr(args.fsr, folders)
    generator_dtype = None if args.generator_dtype == options.AUTO else getattr(torch, args.generator_dtype)
    g_dtype, encoder_dtype, dtype_note = network_dtypes(getattr(torch, args.dtype), device, generator_dtype)
    compile_note = compile_problem(device) if args.compile == "on" else None
    models = load_reenact_models(folders, device=device, dtype=g_dtype, fsr=fsr, encoder_dtype=encoder_dtype,
                                 compile_encoders=args.compile == "on" and compile_note is None)
    for line in (note, dtype_note, compile_note and f"{compile_note}: running without compiling"):
        if line:
            print(line, file=sys.stderr)
    _warn_random_weights(models)
    if args.source_in:
        source = load_source(args.source_in, device=device, dtype=models.dtype)
    else:
        steps = resolve_tune_steps(args.tune_steps, models.e4e, models.directions, reenacting=bool(args.driving))
        bar, update = _progress_bar(steps, "tuning G to the source", unit="step") if steps else (None, None)
        source = prepare_source(read_image(args.source), models, select=args.face, tune_steps=steps,
                                lpips=find_lpips(folders, device=device) if steps else None,
                                progress=(lambda step, total, eta, loss: update(step)) if steps else None)
        if bar is not None:
            bar.close()
    if args.source_out:
        print(f"saved the prepared source to {save_source(source, args.source_out)}")
    if not args.driving:
        rendered = edit(source, models, parse_edits(args.edit), args.edit_mode, paste_back=not args.no_paste_back)
        print(f"wrote {save_image(args.out, rendered.frames[0] if rendered.frames is not None else rendered.crops[0])}")
        return 0
    drive_options = DriveOptions(mode=args.mode, pose=not args.no_pose, expression=not args.no_expression,
                                 strength=args.strength, smoothing=args.smoothing, no_face=args.no_face,
                                 paste_back=not args.no_paste_back, color_match=args.color_match,
                                 batch_size=args.batch_size)
    fix_heap_threshold()   # a long video's frame buffers are mapped and unmapped: RSS stays flat (memory module)
    bar, update = _progress_bar(args.frames or _frame_count(args.driving), "reenacting")
    try:
        summary = reenact_file(models, source, args.driving, args.out, drive_options, num_frames=args.frames,
                               length_policy=args.length, png_dir=args.png_frames, progress=update,
                               image_fps=args.fps)
    finally:
        bar.close()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
    made = ("an image" if summary.output.suffix.lower() in IMAGE_SUFFIXES
            else f"{count(summary.frames, 'frame')} at {float(summary.fps):.3f} fps")
    frames = "" if args.png_frames is None else f"; PNG frames in {args.png_frames}"
    print(f"wrote {summary.output}: {made} ({counts}){_audio_note(summary)}{frames}")
    return 0


def _audio_note(summary) -> str:
    """How much of the output carries the driver's audio: all of it, or only the driver's length when the
    output was made longer (--length loop/pingpong: the audio is not repeated)."""
    if not summary.audio:
        return ""
    if summary.driver_frames is not None and summary.frames > summary.driver_frames:
        return (f", audio from the driver for its first {count(summary.driver_frames, 'frame')} only (the audio "
                f"is not looped: the remaining {count(summary.frames - summary.driver_frames, 'frame')} are silent)")
    return ", audio from the driver"


def _doctor(args: argparse.Namespace) -> int:
    import torch

    from .errors import WeightsError
    from .weights import INFERENCE, KINDS, find_model_file, has_random_weights, inspect_model_file, kind_names

    folders = model_folders(args)
    print(f"torch {torch.__version__}; device: {_device(args.device)} "
          f"(cuda: {torch.cuda.is_available()}, mps: {torch.backends.mps.is_available()})")
    print("model folders searched: " + ", ".join(str(f) for f in folders))
    missing = 0
    for name in kind_names(INFERENCE):
        k = KINDS[name]
        try:
            info = inspect_model_file(find_model_file(name, folders), expected_kind=name)
            random = " (RANDOM WEIGHTS: test file)" if has_random_weights(info.metadata) else ""
            print(f"  ok       {k.canonical_file}: {k.title}, {info.path}{random}")
        except WeightsError as exc:
            missing += 1
            print(f"  MISSING  {k.canonical_file}: {exc}")
    try:
        from .landmarks.dlib_backend import predictor_path
        print(f"  ok       dlib 68-point landmarks: {predictor_path()} (iBUG 300-W: non-commercial licence)")
    except ReenactError as exc:
        missing += 1
        print(f"  MISSING  dlib landmarks: {exc}")
    from .selfcheck import run_self_check
    print(run_self_check(_device(args.device)))
    if missing:
        print(f"{missing} model file(s) missing: reenactment needs them (README: 'Model files').")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from .arguments import check_evaluate_arguments
    from .engine import load_reenact_models
    from .errors import MissingModelError
    from .evaluation import ARCFACE_MEASURE, DecaMeasurer, arcface_embedder, cosine_similarity, dlib_descriptor, evaluate
    from .faces.images import read_image, to_uint8_rgb
    from .files import write_text
    from .video import VideoReader
    from .weights import find_model_file, load_model

    check_evaluate_arguments(args)   # before any model is loaded
    models = load_reenact_models(model_folders(args), device=_device(args.device), dtype=torch.float32)
    measurer = DecaMeasurer(models.deca.module)
    identity = dict(embedder=dlib_descriptor)
    try:
        arcface = load_model(find_model_file("arcface", model_folders(args)), "arcface", models.device).module
        identity = dict(embedder=arcface_embedder(arcface, measurer.landmarks), compare=cosine_similarity,
                        identity_measure=ARCFACE_MEASURE)
    except MissingModelError:
        pass
    report = evaluate(to_uint8_rgb(read_image(args.source)), iter(VideoReader(args.output)), iter(VideoReader(args.driving)),
                      estimator=measurer.params, landmarks=measurer.landmarks, **identity)
    print(report.table())
    if args.json:
        write_text(args.json, report.to_json())
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND,
                                     description="One-shot face reenactment by directions in StyleGAN2's W+ space.")
    sub = parser.add_subparsers(dest="command", required=True)

    conv = sub.add_parser("convert", help="convert an official checkpoint to a .safetensors model file",
                          description="Convert an official checkpoint (stylegan-voxceleb.pt, rosinality FFHQ .pt, "
                                      "e4e-voxceleb.pt or an original e4e .pt, deca_model.tar, A_matrix.pt, model_ir_se50.pth, "
                                      "FLAME's generic_model.pkl with --landmarks) to our "
                                      ".safetensors format. The file is read with torch.load(weights_only=True) (FLAME's "
                                      "pickles with an allow-list reader); the "
                                      "architecture is inferred from its shapes and checked strictly.")
    conv.add_argument("src", help="the official checkpoint file")
    conv.add_argument("dst", help="output .safetensors file, or a folder (e.g. models/reenact/) to use the canonical name")
    conv.add_argument("--kind", help="refuse the file unless it holds this kind of model (a kind name: "
                                      "`doctor` lists them)")
    conv.add_argument("--landmarks", metavar="landmark_embedding.npy",
                      help="with FLAME's generic_model.pkl: DECA's landmark file (github.com/yfeng95/DECA, data/)")
    conv.set_defaults(run=_convert)

    def common(p):
        p.add_argument("--models", action="append", metavar="DIR",
                       help="folder holding the converted model files (repeatable; searched before the folders of "
                            "$REENACT_MODELS, os.pathsep-separated, and models/reenact)")
        p.add_argument("--device", default="auto", help=f"{options.DEVICES} (default auto)")
        add_threads_argument(p)

    ren = sub.add_parser("reenact", help="animate a source portrait with a driving video (or edit it)",
                         description="Reenact the face of --source with the head pose and expression of every frame "
                                     "of --driving; or, without --driving, edit it with --edit NAME=VALUE.")
    common(ren)
    ren.add_argument("--source", help="source portrait image")
    ren.add_argument("--driving", help="driving video, image folder or image")
    ren.add_argument("--out", required=True, help="output video (.mp4) or image (.png/.jpg)")
    ren.add_argument("--dtype", choices=DTYPES, default="float32",
                     help="float type of the networks: float32 (default, any device), float16 or bfloat16 (faster, "
                          "slightly different frames; on a CPU only e4e and DECA take it, bfloat16 where the CPU has "
                          "it natively, and G stays float32 unless --generator-dtype says)")
    ren.add_argument("--generator-dtype", choices=(options.AUTO, *DTYPES), default=options.AUTO,
                     help="float type of G, A and FSR: auto (default) = float32 on a CPU, --dtype elsewhere")
    add_argument(ren, options.COMPILE, "--compile")
    add_argument(ren, options.BATCH_SIZE, "--batch-size")
    add_argument(ren, options.MODE, "--mode")
    ren.add_argument("--no-pose", action="store_true", help="do not transfer head pose")
    ren.add_argument("--no-expression", action="store_true", help="do not transfer jaw and expressions")
    add_argument(ren, options.STRENGTH, "--strength")
    add_argument(ren, options.SMOOTHING, "--smoothing")
    add_argument(ren, options.NO_FACE, "--no-face")
    add_argument(ren, options.FACE, "--face", type=_face, choices=None, help="which source face: " + options.FACE.help)
    ren.add_argument("--no-paste-back", action="store_true", help="write the 256-px crops instead of full frames")
    ren.add_argument("--color-match", action="store_true", help="match the face colours to the source image")
    add_argument(ren, options.TUNE_STEPS, "--tune-steps", type=_tune_steps, default=options.AUTO,
                 help=options.TUNE_STEPS.help + f"; {options.AUTO}: 0 for an encoder and A trained together (train "
                      f"joint), else {options.TUNE_STEPS.default} for reenactment and {options.EDIT_TUNE_STEPS} for "
                      "editing; a count is refused with --source-in (the prepared source keeps its tuning)")
    ren.add_argument("--source-in", help="load a prepared source (.safetensors) instead of --source (not with "
                                         "--source or a --tune-steps count: refused)")
    ren.add_argument("--source-out", help="save the prepared source (W+, tuned layers, ...) to reuse it")
    ren.add_argument("--edit", action="append", default=[], metavar="NAME=VALUE",
                     help="edit a direction: yaw/pitch/roll (degrees), jaw (radians), exp_00..exp_10 (repeatable); "
                          "values beyond the Edit Directions node's slider limits are refused")
    add_argument(ren, options.EDIT_MODE, "--edit-mode")
    ren.add_argument("--frames", type=int, default=None, help="number of output frames (default: the driver's)")
    add_argument(ren, options.FPS, "--fps", default=None,
                 help="frame rate of an image-folder or image driver: the output's rate and the smoothing's time "
                      "base (refused with a video driver, which has its own)")
    add_argument(ren, options.LENGTH, "--length")
    ren.add_argument("--png-frames", metavar="DIR", help="also write every output frame as PNG into DIR")
    ren.add_argument("--fsr", default="auto", metavar="FILE|auto|off",
                     help="feature-space refinement of hair and background: a trained FSR file, auto (the models "
                          "folders' fsr-voxceleb-256.safetensors when present, never a random-weight test file) "
                          "or off (default auto)")
    ren.set_defaults(run=_reenact)

    doc = sub.add_parser("doctor", help="check the model files, the device, and run a self-check on tiny weights",
                         description="List the model files found in the model folders (valid or not, tiny random "
                                     "test files marked), the device, and run the whole pipeline once on tiny random "
                                     "weights: a check that everything is installed, not a real result.")
    common(doc)
    doc.set_defaults(run=_doctor)

    ev = sub.add_parser("evaluate", help="identity, pose, expression and jitter measures of a reenacted video",
                        description="Measure a reenacted video against its source (identity: ArcFace when "
                                    "arcface-irse50.safetensors is in the model folders, else dlib) and its driver "
                                    "(head pose and expression error by DECA), and its landmark jitter. A measure "
                                    "no frame allows is n/a, with the reason.")
    common(ev)
    ev.add_argument("--source", required=True, help="the source portrait")
    ev.add_argument("--driving", required=True, help="the driving video")
    ev.add_argument("--output", required=True, help="the reenacted video (frame-aligned with the driver)")
    ev.add_argument("--json", help="also write the measures as JSON")
    ev.set_defaults(run=_evaluate)

    from .data.cli import register as register_dataset
    register_dataset(sub, common, model_folders, _device, DTYPES)

    from .training.cli import add_train_parser
    add_train_parser(sub, model_folders, _device, add_threads_argument)
    return parser


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` of the commands that compute (:data:`~reenact_core.options.THREADS`)."""
    add_argument(parser, options.THREADS, "--threads", default=None)


def main(argv: list[str] | None = None) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .threads import limit_openmp_spinning

    limit_openmp_spinning()   # before torch is imported
    args = build_parser().parse_args(argv)
    restores = [_set_threads(args), stop_on_sigterm()]
    try:
        with logging_redirect_tqdm():   # warnings are printed above a progress bar, not through it
            return args.run(args)
    except ReenactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return SIGTERM_EXIT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for restore in restores:
            restore()


def _set_threads(args: argparse.Namespace):
    """Applies ``--threads`` (or its default) for the command's run; returns the function that puts back the
    caller's setting (main() may be called in a process that goes on, e.g. a test)."""
    if not hasattr(args, "threads"):
        return lambda: None
    import torch

    from .threads import use_threads

    previous = torch.get_num_threads()
    use_threads(args.threads)
    return lambda: torch.set_num_threads(previous)


if __name__ == "__main__":
    sys.exit(main())
