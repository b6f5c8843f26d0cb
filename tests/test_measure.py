"""The differentiable measure step: DECA crop warp + E_flame on image tensors, landmark or canonical box."""
from __future__ import annotations

import pytest
import torch

from golden_fixtures import load_case
from reenact_core.errors import InputError
from reenact_core.faces.deca_crop import canonical_deca_theta, deca_crop, deca_crop_theta
from reenact_core.imaging import image_to_tensor
from reenact_core.measure import measure_codes
from reenact_core.models.deca import N_CODES
from reenact_core.weights import kind, tiny_config

# Real faces differ from the mean face in the aspect of their landmark box (pose, expression), so the canonical
# box may be off by a few percent of its side: allowed here are 5 % of the side for the centre, 10 % for the side.
CENTRE_TOLERANCE = 0.05
SIZE_TOLERANCE = 0.10
# Golden cases holding 256-px reference crops with the 68 landmarks detected on them: (case, crops, landmarks).
CROPS_WITH_LANDMARKS = (("deca_crop", "crop256", "kpt68"), ("reenact_pipeline", "source_crop", "source_kpt68"),
                        ("reenact_pipeline", "target_crops", "target_kpt68"))


def tiny_deca(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return kind("deca").set_mode(kind("deca").build(tiny_config("deca")), False)


def box_of(theta: torch.Tensor) -> torch.Tensor:
    """(B, 3) centre x, centre y and side (image pixels) of the squares that ``theta`` maps onto DECA's crop."""
    k = theta[:, 0, 0].double()
    side = 223 / k
    corner = -theta[:, :, 2].double() / k[:, None]
    return torch.cat([corner + side[:, None] / 2, side[:, None]], 1)


@pytest.mark.parametrize("case, crops, landmarks", CROPS_WITH_LANDMARKS)
def test_canonical_box_agrees_with_the_landmark_box_on_golden_crops(case, crops, landmarks):
    stored = load_case(case)
    size = stored[crops].shape[1]
    found = box_of(deca_crop_theta(stored[landmarks]))
    canonical = box_of(canonical_deca_theta(len(found), size))
    side = found[:, 2]
    assert ((canonical[:, :2] - found[:, :2]).abs().amax(1) <= CENTRE_TOLERANCE * side).all(), (canonical, found)
    assert ((canonical[:, 2] - side).abs() <= SIZE_TOLERANCE * side).all(), (canonical, found)


def test_canonical_box_scales_with_the_crop_and_keeps_the_batch():
    small, large = canonical_deca_theta(3, 256), canonical_deca_theta(2, 512, "cpu")
    assert small.shape == (3, 2, 3) and large.shape == (2, 2, 3) and small.dtype == torch.float32
    assert torch.equal(small[0], small[2])
    assert torch.allclose(box_of(large)[0], 2 * box_of(small)[0], rtol=0.01)


@pytest.mark.parametrize("with_landmarks", [True, False])
def test_gradients_reach_the_image(with_landmarks):
    stored = load_case("deca_crop")
    images = image_to_tensor(stored["crop256"]).requires_grad_(True)
    deca = tiny_deca()
    kpt68 = stored["kpt68"] if with_landmarks else None
    codes = measure_codes(deca, images, kpt68, grad=True)
    assert codes.shape == (len(images), N_CODES) and codes.dtype == torch.float32
    codes.square().sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert (images.grad.flatten(1).abs().sum(1) > 0).all()          # every image of the batch gets a gradient
    without = measure_codes(deca, images.detach(), kpt68)
    assert not without.requires_grad and torch.allclose(without, codes.detach())


def test_gradients_reach_trainable_deca_parameters():
    deca = kind("deca").set_mode(tiny_deca(), True)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    measure_codes(deca, images, grad=True).sum().backward()
    assert all(p.grad is not None for p in deca.parameters())


def test_landmark_path_is_the_official_crop_then_e_flame():
    stored = load_case("deca_crop")
    images, deca = image_to_tensor(stored["crop256"]), tiny_deca(1)
    crop224, _ = deca_crop(images, stored["kpt68"])
    with torch.no_grad():
        assert torch.equal(measure_codes(deca, images, stored["kpt68"]), deca(crop224))


def test_bad_inputs_are_refused():
    deca = tiny_deca()
    with pytest.raises(InputError, match="square"):
        measure_codes(deca, torch.zeros(1, 3, 64, 80))
    with pytest.raises(InputError, match="landmark sets"):
        measure_codes(deca, torch.zeros(2, 3, 64, 64), torch.zeros(1, 68, 2))
    with pytest.raises(InputError, match="images must be"):
        measure_codes(deca, torch.zeros(2, 64, 64))


@pytest.mark.gpu
def test_measure_on_the_accelerator_matches_the_cpu():
    device = "cuda" if torch.cuda.is_available() else "mps"
    stored = load_case("deca_crop")
    images, deca = image_to_tensor(stored["crop256"]), tiny_deca()
    on_cpu = measure_codes(deca, images, stored["kpt68"])
    on_device = measure_codes(deca.to(device), images.to(device), stored["kpt68"].to(device))
    assert on_device.device.type == device
    assert torch.allclose(on_device.cpu(), on_cpu, atol=1e-3, rtol=1e-3)
