"""Training E_F: a planted Δf* is learnt, resume is bit for bit, DDP equals one process, the export carries k and the
generator's identity and drives ``reenact --fsr``, bad inputs fail in one line."""
from __future__ import annotations

import pytest
import torch

from reenact_core.cli import main
from reenact_core.training.distributed import DistContext
from reenact_core.training.loop import CHECKPOINT_DIR, train
from training_fixtures import (assert_same_state, fsr_config, fsr_method, fsr_networks, fsr_tree,  # noqa: F401
                               one_thread, assert_ddp_equals_one_process, train_fsr_with_cli)

CPU = DistContext()
PLANTED_LR = 1e-2          # Adam, the stated learning rate of the planted test (warm-up off)
PLANTED_STEPS = 60
PLANTED_SHIFT = 0.3        # Δf*: a per-channel constant of this std
START_SHIFT = 0.6          # the starting E_F's Δf: a random per-channel constant (its last BN's bias) of this std,
                           # larger than Δf*, so that every term, mean(Δf²) included, can fall


def planted(tmp_path, videos=2, frames=4, **overrides):
    """A method whose data are refined by a known Δf* (per-channel constant) and its Δf*."""
    from reenact_core.training.fsr import FSRMethod

    config = fsr_config({"data": str(tmp_path / "data"), "warmup": 0, **overrides})
    nets = fsr_networks(config)
    k = config.fsr_config(nets.generator.config)
    shift = torch.randn(k.feature_channels, 1, 1, generator=torch.Generator().manual_seed(3)) * PLANTED_SHIFT
    fsr_tree(tmp_path / "data", nets.generator, nets.mean_latent, nets.directions, k.layer, shift, videos, frames,
             config.truncation)
    return FSRMethod(config, nets, CPU), shift


@pytest.mark.slow
def test_planted_shift_is_learnt_and_every_loss_term_falls(tmp_path):
    method, _ = planted(tmp_path, lr=PLANTED_LR, max_iter=PLANTED_STEPS, background_weight=2.0)
    last = method.refiner.content_layer[-1]
    with torch.no_grad():
        last.bias.copy_(torch.randn(last.bias.shape, generator=torch.Generator().manual_seed(5)) * START_SHIFT)
    batch = next(iter(method.batches(0, 0)))
    idx = torch.arange(method.local_batch)

    def measure():
        with torch.no_grad():
            method.module.train()
            is_self = method.self_pairs(0, idx)
            target = torch.where(is_self[:, None, None, None], batch["source_image"], batch["target_image"])
            dp = method.delta_p(batch["source_codes"], batch["target_codes"]) * (~is_self)[:, None].float()
            refined, _, _ = method.refine(method.module, batch["source_image"], batch["source_w_plus"], dp, 1.0)
            terms = method.loss(method.module, batch, 0)[1]
        return float((refined - target).norm()), {k: float(v) for k, v in terms.items()}

    start, start_terms = measure()
    train(method, tmp_path / "run", CPU)
    end, end_terms = measure()
    assert end <= 0.5 * start, (start, end)
    assert set(end_terms) == {"pixel", "lpips", "identity", "delta"}
    for name, value in end_terms.items():
        assert value < start_terms[name], (name, start_terms[name], value)


def test_resume_mid_epoch_with_workers_is_bit_for_bit(tmp_path):
    settings = {"max_iter": 5, "num_workers": 1, "save_every": 2, "warmup": 3, "batch_norm": "batch"}
    planted(tmp_path)                         # 8 frames: 2 steps an epoch
    data = {"data": str(tmp_path / "data")}
    train(fsr_method({**data, **settings}, CPU), tmp_path / "full", CPU)
    train(fsr_method({**data, **settings, "max_iter": 3}, CPU), tmp_path / "part", CPU)
    train(fsr_method({**data, **settings}, CPU), tmp_path / "part", CPU, resume=tmp_path / "part" / CHECKPOINT_DIR)
    assert_same_state(tmp_path / "full" / CHECKPOINT_DIR, tmp_path / "part" / CHECKPOINT_DIR, step=5)


def test_frozen_batch_norm_keeps_running_statistics(tmp_path):
    planted(tmp_path)
    method = fsr_method({"data": str(tmp_path / "data"), "max_iter": 2}, CPU)
    before = {k: v.clone() for k, v in method.refiner.state_dict().items() if "running" in k}
    train(method, tmp_path / "run", CPU)
    after = method.refiner.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.equal(method.refiner.content_layer[-1].bias, torch.zeros_like(after["content_layer.6.bias"]))


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_of_two_equal_one_rank_of_four(tmp_path):
    planted(tmp_path, videos=2, frames=4)
    settings = {"max_iter": 3, "batch_size": 4, "data": str(tmp_path / "data"), "lr": 1e-3, "warmup": 2}
    assert_ddp_equals_one_process("fsr", settings, fsr_method(settings, CPU), tmp_path, rel_tol=1e-5)


@pytest.mark.slow
def test_exported_file_carries_k_and_the_generator_and_refines_in_the_engine(tmp_path, capsys):
    import numpy as np

    from reenact_core.engine import load_reenact_models, render
    from reenact_core.engine.source import PreparedSource
    from reenact_core.faces.reference_crop import CropTransform
    from reenact_core.weights import INFERENCE, kind_names, load_model, make_tiny_model_set
    from reenact_core.weights.identity import GENERATOR_IDENTITY_KEY, identity_of

    models = tmp_path / "models"
    make_tiny_model_set(models, kinds=kind_names(INFERENCE))
    exported = train_fsr_with_cli(models, tmp_path)
    assert f"wrote {exported}" in capsys.readouterr().out
    fsr = load_model(exported, "fsr")
    plain = load_reenact_models([models])
    assert fsr.config.layer == 4 and fsr.metadata["random_weights"] == "true"
    assert fsr.metadata[GENERATOR_IDENTITY_KEY] == identity_of(plain.generator)
    refined = load_reenact_models([models], fsr=exported)
    g = plain.generator
    w = g.module.mapping(torch.randn(1, g.config.style_dim))[:, None].expand(-1, g.config.n_latent, -1)
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    source = PreparedSource(crop, crop, CropTransform((0, 0, 256, 256), (256, 256)), np.zeros((68, 2), np.float32),
                            w.detach(), g.mean_latent, torch.zeros(1, 236))
    delta_p = torch.zeros(2, 15)
    a, b = (render(m, source, delta_p, paste=False).crops for m in (plain, refined))
    assert a.shape == b.shape and (a != b).any()


def test_bad_inputs_are_one_line(tmp_path, capsys):
    from reenact_core.errors import InputError
    from reenact_core.weights import make_tiny_model_set

    models = tmp_path / "models"
    make_tiny_model_set(models, kinds=["stylegan2", "lpips"])
    common = ["train", "fsr", "--models", str(models), "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(common) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs prepared paired data" in err
    (tmp_path / "data").mkdir()
    assert main([*common, "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "directions-" in err and "arcface-" in err and "stylegan2" not in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match=r"^lpips_scales=3 takes this 64-px generator's images below 32 px"):
        fsr_method({"data": str(tmp_path / "data"), "lpips_scales": 3}, CPU)
    with pytest.raises(InputError, match="batch_norm must be one of frozen, batch, sync"):
        fsr_config({"data": "d", "batch_norm": "off"})


@pytest.mark.slow
def test_self_check_prints_the_trainers_lines(capsys):
    import re

    assert main(["train", "fsr", "--self-check", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "TINY RANDOM" in lines[0] and len(lines) == 2
    assert re.fullmatch(r"self-check: fsr loss (\d+\.\d+) -> (\d+\.\d+)", lines[1])
