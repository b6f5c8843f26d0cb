"""UI-format workflows (what ComfyUI's editor saves) against their API-format twins (what POST /prompt takes).

The UI format stores links in a table ``[id, from_node, from_slot, to_node, to_slot, type]`` and a node's
widget values by position in ``widgets_values``: one value per widget input, in the node's input order
(required, then optional; sockets and ``forceInput`` inputs take none), followed by one more value for a
widget with ``control_after_generate`` (the "control after generate" choice) and for a combo with an upload
button (``image_upload``, ``video_upload``, ...). A widget turned into a socket keeps its value but is fed by
its link. ``to_api`` applies these rules with the node definitions from /object_info.
"""
from __future__ import annotations

from schema_check import is_widget

UI_ONLY_NODES = ("Note", "MarkdownNote")          # editor annotations, never sent to the server
EXTRA_VALUE_FLAGS = ("control_after_generate", "image_upload", "video_upload", "audio_upload", "file_upload")


def widget_slots(info: dict) -> list[tuple[str, int]]:
    """(input name, number of ``widgets_values`` entries it takes) for the widgets of an /object_info node."""
    slots = []
    for section in ("required", "optional"):
        for name in info.get("input_order", {}).get(section, []):
            spec = info["input"][section][name]
            if is_widget(spec):
                options = spec[1] if len(spec) > 1 else {}
                slots.append((name, 1 + sum(bool(options.get(flag)) for flag in EXTRA_VALUE_FLAGS)))
    return slots


def ui_problems(ui: dict, object_info: dict) -> list[str]:
    """Inconsistencies inside a UI workflow: unknown node types, links that disagree with the nodes' input and
    output lists or types, widget value counts that do not fit the node definitions."""
    problems = []
    nodes = {n["id"]: n for n in ui["nodes"]}
    for node in ui["nodes"]:
        if node["type"] in UI_ONLY_NODES:
            continue
        where = f"node {node['id']} ({node['type']})"
        if node["type"] not in object_info:
            problems.append(f"{where}: unknown node type")
            continue
        if node.get("mode", 0) != 0:
            problems.append(f"{where}: muted or bypassed nodes are not used in example workflows")
        expected = sum(count for _, count in widget_slots(object_info[node["type"]]))
        if len(node.get("widgets_values", [])) != expected:
            problems.append(f"{where}: {len(node.get('widgets_values', []))} widget values, its definition has "
                            f"{expected}")
    for link_id, src, src_slot, dst, dst_slot, type_ in ui["links"]:
        if src not in nodes or dst not in nodes:
            problems.append(f"link {link_id}: joins missing nodes {src} → {dst}")
            continue
        outputs, inputs = nodes[src].get("outputs", []), nodes[dst].get("inputs", [])
        if src_slot >= len(outputs) or link_id not in (outputs[src_slot].get("links") or []):
            problems.append(f"link {link_id}: not listed in output {src_slot} of node {src}")
        elif outputs[src_slot]["type"] != type_:
            problems.append(f"link {link_id}: type {type_} but output {src_slot} of node {src} is "
                            f"{outputs[src_slot]['type']}")
        if dst_slot >= len(inputs) or inputs[dst_slot].get("link") != link_id:
            problems.append(f"link {link_id}: not the link of input {dst_slot} of node {dst}")
        elif inputs[dst_slot]["type"] not in (type_, "*"):
            problems.append(f"link {link_id}: type {type_} into input {inputs[dst_slot]['name']!r} of node {dst} "
                            f"({inputs[dst_slot]['type']})")
    ids = [n["id"] for n in ui["nodes"]]
    if len(set(ids)) != len(ids) or max(ids) > ui.get("last_node_id", max(ids)):
        problems.append("node ids are repeated or exceed last_node_id")
    link_ids = [link[0] for link in ui["links"]]
    if link_ids and (len(set(link_ids)) != len(link_ids) or max(link_ids) > ui.get("last_link_id", max(link_ids))):
        problems.append("link ids are repeated or exceed last_link_id")
    return problems


def to_api(ui: dict, object_info: dict) -> dict:
    """The API-format prompt of a UI workflow: node id (string) → ``{"class_type", "inputs"}``."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in UI_ONLY_NODES:
            continue
        linked = {}
        for entry in node.get("inputs", []):
            if entry.get("link") is not None:
                _, src, src_slot, *_ = links[entry["link"]]
                linked[entry["name"]] = [str(src), src_slot]
        inputs, values = dict(linked), list(node.get("widgets_values", []))
        position = 0
        for name, count in widget_slots(object_info[node["type"]]):
            if name not in linked and position < len(values):
                inputs[name] = values[position]
            position += count
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def api_differences(expected: dict, actual: dict) -> list[str]:
    """How API prompt ``actual`` differs from ``expected`` in nodes, classes, links and values (``_meta`` titles
    are ignored)."""
    problems = [f"node {k} missing" for k in expected if k not in actual]
    problems += [f"node {k} not in the UI workflow" for k in actual if k not in expected]
    for key in expected.keys() & actual.keys():
        a, b = expected[key], actual[key]
        if a["class_type"] != b["class_type"]:
            problems.append(f"node {key}: class {a['class_type']} ≠ {b['class_type']}")
            continue
        for name in a["inputs"].keys() | b["inputs"].keys():
            if a["inputs"].get(name) != b["inputs"].get(name):
                problems.append(f"node {key} ({a['class_type']}) input {name!r}: UI {a['inputs'].get(name)!r}, "
                                f"API {b['inputs'].get(name)!r}")
    return sorted(problems)
