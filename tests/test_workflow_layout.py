"""The example workflows' layout in ComfyUI's front end: no node covers another once images are shown, and the
saved view shows every node.

A node's rectangle is its body (``pos``, ``size``) plus the title bar above it (LiteGraph's NODE_TITLE_HEIGHT).
Image-showing nodes grow to show their image after a run; they are counted at least IMAGE_MIN_SIZE. The saved
view (``extra.ds``) maps a canvas point p to the screen as (p + offset) · scale; every rectangle must land in a
VIEW_SIZE window below the TOOLBAR band the front end's menus cover.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

UI_DIR = Path(__file__).resolve().parents[1] / "example_workflows"
NAMES = sorted(p.stem for p in UI_DIR.glob("*.json"))

TITLE_HEIGHT = 30
IMAGE_NODES = ("LoadImage", "LoadVideo", "PreviewImage", "SaveImage", "SaveVideo")
IMAGE_MIN_SIZE = (320, 420)
VIEW_SIZE = (1600, 900)
TOOLBAR = 100


def rectangles(ui: dict) -> dict[int, tuple[float, float, float, float]]:
    """Node id → (left, top, right, bottom) on the canvas, title bar included, image nodes at their grown size."""
    boxes = {}
    for node in ui["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        if node["type"] in IMAGE_NODES:
            w, h = max(w, IMAGE_MIN_SIZE[0]), max(h, IMAGE_MIN_SIZE[1])
        boxes[node["id"]] = (x, y - TITLE_HEIGHT, x + w, y + h)
    return boxes


def layout_problems(ui: dict) -> list[str]:
    """Overlapping node pairs and nodes (partly) outside the saved view's visible area."""
    boxes = rectangles(ui)
    ids = sorted(boxes)
    problems = [f"nodes {a} and {b} overlap" for i, a in enumerate(ids) for b in ids[i + 1:]
                if boxes[a][0] < boxes[b][2] and boxes[b][0] < boxes[a][2]
                and boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]]
    ds = ui["extra"]["ds"]
    scale, (ox, oy) = ds["scale"], ds["offset"]
    for node_id, (left, top, right, bottom) in boxes.items():
        sx0, sy0, sx1, sy1 = ((left + ox) * scale, (top + oy) * scale, (right + ox) * scale, (bottom + oy) * scale)
        if sx0 < 0 or sx1 > VIEW_SIZE[0] or sy0 < TOOLBAR or sy1 > VIEW_SIZE[1]:
            problems.append(f"node {node_id} outside the view: screen ({sx0:.0f}, {sy0:.0f})–({sx1:.0f}, {sy1:.0f})")
    return problems


def synthetic(*nodes, scale=1.0, offset=(0, 0)) -> dict:
    return {"nodes": [{"id": i, "type": t, "pos": list(p), "size": list(s)} for i, (t, p, s) in enumerate(nodes, 1)],
            "extra": {"ds": {"scale": scale, "offset": list(offset)}}}


def test_checker_counts_titles_grown_images_and_the_toolbar():
    fine = synthetic(("Note", (0, 30), (300, 100)), ("Note", (0, 160), (300, 100)), offset=(10, TOOLBAR))
    assert layout_problems(fine) == []
    # Bodies 30 px apart: the second title bar covers the first body's bottom.
    assert layout_problems(synthetic(("Note", (0, 30), (300, 100)), ("Note", (0, 150), (300, 100)),
                                     offset=(10, TOOLBAR))) == ["nodes 1 and 2 overlap"]
    # A Load Image saved small still takes IMAGE_MIN_SIZE once its image shows.
    grown = synthetic(("LoadImage", (0, 30), (320, 100)), ("Note", (0, 200), (300, 100)), offset=(10, TOOLBAR))
    assert layout_problems(grown) == ["nodes 1 and 2 overlap"]
    # Under the toolbar band, or off the right edge.
    assert layout_problems(synthetic(("Note", (0, 30), (300, 100)))) == [
        "node 1 outside the view: screen (0, 0)–(300, 130)"]
    assert len(layout_problems(synthetic(("Note", (1400, 30), (300, 100)), offset=(0, TOOLBAR)))) == 1


@pytest.mark.parametrize("name", NAMES)
def test_example_workflow_layout_shows_every_node(name):
    ui = json.loads((UI_DIR / f"{name}.json").read_text(encoding="utf-8"))
    assert layout_problems(ui) == []
