"""The generic training loop shared by every trainer; a method object supplies the model, data and loss.

The loop owns what must be identical everywhere: Adam, DDP wrapping, the step/epoch bookkeeping that makes
``--resume`` continue bit for bit (mid-epoch: the sampler skips the batches already done), periodic and best
checkpoints (rank 0 writes, then a barrier), validation cadence, logs, and Ctrl-C (every rank saves the same
state and stops).
"""
from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import InputError
from ..signals import handle
from .checkpoint import load_training_checkpoint, rng_states, save_checkpoint, set_rng_states
from .config import TrainConfig, write_config_file
from .distributed import DistContext, any_rank, reduce_mean
from .logs import TrainLogger

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"


@dataclass
class Validation:
    """Validation results: ``metrics`` logged as is; ``score`` ranks checkpoints (higher is better);
    ``images`` columns (each (B, 3, H, W) in [-1, 1]) for a TensorBoard grid."""

    metrics: dict[str, float]
    score: tuple[float, ...]
    images: list[torch.Tensor] = field(default_factory=list)


class TrainingMethod(Protocol):
    """What a trainer supplies to :func:`train`."""

    name: str
    config: TrainConfig

    def trainable(self) -> nn.Module:
        """The module whose parameters are optimised (wrapped in DDP by the loop)."""

    def batches(self, epoch: int, skip: int) -> Iterable[Any]:
        """This rank's batches of ``epoch`` after the first ``skip``; the epoch ends when they run out."""

    def loss(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss of this rank's batch (a mean over its samples) and the terms to log."""

    def validate(self, step: int) -> Validation:
        """Metrics over the fixed validation set (every rank calls it; it must return the same on each)."""

    def weight_files(self) -> dict[str, Path]:
        """Role → path of every weight file used, hashed into the saved config."""

    # Optional: ``param_groups(module) -> list[dict]`` (Adam parameter groups with their own ``lr`` and
    # ``weight_decay``; default one group with the config's) and ``learning_rates(step) -> list[float]`` (each
    # group's learning rate for the step about to be taken, a pure function of the step so resume stays exact).


@dataclass
class TrainResult:
    step: int
    epoch: int
    interrupted: bool
    last_losses: dict[str, float]
    best_score: tuple[float, ...] | None
    checkpoint: Path | None


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop stops after the current step on every rank."""

    def __init__(self):
        self.raised = False
        self._restores = []

    def __enter__(self):   # outside the main thread the default handlers stay
        self._restores = [handle(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)]
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        for restore in self._restores:
            restore()


def train(method: TrainingMethod, out_dir: str | Path, ctx: DistContext, resume: str | Path | None = None,
          progress: bool = True) -> TrainResult:
    """Runs ``method`` until ``config.max_iter`` steps or Ctrl-C, writing under ``out_dir`` (rank 0 only):
    ``train-config.json``, ``checkpoints/step-*.pt`` (last ``keep_last``) and ``best.pt``, ``logs/``.

    ``resume``: a checkpoint file or a checkpoint folder (its latest); InputError if its config differs in a
    setting that may not change (see ``TrainConfig.RESUMABLE_CHANGES``). ``progress``: show the bar and the
    validation lines (the logs are written either way).
    """
    config = method.config
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    module = method.trainable().to(ctx.device)
    groups = method.param_groups(module) if hasattr(method, "param_groups") else module.parameters()
    optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    step = epoch = done_in_epoch = 0
    best: tuple[float, ...] | None = None
    if resume is not None:
        state = load_training_checkpoint(resume)
        saved = state["config"]
        conflicts = ", ".join(f"{k}={saved.get(k)!r}" for k in config.resume_conflicts(saved))
        if conflicts:
            raise InputError(f"cannot resume {resume}: it was trained with other settings ({conflicts})")
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, done_in_epoch = state["step"], state["epoch"], state["done_in_epoch"]
        best = tuple(state["best_score"]) if state.get("best_score") is not None else None
        set_rng_states(state["rng"])
    if ctx.is_main:
        write_config_file(out_dir, config, method.weight_files())
    model: nn.Module = module
    if ctx.initialised:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    logger = TrainLogger(out_dir / LOG_DIR, config.max_iter, step, ctx.is_main, f"train {method.name}", progress)

    def checkpoint(is_best: bool) -> Path | None:
        path = None
        if ctx.is_main:
            path = save_checkpoint(ckpt_dir, {
                "step": step, "epoch": epoch, "done_in_epoch": done_in_epoch, "model": module.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": rng_states(), "config": config.to_dict(),
                "best_score": list(best) if best is not None else None}, config.keep_last, is_best)
        ctx.barrier()
        return path

    losses: dict[str, float] = {}
    last_path, interrupted = None, False
    try:
        with _StopFlag() as stop:
            while step < config.max_iter and not interrupted:
                ran = 0
                for batch in method.batches(epoch, done_in_epoch):
                    ran += 1
                    module.train()
                    loss, terms = method.loss(model, batch, step)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if hasattr(method, "learning_rates"):
                        for group, lr in zip(optimizer.param_groups, method.learning_rates(step)):
                            group["lr"] = lr
                    optimizer.step()
                    step += 1
                    done_in_epoch += 1
                    losses = reduce_mean({"loss": loss, **terms}, ctx)
                    logger.step(step, losses["loss"])
                    if step % config.log_every == 0:
                        logger.scalars(step, "train", losses)
                    saved = False
                    if step % config.eval_every == 0 or step == config.max_iter:
                        improved = _validate(method, module, step, logger, best)
                        if improved is not None:
                            best = improved
                            last_path, saved = checkpoint(True), True
                    if not saved and (step % config.save_every == 0 or step == config.max_iter):
                        last_path, saved = checkpoint(False), True
                    interrupted = any_rank(stop.raised, ctx)
                    if interrupted:
                        if not saved:
                            last_path = checkpoint(False)
                        logger.message(f"interrupted: saved step {step} to {ckpt_dir}; continue with --resume")
                    if interrupted or step >= config.max_iter:
                        break
                else:
                    if ran == 0 and done_in_epoch == 0:
                        raise InputError(f"the training data gives no batch of {config.batch_size} "
                                         f"samples over {ctx.world_size} rank(s): add data or lower batch_size")
                    epoch, done_in_epoch = epoch + 1, 0
    finally:
        logger.close()
    return TrainResult(step, epoch, interrupted, losses, best, last_path)


def _validate(method: TrainingMethod, module: nn.Module, step: int, logger: TrainLogger,
              best: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """Runs validation, logs it, and returns the new best score if it improved (else None)."""
    module.eval()
    with torch.no_grad():
        result = method.validate(step)
    module.train()
    logger.scalars(step, "validation", result.metrics)
    if result.images:
        logger.images(step, "validation/source_target_reenacted", result.images)
    logger.message(f"step {step} validation: " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()))
    return result.score if best is None or result.score > best else None
