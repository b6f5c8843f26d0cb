"""Training the refinement encoder E_F (training-and-fsr §1.5 Stage F, §5 #2–#4): G, E_w and A frozen.

One step (rank-local batch of prepared pairs, global sample indices ``idx``):
    pairs    x_s, w_s = E_w(x_s) (stored by ``dataset prepare``), DECA codes p_s; x_t, p_t another frame of the
             video. A share ``self_fraction`` of the samples, drawn per sample from (seed, step, index), are
             self-reconstructions: target = source, Δp = 0.
    coarse   w_r = w_s ⊕ A(Δp), Δp = n(p_t) − n(p_s); G_ψ(w_s) and G_ψ(w_r) without gradients, the latter kept
             at feature k
    refined  Δf_k = E_F(cat[x_s, x_s − G_ψ(w_s), G_ψ(w_r)]); x_F = G_ψ(w_r; f_k ← f_k + α·Δf_k), continued from
             the coarse pass's state at k; α = min(1, step / warmup) (FSE's feature warm-up; 1 without one)
    loss     λ_pixel·MSE (optionally weighted toward hair and background, outside the aligned crop's face
             ellipse) + λ_lpips·multi-scale LPIPS (FSE: 3 levels, each half the side) + λ_id·(1 − cos ArcFace)
             against x_t, + λ_Δ·mean(Δf_k²) (FSE's feature term, weight 0.01).
Defaults are FeatureStyleEncoder's weights (``configs/001.yaml``: l2 1, lpips 0.2, id 0.1, f_recon 0.01) and
learning rate (1e-4), without weight decay; every other choice is the spec's recommendation, not the paper's
(its values are not published).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.deca import split_codes
from ..models.directions import DirectionMatrix, apply_shift
from ..models.fsr import DEFAULT_LAYER, FeatureRefiner, FSRConfig, refiner_input, source_context
from ..models.stylegan2 import Generator
from ..params import FaceParams, delta_p
from .config import TrainConfig, check_batch_norm
from .data import PreparedFrames, epoch_loader
from .directions import ValidationPairs, identity_measure
from .distributed import DistContext, reduce_sum
from .loop import Validation
from .losses import ID_CROP_COLS, ID_CROP_ROWS, ID_CROP_SIZE, IdentityLoss, lpips_loss
from .randomness import sample_generator

LPIPS_MIN_SIDE = 32             # AlexNet-LPIPS needs images of at least 32 px
FACE_EDGE = 0.1                 # width of the face ellipse's soft edge, in units of its radii


@dataclass(frozen=True)
class FSRTrainConfig(TrainConfig):
    """Training of E_F (module docstring). Architecture fields are :class:`reenact_core.models.fsr.FSRConfig`'s.

    Args:
        fsr_layer: feature index k that E_F shifts (FeatureStyleEncoder's count, ``conv1`` = 1; 4 is 16²×512 at
            256 px).
        input_size: side of E_F's input images (the 256-px crops).
        widths: channels of E_F's three trunk stages (IR-SE-50: 64, 128, 256).
        units: IR-SE units per trunk stage (IR-SE-50: 3, 4, 14).
        se_reduction: channel reduction of E_F's squeeze-excitation gates.
        head_width: channels inside E_F's head (FSE: 512).
        warmup: W of the warm-up α = min(1, step / W) that scales Δf_k while training; 0 turns it off (α = 1).
        self_fraction: expected share of samples that reconstruct their source (target = source, Δp = 0).
        batch_norm: ``frozen`` (E_F's running statistics stay fixed, its affine parameters train), ``batch``
            (batch statistics per rank) or ``sync`` (SyncBatchNorm over the ranks; CUDA only, one process: batch).
        truncation: ψ toward the generator's mean latent.
        lambda_pixel: weight of the (weighted) pixel MSE.
        lambda_perceptual: weight of the multi-scale LPIPS (a sum over the levels).
        lambda_identity: weight of the ArcFace identity loss (0: no ArcFace file needed).
        lambda_delta: weight of mean(Δf_k²).
        lpips_scales: LPIPS levels, each at half the side of the previous (FSE: 3); the last must be ≥ 32 px.
        background_weight: pixel-loss weight outside the face ellipse of the aligned crop, relative to 1 inside
            (1: uniform); the weights are normalised to mean 1.
        data: prepared training data folder (``dataset prepare``, with the E_w of the run).
        validation_data: prepared folder of validation frames (default: ``data``).
    """

    batch_size: int = 8
    weight_decay: float = 0.0
    fsr_layer: int = DEFAULT_LAYER
    input_size: int = FSRConfig.input_size
    widths: tuple = FSRConfig.widths
    units: tuple = FSRConfig.units
    se_reduction: int = FSRConfig.se_reduction
    head_width: int = FSRConfig.head_width
    warmup: int = 10_000
    self_fraction: float = 0.25
    batch_norm: str = "frozen"
    truncation: float = 0.7
    lambda_pixel: float = 1.0
    lambda_perceptual: float = 0.2
    lambda_identity: float = 0.1
    lambda_delta: float = 0.01
    lpips_scales: int = 3
    background_weight: float = 1.0
    data: str = ""
    validation_data: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_batch_norm(self.batch_norm)
        if not (0 <= self.self_fraction <= 1 and 0 < self.truncation <= 1 and self.warmup >= 0
                and self.lpips_scales >= 1 and self.background_weight > 0):
            raise InputError("need 0 ≤ self_fraction ≤ 1, 0 < truncation ≤ 1, warmup ≥ 0, lpips_scales ≥ 1 and "
                             f"background_weight > 0, got {self.self_fraction}, {self.truncation}, {self.warmup}, "
                             f"{self.lpips_scales}, {self.background_weight}")
        if min(self.lambda_pixel, self.lambda_perceptual, self.lambda_identity, self.lambda_delta) < 0:
            raise InputError("loss weights (lambda_*) must be ≥ 0")
        if not self.data:
            raise InputError("train fsr needs prepared paired data: set data=FOLDER (see `dataset prepare`)")

    def check_world(self, world_size: int) -> None:
        """Refuses a global batch that does not split evenly over ``world_size`` ranks."""
        if self.batch_size % world_size:
            raise InputError(f"batch_size {self.batch_size} must be a multiple of {world_size} for {world_size} "
                             "rank(s)")

    def fsr_config(self, generator) -> FSRConfig:
        """E_F's architecture for feature k = ``fsr_layer`` of ``generator`` (a ``GeneratorConfig``)."""
        return FSRConfig.for_generator(generator, self.fsr_layer, input_size=self.input_size,
                                       widths=tuple(self.widths), units=tuple(self.units),
                                       se_reduction=self.se_reduction, head_width=self.head_width)

    def alpha(self, step: int) -> float:
        """The warm-up factor of Δf_k at ``step`` (0-based steps done)."""
        return 1.0 if self.warmup == 0 else min(1.0, step / self.warmup)


@dataclass
class FSRNetworks:
    """The frozen networks of a run and the files they came from.

    Attributes:
        generator: G (frozen; gradients flow through it to E_F). mean_latent: w̄ (1, style_dim).
        directions: A (frozen), with its Δp normaliser.
        lpips: LPIPS-AlexNet (the loss and the validation metric).
        identity: the ArcFace identity loss, or None (λ_id = 0; validation then uses dlib).
        generator_identity: ``reenact_core.models.fsr.generator_identity`` of G's file, written into the export.
        files: role → weight file, hashed into the saved config.
        random_weights: some file holds random test weights (the export says so).
    """

    generator: Generator
    mean_latent: torch.Tensor
    directions: DirectionMatrix
    lpips: nn.Module
    identity: IdentityLoss | None
    generator_identity: str
    files: dict[str, Path] = field(default_factory=dict)
    random_weights: bool = False


class RefinerTraining(nn.Module):
    """E_F as the loop trains it: ``train()`` leaves its BatchNorm layers in eval mode (running statistics fixed)
    when ``batch_norm`` is ``frozen``. ``forward`` is E_F's."""

    def __init__(self, refiner: FeatureRefiner, batch_norm: str):
        super().__init__()
        self.refiner, self.batch_norm = refiner, batch_norm

    def train(self, mode: bool = True) -> RefinerTraining:
        super().train(mode)
        if mode and self.batch_norm == "frozen":
            for m in self.refiner.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refiner(x)


def init_refiner(config: FSRTrainConfig, fsr_config: FSRConfig) -> FeatureRefiner:
    """A new E_F, seeded from ``config.seed`` (its last BN zero: Δf = 0 at the start)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return FeatureRefiner(fsr_config)


def face_weights(size: int, background_weight: float, device=None) -> torch.Tensor:
    """Pixel-loss weights ``(1, 1, size, size)`` of mean 1: 1 inside the ellipse inscribed in the aligned crop's
    face box (the identity loss's rows 35..222, columns 32..219 of 256), ``background_weight`` outside, with a
    soft edge ``FACE_EDGE`` wide."""
    coords = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) * ID_CROP_SIZE / size
    (r0, r1), (c0, c1) = ID_CROP_ROWS, ID_CROP_COLS
    dy = (coords[:, None] - (r0 + r1) / 2) / ((r1 - r0) / 2)
    dx = (coords[None, :] - (c0 + c1) / 2) / ((c1 - c0) / 2)
    inside = torch.sigmoid((1 - (dx.square() + dy.square()).sqrt()) / FACE_EDGE * 4)
    weights = background_weight + (1 - background_weight) * inside
    return (weights / weights.mean())[None, None]


def multiscale_lpips(lpips: nn.Module, images: torch.Tensor, reference: torch.Tensor, scales: int) -> torch.Tensor:
    """Σ over ``scales`` levels of the batch-mean LPIPS, each level 2×2-average-pooled from the previous."""
    total = lpips_loss(lpips, images, reference)
    for _ in range(scales - 1):
        images, reference = F.avg_pool2d(images, 2), F.avg_pool2d(reference, 2)
        total = total + lpips_loss(lpips, images, reference)
    return total


class FSRMethod:
    """The ``TrainingMethod`` of E_F (see :mod:`reenact_core.training.loop`)."""

    def __init__(self, config: FSRTrainConfig, nets: FSRNetworks, ctx: DistContext,
                 refiner: FeatureRefiner | None = None):
        g = nets.generator.config
        config.check_world(ctx.world_size)
        if g.size >> (config.lpips_scales - 1) < LPIPS_MIN_SIDE:
            raise InputError(f"lpips_scales={config.lpips_scales} takes this {g.size}-px generator's images below "
                             f"{LPIPS_MIN_SIDE} px: lower lpips_scales")
        sync = check_batch_norm(config.batch_norm, distributed=ctx.initialised, device_type=ctx.device.type)
        if nets.directions.config.shift_dim != g.style_dim or nets.directions.config.num_layers > g.n_latent:
            raise InputError("the directions file does not fit this generator's W+ rows: use the A trained for it")
        self.config, self.nets, self.ctx, self.device = config, nets, ctx, ctx.device
        self.name = "fsr"
        self.refiner = refiner if refiner is not None else init_refiner(config, config.fsr_config(g))
        if sync:     # in place: same keys, shared by every rank
            nn.SyncBatchNorm.convert_sync_batchnorm(self.refiner)
        self.module = RefinerTraining(self.refiner, config.batch_norm)
        self.layer = self.refiner.config.generator_index
        self.local_batch = config.batch_size // ctx.world_size
        for net in (nets.generator, nets.directions, nets.lpips, nets.identity):
            if net is not None:
                net.requires_grad_(False).eval()
        self.frames = PreparedFrames(config.data, (g.n_latent, g.style_dim), g.size, pairs=True, seed=config.seed)
        self.validation = ValidationPairs.build(config, g, ctx)
        self.weights = face_weights(g.size, config.background_weight, ctx.device)

    # TrainingMethod -------------------------------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        return self.module

    def weight_files(self) -> dict[str, Path]:
        return dict(self.nets.files)

    def batches(self, epoch: int, skip: int):
        return epoch_loader(self.frames, self.ctx, self.config.seed, epoch, skip, self.local_batch,
                            self.config.num_workers)

    def loss(self, model: nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx = torch.arange(self.local_batch) + self.ctx.rank * self.local_batch
        x_s, w_s = batch["source_image"].to(self.device), batch["source_w_plus"].to(self.device)
        is_self = self.self_pairs(step, idx).to(self.device)
        x_t = torch.where(is_self[:, None, None, None], x_s, batch["target_image"].to(self.device))
        dp = self.delta_p(batch["source_codes"], batch["target_codes"]) * (~is_self)[:, None].float()
        refined, delta_f, _ = self.refine(model, x_s, w_s, dp, self.config.alpha(step))
        return self.objective(refined, x_t, delta_f)

    def validate(self, step: int) -> Validation:
        return validate_fsr(self)

    # the step's parts ------------------------------------------------------------------------------------------
    def self_pairs(self, step: int, idx: torch.Tensor) -> torch.Tensor:
        """Which samples (global indices ``idx``) reconstruct their source at ``step``: ``(B,)`` bool."""
        draws = [float(torch.rand((), generator=sample_generator(self.config.seed, step, int(i), "self_pair")))
                 for i in idx]
        return torch.tensor(draws) < self.config.self_fraction

    def delta_p(self, source_codes: torch.Tensor, target_codes: torch.Tensor) -> torch.Tensor:
        """Δp = n(p_t) − n(p_s) ``(B, 15)`` of DECA codes ``(B, 236)``, with A's normaliser."""
        s, t = split_codes(source_codes.to(self.device)), split_codes(target_codes.to(self.device))
        return delta_p(FaceParams.from_pose_exp(s.pose, s.exp), FaceParams.from_pose_exp(t.pose, t.exp),
                       normaliser=self.nets.directions.config.normaliser)

    def render(self, w_plus: torch.Tensor, **kwargs):
        return self.nets.generator.synthesize(w_plus, truncation=self.config.truncation,
                                              truncation_latent=self.nets.mean_latent, **kwargs)

    def refine(self, model: nn.Module, x_s: torch.Tensor, w_s: torch.Tensor, dp: torch.Tensor, alpha: float):
        """``(x_F, Δf_k, G_ψ(w_r))``: the refined render, E_F's output (before α) and the coarse render."""
        with torch.no_grad():
            w_r = apply_shift(w_s, self.nets.directions(dp))
            coarse = self.render(w_r, keep_resume_point=self.layer)
            context = source_context(x_s, self.render(w_s).image, self.refiner.config.input_size)
        delta_f = model(refiner_input(context, coarse.image))
        refined = self.render(w_r, resume_from=coarse.resume, feature_shifts={self.layer: alpha * delta_f}).image
        return refined, delta_f, coarse.image

    def objective(self, refined: torch.Tensor, target: torch.Tensor,
                  delta_f: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        terms = {"pixel": (self.weights * (refined - target).square()).mean(),
                 "lpips": multiscale_lpips(self.nets.lpips, refined, target, c.lpips_scales),
                 "delta": delta_f.square().mean()}
        total = c.lambda_pixel * terms["pixel"] + c.lambda_perceptual * terms["lpips"] + c.lambda_delta * terms["delta"]
        if self.nets.identity is not None:
            terms["identity"] = self.nets.identity(refined, target).mean()
            total = total + c.lambda_identity * terms["identity"]
        return total, terms


def validate_fsr(method: FSRMethod) -> Validation:
    """Every fixed pair (sharded over ranks, sums reduced), refined with α = 1. Self pairs (two frames of one
    video) against the target: LPIPS (``self_lpips``; ``self_lpips_coarse`` without refinement) and identity
    similarity. Cross pairs (another identity drives) have no ground truth: the same against the source (hair
    and background kept). Best checkpoint: lowest self LPIPS, then highest cross identity."""
    pairs, c, ctx = method.validation, method.config, method.ctx
    name, similarity = identity_measure(method.nets.identity)
    sums = torch.zeros(2, 5, dtype=torch.float64)   # [self, cross] × [count, LPIPS, coarse LPIPS, identity, faces]
    images: list[torch.Tensor] = []
    for chunk, src, tgt in pairs.batches(method, c.test_batch_size):
        refined, _, coarse = method.refine(method.refiner, src.images, src.w_plus,
                                           method.delta_p(src.codes, tgt.codes), 1.0)
        is_self = torch.tensor([pairs.kinds[i] == "self" for i in chunk], device=refined.device)
        reference = torch.where(is_self[:, None, None, None], tgt.images, src.images)
        lpips = method.nets.lpips(refined, reference).double().cpu()
        lpips_coarse = method.nets.lpips(coarse, reference).double().cpu()
        identity = similarity(refined, reference).double().cpu()
        for j, i in enumerate(chunk):
            found = bool(torch.isfinite(identity[j]))
            sums[0 if pairs.kinds[i] == "self" else 1] += torch.tensor(
                [1.0, float(lpips[j]), float(lpips_coarse[j]), float(identity[j]) if found else 0.0, float(found)],
                dtype=torch.float64)
        if not images:
            images = [src.images.cpu(), tgt.images.cpu(), coarse.cpu(), refined.cpu()]
    sums = reduce_sum(sums, ctx)
    metrics = {}
    for row, kind in enumerate(("self", "cross")):
        count, faces = max(float(sums[row, 0]), 1.0), float(sums[row, 4])
        metrics[f"{kind}_lpips"] = float(sums[row, 1]) / count
        metrics[f"{kind}_lpips_coarse"] = float(sums[row, 2]) / count
        metrics[f"{kind}_identity_{name}"] = float(sums[row, 3]) / faces if faces else float("nan")
    identity = metrics[f"cross_identity_{name}"]
    score = (-metrics["self_lpips"], identity if identity == identity else -float("inf"))
    return Validation(metrics, score, images)
