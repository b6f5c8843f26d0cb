"""The training-side golden fixtures (../shared/golden/training) through production code.

FLAME: the synthetic model is rebuilt by the manifest's rule, written as the official generic_model.pkl
(chumpy/scipy stand-ins) and landmark_embedding.npy, converted and loaded. ArcFace: written as
model_ir_se50.pth, converted and loaded. LPIPS: written as the two published files and loaded. Cases, seeds,
batch sizes, constants and tolerances come from the manifest, so the tests hold for any set made the same way.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from flame_fixtures import synthetic_flame_arrays, write_generic_model, write_landmark_embedding
from golden_fixtures import TRAINING, Comparer, filled_state_dict, load_case, manifest
from reenact_core.imaging import image_to_tensor
from reenact_core.models.lpips import ALEXNET_FILE, LINEAR_FILE, SCALE, SHIFT
from reenact_core.params import NUM_EXPRESSIONS, VOXCELEB, FaceParams, Normaliser
from reenact_core.training.losses import (FlameParams, IdentityLoss, LossOptions, LossWeights, TrainingLosses,
                                          geometry_losses, identity_input, lpips_loss, pixel_loss, pixel_range)
from reenact_core.training.sampling import ShiftDraws, ground_truth_params, shift_vector
from reenact_core.weights import convert, load_model
from reenact_core.weights.official import write_official

def spec(case: str) -> dict:
    return manifest(TRAINING)["cases"][case]


def comparer(case: str) -> Comparer:
    return Comparer(case, load_case(case, TRAINING), spec(case)["tolerances_abs"])


@pytest.fixture(scope="module")
def flame(tmp_path_factory, shared_dir):
    """The synthetic FLAME of the manifest's seed, through the official files, the converter and the loader."""
    folder = tmp_path_factory.mktemp("flame")
    arrays = synthetic_flame_arrays(manifest(TRAINING)["seed"])
    for name, expected in manifest(TRAINING)["synthetic_flame"]["arrays"].items():
        a = arrays[name].numpy() if isinstance(arrays[name], torch.Tensor) else arrays[name]
        a = np.ascontiguousarray(a, dtype=np.dtype(expected["dtype"]).newbyteorder("<"))
        assert list(a.shape) == expected["shape"]
        assert hashlib.sha256(a.tobytes()).hexdigest() == expected["sha256_le_bytes"], f"rebuilt {name} differs"
    pkl = write_generic_model(folder / "generic_model.pkl", arrays)
    npy = write_landmark_embedding(folder / "landmark_embedding.npy", arrays)
    return load_model(convert(pkl, folder, landmarks=npy), "flame").module


def camera(case: str, batch: int) -> torch.Tensor:
    return torch.tensor(spec(case)["camera"], dtype=torch.float32).expand(batch, 3)


def test_flame_decode(flame):
    case = "flame_decode"
    cmp = comparer(case)
    s = cmp.stored
    cmp.mark_input("shape_params", "expression_params", "pose_params", "contour_angle_deg_fp64")
    assert spec(case)["image_size"] == 224
    with torch.no_grad():
        out = flame(s["shape_params"], s["expression_params"], s["pose_params"])
        dec = flame.decode(s["shape_params"], s["expression_params"], s["pose_params"],
                           camera(case, s["shape_params"].shape[0]))
    for name in ("vertices", "joints_rest", "joints_posed", "contour_row"):
        cmp.check(name, getattr(out, name))
    cmp.check("flame_landmarks2d", out.landmarks2d)
    cmp.check("flame_landmarks3d", out.landmarks3d)
    for name in ("landmarks2d", "landmarks3d", "trans_verts"):
        cmp.check(name, getattr(dec, name))
    cmp.assert_all_checked()


def reference_draws(s: dict, half: int) -> ShiftDraws:
    """The reference's draws (stored) as ShiftDraws: rows < half full, the others single-direction."""
    batch = s["pose_source"].shape[0]
    return ShiftDraws(torch.arange(batch) >= half,
                      torch.cat([torch.zeros(half, dtype=torch.long), s["target_indices"]]),
                      torch.cat([torch.zeros(half), s["rand_u"]]))


def face_params(s: dict, side: str) -> FaceParams:
    return FaceParams(s[f"angles_{side}"], s[f"pose_{side}"][:, 3], s[f"exp_{side}"][:, :NUM_EXPRESSIONS])


def test_shift50_gt_params():
    case = "shift50_gt_params"
    cmp = comparer(case)
    s = cmp.stored
    cmp.mark_input("pose_source", "exp_source", "pose_target", "exp_target", "angles_source", "angles_target",
                   "target_indices", "rand_u")
    assert s["pose_source"].shape[0] == 2 * spec(case)["batch_half"]
    draws = reference_draws(s, spec(case)["batch_half"])
    normaliser = Normaliser(shift_scale=spec(case)["shift_scale"])
    source = face_params(s, "source")
    sv = shift_vector(source, face_params(s, "target"), draws, normaliser=normaliser)
    cmp.check("shift_vector", sv)
    gt_pose, gt_exp = ground_truth_params(source, s["pose_source"], s["exp_source"], s["pose_target"],
                                          s["exp_target"], sv, draws, normaliser=normaliser,
                                          reference_euler=LossOptions.reference().reference_euler)
    cmp.check("gt_pose", gt_pose)
    cmp.check("gt_exp", gt_exp)
    cmp.assert_all_checked()


def test_shape_losses(flame):
    case = "shape_losses"
    cmp = comparer(case)
    s = cmp.stored
    cmp.mark_input(*spec(case)["inputs"])
    lambdas = spec(case)["lambdas"]
    options = LossOptions(weights=LossWeights(identity=0.0, lpips=0.0, **lambdas))
    losses = TrainingLosses(flame, options=options)
    # The stored ground truth is what the sampling produces from the stored draws.
    draws = reference_draws(s, s["target_indices"].shape[0])
    source = face_params(s, "source")
    sv = shift_vector(source, face_params(s, "target"), draws, normaliser=VOXCELEB)
    gt_pose, gt_exp = ground_truth_params(source, s["pose_source"], s["exp_source"], s["pose_target"],
                                          s["exp_target"], sv, draws, normaliser=VOXCELEB, reference_euler=True)
    for mine, stored in ((sv, "shift_vector"), (gt_pose, "gt_pose"), (gt_exp, "gt_exp")):
        assert torch.allclose(mine, s[stored], atol=manifest(TRAINING)["cases"]["shift50_gt_params"]
                              ["tolerances_abs"][stored], rtol=0)

    gt = FlameParams(s["shape_source"], s["gt_exp"], s["gt_pose"])
    shifted = FlameParams(s["shape_shifted"], s["exp_shifted"], s["pose_shifted"])
    images = torch.zeros(s["shape_source"].shape[0], 3, 256, 256)
    with torch.no_grad():
        dec_gt, dec_r = losses.decode(gt), losses.decode(shifted)
        cmp.check("landmarks2d_gt", dec_gt.landmarks2d)
        cmp.check("landmarks2d_shifted", dec_r.landmarks2d)
        cmp.check("trans_verts_gt", dec_gt.trans_verts)
        cmp.check("trans_verts_shifted", dec_r.trans_verts)
        terms = losses(images, images, gt, shifted)
        for name in ("shape", "eye", "mouth"):
            cmp.check(f"loss_{name}", terms[name])
        cmp.check("loss_total_shape_terms", terms["total"])
        geometry = geometry_losses(dec_gt, dec_r)
        cmp.check("loss_eye_per_pair", geometry.eye_per_pair)
        cmp.check("loss_mouth_per_pair", geometry.mouth_per_pair)
        per_sample = [losses(images[i:i + 1], images[i:i + 1], FlameParams(*(t[i:i + 1] for t in gt)),
                             FlameParams(*(t[i:i + 1] for t in shifted))) for i in range(images.shape[0])]
        for name in ("shape", "eye", "mouth"):
            cmp.check(f"loss_{name}_per_sample", torch.stack([p[name] for p in per_sample]))
        paired = losses(images, images, FlameParams(s["shape_target"], s["exp_target"], s["pose_target"]), shifted)
        for name in ("shape", "eye", "mouth"):
            cmp.check(f"paired_loss_{name}", paired[name])
    cmp.assert_all_checked()


@pytest.mark.slow
def test_id_loss(tmp_path):
    case = "id_loss"
    cmp = comparer(case)
    s = cmp.stored
    cmp.mark_input("crops_hat", "crops_ref")
    src = write_official(tmp_path / "model_ir_se50.pth", "arcface", filled_state_dict(case, TRAINING))
    arcface = load_model(convert(src, tmp_path, expected_kind="arcface"), "arcface").module
    identity = IdentityLoss(arcface)
    hat, ref = image_to_tensor(s["crops_hat"]), image_to_tensor(s["crops_ref"])
    with torch.no_grad():
        cmp.check("face_input_hat", identity_input(hat))
        cmp.check("feats_hat", identity.embed(hat))
        cmp.check("feats_ref", identity.embed(ref))
        cmp.check("cos_sim", identity.similarity(hat, ref))
        per_sample = identity(hat, ref)
        cmp.check("loss_per_sample", per_sample)
        cmp.check("loss", per_sample.mean())
    cmp.assert_all_checked()


def write_published_lpips(folder, state_dict: dict[str, torch.Tensor]):
    """The reference LPIPS state dict written as the two published files: torchvision's AlexNet
    (``features.<i>.*``, with its unused classifier) and PerceptualSimilarity's ``alex.pth``
    (``lin<i>.model.1.weight``, which the reference renames ``lin.<i>.1.weight``). Returns ``alex.pth``."""
    assert torch.equal(state_dict["net.mean"].flatten(), torch.tensor(SHIFT))
    assert torch.equal(state_dict["net.std"].flatten(), torch.tensor(SCALE))
    alexnet = {k.replace("net.layers.", "features."): v for k, v in state_dict.items() if k.startswith("net.layers.")}
    alexnet["classifier.1.weight"] = torch.zeros(4, 9216)
    lin = {f"lin{k.split('.')[1]}.model.1.weight": v for k, v in state_dict.items() if k.startswith("lin.")}
    torch.save(alexnet, folder / ALEXNET_FILE)
    torch.save(lin, folder / LINEAR_FILE)
    return folder / LINEAR_FILE


def test_lpips_alex(tmp_path):
    case = "lpips_alex"
    cmp = comparer(case)
    s = cmp.stored
    cmp.mark_input("crops_hat", "crops_ref")
    linear = write_published_lpips(tmp_path, filled_state_dict(case, TRAINING))
    lpips = load_model(convert(linear, tmp_path, expected_kind="lpips"), "lpips").module
    hat, ref = image_to_tensor(s["crops_hat"]), image_to_tensor(s["crops_ref"])
    with torch.no_grad():
        for suffix, legacy in (("", False), ("_255", True)):
            per_layer = lpips.layer_distances(pixel_range(hat, legacy), pixel_range(ref, legacy))
            cmp.check(f"per_layer{suffix}", per_layer)
            cmp.check(f"per_sample{suffix}", per_layer.sum(1))
            cmp.check(f"loss{suffix}", lpips_loss(lpips, hat, ref, legacy))
        cmp.check("pixel_l1_255", pixel_loss(hat, ref, legacy_255=LossOptions.reference(paired=True).legacy_255))
    cmp.assert_all_checked()
