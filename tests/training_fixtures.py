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


def make_method(kind: str, overrides: dict, ctx: DistContext, folder: Path):
    """A training method by name, for in-process and torchrun (``ddp_worker.py``) runs alike."""
    if kind == "toy":
        config = TrainConfig(**{"batch_size": 4, "max_iter": 3, "lr": 0.05, "weight_decay": 0.0, "eval_every": 1000,
                                "save_every": 1000, "num_workers": 0, **overrides})
        return ToyMethod(config, ctx)
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
