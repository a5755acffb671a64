"""The GPU check of the zoo in one run: prints ONE summary table (and writes it, with JSON, to --out / $OUT).

    python benchmarks/device_check.py [--budget 380] [--out DIR]   # on a CUDA machine (device_check.sh wraps it)
    python benchmarks/device_check.py --dry-run --out DIR          # CPU, tiny sizes: the same code paths, ~1 min

Sections, in priority order (each is skipped, saying so, when the time budget left is too small):
  train     every registered model: `steps` steps of its paper recipe's networks on synthetic data of the right shape
            under bf16 autocast; every logged loss finite; host syncs inside the step loop counted with
            torch.cuda.set_sync_debug_mode (0 expected between logging steps); the checkpoint reloads with equal
            weights and samples finite images; peak device memory.
  bf16      the first 3 steps' per-phase losses under bf16 vs fp32 (TF32 off), same seeds: |d| <= 0.03 |fp32| + 0.03.
  bench     benchmarks/bench.py: trainer vs plain loop, each speed switch, for vae, dcgan, wgan_gp (ResNet), ijae.
  wgan1000  1,000 generator steps of the ResNet WGAN-GP (CIFAR size, batch 64, n_critic 5) through Trainer.train.
  inception IS/FID feature extraction (torch-fidelity TF-Inception; random weights of the right shapes when the real
            file is absent) on 50,000 generated images, batched on the device: images/s.
  deasy     Deasy et al. Table 1 MNIST column (22 runs x 100 epochs x 937 steps of the Table 3 nets): steps/s of one
            run and of N concurrent runs (processes) on the one GPU, and the EXTRAPOLATED time of the 22 runs.
  ddp       a 2-process run when there are 2 GPUs (else skipped).
Synthetic data only: the device machine has no datasets.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from device_sections import (DDP_WORKER, DEASY_WORKER, Report, check_bench, check_bf16, check_ddp, check_deasy,
                             check_inception, check_train, check_wgan1000, ddp_worker, deasy_worker)
from zoo.arguments import ArgumentParser, positive_float, positive_int
from zoo.factory import list_models
from zoo.training.distributed import exit_process


# ---- main ----------------------------------------------------------------------------------------------------------
def guarded(rep: Report, section: str, item: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the table says what failed and the check goes on
        traceback.print_exc()
        rep.add(section, item, "FAIL", "", f"{type(err).__name__}: {str(err)[:200]}")


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python benchmarks/device_check.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny recipes and sizes: the code paths, no numbers")
    p.add_argument("--budget", type=positive_float, default=380.0,
                   help="seconds; sections that no longer fit are skipped")
    p.add_argument("--out", default=os.environ.get("OUT", ""), help="folder for device_check.txt/.json ($OUT)")
    p.add_argument("--steps", type=positive_int, default=200, help="training steps per model")
    p.add_argument("--sections", default="train,bf16,bench,wgan1000,inception,deasy,compile,ddp")
    p.add_argument("--models", default="", help="comma-separated subset of the registered models")
    p.add_argument("--ddp-cpu", action="store_true", help="dry run: the 2-process section as a gloo CPU job")
    p.add_argument("--bench-models", default="vae,dcgan,wgan_gp,ijae")
    p.add_argument("--bench-steps", type=positive_int, default=10)
    p.add_argument("--bench-rounds", type=positive_int, default=5)
    p.add_argument("--deasy-steps", type=positive_int, default=1500)
    p.add_argument("--deasy-procs", default="8,16", help="concurrent run counts to measure besides 1")
    p.add_argument("--deasy-compile", default="", help="also time one run compiled in this torch.compile mode "
                   "(e.g. reduce-overhead: CUDA graphs), when time is left")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == DDP_WORKER:
        ddp_worker()
        exit_process(0)
    if argv and argv[0] == DEASY_WORKER:
        deasy_worker(int(argv[1]), "--dry-run" in argv, "" if argv[2] == "-" else argv[2])
        return 0
    args = parser().parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + args.budget
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("device_check: no CUDA device; run with --dry-run for the CPU code-path check", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    if args.dry_run:
        torch.set_num_threads(1)
        args.steps = 4
    rep = Report(Path(args.out) if args.out else None)
    sections = set(args.sections.split(","))
    env = (f"{torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s), "
           f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if cuda else "CPU dry run")
    rep.add("env", "device", "ok", "", f"{env}; torch {torch.__version__}")
    models = args.models.split(",") if args.models else list_models()

    def left() -> float:
        return deadline - time.monotonic()

    for section, check, needs in (("train", check_train, 20), ("bf16", check_bf16, 15)):  # per model
        if section not in sections:
            continue
        for name in models:
            if left() < needs:
                rep.add(section, name, "skipped", "", "time budget")
                continue
            guarded(rep, section, name, lambda: check(name, args, rep, device))
    bench_models = args.bench_models.split(",")
    if "bench" in sections:
        configs = ("off", "default") if args.dry_run else ("off", "tf32", "channels_last", "fused_adam", "default")
        plan = [(m, c) for m in bench_models for c in configs]
        guarded(rep, "bench", "all", lambda: check_bench(args, rep, device, plan, deadline))
    if "wgan1000" in sections and left() > 45:
        guarded(rep, "wgan1000", "default", lambda: check_wgan1000(args, rep, device, "default"))
    if "inception" in sections and left() > 40:
        guarded(rep, "inception", "50k", lambda: check_inception(args, rep, device))
    if "deasy" in sections:
        guarded(rep, "deasy", "packing", lambda: check_deasy(args, rep, device, deadline))
    if "compile" in sections:
        plan = [("wgan_gp", "all")]
        guarded(rep, "bench", "compile", lambda: check_bench(args, rep, device, plan, deadline))
        if left() > 60:
            guarded(rep, "wgan1000", "all", lambda: check_wgan1000(args, rep, device, "all"))
    if "ddp" in sections:
        guarded(rep, "ddp", "2-process", lambda: check_ddp(args, rep))
    rep.add("env", "total", "ok", f"{time.monotonic() - t0:.0f} s", f"budget {args.budget:.0f} s")
    print("\n=== zoo device check summary ===")
    print(rep.table())
    failed = [r for r in rep.rows if r["status"] == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
