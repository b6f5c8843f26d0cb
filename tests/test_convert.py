"""Converter and loader: official layouts in, strict checks, safe loading, one-line errors."""
from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from reenact_core.cli import main as cli_main
from reenact_core.errors import WeightsError
from reenact_core.weights import (INFERENCE, KINDS, convert, inspect_model_file, kind, kind_names, load_model,
                                  make_tiny_model_set, tiny_config)
from reenact_core.weights.official import write_official

EXTRAS = {"directions": {"learned_directions": 15, "shift_scale": 6.0, "w_plus": True, "num_layers_shift": 8}}


def tiny_state_dict(kind_name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return kind(kind_name).build(tiny_config(kind_name)).state_dict()


def write_tiny_official(tmp_path, kind_name: str, sd=None, **kw):
    sd = tiny_state_dict(kind_name) if sd is None else sd
    extras = dict(EXTRAS.get(kind_name, {}), shift_dim=tiny_config(kind_name).shift_dim) \
        if kind_name == "directions" else None
    return write_official(tmp_path / f"{kind_name}.pt", kind_name, sd, extras=extras, **kw), sd


def sample_input(kind_name: str, config) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind_name == "stylegan2":
        return torch.randn(2, config.n_latent, config.style_dim, generator=g)
    if kind_name == "e4e":
        return torch.rand(2, 3, config.input_size, config.input_size, generator=g) * 2 - 1
    if kind_name == "deca":
        return torch.rand(2, 3, 224, 224, generator=g)
    return torch.randn(2, config.input_dim, generator=g)


def assert_one_line_error(exc_info, *needles: str) -> None:
    msg = str(exc_info.value)
    assert "\n" not in msg, f"error spans several lines: {msg!r}"
    for needle in needles:
        assert needle in msg, f"{needle!r} not named in: {msg}"


@pytest.mark.parametrize("kind_name", kind_names(INFERENCE))
def test_round_trip_reproduces_the_module(tmp_path, kind_name):
    src, sd = write_tiny_official(tmp_path, kind_name)
    out = convert(src, tmp_path / "out.safetensors")
    loaded = load_model(out, expected_kind=kind_name)
    assert loaded.config == tiny_config(kind_name)
    reference = kind(kind_name).build(tiny_config(kind_name))
    reference.load_state_dict(sd, strict=True)
    reference = kind(kind_name).set_mode(reference, False)   # the loader's inference set-up (e.g. channels-last)
    x = sample_input(kind_name, loaded.config)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), reference(x))
    assert not loaded.module.training and not any(p.requires_grad for p in loaded.module.parameters())


def test_folder_destination_uses_canonical_name(tmp_path):
    src, _ = write_tiny_official(tmp_path, "deca")
    (tmp_path / "models").mkdir()
    assert convert(src, tmp_path / "models").name == KINDS["deca"].canonical_file


def test_generator_kernels_may_be_missing_and_are_rebuilt(tmp_path):
    sd = tiny_state_dict("stylegan2")
    kernels = [k for k in sd if k.endswith(("blur.kernel", "upsample.kernel"))]
    assert kernels
    src, _ = write_tiny_official(tmp_path, "stylegan2", {k: v for k, v in sd.items() if k not in kernels})
    loaded = load_model(convert(src, tmp_path / "g.safetensors"))
    for k in kernels:
        assert torch.equal(loaded.module.state_dict()[k], sd[k])


def test_generator_mean_latent_seeded_or_from_checkpoint(tmp_path):
    sd = tiny_state_dict("stylegan2")
    src, _ = write_tiny_official(tmp_path, "stylegan2", sd)
    a = load_model(convert(src, tmp_path / "a.safetensors"))
    b = load_model(convert(src, tmp_path / "b.safetensors"))
    assert a.mean_latent.shape == (1, a.config.style_dim) and torch.equal(a.mean_latent, b.mean_latent)
    from reenact_core.models.stylegan2 import MEAN_LATENT_SAMPLES, MEAN_LATENT_SEED
    assert torch.allclose(a.mean_latent, a.module.mean_latent(MEAN_LATENT_SAMPLES, MEAN_LATENT_SEED), atol=1e-6)

    # rosinality FFHQ layout: latent_avg and an argparse Namespace beside g_ema
    w_avg = torch.randn(a.config.style_dim)
    ffhq = tmp_path / "ffhq.pt"
    torch.save({"g_ema": sd, "latent_avg": w_avg, "args": argparse.Namespace(size=256, channel_multiplier=2)}, ffhq)
    (tmp_path / "m").mkdir()
    out = convert(ffhq, tmp_path / "m")
    assert out.name.startswith("stylegan2-ffhq-")
    assert torch.equal(load_model(out).mean_latent, w_avg[None])


def test_original_e4e_layout_adds_latent_avg(tmp_path):
    sd = tiny_state_dict("e4e")
    config = tiny_config("e4e")
    latent_avg = torch.randn(config.n_styles, config.style_dim)
    src = write_official(tmp_path / "e4e_orig.pt", "e4e", sd, latent_avg=latent_avg, original_e4e=True)
    ckpt = torch.load(src, weights_only=True)   # the original layout also carries the decoder: it is ignored
    ckpt["state_dict"]["decoder.style.1.weight"] = torch.zeros(4, 4)
    torch.save(ckpt, src)
    plain = load_model(convert(write_official(tmp_path / "e.pt", "e4e", sd), tmp_path / "plain.safetensors"))
    with_avg = load_model(convert(src, tmp_path / "avg.safetensors"))
    assert with_avg.metadata["adds_latent_avg"] == "true" and plain.metadata["adds_latent_avg"] == "false"
    x = sample_input("e4e", config)
    with torch.no_grad():
        torch.testing.assert_close(with_avg.module(x), plain.module(x) + latent_avg, rtol=0, atol=1e-6)


def test_directions_without_shift_dim_default_512(tmp_path):
    sd = {"linear.weight": torch.randn(8 * 512, 15) * 0.03, "linear.bias": torch.randn(8 * 512) * 0.1}
    src = write_official(tmp_path / "A_matrix.pt", "directions", sd, extras=EXTRAS["directions"])
    loaded = load_model(convert(src, tmp_path / "a.safetensors"))
    assert (loaded.config.shift_dim, loaded.config.num_layers, loaded.config.shift_scale) == (512, 8, 6.0)


@pytest.mark.parametrize("kind_name", kind_names(INFERENCE))
def test_missing_extra_and_misshaped_keys_are_refused(tmp_path, kind_name):
    sd = tiny_state_dict(kind_name)
    victim = next(k for k in sd if sd[k].dim() >= 1 and not k.endswith("kernel"))
    cases = {
        "missing": ({k: v for k, v in sd.items() if k != victim}, victim),
        "extra": (dict(sd, **{"unexpected.weight": torch.zeros(3)}), "unexpected.weight"),
    }
    last = [k for k in sd if sd[k].dim() >= 1][-1]
    cases["shape"] = (dict(sd, **{last: torch.zeros(*sd[last].shape[:-1], sd[last].shape[-1] + 1)}), last)
    for name, (bad, needle) in cases.items():
        src, _ = write_tiny_official(tmp_path, kind_name, bad)
        with pytest.raises(WeightsError) as e:
            convert(src, tmp_path / f"{name}.safetensors")
        assert_one_line_error(e, src.name)
        assert needle in str(e.value) or name == "missing", f"{name}: {e.value}"
        assert not (tmp_path / f"{name}.safetensors").exists()


def test_wrong_kind_is_refused(tmp_path):
    src, _ = write_tiny_official(tmp_path, "deca")
    with pytest.raises(WeightsError) as e:
        convert(src, tmp_path / "x.safetensors", expected_kind="e4e")
    assert_one_line_error(e, "DECA", "e4e")
    # e4e weights put in DECA's container do not fit a DECA architecture
    e4e_sd = tiny_state_dict("e4e")
    wrong = write_official(tmp_path / "wrong.tar", "deca", e4e_sd)
    with pytest.raises(WeightsError) as e:
        convert(wrong, tmp_path / "y.safetensors")
    assert_one_line_error(e)
    # a converted file of one kind is refused where another kind is expected
    out = convert(src, tmp_path / "deca.safetensors")
    with pytest.raises(WeightsError) as e:
        load_model(out, expected_kind="stylegan2")
    assert_one_line_error(e, "deca.safetensors", "stylegan2")


def test_unknown_container_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(WeightsError) as e:
        convert(path, tmp_path / "x.safetensors")
    assert_one_line_error(e, "other.pt", "model")


def test_truncated_files_are_refused(tmp_path):
    src, _ = write_tiny_official(tmp_path, "directions")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as e:
        convert(src, tmp_path / "x.safetensors")
    assert_one_line_error(e, src.name)

    good = make_tiny_model_set(tmp_path / "set")["directions"]
    data = good.read_bytes()
    good.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightsError) as e:
        load_model(good)
    assert_one_line_error(e, good.name)


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError) as e:
        inspect_model_file(path)
    assert_one_line_error(e, "foreign.safetensors", "convert")


def test_mismatched_model_file_is_refused(tmp_path):
    good = make_tiny_model_set(tmp_path)["deca"]
    info = inspect_model_file(good)
    from safetensors.torch import load_file
    tensors = load_file(str(good))
    victim = next(iter(k for k in tensors if tensors[k].dim() == 2))
    tensors[victim] = torch.zeros(1, 1)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=info.metadata)
    with pytest.raises(WeightsError) as e:
        load_model(tmp_path / "bad.safetensors")
    assert_one_line_error(e, victim)


class _Payload:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, container):
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.pt"
    payload = {"g_ema": {"style.1.weight": torch.zeros(2)}, "x": _Payload(sentinel)}
    if container == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(WeightsError) as e:
        convert(path, tmp_path / "x.safetensors")
    assert_one_line_error(e, "evil.pt", "refused")
    if container == "torch.save":
        assert "system" in str(e.value), "the offending global is not named"
    assert not sentinel.exists(), "the pickle payload was executed"


def test_cli_convert_success_and_error(tmp_path, capsys):
    src, _ = write_tiny_official(tmp_path, "directions")
    assert cli_main(["convert", str(src), str(tmp_path / "a.safetensors")]) == 0
    assert "directions" in capsys.readouterr().out
    assert cli_main(["convert", str(tmp_path / "absent.pt"), str(tmp_path / "b.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "absent.pt" in err and "\n" not in err


def test_converter_says_what_a_file_is_when_it_is_no_official_checkpoint(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# notes\nnot weights\n")
    with pytest.raises(WeightsError) as caught:
        convert(readme, tmp_path / "out.safetensors")
    assert_one_line_error(caught, "README.md", "not a checkpoint")
    assert "arbitrary code" not in str(caught.value)
    src, _ = write_tiny_official(tmp_path, "e4e")
    done = convert(src, tmp_path / "e4e.safetensors")
    with pytest.raises(WeightsError) as caught:
        convert(done, tmp_path / "again.safetensors")
    assert_one_line_error(caught, "already converted", f"an {kind('e4e').title}")
    with pytest.raises(WeightsError) as caught:
        convert(src, tmp_path / "x.safetensors", expected_kind="stylegan2")
    assert_one_line_error(caught, f"holds an {kind('e4e').title}", f"not a {kind('stylegan2').title}")
