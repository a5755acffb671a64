"""The sections of the GPU check (benchmarks/device_check.py): its summary table (`Report`), the helpers, one
`check_*` function per section, and the worker processes of the deasy and ddp sections."""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

import bench
from zoo.data import TensorImages
from zoo.factory import build_model, load_checkpoint, load_recipe
from zoo.training import Trainer

REPO = Path(__file__).resolve().parents[1]  # recipes/ live in the checkout
SCRIPT = Path(__file__).with_name("device_check.py")  # what the worker processes run (with DEASY_WORKER, DDP_WORKER)

PAPER_RECIPE = {"jsg_vae": "jsg_vae_mnist_jsg"}  # else <model>_cifar10
BF16_RTOL = BF16_ATOL = 0.03
DEASY_STEPS = 22 * 100 * 937  # runs x epochs x batches of 64 per epoch (60,000 MNIST images)


class Report:
    """The summary rows (section, item, status, value, note), printed as they come and rewritten to `out`."""

    def __init__(self, out: Path | None):
        self.rows: list[dict[str, str]] = []
        self.details: dict[str, Any] = {}
        self.out = out

    def add(self, section: str, item: str, status: str, value: str = "", note: str = "") -> None:
        row = {"section": section, "item": item, "status": status, "value": value, "note": note}
        self.rows.append(row)
        print(f"[{section}] {item}: {status} {value} {note}", flush=True)
        self.write()

    def table(self) -> str:
        cols = ("section", "item", "status", "value", "note")
        widths = {c: max(len(c), *(len(r[c]) for r in self.rows)) if self.rows else len(c) for c in cols}
        line = " | ".join(c.ljust(widths[c]) for c in cols)
        rule = "-|-".join("-" * widths[c] for c in cols)
        body = [" | ".join(r[c].ljust(widths[c]) for c in cols) for r in self.rows]
        return "\n".join([line, rule, *body])

    def write(self) -> None:
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "device_check.txt").write_text(self.table() + "\n")
            (self.out / "device_check.json").write_text(json.dumps({"rows": self.rows, **self.details}, indent=1,
                                                                   default=str))


# ---- helpers -------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_recipe(name: str, args: argparse.Namespace, overrides: list[str]):
    """The model's paper recipe (tiny recipe in a dry run) with logging to disk off."""
    file = f"tiny_{name}" if args.dry_run else PAPER_RECIPE.get(name, f"{name}_cifar10")
    quiet = ["train.progress=false", "train.tensorboard=false", "train.sample_every=0", "train.checkpoint_every=0"]
    return load_recipe(REPO / "recipes" / f"{file}.yaml", quiet + overrides)


def synthetic(shape: tuple[int, ...], n: int, seed: int = 0) -> TensorImages:
    g = torch.Generator().manual_seed(seed)
    return TensorImages(torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), name="synthetic")


def data_for(model) -> TensorImages:
    shape = model.data_shape
    if shape is None:
        raise ValueError(f"{type(model).__name__} has no image data_shape; the device check trains image models")
    return synthetic(tuple(shape), 2048)


def count_syncs(fn: Callable[[], None]) -> int:
    """Host-device synchronisations `fn` makes (CUDA: torch's sync debug mode warns on each one)."""
    if not torch.cuda.is_available():
        fn()
        return 0
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def finite_losses(metrics_file: Path) -> tuple[bool, int, dict[str, float]]:
    """(all logged losses finite, records read, the last record's losses)."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    losses = [{k: v for k, v in r.items() if k.endswith("/loss")} for r in records]
    ok = bool(records) and all(math.isfinite(v) for rec in losses for v in rec.values())
    return ok, len(records), losses[-1] if losses else {}


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


# ---- sections ------------------------------------------------------------------------------------------------------
def check_train(name: str, args: argparse.Namespace, rep: Report, device: torch.device) -> None:
    steps = args.steps
    log_every = max(1, steps // 4)
    recipe = model_recipe(name, args, [f"train.max_steps={steps}", f"train.log_every={log_every}",
                                       f"train.mixed_precision={'bf16' if device.type == 'cuda' else 'auto'}"])
    model = build_model(recipe)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / name
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(model, recipe, run, dataset=data_for(model))
        start = time.perf_counter()
        # a window of steps between two logging steps: no host sync expected there
        window = min(log_every - 1, 20)
        for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
            trainer.train_step()
        syncs = count_syncs(lambda: [trainer.train_step() for _ in range(window)]) if window > 0 else -1
        trainer.train()
        sync(device)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        ok, n_logs, last = finite_losses(run / "metrics.jsonl")
        ckpt = load_checkpoint(run, device=device, ema=False)
        live = trainer.weights()
        saved = {f"players.{n}.{k}": v for n, m in ckpt.model.players.items() for k, v in m.state_dict().items()}
        same = saved.keys() == live.keys() and all(torch.equal(saved[k], v) for k, v in live.items())
        with torch.no_grad():
            images = ckpt.model.to(device).eval().sample(8, generator=torch.Generator(device=device).manual_seed(0))
        reload_ok = same and bool(torch.isfinite(images).all())
    status = "ok" if ok and reload_ok and syncs <= 0 else "FAIL"
    note = (f"{steps} steps {trainer.autocast_dtype or 'fp32'} in {seconds:.1f}s; {n_logs} logs finite={ok}; "
            f"syncs/{window} steps={syncs}; reload={reload_ok}; switches={trainer.speed.summary()}")
    rep.add("train", name, status, f"peak {mib(peak)}" if peak else "", note)
    rep.details.setdefault("train", {})[name] = {"last_losses": last, "peak_bytes": peak, "seconds": seconds,
                                                  "syncs": syncs}


def phase_losses(name: str, precision: str, steps: int, args: argparse.Namespace) -> list[dict[str, float]]:
    recipe = model_recipe(name, args, [f"train.mixed_precision='{precision}'", "train.log_every=1",
                                       f"train.tf32={'false' if precision == 'no' else 'auto'}"])
    torch.manual_seed(recipe.train.seed)
    model = build_model(recipe)
    trainer = Trainer(model, recipe, dataset=data_for(model))
    out = []
    for _ in range(steps):
        trainer.train_step()
        out.append({k: v for k, v in trainer._flush_logs().items() if k.endswith("/loss")})
    return out


def check_bf16(name: str, args: argparse.Namespace, rep: Report, device: torch.device) -> None:
    fp32 = phase_losses(name, "no", 3, args)
    bf16 = phase_losses(name, "bf16", 3, args)
    worst, where = 0.0, ""
    for step, (a, b) in enumerate(zip(fp32, bf16)):
        for key in a:
            excess = abs(b[key] - a[key]) / (BF16_RTOL * abs(a[key]) + BF16_ATOL)  # <= 1 passes
            if excess > worst or not math.isfinite(excess):
                worst, where = excess, f"step {step} {key}: fp32 {a[key]:.4g} bf16 {b[key]:.4g}"
    status = "ok" if worst <= 1.0 else "FAIL"
    rep.add("bf16", name, status, f"{worst:.2f} of tol", f"worst {where}")
    rep.details.setdefault("bf16", {})[name] = {"fp32": fp32, "bf16": bf16}


def check_bench(args: argparse.Namespace, rep: Report, device: torch.device, plan: list[tuple[str, str]],
                deadline: float) -> None:
    bargs = bench.parser().parse_args(["--device", device.type])
    if args.dry_run:
        bargs.width, bargs.batch_size, bargs.steps, bargs.rounds, bargs.warmup = 8, 8, 1, 1, 1
        bargs.compile_backend = "aot_eager"
    else:
        bargs.steps, bargs.rounds, bargs.warmup = args.bench_steps, args.bench_rounds, 3
    rows = []
    for name, config in plan:
        if time.monotonic() > deadline - (60 if config in ("compile", "all") else 10):
            rep.add("bench", f"{name} {config}", "skipped", "", "time budget")
            continue
        try:
            row = bench.bench(name, config, bargs)
        except Exception as err:  # noqa: BLE001 - the table says what failed and the check goes on
            rep.add("bench", f"{name} {config}", "FAIL", "", f"{type(err).__name__}: {str(err)[:150]}")
            traceback.print_exc()
            continue
        rows.append(row)
        rep.add("bench", f"{name} {config}", "ok", f"ratio {row['ratio']:.3f}",
                f"trainer {row['trainer_ms']:.2f} ms ({row['trainer_img_s']:.0f} img/s), plain "
                f"{row['plain_ms']:.2f} ms; switches {row['switches']}; setup+warm-up {row['setup_warmup_s']:.0f}s")
    rep.details.setdefault("bench", []).extend(rows)
    if rows:
        print(bench.format_rows(rows), flush=True)


def check_wgan1000(args: argparse.Namespace, rep: Report, device: torch.device, config: str) -> None:
    bargs = bench.parser().parse_args(["--device", device.type, "--log-every", "100"])
    steps = 1000
    if args.dry_run:
        bargs.width, bargs.batch_size, bargs.warmup, steps = 8, 8, 1, 3
        bargs.compile_backend = "aot_eager"
    out = bench.time_generator_steps("wgan_gp", config, steps, bargs)
    per_1000 = out["seconds"] * 1000 / steps
    target = "dry run" if args.dry_run else ("meets" if per_1000 <= 30 else "misses") + " the 30 s target"
    rep.add("wgan1000", f"wgan_gp resnet {config}", "ok", f"{out['seconds']:.1f} s",
            f"{steps} generator steps (x5 critic), batch {bargs.batch_size}; {target}; "
            f"switches {out['switches']}")
    rep.details.setdefault("wgan1000", []).append(out)


def check_inception(args: argparse.Namespace, rep: Report, device: torch.device) -> None:
    from zoo.evaluation import EvalContext, inception

    n, batch = (8, 4) if args.dry_run else (50_000, 500)
    real = os.environ.get(inception.INCEPTION_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(real) if real and Path(real).is_file() else \
            inception.random_inception_weights(Path(tmp) / "inception-random.pth")
        kind = "real file" if real and Path(real).is_file() else "RANDOM weights (real file absent)"
        recipe = model_recipe("dcgan", args, [])
        model = build_model(recipe).to(device)
        ctx = EvalContext(model, recipe.data, n_samples=n, batch_size=batch, device=device)
        inception._extractor(ctx, str(weights))  # build + move the network outside the timing
        sync(device)
        start = time.perf_counter()
        logits, pool, _ = inception.inception_features(ctx, "samples", str(weights))
        sync(device)
        seconds = time.perf_counter() - start
    ok = logits.shape == (n, 1008) and pool.shape == (n, 2048) and bool(torch.isfinite(pool).all())
    rep.add("inception", f"{n} samples 3x{recipe.model.config.image_size}px", "ok" if ok else "FAIL",
            f"{n / seconds:.0f} img/s", f"{seconds:.1f} s for sampling + features, batch {batch}, {kind}")


DEASY_WORKER = "--deasy-worker"


def deasy_worker(steps: int, dry: bool, compile_mode: str = "") -> None:
    """One Table 3 MNIST run on synthetic MNIST-shaped data: prints JSON {steps, seconds (steady), wall}."""
    wall = time.perf_counter()
    file = "tiny_jsg_vae" if dry else "jsg_vae_mnist_jsg"
    options = "{backend: aot_eager}" if dry else f"{{mode: {compile_mode}}}"
    compiled = ["train.compile=true", f"train.compile_options={options}"] if compile_mode else []
    recipe = load_recipe(REPO / "recipes" / f"{file}.yaml", ["train.progress=false", "train.tensorboard=false",
                                                            "train.sample_every=0", "train.checkpoint_every=0",
                                                            "train.log_every=937", *compiled])
    model = build_model(recipe)
    n = 512 if dry else 60_000
    trainer = Trainer(model, recipe, dataset=synthetic(tuple(model.data_shape), n))
    warm = max(1, steps // 10)
    for _ in range(warm):
        trainer.train_step()
    sync(trainer.device)
    start = time.perf_counter()
    trainer.recipe.train.max_steps = trainer.step + steps
    trainer.train()
    sync(trainer.device)
    print(json.dumps({"steps": steps, "seconds": time.perf_counter() - start, "wall": time.perf_counter() - wall}))


def run_concurrent(n: int, steps: int, args: argparse.Namespace, compile_mode: str = "") -> tuple[float, list]:
    """n worker processes at once: (wall seconds from launch to the last exit, their reports)."""
    cmd = [sys.executable, str(SCRIPT), DEASY_WORKER, str(steps), compile_mode or "-"] \
        + (["--dry-run"] if args.dry_run else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reports = []
    with tempfile.TemporaryDirectory() as tmp:  # files, not pipes: a full pipe would stall a worker
        logs = [(open(Path(tmp) / f"{i}.out", "w+"), open(Path(tmp) / f"{i}.err", "w+")) for i in range(n)]
        start = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=o, stderr=e, text=True, env=env) for o, e in logs]
        try:
            for p, (o, e) in zip(procs, logs):
                p.wait(timeout=240)
                o.seek(0)
                e.seek(0)
                if p.returncode != 0:
                    raise RuntimeError(f"worker exited {p.returncode}: {e.read()[-400:]}")
                reports.append(json.loads(o.read().strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for o, e in logs:
                o.close()
                e.close()
    return time.perf_counter() - start, reports


def check_deasy(args: argparse.Namespace, rep: Report, device: torch.device, deadline: float) -> None:
    steps = 4 if args.dry_run else args.deasy_steps
    counts = [1] + [int(c) for c in args.deasy_procs.split(",") if c]
    runs = [(n, "") for n in counts] + ([(1, args.deasy_compile)] if args.deasy_compile else [])
    for n, mode in runs:
        item = f"{n} concurrent run(s)" + (f", compile {mode}" if mode else "")
        if time.monotonic() > deadline - (100 if mode else 45):
            rep.add("deasy", item, "skipped", "", "time budget")
            continue
        wall, reports = run_concurrent(n, steps, args, mode)
        rate = sum(r["steps"] / r["seconds"] for r in reports)  # steady-state steps/s, all runs together
        eta_min = DEASY_STEPS / rate / 60
        rep.add("deasy", item, "ok", f"{rate:.0f} steps/s",
                f"per run {statistics.median(r['steps'] / r['seconds'] for r in reports):.0f} steps/s, "
                f"{937 * 100 / (rate / n):.0f} s per 100-epoch run; EXTRAPOLATED 22x100 epochs: {eta_min:.1f} min "
                f"(target 15); launch-to-exit {wall:.0f}s for {steps} steps each")
        rep.details.setdefault("deasy", []).append({"processes": n, "compile": mode, "wall": wall, "reports": reports})


DDP_WORKER = "--ddp-worker"


def ddp_worker() -> None:
    """Run under `accelerate launch` with 2 processes: a short DCGAN run on synthetic data, then equal weights."""
    recipe = load_recipe(REPO / "recipes" / "tiny_dcgan.yaml", ["train.progress=false", "train.tensorboard=false",
                                                              "train.sample_every=0", "train.checkpoint_every=0",
                                                              "train.max_steps=50"])
    model = build_model(recipe)
    trainer = Trainer(model, recipe, dataset=synthetic(tuple(model.data_shape), 1024))
    trainer.train()
    # parameters only: BatchNorm running statistics stay per process (docs/training.md, Distributed)
    flat = torch.cat([p.detach().float().flatten() for p in trainer.model.parameters()])
    gathered = trainer.accelerator.gather(flat[None])
    if trainer.is_main:
        print(json.dumps({"processes": trainer.accelerator.num_processes,
                          "max_weight_difference": float((gathered - gathered[0]).abs().max())}))


def check_ddp(args: argparse.Namespace, rep: Report) -> None:
    gpus = torch.cuda.device_count()
    if gpus < 2 and not (args.dry_run and args.ddp_cpu):
        rep.add("ddp", "2-process run", "skipped", "", f"{gpus} GPU(s) on this machine; needs 2")
        return
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT),
           DDP_WORKER]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    ok = proc.returncode == 0
    result = json.loads(proc.stdout.strip().splitlines()[-1]) if ok else {}
    ok = ok and result.get("processes") == 2 and result.get("max_weight_difference") == 0.0
    where = "2 GPUs" if gpus >= 2 else "2 CPU processes (gloo)"
    rep.add("ddp", "2-process run", "ok" if ok else "FAIL", where, json.dumps(result) if result else proc.stderr[-300:])
