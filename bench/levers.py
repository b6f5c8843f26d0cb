"""Each network with each speed lever on and off, timed in one process, and its rate as a fraction of the plain
3×3 convolution rate on its own layer shapes (``common.conv_rate``). Used by ``pipeline.py``."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator

import torch
from common import best_seconds, conv_rate, count_flops, synchronized

from reenact_core.engine.speed import compile_problem
from reenact_core.models.folding import fold_batch_norms
from reenact_core.models.kind import eval_mode
from reenact_core.models.stylegan2 import StyledConv
from reenact_core.weights import kind

Variant = tuple[str, Callable[[], torch.Tensor] | None]   # None: a row saying why the lever is skipped


def _drop_weight_caches(module: torch.nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "_weight_cache"):
            m._weight_cache = None


def _compiled_variant(label: str, module: torch.nn.Module,
                      call: Callable[[torch.nn.Module, torch.dtype | None], torch.Tensor]) -> Iterator[Variant]:
    """A compiled copy of ``module`` (as ``load_reenact_models(compile_encoders=True)`` compiles), its first call
    timed in the label; a row saying why when this machine cannot compile."""
    device = next(module.parameters()).device
    problem = compile_problem(device)
    if problem is not None:
        yield f"{label} + torch.compile: skipped ({problem})", None
        return
    compiled = copy.deepcopy(module)
    compiled.compile()
    start = time.perf_counter()
    synchronized(lambda: call(compiled, None), device)
    yield f"{label} + torch.compile (1st call {time.perf_counter() - start:.0f} s)", lambda: call(compiled, None)


def _opt_in_variants(label: str, module: torch.nn.Module,
                     call: Callable[[torch.nn.Module, torch.dtype | None], torch.Tensor], compile_: bool,
                     bf16: bool) -> Iterator[Variant]:
    """``module`` under ``torch.compile`` and a bf16 copy of it; ``call(m, dtype)`` runs ``m`` with inputs cast to
    ``dtype`` (None: as they are) and returns fp32."""
    if compile_:
        yield from _compiled_variant(label, module, call)
    if bf16:
        copy16 = copy.deepcopy(module).to(torch.bfloat16)
        yield f"{label} + bf16 (opt-in)", lambda: call(copy16, torch.bfloat16)


def generator_variants(g, w: torch.Tensor, mean: torch.Tensor, compile_: bool, bf16: bool) -> Iterator[Variant]:
    """G at ψ = 0.7: the per-call weight preparation cached or not, the StyledConv epilogue (demodulation, noise,
    bias, activation) fused or op by op, opt-in ``torch.compile`` and bf16."""
    def run(m, dtype=None, fused=True, cached=True):
        StyledConv.fused_epilogue = fused
        try:
            if not cached:
                _drop_weight_caches(m)
            return m(w.to(dtype or w.dtype), truncation=0.7, truncation_latent=mean.to(dtype or mean.dtype)).float()
        finally:
            StyledConv.fused_epilogue = True
    yield "weights per call, epilogue op by op", lambda: run(g, fused=False, cached=False)
    yield "weight cache, epilogue op by op", lambda: run(g, fused=False)
    yield "weights per call, fused epilogue", lambda: run(g, cached=False)
    yield "weight cache + fused epilogue", lambda: run(g)
    yield from _opt_in_variants("cache + fused", g, run, compile_, bf16)


def encoder_variants(name: str, x: torch.Tensor, dtype: torch.dtype, compile_: bool,
                     bf16: bool) -> Iterator[Variant]:
    """e4e or DECA: as built (contiguous weights, BatchNorms), channels-last alone, BatchNorms folded alone, the
    inference set-up (both; DECA's in-place ReLUs/adds run in every row), opt-in ``torch.compile`` and bf16."""
    k = kind(name)
    plain = eval_mode(k.build(k.config_from_dict({})).to(device=x.device, dtype=dtype), False)
    _randomise_batch_norms(plain)
    channels_last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    folded = fold_batch_norms(copy.deepcopy(plain))
    tuned = k.set_mode(copy.deepcopy(plain), False)
    yield "contiguous weights, BN", lambda: plain(x).float()
    yield "channels-last, BN", lambda: channels_last(x).float()
    yield "contiguous, BN folded", lambda: folded(x).float()
    yield "inference set-up (BN folded, ch-last)", lambda: tuned(x).float()
    yield from _opt_in_variants("inference set-up", tuned, lambda m, d=None: m(x.to(d or x.dtype)).float(),
                                compile_, bf16)


def _randomise_batch_norms(module: torch.nn.Module) -> None:
    """BatchNorm statistics and affine terms near those of a trained network (as built they are the identity,
    which would make the folding's error look smaller than it is)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, low, high in ((m.running_mean, -0.1, 0.1), (m.running_var, 0.5, 1.5),
                                     (m.weight, 0.5, 1.5), (m.bias, -0.1, 0.1)):
                    t.copy_(torch.rand(t.shape, generator=g) * (high - low) + low)


def print_levers(title: str, variants: Iterator[Variant], batch: int, device: torch.device) -> None:
    """One row per variant: ms/frame, time relative to the first variant, the output's largest difference from
    the first variant's as a fraction of that output's range, and the rate as a fraction of the conv rate."""
    rows = list(variants)
    for lever, fn in rows:
        if fn is None:
            print(f"{title:<10} {lever}")
    rows = [(lever, fn) for lever, fn in rows if fn is not None]
    reference_fn = rows[0][1]
    reference = reference_fn().float()
    flops = count_flops(reference_fn)
    ceiling = conv_rate(reference_fn, device)
    span = (reference.max() - reference.min()).item()
    base = None
    for lever, fn in rows:
        seconds = best_seconds(lambda fn=fn: synchronized(fn, device), repeats=2)
        base = base or seconds
        error = (fn().float() - reference).abs().max().item() / span
        print(f"{title:<10} {lever:<40} {batch:>5} {seconds / batch * 1e3:>9.1f} {seconds / base:>6.2f} "
              f"{error:>9.1e} {flops / seconds / 1e9 / ceiling:>6.2f}")
    print(f"{title:<10} 3x3 conv rate on its layer shapes: {ceiling:.1f} GFLOP/s ({reference.dtype})")


LEVER_HEADER = (f"{'network':<10} {'lever':<40} {'batch':>5} {'ms/frame':>9} {'time':>6} {'max err':>9} "
                f"{'conv':>6}\n(time: relative to the network's first row; max err: largest difference from the first "
                f"row / its output range; conv: achieved GFLOP/s / plain 3x3 conv GFLOP/s on the same layer shapes)")
