"""Training A: a planted solution is recovered, resume is bit for bit, DDP equals one process, any StyleGAN2
(a 64-px, 10-row one) trains and its export runs in the engine, bad inputs fail in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reenact_core.cli import main
from reenact_core.training.config import DirectionsTrainConfig
from reenact_core.training.directions import DirectionsMethod
from reenact_core.training.distributed import DistContext
from reenact_core.training.loop import CHECKPOINT_DIR, train
from reenact_core.training.networks import tiny_networks
from training_fixtures import (assert_same_state, linear_networks, make_method, one_thread,  # noqa: F401
                               planted_tree, assert_ddp_equals_one_process, tiny_model_files)

CPU = DistContext()
PLANTED_LR = 1e-2          # Adam, the stated learning rate of the planted test
PLANTED_STEPS = 80
PLANTED_SCALE = 0.05       # std of A*'s weight (A* has no bias)


def paired_config(data, **overrides) -> DirectionsTrainConfig:
    return DirectionsTrainConfig(**{"method": "paired", "data": str(data), "batch_size": 4, "eval_every": 10 ** 6,
                                    "save_every": 10 ** 6, "validation_samples": 2, "num_workers": 0, **overrides})


@pytest.mark.slow
def test_planted_solution_is_recovered_and_every_loss_term_falls(tmp_path):
    config = paired_config(tmp_path / "data", lr=PLANTED_LR, max_iter=PLANTED_STEPS)
    nets = linear_networks(config)
    rows, width = config.num_layers_shift, nets.generator.config.style_dim
    a_star = torch.randn(rows * width, 15, generator=torch.Generator().manual_seed(7)) * PLANTED_SCALE
    planted_tree(tmp_path / "data", nets, a_star, videos=4, frames=5, config=config)
    method = DirectionsMethod(config, nets, CPU)
    batch = next(iter(method.batches(0, 0)))

    def distance():
        a = method.directions.linear
        return float(torch.cat([(a.weight - a_star).flatten(), a.bias.flatten()]).detach().norm())

    def terms():
        with torch.no_grad():
            return {k: float(v) for k, v in method.loss(method.directions, batch, 0)[1].items()}

    start, start_terms = distance(), terms()
    train(method, tmp_path / "run", CPU)
    end_terms = terms()
    assert distance() <= 0.5 * start
    assert set(end_terms) == {"shape", "eye", "mouth", "identity", "lpips", "pixel"}
    for name, value in end_terms.items():
        assert value < start_terms[name], name


def test_resume_mid_epoch_with_workers_is_bit_for_bit(tmp_path):
    config = paired_config(tmp_path / "data", max_iter=5, num_workers=1, save_every=2)
    nets = tiny_networks(config)
    planted_tree(tmp_path / "data", nets, torch.zeros(config.num_layers_shift * 32, 15), videos=2, frames=4,
                 config=config)         # 8 frames: 2 steps an epoch
    train(DirectionsMethod(config, tiny_networks(config), CPU), tmp_path / "full", CPU)
    part = config.with_overrides({"max_iter": 3})
    train(DirectionsMethod(part, tiny_networks(part), CPU), tmp_path / "part", CPU)
    train(DirectionsMethod(config, tiny_networks(config), CPU), tmp_path / "part", CPU,
          resume=tmp_path / "part" / CHECKPOINT_DIR)
    assert_same_state(tmp_path / "full" / CHECKPOINT_DIR, tmp_path / "part" / CHECKPOINT_DIR, step=5)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_of_two_equal_one_rank_of_four(tmp_path):
    settings = {"max_iter": 3, "batch_size": 4}                # reference lr 1e-4, disentanglement_50 on
    assert_ddp_equals_one_process("directions", settings, make_method("directions", settings, CPU), tmp_path,
                                  rel_tol=1e-6)


def test_64px_generator_trains_and_its_export_runs_in_the_engine(tmp_path, capsys):
    from reenact_core.engine import ReenactModels, render
    from reenact_core.engine.source import PreparedSource
    from reenact_core.faces.reference_crop import CropTransform
    from reenact_core.weights import load_model

    generator = tiny_model_files(tmp_path / "models", DirectionsTrainConfig())
    code = main(["train", "directions", "--models", str(tmp_path / "models"), "--generator", str(generator),
                 "--out", str(tmp_path / "run"), "--device", "cpu", "--batch-size", "2", "--max-iter", "2",
                 "--eval-every", "2", "--validation-samples", "2", "--num-workers", "0", "--name", "tiny"])
    assert code == 0
    out = capsys.readouterr().out
    exported = tmp_path / "run" / "export" / "directions-tiny.safetensors"
    assert str(exported) in out and (tmp_path / "run" / "export" / "A_matrix.pt").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "logs" / "log.jsonl").read_text().splitlines()]
    validation = [r for r in records if r["kind"] == "validation"]
    assert validation and {"cross_identity_arcface", "self_pose_error_deg", "cross_expression_error"} <= set(
        validation[-1])
    assert list((tmp_path / "run" / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    saved = json.loads((tmp_path / "run" / "train-config.json").read_text())
    assert saved["config"]["batch_size"] == 2 and len(saved["weights"]["generator"]["sha256"]) == 64
    g = load_model(generator, "stylegan2")
    a = load_model(exported, "directions")
    assert g.config.n_latent == 10 and a.config.num_layers == 8 and a.metadata["random_weights"] == "true"
    official = torch.load(tmp_path / "run" / "export" / "A_matrix.pt", weights_only=True)
    assert official["shift_dim"] == g.config.style_dim and official["num_layers_shift"] == 8
    torch.testing.assert_close(official["A_matrix"]["linear.weight"], a.module.linear.weight, rtol=0, atol=0)
    models = ReenactModels(g, None, None, a, torch.device("cpu"), torch.float32)
    w = g.module.mapping(torch.randn(1, g.config.style_dim))[:, None].expand(-1, 10, -1)
    source = PreparedSource(np.zeros((256, 256, 3), np.uint8), np.zeros((256, 256, 3), np.uint8),
                            CropTransform((0, 0, 256, 256), (256, 256)), np.zeros((68, 2), np.float32), w, g.mean_latent,
                            torch.zeros(1, 236))
    rendered = render(models, source, torch.zeros(3, 15), paste=False)
    assert rendered.crops.shape == (3, 256, 256, 3)


def run_cli(args, capsys) -> tuple[int, str]:
    code = main(["train", "directions", "--device", "cpu", *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("absent", ["flame-generic.safetensors", "arcface-irse50.safetensors", "lpips-alex.safetensors"])
def test_missing_training_file_is_one_line_with_source_and_command(tmp_path, capsys, absent):
    from reenact_core.weights import KINDS

    generator = tiny_model_files(tmp_path / "models", DirectionsTrainConfig())
    names = {k.canonical_file: k for k in KINDS.values()}
    (tmp_path / "models" / names[absent].canonical_file).unlink()
    code, err = run_cli(["--models", str(tmp_path / "models"), "--generator", str(generator),
                         "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "\n" not in err and absent in err
    assert names[absent].official_file.split(" ")[0] in err and ("convert" in err or "http" in err)
    assert not (tmp_path / "run").exists()


def test_bad_training_inputs_are_one_line(tmp_path, capsys):
    generator = tiny_model_files(tmp_path / "models", DirectionsTrainConfig())
    common = ["--models", str(tmp_path / "models"), "--generator", str(generator), "--num-workers", "0",
              "--validation-samples", "2"]
    code, err = run_cli([*common, "--out", str(tmp_path / "a"), "--batch-size", "3"], capsys)
    assert code == 2 and "\n" not in err and "batch_size 3 must be a multiple of 2" in err
    (tmp_path / "empty").mkdir()
    code, err = run_cli([*common, "--out", str(tmp_path / "b"), "--method", "paired", "--data",
                         str(tmp_path / "empty")], capsys)
    assert code == 2 and "\n" not in err and "no videos with at least 2 prepared frames" in err
    code, err = run_cli([*common, "--out", str(tmp_path / "c"), "--batch-size", "2", "--max-iter", "1"], capsys)
    assert code == 0
    code, err = run_cli([*common, "--out", str(tmp_path / "c"), "--batch-size", "2", "--max-iter", "2",
                         "--lr", "0.5", "--resume"], capsys)
    assert code == 2 and "\n" not in err and "cannot resume" in err and "lr=0.0001" in err
    code, err = run_cli([*common, "--out", str(tmp_path / "d"), "--resume"], capsys)
    assert code == 2 and "\n" not in err and "no checkpoint to resume from" in err, err


def test_a_stage_starts_from_the_previous_stages_a(tmp_path, capsys):
    from reenact_core.errors import InputError
    from reenact_core.training.directions import init_directions
    from reenact_core.weights import load_model

    generator = tiny_model_files(tmp_path / "models", DirectionsTrainConfig())
    assert main(["train", "directions", "--models", str(tmp_path / "models"), "--generator", str(generator),
                 "--out", str(tmp_path / "syn"), "--device", "cpu", "--batch-size", "2", "--max-iter", "1",
                 "--validation-samples", "2", "--num-workers", "0", "--name", "syn"]) == 0
    exported = load_model(tmp_path / "syn" / "export" / "directions-syn.safetensors", "directions")
    for start in (tmp_path / "syn" / "export" / "directions-syn.safetensors",
                  tmp_path / "syn" / "checkpoints" / "best.pt"):
        a = init_directions(DirectionsTrainConfig(init_directions=str(start)), 32)
        for k, v in exported.module.state_dict().items():
            assert torch.equal(a.state_dict()[k], v), (start, k)
    with pytest.raises(InputError, match=r"^init_directions .* holds an A of another shape [^\n]*$"):
        init_directions(DirectionsTrainConfig(init_directions=str(start), num_layers_shift=4), 32)


def test_normaliser_from_a_ranges_file(tmp_path):
    from reenact_core.errors import InputError

    table = np.array([[-1.0 - i, 1.0 + i] for i in range(54)])
    np.save(tmp_path / "ranges.npy", table)
    n = DirectionsTrainConfig(ranges=str(tmp_path / "ranges.npy"), angle_scales=(30, 20, 10)).normaliser
    assert n.ranges == tuple((float(lo), float(hi)) for lo, hi in table[:15]) and n.angle_scales == (30, 20, 10)
    np.save(tmp_path / "short.npy", table[:5])
    with pytest.raises(InputError, match="at least 15"):
        DirectionsTrainConfig(ranges=str(tmp_path / "short.npy"))
    with pytest.raises(InputError, match="neither voxceleb nor a readable ranges file"):
        DirectionsTrainConfig(ranges="ffhq")


@pytest.mark.slow
def test_self_check_reports_every_method(capsys):
    assert main(["train", "directions", "--self-check", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "TINY RANDOM" in lines[0]
    import re
    found = [re.fullmatch(r"self-check: (\w+) loss (\d+\.\d+) -> (\d+\.\d+)", line) for line in lines[1:]]
    assert [m.group(1) for m in found if m] == list(DirectionsTrainConfig.METHODS)


def test_landmark_measure_uses_each_face_and_falls_back_to_the_canonical_box():
    from reenact_core.faces.reference_crop import crop_using_landmarks
    from reenact_core.imaging import image_to_tensor
    from reenact_core.landmarks import detect_faces
    from reenact_core.measure import measure_codes
    from reenact_core.selfcheck import sample_portrait
    from reenact_core.training.networks import DecaMeasure

    portrait = sample_portrait()
    face = max(detect_faces(portrait), key=lambda f: f.area)
    crop, _ = crop_using_landmarks(portrait, face.landmarks)
    noise = np.random.default_rng(0).integers(0, 256, crop.shape, dtype=np.uint8)
    images = image_to_tensor(np.stack([crop, noise]))
    deca = tiny_networks(DirectionsTrainConfig()).measure.deca
    found = DecaMeasure(deca, "landmarks")(images)
    canonical = measure_codes(deca, images)
    kpt68 = torch.as_tensor(max(detect_faces(crop), key=lambda f: f.area).landmarks, dtype=torch.float32)
    torch.testing.assert_close(found[:1], measure_codes(deca, images[:1], kpt68[None]))
    assert not torch.equal(found[0], canonical[0])
    assert torch.equal(found[1], canonical[1])        # no face in noise: the canonical box
