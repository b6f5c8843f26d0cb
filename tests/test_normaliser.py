"""A's normaliser: stored in the directions file, used for every Δp made for that A, VoxCeleb for old files."""
from __future__ import annotations

import dataclasses
import json
import logging

import torch

from reenact_core.engine import DriveOptions, DriverMotion, ReenactModels, edit_delta_p
from reenact_core.files import write_safetensors
from reenact_core.models.directions import VOXCELEB_RANGES
from reenact_core.params import NUM_EXPRESSIONS, VOXCELEB, FaceParams, Normaliser, delta_p
from reenact_core.weights import convert, load_model, make_random_checkpoint, tiny_config
from reenact_core.weights.official import write_official


def random_params(batch: int, seed: int) -> FaceParams:
    g = torch.Generator().manual_seed(seed)
    return FaceParams(torch.randn(batch, 3, generator=g) * 20, torch.randn(batch, generator=g) * 0.1,
                      torch.randn(batch, NUM_EXPRESSIONS, generator=g))


def other_ranges() -> tuple[tuple[float, float], ...]:
    """A table unlike VoxCeleb's: every row shifted and widened differently."""
    return tuple((lo - 0.1 * i, hi + 0.3 + 0.05 * i) for i, (lo, hi) in enumerate(VOXCELEB_RANGES))


def directions_only(loaded) -> ReenactModels:
    return ReenactModels(None, None, None, loaded, torch.device("cpu"), torch.float32)


def test_a_directions_file_with_other_ranges_changes_delta_p(tmp_path):
    config = dataclasses.replace(tiny_config("directions"), ranges=other_ranges(), angle_scales=(30.0, 15.0, 25.0),
                                 shift_scale=4.0)
    loaded = load_model(make_random_checkpoint("directions", config, tmp_path / "a.safetensors"), "directions")
    models = directions_only(loaded)
    assert models.normaliser == Normaliser(other_ranges(), (30.0, 15.0, 25.0), 4.0)

    source, target = random_params(1, 0), random_params(3, 1)
    d = delta_p(source, target, normaliser=models.normaliser)
    rows = torch.tensor(other_ranges(), dtype=torch.float64)
    a = (2 * 4.0 / (rows[3:, 1] - rows[3:, 0])).float()
    raw = lambda p: torch.cat([p.jaw[:, None], p.exp], 1)  # noqa: E731
    assert torch.allclose(d[:, :3], (target.angles - source.angles) * 4.0 / torch.tensor([30.0, 15.0, 25.0]),
                          atol=1e-5)
    assert torch.allclose(d[:, 3:], a * (raw(target) - raw(source)), atol=1e-5)
    assert not torch.allclose(d, delta_p(source, target, normaliser=VOXCELEB), atol=1e-3)

    # The engine's Δp makers take the loaded A's normaliser.
    motion = DriverMotion(source, models.normaliser, DriveOptions(smoothing=0.0))
    codes = torch.zeros(3, 236)
    codes[:, 200:203], codes[:, 203], codes[:, 150:161] = 0.1, target.jaw, target.exp
    driven = FaceParams.from_deca(codes)
    assert torch.allclose(motion(codes), delta_p(source, driven, normaliser=models.normaliser))
    edit = edit_delta_p(source, {"jaw": 0.05}, "offset", normaliser=models.normaliser)
    assert torch.allclose(edit[0, 3], a[0] * 0.05, rtol=1e-4)


def test_converted_official_a_carries_the_voxceleb_table(tmp_path):
    sd = {"linear.weight": torch.randn(8 * 32, 15) * 0.03, "linear.bias": torch.randn(8 * 32) * 0.1}
    src = write_official(tmp_path / "A_matrix.pt", "directions", sd,
                         extras={"learned_directions": 15, "shift_scale": 6.0, "shift_dim": 32})
    loaded = load_model(convert(src, tmp_path / "a.safetensors"), "directions")
    stored = json.loads(loaded.metadata["config"])
    assert stored["ranges"] == [list(row) for row in VOXCELEB_RANGES]
    assert loaded.metadata["format_version"] == "2"
    assert loaded.config.normaliser == VOXCELEB


def test_a_file_from_before_the_normaliser_loads_with_voxceleb_and_says_so_once(tmp_path, caplog):
    new = load_model(make_random_checkpoint("directions", tiny_config("directions"), tmp_path / "new.safetensors"))
    config = {k: v for k, v in json.loads(new.metadata["config"]).items() if k not in ("ranges", "angle_scales")}
    old = write_safetensors(tmp_path / "old.safetensors", new.module.state_dict(),
                            {**new.metadata, "format_version": "1", "config": json.dumps(config)})
    with caplog.at_level(logging.WARNING):
        first = load_model(old, "directions")
        second = load_model(old, "directions")
    assert first.config.normaliser == second.config.normaliser == VOXCELEB
    notices = [r.getMessage() for r in caplog.records if "normaliser" in r.getMessage()]
    assert len(notices) == 1 and "old.safetensors" in notices[0] and "VoxCeleb" in notices[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_model(tmp_path / "new.safetensors", "directions")
    assert not caplog.records
