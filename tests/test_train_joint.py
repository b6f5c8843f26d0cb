"""Training E_w jointly with A: a planted pair is approached, the cycle variants add (or not) a term reaching E_w,
resume is bit for bit, DDP equals one process, the exported pair switches per-source tuning off by default."""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image
import pytest
import torch

from reenact_core.training.checkpoint import load_training_checkpoint
from reenact_core.training.distributed import DistContext
from reenact_core.training.joint import JointMethod, JointNetworks, JointTrainConfig
from reenact_core.training.joint_run import joint_self_check, tiny_joint_networks
from reenact_core.training.loop import CHECKPOINT_DIR, train
from training_fixtures import (LinearEncoder, inverse_encoder, joint_tree, linear_networks,  # noqa: F401
                               one_thread, planted_tree, assert_ddp_equals_one_process, tiny_model_files,
                               with_metadata)

CPU = DistContext()
PLANTED_LR = 1e-2            # Adam, A's learning rate in the planted test
PLANTED_LR_ENCODER = 1e-6    # Adam, E_w's learning rate in the planted test (no warm-up)
PLANTED_STEPS = 40
PLANTED_SCALE = 0.05         # std of A*'s weight (A* has no bias)
ENCODER_NOISE = 1.0          # perturbation of E_w* that E_w starts from, relative to E_w*'s mean |weight|
PLANTED_INVERSION = 100.0    # λ of the three inversion terms: the linear world's images are faint (|x| ~ 0.1)


def joint_config(data, **overrides) -> JointTrainConfig:
    return JointTrainConfig(**{"data": str(data), "batch_size": 2, "eval_every": 10 ** 6, "save_every": 10 ** 6,
                               "validation_samples": 2, "num_workers": 0, **overrides})


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("joint") / "data"
    return joint_tree(root, tiny_joint_networks(joint_config(root)).frozen)


@pytest.mark.slow
def test_planted_pair_is_approached_and_every_loss_term_falls(tmp_path):
    config = joint_config(tmp_path / "data", batch_size=4, lr=PLANTED_LR, lr_encoder=PLANTED_LR_ENCODER,
                          encoder_warmup_steps=0, max_iter=PLANTED_STEPS, lambda_inv_pixel=PLANTED_INVERSION,
                          lambda_inv_lpips=PLANTED_INVERSION, lambda_inv_identity=PLANTED_INVERSION)
    frozen = linear_networks(config)
    g = frozen.generator
    rows, width, n = config.num_layers_shift, g.config.style_dim, g.config.n_latent
    a_star = torch.randn(rows * width, 15, generator=torch.Generator().manual_seed(7)) * PLANTED_SCALE
    planted_tree(tmp_path / "data", frozen, a_star, videos=4, frames=5, config=config)
    e_star = inverse_encoder(g, config.truncation)
    noise = torch.randn(e_star.shape, generator=torch.Generator().manual_seed(8))
    encoder = LinearEncoder(e_star + ENCODER_NOISE * e_star.abs().mean() * noise, n, width)
    method = JointMethod(config, JointNetworks(frozen, encoder), CPU)
    batch = next(iter(method.batches(0, 0)))

    def distance():
        a = method.directions.linear
        return float(torch.cat([(a.weight - a_star).flatten(), a.bias.flatten()]).detach().norm())

    def terms():
        with torch.no_grad():
            return {k: float(v) for k, v in method.objective(method.model, batch)[1].items()}

    start, start_terms = distance(), terms()
    train(method, tmp_path / "run", CPU, progress=False)
    end_terms = terms()
    assert distance() <= 0.75 * start
    assert set(end_terms) == {"inv_pixel", "inv_lpips", "inv_identity", "delta", "shape", "eye", "mouth",
                              "identity", "lpips", "pixel", "cycle"}
    for name, value in end_terms.items():
        assert value < start_terms[name], (name, start_terms[name], value)


def test_cycle_variants_add_a_term_whose_gradient_reaches_the_encoder(tiny_tree):
    totals = {}
    for cycle in ("none", "recurrent", "back"):
        config = joint_config(tiny_tree, cycle=cycle)
        method = JointMethod(config, tiny_joint_networks(config), CPU)
        batch = next(iter(method.batches(0, 0)))
        total, terms = method.objective(method.model, batch)
        totals[cycle] = (float(total.detach()), {k: float(v.detach()) for k, v in terms.items()})
        if cycle == "none":
            assert "cycle" not in terms
            continue
        method.model.zero_grad()
        terms["cycle"].backward()
        grads = [p.grad for p in method.model.encoder.parameters()]
        assert all(g is None or torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, cycle
        assert float(method.model.directions.linear.weight.grad.abs().sum()) > 0, cycle
    # "none" is the same objective without the term: the other terms are equal, the total is theirs
    for cycle in ("recurrent", "back"):
        total, terms = totals[cycle]
        assert {k: v for k, v in terms.items() if k != "cycle"} == totals["none"][1]
        assert total == pytest.approx(totals["none"][0] + terms["cycle"], rel=1e-5)


def test_frozen_batchnorm_keeps_its_statistics_in_training(tiny_tree):
    config = joint_config(tiny_tree, max_iter=1)
    method = JointMethod(config, tiny_joint_networks(config), CPU)
    before = {k: v.clone() for k, v in method.model.encoder.state_dict().items() if "running" in k}
    train(method, tiny_tree.parent / "bn", CPU)
    after = method.model.encoder.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())


def test_resume_mid_epoch_across_the_warm_up_is_bit_for_bit(tmp_path, tiny_tree):
    # 8 frames, batch 2: 4 steps an epoch; E_w's learning rate changes after step 3, resumed from step 3
    config = joint_config(tiny_tree, max_iter=5, save_every=3, num_workers=1, encoder_warmup_steps=3,
                          encoder_warmup_lr=1e-3, lr_encoder=1e-2)
    train(JointMethod(config, tiny_joint_networks(config), CPU), tmp_path / "full", CPU)
    part = config.with_overrides({"max_iter": 3})
    train(JointMethod(part, tiny_joint_networks(part), CPU), tmp_path / "part", CPU)
    train(JointMethod(config, tiny_joint_networks(config), CPU), tmp_path / "part", CPU,
          resume=tmp_path / "part" / CHECKPOINT_DIR)
    full, resumed = (load_training_checkpoint(tmp_path / r / CHECKPOINT_DIR) for r in ("full", "part"))
    assert full["step"] == resumed["step"] == 5 and full["epoch"] == resumed["epoch"] == 1
    assert [g["lr"] for g in full["optimizer"]["param_groups"]] == [config.lr, config.lr_encoder]
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    for p, q in zip(full["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert all(torch.equal(p[k], q[k]) for k in p)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_of_one_equal_one_rank_of_two(tmp_path, tiny_tree):
    from training_fixtures import make_method

    settings = {"max_iter": 2, "batch_size": 2, "data": str(tiny_tree), "encoder_warmup_steps": 0}
    # gloo sums the two halves' gradients in another order than one process, and Adam divides by √v, so an element
    # whose gradient is near Adam's eps can move by a slightly different fraction of a step: each tensor's update
    # must agree to 0.1 % of its norm
    assert_ddp_equals_one_process("joint", settings, make_method("joint", settings, CPU), tmp_path, rel_tol=1e-3)


def test_self_check_prints_the_directions_trainer_lines():
    lines = list(joint_self_check(CPU, steps=1))
    assert "TINY RANDOM" in lines[0] and "not a result" in lines[0]
    assert [line.split(" loss ")[0] for line in lines[1:]] == [
        f"self-check: joint (cycle {c})" for c in ("none", "recurrent", "back")]
    for line in lines[1:]:
        before, after = (float(x) for x in line.split(" loss ")[1].split(" -> "))
        assert before == before and after == after


def write_encoder(folder, config) -> None:
    """A tiny e4e file for the tiny 64-px generator of ``tiny_model_files``."""
    from reenact_core.weights import save_model

    e = tiny_joint_networks(config).encoder
    save_model(folder / "e4e-tiny-64.safetensors", "e4e", e.config, e.state_dict(), metadata={"random_weights": "true"})


def test_exported_pair_defaults_to_no_tuning_and_a_mismatch_warns_once(tmp_path, tiny_tree, caplog, capsys):
    from reenact_core.cli import main
    from reenact_core.engine.pairing import is_joint_pair, resolve_tune_steps, warn_if_mismatched
    from reenact_core.options import TUNE_STEPS
    from reenact_core.weights import load_model

    config = joint_config(tiny_tree)
    generator = tiny_model_files(tmp_path / "models", config)
    write_encoder(tmp_path / "models", config)
    code = main(["train", "joint", "--models", str(tmp_path / "models"), "--generator", str(generator),
                 "--encoder", str(tmp_path / "models" / "e4e-tiny-64.safetensors"), "--data", str(tiny_tree),
                 "--out", str(tmp_path / "run"), "--device", "cpu", "--batch-size", "2", "--max-iter", "1",
                 "--validation-samples", "2", "--num-workers", "0", "--name", "tiny"])
    assert code == 0
    out = capsys.readouterr().out
    export = tmp_path / "run" / "export"
    e = load_model(export / "e4e-tiny.safetensors", "e4e")
    a = load_model(export / "directions-tiny.safetensors", "directions")
    assert str(export / "e4e-tiny.safetensors") in out and is_joint_pair(e, a)
    assert resolve_tune_steps("auto", e, a) == 0 and resolve_tune_steps(5, e, a) == 5
    other = load_model(tmp_path / "models" / "e4e-tiny-64.safetensors", "e4e")
    assert not is_joint_pair(other, a) and resolve_tune_steps("auto", other, a) == TUNE_STEPS.default
    with caplog.at_level(logging.WARNING):
        assert warn_if_mismatched(other, a) and warn_if_mismatched(other, a)
    assert sum("trained jointly" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("pair", [("p1", "p1"), ("p1", "p2"), (None, None)])
def test_command_line_tuning_default_follows_the_pair(tmp_path, capsys, monkeypatch, pair):
    import reenact_core.cli as cli
    import reenact_core.engine as engine
    from reenact_core.cli import main
    from reenact_core.engine.pairing import JOINT_PAIR_KEY
    from reenact_core.options import TUNE_STEPS
    from reenact_core.errors import ReenactError
    from reenact_core.weights import KINDS, make_tiny_model_set

    make_tiny_model_set(tmp_path)
    for kind, value in zip(("e4e", "directions"), pair):
        if value is not None:
            with_metadata(tmp_path / KINDS[kind].canonical_file, **{JOINT_PAIR_KEY: value})
    asked = []

    def prepare(image, models, **kwargs):
        asked.append(kwargs["tune_steps"])
        raise ReenactError("stopped after the tuning decision")

    monkeypatch.setattr(engine, "prepare_source", prepare)
    monkeypatch.setattr(cli, "_read_image", lambda path: np.zeros((8, 8, 3), np.uint8))
    image = tmp_path / "any.png"      # real files: the arguments are checked before any model is loaded
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    for extra in ([], ["--tune-steps", "3"]):
        code = main(["reenact", "--models", str(tmp_path), "--device", "cpu", "--source", str(image),
                     "--driving", str(image), "--out", str(tmp_path / "out.png"), *extra])
        assert code == 2 and "stopped after the tuning decision" in capsys.readouterr().err
    assert asked == [0 if pair == ("p1", "p1") else TUNE_STEPS.default, 3]
