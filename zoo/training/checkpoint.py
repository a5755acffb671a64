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

from zoo.training.signals import deferred_signals

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
WEIGHTS, EMA_WEIGHTS, STATE, CONFIG = "model.safetensors", "ema.safetensors", "trainer_state.pt", "config.yaml"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or unreadable."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk, a read-only folder); nothing partial is left behind."""


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


def make_group_readable(path: Path) -> None:
    """`tempfile.mkdtemp` creates 0700 directories; a checkpoint gets the umask's permissions like the rest of the
    run (group-readable under the usual 022 / 002)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)


def _free_space(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path if path.is_dir() else path.parent).free / 2**20:.1f} MiB free there"
    except OSError:
        return "free space unknown"


def write_checkpoint(run_dir: str | Path, step: int, *, weights: dict[str, Tensor], trainer_state: dict[str, Any],
                     config_yaml: str, ema: dict[str, Tensor] | None = None, keep_last: int = 0) -> Path:
    """Write checkpoint `step` atomically and delete all but the newest `keep_last` (0 keeps all).

    Raises CheckpointError, leaving no partial files, when `step` exists already (never silently kept) or the write
    fails (a full disk, a read-only folder). SIGINT / SIGTERM wait until the new checkpoint is in place and the old
    ones are pruned, then take effect.
    """
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step_{step:08d}"
    if final.exists():
        raise CheckpointError(f"checkpoint {str(final)!r} exists already; a run never overwrites or keeps an older "
                              f"checkpoint in place of a new one (move it away to write this step)")
    with deferred_signals():  # a second Ctrl-C waits for the checkpoint and the pruning (zoo/training/signals.py)
        final = _write(root, final, weights, trainer_state, config_yaml, ema)
        if keep_last > 0:
            for old in checkpoint_dirs(run_dir)[:-keep_last]:
                prune(old)
    return final


def _write(root: Path, final: Path, weights: dict[str, Tensor], trainer_state: dict[str, Any], config_yaml: str,
           ema: dict[str, Tensor] | None) -> Path:
    """Write the files under a temporary name, fsync them, rename the directory to `final`."""
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
        make_group_readable(tmp)
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
    except Exception as err:  # noqa: BLE001 - a full disk surfaces as OSError, RuntimeError (torch) or SafetensorError
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError(f"could not write checkpoint {str(final)!r} ({type(err).__name__}: "
                                   f"{str(err).splitlines()[0] if str(err) else 'no detail'}; {_free_space(root)}): "
                                   f"free disk space or fix the folder's permissions, then resume from the last "
                                   f"complete checkpoint (--resume auto)") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune(ckpt: Path) -> None:
    """Delete an old checkpoint: renamed out of the `step_*` namespace first, so that however the deletion ends, no
    half-deleted directory is ever taken for a checkpoint (`rundir.clean_temporaries` removes a leftover)."""
    doomed = ckpt.with_name(f".tmp-{ckpt.name}-pruned")
    try:
        os.rename(ckpt, doomed)
    except OSError:
        return  # gone already, or not ours to move: left as it is
    shutil.rmtree(doomed, ignore_errors=True)


def read_weights(ckpt: Path, ema: bool = False) -> dict[str, Tensor]:
    path = ckpt / (EMA_WEIGHTS if ema else WEIGHTS)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read weights {str(path)!r}: {err}. The file is damaged or not a zoo "
                              f"checkpoint; resume from an earlier checkpoint in {str(ckpt.parent)!r}") from None


TRAINER_STATE_KEYS = ("step", "optimizers", "schedulers", "data", "rng")


def read_trainer_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"cannot read trainer state {str(path)!r}: {str(err).splitlines()[0]}. The file is "
                              f"damaged or not a zoo checkpoint; resume from an earlier checkpoint in "
                              f"{str(ckpt.parent)!r}") from None
    missing = [k for k in TRAINER_STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"trainer state {str(path)!r} lacks {', '.join(missing)} (expected keys: "
                              f"{', '.join(TRAINER_STATE_KEYS)}); it is damaged or from another program: resume from "
                              f"an earlier checkpoint in {str(ckpt.parent)!r}")
    return state


def first_nonfinite(weights: dict[str, Tensor]) -> str | None:
    """The key of the first floating-point tensor holding NaN or inf, else None."""
    return next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)


def check_finite(weights: dict[str, Tensor], source: str) -> None:
    """Refuse weights holding NaN or inf, naming the first such tensor."""
    if (key := first_nonfinite(weights)) is not None:
        bad = int((~torch.isfinite(weights[key])).sum())
        raise CheckpointError(f"{source}: {key} holds {bad} non-finite value(s) (NaN/inf); these weights are "
                              f"unusable: use an earlier checkpoint of the run")


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
