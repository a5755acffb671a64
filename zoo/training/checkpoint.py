"""Checkpoints: safetensors weights + a `weights_only`-loadable trainer state, written atomically.

Layout of one checkpoint, `<run>/checkpoints/step_00001000/`:
    model.safetensors     every player's weights, keys `players.<name>.<param>`
    ema.safetensors       averaged weights of the EMA players (only when train.ema is set)
    trainer_state.pt      optimizers, schedulers, data position, step, RNG (torch.load(weights_only=True))
    config.yaml           the resolved recipe
The directory is written under a temporary name and renamed, so a crash never leaves a half checkpoint that
`--resume auto` could pick up. Nothing here unpickles arbitrary objects: loading executes no code.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
WEIGHTS, EMA_WEIGHTS, STATE, CONFIG = "model.safetensors", "ema.safetensors", "trainer_state.pt", "config.yaml"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or unreadable."""


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, a file inside one, or a run directory (-> its latest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; pass a run directory (runs/<name>) or one "
                              f"of its checkpoints (runs/<name>/{CHECKPOINTS}/step_XXXXXXXX)")
    if path.is_file():
        path = path.parent
    if (path / WEIGHTS).is_file():
        return path
    found = checkpoint_dirs(path)
    if not found:
        raise CheckpointError(f"{str(path)!r} holds no checkpoint: expected {WEIGHTS} in it, or "
                              f"{CHECKPOINTS}/step_XXXXXXXX/ below it (has the run saved one yet?)")
    return found[-1]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(run_dir: str | Path, step: int, *, weights: dict[str, Tensor], trainer_state: dict[str, Any],
                     config_yaml: str, ema: dict[str, Tensor] | None = None, keep_last: int = 0) -> Path:
    """Write checkpoint `step` atomically and delete all but the newest `keep_last` (0 keeps all)."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    if final.exists():  # the same step was saved already (e.g. checkpoint_every divides max_steps)
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS))
        if ema is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in ema.items()}, str(tmp / EMA_WEIGHTS))
        torch.save(trainer_state, tmp / STATE)
        (tmp / CONFIG).write_text(config_yaml)
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last > 0:
        for old in checkpoint_dirs(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_weights(ckpt: Path, ema: bool = False) -> dict[str, Tensor]:
    path = ckpt / (EMA_WEIGHTS if ema else WEIGHTS)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read weights {str(path)!r}: {err}. The file is damaged or not a zoo "
                              f"checkpoint; resume from an earlier checkpoint in {str(ckpt.parent)!r}") from None


def read_trainer_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"cannot read trainer state {str(path)!r}: {err}") from None


def load_state_into_players(players: dict[str, torch.nn.Module], weights: dict[str, Tensor], source: str) -> None:
    """Load `players.<name>.<key>` tensors into each player, strictly, with an error that names the mismatch."""
    for name, module in players.items():
        prefix = f"players.{name}."
        part = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{source}: weights of player {name!r} do not fit the model built from its "
                                  f"config: {err}") from None
