"""Speed options of a model set: each network's float type and opt-in ``torch.compile`` of the encoders.

Measured on a 2-thread AMD EPYC CPU (README "Speed and precision", ``bench/pipeline.py``): bf16 makes e4e and
DECA's E_flame 0.4–0.6× as slow within their documented ``BF16_ERROR``, while bf16 G differs by 2–2.4 % of the
output range, so on a CPU the generator stays float32 unless asked. ``torch.compile`` pays for e4e and DECA
after a first call of tens of seconds, not for G (its steps call ``synthesize``, not ``forward``).
"""
from __future__ import annotations

import shutil

import torch


def has_native_bfloat16(device: str | torch.device) -> bool:
    """True where bf16 convolutions run natively: any CUDA device that supports bf16, a CPU with AVX-512 BF16 /
    AMX (oneDNN's check); elsewhere (older CPUs emulate it, slower than float32) False."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return device.type == "mps"


def network_dtypes(dtype: torch.dtype, device: str | torch.device,
                   generator_dtype: torch.dtype | None = None) -> tuple[torch.dtype, torch.dtype, str | None]:
    """``(G's dtype, e4e and DECA's dtype, note)`` for a requested ``dtype``.

    e4e and DECA run in ``dtype`` (bf16 only where :func:`has_native_bfloat16`, else float32 and the note says
    so). G (with A and FSR) runs in ``generator_dtype``; None means float32 on a CPU (bf16 G costs 2 % of the
    output range for 0.6× the time) and ``dtype`` on an accelerator. ``note`` is None when nothing is worth
    telling.
    """
    device = torch.device(device)
    note = None
    encoders = dtype
    if dtype == torch.bfloat16 and not has_native_bfloat16(device):
        encoders, note = torch.float32, f"bfloat16 is not native on this {device.type}: e4e and DECA run in float32"
    if generator_dtype is None:
        generator_dtype = torch.float32 if device.type == "cpu" else dtype
    return generator_dtype, encoders, note


def compile_problem(device: str | torch.device) -> str | None:
    """Why ``torch.compile`` cannot build code for ``device`` here (no C++ compiler on a CPU, no Triton on a
    GPU), or None when it can."""
    device = torch.device(device)
    if device.type == "cpu":
        if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
            return "torch.compile needs a C++ compiler (g++ or clang++) on the PATH for CPU code; none was found"
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton
        return None if has_triton() else "torch.compile needs Triton for CUDA code (pip install triton)"
    return f"torch.compile is not supported on {device.type} here"

