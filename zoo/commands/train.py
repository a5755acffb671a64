#!/usr/bin/env python
"""Train a model from a recipe.

    accelerate launch -m zoo.cli train recipes/tiny_vae.yaml [--out runs/x] [--resume auto|PATH] [train.max_steps=20]
    zoo train my_recipe.yaml --import my_model      # a model defined in my_model.py, outside the package

Plain `zoo train ...` works too (one process). The run directory gets config.yaml (the resolved recipe),
history.jsonl (starts and resumes, with changed settings), metrics.jsonl, tb/ (TensorBoard), samples/ and
reconstructions/ (PNG grids) and checkpoints/step_XXXXXXXX/; a resume from an earlier checkpoint moves the later
ones to abandoned/. The run and its checkpoints are recorded in the catalog (runs/catalog.sqlite, or
ZOO_CATALOG; see zoo/catalog/).

Exit status: 0 done (or stopped by a signal / a gone launcher, with a checkpoint), 2 a bad recipe, option, run
directory or checkpoint, 3 a non-finite loss or weights, 4 a failed write (full disk, permissions), 5 a peer process
lost (collective timeout), 130 aborted by a second SIGINT / SIGTERM (no new checkpoint; the earlier ones complete).
Each failure is one `error:` line; a run stopped early says at which step of how many, why, and where its checkpoint
is.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from zoo.arguments import ArgumentParser
from zoo.config import ConfigError
from zoo.data.base import BadImageError
from zoo.factory import import_modules, load_recipe
from zoo.training.checkpoint import CheckpointError, CheckpointWriteError
from zoo.training.rundir import RunDirError
from zoo.training.tracker_setup import TrackerError, prepare_wandb


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="zoo train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="YAML recipe, e.g. recipes/tiny_vae.yaml")
    parser.add_argument("overrides", nargs="*", help="typed overrides KEY=VALUE, e.g. train.max_steps=20")
    parser.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    parser.add_argument("--resume", help="'auto' (latest checkpoint in --out, if any) or a checkpoint / run path")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import this module (or .py file) first: a model defined outside the package; recorded "
                             "in the run's config.yaml (`imports`) so its checkpoints load anywhere (repeatable)")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after the options


def main(argv: list[str] | None = None) -> int:
    """Train; every failure a user can cause ends in one `error:` line and a non-zero status, not a traceback."""
    args = parse_args(argv)
    try:
        return train(args)
    except CheckpointWriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 4
    except (ConfigError, CheckpointError, RunDirError, TrackerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BadImageError as err:  # met while training; a DataLoader worker's copy carries its traceback: last line
        print(f"error: {str(err).strip().splitlines()[-1].removeprefix(f'{BadImageError.__module__}.BadImageError: ')}",
              file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a read-only folder while logging or writing samples
        print(f"error: {err.filename or 'the run directory'}: {err.strerror or err} (free disk space or fix the "
              f"folder's permissions, then resume with --resume auto)", file=sys.stderr)
        return 4


def offline_route(recipe: Path) -> str:
    """What to run instead when a recipe's dataset is missing: its offline sibling `<stem>_folder.yaml` (e.g.
    ijae_cifar10_folder.yaml, the lossy CIFAR-10 stand-in of ../shared), and, under `accelerate launch`, how to keep
    Accelerate from printing its own traceback after this one line (its -q flag; the launcher's, not ours)."""
    sibling = recipe.with_name(f"{recipe.stem}_folder.yaml")
    route = (f"\nOffline: {sibling} trains on a local image folder or tar instead (for CIFAR-10 the lossy stand-in "
             f"in ../shared/data: smoke runs only, never reference numbers)") if sibling.is_file() else ""
    launched = "ACCELERATE_MIXED_PRECISION" in os.environ or "ACCELERATE_DYNAMO_BACKEND" in os.environ
    return route + ("\n(accelerate launch -q ... shows this error without Accelerate's own traceback)" if launched
                    else "")


def train(args: argparse.Namespace) -> int:
    from zoo.training.rundir import check_out_dir, refuse_other_run
    imported = import_modules(args.imports)  # models defined outside the package register themselves here
    recipe = load_recipe(args.recipe, args.overrides)
    recipe.imports = list(dict.fromkeys([*recipe.imports, *imported]))
    out = Path(args.out) if args.out else Path("runs") / Path(args.recipe).stem
    check_out_dir(out)
    if args.resume is not None and (base := resume_base(args.resume, out)) is not None:
        recipe = resumed_recipe(base, recipe, args, imported)
    if note := prepare_wandb(recipe.train.loggers):  # no W&B login: offline, said here, before the run folder
        print(f"zoo: {note}", flush=True)
    from zoo.training import runlock
    runlock.acquire(out, probe=True)  # a live writer of --out: refused now, before anything is built
    if args.resume is None:
        refuse_other_run(out)  # before building anything

    from zoo.data import DatasetNotFoundError
    from zoo.factory import build_model
    from zoo.training import NonFiniteLossError, Trainer
    from zoo.training.distributed import PeerLostError

    try:
        trainer = Trainer(build_model(recipe), recipe, out)  # initialised from train.seed
    except DatasetNotFoundError as err:
        print(f"error: {err}{offline_route(Path(args.recipe))}", file=sys.stderr)
        return 2
    if args.resume is not None:
        auto = args.resume == "auto"
        if not auto or out.exists():
            ckpt = trainer.resume(out if auto else Path(args.resume), missing_ok=auto)
            if trainer.is_main and ckpt is not None:
                print(f"zoo: resumed from {ckpt} at step {trainer.step}")
    from zoo.catalog import record_training, relocate_checkpoints
    trainer.on_checkpoints_moved = relocate_checkpoints  # catalog rows follow checkpoints a resume moves aside
    trainer.begin()
    if trainer.is_main:
        record_training(out, args.recipe)  # the catalog; a failure only warns
    try:
        final = trainer.train()
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except PeerLostError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 5
    except KeyboardInterrupt:  # a second SIGINT / SIGTERM: no further save; checkpoints are never left half-written
        if trainer.is_main:
            print(f"zoo: aborted at step {trainer.step} of {recipe.train.max_steps} (a second signal); "
                  f"{describe_last(trainer)}; resume with --resume auto", file=sys.stderr, flush=True)
        return 130
    finally:
        if trainer.is_main:
            record_training(out, args.recipe)  # the checkpoints written, including the last good one
    if trainer.is_main:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in final.items() if not k.startswith("lr/"))
        print(end_message(trainer, out, summary))
        if trainer.diverging:
            print(f"zoo: warning: the run finished with diverging losses "
                  f"({', '.join(f'{k} = {v:.3g}' for k, v in trainer.diverging.items())}); its checkpoints are "
                  f"finite but probably useless", file=sys.stderr)
        write_loss_curves(out)
    return 0


def resume_base(resume: str, out: Path) -> Path | None:
    """The config.yaml a resume starts from: the run's own (`--out`'s, which holds the settings changed at its last
    resume) when continuing its latest checkpoint, else the resumed checkpoint's; None: nothing to resume."""
    from zoo.training.checkpoint import CONFIG, checkpoint_dirs, resolve_checkpoint
    from zoo.training.rundir import CONFIG_FILE

    found = checkpoint_dirs(out) if out.is_dir() else []
    ckpt = (found[-1] if found else None) if resume == "auto" else resolve_checkpoint(resume)
    if ckpt is None:
        return None
    latest_own = bool(found) and ckpt.resolve() == found[-1].resolve()
    return out / CONFIG_FILE if latest_own and (out / CONFIG_FILE).is_file() else ckpt / CONFIG


def resumed_recipe(base: Path, given: Any, args: argparse.Namespace, imported: list[str]) -> Any:
    """A resume continues the run's own settings (`base`) with only the overrides passed now: the recipe file's
    values would silently undo what the run was started with (its train.max_steps=600 over the run's 6). Where the
    recipe file differs, one line says so; the overrides' effect is announced and recorded at the claim."""
    from zoo.training.rundir import compare_recipes, describe_changes

    recipe = load_recipe(base, args.overrides, trust_imports=False)  # its imports: those run above, or refused
    recipe.imports = list(dict.fromkeys([*recipe.imports, *imported]))
    if recipe.model.name != given.model.name:
        raise ConfigError(f"--resume: the run in {str(base.parent)!r} trains {recipe.model.name!r}, but "
                          f"{args.recipe} names {given.model.name!r}; resume it with its own recipe, or start a new "
                          f"run elsewhere (another --out)")
    overridden = [o.split("=", 1)[0].strip() for o in args.overrides]
    fixed, free = compare_recipes(recipe, given)
    ignored = {k: v for k, v in {**fixed, **free}.items()
               if k != "imports" and not any(k == o or k.startswith(f"{o}.") for o in overridden)}
    if ignored:
        listed = list(ignored.items())
        more = f" and {len(listed) - 6} more" if len(listed) > 6 else ""
        print(f"zoo: resuming with the run's own settings ({base}) and the overrides given; not taken from "
              f"{args.recipe}: {describe_changes(dict(listed[:6]))}{more} (run's -> recipe file's; pass KEY=VALUE "
              f"to change one)", flush=True)
    return recipe


def describe_last(trainer) -> str:
    from zoo.training.checkpoint import checkpoint_dirs
    found = checkpoint_dirs(trainer.out_dir)  # on disk: an abort inside a save may have completed it, or pruned others
    return f"last complete checkpoint: {found[-1]}" if found else "no checkpoint was saved"


def end_message(trainer, out: Path, summary: str) -> str:
    """'finished N steps' for a run that reached train.max_steps; for one stopped early (a signal, the launcher gone),
    where it stopped, why, and how to go on."""
    total = trainer.recipe.train.max_steps
    if trainer.step >= total:
        return f"zoo: finished {trainer.step} steps in {out}: {summary}"
    why = trainer.stops.reason or "stopped by another process of the job"
    saved = (f"checkpoint saved in {trainer.last_checkpoint}" if trainer.last_checkpoint is not None else
             "no checkpoint saved")
    return (f"zoo: stopped at step {trainer.step} of {total} ({why}); {saved}; resume with --resume auto"
            + (f" (last losses: {summary})" if summary else ""))


def write_loss_curves(out: Path) -> Path | None:
    """<out>/loss_curves.png and .pdf from the run's metrics.jsonl; a run too short to log anything gets none."""
    from zoo.figures import loss_curves
    from zoo.training.logging import read_metrics

    if not (out / "metrics.jsonl").is_file() or not (records := read_metrics(out)):
        return None
    return loss_curves([{k: v for k, v in r.items() if not k.startswith("lr/")} for r in records],
                       out / "loss_curves.png", title=out.name, formats=("pdf",))
