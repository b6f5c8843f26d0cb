"""The feature-space refinement encoder E_F (FSR) at inference: architecture, the generator's resume points, the
engine's refined rendering, files made for one generator, the command line's --fsr, saved sources.

Tiny random networks throughout; the full-size architectures are checked on the meta device (shapes and parameter
counts, no memory).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from engine_fixtures import source_photo, video_frames
from reenact_core.cli import main
from reenact_core.engine import drive, load_reenact_models, load_source, prepare_source, save_source
from reenact_core.errors import InputError, WeightsError
from reenact_core.models.e4e import EncoderConfig, Encoder4Editing
from reenact_core.models.fsr import DEFAULT_LAYER, INPUT_CHANNELS, FSRConfig, FeatureRefiner, feature_shape
from reenact_core.models.stylegan2 import Generator, GeneratorConfig
from reenact_core.weights import (INFERENCE, KINDS, kind_names, load_model, make_random_checkpoint,
                                  make_tiny_model_set, save_model, tiny_config)
from reenact_core.weights.random_checkpoint import make_random_fsr

DRIVER_FRAMES = 2
FULL_SIZE_GENERATORS = {"256 cm1": GeneratorConfig(), "256 cm2": GeneratorConfig(channel_multiplier=2),
                        "1024 cm2": GeneratorConfig(size=1024, channel_multiplier=2)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model set with a random FSR file (canonical name) and a zero-initialised one (``fsr-zero``)."""
    folder = tmp_path_factory.mktemp("fsr_models")
    paths = make_tiny_model_set(folder, kinds=[*kind_names(INFERENCE), "fsr"])
    fsr = load_model(paths["fsr"], "fsr")
    zero = FeatureRefiner(fsr.config)                    # a new E_F: its last layer is zero
    save_model(folder / "fsr-zero.safetensors", "fsr", fsr.config, zero.state_dict(), metadata=fsr.metadata)
    return folder


@pytest.fixture(scope="module")
def source_image():
    return np.array(Image.open(source_photo()).convert("RGB"))


@pytest.fixture(scope="module")
def driver():
    return video_frames(0, DRIVER_FRAMES)


@pytest.fixture(scope="module")
def plain(model_dir):
    return load_reenact_models([model_dir])


@pytest.fixture(scope="module")
def refined(model_dir):
    return load_reenact_models([model_dir], fsr=model_dir / KINDS["fsr"].canonical_file)


@pytest.fixture(scope="module")
def source(plain, source_image):
    return prepare_source(source_image, plain, tune_steps=2)


@pytest.fixture(scope="module")
def plain_result(plain, source, driver):
    return drive(plain, source, driver)


@pytest.fixture(scope="module")
def refined_result(refined, source, driver):
    return drive(refined, source, driver)


# --- architecture -----------------------------------------------------------------------------------------------

def generator_feature(config: GeneratorConfig, layer: int) -> tuple[int, ...]:
    """The shape of feature k = ``layer`` (FSE count) as the generator itself produces it, on the meta device."""
    with torch.device("meta"):
        g = Generator(config)
        w = torch.empty(1, config.n_latent, config.style_dim)
        return tuple(g.synthesize(w, read_features=[layer - 1]).features[layer - 1].shape[1:])


def expected_parameters(config: FSRConfig) -> int:
    """IR-SE-50's first three stages as e4e builds them (its input conv widened from 3 to 9 channels) plus the
    content head (BN, conv3×3, BN, PReLU, conv3×3, BN)."""
    with torch.device("meta"):
        e4e = Encoder4Editing(EncoderConfig(widths=(*config.widths, 512), units=(*config.units, 3),
                                            se_reduction=config.se_reduction))
    trunk_units = sum(config.units)
    trunk = sum(p.numel() for p in e4e.input_layer.parameters()) + sum(
        p.numel() for p in e4e.body[:trunk_units].parameters())
    trunk += (INPUT_CHANNELS - 3) * config.widths[0] * 9
    c_in, h, c_out = config.widths[-1], config.head_width, config.feature_channels
    head = 2 * c_in + c_in * h * 9 + 2 * h + h + h * c_out * 9 + 2 * c_out
    return trunk + head


@pytest.mark.parametrize("generator", list(FULL_SIZE_GENERATORS))
@pytest.mark.parametrize("layer", [4, 6, 8])
def test_output_shape_and_parameter_count(generator, layer):
    g = FULL_SIZE_GENERATORS[generator]
    config = FSRConfig.for_generator(g, layer)
    with torch.device("meta"):
        fsr = FeatureRefiner(config)
        out = fsr(torch.empty(2, INPUT_CHANNELS, config.input_size, config.input_size))
    assert tuple(out.shape) == (2, *generator_feature(g, layer))
    assert sum(p.numel() for p in fsr.parameters()) == expected_parameters(config)


def test_default_layer_is_the_16px_output_of_convs_2():
    g = GeneratorConfig()
    assert DEFAULT_LAYER == 4 and feature_shape(g, DEFAULT_LAYER) == (512, 16)
    with torch.device("meta"):
        fsr = FeatureRefiner()
    assert fsr.config.generator_index == 3            # conv1 = 0, convs.0 = 1, convs.1 = 2, convs.2 = 3
    assert generator_feature(g, DEFAULT_LAYER) == (512, 16, 16)


def test_trunk_keys_and_shapes_are_ir_se_50s():
    """The trunk is laid out as e4e's (and ArcFace's) IR-SE-50, so a trainer can start it from those weights."""
    with torch.device("meta"):
        ours = FeatureRefiner().state_dict()
        e4e = Encoder4Editing().state_dict()
    trunk = {k: tuple(v.shape) for k, v in ours.items() if k.startswith(("input_layer.", "body."))}
    assert trunk and all(k in e4e for k in trunk)
    widened = {k for k in trunk if trunk[k] != tuple(e4e[k].shape)}
    assert widened == {"input_layer.0.weight"} and trunk["input_layer.0.weight"][1] == INPUT_CHANNELS


def test_unsupported_layers_are_refused():
    with pytest.raises(InputError, match="does not exist"):
        FSRConfig.for_generator(GeneratorConfig(), GeneratorConfig().num_layers + 1)
    with pytest.raises(InputError, match="cannot be refined"):
        FSRConfig.for_generator(GeneratorConfig(), 2)          # 8 px: smaller than E_F emits


def test_new_refiner_predicts_zero():
    c = tiny_config("fsr")
    fsr = FeatureRefiner(c).eval()
    x = torch.randn(2, INPUT_CHANNELS, c.input_size, c.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fsr(x), torch.zeros(2, c.feature_channels, c.feature_size, c.feature_size))


# --- the generator's resume point -------------------------------------------------------------------------------

def test_resumed_pass_equals_a_full_shifted_pass_and_leaves_earlier_features():
    g = Generator(tiny_config("stylegan2")).eval()
    c = g.config
    w = torch.randn(2, c.n_latent, c.style_dim, generator=torch.Generator().manual_seed(1))
    every = range(c.num_layers)
    k = DEFAULT_LAYER - 1
    channels, side = feature_shape(c, DEFAULT_LAYER)
    shift = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        coarse = g.synthesize(w, read_features=every, keep_resume_point=k)
        kept = coarse.resume.feature.clone(), coarse.resume.skip.clone()
        resumed = g.synthesize(w, resume_from=coarse.resume, feature_shifts={k: shift}, read_features=every)
        full = g.synthesize(w, read_features=every, feature_shifts={k: shift})
        unshifted = g.synthesize(w, resume_from=coarse.resume, feature_shifts={k: torch.zeros_like(shift)})
    assert torch.equal(resumed.image, full.image)
    assert torch.equal(unshifted.image, coarse.image)
    assert sorted(resumed.features) == list(range(k, c.num_layers))      # layers before k were not run again
    for j in range(k):
        assert torch.equal(full.features[j], coarse.features[j])
    torch.testing.assert_close(full.features[k], coarse.features[k] + shift)
    assert torch.equal(coarse.resume.feature, kept[0]) and torch.equal(coarse.resume.skip, kept[1])
    assert (full.image - coarse.image).abs().max() > 0.1


# --- the engine -------------------------------------------------------------------------------------------------

def test_zero_initialised_refiner_is_bit_identical_to_no_fsr(model_dir, plain_result, source, driver):
    zero = load_reenact_models([model_dir], fsr=model_dir / "fsr-zero.safetensors")
    a, b = plain_result, drive(zero, source, driver)
    assert np.array_equal(a.crops, b.crops) and np.array_equal(a.frames, b.frames)


def test_refinement_changes_the_image(plain_result, refined_result):
    assert np.abs(plain_result.crops.astype(int) - refined_result.crops).max() > 25


def test_saved_source_drives_the_same_with_fsr(refined, refined_result, source, driver, tmp_path):
    assert source.tuned is not None                        # the inversion pass of E_F's input uses the tuned layers
    again = load_source(save_source(source, tmp_path / "source.safetensors"))
    b = drive(refined, again, driver)
    assert np.array_equal(refined_result.crops, b.crops) and np.array_equal(refined_result.frames, b.frames)


def test_refiner_of_another_generator_is_refused(model_dir, tmp_path):
    for k in kind_names(INFERENCE):
        shutil.copy(model_dir / KINDS[k].canonical_file, tmp_path)
    fsr = model_dir / KINDS["fsr"].canonical_file
    make_random_checkpoint("stylegan2", tiny_config("stylegan2"), tmp_path / KINDS["stylegan2"].canonical_file, 99)
    with pytest.raises(WeightsError, match="was made for the generator") as error:
        load_reenact_models([tmp_path], fsr=fsr)
    assert "\n" not in str(error.value)
    # a refiner shaped for another feature table is refused before the identity is compared
    g = load_model(tmp_path / KINDS["stylegan2"].canonical_file, "stylegan2").config
    other = FSRConfig.from_dict({**tiny_config("fsr").to_dict(), "feature_channels": 8})
    make_random_fsr(tmp_path / "narrow.safetensors", tmp_path / KINDS["stylegan2"].canonical_file, other)
    assert feature_shape(g, other.layer)[0] != 8
    with pytest.raises(WeightsError, match="made for another generator"):
        load_reenact_models([tmp_path], fsr=tmp_path / "narrow.safetensors")


# --- the command line -------------------------------------------------------------------------------------------

def cli_png(capsys, models: str, source: str, driver: str, out, *more: str) -> tuple[np.ndarray, str]:
    code = main(["reenact", *more, "--models", models, "--device", "cpu", "--source", source, "--driving", driver,
                 "--out", str(out), "--tune-steps", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    return np.asarray(Image.open(out)), err


def test_cli_fsr_auto_off_and_file(model_dir, driver, tmp_path, capsys):
    driver_png = tmp_path / "driver.png"
    Image.fromarray(driver[0]).save(driver_png)
    args = (str(model_dir), str(source_photo()), str(driver_png))
    random_file = model_dir / KINDS["fsr"].canonical_file
    off, _ = cli_png(capsys, *args, tmp_path / "off.png", "--fsr", "off")
    auto, err = cli_png(capsys, *args, tmp_path / "auto.png")
    assert "random weights" in err and np.array_equal(auto, off)      # a test file is never used unasked
    named, err = cli_png(capsys, *args, tmp_path / "named.png", "--fsr", str(random_file))
    assert str(random_file) in err and np.abs(named.astype(int) - off).max() > 25
    # a file without the random-weights mark is what auto picks up (the first folder holding one)
    trained = tmp_path / "trained"
    trained.mkdir()
    fsr = load_model(random_file, "fsr")
    metadata = {k: v for k, v in fsr.metadata.items() if k not in ("random_weights", "format", "format_version",
                                                                    "kind", "config")}
    save_model(trained / KINDS["fsr"].canonical_file, "fsr", fsr.config, fsr.module.state_dict(), metadata=metadata)
    auto, err = cli_png(capsys, *args, tmp_path / "auto2.png", "--models", str(trained))
    assert np.array_equal(auto, named)
    code = main(["reenact", "--models", args[0], "--source", args[1], "--driving", args[2], "--out",
                 str(tmp_path / "x.png"), "--fsr", str(tmp_path / "absent.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "absent.safetensors" in err and len(err.strip().splitlines()) == 1
