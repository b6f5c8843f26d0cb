"""FLAME, Δp sampling and the training losses on tiny networks: properties the golden cases do not pin."""
from __future__ import annotations

import math

import pytest
import torch

from flame_fixtures import tiny_flame_arrays, write_generic_model, write_landmark_embedding
from reenact_core.errors import InputError
from reenact_core.models.arcface import ArcFace, ArcFaceConfig
from reenact_core.models.lpips import LPIPS
from reenact_core.params import VOXCELEB, FaceParams, axis_angle_to_euler, normalise
from reenact_core.training.losses import FlameParams, Frozen, LossOptions, TrainingLosses, lpips_loss, pixel_loss
from reenact_core.training.sampling import (draw_shifts, euler_to_axis_angle, ground_truth_params,
                                            reference_euler_to_axis_angle, shift_vector)
from reenact_core.weights import convert, load_model

TINY_ARCFACE = ArcFaceConfig(widths=(8, 16, 24, 32), units=(1, 1, 1, 1), se_reduction=4, embedding_dim=16)


@pytest.fixture(scope="module")
def flame(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_flame")
    arrays = tiny_flame_arrays()
    pkl = write_generic_model(folder / "generic_model.pkl", arrays)
    npy = write_landmark_embedding(folder / "landmark_embedding.npy", arrays)
    return load_model(convert(pkl, folder, landmarks=npy), "flame").module


def random_params(batch: int, generator: torch.Generator) -> FlameParams:
    return FlameParams(torch.randn(batch, 100, generator=generator), torch.randn(batch, 50, generator=generator),
                       torch.randn(batch, 6, generator=generator) * 0.2)


def test_contour_row_follows_decas_sign(flame):
    """Axis-angle (0, +θ, 0) picks row θ, (0, −θ, 0) row 39 + θ; beyond ±39° the rows clamp to 39 and 78."""
    degrees = torch.tensor([30.0, -30.0, 0.0, 45.0, -45.0])
    pose = torch.zeros(5, 6)
    pose[:, 1] = degrees * math.pi / 180
    out = flame(torch.zeros(5, 100), torch.zeros(5, 50), pose)
    assert out.contour_row.tolist() == [30, 69, 0, 39, 78]


def test_flame_is_differentiable(flame):
    g = torch.Generator().manual_seed(0)
    params = [t.requires_grad_() for t in random_params(2, g)]
    dec = flame.decode(*params)
    (dec.trans_verts.sum() + dec.landmarks2d.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_flame_rejects_wrong_shapes(flame):
    with pytest.raises(InputError, match="FLAME expects"):
        flame(torch.zeros(2, 100), torch.zeros(2, 50), torch.zeros(2, 3))


def test_exact_euler_inverse_round_trips():
    g = torch.Generator().manual_seed(1)
    pose = (torch.rand(256, 3, generator=g) - 0.5) * torch.tensor([1.2, 1.2, 0.8])    # within ±35°: no gimbal branch
    assert (euler_to_axis_angle(axis_angle_to_euler(pose)) - pose).abs().max() < 1e-5
    # The reference's conversion is not the inverse when two angles are non-zero (its documented quirk) ...
    assert (reference_euler_to_axis_angle(axis_angle_to_euler(pose)) - pose).abs().max() > 1e-2
    # ... but does invert a single-axis rotation.
    single = torch.tensor([[0.0, 0.3, 0.0], [0.2, 0.0, 0.0], [0.0, 0.0, -0.25]])
    assert (reference_euler_to_axis_angle(axis_angle_to_euler(single)) - single).abs().max() < 1e-5


def test_draws_depend_only_on_seed_step_and_global_index():
    whole = draw_shifts(7, 3, torch.arange(8), 8)
    parts = [draw_shifts(7, 3, torch.arange(r * 2, r * 2 + 2), 8) for r in range(4)]
    for field in ("single", "direction", "uniform"):
        assert torch.equal(torch.cat([getattr(p, field) for p in parts]), getattr(whole, field))
    assert whole.single.tolist() == [False] * 4 + [True] * 4
    assert not torch.equal(draw_shifts(7, 4, torch.arange(8), 8).uniform, whole.uniform)
    assert not torch.equal(draw_shifts(8, 3, torch.arange(8), 8).uniform, whole.uniform)
    with pytest.raises(InputError, match="even global batch"):
        draw_shifts(0, 0, torch.arange(3), 3)


def face_batch(batch: int, g: torch.Generator):
    pose = torch.randn(batch, 6, generator=g) * 0.2
    exp = torch.randn(batch, 50, generator=g) * 0.5
    return FaceParams.from_pose_exp(pose, exp), pose, exp


@pytest.mark.parametrize("reference_euler", [False, True])
def test_single_direction_moves_one_coordinate_within_range(reference_euler):
    g = torch.Generator().manual_seed(2)
    batch = 64
    (source, pose_s, exp_s), (target, pose_t, exp_t) = face_batch(batch, g), face_batch(batch, g)
    draws = draw_shifts(0, 0, torch.arange(batch), batch)
    dp = shift_vector(source, target, draws, normaliser=VOXCELEB)
    single = draws.single
    n_source, n_target = normalise(source, normaliser=VOXCELEB), normalise(target, normaliser=VOXCELEB)
    assert torch.allclose(dp[~single], n_target[~single] - n_source[~single])
    assert ((dp[single] != 0).sum(1) <= 1).all()
    moved = (n_source + dp)[single].gather(1, draws.direction[single][:, None])
    assert (moved.abs() <= VOXCELEB.shift_scale + 1e-5).all()
    gt_pose, gt_exp = ground_truth_params(source, pose_s, exp_s, pose_t, exp_t, dp, draws,
                                          normaliser=VOXCELEB, reference_euler=reference_euler)
    assert torch.equal(gt_pose[~single], pose_t[~single]) and torch.equal(gt_exp[~single], exp_t[~single])
    # The ground truth of a single-direction sample measures as the moved value in that coordinate.
    measured = normalise(FaceParams.from_pose_exp(gt_pose, gt_exp), normaliser=VOXCELEB)[single]
    expected = (n_source + dp)[single]
    d = draws.direction[single]
    on_d = measured.gather(1, d[:, None]) - expected.gather(1, d[:, None])
    if not reference_euler:
        assert on_d.abs().max() < 1e-3
        off_d = (measured - n_source[single]).scatter(1, d[:, None], 0.0)
        assert off_d.abs().max() < 1e-3


def test_identical_images_have_zero_lpips_and_pixel_loss():
    torch.manual_seed(0)
    lpips = LPIPS().eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    for legacy in (False, True):
        assert lpips_loss(lpips, x, x.clone(), legacy) == 0
        assert pixel_loss(x, x.clone(), legacy) == 0
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    assert pixel_loss(x, y, True).item() == pytest.approx(pixel_loss(x, y).item() * 255 / (2 + 1e-5), rel=1e-4)


def make_losses(flame, options=LossOptions()):
    torch.manual_seed(0)
    arcface, lpips = ArcFace(TINY_ARCFACE), LPIPS()
    with torch.no_grad():    # non-trivial running statistics, so train-mode BatchNorm would change outputs
        for m in arcface.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return TrainingLosses(flame, arcface, lpips, options)


class Trainer(torch.nn.Module):
    """A trainer-style module: a trainable part and the losses holding the frozen networks."""

    def __init__(self, losses):
        super().__init__()
        self.a = torch.nn.Linear(2, 2)
        self.losses = losses


def test_frozen_networks_ignore_train(flame):
    g = torch.Generator().manual_seed(3)
    trainer = Trainer(make_losses(flame))
    images, reference = (torch.rand(2, 3, 256, 256, generator=g) * 2 - 1 for _ in range(2))
    gt, reenacted = random_params(2, g), random_params(2, g)
    before = trainer.losses(images, reference, gt, reenacted)
    stats = {k: v.clone() for k, v in trainer.losses.state_dict().items()}
    trainer.train()
    assert trainer.training and trainer.a.training
    after = trainer.losses(images, reference, gt, reenacted)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert all(torch.equal(v, trainer.losses.state_dict()[k]) for k, v in stats.items())
    frozen = [m for m in trainer.modules() if isinstance(m, Frozen)]
    assert frozen and all(not m.network.training for m in frozen)
    assert not any(p.requires_grad for m in frozen for p in m.parameters())


def test_gradients_reach_images_and_parameters(flame):
    g = torch.Generator().manual_seed(4)
    losses = make_losses(flame, LossOptions.reference(paired=True))
    images = (torch.rand(2, 3, 256, 256, generator=g) * 2 - 1).requires_grad_()
    reenacted = FlameParams(*(t.requires_grad_() for t in random_params(2, g)))
    terms = losses(images, torch.rand(2, 3, 256, 256, generator=g) * 2 - 1, random_params(2, g), reenacted)
    assert set(terms) == {"shape", "eye", "mouth", "identity", "lpips", "pixel", "total"}
    terms["total"].backward()
    assert images.grad.abs().sum() > 0 and all(t.grad.abs().sum() > 0 for t in reenacted)


def test_weighted_network_must_be_given(flame):
    with pytest.raises(InputError, match="ArcFace term"):
        TrainingLosses(flame, None, LPIPS())
    TrainingLosses(flame, options=LossOptions().with_weights(identity=0.0, lpips=0.0))


def test_reference_mode_options():
    ref = LossOptions.reference(paired=True)
    assert ref.legacy_255 and ref.reference_euler and ref.weights.pixel == 1.0
    default = LossOptions()
    assert not default.legacy_255 and not default.reference_euler and default.weights.pixel == 0.0
