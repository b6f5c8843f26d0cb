"""torchrun / DDP plumbing: process group from the environment, device per rank, reductions, agreement.

Launch: ``torchrun --nproc_per_node=N -m reenact_core train ...`` sets RANK, LOCAL_RANK and WORLD_SIZE;
without them training runs as a single process. gloo on the CPU, NCCL on CUDA. The command line gives each rank one CPU thread (``reenact_core.threads``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import InputError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``, and whether a group was set up."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that logs and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.initialised:
            dist.barrier()

    def close(self) -> None:
        if self.initialised and dist.is_initialized():
            dist.destroy_process_group()


def from_environment(device: str) -> DistContext:
    """A :class:`DistContext` for this process (torchrun variables, or a single process).

    ``device`` is ``cpu``, ``cuda`` (rank r uses ``cuda:LOCAL_RANK``), ``cuda:N`` or ``mps`` (single process
    only). Raises InputError, one line, for more ranks on a node than its GPUs or a device that is absent.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    kind = torch.device(device).type
    if kind == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise InputError("device cuda requested but no CUDA device is visible")
        if world > 1 and int(os.environ.get("LOCAL_WORLD_SIZE", world)) > count:
            raise InputError(f"{os.environ.get('LOCAL_WORLD_SIZE', world)} ranks on this node but only {count} "
                             f"GPU(s): use --nproc_per_node={count} or fewer")
        dev = torch.device("cuda", local if world > 1 else (torch.device(device).index or 0))
        torch.cuda.set_device(dev)
    elif kind == "mps" and world > 1:
        raise InputError("distributed training on MPS is not supported: use one process or --device cpu")
    else:
        dev = torch.device(device)
    if world == 1:
        return DistContext(device=dev)
    dist.init_process_group("nccl" if kind == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local, dev, True)


def reduce_mean(values: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, float]:
    """Mean of each scalar over all ranks (every rank gets the same floats)."""
    if not values:
        return {}
    names = sorted(values)
    stacked = torch.stack([values[n].detach().float().reshape(()) for n in names]).to(ctx.device)
    if ctx.initialised:
        dist.all_reduce(stacked)
        stacked /= ctx.world_size
    return dict(zip(names, stacked.tolist()))


def reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """``values`` (a CPU tensor) summed over all ranks, on the CPU (unchanged in a single process)."""
    if not ctx.initialised:
        return values
    values = values.to(ctx.device)
    dist.all_reduce(values)
    return values.cpu()


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not ctx.initialised:
        return flag
    t = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def parameters_agree(module: torch.nn.Module, ctx: DistContext) -> bool:
    """Whether ``module``'s parameters are bit-equal on every rank (compared by their max and min over ranks)."""
    if not ctx.initialised:
        return True
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()]).to(ctx.device)
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return bool(torch.equal(high, low))
