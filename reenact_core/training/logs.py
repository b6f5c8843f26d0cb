"""Training logs on rank 0: a tqdm bar (ETA, loss), TensorBoard scalars and image grids, and a JSONL file."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"


class TrainLogger:
    """Writes to ``folder`` (rank 0); other ranks get a logger that does nothing.

    TensorBoard is optional (the ``[train]`` extra); without it a one-line note says so and the JSONL log and
    the bar carry on.
    """

    def __init__(self, folder: Path, total_steps: int, start_step: int, enabled: bool, desc: str,
                 progress: bool = True):
        self.enabled = enabled
        self.bar = self.board = self.jsonl = None
        if not enabled:
            return
        from tqdm import tqdm

        folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(folder / LOG_FILE, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.board = SummaryWriter(str(folder / TENSORBOARD_DIR))
        except ImportError:
            print("note: TensorBoard is not installed (pip install 'comfyui-latent-reenact[train]'); logging to "
                  f"{folder / LOG_FILE} only", file=sys.stderr)
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step", file=sys.stderr,
                            dynamic_ncols=True)

    def step(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update(step - self.bar.n)

    def scalars(self, step: int, tag: str, values: dict[str, float]) -> None:
        """One JSONL record ``{"step", "kind": tag, "time", **values}`` and TensorBoard ``tag/name`` scalars."""
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, "kind": tag, "time": time.time(), **values}) + "\n")
        self.jsonl.flush()
        if self.board is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.board.add_scalar(f"{tag}/{name}", value, step)

    def images(self, step: int, tag: str, columns: list[torch.Tensor]) -> None:
        """A grid with one row per sample and one column per tensor (each (B, 3, H, W) in [-1, 1])."""
        if self.board is None:
            return
        rows = torch.cat([torch.cat([c[i].float().cpu() for c in columns], dim=2) for i in range(len(columns[0]))],
                         dim=1)
        self.board.add_image(tag, ((rows.clamp(-1, 1) + 1) / 2), step)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)

    def close(self) -> None:
        for thing in (self.bar, self.board, self.jsonl):
            if thing is not None:
                thing.close()
