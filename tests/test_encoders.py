"""e4e, DECA E_flame and the direction matrix A on tiny configs (the golden fixtures are in test_golden.py)."""
from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import pytest
import torch

from reenact_core.errors import InputError, WeightsError
from reenact_core.models import deca, directions, e4e


def _loaded(module_cls, config, state_dict):
    model = module_cls(config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


# --- tiny configs -------------------------------------------------------------------------------------------

TINY_E4E = e4e.EncoderConfig(size=64, input_size=64, style_dim=32, widths=(8, 16, 24, 32), units=(1, 2, 1, 1),
                             se_reduction=4)
TINY_DECA = deca.DecaConfig(base_width=4, blocks=(1, 2, 1, 1), hidden=16)
TINY_A = directions.DirectionsConfig(input_dim=5, num_layers=3, shift_dim=16)
TINY_CONFIGS = [
    (e4e, e4e.Encoder4Editing, TINY_E4E),
    (e4e, e4e.Encoder4Editing, replace(TINY_E4E, add_latent_avg=True)),
    (deca, deca.DecaEncoder, TINY_DECA),
    (directions, directions.DirectionMatrix, TINY_A),
]


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float entry (parameters, BN statistics, latent_avg) set to nearby random values, eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                noise = torch.randn(value.shape, generator=g) * 0.1
                value.copy_(noise.abs() + 1 if key.endswith("running_var") else value + noise)
    return model.eval()


@pytest.mark.parametrize("size", [8, 64, 256, 1024])
@pytest.mark.parametrize("input_size", [32, 64, 256])
def test_e4e_output_shape(size, input_size):
    config = replace(TINY_E4E, size=size, input_size=input_size)
    model = _randomise(e4e.Encoder4Editing(config))
    with torch.no_grad():
        w_plus = model(torch.rand(2, 3, input_size, input_size) * 2 - 1)
    assert w_plus.shape == (2, 2 * int(math.log2(size)) - 2, config.style_dim)
    assert torch.isfinite(w_plus).all()


def test_e4e_taps_are_stage_ends():
    assert e4e.EncoderConfig().tap_units == (6, 20, 23)
    assert TINY_E4E.tap_units == (2, 3, 4)


def test_e4e_rejects_wrong_input_size():
    model = e4e.Encoder4Editing(TINY_E4E)
    with pytest.raises(InputError):
        model(torch.zeros(1, 3, TINY_E4E.input_size * 2, TINY_E4E.input_size * 2))


def test_e4e_adds_latent_avg():
    with_avg = _randomise(e4e.Encoder4Editing(replace(TINY_E4E, add_latent_avg=True)))
    state_dict = with_avg.state_dict()
    plain = _loaded(e4e.Encoder4Editing, TINY_E4E, {k: v for k, v in state_dict.items() if k != "latent_avg"})
    image = torch.rand(2, 3, TINY_E4E.input_size, TINY_E4E.input_size) * 2 - 1
    with torch.no_grad():
        difference = with_avg(image) - plain(image)
    assert state_dict["latent_avg"].abs().min() > 0
    torch.testing.assert_close(difference, state_dict["latent_avg"].expand_as(difference))


def test_deca_output_shape():
    model = _randomise(deca.DecaEncoder(TINY_DECA))
    with torch.no_grad():
        params = model(torch.rand(2, 3, 224, 224))
    assert params.shape == (2, deca.N_CODES)


def test_split_codes_layout():
    params = torch.arange(2 * deca.N_CODES, dtype=torch.float32).view(2, deca.N_CODES)
    codes = deca.split_codes(params)
    for name, part in deca.CODE_SLICES.items():
        assert torch.equal(getattr(codes, name).reshape(2, -1), params[:, part])
    assert codes.light.shape == (2, 9, 3)
    assert torch.equal(torch.cat([codes.global_pose, codes.jaw_pose], dim=1), codes.pose)
    assert sum(s.stop - s.start for s in deca.CODE_SLICES.values()) == deca.N_CODES
    with pytest.raises(InputError):
        deca.split_codes(params[:, :-1])


@pytest.mark.parametrize("module, model_cls, config", TINY_CONFIGS)
def test_config_round_trip(module, model_cls, config):
    assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(WeightsError):
        type(config).from_dict({**config.to_dict(), "no_such_field": 1})


@pytest.mark.parametrize("module, model_cls, config", TINY_CONFIGS)
def test_config_from_state_dict(module, model_cls, config):
    state_dict = model_cls(config).state_dict()
    extra = {"shift_dim": config.shift_dim} if module is directions else {}
    assert module.config_from_state_dict(state_dict, **extra) == config


def _without(state_dict: dict, prefix: str) -> dict:
    return {k: v for k, v in state_dict.items() if not k.startswith(prefix)}


def _e4e_broken():
    state_dict = e4e.Encoder4Editing(TINY_E4E).state_dict()
    last_style = f"styles.{TINY_E4E.n_styles - 1}."
    return {
        "missing style block 0": (_without(state_dict, "styles.0."), {}),
        "missing unit 1 (stages no longer found)": (_without(state_dict, "body.1."), {}),
        "odd number of style blocks": (_without(state_dict, last_style), {}),
    }


def _deca_broken():
    state_dict = deca.DecaEncoder(TINY_DECA).state_dict()
    head = state_dict["layers.0.weight"]
    return {
        "missing head": (_without(state_dict, "layers.0."), {}),
        "missing stage": (_without(state_dict, "encoder.layer3."), {}),
        "head width differs from trunk": ({**state_dict, "layers.0.weight": head[:, 1:]}, {}),
    }


def _directions_broken():
    state_dict = directions.DirectionMatrix(TINY_A).state_dict()
    return {
        "missing weight": (_without(state_dict, "linear.weight"), {"shift_dim": TINY_A.shift_dim}),
        "outputs not whole rows": (state_dict, {"shift_dim": TINY_A.shift_dim + 1}),
    }


@pytest.mark.parametrize("module, broken", [(e4e, _e4e_broken), (deca, _deca_broken),
                                            (directions, _directions_broken)])
def test_config_from_state_dict_refuses_broken_weights(module, broken):
    for what, (state_dict, extra) in broken().items():
        with pytest.raises(WeightsError) as error:
            module.config_from_state_dict(state_dict, **extra)
        assert "\n" not in str(error.value), what


def test_direction_matrix_zero_delta_p_gives_bias():
    model = _randomise(directions.DirectionMatrix(TINY_A))
    with torch.no_grad():
        shift = model(torch.zeros(3, TINY_A.input_dim))
    expected = model.linear.bias.detach().view(TINY_A.num_layers, TINY_A.shift_dim).expand(3, -1, -1)
    assert expected.abs().min() > 0
    torch.testing.assert_close(shift, expected, rtol=0, atol=0)


def test_apply_shift_touches_only_first_rows():
    layers, dim = TINY_A.num_layers, TINY_A.shift_dim
    w_plus = torch.randn(2, layers + 4, dim)
    original = w_plus.clone()
    shift = torch.randn(2, layers, dim)
    shifted = directions.apply_shift(w_plus, shift)
    assert torch.equal(w_plus, original)
    assert torch.equal(shifted[:, :layers], original[:, :layers] + shift)
    assert torch.equal(shifted[:, layers:], original[:, layers:])
    with pytest.raises(WeightsError):
        directions.apply_shift(w_plus, torch.zeros(2, layers, dim + 1))
    with pytest.raises(WeightsError):
        directions.apply_shift(w_plus, torch.zeros(2, layers + 5, dim))


# --- inference set-up and bf16 --------------------------------------------------------------------------------

@pytest.mark.parametrize("module, model_cls, config", [TINY_CONFIGS[0], TINY_CONFIGS[2]])
def test_inference_setup_is_exact_and_left_off_when_trainable(module, model_cls, config):
    plain = _randomise(model_cls(config))
    fast = module.KIND.set_mode(copy.deepcopy(plain), False)
    trainable = module.KIND.set_mode(copy.deepcopy(plain), True)
    conv_weights = [p for p in fast.parameters() if p.ndim == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    assert all(p.is_contiguous() for p in trainable.parameters())
    assert list(trainable.state_dict()) == list(plain.state_dict())          # trainable: nothing folded
    norms = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert norms(trainable) == norms(plain) > norms(fast)                   # inference: BatchNorms folded
    assert not any(p.requires_grad for p in fast.parameters())
    size = config.input_size if module is e4e else deca.INPUT_SIZE
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = plain(x)
        out = fast(x)
    with torch.enable_grad():                                  # out-of-place path (autograd) agrees too
        graded = fast(x.clone().requires_grad_(True))
    scale = reference.abs().max()
    assert (out - reference).abs().max() <= 1e-5 * scale
    assert (graded - reference).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("module, model_cls, config", [TINY_CONFIGS[0], TINY_CONFIGS[2]])
def test_bfloat16_within_documented_error(module, model_cls, config):
    fast = module.KIND.set_mode(_randomise(model_cls(config)), False)
    size = config.input_size if module is e4e else deca.INPUT_SIZE
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        reference = fast(x)
        out = fast.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    span = reference.max() - reference.min()
    assert (out.float() - reference).abs().max() <= module.BF16_ERROR * span
