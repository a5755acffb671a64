"""Does a speed switch change the result? Train one recipe under two settings ("arms", e.g. fp32 and bf16 autocast
with channels_last) for a few seeds each, measure every run with a reproduction protocol, and compare each number's
difference between the arms with the spread between seeds; report the training speed of each arm too.

    python benchmarks/precision_ab.py recipes/vae_color_mnist.yaml --steps 5000 --seeds 0,1 --protocol latent_kl \
        --option split=train --out /tmp/ab [--arms fp32,bf16] [--json docs/data/precision_ab/NAME.json]

Runs live in `<out>/<arm>/seed<k>/` (zoo run directories, resumed from their checkpoints when rerun, skipped when
measured: `ab.json`). Split the work over cores with `--arms` / `--seeds` in separate processes, then run once more
with every arm and seed to print and save the comparison (that call trains nothing more).

The verdict for each number is "within the seeds' spread" when |mean(b) - mean(a)| is no larger than the larger of
the two arms' standard deviations over seeds (the project's rule for adopting a switch: the difference must not stand
out from seed noise); the Welch 95 % interval of the difference is printed beside it (with two seeds per arm it is
wide, so it alone would admit almost anything).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zoo import Trainer, build_model, load_recipe
from zoo.arguments import positive_int, seed_list
from zoo.catalog import git_commit
from zoo.config import ConfigError
from zoo.data import load_dataset
from zoo.reproduction.protocols import CHECKPOINT_PROTOCOLS
from zoo.reproduction.run import QUIET
from zoo.reproduction.verdicts import Sample, difference_interval
from zoo.training.checkpoint import checkpoint_dirs

# the two settings of the precision question; names are what --arms selects
ARMS: dict[str, list[str]] = {
    "fp32": ["train.mixed_precision='no'", "train.channels_last=false", "train.tf32=false"],
    "bf16": ["train.mixed_precision=bf16", "train.channels_last=true", "train.tf32=false"],
}


def parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare word such as `train`


def train_and_measure(recipe_path: Path, arm: str, seed: int, steps: int, run_dir: Path, protocol: str,
                      options: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Train (or resume) one arm and seed to `steps`, then measure it; cached in `run_dir/ab.json`."""
    done = run_dir / "ab.json"
    if done.is_file():
        return json.loads(done.read_text())
    recipe = load_recipe(recipe_path, [*QUIET, *overrides, *ARMS[arm], f"train.seed={seed}",
                                       f"train.max_steps={steps}", f"train.checkpoint_every={max(steps // 4, 1)}"])
    train_set = load_dataset(recipe.data.name, recipe.data.split, recipe.data.root, **recipe.data.options)
    torch.manual_seed(seed)
    trainer = Trainer(build_model(recipe), recipe, run_dir, dataset=train_set)
    if checkpoint_dirs(run_dir):
        trainer.resume(run_dir)
    start, began = trainer.step, time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    if trainer.step < steps:
        raise SystemExit(f"{run_dir} stopped at step {trainer.step} of {steps}; rerun the same command to resume it")
    values, details = CHECKPOINT_PROTOCOLS[protocol](run_dir, options)
    record = {"arm": arm, "overrides": ARMS[arm], "seed": seed, "steps": steps, "values": values,
              "protocol": details, "commit": git_commit(),
              # only when this call trained the whole schedule: a resumed run's time would mislead
              "seconds_per_step": seconds / (steps - start) if start == 0 else None,
              "threads": torch.get_num_threads()}
    done.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


def compare(records: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Per number: each arm's mean and std over seeds, the difference b - a, its Welch interval and the verdict."""
    by_arm = {arm: [r for r in records if r["arm"] == arm] for arm in (a, b)}
    rows = []
    for name in sorted(by_arm[a][0]["values"]):
        xs = {arm: [r["values"][name] for r in rs if name in r["values"]] for arm, rs in by_arm.items()}
        if min(len(v) for v in xs.values()) < 2:
            continue  # no seed spread on one side: nothing to compare the difference with
        std = {arm: statistics.stdev(v) for arm, v in xs.items()}
        diff = statistics.fmean(xs[b]) - statistics.fmean(xs[a])
        interval = difference_interval(Sample(tuple(xs[b])), Sample(tuple(xs[a])))
        rows.append({"metric": name, a: xs[a], b: xs[b], f"{a}_std": std[a], f"{b}_std": std[b], "difference": diff,
                     "welch_95": [interval.low, interval.high] if interval else None,
                     "within_seed_spread": abs(diff) <= max(std.values())})
    return rows


def speed(records: list[dict[str, Any]], arm: str) -> float | None:
    times = [r["seconds_per_step"] for r in records if r["arm"] == arm and r["seconds_per_step"]]
    return statistics.median(times) if times else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", type=Path)
    p.add_argument("--steps", type=positive_int, default=5000, help="training steps per run")
    p.add_argument("--seeds", type=seed_list, default=[0, 1])
    p.add_argument("--arms", default="fp32,bf16", help=f"comma-separated, from {', '.join(ARMS)}; the first is "
                                                        "the reference")
    p.add_argument("--protocol", default="latent_kl", choices=sorted(CHECKPOINT_PROTOCOLS))
    p.add_argument("--option", type=parse_option, action="append", default=[],
                   help="protocol option KEY=VALUE (JSON values), e.g. split=train")
    p.add_argument("--override", action="append", default=[], help="recipe override KEY=VALUE for every arm")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs")
    p.add_argument("--json", type=Path, help="write the comparison here")
    args = p.parse_args(argv)
    arms = [x for x in args.arms.split(",") if x]
    unknown = [x for x in arms if x not in ARMS]
    if unknown or not arms:
        p.error(f"--arms: unknown {unknown or arms}; choose from {', '.join(ARMS)}")
    if not args.recipe.is_file():
        p.error(f"recipe {args.recipe} not found")
    try:
        records = [train_and_measure(args.recipe, arm, seed, args.steps, args.out / arm / f"seed{seed}",
                                     args.protocol, dict(args.option), args.override)
                   for arm in arms for seed in args.seeds]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(arms) < 2:
        print(f"trained and measured {arms[0]} seeds {args.seeds}; run with both arms to compare")
        return 0
    a, b = arms[:2]
    rows = compare(records, a, b)
    for r in rows:
        lo, hi = r["welch_95"] or (float("nan"), float("nan"))
        print(f"{r['metric']:<32} {a} {statistics.fmean(r[a]):10.4f} ± {r[f'{a}_std']:.4f}   "
              f"{b} {statistics.fmean(r[b]):10.4f} ± {r[f'{b}_std']:.4f}   diff {r['difference']:+.4f} "
              f"[{lo:+.3f}, {hi:+.3f}]   {'within' if r['within_seed_spread'] else 'OUTSIDE'} the seeds' spread")
    sa, sb = speed(records, a), speed(records, b)
    if sa and sb:
        print(f"speed: {a} {1 / sa:.2f} steps/s, {b} {1 / sb:.2f} steps/s ({sa / sb:.2f}x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"recipe": str(args.recipe), "steps": args.steps, "seeds": args.seeds,
                                         "protocol": args.protocol, "options": dict(args.option),
                                         "overrides": args.override,
                                         "arms": {arm: ARMS[arm] for arm in arms}, "runs": records,
                                         "comparison": rows, "seconds_per_step": {a: sa, b: sb}},
                                        indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
