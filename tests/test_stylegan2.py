"""StyleGAN2 generator: invariants of tiny generators (the golden fixtures are in test_golden.py)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from reenact_core.errors import WeightsError
from reenact_core.models.stylegan2 import (REBUILT_BUFFER_SUFFIXES, Generator, GeneratorConfig,
                                           config_from_state_dict, standard_channels)

TINY = GeneratorConfig(size=32, style_dim=32, n_mlp=2, channels=(32, 32, 16, 16))
SIZES = [2 ** i for i in range(5, 11)]


@pytest.mark.parametrize("size", SIZES)
def test_sizes_layout_and_inference(size):
    log_size = int(math.log2(size))
    tiny = GeneratorConfig(size=size, style_dim=8, n_mlp=1, channels=tuple(range(log_size + 2, 3, -1)))
    assert tiny.n_latent == 2 * log_size - 2 and tiny.num_layers == tiny.n_latent - 1
    g = Generator(tiny)
    state_dict = g.state_dict()
    assert config_from_state_dict(state_dict) == tiny
    assert sorted(k for k in state_dict if k.startswith("noises.")) == sorted(f"noises.noise_{k}"
                                                                             for k in range(tiny.num_layers))
    assert state_dict[f"noises.noise_{tiny.num_layers - 1}"].shape[-1] == size
    buffers = {name for name, _ in g.named_buffers()}
    assert buffers == {k for k in state_dict if k.startswith("noises.") or k.endswith(REBUILT_BUFFER_SUFFIXES)}
    with torch.inference_mode():
        assert g(torch.randn(1, tiny.style_dim)).shape == (1, 3, size, size)
    for cm in (1, 2):   # full widths, built on the meta device: no memory, no time
        standard = GeneratorConfig(size=size, channel_multiplier=cm)
        with torch.device("meta"):
            inferred = config_from_state_dict(Generator(standard).state_dict())
        assert inferred.channels is None and inferred.widths == standard.widths   # cm is moot up to 32 px
    # Files may lack the constant kernels: the architecture is still read.
    assert config_from_state_dict({k: v for k, v in state_dict.items()
                                   if not k.endswith(REBUILT_BUFFER_SUFFIXES)}) == tiny


def test_standard_channels_follow_the_official_table():
    for cm in (1, 2):
        widths = dict(zip((2 ** i for i in range(2, 11)), standard_channels(1024, cm)))
        assert all(widths[res] == 512 for res in (4, 8, 16, 32))
        assert [widths[res] * res for res in (64, 128, 256, 512, 1024)] == [256 * cm * 64] * 5


@pytest.fixture(scope="module")
def tiny() -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = Generator(TINY).eval().requires_grad_(False)
        for name, p in g.named_parameters():
            if name.endswith(("noise.weight", "activate.bias")):   # zero at init: give noise and bias a role
                p.copy_(torch.randn_like(p) * 0.3)
    return g


@pytest.fixture
def w_plus() -> torch.Tensor:
    return torch.randn(2, TINY.n_latent, TINY.style_dim, generator=torch.Generator().manual_seed(1))


@torch.inference_mode()
def test_w_input_equals_repeated_w_plus_and_z_input_maps(tiny, w_plus):
    w = w_plus[:, 0]
    torch.testing.assert_close(tiny(w), tiny(w[:, None].repeat(1, TINY.n_latent, 1)))
    torch.testing.assert_close(tiny(w, input_is_latent=False), tiny(tiny.mapping(w)))
    assert not torch.allclose(tiny(w_plus), tiny(w))


@torch.inference_mode()
def test_truncation_acts_on_every_row(tiny, w_plus):
    w_bar = tiny.mean_latent(256, seed=3)
    assert w_bar.shape == (1, TINY.style_dim)
    assert torch.equal(tiny(w_plus, truncation=1.0, truncation_latent=w_bar), tiny(w_plus))
    out = tiny.synthesize(w_plus, truncation=0.5, truncation_latent=w_bar)
    torch.testing.assert_close(out.w_plus, w_bar + 0.5 * (w_plus - w_bar))
    torch.testing.assert_close(out.image, tiny(w_bar + 0.5 * (w_plus - w_bar)))
    collapsed = tiny(w_plus, truncation=0.0, truncation_latent=w_bar)
    torch.testing.assert_close(collapsed[0], collapsed[1])
    with pytest.raises(ValueError, match="truncation_latent"):
        tiny(w_plus, truncation=0.7)


def _feature_shape(config: GeneratorConfig, k: int) -> tuple[int, int, int]:
    step = (k + 1) // 2                                   # StyledConv k works at 4·2^step px
    return config.widths[step], 4 * 2 ** step, 4 * 2 ** step


def test_feature_read_and_shift(tiny, w_plus):
    every = range(TINY.num_layers)
    with torch.inference_mode():
        base = tiny.synthesize(w_plus, read_features=every)
        for k in every:
            assert base.features[k].shape == (2, *_feature_shape(TINY, k))
            zero = torch.zeros(1, *_feature_shape(TINY, k))
            assert torch.equal(tiny.synthesize(w_plus, feature_shifts={k: zero}).image, base.image)
        k = TINY.num_layers // 2
        shift = torch.randn(1, *_feature_shape(TINY, k), generator=torch.Generator().manual_seed(2))
        shifted = tiny.synthesize(w_plus, read_features=every, feature_shifts={k: shift})
    for j in range(k):
        assert torch.equal(shifted.features[j], base.features[j])
    torch.testing.assert_close(shifted.features[k], base.features[k] + shift)
    for j in range(k + 1, TINY.num_layers):
        assert not torch.allclose(shifted.features[j], base.features[j])
    assert not torch.allclose(shifted.image, base.image)
    # With autograd on, nothing is computed in place; returned features were not overwritten either way.
    recorded = tiny.synthesize(w_plus.requires_grad_(), read_features=every, feature_shifts={k: shift})
    assert recorded.image.requires_grad
    for j in every:
        torch.testing.assert_close(recorded.features[j].detach(), shifted.features[j])
    with pytest.raises(ValueError, match="out of range"):
        tiny.synthesize(w_plus, read_features=[TINY.num_layers])


@torch.inference_mode()
def test_noise_modes(tiny, w_plus):
    stored = tiny(w_plus)
    assert torch.equal(tiny(w_plus), stored)
    seeded = [tiny(w_plus, randomize_noise=True, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])
    assert not torch.allclose(seeded[0], stored)
    assert not torch.allclose(tiny(w_plus, randomize_noise=True), tiny(w_plus, randomize_noise=True))


def test_config_round_trip_and_validation():
    for config in (TINY, GeneratorConfig(), GeneratorConfig(size=1024, channel_multiplier=2)):
        assert GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad in ({"size": 48}, {"size": 16}, {"size": 2048}, {"size": 32, "channels": [8, 8]}):
        with pytest.raises(ValueError):
            GeneratorConfig(**bad)
        with pytest.raises(WeightsError):
            GeneratorConfig.from_dict(bad)


@pytest.mark.parametrize("edit", ["missing style.1.weight", "missing convs.2.conv.weight",
                                  "bad convs.1.conv.weight", "missing to_rgbs"])
def test_config_from_state_dict_errors(tiny, edit):
    state_dict = dict(tiny.state_dict())
    if edit == "missing to_rgbs":
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("to_rgbs.")}
    elif edit.startswith("missing"):
        del state_dict[edit.split()[1]]
    else:
        key = edit.split()[1]
        state_dict[key] = state_dict[key][:, :-1]
    with pytest.raises(WeightsError) as error:
        config_from_state_dict(state_dict)
    assert "\n" not in str(error.value)


@torch.inference_mode()
def test_bfloat16(tiny, w_plus):
    reference = tiny(w_plus)
    g16 = Generator(TINY).eval()
    g16.load_state_dict(tiny.state_dict())
    g16.to(torch.bfloat16)
    out = g16(w_plus)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - reference).norm() / reference.norm() < 0.1
    noisy = g16(w_plus, randomize_noise=True, generator=torch.Generator().manual_seed(0))
    assert noisy.dtype == torch.bfloat16 and torch.isfinite(noisy).all()
    assert g16.mean_latent(64).dtype == torch.bfloat16


def _fresh_output(g: Generator, w_plus: torch.Tensor) -> torch.Tensor:
    """``g(w_plus)`` with every cached weight preparation dropped first (the uncached reference)."""
    for m in g.modules():
        if hasattr(m, "_weight_cache"):
            m._weight_cache = None
    return g(w_plus)


def test_weight_cache_follows_in_place_updates(tiny, w_plus):
    with torch.no_grad():
        first = tiny(w_plus)
        assert torch.equal(tiny(w_plus), first)                   # served from the cache: exact
        assert any(getattr(m, "_weight_cache", None) is not None for m in tiny.modules())
        tiny.convs[0].conv.weight.mul_(1.5)                       # an in-place training-style update
        updated = tiny(w_plus)
        assert not torch.equal(updated, first)
        assert torch.equal(updated, _fresh_output(tiny, w_plus))
        tiny.load_state_dict({k: v * 0.9 if k.endswith("conv.weight") else v
                              for k, v in tiny.state_dict().items()})
        assert torch.equal(tiny(w_plus), _fresh_output(tiny, w_plus))
    # An optimiser step on a trainable generator, then inference again.
    tiny.requires_grad_(True)
    optimiser = torch.optim.SGD(tiny.parameters(), lr=0.1)
    tiny(w_plus).square().mean().backward()
    optimiser.step()
    with torch.no_grad():
        assert torch.equal(tiny(w_plus), _fresh_output(tiny, w_plus))


def test_weight_cache_follows_swapped_parameters(tiny, w_plus):
    from torch.func import functional_call
    with torch.no_grad():
        tiny(w_plus)                                              # fills the cache with the module's weights
        swapped = {k: v * 1.1 for k, v in tiny.named_parameters() if k.endswith("conv.weight")}
        via_call = functional_call(tiny, swapped, (w_plus,))
        own = tiny(w_plus)
        reference = Generator(TINY).eval()
        reference.load_state_dict({**tiny.state_dict(), **swapped})
        assert torch.equal(via_call, reference(w_plus))
        assert torch.equal(own, _fresh_output(tiny, w_plus)) and not torch.equal(own, via_call)
        tiny.to(torch.float64)                                    # .to() swaps the storage
        assert torch.equal(tiny(w_plus.double()), _fresh_output(tiny, w_plus.double()))
    # With gradients on trainable weights nothing is cached: gradients reach every conv weight.
    tiny.requires_grad_(True)
    tiny(w_plus.double()).square().mean().backward()
    assert all(m.weight.grad is not None for m in tiny.modules() if hasattr(m, "_weight_cache"))
