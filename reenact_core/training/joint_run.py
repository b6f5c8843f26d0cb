"""One joint run (E_w + A): networks from files or tiny and random, the loop, the export of the pair, and
``train joint --self-check``."""
from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..errors import InputError, MissingModelError
from ..models.e4e import Encoder4Editing, EncoderConfig
from ..weights import find_model_file, load_model, save_model
from .distributed import DistContext
from .export import export_directions
from .joint import CYCLES, JointMethod, JointNetworks, JointTrainConfig
from .loop import TrainResult
from .run import EXPORT_DIR, best_state, default_name, provenance, run_method
from .selfcheck import SELF_CHECK_LR, SELF_CHECK_STEPS, _write_data, self_check_lines

TINY_ENCODER = {"widths": (8, 16, 24, 32), "units": (1, 1, 1, 1), "se_reduction": 4}   # random: never a result


def tiny_joint_networks(config: JointTrainConfig, seed: int = 0, device: str | torch.device = "cpu",
                        generator: dict | None = None) -> JointNetworks:
    """:func:`~reenact_core.training.networks.tiny_networks` plus a tiny random E_w for its generator."""
    from .networks import tiny_networks

    frozen = tiny_networks(config, seed, device, generator)
    g = frozen.generator.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        encoder = Encoder4Editing(EncoderConfig(size=g.size, input_size=max(32, g.size), style_dim=g.style_dim,
                                                **TINY_ENCODER))
    return JointNetworks(frozen, encoder.to(device))


def build_joint_networks(config: JointTrainConfig, folders: Sequence[Path], generator: str | None,
                         encoder: str | None, device: torch.device) -> JointNetworks:
    """The frozen networks (as the directions trainer) and E_w from ``encoder`` (default: the canonical e4e file);
    A starts as the directions trainer's (``config.init_directions``, else fresh).

    Raises:
        MissingModelError: a file is missing (one line, as the directions trainer).
        InputError: E_w does not fit the generator.
    """
    from .networks import build_networks

    try:
        encoder_path = Path(encoder) if encoder else find_model_file("e4e", folders)
    except MissingModelError as exc:
        raise MissingModelError(f"{exc} (train joint initialises E_w from it)") from None
    frozen = build_networks(config, folders, generator, device)
    e = load_model(encoder_path, "e4e", device, trainable=True)
    g = frozen.generator.config
    if (e.config.n_styles, e.config.style_dim) != (g.n_latent, g.style_dim):
        raise InputError(f"{encoder_path.name} predicts {e.config.n_styles}×{e.config.style_dim} W+ codes, the "
                         f"generator takes {g.n_latent}×{g.style_dim}")
    return JointNetworks(frozen, e.module, encoder_path)


def run_joint_training(config: JointTrainConfig, folders: Sequence[Path], generator: str | None,
                       encoder: str | None, out: str | Path, ctx: DistContext, resume: str | None = None,
                       name: str | None = None) -> tuple[TrainResult, list[Path]]:
    """Trains E_w and A as ``config`` says and, unless interrupted, exports the pair (rank 0)."""
    nets = build_joint_networks(config, folders, generator, encoder, ctx.device)
    method = JointMethod(config, nets, ctx)
    return run_method(method, out, ctx, resume,
                      lambda folder, step: export_joint(method, folder, name or default_name(nets.frozen.files), step))


def pair_id(model) -> str:
    """The ``joint_pair`` value of an exported pair: SHA-256 (first 16 hex digits) of A's and E_w's tensors."""
    digest = hashlib.sha256()
    for part in (model.directions, model.encoder):
        for key, value in sorted(part.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_joint(method: JointMethod, out: Path, name: str, step: int) -> tuple[Path, Path, Path]:
    """Exports the best checkpoint's pair (by validation) or, without one, the current one (``step``) to
    ``out/export``: ``e4e-<name>.safetensors``, ``directions-<name>.safetensors`` and ``A_matrix.pt``; both
    safetensors files carry the same ``joint_pair`` metadata (see :mod:`reenact_core.engine.pairing`)."""
    from ..engine.pairing import JOINT_PAIR_KEY

    model = method.model
    state = best_state(out)
    if state is not None:
        model = copy.deepcopy(model)
        model.load_state_dict(state["model"])
        step = state["step"]
    origin = provenance(method, "python -m reenact_core train joint", method="joint", cycle=method.config.cycle)
    pair = {JOINT_PAIR_KEY: pair_id(model)}
    meta = {**pair, "provenance": json.dumps({**origin, "step": step, "config": method.config.to_dict()},
                                             sort_keys=True)}
    if method.nets.random_weights:
        meta["random_weights"] = "true"
    encoder = model.encoder
    encoder_path = save_model(out / EXPORT_DIR / f"e4e-{name}.safetensors", "e4e", encoder.config,
                              {k: v.detach().cpu() for k, v in encoder.state_dict().items()}, metadata=meta)
    a_path, official = export_directions(model.directions, method.config, out / EXPORT_DIR, name, step, origin,
                                         metadata=pair)
    return encoder_path, a_path, official


def joint_self_check(ctx: DistContext, steps: int = SELF_CHECK_STEPS) -> Iterator[str]:
    """The directions self-check's lines for each cycle variant (``self-check: joint (cycle <c>) loss <before> ->
    <after>``; see :func:`~reenact_core.training.selfcheck.self_check_lines`)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        base = JointTrainConfig(batch_size=2 * ctx.world_size, max_iter=steps, lr=SELF_CHECK_LR,
                                lr_encoder=SELF_CHECK_LR, encoder_warmup_steps=0, eval_every=steps,
                                save_every=steps, validation_samples=2, num_workers=0, data=str(data))
        _write_data(data, tiny_joint_networks(base, device=ctx.device).frozen, base.truncation)  # each rank its own

        def method(cycle: str) -> JointMethod:
            config = base.with_overrides({"cycle": cycle})
            return JointMethod(config, tiny_joint_networks(config, device=ctx.device), ctx)
        yield from self_check_lines(ctx, [(f"joint (cycle {c})", lambda c=c: method(c)) for c in CYCLES], tmp)
