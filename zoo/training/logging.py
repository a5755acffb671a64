"""Run logging: scalars to JSONL (always) and TensorBoard (optional), image grids as PNG."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor


class RunLogger:
    """Appends one JSON object per logging step to `<run>/metrics.jsonl` and mirrors it to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency; a broken install should not stop training
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        record = {"step": step, **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def save_grid(images: Tensor, path: Path, nrow: int | None = None) -> None:
    """Save images in [-1, 1] (B, C, H, W) as one PNG grid."""
    from torchvision.utils import save_image

    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().float().cpu().add(1).div(2).clamp(0, 1), str(path), nrow=nrow, padding=1)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The JSONL log of a run as a list of records."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def interleave(a: Tensor, b: Tensor) -> Tensor:
    """(B, ...) and (B, ...) -> (2B, ...) as a0, b0, a1, b1, ... (originals beside reconstructions)."""
    return torch.stack([a, b], dim=1).flatten(0, 1)


def note_diverging(scalars: dict[str, float], seen: dict[str, float], step: int, optimizer_of: dict[str, str],
                   limit: float, announce: bool) -> None:
    """Record in `seen` (and warn once on stderr about) each logged loss beyond `limit` in magnitude: finite, but the
    run is no longer training (a loss of 3.8e29 once ended a run with exit 0 and no word)."""
    import sys

    for key, value in scalars.items():
        if key.endswith("/loss") and abs(value) > limit and key not in seen:
            seen[key] = value
            if announce:
                opt = optimizer_of.get(key.split("/")[0], "*")
                print(f"zoo: warning: {key} = {value:.3g} at step {step}: training is diverging (try a lower "
                      f"optim.{opt}.lr or set optim.{opt}.grad_clip)", file=sys.stderr, flush=True)
