"""``train directions --self-check``: every method for a few steps on tiny RANDOM networks and data it makes.

It proves that the trainer runs end to end on this machine (and under torchrun, that the ranks stay equal);
the losses it prints come from random networks and are not a result.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from .config import DirectionsTrainConfig
from .directions import DirectionsMethod
from .distributed import DistContext, parameters_agree, reduce_mean
from .loop import train
from .networks import tiny_networks
from .randomness import normal
from .tiny import write_rendered_video

SELF_CHECK_STEPS = 20
SELF_CHECK_LR = 1e-3
VIDEOS, FRAMES = 2, 4


def directions_self_check(ctx: DistContext, steps: int = SELF_CHECK_STEPS) -> Iterator[str]:
    """Yields the report lines: a label, ``self-check: <method> loss <before> -> <after>`` per method (the loss
    of one fixed batch with the initial and the trained A) and, under torchrun, ``ranks agree: yes|no``."""
    yield (f"self-check on TINY RANDOM networks and data ({ctx.world_size} rank(s), {ctx.device}): "
           "the trainer runs; the numbers are not a result")
    agree = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        base = DirectionsTrainConfig(batch_size=4 * ctx.world_size, max_iter=steps, lr=SELF_CHECK_LR,
                                     eval_every=steps, save_every=steps, validation_samples=2, num_workers=0)
        _write_data(data, tiny_networks(base, device=ctx.device), base.truncation)   # each rank its own copy
        for method_name in DirectionsTrainConfig.METHODS:
            config = base.with_overrides({"method": method_name,
                                          "data": "" if method_name == "synthetic" else str(data)})
            method = DirectionsMethod(config, tiny_networks(config, device=ctx.device), ctx)
            batch = next(iter(method.batches(0, 0)))
            before = _fixed_loss(method, batch, ctx)
            train(method, tmp / method_name, ctx, progress=False)
            after = _fixed_loss(method, batch, ctx)
            agree = parameters_agree(method.trainable(), ctx) and agree
            yield f"self-check: {method_name} loss {before:.4f} -> {after:.4f}"
    if ctx.initialised:
        yield f"ranks agree: {'yes' if agree else 'no'}"


def _fixed_loss(method: DirectionsMethod, batch, ctx: DistContext) -> float:
    with torch.no_grad():
        loss, _ = method.loss(method.directions, batch, 0)
    return reduce_mean({"loss": loss}, ctx)["loss"]


def _write_data(root: Path, nets, truncation: float) -> None:
    """``VIDEOS`` videos of ``FRAMES`` frames: per video one z, and per frame a random shift of its W+ rows
    (a stand-in for motion); DECA codes measured as ``dataset prepare`` does."""
    g = nets.generator
    n, d = g.config.n_latent, g.config.style_dim
    for v in range(VIDEOS):
        with torch.no_grad():
            w0 = g.mapping(normal((d,), 0, v, [0], "z_source").to(nets.mean_latent.device))
            w = w0[:, None].expand(FRAMES, n, d) + 0.3 * normal((n, d), 0, v, range(FRAMES), "z_target").to(w0)
            x = g.synthesize(w, truncation=truncation, truncation_latent=nets.mean_latent).image
            codes = nets.measure(x)
        write_rendered_video(root, f"id{v:02d}", "video", g, nets.mean_latent, w, codes, truncation)
