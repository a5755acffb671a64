"""The run directory's integrity: one run per directory, resumed branches that replace (never mix with) abandoned ones,
and a history of what ran.

A run directory holds `config.yaml` (the recipe that runs now), `history.jsonl` (one line per start or resume, with
the settings changed at a resume), `metrics.jsonl`, `checkpoints/step_XXXXXXXX/` and image grids. Resuming from an
earlier checkpoint abandons the later ones: they and their metrics move to `abandoned/<time>-from-step_N/`, never
silently kept (a later `--resume auto` or `load_checkpoint` would pick the old branch) and never silently deleted.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from zoo.config import ConfigError, ModelSection, Recipe, drop_unread_eval_keys, from_dict, read_yaml, to_dict
from zoo.training.checkpoint import CHECKPOINTS, CONFIG, CheckpointError, checkpoint_dirs
from zoo.training.logging import repair_torn_tail

HISTORY, METRICS, CONFIG_FILE, ABANDONED = "history.jsonl", "metrics.jsonl", "config.yaml", "abandoned"
LOCK_FILE = "run.lock"  # held by the one process writing the run (zoo/training/runlock.py); never moved aside
RUN_MARKERS = (CONFIG_FILE, METRICS, HISTORY, CHECKPOINTS)

# Settings that define a run: a checkpoint resumes only into a recipe that agrees on them. The data order (epoch,
# position) is relative to the seed, the batch size, the split and whether the last batch is kept, and optimizer states to the players they cover.
# Everything else (max_steps, lr and the other optimizer hyper-parameters, schedules, logging, EMA decay, data.root,
# data.on_device) may change at a resume: it is applied, announced and recorded in history.jsonl.
IMMUTABLE = ("model", "data.name", "data.split", "data.batch_size", "data.drop_last", "data.options", "train.seed",
             "optim.*.players", "train.ema.players", "optim")


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked (it holds another run, or is not a directory)."""


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def holds_run(out: Path) -> list[str]:
    """The run files `out` holds (empty for a fresh or absent directory)."""
    if not out.is_dir():
        return []
    found = [m for m in RUN_MARKERS if (out / m).exists() and m != CHECKPOINTS]
    if checkpoint_dirs(out):
        found.append(f"{CHECKPOINTS}/{checkpoint_dirs(out)[-1].name}")
    return found


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {str(out)!r} is a file, not a directory; pass a directory for the run "
                          f"(e.g. runs/<name>)")


def refuse_other_run(out: Path) -> None:
    """A new run never writes into a directory that holds another run's files."""
    check_out_dir(out)
    found = holds_run(out)
    if found:
        raise RunDirError(f"{str(out)!r} already holds a run ({', '.join(found)}); resume it (--resume auto, or "
                          f"Trainer.resume(run_dir) in Python) or choose another output directory; nothing was "
                          f"overwritten")


def clean_temporaries(out: Path) -> list[Path]:
    """Remove `.tmp-step_*` directories a killed checkpoint write left behind (never a complete checkpoint)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.name.startswith(".tmp-step_")]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def abandon_after(out: Path, step: int, *, reason: str,
                  on_moved: Callable[[dict[Path, Path]], None] = lambda moves: None) -> Path | None:
    """Move the checkpoints after `step`, and the metrics logged after it, to `abandoned/<time>-<reason>/`.

    Returns that folder, or None when nothing came after `step`.
    """
    later = [c for c in checkpoint_dirs(out) if int(c.name.split("_")[-1]) > step]
    metrics = out / METRICS
    lines = metrics.read_text().splitlines(keepends=True) if metrics.is_file() else []
    keep, drop = [], []
    for line in lines:
        try:
            (drop if int(json.loads(line)["step"]) > step else keep).append(line)
        except (ValueError, KeyError, TypeError):
            keep.append(line)  # not ours to judge; left in place
    if not later and not drop:
        return None
    dest = out / ABANDONED / f"{now().replace(':', '')}-{reason}"
    dest.mkdir(parents=True, exist_ok=False)
    moves = {}
    for ckpt in later:
        os.rename(ckpt, dest / ckpt.name)
        moves[ckpt] = dest / ckpt.name
    on_moved(moves)  # e.g. the catalog's rows follow the moved checkpoints (`zoo train` passes that)
    if drop:
        (dest / METRICS).write_text("".join(drop))
        tmp = metrics.with_name(f".{METRICS}.tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, metrics)
    return dest


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _immutable(key: str) -> bool:
    parts = key.split(".")
    for rule in IMMUTABLE:
        pattern = rule.split(".")
        if rule == "optim":  # an optimizer added or removed: handled by the caller through the key sets
            continue
        if len(parts) >= len(pattern) and all(p in ("*", q) for p, q in zip(pattern, parts)):
            return True
    return False


def compare_recipes(old: Any, new: Any) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """(immutable differences, mutable differences) between a checkpoint's recipe and the one resuming it, as
    {dotted key: (old, new)}."""
    a, b = to_dict(old), to_dict(new)
    fixed, free = {}, {}
    if set(a["optim"]) != set(b["optim"]):
        fixed["optim"] = (sorted(a["optim"]), sorted(b["optim"]))
    if (a["train"].get("ema") is None) != (b["train"].get("ema") is None):
        fixed["train.ema"] = (a["train"].get("ema"), b["train"].get("ema"))
    fa, fb = flatten(a), flatten(b)
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        if va == vb or key.startswith("optim.") and key.split(".")[1] not in set(a["optim"]) & set(b["optim"]):
            continue
        if key.startswith("train.ema") and "train.ema" in fixed:
            continue
        (fixed if _immutable(key) else free)[key] = (va, vb)
    return fixed, free


def immutable_error(ckpt: Path, fixed: dict[str, tuple[Any, Any]]) -> ConfigError:
    listed = "; ".join(f"{k}: {v[0]!r} in the checkpoint, {v[1]!r} now" for k, v in fixed.items())
    return ConfigError(f"cannot resume {str(ckpt)!r}: settings that define the run differ from the checkpoint's "
                       f"({listed}). They cannot change within a run: restore them, or start a new run elsewhere "
                       f"(another --out) to train with them")


def append_history(out: Path, event: str, **fields: Any) -> dict[str, Any]:
    entry = {"time": now(), "event": event, **fields}
    with (out / HISTORY).open("a") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    return entry


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in changes.items())


def read_history(out: str | Path) -> list[dict[str, Any]]:
    path = Path(out) / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def abandon_all(out: Path, *, reason: str) -> Path | None:
    """Move every file of a run that saved no checkpoint to `abandoned/<time>-<reason>/` (a restart from step 0)."""
    present = [p for p in out.iterdir() if p.name not in (ABANDONED, CHECKPOINTS, LOCK_FILE)] if out.is_dir() else []
    if not present:
        return None
    dest = out / ABANDONED / f"{now().replace(':', '')}-{reason}"
    dest.mkdir(parents=True, exist_ok=False)
    for path in present:
        os.rename(path, dest / path.name)
    return dest


def apply_optimizer_settings(optimizers: dict, schedulers: dict, recipe: Any, changed: dict[str, Any]) -> None:
    """After loading optimizer and scheduler states, make the recipe's hyper-parameters the ones that run: a loaded
    state carries the checkpoint's lr, betas, eps and weight decay, which would silently override a changed recipe."""
    for key, opt in optimizers.items():
        entry = key.split("/")[0]  # a phase with its own state ("autoencoder/enc_adv") follows its optim entry
        cfg, sched = recipe.optim[entry], schedulers[key]
        if not any(k.startswith(f"optim.{entry}.") for k in changed) and "train.max_steps" not in changed:
            continue
        for group in opt.param_groups:
            group.update(betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, initial_lr=cfg.lr)
        sched.base_lrs = [cfg.lr] * len(opt.param_groups)
        lrs = [base * factor(sched.last_epoch) for base, factor in zip(sched.base_lrs, sched.lr_lambdas)]
        for group, lr in zip(opt.param_groups, lrs):
            group["lr"] = lr
        sched._last_lr = lrs  # what get_last_lr() reports (and logs) until the next scheduler step


def saved_recipe(path: Path, model_class: Any) -> Recipe:
    """A checkpoint's config.yaml read back as a Recipe, its model section parsed with `model_class`'s config (the
    model being resumed: the name is checked first, so that a vgh checkpoint never parses as vgh_plus)."""
    tree = read_yaml(path)
    if isinstance(tree, dict):  # run folders saved before the eval section lost its never-read keys still load
        tree = drop_unread_eval_keys(tree)
    section = dict(tree.get("model") or {}) if isinstance(tree, dict) else {}
    name = section.pop("name", None)
    if name != model_class.name:
        raise ConfigError(f"model.name: the checkpoint's recipe trains {name!r}, not {model_class.name!r}")
    model = ModelSection(name, from_dict(model_class.config_class, section, "model"))
    return from_dict(Recipe, {**tree, "model": model})


def changed_settings(ckpt: Path, recipe: Any, model_class: Any) -> dict[str, tuple[Any, Any]]:
    """The settings `recipe` changes relative to checkpoint `ckpt`'s recipe; ConfigError if one that defines the run
    (`IMMUTABLE`) differs, CheckpointError if the checkpoint's config.yaml is unreadable."""
    try:
        name = (read_yaml(ckpt / CONFIG).get("model") or {}).get("name")
    except (ConfigError, AttributeError) as err:
        raise CheckpointError(f"{str(ckpt / CONFIG)!r}: cannot read the checkpoint's recipe: {err}") from None
    if name != recipe.model.name:
        raise immutable_error(ckpt, {"model.name": (name, recipe.model.name)})
    try:
        saved = saved_recipe(ckpt / CONFIG, model_class)
    except ConfigError as err:
        raise CheckpointError(f"{str(ckpt / CONFIG)!r}: cannot read the checkpoint's recipe: {err}") from None
    fixed, free = compare_recipes(saved, recipe)
    if fixed:
        raise immutable_error(ckpt, fixed)
    return free


def claim(out: Path, *, step: int, resumed_from: Path | None, restart: bool, changes: dict[str, tuple[Any, Any]],
          config_yaml: str, is_main: bool, sync: Callable[[], None] = lambda: None,
          on_moved: Callable[[dict[Path, Path]], None] = lambda moves: None) -> bool:
    """Make `out` this run's directory before anything is written; returns whether this process writes there.

    A new run refuses a directory holding another run (on every process, so that all of them stop); a run resumed
    from an earlier checkpoint of its own directory moves the later checkpoints and metrics aside; a restart of a
    run without checkpoint moves its files aside; leftovers of killed checkpoint writes are removed; config.yaml and
    history.jsonl record what runs. Each of these is announced on stdout. `sync` is a barrier of all processes.
    """
    own = resumed_from is not None and resumed_from.parent.parent.resolve() == out.resolve()
    if not own and not restart:
        refuse_other_run(out)
    sync()  # every process has looked before the main one writes
    if not is_main:
        return False
    notes = []
    out.mkdir(parents=True, exist_ok=True)
    if restart and (moved := abandon_all(out, reason="restart")):
        notes.append(f"{out} held a run without a checkpoint; restarting it from step 0, its files moved to {moved}")
    if torn := repair_torn_tail(out / METRICS):  # before anything reads or appends to it
        notes.append(torn)
    if stale := clean_temporaries(out):
        notes.append(f"removed {len(stale)} incomplete checkpoint write(s) left by an interrupted run: "
                     f"{', '.join(p.name for p in stale)}")
    if own and (moved := abandon_after(out, step, reason=f"after-step_{step:08d}",
                                               on_moved=on_moved)):
        notes.append(f"this run continues from step {step}: its later checkpoints and metrics "
                     f"({', '.join(sorted(p.name for p in moved.iterdir()))}) were moved to {moved}")
    if changes:
        notes.append(f"settings changed at this resume (applied, recorded in {HISTORY}): {describe_changes(changes)}")
    (out / CONFIG_FILE).write_text(config_yaml)
    append_history(out, "resume" if resumed_from else "start", step=step,
                   checkpoint=str(resumed_from) if resumed_from else None,
                   changes={k: list(v) for k, v in changes.items()}, notes=notes)
    for note in notes:
        print(f"zoo: {note}", flush=True)
    return True
