"""Golden fixtures through production code: the official architectures' filled weights are written in the
official checkpoint layouts, converted by the converter, loaded by the production loader and run.

Every case and seed comes from the manifest, so the same tests hold for any fixture set made the same way
(another seed, a 1024-px generator, ...). Cases without weights (crops, shift vectors) are covered by
test_crops.py and test_params.py; test_every_case_is_covered fails on a case nobody handles.
"""
from __future__ import annotations

import pytest
import torch

from golden_fixtures import TRAINING, Comparer, cases, filled_state_dict, layout, load_case, manifest
from manifest_prose import constructor, seeded_randn, tolerance, truncation_of
from reenact_core.faces.deca_crop import deca_crop
from reenact_core.imaging import image_to_tensor
from reenact_core.models.directions import apply_shift
from reenact_core.models.stylegan2 import truncate
from reenact_core.params import FaceParams, delta_p
from reenact_core.weights import convert, load_model
from reenact_core.weights.official import write_official

# Training-side cases (golden/training), each compared by the test of the same name in test_golden_training.py.
TRAINING_CASES = ("flame_decode", "shift50_gt_params", "shape_losses", "id_loss", "lpips_alex")

# Cases covered in other files, by name prefix.
COVERED_ELSEWHERE = {"deca_crop": "test_crops.py", "voxceleb_crop": "test_crops.py",
                     "shift_vector_": "test_params.py"}


def model_cases() -> list[str]:
    return [c for c, spec in manifest()["cases"].items() if "state_dict_shapes" in spec]


_LOADED: dict[str, object] = {}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """case → LoadedModel, converted from its official-layout file on first use."""
    folder = tmp_path_factory.mktemp("golden_models")

    def get(case: str):
        if case not in _LOADED:
            kind, extras = layout(case).kind, layout(case).extras
            src = write_official(folder / f"{case}.pt", kind, filled_state_dict(case), extras=extras)
            _LOADED[case] = load_model(convert(src, folder / f"{case}.safetensors", expected_kind=kind))
            src.unlink()
        return _LOADED[case]

    yield get
    _LOADED.clear()


def mean_latent_call(case: str) -> tuple[int, int]:
    """(n, seed) of the stored truncation_latent, read from the manifest's description of the call."""
    n, offset = seeded_randn(manifest()["cases"][case]["calls"]["truncation_latent"])
    return n, manifest()["seed"] + offset


def check_generator(case, model, cmp: Comparer) -> None:
    g, s = model.module, cmp.stored
    spec = manifest()["cases"][case]
    cmp.mark_input("z", "wplus")
    for name, value in constructor(spec["constructor"])[1].items():
        assert getattr(g.config, name) == value, f"{case}: inferred {name}={getattr(g.config, name)}, not {value}"
    assert g.config.n_latent == spec["n_latent"]
    assert [(k, list(v.shape)) for k, v in g.state_dict().items()] == list(spec["state_dict_shapes"].items())
    cmp.check("w_from_z", g.mapping(s["z"]))
    n, seed = mean_latent_call(case)
    w_bar = g.mean_latent(n, seed)
    cmp.check("truncation_latent", w_bar)
    cmp.check("image", g(s["wplus"], input_is_latent=True))
    for name in [t for t in s if truncation_of(t) is not None]:
        psi = truncation_of(name)
        cmp.check(name, g(s["wplus"][:1], truncation=psi, truncation_latent=s["truncation_latent"]))


def check_e4e(case, model, cmp: Comparer) -> None:
    cmp.mark_input("image")
    cmp.check("wplus", model.module(cmp.stored["image"]))


def check_deca(case, model, cmp: Comparer) -> None:
    cmp.mark_input("image")
    params = model.module(cmp.stored["image"])
    cmp.check("params", params)
    face = FaceParams.from_deca(params)
    cmp.check("pose_euler_deg", face.angles)
    cmp.check("jaw", face.jaw)
    cmp.check("exp11", face.exp)


def check_directions(case, model, cmp: Comparer) -> None:
    cmp.mark_input("delta_p")
    cmp.check("shift", model.module(cmp.stored["delta_p"]))


CHECKS = {"stylegan2": check_generator, "e4e": check_e4e, "deca": check_deca, "directions": check_directions}


@pytest.mark.parametrize("case", model_cases())
def test_model_case(case, converted):
    cmp = Comparer(case, load_case(case))
    with torch.no_grad():
        CHECKS[layout(case).kind](case, converted(case), cmp)
    cmp.assert_all_checked()


@pytest.mark.parametrize("case", cases("reenact_pipeline"))
def test_pipeline_stage_by_stage(case, converted):
    """Each stage gets the stored output of the stage before, so each tolerance applies on its own."""
    spec = manifest()["cases"][case]
    models = {layout(c).kind: converted(c) for c in spec["models"].values()}
    consts = spec["constants"]
    psi = float(consts["truncation"])
    cmp = Comparer(case, load_case(case))
    s = cmp.stored
    cmp.mark_input("source_crop", "target_crops", "source_kpt68", "target_kpt68", "truncation_latent")
    g = models["stylegan2"]
    assert torch.allclose(s["truncation_latent"], g.module.mean_latent(*mean_latent_call(spec["models"]["G"])),
                          atol=tolerance("truncation_latent"))
    with torch.no_grad():
        source, targets = image_to_tensor(s["source_crop"]), image_to_tensor(s["target_crops"])
        cmp.check("w_s", models["e4e"].module(source))
        for side, image, kpt in (("source", source, s["source_kpt68"]), ("target", targets, s["target_kpt68"])):
            crop224, theta = deca_crop(image, kpt)
            cmp.check(f"theta_{side}", theta)
            p = models["deca"].module(crop224)
            cmp.check({"source": "p_s", "target": "p_t"}[side], p)
        face_s, face_t = FaceParams.from_deca(s["p_s"]), FaceParams.from_deca(s["p_t"])
        cmp.check("angles_s", face_s.angles)
        cmp.check("angles_t", face_t.angles)
        a = models["directions"]
        assert a.config.shift_scale == consts["shift_scale"] and a.config.num_layers == consts["num_layers_shift"]
        cmp.check("delta_p", delta_p(face_s, face_t, normaliser=a.config.normaliser))
        cmp.check("shift", a.module(s["delta_p"]))
        cmp.check("w_r", apply_shift(s["w_s"].expand(s["shift"].shape[0], -1, -1), s["shift"]))
        cmp.check("w_r_truncated", truncate(s["w_r"], psi, s["truncation_latent"]))
        cmp.check("image", g.module(s["w_r"], truncation=psi, truncation_latent=s["truncation_latent"]))
    cmp.assert_all_checked()


def test_every_case_is_covered():
    handled = set(model_cases()) | set(cases("reenact_pipeline"))
    for case in manifest()["cases"]:
        assert case in handled or any(case.startswith(p) for p in COVERED_ELSEWHERE), \
            f"golden case {case} is compared by no test"
    for case in manifest(TRAINING)["cases"]:
        assert case in TRAINING_CASES, f"golden training case {case} is compared by no test"
