"""Options are declared once (``reenact_core.options``): the command line's flags and the node widgets (the
committed /object_info snapshot, which test_schema checks against a live server) carry the declared choices,
defaults and ranges, and no choice list the library declares is written out again in ``cli.py`` or ``nodes/``."""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from reenact_core import options
from reenact_core.cli import build_parser
from reenact_core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).resolve().parent / "node_schemas.json"
CHOICES = [o for o in vars(options).values() if isinstance(o, options.Choice)]
NUMBERS = [o for o in vars(options).values() if isinstance(o, options.Number)]
# node inputs whose name is not the option's: (node id, input) -> option; and inputs with a use-specific default
RENAMED = {("LatentReenactEditDirections", "mode"): options.EDIT_MODE, ("LatentReenactReenact", "source_face"):
           options.FACE, ("LatentReenactReenactVideo", "source_face"): options.FACE}
OTHER = {("LatentReenactInvert", "face")}   # same name, another meaning: the index of an aligned face
DEFAULTS = {("LatentReenactInvert", "tune_steps"): options.EDIT_TUNE_STEPS,
            ("LatentReenactReenact", "tune_steps"): options.AUTO_STEPS,
            ("LatentReenactReenactVideo", "tune_steps"): options.AUTO_STEPS}
MINIMA = {key: options.AUTO_STEPS for key in DEFAULTS if key[0] != "LatentReenactInvert"}   # "auto" as -1
EXTRA_CHOICES = {("LatentReenactFaceAlign", "face"): ["index"]}   # "index": take face_index
CLI_FLAGS = {"--batch-size": options.BATCH_SIZE, "--mode": options.MODE, "--strength": options.STRENGTH,
             "--smoothing": options.SMOOTHING, "--no-face": options.NO_FACE, "--face": options.FACE,
             "--tune-steps": options.TUNE_STEPS, "--edit-mode": options.EDIT_MODE, "--length": options.LENGTH,
             "--fps": options.FPS, "--threads": options.THREADS}
UNSET = {"--fps", "--threads"}   # None when not given (an explicit value is told apart); the help shows the default


def reenact_actions() -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {flag: action for action in sub.choices["reenact"]._actions for flag in action.option_strings}


@pytest.mark.parametrize("flag", CLI_FLAGS)
def test_cli_flags_follow_the_declarations(flag):
    action, option = reenact_actions()[flag], CLI_FLAGS[flag]
    if isinstance(option, options.Choice) and flag != "--face":
        assert tuple(action.choices) == option.choices and action.default == option.default
        return
    if flag == "--tune-steps":
        assert action.default == options.AUTO
        assert options.tune_steps(action.default, driving=True) == option.default
        assert options.tune_steps(action.default, driving=False) == options.EDIT_TUNE_STEPS
    elif flag in UNSET:
        assert action.default is None and f"(default {option.default})" in action.help
    else:
        assert action.default == option.default
    for good in (getattr(option, "choices", ()) or (option.minimum, option.maximum)):
        assert action.type(str(good)) == good
    bad = "nonsense" if isinstance(option, options.Choice) else str(option.maximum + 1)
    with pytest.raises(argparse.ArgumentTypeError):
        action.type(bad)


def node_inputs():
    schemas = json.loads(SNAPSHOT.read_text())
    names = {o.name: o for o in CHOICES + NUMBERS}
    for node, schema in schemas.items():
        for entry in schema["inputs"]:
            option = RENAMED.get((node, entry["name"]), names.get(entry["name"]))
            if option is not None and entry["widget"] and (node, entry["name"]) not in OTHER:
                yield node, entry, option


def test_node_widgets_follow_the_declarations():
    checked = set()
    for node, entry, option in node_inputs():
        where = f"{node}.{entry['name']}"
        assert entry["default"] == DEFAULTS.get((node, entry["name"]), option.default), where
        if isinstance(option, options.Choice):
            assert entry["options"] == [*option.choices, *EXTRA_CHOICES.get((node, entry["name"]), [])], where
        else:
            assert (entry["min"], entry["max"]) == (MINIMA.get((node, entry["name"]), option.minimum),
                                                    option.maximum), where
            assert entry.get("step", option.step) == option.step or option.step is None, where
        checked.add(option.name)
    assert {"mode", "no_face", "smoothing", "fps", "strength", "truncation", "batch_size", "tune_steps",
            "length", "edit_mode", "face_index"} <= checked


def test_step_nodes_take_the_batch_size():
    schemas = json.loads(SNAPSHOT.read_text())
    for node in ("LatentReenactExtractParams", "LatentReenactApplyDirections", "LatentReenactDecode"):
        assert "batch_size" in [entry["name"] for entry in schemas[node]["inputs"]], node


def literal_lists(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            yield node.lineno, {e.value for e in node.elts}


def test_no_declared_choice_list_is_written_out_again():
    declared = [set(o.choices) for o in CHOICES]
    files = [ROOT / "reenact_core" / "cli.py", *sorted((ROOT / "nodes").glob("*.py"))]
    found = [f"{path.name}:{line}" for path in files for line, values in literal_lists(path)
             if any(len(values & choices) >= 2 for choices in declared)]
    assert not found, f"choice lists the library declares: {found}"


def test_declarations_check_values():
    assert options.MODE.check("relative") == "relative"
    with pytest.raises(InputError, match="no face"):
        options.NO_FACE.check("skip")
    with pytest.raises(InputError, match="batch size"):
        options.BATCH_SIZE.check(2.5)
    with pytest.raises(InputError, match="smoothing"):
        options.SMOOTHING.check(float("nan"))
    assert options.face_select("2") == 2 and options.face_select("score") == "score"
    with pytest.raises(InputError):
        options.face_select("-1")
