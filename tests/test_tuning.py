"""Per-source generator tuning and the LPIPS distance, on tiny random weights (no download, no full-size file)."""
from __future__ import annotations

import copy
import hashlib
import logging
import math
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import require
from reenact_core.engine import tuning
from reenact_core.engine.tuning import TunedLayers, tune_generator, tuned_parameter_names
from reenact_core.errors import InputError, Interrupted, MissingModelError, WeightsError
from reenact_core.models import lpips as lpips_module
from reenact_core.models.lpips import LPIPS
from reenact_core.models.stylegan2 import Generator, GeneratorConfig
from reenact_core.weights import convert, find_lpips, load_model, make_tiny_model_set

STEPS = 20


def state_hash(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def random_lpips(seed: int = 0) -> LPIPS:
    """LPIPS with random weights; the linear heads made non-negative like the published ones."""
    torch.manual_seed(seed)
    module = LPIPS().eval().requires_grad_(False)
    with torch.no_grad():
        for i in range(len(lpips_module.ALEXNET_CONVS)):
            getattr(module, f"lin{i}").model[1].weight.abs_()
    return module


def w_plus_of(generator: Generator, seed: int) -> torch.Tensor:
    """A W+ code (1, n_latent, style_dim) with a different w per row, from the mapping network."""
    c = generator.config
    z = torch.randn(c.n_latent, c.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.mapping(z.to(generator.input.input))[None]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    return make_tiny_model_set(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny(tiny_files):
    loaded = load_model(tiny_files["stylegan2"], "stylegan2")
    g = loaded.module
    with torch.no_grad():
        target = g(w_plus_of(g, 1), truncation=0.7, truncation_latent=loaded.mean_latent)
    return loaded, w_plus_of(g, 0), target


@pytest.fixture(scope="module")
def tuned_run(tiny):
    loaded, w_plus, target = tiny
    before = state_hash(loaded.module)
    calls = []
    tuned = tune_generator(loaded.module, w_plus, target, mean_latent=loaded.mean_latent, steps=STEPS,
                           lpips=random_lpips(), progress=lambda *args: calls.append(args))
    return tuned, calls, before


def test_tuning_lowers_the_loss_and_reports_progress(tuned_run):
    _, calls, _ = tuned_run
    steps, totals, etas, losses = zip(*calls)
    assert list(steps) == list(range(1, STEPS + 1)) and set(totals) == {STEPS}
    assert all(math.isfinite(eta) and eta >= 0 for eta in etas) and etas[-1] == 0
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.9 * losses[0]


def test_tuning_changes_only_the_selected_layers(tiny, tuned_run):
    loaded, w_plus, _ = tiny
    g = loaded.module
    tuned, _, before = tuned_run
    assert state_hash(g) == before
    assert all(not p.requires_grad and p.grad is None for p in g.parameters())
    shared = dict(g.named_parameters())
    assert set(tuned.params) == set(tuned_parameter_names(g))
    for name, value in tuned.params.items():
        assert value.dtype == torch.float32 and not value.requires_grad
        assert not torch.equal(value, shared[name]), f"{name} was not tuned"

    # The functional render equals a private copy of G holding the tuned values, so nothing else is replaced.
    reference = copy.deepcopy(g)
    assert not reference.load_state_dict(tuned.params, strict=False).unexpected_keys
    kwargs = {"truncation": 0.7, "truncation_latent": loaded.mean_latent}
    with torch.no_grad():
        image = tuned(g, w_plus, **kwargs)
        assert torch.equal(image, reference(w_plus, **kwargs))
        assert not torch.allclose(image, g(w_plus, **kwargs))
    assert state_hash(g) == before


def test_tuned_layers_survive_a_safetensors_round_trip(tiny, tuned_run, tmp_path):
    loaded, w_plus, _ = tiny
    tuned, _, _ = tuned_run
    save_file(tuned.state_dict(), str(tmp_path / "tuned.safetensors"))
    reloaded = TunedLayers.from_state_dict(load_file(str(tmp_path / "tuned.safetensors")))
    assert reloaded.params.keys() == tuned.params.keys()
    kwargs = {"truncation": 0.7, "truncation_latent": loaded.mean_latent, "read_features": [5]}
    with torch.inference_mode():
        original, again = tuned.synthesize(loaded.module, w_plus, **kwargs), reloaded.synthesize(
            loaded.module, w_plus, **kwargs)
    assert torch.equal(original.image, again.image) and torch.equal(original.features[5], again.features[5])


def test_interrupt_leaves_the_shared_generator_unchanged(tiny):
    loaded, w_plus, target = tiny
    before = state_hash(loaded.module)
    polls, done = [], []
    stop_at = 3
    with pytest.raises(Interrupted, match=f"step {stop_at} of"):
        tune_generator(loaded.module, w_plus, target, mean_latent=loaded.mean_latent, steps=10,
                       should_stop=lambda: polls.append(1) or len(polls) == stop_at,
                       progress=lambda step, *_: done.append(step))
    assert done == list(range(1, stop_at))
    assert state_hash(loaded.module) == before


def test_tuning_under_inference_mode_warns_once_without_lpips(tiny_files, caplog):
    # A host may load and run everything under torch.inference_mode(): the weights are then inference tensors.
    tuning._warn_mse_only.cache_clear()  # the warning is due once per process: make it due again
    with torch.inference_mode():
        loaded = load_model(tiny_files["stylegan2"], "stylegan2")
        g = loaded.module
        before = state_hash(g)
        w_plus, target = w_plus_of(g, 0), g(w_plus_of(g, 2))
        with caplog.at_level(logging.WARNING, logger=tuning.__name__):
            runs = [tune_generator(g, w_plus, target, mean_latent=loaded.mean_latent, steps=2) for _ in range(2)]
    assert len([r for r in caplog.records if "MSE" in r.getMessage()]) == 1
    assert torch.equal(runs[0].params["convs.4.conv.weight"], runs[1].params["convs.4.conv.weight"])
    assert state_hash(g) == before


def test_tuning_a_bfloat16_generator_keeps_float32_layers(tiny_files):
    loaded = load_model(tiny_files["stylegan2"], "stylegan2", dtype=torch.bfloat16)
    g = loaded.module
    before = state_hash(g)
    w_plus = w_plus_of(g, 0)
    with torch.no_grad():
        target = g(w_plus_of(g, 1)).float()
    tuned = tune_generator(g, w_plus, target, mean_latent=loaded.mean_latent, steps=2)
    assert state_hash(g) == before
    assert {v.dtype for v in tuned.params.values()} == {torch.float32}
    with torch.no_grad():
        assert tuned(g, w_plus).dtype == torch.bfloat16


@pytest.mark.gpu
def test_tuning_on_an_accelerator(tiny_files):
    device = "cuda" if torch.cuda.is_available() else "mps"
    loaded = load_model(tiny_files["stylegan2"], "stylegan2", device=device)
    g = loaded.module
    before = state_hash(g)
    w_plus = w_plus_of(g, 0)
    with torch.no_grad():
        target = g(w_plus_of(g, 1))
    tuned = tune_generator(g, w_plus, target, mean_latent=loaded.mean_latent, steps=3, lpips=random_lpips().to(device))
    assert state_hash(g) == before
    assert {v.device.type for v in tuned.params.values()} == {torch.device(device).type}


def test_bad_inputs_and_foreign_layers_are_refused(tiny):
    loaded, w_plus, target = tiny
    g = loaded.module
    with pytest.raises(InputError):
        tune_generator(g, w_plus[0], target, mean_latent=loaded.mean_latent, steps=1)
    with pytest.raises(InputError):
        tune_generator(g, w_plus, target[..., :-1], mean_latent=loaded.mean_latent, steps=1)
    with pytest.raises(WeightsError):
        TunedLayers.from_state_dict({"to_rgbs.0.bias": torch.zeros(1, 3, 1, 1)})
    name = "convs.4.conv.weight"
    foreign = TunedLayers({name: torch.zeros(1, 3, 3, 3, 3)})
    with pytest.raises(WeightsError, match=re.escape(name)):
        foreign(g, w_plus)


def test_target_smaller_than_the_generator_is_compared_pooled(tiny):
    loaded, w_plus, target = tiny
    half = torch.nn.functional.avg_pool2d(target, 2)
    calls = []
    tune_generator(loaded.module, w_plus, half, mean_latent=loaded.mean_latent, steps=1,
                   progress=lambda *args: calls.append(args))
    with torch.no_grad():
        render = loaded.module(w_plus, truncation=0.7, truncation_latent=loaded.mean_latent)
    expected = tuning.MSE_WEIGHT * torch.nn.functional.mse_loss(torch.nn.functional.avg_pool2d(render, 2), half)
    assert calls[0][3] == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("size", [32, 64, 256, 1024])
def test_tuned_layers_are_the_styled_convs_from_32_px(size):
    with torch.device("meta"):
        g = Generator(GeneratorConfig(size=size))
    names = tuned_parameter_names(g)
    convs = sorted({int(n.split(".")[1]) for n in names})
    # convs[2j] and convs[2j+1] run at 2^(j+3) px.
    assert convs == [i for i in range(len(g.convs)) if 2 ** (i // 2 + 3) >= tuning.TUNED_FROM_RESOLUTION]
    assert set(names) == {f"convs.{i}.{k}" for i in convs for k, _ in g.convs[i].named_parameters()}


# ---------------------------------------------------------------------------------------------------- LPIPS


def test_lpips_properties_on_random_weights():
    lp = random_lpips()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    noise = torch.randn(2, 3, 64, 64, generator=g)
    assert torch.allclose(lp(x, x), torch.zeros(2), atol=1e-6)
    assert torch.allclose(lp(x, y), lp(y, x), rtol=1e-5)
    distances = torch.stack([lp(x, x + s * noise) for s in (0.05, 0.2, 0.8)])
    assert (distances[1:] > distances[:-1]).all()
    x.requires_grad_(True)
    lp(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_lpips_matches_torchvision_alexnet_and_the_reference_formula():
    torchvision = _torchvision()
    alexnet = torchvision.models.alexnet(weights=None).features.eval()
    lp = random_lpips()
    lp.features.load_state_dict(alexnet[:12].state_dict())  # same keys and shapes as torchvision's layout
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(1, 3, 96, 96, generator=g) * 2 - 1 for _ in range(2))

    def reference_features(image):
        shift = torch.tensor(lpips_module.SHIFT).view(1, 3, 1, 1)
        scale = torch.tensor(lpips_module.SCALE).view(1, 3, 1, 1)
        h, out = (image - shift) / scale, []
        for i, layer in enumerate(alexnet):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):  # ReLU outputs, the PerceptualSimilarity slices
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        expected = sum(torch.nn.functional.conv2d((fx - fy) ** 2, getattr(lp, f"lin{i}").model[1].weight).mean()
                       for i, (fx, fy) in enumerate(zip(reference_features(x), reference_features(y))))
        assert lp(x, y).item() == pytest.approx(expected.item(), rel=1e-5)


def _torchvision():
    try:
        import torchvision
    except ImportError:
        torchvision = None
    require(torchvision is not None, "torchvision")
    return torchvision


def _official_files(folder, module: LPIPS, legacy: bool) -> None:
    """Write the two published files' layouts: torchvision AlexNet (with a classifier) and PerceptualSimilarity."""
    state = module.state_dict()
    alexnet = {k: v for k, v in state.items() if k.startswith("features.")}
    alexnet["classifier.1.weight"] = torch.zeros(4, 8)  # present in the real file, not used
    linear = {k: v for k, v in state.items() if k.startswith("lin")}
    for name, data in ((lpips_module.ALEXNET_FILE, alexnet), (lpips_module.LINEAR_FILE, linear)):
        torch.save(data, folder / name, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("legacy", [False, True])
def test_find_lpips_reads_the_official_files(tmp_path, legacy):
    source = random_lpips(3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _official_files(tmp_path / "b", source, legacy)
    (tmp_path / "b" / lpips_module.ALEXNET_FILE).rename(tmp_path / "a" / lpips_module.ALEXNET_FILE)
    found = find_lpips([tmp_path / "a", tmp_path / "b"])
    x, y = torch.rand(2, 1, 3, 64, 64) * 2 - 1
    assert found is not None and not found.training
    assert not any(p.requires_grad for p in found.parameters())
    assert torch.equal(found(x, y), source(x, y))


@pytest.mark.parametrize("given", [lpips_module.ALEXNET_FILE, lpips_module.LINEAR_FILE])
def test_find_lpips_reads_a_converted_file_and_reports_what_is_missing(tmp_path, given):
    assert find_lpips([tmp_path]) is None
    source = random_lpips(4)
    official = tmp_path / "official"
    official.mkdir()
    _official_files(official, source, legacy=False)
    (tmp_path / "models").mkdir()
    converted = convert(official / given, tmp_path / "models")
    assert converted.name == lpips_module.CONVERTED_FILE
    found = find_lpips([tmp_path / "models"], dtype=torch.float64)
    assert found.lin0.model[1].weight.dtype == torch.float64
    assert torch.equal(found.lin0.model[1].weight.float(), source.lin0.model[1].weight)
    assert not found.training and not any(p.requires_grad for p in found.parameters())

    partial = tmp_path / "partial"
    partial.mkdir()
    _official_files(partial, source, legacy=False)
    (partial / lpips_module.ALEXNET_FILE).unlink()
    with pytest.raises(MissingModelError, match=re.escape(lpips_module.ALEXNET_FILE)):
        find_lpips([partial])
    with pytest.raises(MissingModelError, match=re.escape(lpips_module.ALEXNET_FILE)):
        convert(partial / lpips_module.LINEAR_FILE, tmp_path / "models")


def test_find_lpips_refuses_incomplete_or_foreign_weights(tmp_path):
    state = random_lpips().state_dict()
    linear = {k: v for k, v in state.items() if k.startswith("lin")}
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, tmp_path / lpips_module.ALEXNET_FILE)
    torch.save({k: v for k, v in linear.items() if k != "lin4.model.1.weight"}, tmp_path / lpips_module.LINEAR_FILE)
    with pytest.raises(WeightsError, match="missing keys: lin4.model.1.weight"):
        find_lpips([tmp_path])
    torch.save({**linear, "lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, tmp_path / lpips_module.LINEAR_FILE)
    with pytest.raises(WeightsError, match="wrong shapes"):
        find_lpips([tmp_path])
    (tmp_path / lpips_module.LINEAR_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        find_lpips([tmp_path])
    save_file(state, str(tmp_path / lpips_module.CONVERTED_FILE))   # a bare state dict, not a model file
    with pytest.raises(WeightsError, match="not a Latent Reenact model file"):
        find_lpips([tmp_path])
