"""One E_F training run: the frozen networks from model files (or tiny and random), the loop, the export of the best
(else last) E_F as an ``fsr`` model file for the engine, ``--fsr`` and the FSR nodes, and ``train fsr --self-check``."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..errors import MissingModelError
from ..models.fsr import FeatureRefiner, generator_identity
from ..weights import TINY_CONFIGS, find_lpips, find_model_file, has_random_weights, load_model
from ..weights.identity import GENERATOR_IDENTITY_KEY, identity_of
from ..weights.store import save_model
from .config import DirectionsTrainConfig
from .distributed import DistContext, parameters_agree, reduce_mean
from .fsr import FSRMethod, FSRNetworks, FSRTrainConfig, RefinerTraining
from .loop import TrainResult, train
from .losses import IdentityLoss
from .networks import found_lpips_files, missing_lpips_message
from .run import EXPORT_DIR, best_state, default_name, provenance, run_method
SELF_CHECK_STEPS = 20
SELF_CHECK_LR = 1e-3
# E_F's architecture in the self-check, tests and benches: the tiny model set's (``weights.TINY_CONFIGS``).
TINY_REFINER = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_CONFIGS["fsr"].items()
                if k in ("widths", "units", "se_reduction", "head_width")}


def build_fsr_networks(config: FSRTrainConfig, folders: Sequence[Path], generator: str | None,
                       directions: str | None, device: torch.device) -> FSRNetworks:
    """G and A (the files given, else the canonical ones), LPIPS, and ArcFace when λ_id is not 0, from
    ``folders``. Raises MissingModelError naming every missing file, its source and its conversion (one line)."""
    folders = [Path(f) for f in folders]
    roles = {"generator": ("stylegan2", generator), "directions": ("directions", directions)}
    if config.lambda_identity:
        roles["arcface"] = ("arcface", None)
    paths, missing = {}, []
    for role, (kind_name, given) in roles.items():
        try:
            paths[role] = Path(given) if given else find_model_file(kind_name, folders)
        except MissingModelError as exc:
            missing.append(str(exc))
    lpips = find_lpips(folders, device)
    if lpips is None:
        missing.append(missing_lpips_message(folders))
    if missing:
        raise MissingModelError(" | ".join(missing))
    loaded = {role: load_model(path, roles[role][0], device) for role, path in paths.items()}
    g = loaded["generator"]
    identity = IdentityLoss(loaded["arcface"].module).to(device) if "arcface" in loaded else None
    files = {**paths, **{f"lpips_{i}": p for i, p in enumerate(found_lpips_files(folders))}}
    random = any(has_random_weights(m.metadata) for m in loaded.values())
    return FSRNetworks(g.module, g.mean_latent, loaded["directions"].module, lpips.eval(), identity, identity_of(g),
                       files, random)


def tiny_fsr_networks(config: FSRTrainConfig, seed: int = 0, device: str | torch.device = "cpu",
                      generator: dict | None = None) -> FSRNetworks:
    """The tiny random G, ArcFace and LPIPS of ``networks.tiny_networks`` (same seed, same networks) and a
    random A (``init_directions``)."""
    from .directions import init_directions
    from .networks import tiny_networks

    base = tiny_networks(DirectionsTrainConfig(seed=seed), seed, device, generator)
    g = base.generator
    a = init_directions(DirectionsTrainConfig(seed=seed), g.config.style_dim).to(device)
    identity = base.criteria.identity if config.lambda_identity else None
    return FSRNetworks(g, base.mean_latent, a, base.criteria.lpips.network, identity,
                       generator_identity(g.state_dict()), {}, random_weights=True)


def run_fsr_training(config: FSRTrainConfig, folders: Sequence[Path], generator: str | None, directions: str | None,
                     out: str | Path, ctx: DistContext, resume: str | None = None,
                     name: str | None = None) -> tuple[TrainResult, list[Path]]:
    """Trains E_F as ``config`` says and, unless interrupted, exports it (rank 0); returns the written files."""
    nets = build_fsr_networks(config, folders, generator, directions, ctx.device)
    method = FSRMethod(config, nets, ctx)
    return run_method(method, out, ctx, resume,
                      lambda folder, step: [export_run(method, folder, name or default_name(nets.files), step)])


def export_run(method: FSRMethod, out: Path, name: str, step: int) -> Path:
    """Exports the best checkpoint's E_F (by validation) or, without one, the current E_F (``step``), to
    ``out/export/fsr-<name>.safetensors``."""
    refiner = method.refiner
    state = best_state(out)
    if state is not None:
        refiner = FeatureRefiner(method.refiner.config)
        RefinerTraining(refiner, method.config.batch_norm).load_state_dict(state["model"])
        step = state["step"]
    return export_fsr(refiner, method.config, out / EXPORT_DIR, name, step,
                      provenance(method, "python -m reenact_core train fsr"), method.nets.generator_identity)


def export_fsr(refiner: FeatureRefiner, config: FSRTrainConfig, folder: str | Path, name: str, step: int,
               provenance: dict, identity: str) -> Path:
    """Writes ``folder/fsr-<name>.safetensors``: E_F's weights and architecture (with k, ``layer``), the identity of
    the generator it was trained for (``generator_identity``, checked by the loaders), ``provenance`` (JSON: step,
    training config, weight files and hashes) and ``random_weights: true`` when the networks were random."""
    state = {k: v.detach().cpu() for k, v in refiner.state_dict().items()}
    metadata = {GENERATOR_IDENTITY_KEY: identity,
                "provenance": json.dumps({**provenance, "step": step, "config": config.to_dict()}, sort_keys=True)}
    if provenance.get("random_weights"):
        metadata["random_weights"] = "true"
    return save_model(Path(folder) / f"fsr-{name}.safetensors", "fsr", refiner.config, state, metadata=metadata)


def fsr_self_check(ctx: DistContext, steps: int = SELF_CHECK_STEPS) -> Iterator[str]:
    """Yields the report lines: a label, ``self-check: fsr loss <before> -> <after>`` (the loss of one fixed batch
    with the initial and the trained E_F) and, under torchrun, ``ranks agree: yes|no``."""
    from .networks import tiny_networks
    from .selfcheck import _write_data
    from .tiny import TINY_GENERATOR

    yield (f"self-check on TINY RANDOM networks and data ({ctx.world_size} rank(s), {ctx.device}): "
           "the trainer runs; the numbers are not a result")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = FSRTrainConfig(batch_size=4 * ctx.world_size, max_iter=steps, lr=SELF_CHECK_LR, eval_every=steps,
                                save_every=steps, validation_samples=2, num_workers=0, warmup=0, lpips_scales=2,
                                input_size=TINY_GENERATOR["size"], data=str(tmp / "data"), **TINY_REFINER)
        _write_data(tmp / "data", tiny_networks(DirectionsTrainConfig(), device=ctx.device),   # each rank its own
                    config.truncation)
        method = FSRMethod(config, tiny_fsr_networks(config, device=ctx.device), ctx)
        batch = next(iter(method.batches(0, 0)))
        before = _fixed_loss(method, batch, ctx)
        train(method, tmp / "run", ctx, progress=False)
        after = _fixed_loss(method, batch, ctx)
        agree = parameters_agree(method.trainable(), ctx)
    yield f"self-check: fsr loss {before:.4f} -> {after:.4f}"
    if ctx.initialised:
        yield f"ranks agree: {'yes' if agree else 'no'}"


def _fixed_loss(method: FSRMethod, batch, ctx: DistContext) -> float:
    with torch.no_grad():
        method.module.eval()
        loss, _ = method.loss(method.module, batch, method.config.max_iter)
    return reduce_mean({"loss": loss}, ctx)["loss"]
