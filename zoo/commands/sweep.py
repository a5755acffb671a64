#!/usr/bin/env python
"""Expand a sweep file (recipes/sweeps/*.yaml) into training runs: print the commands, run them one by one, or
submit them through submitit (SLURM on a cluster, its local executor on one machine).

    zoo sweep recipes/sweeps/vgh_rosca_app_k.yaml [--match vgh_plus_color] [--out-root runs/sweeps]
                          [--run | --submit [--executor auto|slurm|local] [--partition P] [--gpus 1] ...] [key=value ...]

Each grid point is validated before anything is printed or run. Extra key=value overrides apply to every run (e.g.
train.max_steps=1000 for a short pass). With --run or --submit, runs that already hold checkpoints are resumed
(--resume auto); with --submit, a run whose last checkpoint has reached its train.max_steps is skipped, the others are
submitted as one job array (`--array-parallelism` at a time), and the sweep waits for them and reports each failed
run with its exit status and the log to read (--no-wait: submit and return). Submitting again resumes the sweep.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path


from zoo.arguments import ArgumentParser, nonnegative_int, positive_int
from zoo.config import ConfigError
from zoo.factory import SweepPoint, expand_sweep

TRAIN = ("-m", "zoo.cli", "train")  # `python -m zoo.cli train`: the `zoo train` of this interpreter


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="zoo sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep file, e.g. recipes/sweeps/vgh_rosca_app_k.yaml")
    parser.add_argument("overrides", nargs="*", help="overrides applied to every run, e.g. train.max_steps=1000")
    parser.add_argument("--match", default="", help="keep only runs whose name contains this text")
    parser.add_argument("--out-root", default="runs/sweeps", help="run directories go to OUT_ROOT/<run name>")
    parser.add_argument("--run", action="store_true", help="run the commands in sequence instead of printing them")
    cluster = parser.add_argument_group("--submit (submitit; pip install 'zoo[cluster]')")
    cluster.add_argument("--submit", action="store_true", help="submit the unfinished runs through submitit")
    cluster.add_argument("--executor", choices=("auto", "slurm", "local"), default="auto",
                         help="auto: SLURM where sbatch exists, else local processes on this machine")
    cluster.add_argument("--log-dir", help="submitit's job folder (default OUT_ROOT/_submitit)")
    cluster.add_argument("--partition", help="SLURM partition")
    cluster.add_argument("--gpus", type=nonnegative_int, default=0, help="GPUs per run")
    cluster.add_argument("--cpus", type=positive_int, default=2, help="CPU cores per run")
    cluster.add_argument("--mem-gb", type=positive_int, default=16)
    cluster.add_argument("--timeout-min", type=positive_int, default=24 * 60, help="time limit per run, minutes")
    cluster.add_argument("--array-parallelism", type=positive_int, default=64, help="runs at once")
    cluster.add_argument("--no-wait", action="store_true", help="submit and return without waiting for the runs")
    args = parser.parse_intermixed_args(argv)
    try:
        points = [p for p in expand_sweep(args.sweep) if args.match in p.name]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not points:
        print(f"error: no run of {args.sweep} matches --match {args.match!r}", file=sys.stderr)
        return 2
    if args.submit:
        return submit(points, args)
    for point in points:
        out = Path(args.out_root) / point.name.replace("/", "-", 1)
        cmd = [sys.executable, *TRAIN, str(point.recipe), "--out", str(out), *point.overrides, *args.overrides]
        if not args.run:
            print(shlex.join(cmd))
            continue
        print(f"zoo sweep: {point.name}", flush=True)
        code = subprocess.call([*cmd, "--resume", "auto"])
        if code:
            print(f"error: run {point.name} exited with {code}; the sweep stopped (rerun to resume)", file=sys.stderr)
            return code
    if not args.run:
        print(f"# {len(points)} runs", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------------- submitit
def train_command(point: SweepPoint, args: argparse.Namespace) -> tuple[list[str], Path]:
    out = Path(args.out_root) / point.name.replace("/", "-", 1)
    return [sys.executable, *TRAIN, str(point.recipe), "--out", str(out), *point.overrides, *args.overrides,
            "--resume", "auto"], out


def finished(point: SweepPoint, out: Path, overrides: list[str]) -> bool:
    """Whether the run's latest checkpoint has reached the recipe's train.max_steps."""
    from zoo.factory import load_recipe
    from zoo.training.checkpoint import checkpoint_dirs

    done = checkpoint_dirs(out)
    steps = load_recipe(point.recipe, [*point.overrides, *overrides]).train.max_steps
    return bool(done) and int(done[-1].name.removeprefix("step_")) >= steps


def run_training(cmd: list[str]) -> int:
    """One sweep run inside a submitit job: `zoo train ... --resume auto`; a failure raises with the output's tail."""
    res = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    if res.returncode:
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"zoo train exit status {res.returncode}: {last}")
    return res.returncode


def make_executor(args: argparse.Namespace):
    try:
        import submitit
    except ImportError:
        raise SystemExit("error: --submit needs submitit: pip install 'zoo[cluster]' (or submitit)") from None
    folder = Path(args.log_dir or Path(args.out_root) / "_submitit") / "%j"
    cluster = None if args.executor == "auto" else args.executor
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(timeout_min=args.timeout_min, cpus_per_task=args.cpus, gpus_per_node=args.gpus,
                               mem_gb=args.mem_gb, slurm_array_parallelism=args.array_parallelism,
                               name="zoo-sweep", **({"slurm_partition": args.partition} if args.partition else {}))
    return executor


def submit(points: list[SweepPoint], args: argparse.Namespace) -> int:
    """Submit the unfinished runs as one job array; wait and report (see the module docstring)."""
    todo = []
    for point in points:
        cmd, out = train_command(point, args)
        if finished(point, out, args.overrides):
            print(f"zoo sweep: {point.name}: finished, skipped ({out})")
        else:
            todo.append((point, cmd))
    if not todo:
        print(f"zoo sweep: all {len(points)} runs are finished")
        return 0
    executor = make_executor(args)
    with executor.batch():
        jobs = [executor.submit(run_training, cmd) for _, cmd in todo]
    for (point, _), job in zip(todo, jobs):
        print(f"zoo sweep: {point.name}: submitted as job {job.job_id} ({executor.cluster})", flush=True)
    if args.no_wait:
        return 0
    failed = []
    for (point, _), job in zip(todo, jobs):
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - submitit re-raises the job's error (or a lost job's) here
            failed.append(point.name)
            lines = str(err).strip().splitlines()  # submitit's error holds the job's traceback: find our message
            message = next((line.strip() for line in reversed(lines) if "zoo train exit status" in line),
                           lines[-1] if lines else repr(err))
            print(f"error: run {point.name} failed (job {job.job_id}): {message}; log: "
                  f"{job.paths.stderr}", file=sys.stderr)
    print(f"zoo sweep: {len(todo) - len(failed)} of {len(todo)} submitted runs finished"
          + (f", {len(failed)} failed: submit again to retry them (finished runs are skipped)" if failed else ""))
    return 1 if failed else 0
