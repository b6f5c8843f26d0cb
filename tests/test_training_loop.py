"""The generic training loop: bit-for-bit resume, Ctrl-C, checkpoints, DDP equivalence, settings."""
from __future__ import annotations

import signal

import pytest
import torch

from reenact_core.errors import InputError
from reenact_core.training.checkpoint import BEST_FILE, load_training_checkpoint, periodic_checkpoints
from reenact_core.training.config import DirectionsTrainConfig, TrainConfig
from reenact_core.training.distributed import DistContext
from reenact_core.training.loop import CHECKPOINT_DIR, train
from training_fixtures import ToyMethod, make_method, run_torchrun

CPU = DistContext()


def toy(**overrides):
    return make_method("toy", overrides, CPU)


def final_state(run):
    return load_training_checkpoint(run / CHECKPOINT_DIR)


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for p, q in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in p:
            assert torch.equal(p[k], q[k]), k


def test_resume_mid_epoch_with_workers_is_bit_for_bit(tmp_path):
    settings = dict(max_iter=11, num_workers=1, save_every=4, eval_every=5, keep_last=2)
    full = train(toy(**settings), tmp_path / "full", CPU)
    part = train(toy(**{**settings, "max_iter": 7}), tmp_path / "part", CPU)
    assert part.step == 7 and part.epoch == 1      # 6 batches an epoch: stopped inside the second
    resumed = train(toy(**settings), tmp_path / "part", CPU, resume=tmp_path / "part" / CHECKPOINT_DIR)
    assert resumed.step == full.step == 11
    assert_same_training_state(final_state(tmp_path / "full"), final_state(tmp_path / "part"))


def test_keeps_last_n_and_best_loadable_with_weights_only(tmp_path):
    train(toy(max_iter=9, save_every=2, eval_every=3, keep_last=2), tmp_path, CPU)
    kept = periodic_checkpoints(tmp_path / CHECKPOINT_DIR)
    assert [p.name for p in kept] == ["step-00000008.pt", "step-00000009.pt"]
    best = torch.load(tmp_path / CHECKPOINT_DIR / BEST_FILE, weights_only=True)
    assert best["step"] in (3, 6, 9) and best["best_score"] is not None
    assert set(best["rng"]) >= {"python", "numpy", "torch"}
    assert not list((tmp_path / CHECKPOINT_DIR).glob("*.partial"))


def test_ctrl_c_saves_and_resumes(tmp_path):
    class Interrupting(ToyMethod):
        def loss(self, model, batch, step):
            if step == 4:
                signal.raise_signal(signal.SIGINT)
            return super().loss(model, batch, step)

    settings = dict(max_iter=9, num_workers=1, save_every=100, eval_every=100)
    config = TrainConfig(**{"batch_size": 4, "lr": 0.05, "weight_decay": 0.0, **settings})
    stopped = train(Interrupting(config, CPU), tmp_path / "part", CPU)
    assert stopped.interrupted and stopped.step == 5
    assert load_training_checkpoint(tmp_path / "part" / CHECKPOINT_DIR)["step"] == 5
    train(toy(**settings), tmp_path / "part", CPU, resume=tmp_path / "part" / CHECKPOINT_DIR)
    train(toy(**settings), tmp_path / "full", CPU)
    assert_same_training_state(final_state(tmp_path / "full"), final_state(tmp_path / "part"))


def test_resume_with_other_settings_is_refused_in_one_line(tmp_path):
    train(toy(max_iter=2), tmp_path, CPU)
    with pytest.raises(InputError, match=r"^cannot resume .*lr=0\.05[^\n]*$"):
        train(toy(max_iter=4, lr=0.01), tmp_path, CPU, resume=tmp_path / CHECKPOINT_DIR)
    train(toy(max_iter=4), tmp_path, CPU, resume=tmp_path / CHECKPOINT_DIR)   # max_iter may change


def test_settings_errors_are_one_line():
    with pytest.raises(InputError, match="unknown training settings"):
        DirectionsTrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(InputError, match="lr: .fast. is not a float"):
        DirectionsTrainConfig.from_dict({"lr": "fast"})
    with pytest.raises(InputError, match="needs prepared data"):
        DirectionsTrainConfig(method="paired")
    with pytest.raises(InputError, match=r"batch_size 6 must be a multiple of 4 for 2 rank\(s\)"):
        DirectionsTrainConfig(batch_size=6).check_world(2)
    DirectionsTrainConfig(batch_size=6, disentanglement_50=False).check_world(2)
    assert DirectionsTrainConfig.from_dict({"lr": "0.001", "angle_scales": [30, 20, 20]}).angle_scales == (30, 20, 20)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_equal_one_rank_with_the_global_batch(tmp_path):
    settings = {"max_iter": 3, "batch_size": 4}
    ddp = run_torchrun("toy", settings, tmp_path / "ddp", 2)
    single = toy(**settings)
    train(single, tmp_path / "one", CPU)
    assert ddp["agree"]
    for k, v in single.trainable().state_dict().items():
        torch.testing.assert_close(ddp["params"][k], v, rtol=1e-6, atol=0)


def test_more_ranks_than_gpus_refused_in_one_line(monkeypatch):
    from reenact_core.training.distributed import from_environment

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(InputError, match=r"^2 ranks on this node but only 1 GPU\(s\): use --nproc_per_node=1"):
        from_environment("cuda")


@pytest.mark.ddp
def test_ctrl_c_on_one_rank_stops_and_saves_every_rank_at_the_same_step(tmp_path):
    result = run_torchrun("toy_interrupted_on_rank_1", {}, tmp_path, 2)
    assert result["interrupted"] and result["step"] == 3 and result["agree"]
    saved = load_training_checkpoint(tmp_path / "run" / CHECKPOINT_DIR)
    assert saved["step"] == 3
    for k, v in saved["model"].items():
        assert torch.equal(v, result["params"][k])
