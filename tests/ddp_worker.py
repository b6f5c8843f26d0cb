"""Run by the `ddp` tests under torchrun: trains a method named on the command line and saves its parameters.

    python -m torch.distributed.run --standalone --nproc_per_node=N tests/ddp_worker.py METHOD OUT JSON_OVERRIDES
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reenact_core.training.distributed import from_environment, parameters_agree  # noqa: E402
from reenact_core.training.loop import train  # noqa: E402


def main(kind: str, out: str, overrides: str) -> None:
    import training_fixtures as fx

    torch.set_num_threads(1)   # one thread per rank, as the command line sets under torchrun
    ctx = from_environment("cpu")
    try:
        method = fx.make_method(kind, json.loads(overrides), ctx)
        result = train(method, Path(out) / "run", ctx)
        agree = parameters_agree(method.trainable(), ctx)
        if ctx.is_main:
            torch.save({"params": {k: v.clone() for k, v in method.trainable().state_dict().items()},
                        "agree": agree, "step": result.step, "interrupted": result.interrupted},
                       Path(out) / "result.pt")
        ctx.barrier()   # every rank done before the group is torn down (gloo may abort a rank otherwise)
    finally:
        ctx.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
