"""Run logging: scalars to JSONL (always), image grids as PNG (always), and the optional trackers: TensorBoard
(scalars, sample / reconstruction grids, the resolved recipe as text and as hparams) and Weights & Biases (the same,
the recipe as the run config). `train.loggers` picks the trackers."""
from __future__ import annotations

import json
import math
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

import torch
from einops import rearrange
from torch import Tensor

from zoo.training.tracker_setup import prepare_wandb


class RunLogger:
    """Appends one JSON object per logging step to `<run>/metrics.jsonl` and mirrors scalars and image grids to the
    trackers in `loggers` ("tensorboard": `<run>/tb`; "wandb": a run under `<run>/wandb`, resumed across restarts).

    Args:
        run_dir: the run directory.
        loggers: tracker names (`TrainConfig.loggers`).
        config: the resolved recipe as a nested dict: TensorBoard text + hparams, the W&B run config.
        project: the W&B project.
    """

    def __init__(self, run_dir: Path, loggers: Sequence[str] = ("tensorboard",), config: dict[str, Any] | None = None,
                 project: str = "zoo"):
        self.path = run_dir / "metrics.jsonl"
        self.writer = self.wandb = None
        if "tensorboard" in loggers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency; a broken install should not stop training
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))
                if config is not None:
                    self._tensorboard_config(config)
        if "wandb" in loggers:
            self.wandb = _wandb_run(run_dir, config, project)

    def _tensorboard_config(self, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.writer.add_text("recipe", "```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)
        flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(config).items()}
        for summary in hparams(flat, {}):  # the HParams tab: one row per run, columns = recipe keys
            self.writer.file_writer.add_summary(summary)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        record = {"step": step, **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(dict(scalars), step=step)

    def log_images(self, tag: str, images: Tensor, step: int, nrow: int | None = None) -> None:
        """A grid of images in [-1, 1] (B, C, H, W) to the trackers under `tag` (the PNG is `save_grid`'s job)."""
        if self.writer is None and self.wandb is None:
            return
        from torchvision.utils import make_grid

        grid = make_grid(images.detach().float().cpu().add(1).div(2).clamp(0, 1),
                         nrow=nrow or max(1, int(math.sqrt(images.shape[0]))), padding=1)  # (3, H', W')
        if self.writer is not None:
            self.writer.add_image(tag, grid, step)
        if self.wandb is not None:
            import wandb

            array = rearrange(grid.mul(255).round().to(torch.uint8), "c h w -> h w c").numpy()
            self.wandb.log({tag: wandb.Image(array)}, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested recipe sections as dotted keys (the override syntax)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _wandb_run(run_dir: Path, config: dict[str, Any] | None, project: str):
    """A W&B run for this run directory; its id is kept in `<run>/wandb_id` so a resumed run continues it."""
    if note := prepare_wandb(["wandb"]):  # the Python API; `zoo train` did this before making the run directory
        print(f"zoo: {note}", flush=True)
    import wandb
    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)  # W&B ids: [a-z0-9]
    run_dir.mkdir(parents=True, exist_ok=True)
    id_file.write_text(run_id)
    return wandb.init(project=project, name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir),
                      config=config, settings=wandb.Settings(silent=True))


def save_grid(images: Tensor, path: Path, nrow: int | None = None) -> None:
    """Save images in [-1, 1] (B, C, H, W) as one PNG grid."""
    from torchvision.utils import save_image

    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().float().cpu().add(1).div(2).clamp(0, 1), str(path), nrow=nrow, padding=1)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The JSONL log of a run as a list of records. A torn last line (the process killed, or the disk full, while
    writing it) is skipped: the records before it are whole, and a resume cuts it off (`repair_torn_tail`)."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON ({line[:60]!r}); the file was edited or damaged "
                                 f"(only a torn last line is skipped)") from None
    return records


def repair_torn_tail(path: Path) -> str | None:
    """Cut a torn last line off a JSONL file (no newline at its end, or not JSON), so that the next append starts a
    line of its own; returns what was done (None when the file was whole)."""
    data = path.read_bytes() if path.is_file() else b""
    keep = len(data) if data.endswith(b"\n") or not data else data.rfind(b"\n") + 1
    if keep == len(data) and data:
        last_start = data.rstrip(b"\n").rfind(b"\n") + 1
        try:
            json.loads(data[last_start:])
        except ValueError:
            keep = last_start
    if keep == len(data):
        return None
    with path.open("r+b") as f:
        f.truncate(keep)
        os.fsync(f.fileno())
    whole = data[:keep].count(b"\n")
    return (f"{path.name}: its last line was torn ({len(data) - keep} bytes: the run was killed or the disk was full "
            f"while writing it); removed it, the {whole} whole lines before it are kept")


def interleave(a: Tensor, b: Tensor) -> Tensor:
    """(B, ...) and (B, ...) -> (2B, ...) as a0, b0, a1, b1, ... (originals beside reconstructions)."""
    return rearrange([a, b], "pair n ... -> (n pair) ...")


def note_diverging(scalars: dict[str, float], seen: dict[str, float], step: int, optimizer_of: dict[str, str],
                   limit: float, announce: bool) -> None:
    """Record in `seen` (and warn once on stderr about) each logged loss beyond `limit` in magnitude: finite, but the
    run is no longer training (a loss of 3.8e29 once ended a run with exit 0 and no word)."""

    for key, value in scalars.items():
        if key.endswith("/loss") and abs(value) > limit and key not in seen:
            seen[key] = value
            if announce:
                opt = optimizer_of.get(key.split("/")[0], "*")
                print(f"zoo: warning: {key} = {value:.3g} at step {step}: training is diverging (try a lower "
                      f"optim.{opt}.lr or set optim.{opt}.grad_clip)", file=sys.stderr, flush=True)
