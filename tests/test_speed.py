"""Speed options of a model set (reenact_core.engine.speed): per-network float types and opt-in compilation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine_fixtures import calibrate_deca, source_photo, video_frames
from golden_fixtures import MEDIA
from reenact_core.cli import main
from reenact_core.engine import DriveOptions, drive, load_reenact_models, prepare_source
from reenact_core.engine.speed import compile_problem, has_native_bfloat16, network_dtypes
from reenact_core.models import deca, e4e
from reenact_core.video import VideoReader
from reenact_core.weights import KINDS, make_tiny_model_set
from test_engine import BF16_MEAN_ERROR

COMPILE_TOLERANCE = 1e-4   # compiled kernels reorder float sums: relative difference allowed


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_models")
    make_tiny_model_set(folder)
    calibrate_deca(folder / KINDS["deca"].canonical_file, video_frames(0, 5))
    return folder


def test_cpu_dtypes_keep_the_generator_in_float32_unless_asked():
    g, encoders, note = network_dtypes(torch.bfloat16, "cpu")
    assert g == torch.float32
    assert (encoders, note is None) == ((torch.bfloat16, True) if has_native_bfloat16("cpu") else (torch.float32, False))
    assert network_dtypes(torch.bfloat16, "cpu", torch.bfloat16)[0] == torch.bfloat16
    assert network_dtypes(torch.float32, "cpu") == (torch.float32, torch.float32, None)
    assert network_dtypes(torch.float16, "cuda")[:2] == (torch.float16, torch.float16)   # accelerators: all of it


def test_compile_problem_is_a_sentence_or_none():
    problem = compile_problem("cpu")
    assert problem is None or ("compiler" in problem and "\n" not in problem)


def test_bfloat16_encoders_beside_a_float32_generator(model_dir):
    image = np.array(Image.open(source_photo()).convert("RGB"))
    driver = video_frames(0, 2)
    mixed = load_reenact_models([model_dir], encoder_dtype=torch.bfloat16)
    full = load_reenact_models([model_dir])
    assert next(mixed.e4e.module.parameters()).dtype == next(mixed.deca.module.parameters()).dtype == torch.bfloat16
    assert next(mixed.generator.module.parameters()).dtype == mixed.dtype == torch.float32
    fast, reference = prepare_source(image, mixed), prepare_source(image, full)
    assert fast.w_plus.dtype == torch.float32
    w_span = reference.w_plus.max() - reference.w_plus.min()
    assert (fast.w_plus - reference.w_plus).abs().max() <= e4e.BF16_ERROR * w_span
    code_span = reference.deca_codes.max() - reference.deca_codes.min()
    assert (fast.deca_codes - reference.deca_codes).abs().max() <= deca.BF16_ERROR * code_span
    out = drive(mixed, reference, driver, DriveOptions(batch_size=2)).crops.astype(np.float64)
    expected = drive(full, reference, driver, DriveOptions(batch_size=2)).crops.astype(np.float64)
    error = np.abs(out - expected).mean()
    assert error <= BF16_MEAN_ERROR * 255, f"bf16 encoders change the frames by {error:.2f} levels on average"
    assert np.abs(expected - expected.mean()).mean() > 4 * error, "the images are flat: the check proves little"


def test_command_line_reenacts_with_bfloat16_encoders(tmp_path, model_dir, capsys):
    videos = sorted(MEDIA.glob("*.mp4"))
    assert videos, "no test videos"
    out = tmp_path / "out.mp4"
    code = main(["reenact", "--models", str(model_dir), "--device", "cpu", "--source", str(source_photo()),
                 "--driving", str(videos[0]), "--out", str(out), "--tune-steps", "0", "--frames", "2",
                 "--dtype", "bfloat16", "--fsr", "off"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(list(VideoReader(out))) == 2
    assert ("not native" in err) != has_native_bfloat16("cpu")


@pytest.mark.slow
def test_compiled_encoders_compute_what_the_plain_ones_do(model_dir):
    problem = compile_problem("cpu")
    if problem is not None:
        pytest.skip(problem)
    image = np.array(Image.open(source_photo()).convert("RGB"))
    compiled = load_reenact_models([model_dir], compile_encoders=True)
    plain = load_reenact_models([model_dir])
    fast, reference = prepare_source(image, compiled), prepare_source(image, plain)
    for a, b in ((fast.w_plus, reference.w_plus), (fast.deca_codes, reference.deca_codes)):
        assert (a - b).abs().max() <= COMPILE_TOLERANCE * b.abs().max()
