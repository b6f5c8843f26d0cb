"""The reader of the golden manifests' prose: every prose field of the fixture set parses, and text of an unknown
pattern fails with a message naming it (the patterns come from the golden README)."""
from __future__ import annotations

import pytest
import torch

from golden_fixtures import TRAINING, manifest
from manifest_prose import (ManifestFormatError, checkpoint_layout, constructor, fill_rule, labelled_entry, role,
                            seeded_randn, tolerance, truncation_of)
from reenact_core.weights import KINDS


def test_every_prose_field_of_the_fixture_set_parses():
    for folder in (None, TRAINING):
        m = manifest() if folder is None else manifest(folder)
        for case, spec in m["cases"].items():
            for rule in set(spec.get("fill", {}).values()) - {"keep"}:
                fill_rule(rule)
            if "checkpoint_layout" in spec:
                assert checkpoint_layout(spec["checkpoint_layout"]).kind in KINDS, case
            if "constructor" in spec:
                name, kwargs = constructor(spec["constructor"])
                assert name.isidentifier() and kwargs, case
            calls = spec.get("calls", {})
            if isinstance(calls, dict) and "randn(" in calls.get("truncation_latent", ""):
                n, offset = seeded_randn(calls["truncation_latent"])
                assert n > 0 and offset >= 0
            labelled_entry(spec, "boxes", "x1,y1,x2,y2,[H,W]")


def test_values_are_read_as_written():
    layout = checkpoint_layout("A_matrix.pt: dict(A_matrix=state_dict, learned_directions=15, shift_scale=6.0, "
                               "w_plus=True)")
    assert layout.kind == "directions" and layout.extras == {"learned_directions": 15, "shift_scale": 6.0,
                                                             "w_plus": True}
    assert constructor("Encoder4Editing(num_layers=50, mode='ir_se'): a description") == (
        "Encoder4Editing", {"num_layers": 50, "mode": "ir_se"})
    assert seeded_randn("G.style(torch.randn(4096, 512, generator=g.manual_seed(seed + 999)))") == (4096, 999)
    assert seeded_randn("torch.randn(16, 8, generator=g.manual_seed(seed))") == (16, 0)
    assert truncation_of("image_truncated_0.7") == 0.7 and truncation_of("image") is None
    assert torch.equal(fill_rule("1+|0.1*r|")(torch.tensor([-10.0]), [1]), torch.tensor([2.0]))
    assert role("theta_source").tolerance == role("theta").tolerance
    assert tolerance("crop_3") == 0.0 and tolerance("image_truncated_0.5") == tolerance("image")


@pytest.mark.parametrize("reader, text", [
    (checkpoint_layout, "some checkpoint['generator'] state_dict"),
    (checkpoint_layout, "A_matrix.pt: dict(A_matrix=state_dict, scale six)"),
    (checkpoint_layout, "A_matrix.pt: dict(A_matrix=state_dict, shift_scale=six)"),
    (constructor, "a generator of size 256"),
    (constructor, "Generator(256, 512)"),
    (seeded_randn, "G.style(z).mean(0) over 4096 draws"),
    (fill_rule, "2*r"),
    (truncation_of, "image_truncated_psi"),
    (role, "feature_map"),
])
def test_unknown_patterns_fail_naming_the_text(reader, text):
    with pytest.raises(ManifestFormatError, match="fits no known pattern") as caught:
        reader(text)
    assert repr(text) in str(caught.value)


def test_unknown_column_layout_fails():
    with pytest.raises(ManifestFormatError, match="boxes"):
        labelled_entry({"boxes_(x,y,w,h)": {}}, "boxes", "x1,y1,x2,y2,[H,W]")
