"""Training the directions matrix A for any StyleGAN2 (reference spec §3): the per-step work of the four
methods, validation on fixed pairs, and the networks it needs.

One step (rank-local batch, global sample indices ``idx``):
    sources  w_s (B, n, D), x_s, codes_s      synthetic: z ~ N(0, I) from (seed, step, idx), w = f(z) on every
                                              row; real: prepared frames (stored e4e W+ and DECA codes)
    targets  x_t, codes_t                     synthetic: G(f(z_t)); paired: the other prepared frame
    Δp, GT   ``sampling.shift_vector`` / ``ground_truth_params`` (disentanglement_50: the second half of the
             global batch moves one random direction)
    x_r      G(w̄ + ψ·(w_s ⊕_{0:L} A(Δp) − w̄)), measured by DECA through the canonical crop box
    loss     shape + mouth + eye + λ_id·ID + λ_lpips·LPIPS (+ λ_pixel·L1 for paired) against x_s, or x_t
             for paired; LPIPS and L1 on [-1, 1] images (spec §5 #14).
Δp comes from the codes stored with prepared frames (as at inference) and from DECA on generated images; the
paired ground truth is DECA of the target frame through the same measure step as x_r, so the shape terms
vanish exactly when x_r = x_t.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..evaluation import expression_error, pose_error_deg
from ..models.deca import split_codes
from ..models.directions import DirectionMatrix, apply_shift
from ..models.stylegan2 import Generator
from ..params import FaceParams
from .config import DirectionsTrainConfig
from .data import PreparedFrames, epoch_loader
from .distributed import DistContext, reduce_sum
from .losses import FlameParams, IdentityLoss, LossOptions, LossWeights, TrainingLosses
from .loop import Validation
from .randomness import normal, sample_generator
from .sampling import ShiftDraws, draw_shifts, ground_truth_params, shift_vector

Measure = Callable[[torch.Tensor], torch.Tensor]   # images (B, 3, H, W) in [-1, 1] → DECA codes (B, 236)


@dataclass
class DirectionsNetworks:
    """The frozen networks of a run and the files they came from.

    Attributes:
        generator: G, frozen (``eval()``, no parameter gradients; gradients still flow through it to A).
        mean_latent: w̄ (1, style_dim), the truncation centre.
        measure: DECA E_flame through the canonical crop box, differentiable with respect to the images.
        criteria: the weighted loss terms (see :func:`loss_options`).
        files: role → weight file, hashed into the saved config.
        random_weights: some file holds random test weights (the export says so).
    """

    generator: Generator
    mean_latent: torch.Tensor
    measure: Measure
    criteria: TrainingLosses
    files: dict[str, Path] = field(default_factory=dict)
    random_weights: bool = False


def init_directions(config: DirectionsTrainConfig, style_dim: int) -> DirectionMatrix:
    """A with the reference's initialisation (weight ~ N(0, init_std), PyTorch's default bias; seeded), or the
    weights of ``config.init_directions``. Raises InputError (one line) if that A has another shape."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        a = DirectionMatrix(config.directions_config(style_dim))
        nn.init.normal_(a.linear.weight, std=config.init_std)
    if config.init_directions:
        state = _directions_state(Path(config.init_directions))
        shapes = {k: tuple(v.shape) for k, v in a.state_dict().items()}
        if {k: tuple(v.shape) for k, v in state.items()} != shapes:
            raise InputError(f"init_directions {config.init_directions} holds an A of another shape "
                             f"({ {k: tuple(v.shape) for k, v in state.items()} }, this run needs {shapes})")
        a.load_state_dict(state)
    return a


def _directions_state(path: Path) -> dict[str, torch.Tensor]:
    """A's state dict from a directions model file or a training checkpoint."""
    from ..weights import load_model
    from .checkpoint import load_training_checkpoint

    if path.suffix == ".safetensors":
        return load_model(path, "directions").module.state_dict()
    return load_training_checkpoint(path)["model"]


@dataclass
class Sources:
    w_plus: torch.Tensor      # (B, n, D) untruncated codes
    images: torch.Tensor      # (B, 3, H, W) in [-1, 1]: the reference of ID/LPIPS for non-paired methods
    codes: torch.Tensor       # (B, 236) DECA codes


class DirectionsMethod:
    """The ``TrainingMethod`` of A (see :mod:`reenact_core.training.loop`)."""

    def __init__(self, config: DirectionsTrainConfig, nets: DirectionsNetworks, ctx: DistContext):
        g = nets.generator.config
        if config.num_layers_shift > g.n_latent:
            raise InputError(f"num_layers_shift={config.num_layers_shift} but the generator has only {g.n_latent} "
                             "W+ rows")
        config.check_world(ctx.world_size)
        self.config, self.nets, self.ctx = config, nets, ctx
        self.name = f"directions ({config.method})"
        self.directions = init_directions(config, g.style_dim)
        self.local_batch = config.batch_size // ctx.world_size
        self.normaliser = self.directions.config.normaliser
        self.device = ctx.device
        nets.generator.requires_grad_(False).eval()
        nets.criteria.requires_grad_(False).eval()
        self.frames = None
        if config.method != "synthetic":
            self.frames = PreparedFrames(config.data, (g.n_latent, g.style_dim), g.size,
                                         pairs=config.method == "paired", seed=config.seed)
        self.validation = ValidationPairs.build(config, g, ctx)

    # TrainingMethod -------------------------------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        return self.directions

    def weight_files(self) -> dict[str, Path]:
        return dict(self.nets.files)

    def batches(self, epoch: int, skip: int) -> Iterable:
        if self.frames is None:
            return _endless()
        per_step = self.local_batch // 2 if self.config.method == "real_synthetic" else self.local_batch
        return epoch_loader(self.frames, self.ctx, self.config.seed, epoch, skip, per_step, self.config.num_workers)

    def loss(self, model: nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx = self._indices()
        sources = self._sources(batch, step, idx)
        paired = self.config.method == "paired"
        if paired:
            target_images = batch["target_image"].to(self.device)
            target_codes = batch["target_codes"].to(self.device)
        else:
            target_images = self._render_z(normal((self.style_dim,), self.config.seed, step, idx.tolist(),
                                                  "z_target"))
            with torch.no_grad():
                target_codes = self.nets.measure(target_images)
        delta_p, gt = self._delta_and_truth(sources.codes, target_codes, step, idx, target_images)
        w_r = apply_shift(sources.w_plus, model(delta_p.to(self.device)))
        x_r = self._render(w_r)
        reference = target_images if paired else sources.images
        terms = self.nets.criteria(x_r, reference, gt, flame_params(self.nets.measure(x_r)))
        total = terms.pop("total")
        if paired and self.config.lambda_w_reg:
            terms["w_reg"] = (w_r - batch["target_w_plus"].to(self.device)).abs().mean()
            total = total + self.config.lambda_w_reg * terms["w_reg"]
        return total, terms

    def validate(self, step: int) -> Validation:
        return self.validation.run(self, step)

    # the step's parts ------------------------------------------------------------------------------------------
    @property
    def style_dim(self) -> int:
        return self.nets.generator.config.style_dim

    def _indices(self) -> torch.Tensor:
        """Global indices in the step's batch of this rank's samples (rank r holds r·b .. r·b + b − 1)."""
        return torch.arange(self.local_batch) + self.ctx.rank * self.local_batch

    def _w_plus_of(self, z: torch.Tensor) -> torch.Tensor:
        """``f(z)`` repeated on every W+ row: (B, n_latent, style_dim)."""
        g = self.nets.generator
        with torch.no_grad():
            w = g.mapping(z.to(self.device))
        return w[:, None].expand(-1, g.config.n_latent, -1).contiguous()

    def _render(self, w_plus: torch.Tensor) -> torch.Tensor:
        return self.nets.generator.synthesize(w_plus, truncation=self.config.truncation,
                                              truncation_latent=self.nets.mean_latent).image

    def _render_z(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._render(self._w_plus_of(z))

    def _sources(self, batch, step: int, idx: torch.Tensor) -> Sources:
        method, seed = self.config.method, self.config.seed
        if method == "paired":
            return Sources(batch["source_w_plus"].to(self.device), batch["source_image"].to(self.device),
                           batch["source_codes"].to(self.device))
        if method == "synthetic":
            w = self._w_plus_of(normal((self.style_dim,), seed, step, idx.tolist(), "z_source"))
            with torch.no_grad():
                x = self._render(w)
                return Sources(w, x, self.nets.measure(x))
        real = Sources(batch["w_plus"].to(self.device), batch["image"].to(self.device), batch["codes"].to(self.device))
        if method == "real":
            return real
        # real_synthetic: real frames take the even global indices, synthetic sources the odd ones
        w = self._w_plus_of(normal((self.style_dim,), seed, step, idx[1::2].tolist(), "z_source"))
        with torch.no_grad():
            x = self._render(w)
            codes = self.nets.measure(x)
        return Sources(_interleave(real.w_plus, w), _interleave(real.images, x), _interleave(real.codes, codes))

    def _delta_and_truth(self, source_codes: torch.Tensor, target_codes: torch.Tensor, step: int,
                         idx: torch.Tensor, target_images: torch.Tensor):
        """Δp (B, 15) and the ground-truth :class:`FlameParams` of the shape losses."""
        c = self.config
        s, t = split_codes(source_codes), split_codes(target_codes)
        source = FaceParams.from_pose_exp(s.pose, s.exp)
        paired = c.method == "paired"
        if c.disentanglement_50 and not paired:
            draws = draw_shifts(c.seed, step, idx, c.batch_size)
        else:
            draws = _no_draws(len(idx))
        delta_p = shift_vector(source, FaceParams.from_pose_exp(t.pose, t.exp), draws, normaliser=self.normaliser)
        if paired:
            with torch.no_grad():
                return delta_p, flame_params(self.nets.measure(target_images))
        pose, exp = ground_truth_params(source, s.pose, s.exp, t.pose, t.exp, delta_p, draws,
                                        normaliser=self.normaliser, reference_euler=c.reference_euler)
        return delta_p, FlameParams(s.shape, exp, pose)

    def _reenact(self, model: nn.Module, w_plus: torch.Tensor, delta_p: torch.Tensor) -> torch.Tensor:
        return self._render(apply_shift(w_plus, model(delta_p.to(self.device))))


def loss_options(config: DirectionsTrainConfig) -> LossOptions:
    """The loss weights and options of ``config`` (the pixel term only for paired training)."""
    weights = LossWeights(shape=config.lambda_shape, eye=config.lambda_eye, mouth=config.lambda_mouth,
                          identity=config.lambda_identity, lpips=config.lambda_perceptual,
                          pixel=config.lambda_pixel if config.method == "paired" else 0.0)
    return LossOptions(weights, legacy_255=config.legacy_255, reference_euler=config.reference_euler)


def flame_params(codes: torch.Tensor) -> FlameParams:
    """DECA codes (B, 236) → the FLAME parameters of the losses."""
    c = split_codes(codes)
    return FlameParams(c.shape, c.exp, c.pose)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Rows ``even[0], odd[0], even[1], odd[1], ...``."""
    return torch.stack([even, odd], 1).flatten(0, 1)


def _endless():
    while True:
        yield None


@dataclass
class ValidationPairs:
    """A fixed list of (source, target) pairs, half self (same identity) and half cross (another identity).

    From prepared frames (``validation_data``, else ``data``): self = two frames of one video, cross = frames
    of two videos. Synthetic: self = a source with itself as the target, cross = two random z. All drawn from
    (seed, pair index), so every run validates on the same pairs.
    """

    kinds: list[str]                                   # "self" | "cross" per pair
    sources: list                                      # z (D,) or a frame index
    targets: list
    frames: PreparedFrames | None
    measure_name: str = "arcface"

    @classmethod
    def build(cls, config: DirectionsTrainConfig, g, ctx: DistContext) -> ValidationPairs:
        n = config.validation_samples
        kinds = ["self" if i % 2 == 0 else "cross" for i in range(n)]
        root = config.validation_data or config.data
        if not root:
            z_s = normal((g.style_dim,), config.seed, 0, range(n), "validation")
            z_t = normal((g.style_dim,), config.seed, 1, range(n), "validation")
            targets = [z_s[i] if k == "self" else z_t[i] for i, k in enumerate(kinds)]
            return cls(kinds, list(z_s), targets, None)
        frames = PreparedFrames(root, (g.n_latent, g.style_dim), g.size, pairs=False, seed=config.seed)
        sources, targets = [], []
        for i, k in enumerate(kinds):
            gen = sample_generator(config.seed, 0, i, "validation")
            a = int(torch.randint(len(frames), (), generator=gen))
            first, count = frames.video_of[a]
            if k == "self" and count > 1:      # another frame of the video
                j = first + int(torch.randint(count - 1, (), generator=gen))
                j += j >= a
            elif k == "cross" and count < len(frames):     # a frame of another video
                j = int(torch.randint(len(frames) - count, (), generator=gen))
                j += count if j >= first else 0
            else:
                j = a
            sources.append(a)
            targets.append(j)
        return cls(kinds, sources, targets, frames)

    def _load(self, method: DirectionsMethod, items: list) -> Sources:
        if self.frames is None:
            w = method._w_plus_of(torch.stack(items))
            x = method._render(w)
            return Sources(w, x, method.nets.measure(x))
        tensors = [self.frames[(0, i)] for i in items]
        w = torch.stack([t["w_plus"] for t in tensors]).to(method.device)
        x = torch.stack([t["image"] for t in tensors]).to(method.device)
        return Sources(w, x, torch.stack([t["codes"] for t in tensors]).to(method.device))

    def batches(self, method, batch_size: int) -> Iterator[tuple[list[int], Sources, Sources]]:
        """This rank's share of the pairs (every ``world_size``-th from its rank), ``batch_size`` at a time:
        ``(pair indices, sources, targets)`` on ``method.device``."""
        ctx = method.ctx
        mine = list(range(ctx.rank, len(self.kinds), ctx.world_size))
        for start in range(0, len(mine), batch_size):
            chunk = mine[start:start + batch_size]
            yield (chunk, self._load(method, [self.sources[i] for i in chunk]),
                   self._load(method, [self.targets[i] for i in chunk]))

    def run(self, method: DirectionsMethod, step: int) -> Validation:
        """Every pair (sharded over ranks, sums reduced): identity similarity (self: to the target, cross: to
        the source), pose error (degrees) and expression error of DECA(x_r) against DECA(x_t)."""
        c, ctx = method.config, method.ctx
        name, similarity = identity_measure(method.nets.criteria.identity)
        sums = torch.zeros(2, 5, dtype=torch.float64)   # [self, cross] × [count, identity, with a face, pose, exp.]
        images: list[torch.Tensor] = []
        for chunk, src, tgt in self.batches(method, c.test_batch_size):
            s, t = split_codes(src.codes), split_codes(tgt.codes)
            delta_p = shift_vector(FaceParams.from_pose_exp(s.pose, s.exp), FaceParams.from_pose_exp(t.pose, t.exp),
                                   _no_draws(len(chunk)), normaliser=method.normaliser)
            x_r = method._reenact(method.directions, src.w_plus, delta_p)
            r_params = FaceParams.from_deca(method.nets.measure(x_r))
            t_params = FaceParams.from_deca(method.nets.measure(tgt.images))
            self_pair = torch.tensor([self.kinds[i] == "self" for i in chunk], device=x_r.device)
            reference = torch.where(self_pair[:, None, None, None], tgt.images, src.images)
            identity = similarity(x_r, reference).double().cpu()
            pose = pose_error_deg(r_params, t_params).cpu()
            expression = expression_error(r_params, t_params, method.normaliser).cpu()
            for j, i in enumerate(chunk):
                row = 0 if self.kinds[i] == "self" else 1
                found = bool(torch.isfinite(identity[j]))
                sums[row] += torch.tensor([1.0, float(identity[j]) if found else 0.0, float(found), float(pose[j]),
                                           float(expression[j])], dtype=torch.float64)
            if not images:
                images = [src.images.cpu(), tgt.images.cpu(), x_r.cpu()]
        sums = reduce_sum(sums, ctx)
        metrics = {}
        for row, kind in enumerate(("self", "cross")):
            count, with_face = max(float(sums[row, 0]), 1.0), float(sums[row, 2])
            metrics[f"{kind}_identity_{name}"] = float(sums[row, 1]) / with_face if with_face else float("nan")
            metrics[f"{kind}_pose_error_deg"] = float(sums[row, 3]) / count
            metrics[f"{kind}_expression_error"] = float(sums[row, 4]) / count
        identity = metrics[f"cross_identity_{name}"]
        score = (identity if identity == identity else -float("inf"), -metrics["cross_pose_error_deg"],
                 -metrics["cross_expression_error"])
        return Validation(metrics, score, images)


def identity_measure(identity: IdentityLoss | None) -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Validation's identity similarity (B,) of two image batches, and its name: ArcFace's cosine when there is an
    ArcFace ``identity`` loss, else minus the distance of dlib's face descriptors (NaN where dlib finds no face)."""
    if identity is not None:
        return "arcface", identity.similarity
    return "dlib", dlib_similarity


def dlib_similarity(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Minus the dlib descriptor distance of each pair (B,) (NaN where either image shows no face)."""
    from ..engine.render import image_to_uint8
    from ..evaluation import dlib_descriptor, identity_distance

    values = []
    for a, b in zip(image_to_uint8(images), image_to_uint8(reference)):
        da, db = dlib_descriptor(a), dlib_descriptor(b)
        values.append(float("nan") if da is None or db is None else -identity_distance(da, db))
    return torch.tensor(values, dtype=torch.float64)


def _no_draws(n: int) -> ShiftDraws:
    """Draws of a batch without single-direction samples (the full Δp for every pair)."""
    return ShiftDraws(torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.long), torch.zeros(n))
