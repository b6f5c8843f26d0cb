"""Editing a prepared source on tiny random weights: neutral settings, targets against offsets, sweeps."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import require
from golden_fixtures import MEDIA
from reenact_core.engine import (DIRECTION_NAMES, edit, edit_delta_p, load_reenact_models, prepare_source, sweep,
                                 sweep_range)
from reenact_core.errors import InputError
from reenact_core.params import ANGLE_SCALES_DEG, NUM_DIRECTIONS, normalise


@pytest.fixture(scope="module")
def models(models_dir):
    return load_reenact_models([models_dir])


@pytest.fixture(scope="module")
def source(models):
    photos = sorted(MEDIA.glob("s*.jpg"))
    require(bool(photos), f"test photos in {MEDIA}")
    return prepare_source(np.array(Image.open(photos[0]).convert("RGB")), models)


def own_values(source) -> dict[str, float]:
    """The source's own value of every direction."""
    p = source.params
    values = [*p.angles[0].tolist(), float(p.jaw[0]), *p.exp[0].tolist()]
    return dict(zip(DIRECTION_NAMES, values))


def test_neutral_settings_equal_no_edit(models, source):
    unedited = edit(source, models, {})
    assert len(unedited) == 1
    zero_offsets = edit(source, models, dict.fromkeys(DIRECTION_NAMES, 0.0), "offset")
    own_targets = edit(source, models, own_values(source), "target")
    for other in (zero_offsets, own_targets):
        for name in ("crops", "frames", "masks"):
            assert np.array_equal(getattr(other, name), getattr(unedited, name))


def test_opposite_yaw_edits_differ(models, source):
    turned = edit(source, models, {"yaw": [-20.0, 20.0]})
    assert np.abs(turned.crops[0].astype(int) - turned.crops[1]).mean() > 1
    unedited = edit(source, models, {}).crops[0]
    assert all(not np.array_equal(c, unedited) for c in turned.crops)


def test_targets_and_offsets_meet(models, source):
    own = own_values(source)
    offsets = {"yaw": 10.0, "jaw": 0.05, "exp_00": -0.5}
    by_offset = edit_delta_p(source.params, offsets, "offset", normaliser=models.normaliser)
    by_target = edit_delta_p(source.params, {n: own[n] + v for n, v in offsets.items()}, "target",
                             normaliser=models.normaliser)
    assert np.allclose(by_offset.numpy(), by_target.numpy(), atol=1e-5)
    scale = models.shift_scale / ANGLE_SCALES_DEG[0]
    assert by_offset[0, 0].item() == pytest.approx(10.0 * scale, rel=1e-5)
    untouched = [i for i, n in enumerate(DIRECTION_NAMES) if n not in offsets]
    assert not by_offset[0, untouched].any()
    # A target is absolute: the same target gives the same Δp from wherever the source starts.
    target = edit_delta_p(source.params, {"pitch": 5.0}, "target", normaliser=models.normaliser)
    own_n = normalise(source.params, normaliser=models.normaliser)
    expected = 5.0 * models.shift_scale / ANGLE_SCALES_DEG[1] - own_n[0, 1]
    assert target[0, 1].item() == pytest.approx(expected.item(), abs=1e-5)


def test_sweep_spans_the_training_range(models, source):
    lo, hi = sweep_range("yaw", models.normaliser)
    assert (lo, hi) == pytest.approx((-ANGLE_SCALES_DEG[0], ANGLE_SCALES_DEG[0]))
    jaw = sweep_range("jaw", models.normaliser)
    jaw_n = edit_delta_p(source.params, {"jaw": list(jaw)}, "target", normaliser=models.normaliser)[:, 3] \
        + normalise(source.params, normaliser=models.normaliser)[0, 3]
    assert jaw_n.tolist() == pytest.approx([-models.shift_scale, models.shift_scale], abs=1e-4)
    frames = sweep(source, models, "yaw", steps=3, paste_back=False, batch_size=2)
    assert len(frames) == 3 and frames.frames is None
    assert not np.array_equal(frames.crops[0], frames.crops[-1])
    middle = edit(source, models, {"yaw": 0.0}, "target", paste_back=False, batch_size=2)
    assert np.array_equal(sweep(source, models, "yaw", [0.0], paste_back=False).crops, middle.crops)


def test_bad_edits_are_refused(models, source):
    with pytest.raises(InputError, match="unknown directions"):
        edit(source, models, {"smile": 1.0})
    with pytest.raises(InputError, match="edit mode"):
        edit(source, models, {"yaw": 1.0}, "absolute")
    with pytest.raises(InputError, match="one length"):
        edit(source, models, {"yaw": [1.0, 2.0], "pitch": [1.0, 2.0, 3.0]})
    assert len(DIRECTION_NAMES) == NUM_DIRECTIONS
