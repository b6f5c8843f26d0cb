"""Joint training of the inversion encoder E_w and the directions A, with the cycle loss (training-and-fsr §1.5,
Stage J): a new portrait is then ready in one encoder pass, without per-source generator tuning.

One step (rank-local batch of paired frames of one video, x_s → x_t, plus x_c of another video for the cycle):
    w_s = E_w(x_s), w_t = E_w(x_t)                       no latent_avg (the official convention)
    L_inv   λ_inv_pixel·MSE + λ_inv_lpips·LPIPS + λ_inv_identity·ID of G_ψ(w) against x, for w_s and w_t
    Δp      N(p_t) − N(p_s) from the frames' stored DECA codes (as at inference)
    x_r     G_ψ(w_s ⊕_{0:L} A(Δp))
    L_reen  the paired objective of the directions trainer against x_t (shape/eye/mouth, ID, LPIPS, pixel)
    L_cyc   ``recurrent`` (StyleMask's recurrent cycle, §1.4a, with Δp re-estimated from x_r and E_w re-encoding
            it, §1.4b): x_r2 = G_ψ(w_s ⊕ A(N(p_c) − N(p_s))), x_rr = G_ψ(E_w(x_r) ⊕ A(N(p_c) − N(D3(x_r))));
            shape/eye/mouth of both against (shape of x_s, pose/expression of x_c), ID of both against x_s,
            LPIPS(x_r2, x_rr). ``back``: x_back = G_ψ(E_w(x_r) ⊕ A(N(p_s) − N(D3(x_r)))) against x_s with the
            paired objective. ``none``: no term. Weights shared with L_reen, times λ_cycle.
    L_reg   λ_delta·Σ_i ||w[:, i] − w[:, 0]||₂ (e4e's delta-norm), for w_s and w_t
G, DECA, ArcFace and LPIPS stay frozen in eval mode (gradients pass through them). E_w's BatchNorm keeps its
statistics by default (per-rank batches are small); ``batch_norm=sync`` uses SyncBatchNorm over the ranks on CUDA.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import InputError
from ..models.directions import DirectionMatrix, apply_shift
from ..params import FaceParams
from .config import DirectionsTrainConfig, check_batch_norm
from .data import PreparedFrames, _frame_tensors
from .directions import DirectionsMethod, DirectionsNetworks, Sources, ValidationPairs, _no_draws, flame_params
from .distributed import DistContext
from .losses import FlameParams, LossOptions, TrainingLosses, lpips_loss, pixel_range
from .randomness import sample_generator
from .sampling import shift_vector

CYCLES = ("none", "recurrent", "back")


@dataclass(frozen=True)
class JointTrainConfig(DirectionsTrainConfig):
    """Joint training of E_w and A on paired frames (training-and-fsr §1.5, §5 #5, #6). The directions settings
    apply to A and the reenactment terms (``lr`` and ``weight_decay`` are A's); the defaults below are the spec's
    recommended starting point, not published values (the IJCV paper's are unknown).

    Args:
        cycle: the cycle loss: ``recurrent`` (StyleMask's precedent: Δp re-estimated from the reenacted image,
            E_w re-encoding it), ``back`` (reenacted back to the source) or ``none``.
        lambda_cycle: factor on the whole cycle term.
        lambda_inv_pixel, lambda_inv_lpips, lambda_inv_identity: weights of the inversion terms MSE, LPIPS and
            ArcFace identity on G_ψ(E_w(x)) against x (e4e's terms).
        lambda_delta: weight of e4e's delta-norm regulariser Σ_i ||w_i − w_0||₂ on E_w's codes (0 = off).
        lr_encoder: E_w's learning rate after the warm-up.
        encoder_warmup_steps: steps at ``encoder_warmup_lr`` first, so the e4e initialisation is not destroyed
            (0 = off).
        encoder_warmup_lr: E_w's learning rate during the warm-up.
        weight_decay_encoder: E_w's Adam weight decay (e4e: 0).
        batch_norm: E_w's BatchNorm: ``frozen`` statistics (the e4e file's; affine parameters still train),
            ``batch`` (batch statistics per rank) or ``sync`` (SyncBatchNorm over the ranks; CUDA only, one
            process: batch).
    """

    method: str = "paired"
    disentanglement_50: bool = False
    lambda_identity: float = 1.0
    lambda_perceptual: float = 1.0
    cycle: str = "recurrent"
    lambda_cycle: float = 1.0
    lambda_inv_pixel: float = 1.0
    lambda_inv_lpips: float = 0.8
    lambda_inv_identity: float = 0.5
    lambda_delta: float = 2e-4
    lr_encoder: float = 1e-4
    encoder_warmup_steps: int = 5000
    encoder_warmup_lr: float = 1e-5
    weight_decay_encoder: float = 0.0
    batch_norm: str = "frozen"

    METHODS = ("paired",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cycle not in CYCLES:
            raise InputError(f"unknown cycle {self.cycle!r}; choose one of {', '.join(CYCLES)}")
        check_batch_norm(self.batch_norm)
        if min(self.lr_encoder, self.encoder_warmup_lr) <= 0 or self.encoder_warmup_steps < 0 or min(
                self.weight_decay_encoder, self.lambda_cycle, self.lambda_delta) < 0:
            raise InputError("encoder learning rates must be > 0, encoder_warmup_steps, weight_decay_encoder, "
                             "lambda_cycle and lambda_delta ≥ 0")

    def check_world(self, world_size: int) -> None:
        if self.batch_size % world_size:
            raise InputError(f"batch_size {self.batch_size} must be a multiple of {world_size} for {world_size} "
                             "rank(s)")

    def encoder_lr(self, step: int) -> float:
        """E_w's learning rate for optimiser step ``step`` (0-based)."""
        return self.encoder_warmup_lr if step < self.encoder_warmup_steps else self.lr_encoder


class JointModel(nn.Module):
    """The trained pair: ``encoder`` E_w (images → W+) and ``directions`` A (Δp → W+ shift).

    ``forward(fn)`` returns ``fn(self)``: the whole step runs inside one forward, so DDP sees every use of the
    parameters (E_w runs up to three times a step). With ``freeze_batchnorm`` the BatchNorm layers stay in eval
    mode whatever ``train()`` says.
    """

    def __init__(self, encoder: nn.Module, directions: DirectionMatrix, freeze_batchnorm: bool = True):
        super().__init__()
        self.encoder, self.directions, self.freeze_batchnorm = encoder, directions, freeze_batchnorm

    def train(self, mode: bool = True) -> JointModel:
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """E_w of images ``(B, 3, H, W)`` in [-1, 1], resampled to the encoder's input size → ``(B, n, D)``."""
        size = getattr(getattr(self.encoder, "config", None), "input_size", images.shape[-1])
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > size)
        return self.encoder(images)

    def forward(self, fn: Callable[[JointModel], object]):
        return fn(self)


@dataclass
class JointNetworks:
    """The frozen networks of a joint run (:class:`DirectionsNetworks`) and E_w's initial module and file."""

    frozen: DirectionsNetworks
    encoder: nn.Module
    encoder_file: Path | None = None


class JointFrames(PreparedFrames):
    """Paired frames (``source_*``, ``target_*``) and, with ``cycle=True``, ``cycle_*``: a frame of another
    video (of the same one when there is only one), drawn from (seed, epoch, index)."""

    def __init__(self, root, w_shape, image_size: int, seed: int, cycle: bool):
        super().__init__(root, w_shape, image_size, pairs=True, seed=seed)
        self.cycle = cycle

    def __getitem__(self, key):
        item = super().__getitem__(key)
        if not self.cycle:
            return item
        epoch, i = key
        first, count = self.video_of[i]
        others = len(self.frames) - count
        g = sample_generator(self.seed, epoch, i, "cycle_target")
        if others:
            j = int(torch.randint(others, (), generator=g))
            j += count if j >= first else 0
        else:
            j = int(torch.randint(len(self.frames), (), generator=g))
        cycle = _frame_tensors(self.frames[j], self.w_shape, self.size)
        return {**item, **{f"cycle_{k}": v for k, v in cycle.items()}}


class JointValidationPairs(ValidationPairs):
    """The directions trainer's fixed validation pairs, with the source code from E_w (not the stored W+)."""

    def _load(self, method: JointMethod, items: list) -> Sources:
        loaded = super()._load(method, items)
        return replace(loaded, w_plus=method.model.encode(loaded.images))


class JointMethod(DirectionsMethod):
    """The ``TrainingMethod`` of E_w and A (see :mod:`reenact_core.training.loop`)."""

    def __init__(self, config: JointTrainConfig, nets: JointNetworks, ctx: DistContext):
        super().__init__(config, nets.frozen, ctx)
        g = nets.frozen.generator.config
        self.joint = nets
        encoder = nets.encoder
        if check_batch_norm(config.batch_norm, distributed=ctx.initialised, device_type=ctx.device.type):
            encoder = nn.SyncBatchNorm.convert_sync_batchnorm(encoder)
        self.model = JointModel(encoder, self.directions, config.batch_norm == "frozen")
        self.name = f"joint (cycle {config.cycle})"
        self.frames = JointFrames(config.data, (g.n_latent, g.style_dim), g.size, config.seed,
                                  cycle=config.cycle == "recurrent")
        self.validation = JointValidationPairs.build(config, g, ctx)
        criteria = nets.frozen.criteria
        # The recurrent cycle's shape and identity terms against the source (LPIPS is taken between its two images).
        self.cycle_criteria = TrainingLosses(
            criteria.flame.network, None if criteria.identity is None else criteria.identity.arcface.network, None,
            LossOptions(criteria.options.weights, legacy_255=config.legacy_255)
            .with_weights(lpips=0.0, pixel=0.0)).to(ctx.device)

    # TrainingMethod -------------------------------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        return self.model

    def weight_files(self) -> dict[str, Path]:
        files = dict(super().weight_files())
        if self.joint.encoder_file is not None:
            files["encoder"] = self.joint.encoder_file
        return files

    def param_groups(self, module: JointModel) -> list[dict]:
        c = self.config
        return [{"params": list(module.directions.parameters()), "lr": c.lr, "weight_decay": c.weight_decay},
                {"params": list(module.encoder.parameters()), "lr": c.encoder_lr(0),
                 "weight_decay": c.weight_decay_encoder}]

    def learning_rates(self, step: int) -> list[float]:
        return [self.config.lr, self.config.encoder_lr(step)]

    def loss(self, model: nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return model(lambda net: self.objective(net, batch))

    # the step ---------------------------------------------------------------------------------------------------
    def objective(self, net: JointModel, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss of this rank's batch and its terms (see the module docstring)."""
        c, dev = self.config, self.device
        x_s, x_t = batch["source_image"].to(dev), batch["target_image"].to(dev)
        codes_s, codes_t = batch["source_codes"].to(dev), batch["target_codes"].to(dev)
        w_s, w_t = net.encode(x_s), net.encode(x_t)
        terms = self._inversion(torch.cat([w_s, w_t]), torch.cat([x_s, x_t]))
        total = (c.lambda_inv_pixel * terms["inv_pixel"] + c.lambda_delta * terms["delta"]
                 + sum(getattr(c, f"lambda_inv_{n}") * terms[f"inv_{n}"] for n in ("lpips", "identity")
                       if f"inv_{n}" in terms))
        w_r = apply_shift(w_s, net.directions(self._delta(codes_s, codes_t)))
        x_r = self._render(w_r)
        with torch.no_grad():
            truth_t, truth_s = (flame_params(self.nets.measure(x)) for x in (x_t, x_s))
        measured_r = self.nets.measure(x_r)
        reenact = self.nets.criteria(x_r, x_t, truth_t, flame_params(measured_r))
        total = total + reenact.pop("total")
        terms.update(reenact)
        if c.lambda_w_reg:
            terms["w_reg"] = (w_r - batch["target_w_plus"].to(dev)).abs().mean()
            total = total + c.lambda_w_reg * terms["w_reg"]
        if c.cycle != "none":
            w_rr = net.encode(x_r)
            if c.cycle == "recurrent":
                codes_c = batch["cycle_codes"].to(dev)
                with torch.no_grad():
                    truth_c = flame_params(self.nets.measure(batch["cycle_image"].to(dev)))
                x_r2 = self._render(apply_shift(w_s, net.directions(self._delta(codes_s, codes_c))))
                x_rr = self._render(apply_shift(w_rr, net.directions(self._delta(measured_r, codes_c))))
                truth = FlameParams(truth_s.shape, truth_c.exp, truth_c.pose)
                cycle = sum(self.cycle_criteria(x, x_s, truth, flame_params(self.nets.measure(x)))["total"]
                            for x in (x_r2, x_rr))
                if self.nets.criteria.lpips is not None:
                    cycle = cycle + self.nets.criteria.options.weights.lpips * lpips_loss(
                        self.nets.criteria.lpips, x_r2, x_rr, c.legacy_255)
            else:
                x_back = self._render(apply_shift(w_rr, net.directions(self._delta(measured_r, codes_s))))
                cycle = self.nets.criteria(x_back, x_s, truth_s, flame_params(self.nets.measure(x_back)))["total"]
            terms["cycle"] = cycle
            total = total + c.lambda_cycle * cycle
        return total, terms

    def _delta(self, codes_from: torch.Tensor, codes_to: torch.Tensor) -> torch.Tensor:
        """Δp (B, 15) from one set of DECA codes (B, 236) to another (A's normaliser, all 15 coordinates)."""
        a, b = FaceParams.from_deca(codes_from), FaceParams.from_deca(codes_to)
        return shift_vector(a, b, _no_draws(len(codes_from)).to(codes_from.device), normaliser=self.normaliser)

    def _inversion(self, w_plus: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """e4e's terms of G_ψ(w_plus) against ``images`` and the delta-norm of ``w_plus``."""
        criteria, legacy = self.nets.criteria, self.config.legacy_255
        x_hat = self._render(w_plus)
        terms = {"inv_pixel": F.mse_loss(pixel_range(x_hat, legacy), pixel_range(images, legacy)),
                 "delta": (w_plus[:, 1:] - w_plus[:, :1]).norm(dim=-1).sum(1).mean()}
        if criteria.lpips is not None:
            terms["inv_lpips"] = lpips_loss(criteria.lpips, x_hat, images, legacy)
        if criteria.identity is not None:
            terms["inv_identity"] = criteria.identity(x_hat, images).mean()
        return terms
