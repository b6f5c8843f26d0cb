"""A minimal training method for testing the generic loop: least squares on data drawn from (seed, epoch, index)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from reenact_core.training.config import TrainConfig
from reenact_core.training.data import epoch_loader
from reenact_core.training.distributed import DistContext
from reenact_core.training.loop import Validation
from reenact_core.training.randomness import sample_generator

IN, OUT = 5, 3


@pytest.fixture(autouse=True)
def one_thread():
    """Training tests run on one thread (where imported: an autouse fixture of the importing module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class PlantedPairs(Dataset):
    """Sample i of epoch e: x ~ N(0, I) drawn from (seed, e, i), y = W* x."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self.w_star = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(1234))

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        epoch, index = key
        x = torch.randn(IN, generator=sample_generator(self.seed, epoch, index, "pair_target"))
        return x, self.w_star @ x


@dataclass
class ToyMethod:
    config: TrainConfig
    ctx: DistContext
    size: int = 24
    name: str = "toy"

    def __post_init__(self):
        torch.manual_seed(0)
        self.model = nn.Linear(IN, OUT)
        self.data = PlantedPairs(self.size, self.config.seed)

    def trainable(self):
        return self.model

    def batches(self, epoch, skip):
        return epoch_loader(self.data, self.ctx, self.config.seed, epoch, skip,
                            self.config.batch_size // self.ctx.world_size, self.config.num_workers)

    def loss(self, model, batch, step):
        x, y = batch
        err = (model(x) - y).square().mean()
        return err, {"mse": err}

    def validate(self, step):
        w = self.model.weight.detach()
        dist = float((w - self.data.w_star).norm())
        return Validation({"distance": dist}, (-dist,))

    def weight_files(self):
        return {}


def state_of(path: Path) -> dict:
    from reenact_core.training.checkpoint import load_training_checkpoint
    return load_training_checkpoint(path)


class InterruptedOnRank1(ToyMethod):
    """Ctrl-C reaches rank 1 only, during step 2."""

    def loss(self, model, batch, step):
        if step == 2 and self.ctx.rank == 1:
            import signal
            signal.raise_signal(signal.SIGINT)
        return super().loss(model, batch, step)


def assert_same_state(first: Path, second: Path, step: int) -> None:
    """The latest checkpoints of two runs (folders) are at ``step`` and equal: epoch, model and Adam's state."""
    from reenact_core.training.checkpoint import load_training_checkpoint

    a, b = load_training_checkpoint(first), load_training_checkpoint(second)
    assert a["step"] == b["step"] == step and a["epoch"] == b["epoch"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for p, q in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(p[k], q[k]) for k in p)


def make_method(kind: str, overrides: dict, ctx: DistContext):
    """A training method by name, for in-process and torchrun (``ddp_worker.py``) runs alike."""
    if kind == "toy":
        config = TrainConfig(**{"batch_size": 4, "max_iter": 3, "lr": 0.05, "weight_decay": 0.0, "eval_every": 1000,
                                "save_every": 1000, "num_workers": 0, **overrides})
        return ToyMethod(config, ctx)
    if kind == "toy_interrupted_on_rank_1":
        config = TrainConfig(**{"batch_size": 4, "max_iter": 6, "lr": 0.05, "weight_decay": 0.0, "eval_every": 1000,
                                "save_every": 1000, "num_workers": 0, **overrides})
        return InterruptedOnRank1(config, ctx)
    if kind == "directions":
        from reenact_core.training.config import DirectionsTrainConfig
        from reenact_core.training.directions import DirectionsMethod
        from reenact_core.training.networks import tiny_networks

        config = DirectionsTrainConfig(**{"batch_size": 4, "max_iter": 3, "eval_every": 1000, "save_every": 1000,
                                          "validation_samples": 2, "num_workers": 0, **overrides})
        return DirectionsMethod(config, tiny_networks(config), ctx)
    if kind == "fsr":
        return fsr_method(overrides, ctx)
    if kind == "joint":
        from reenact_core.training.joint import JointMethod, JointTrainConfig
        from reenact_core.training.joint_run import tiny_joint_networks

        config = JointTrainConfig(**{"batch_size": 4, "max_iter": 3, "eval_every": 1000, "save_every": 1000,
                                     "validation_samples": 2, "num_workers": 0, **overrides})
        return JointMethod(config, tiny_joint_networks(config), ctx)
    raise ValueError(kind)


def run_torchrun(kind: str, overrides: dict, folder: Path, nproc: int) -> dict:
    """Runs ``ddp_worker.py`` under torchrun with ``nproc`` CPU processes; returns its saved result."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).with_name("ddp_worker.py")), kind, str(folder), json.dumps(overrides)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(folder / "result.pt", weights_only=True)


def assert_ddp_equals_one_process(kind: str, settings: dict, single, folder: Path, rel_tol: float) -> None:
    """Two torchrun ranks of half the batch each take the optimiser steps that ``single`` (the same method in one
    process, not yet trained) takes on the whole batch: the ranks' parameters agree, some tensor moves, and every
    trained tensor's update matches within ``rel_tol`` of its norm."""
    from reenact_core.training.loop import train

    ddp = run_torchrun(kind, settings, folder / "ddp", 2)
    start = {k: v.clone() for k, v in single.trainable().state_dict().items()}
    train(single, folder / "one", DistContext())
    assert ddp["agree"]
    moved = 0
    for k, v in single.trainable().state_dict().items():
        if not v.is_floating_point():
            continue
        step_one, step_ddp = v - start[k], ddp["params"][k] - start[k]
        moved += float(step_one.abs().max()) > 0
        assert float((step_ddp - step_one).norm()) <= rel_tol * max(float(step_one.norm()), 1e-12), k
    assert moved > 0


def planted_tree(root: Path, nets, a_star: torch.Tensor, videos: int, frames: int, config,
                 seed: int = 0) -> Path:
    """A prepared tree whose frames obey a known A* (weight ``a_star`` (L·D, 15), no bias): frame f of a video is
    ``G_ψ(w_0 ⊕ A*·n(p_f))`` with random DECA codes p_f stored, so for every pair (a, b) of a video
    ``w_b = w_a ⊕ A*·(n(p_b) − n(p_a))`` and training on pairs can recover A*."""
    from reenact_core.models.deca import CODE_SLICES, N_CODES
    from reenact_core.models.directions import apply_shift
    from reenact_core.params import FaceParams, normalise
    from reenact_core.training.tiny import write_rendered_video

    g = torch.Generator().manual_seed(seed)
    gen = nets.generator
    n, d = gen.config.n_latent, gen.config.style_dim
    rows = a_star.shape[0] // d
    for v in range(videos):
        with torch.no_grad():
            w0 = gen.mapping(torch.randn(1, d, generator=g)).expand(n, -1)
        codes = torch.zeros(frames, N_CODES)
        codes[:, CODE_SLICES["shape"]] = torch.randn(1, 100, generator=g)
        codes[:, CODE_SLICES["exp"]] = torch.randn(frames, 50, generator=g) * 0.4
        codes[:, CODE_SLICES["pose"]] = torch.randn(frames, 6, generator=g) * torch.tensor([.12, .2, .05, .06, 0, 0])
        codes[:, CODE_SLICES["pose"].start + 3] = codes[:, CODE_SLICES["pose"].start + 3].abs()
        p = FaceParams.from_pose_exp(codes[:, CODE_SLICES["pose"]], codes[:, CODE_SLICES["exp"]])
        shift = (normalise(p, normaliser=config.normaliser) @ a_star.T).view(frames, rows, d)
        w = apply_shift(w0.expand(frames, -1, -1), shift)
        write_rendered_video(root, f"id{v:02d}", "video", gen, nets.mean_latent, w, codes, config.truncation)
    return root


class LinearGenerator(nn.Module):
    """A generator that is linear in W+ (``x = U·vec(w̄ + ψ(w − w̄))``), with StyleGAN2's interface: a planted
    A* is then exactly identifiable, which a random tiny StyleGAN2's weak rows do not allow in a few steps."""

    def __init__(self, size: int = 32, n_latent: int = 10, style_dim: int = 8, seed: int = 0):
        super().__init__()
        from types import SimpleNamespace

        g = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(size=size, n_latent=n_latent, style_dim=style_dim)
        self.register_buffer("decoder", torch.randn(3 * size * size, n_latent * style_dim, generator=g)
                             / (n_latent * style_dim) ** 0.5 * 0.3)
        self.register_buffer("map", torch.randn(style_dim, style_dim, generator=g) / style_dim ** 0.5)

    def mapping(self, z):
        return z @ self.map.T

    def mean_latent(self, n: int = 512, seed: int = 0):
        return torch.zeros(1, self.config.style_dim)

    def synthesize(self, w_plus, truncation=1.0, truncation_latent=None, **_):
        from types import SimpleNamespace

        w = truncation_latent + truncation * (w_plus - truncation_latent)
        image = (w.flatten(1) @ self.decoder.T).view(-1, 3, self.config.size, self.config.size)
        return SimpleNamespace(image=image)


def linear_networks(config, seed: int = 0):
    """``tiny_networks`` with :class:`LinearGenerator` as G."""
    from dataclasses import replace

    from reenact_core.training.networks import tiny_networks

    g = LinearGenerator(seed=seed)
    return replace(tiny_networks(config, seed), generator=g, mean_latent=g.mean_latent())


def tiny_model_files(folder: Path, config) -> Path:
    """The files ``train directions`` reads, holding the networks of ``tiny_networks(config)`` (random weights):
    a 64-px, 10-row StyleGAN2 (not the canonical name: pass it with --generator), DECA, FLAME, ArcFace, LPIPS."""
    from reenact_core.models.arcface import ArcFaceConfig
    from reenact_core.models.deca import DecaConfig
    from reenact_core.models.flame import FlameConfig
    from reenact_core.training.networks import tiny_networks
    from reenact_core.training.tiny import TINY_ARCFACE, TINY_DECA, TINY_FLAME
    from reenact_core.weights import KINDS, save_model
    from reenact_core.weights.store import MEAN_LATENT_KEY

    nets = tiny_networks(config)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"random_weights": "true"}
    g = nets.generator
    save_model(folder / "stylegan2-tiny-64.safetensors", "stylegan2", g.config, g.state_dict(),
               extra_tensors={MEAN_LATENT_KEY: nets.mean_latent}, metadata=meta)
    save_model(folder / KINDS["deca"].canonical_file, "deca", DecaConfig.from_dict(TINY_DECA), nets.measure.deca.state_dict(),
               metadata=meta)
    crit = nets.criteria
    save_model(folder / KINDS["flame"].canonical_file, "flame", FlameConfig.from_dict(TINY_FLAME),
               crit.flame.network.state_dict(), metadata=meta)
    save_model(folder / KINDS["arcface"].canonical_file, "arcface", ArcFaceConfig.from_dict(TINY_ARCFACE),
               crit.identity.arcface.network.state_dict(), metadata=meta)
    save_model(folder / KINDS["lpips"].canonical_file, "lpips", crit.lpips.network.config,
               crit.lpips.network.state_dict(), metadata=meta)
    return folder / "stylegan2-tiny-64.safetensors"


class ShiftedGenerator:
    """A generator whose renders add a fixed Δf* to StyledConv ``index``'s output (a planted refinement); every
    other attribute is the wrapped generator's."""

    def __init__(self, generator, index: int, shift: torch.Tensor):
        self.generator, self.index, self.shift = generator, index, shift

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def synthesize(self, w_plus, **kwargs):
        return self.generator.synthesize(w_plus, feature_shifts={self.index: self.shift}, **kwargs)


def fsr_tree(root: Path, generator, mean_latent, directions, layer: int, shift: torch.Tensor, videos: int,
             frames: int, truncation: float = 0.7, seed: int = 0) -> Path:
    """A prepared tree for FSR training whose frames are ``G_ψ(w_f; f_k + Δf*)`` (k = ``layer``, FSE count) with the
    W+ codes of :func:`planted_tree` for A = ``directions`` (no bias): for every pair of a video, the reenacted
    code w_s ⊕ A(Δp) is the target's, so the target is exactly the coarse reenactment refined by Δf*."""
    from types import SimpleNamespace

    from reenact_core.training.config import DirectionsTrainConfig

    assert directions.linear.bias is None, "the planted tree needs an A without bias"
    nets = SimpleNamespace(generator=ShiftedGenerator(generator, layer - 1, shift), mean_latent=mean_latent)
    config = DirectionsTrainConfig(num_layers_shift=directions.config.num_layers, truncation=truncation)
    return planted_tree(root, nets, directions.linear.weight.detach(), videos, frames, config, seed)


def fsr_config(overrides: dict):
    """A tiny FSR training config (E_F of the tiny model set at 64 px) with ``overrides``."""
    from reenact_core.training.fsr import FSRTrainConfig
    from reenact_core.training.fsr_run import TINY_REFINER

    return FSRTrainConfig(**{"batch_size": 4, "max_iter": 3, "eval_every": 1000, "save_every": 1000,
                             "validation_samples": 2, "num_workers": 0, "lpips_scales": 2, "input_size": 64,
                             **TINY_REFINER, **overrides})


def fsr_networks(config, seed: int = 0):
    """``tiny_fsr_networks`` (64-px G) with an A without bias."""
    from reenact_core.training.config import DirectionsTrainConfig
    from reenact_core.training.directions import init_directions
    from reenact_core.training.fsr_run import tiny_fsr_networks

    nets = tiny_fsr_networks(config, seed)
    nets.directions = init_directions(DirectionsTrainConfig(bias=False, seed=seed), nets.generator.config.style_dim)
    return nets


def fsr_method(overrides: dict, ctx: DistContext, seed: int = 0):
    """An FSR training method on :func:`fsr_networks` for the prepared tree ``overrides['data']``."""
    from reenact_core.training.fsr import FSRMethod

    config = fsr_config(overrides)
    return FSRMethod(config, fsr_networks(config, seed), ctx)


def train_fsr_with_cli(models: Path, work: Path, steps: int = 3) -> Path:
    """Trains a tiny E_F with ``python -m reenact_core train fsr`` for the canonical generator and A of the model
    folder ``models`` (ArcFace and LPIPS with random weights in ``work/extra``) on a prepared tree whose frames a
    planted Δf* refines; returns the exported file."""
    from reenact_core.cli import main
    from reenact_core.models.fsr import DEFAULT_LAYER, FSRConfig
    from reenact_core.training.config import DirectionsTrainConfig
    from reenact_core.training.directions import init_directions
    from reenact_core.training.fsr_run import TINY_REFINER
    from reenact_core.weights import find_model_file, load_model, make_tiny_model_set

    make_tiny_model_set(work / "extra", kinds=["arcface", "lpips"])
    g = load_model(find_model_file("stylegan2", [models]), "stylegan2")
    k = FSRConfig.for_generator(g.config, DEFAULT_LAYER)
    shift = torch.randn(k.feature_channels, 1, 1, generator=torch.Generator().manual_seed(3))
    a = init_directions(DirectionsTrainConfig(bias=False), g.config.style_dim)
    fsr_tree(work / "data", g.module, g.mean_latent, a, k.layer, shift, videos=2, frames=2)
    options = {"data": work / "data", "out": work / "run", "name": "trained", "device": "cpu", "batch-size": 2,
               "max-iter": steps, "eval-every": steps, "validation-samples": 2, "num-workers": 0, "warmup": 0,
               "lr": 0.05, **{key.replace("_", "-"): ",".join(map(str, v)) if isinstance(v, tuple) else v
                              for key, v in TINY_REFINER.items()}}
    args = ["train", "fsr", "--models", str(models), "--models", str(work / "extra")]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    assert main(args) == 0
    return work / "run" / "export" / "fsr-trained.safetensors"


def train_directions_with_cli(models: Path, work: Path, steps: int = 2) -> Path:
    """Trains A with ``python -m reenact_core train directions`` (synthetic method, a few steps) for the canonical
    generator of the model folder ``models`` (ArcFace, LPIPS and FLAME with random weights in ``work/extra``;
    FLAME a small mesh with DECA's shape and expression sizes); returns the exported file."""
    from reenact_core.cli import main
    from reenact_core.models.flame import FlameConfig
    from reenact_core.training.tiny import TINY_FLAME
    from reenact_core.weights import KINDS, make_random_checkpoint, make_tiny_model_set

    make_tiny_model_set(work / "extra", kinds=["arcface", "lpips"])
    make_random_checkpoint("flame", FlameConfig.from_dict(TINY_FLAME), work / "extra" / KINDS["flame"].canonical_file)
    assert main(["train", "directions", "--models", str(models), "--models", str(work / "extra"),
                 "--out", str(work / "run"), "--name", "trained", "--device", "cpu", "--method", "synthetic",
                 "--batch-size", "2", "--max-iter", str(steps), "--eval-every", str(steps),
                 "--validation-samples", "2", "--num-workers", "0"]) == 0
    return work / "run" / "export" / "directions-trained.safetensors"


def with_metadata(path: Path, **metadata) -> None:
    """Adds ``metadata`` to a safetensors file's header, in place."""
    from reenact_core.files import read_safetensors, write_safetensors

    tensors, meta = read_safetensors(path)
    write_safetensors(path, tensors, {**meta, **metadata})


class LinearEncoder(nn.Module):
    """An encoder that is linear in the image (``vec(w) = M·vec(x)``), of the images' W+ shape."""

    def __init__(self, weight: torch.Tensor, n_latent: int, style_dim: int):
        super().__init__()
        self.n_latent, self.style_dim = n_latent, style_dim
        self.weight = nn.Parameter(weight.clone())

    def forward(self, images):
        return (images.flatten(1) @ self.weight.T).view(-1, self.n_latent, self.style_dim)


def inverse_encoder(generator: LinearGenerator, truncation: float) -> torch.Tensor:
    """The weight of the exact inverse of ``generator`` under ``truncation`` (its mean latent is 0):
    ``vec(w) = U⁺·x / ψ``."""
    return torch.linalg.pinv(generator.decoder) / truncation


def joint_tree(root: Path, nets, videos: int = 2, frames: int = 4) -> Path:
    """The self-check's small prepared tree (random W+ shifts per frame, measured DECA codes) for ``nets``."""
    from reenact_core.training.selfcheck import _write_data

    _write_data(root, nets, 0.7)
    return root
