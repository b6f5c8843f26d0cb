"""A minimal training method for testing the generic loop: least squares on data drawn from (seed, epoch, index)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from reenact_core.training.config import TrainConfig
from reenact_core.training.data import epoch_loader
from reenact_core.training.distributed import DistContext
from reenact_core.training.loop import Validation
from reenact_core.training.randomness import sample_generator

IN, OUT = 5, 3


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
