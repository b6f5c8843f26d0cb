"""Node schema snapshot: what saved workflows rely on, taken from ComfyUI's /object_info, and a checker for changes.

A workflow stores, per node, its id (``class_type``), links by input name and output slot, and (UI format) the
widget values by position. So the snapshot records per node the ordered inputs (section, type, widget or socket,
default / min / max / step / combo options) and the ordered outputs, and ``compare`` reports what changed,
marking the changes that break saved workflows: a removed or renamed input, a new required input, a changed
type, widgets that moved, removed combo options, changed outputs, a removed node.

Update the committed snapshot after an intended change (starts a temporary ComfyUI with the pack and no model
files, so that model-file combos list nothing)::

    .venv/bin/python tests/schema_check.py --update

``--url http://127.0.0.1:8188`` reads a running server instead (its model files then appear in the combos).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "node_schemas.json"
NODE_PREFIX = "LatentReenact"           # our node ids (``LatentReenact<Name>``)
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
RECORDED_OPTIONS = ("default", "min", "max", "step", "options", "multiline")
SECTIONS = ("required", "optional")


def input_type(spec: list) -> str:
    """The type of an /object_info input spec ``[type, {options}]``; a list of choices is a ``COMBO``."""
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def is_widget(spec: list) -> bool:
    """True when the UI shows the input as a widget (a value stored in ``widgets_values``), not a socket."""
    options = spec[1] if len(spec) > 1 else {}
    return input_type(spec) in WIDGET_TYPES and not options.get("forceInput", False)


def combo_options(spec: list) -> list | None:
    return spec[0] if isinstance(spec[0], list) else (spec[1] if len(spec) > 1 else {}).get("options")


def node_schema(info: dict) -> dict:
    """The snapshot entry of one /object_info node entry: ordered inputs and outputs."""
    inputs = []
    for section in SECTIONS:
        for name in info.get("input_order", {}).get(section, []):
            spec = info["input"][section][name]
            options = spec[1] if len(spec) > 1 else {}
            entry = {"name": name, "section": section, "type": input_type(spec), "widget": is_widget(spec)}
            if entry["widget"]:
                entry |= {k: options[k] for k in RECORDED_OPTIONS if k in options}
                if entry["type"] == "COMBO":
                    entry["options"] = combo_options(spec)
            inputs.append(entry)
    outputs = [{"name": name, "type": type_, "is_list": is_list}
               for name, type_, is_list in zip(info["output_name"], info["output"], info["output_is_list"])]
    return {"display_name": info["display_name"], "category": info["category"],
            "output_node": info["output_node"], "inputs": inputs, "outputs": outputs}


def snapshot(object_info: dict, prefix: str = NODE_PREFIX) -> dict:
    """Snapshot of every node whose id starts with ``prefix``, sorted by node id."""
    return {node_id: node_schema(info) for node_id, info in sorted(object_info.items()) if node_id.startswith(prefix)}


@dataclass(frozen=True)
class Change:
    """One difference between two snapshots; ``breaking`` when saved workflows may no longer load or run as
    saved."""

    node: str
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'changed'}: {self.node}: {self.what}"


def compare(old: dict, new: dict) -> list[Change]:
    """Every difference from snapshot ``old`` to snapshot ``new`` (empty when they are the same)."""
    changes = [Change(node, "node removed", True) for node in old if node not in new]
    changes += [Change(node, "node added", False) for node in new if node not in old]
    for node in old:
        if node in new:
            changes += _compare_node(node, old[node], new[node])
    return changes


def _compare_node(node: str, old: dict, new: dict) -> list[Change]:
    changes = []

    def add(what: str, breaking: bool) -> None:
        changes.append(Change(node, what, breaking))

    for key in ("display_name", "category", "output_node"):
        if old[key] != new[key]:
            add(f"{key} {old[key]!r} → {new[key]!r}", key == "output_node")
    old_in, new_in = {i["name"]: i for i in old["inputs"]}, {i["name"]: i for i in new["inputs"]}
    removed = [i for i in old["inputs"] if i["name"] not in new_in]
    added = [i for i in new["inputs"] if i["name"] not in old_in]
    for gone in removed:
        # A rename: an input of the same kind took the place of the removed one.
        position = old["inputs"].index(gone)
        twin = next((i for i in added if new["inputs"].index(i) == position
                     and (i["section"], i["type"], i["widget"]) == (gone["section"], gone["type"], gone["widget"])),
                    None)
        if twin is not None:
            added.remove(twin)
            add(f"input {gone['name']!r} renamed to {twin['name']!r}", True)
        else:
            add(f"input {gone['name']!r} removed", True)
    for extra in added:
        required = extra["section"] == "required"
        add(f"new {extra['section']} input {extra['name']!r}", required)
    for name, before in old_in.items():
        after = new_in.get(name)
        if after is not None:
            changes += [Change(node, what, breaking) for what, breaking in _compare_input(name, before, after)]
    old_widgets = [i["name"] for i in old["inputs"] if i["widget"]]
    new_widgets = [i["name"] for i in new["inputs"] if i["widget"]]
    kept = [n for n in old_widgets if n in new_widgets]
    if kept != [n for n in new_widgets if n in old_widgets]:
        add(f"widgets reordered: {old_widgets} → {new_widgets}", True)
    elif new_widgets[:len(kept)] != kept:
        add(f"widgets inserted before saved ones (saved widget values would shift): {old_widgets} → "
            f"{new_widgets}", True)
    old_out = [(o["name"], o["type"], o["is_list"]) for o in old["outputs"]]
    new_out = [(o["name"], o["type"], o["is_list"]) for o in new["outputs"]]
    if old_out != new_out:
        appended = new_out[:len(old_out)] == old_out
        add(f"outputs {old_out} → {new_out}", not appended)
    return changes


def _compare_input(name: str, old: dict, new: dict) -> list[tuple[str, bool]]:
    changes = []
    if old["type"] != new["type"]:
        changes.append((f"input {name!r} type {old['type']} → {new['type']}", True))
    if old["widget"] != new["widget"]:
        kinds = {True: "widget", False: "socket"}
        changes.append((f"input {name!r} {kinds[old['widget']]} → {kinds[new['widget']]}", True))
    if old["section"] != new["section"]:
        changes.append((f"input {name!r} {old['section']} → {new['section']}", new["section"] == "required"))
    for key in RECORDED_OPTIONS:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "options":
            lost = [o for o in before or [] if o not in (after or [])]
            changes.append((f"input {name!r} options {before} → {after}", bool(lost)))
        elif key == "min" and before is not None and (after is None or after <= before) \
                or key == "max" and before is not None and (after is None or after >= before):
            changes.append((f"input {name!r} {key} widened {before} → {after}", False))
        else:
            changes.append((f"input {name!r} {key} {before} → {after}", key in ("min", "max")))
    return changes


def read_snapshot(path: Path = SNAPSHOT) -> dict:
    return json.loads(Path(path).read_text())


def write_snapshot(schemas: dict, path: Path = SNAPSHOT) -> None:
    Path(path).write_text(json.dumps(schemas, indent=1, ensure_ascii=False) + "\n")


def _object_info(url: str | None) -> dict:
    if url is not None:
        with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=60) as r:
            return json.loads(r.read())
    from comfy_server import ComfyServer

    with tempfile.TemporaryDirectory() as base:
        server = ComfyServer(Path(base)).start()
        try:
            return server.get("/object_info")
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running ComfyUI (default: start a temporary one with the pack)")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT, help="snapshot file (default: %(default)s)")
    parser.add_argument("--update", action="store_true", help="write the current schemas to the snapshot")
    args = parser.parse_args(argv)
    current = snapshot(_object_info(args.url))
    changes = compare(read_snapshot(args.snapshot), current) if args.snapshot.exists() else []
    for change in changes:
        print(change)
    if args.update:
        write_snapshot(current, args.snapshot)
        print(f"wrote {len(current)} node schemas to {args.snapshot}")
        return 0
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
