#!/usr/bin/env python
"""Train one run per value (or per combination of values) of recipe keys, e.g. the lambda sweep of lambda-IJAE.

    accelerate launch tools/sweep.py recipes/sweeps/ijae_cifar10_lambda.yaml [--out DIR] [--dry-run] [KEY=VALUE ...]

A sweep file names a base recipe (relative to the sweep file), an output folder and the values of one or more dotted
recipe keys; every combination (in the order written) becomes `tools/train.py <recipe> KEY=VALUE ... --out
<out>/<name>`, with <name> like `lam_0.3` (the last part of each key and its value). Extra KEY=VALUE overrides apply
to every run. Runs are trained one after the other in this process; a finished run (a checkpoint at max_steps) is
skipped and an interrupted one resumed, so re-running a sweep completes it.

Sweep file:
    recipe: ../ijae_cifar10.yaml
    out: runs/ijae_cifar10_lambda
    sweep:
      model.lam: [0.1, 0.2, 0.3]
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from zoo.config import ConfigError, load_recipe, read_yaml  # noqa: E402
from zoo.training.checkpoint import checkpoint_dirs  # noqa: E402

SWEEP_KEYS = ("recipe", "out", "sweep")


@dataclass
class Run:
    """One run of a sweep: its folder and the overrides that distinguish it."""

    name: str
    out: Path
    overrides: list[str]


def _value_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def expand(sweep_file: str | Path, overrides: list[str] | None = None, out: str | Path | None = None
           ) -> tuple[Path, list[Run]]:
    """The base recipe path and the runs of a sweep file; every run's recipe is validated before anything trains."""
    sweep_file = Path(sweep_file)
    tree = read_yaml(sweep_file)
    unknown = set(tree) - set(SWEEP_KEYS)
    missing = [k for k in SWEEP_KEYS if k not in tree]
    if unknown or missing:
        raise ConfigError(f"sweep {str(sweep_file)!r}: expected the keys {', '.join(SWEEP_KEYS)}; unknown "
                          f"{sorted(unknown) or 'none'}, missing {missing or 'none'}")
    grid = tree["sweep"]
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"sweep {str(sweep_file)!r}: 'sweep' must map dotted recipe keys to non-empty lists of "
                          f"values, e.g. {{model.lam: [0.1, 0.3]}}; got {grid!r}")
    recipe = (sweep_file.parent / tree["recipe"]).resolve()
    root = Path(out if out is not None else tree["out"])
    runs = []
    for values in itertools.product(*grid.values()):
        pairs = list(zip(grid, values))
        name = "-".join(f"{key.split('.')[-1]}_{_value_text(v)}" for key, v in pairs)
        run = Run(name, root / name, [*(overrides or []), *(f"{key}={_value_text(v)}" for key, v in pairs)])
        load_recipe(recipe, run.overrides)  # fail before the first run trains, naming the key
        runs.append(run)
    return recipe, runs


def finished(run: Run, recipe: Path) -> bool:
    """Whether the run folder already holds a checkpoint at the run's max_steps."""
    done = checkpoint_dirs(run.out)
    return bool(done) and int(done[-1].name.split("_")[-1]) >= load_recipe(recipe, run.overrides).train.max_steps


def _train_main():
    spec = importlib.util.spec_from_file_location("zoo_tools_train", Path(__file__).with_name("train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep YAML, e.g. recipes/sweeps/ijae_cifar10_lambda.yaml")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for every run, e.g. train.max_steps=20")
    parser.add_argument("--out", help="parent folder of the runs (default: the sweep file's `out`)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their overrides, train nothing")
    args = parser.parse_intermixed_args(argv)
    try:
        recipe, runs = expand(args.sweep, args.overrides, args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train = None if args.dry_run else _train_main()
    for i, run in enumerate(runs, 1):
        state = "finished" if finished(run, recipe) else "to train"
        print(f"[{i}/{len(runs)}] {run.out} ({state}): {' '.join(run.overrides)}", flush=True)
        if train is None or state == "finished":
            continue
        code = train([str(recipe), *run.overrides, "--out", str(run.out), "--resume", "auto"])
        if code:
            print(f"error: run {run.name} stopped with exit code {code}; re-run the sweep to resume it",
                  file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
