"""Run a reproduction spec at a scale: train (or resume, or skip) every run and seed, measure it, record it.

Layout: `<out>/<spec>/<scale>/<run>/seed<k>/` is a zoo run directory (config.yaml, checkpoints/, metrics.jsonl) plus
`result.json`. A run whose result.json matches the schedule asked is skipped; one with checkpoints but no result is
resumed from its latest checkpoint; one that fails is reported and the others go on. Every run and result is recorded
in the catalog (zoo.catalog), and all results of the spec at that scale go to one JSON (`results_path`) that
zoo.reproduction.render turns into docs/reproduction.md.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import zoo.evaluation  # noqa: F401 - registers the metrics whose definitions give the spreads
from zoo import Trainer, build_model, load_recipe
from zoo.catalog import Catalog, git_commit, record_training
from zoo.config import ConfigError, read_yaml, to_dict
from zoo.data import load_dataset
from zoo.data.stream import batches_per_epoch
from zoo.registry import METRICS
from zoo.reproduction.protocols import CHECKPOINT_PROTOCOLS, study
from zoo.reproduction.spec import REPO, ReproSpec, RunSpec, checkpoints_source
from zoo.training.checkpoint import CONFIG, checkpoint_dirs

QUIET = ["train.tensorboard=false", "train.sample_every=0"]
IGNORED_TRAIN_KEYS = ("max_steps", "progress", "tensorboard", "sample_every", "checkpoint_every", "log_every",
                      "keep_last")  # keys a resumed or extended run may change


class RunInterrupted(Exception):
    """Training stopped by a signal before its schedule ended (its checkpoint is saved): the spec stops too."""


@dataclass
class PlannedRun:
    """One training (or study) run of a spec at a scale."""

    run: RunSpec
    seed: int
    overrides: list[str]
    args: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.run.name}/seed{self.seed}"

    @property
    def catalog_name(self) -> str:  # every run folder is called seed<k>: the catalog names it by run and seed
        return f"{self.run.name}_seed{self.seed}"

    def directory(self, out: Path, spec_name: str, scale: str) -> Path:
        return out / spec_name / scale / self.run.name / f"seed{self.seed}"

    def context(self, spec_name: str, scale: str) -> dict[str, Any]:
        return {"spec": spec_name, "scale": scale, "run": self.run.name, "seed": self.seed}


def plan(spec: ReproSpec, scale: str, runs: list[str] | None = None, seeds: list[int] | None = None
         ) -> list[PlannedRun]:
    """The runs of `spec` at `scale`, in the scale's order, each seed in turn; `runs` / `seeds` pick a subset of
    them (e.g. one process per core, each with its own runs)."""
    s = spec.scale(scale)
    names = s.runs if s.runs is not None else [r.name for r in spec.runs]
    every_seed = s.seeds if s.seeds is not None else spec.seeds
    for kind, asked, known in (("run", runs, names), ("seed", seeds, every_seed)):
        unknown = [a for a in asked or [] if a not in known]
        if unknown:
            raise ConfigError(f"{spec.name} [{scale}]: no {kind} {', '.join(map(str, unknown))} at this scale; it has "
                              f"{', '.join(map(str, known))}")
    names = [n for n in names if runs is None or n in runs]
    return [PlannedRun(spec.run(n), seed, [*spec.run(n).overrides, *s.overrides, f"train.seed={seed}"],
                       [*spec.run(n).args, *s.args]) for n in names for seed in every_seed
            if seeds is None or seed in seeds]


def trained_by(spec: ReproSpec, item: PlannedRun, scale: str) -> tuple[ReproSpec, PlannedRun]:
    """The spec and planned run whose directory holds the checkpoints `item` measures: `item` itself, or the run its
    `checkpoints_of` names, at the same scale and seed (so both specs measure one training)."""
    if not item.run.checkpoints_of:
        return spec, item
    source_spec, source_run = checkpoints_source(spec, item.run)
    try:
        return source_spec, plan(source_spec, scale, runs=[source_run.name], seeds=[item.seed])[0]
    except ConfigError as err:
        raise ConfigError(f"{spec.name}.runs.{item.run.name} measures {item.run.checkpoints_of}, which this scale "
                          f"cannot train: {err}") from None


def protocol_options(spec: ReproSpec, scale: str) -> dict[str, Any]:
    return {**spec.protocol.options, **spec.scale(scale).protocol}


def _comparable(tree: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide what a run trains to: without IGNORED_TRAIN_KEYS and without `eval` (the metrics
    `zoo evaluate` defaults to; training never reads it, and its schema changed under finished runs)."""
    tree = json.loads(json.dumps(tree))
    for key in IGNORED_TRAIN_KEYS:
        tree.get("train", {}).pop(key, None)
    tree.pop("eval", None)
    return tree


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Settings of the saved config `a` that `b` changes; keys `a` lacks (added to the zoo after the run was saved,
    so the run had their defaults) are not differences."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a) for d in _differences(a[k], b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


# The code that decides what a run trains to (with the run's recipe file): a run resumed under a commit that changed
# any of it is restarted.
TRAINING_CODE = ("zoo/models", "zoo/nn", "zoo/losses", "zoo/training", "zoo/data", "zoo/config.py", "zoo/factory.py")
PROVENANCE = "provenance.json"


def training_code_changes(old: str, new: str, recipe: Path | None = None) -> list[str] | None:
    """Files of TRAINING_CODE (and `recipe`) that differ between commits `old` and `new` ("-dirty" suffixes
    ignored); None when git cannot tell (no checkout, or a commit it does not know)."""
    paths = [*TRAINING_CODE, *([str(recipe.resolve().relative_to(REPO))] if recipe and recipe.resolve().is_relative_to(
        REPO) else [])]
    try:
        diff = subprocess.run(["git", "diff", "--name-only", old.removesuffix("-dirty"), new.removesuffix("-dirty"),
                               "--", *paths], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return diff.stdout.split() if diff.returncode == 0 else None


def _finished(result_path: Path) -> bool:
    return result_path.is_file() and json.loads(result_path.read_text()).get("status") == "done"


def _provenance(run_dir: Path) -> dict[str, list[str]]:
    """provenance.json: every commit (`commits`) and device (`devices`) the run trained under, in order."""
    path = run_dir / PROVENANCE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Replace `path` atomically: a reader (or a later run) never sees half a file, an interrupted write loses nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(partial, path)


def _trained_under(run_dir: Path) -> list[str]:
    return _provenance(run_dir).get("commits", [])


def describe_device(trainer: Trainer) -> str:
    """Where and in what precision `trainer` runs, e.g. "cpu (1 thread), fp32" or "cuda (NVIDIA H100 80GB HBM3),
    bf16 autocast": a result counts the same from any device, and says which one trained it."""
    device = trainer.device
    if device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(device)})"
    elif device.type == "cpu":
        threads = torch.get_num_threads()
        where = f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    else:
        where = device.type
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(
        trainer.autocast_dtype, f"{trainer.autocast_dtype} autocast")
    switches = [s for s in ("tf32", "channels_last", "compile") if getattr(trainer.speed, s)]
    if trainer.accelerator.num_processes > 1:
        where += f" x {trainer.accelerator.num_processes} processes"
    return ", ".join([where, precision, *switches])


def note_device(run_dir: Path, device: str) -> list[str]:
    """Record that `run_dir` trains on `device` (appended when it differs from the last one); returns them all."""
    doc = _provenance(run_dir)
    devices = doc.setdefault("devices", [])
    if not devices or devices[-1] != device:
        devices.append(device)
        _write_json(run_dir / PROVENANCE, doc)
    return devices


def note_commit(run_dir: Path, commit: str | None, recipe: Path | None = None, log=print) -> list[str]:
    """Record that `run_dir` trains under `commit` (provenance.json lists every commit a run trained under). A run
    begun under a commit whose training code differs from this one's is moved aside (to `<run>.stale-<commit>`,
    nothing deleted) so it restarts: its checkpoints would mix two versions of the code. Returns the commits."""
    commits = _trained_under(run_dir)
    if commits and commit and commits[-1] != commit:
        changed = training_code_changes(commits[-1], commit, recipe)
        if changed is None or changed:
            stale = run_dir.with_name(f"{run_dir.name}.stale-{commits[-1][:12]}")
            log(f"{run_dir}: trained under {commits[-1]}, and the training code differs at {commit} "
                f"({', '.join(changed[:5]) if changed else 'git cannot compare them'}): restarting it "
                f"(the old run moved to {stale})")
            run_dir.rename(stale)
            commits = []
    if commit and (not commits or commits[-1] != commit):
        commits.append(commit)
        _write_json(run_dir / PROVENANCE, {**_provenance(run_dir), "commits": commits})
    return commits


@dataclass
class Schedule:
    """What a run trains to: its recipe (max_steps set from the scale's epochs) and the training set."""

    recipe_path: Path
    recipe: Any
    train_set: Any


def training_schedule(spec: ReproSpec, item: PlannedRun, scale: str, extra: list[str], progress: bool
                      ) -> Schedule:
    """The recipe `item` trains (its overrides, the scale's, `extra`) with max_steps from the scale's epochs."""
    recipe_path = spec.recipe_path(item.run)
    recipe = load_recipe(recipe_path, [*QUIET, f"train.progress={str(progress).lower()}", *item.overrides, *extra])
    train_set = load_dataset(recipe.data.name, recipe.data.split, recipe.data.root, **recipe.data.options)
    epochs = spec.scale(scale).epochs
    if epochs is not None:
        per_epoch = batches_per_epoch(len(train_set), recipe.data.batch_size, drop_last=recipe.data.drop_last)
        recipe.train.max_steps = max(1, round(epochs * per_epoch))
    return Schedule(recipe_path, recipe, train_set)


def latest_step(run_dir: Path) -> int:
    """The step of the run's latest complete checkpoint (0 without one)."""
    ckpts = checkpoint_dirs(run_dir)
    return int(ckpts[-1].name.rsplit("_", 1)[-1]) if ckpts else 0


def train_run(item: PlannedRun, scale: str, run_dir: Path, schedule: Schedule) -> tuple[int, int]:
    """Train `item` in `run_dir` up to `schedule`, resuming its checkpoints; returns (steps, steps trained now)."""
    recipe_path, recipe, train_set = schedule.recipe_path, schedule.recipe, schedule.train_set
    saved = run_dir / CONFIG
    if saved.is_file():
        changed = _differences(_comparable(read_yaml(saved)), _comparable(to_dict(recipe)))
        if changed:
            raise ConfigError(f"{run_dir} holds a run with other settings ({'; '.join(changed)}); pass another --out "
                              f"or the same settings to continue it")
    torch.manual_seed(recipe.train.seed)
    trainer = Trainer(build_model(recipe), recipe, run_dir, dataset=train_set)
    if checkpoint_dirs(run_dir):
        trainer.resume(run_dir)
    start = trainer.step
    if trainer.step > recipe.train.max_steps:
        raise ConfigError(f"{run_dir} holds {trainer.step} steps, more than the {recipe.train.max_steps} of scale "
                          f"{scale!r}; pass another --out")
    if trainer.step < recipe.train.max_steps:
        if trainer.is_main:
            note_device(run_dir, describe_device(trainer))
        trainer.train()
    record_training(run_dir, recipe=str(recipe_path), name=item.catalog_name)
    if trainer.step < recipe.train.max_steps:  # a stop signal: resumable, not a result
        raise RunInterrupted(f"{run_dir} stopped at step {trainer.step} of {recipe.train.max_steps}; run the same "
                             f"command again to resume it")
    return trainer.step, trainer.step - start


def _metric_rows(values: dict[str, float], protocol: dict[str, Any], context: dict[str, Any]
                 ) -> list[tuple[str, float, float | None, dict[str, Any], str | None, dict[str, Any]]]:
    """(name, value, std, protocol, spread, metadata) per result. Registered metrics (protocol `metrics`) keep each
    metric's own protocol and spread, as `zoo evaluate` records them, so the catalog compares them with other
    evaluations of that protocol (result.json files older than `spreads` take the spread from the metric's
    definition); other protocols record every value under the spec's protocol and run."""
    per_metric = protocol.get("metrics")
    if protocol.get("protocol") != "metrics" or not isinstance(per_metric, dict):
        return [(name, value, None, {**protocol, **context}, None, {}) for name, value in values.items()]
    rows = []
    for name, metric_protocol in per_metric.items():
        if name not in values:
            continue
        std = values.get(f"{name}_std")
        spread = protocol.get("spreads", {}).get(name) or (METRICS.get(name.split(".")[0]).spread if std is not None
                                                            else None)
        metadata = {**protocol.get("metadata", {}).get(name, {}), "reproduction": context}
        rows.append((name, values[name], std, metric_protocol, spread, metadata))
    return rows


def _record_results(run_dir: Path, values: dict[str, float], protocol: dict[str, Any], context: dict[str, Any],
                    commit: str | None = None) -> None:
    """Results into the catalog; a failure only warns (the numbers are in result.json)."""


    try:
        with Catalog() as catalog:
            ckpts = checkpoint_dirs(run_dir)
            cid = (catalog.register_checkpoint_dir(ckpts[-1]) if ckpts else
                   catalog.register_source(f"study:{context['spec']}:{context['run']}", context["spec"]))
            for name, value, std, metric_protocol, spread, metadata in _metric_rows(values, protocol, context):
                catalog.add_result(cid, name, value, std, metric_protocol, spread=spread, metadata=metadata,
                                   code_commit=commit)
    except Exception as err:  # noqa: BLE001 - sqlite, disk, permissions: never lose the numbers over it
        warnings.warn(f"could not record results in the catalog: {err}", stacklevel=2)


def record_finished(spec: ReproSpec, scale: str, out: Path) -> int:
    """(Re-)record the finished runs of `spec` at `scale` (their result.json) in the catalog, training and
    measuring nothing: e.g. into a fresh table, or after a catalog was lost. Returns the number of runs recorded."""

    count = 0
    for item in plan(spec, scale):
        result_path = item.directory(out, spec.name, scale) / "result.json"
        if not result_path.is_file():
            continue
        record = json.loads(result_path.read_text())
        if record.get("status") != "done":
            continue
        source_spec, source = trained_by(spec, item, scale)
        run_dir = source.directory(out, source_spec.name, scale)
        if source.run.recipe is not None:
            record_training(run_dir, recipe=str(source_spec.recipe_path(source.run)), name=source.catalog_name)
        _record_results(run_dir, record["values"], record["protocol"], item.context(spec.name, scale),
                        record.get("commit"))
        count += 1
    return count


def run_one(spec: ReproSpec, item: PlannedRun, scale: str, out: Path, extra: list[str],
            progress: bool = False, commit: str | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) and measure one run; returns its record (also written to result.json). `commit`
    is the checkout's commit when the code was loaded (default: now)."""

    result_dir = item.directory(out, spec.name, scale)
    result_path = result_dir / "result.json"
    source_spec, source = trained_by(spec, item, scale)
    run_dir = source.directory(out, source_spec.name, scale)  # result_dir, unless the run measures another's
    options = protocol_options(spec, scale)
    context = item.context(spec.name, scale)
    begun = time.time()
    commit = commit or git_commit()
    commits = [commit]
    if spec.protocol.name == "study":
        if result_path.is_file() and json.loads(result_path.read_text()).get("args") == item.args:
            return {**json.loads(result_path.read_text()), "skipped": True}
        values, protocol = study(run_dir, options, item.args)
        steps, trained, devices = None, None, None
    else:
        to_train = training_schedule(source_spec, source, scale, extra, progress)
        # only a run with steps left can mix two versions of the training code: a trained one is measured as it is
        if latest_step(run_dir) < to_train.recipe.train.max_steps and not _finished(run_dir / "result.json"):
            note_commit(run_dir, commit, to_train.recipe_path)
        steps, trained = train_run(source, scale, run_dir, to_train)
        provenance = _provenance(run_dir)
        commits = provenance.get("commits") or commits  # the commits that trained it
        devices = provenance.get("devices")  # and the devices (runs begun before they were noted: none)
        if trained == 0 and result_path.is_file():
            previous = json.loads(result_path.read_text())
            if previous.get("steps") == steps and previous.get("options") == options:
                return {**previous, "skipped": True}
            commits = previous.get("commits") or commits
            devices = previous.get("devices") or devices
        values, protocol = CHECKPOINT_PROTOCOLS[spec.protocol.name](run_dir, options, progress=progress)
    record = {**context, "status": "done", "values": values, "protocol": protocol, "options": options,
              "steps": steps, "trained_now": trained, "overrides": source.overrides + extra, "args": item.args,
              "seconds": round(time.time() - begun, 1), "commit": commit, "commits": commits, "run_dir": str(run_dir),
              **({"devices": devices} if devices else {}),
              **({"checkpoints_of": f"{source_spec.name}/{source.run.name}"} if run_dir != result_dir else {})}
    result_dir.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(record, indent=1, default=str))
    _record_results(run_dir, values, protocol, context, record["commit"])
    return record


def run_spec(spec: ReproSpec, scale: str, out: Path, *, extra: list[str] | None = None, progress: bool = True,
             results_path: Path | None = None, log=print, runs: list[str] | None = None,
             seeds: list[int] | None = None, allow_dirty: bool = False) -> list[dict[str, Any]]:
    """Every run of `spec` at `scale` (or the `runs` x `seeds` subset); a failing run is reported (status "failed")
    and the others go on. Writes the records to `results_path` (default `<out>/<spec>/<scale>/results.json`) after
    each run. A `paper` result counts only from a committed tree: a dirty checkout is refused unless `allow_dirty`."""


    commit = git_commit()  # the code this process runs, even if the checkout moves on meanwhile
    if scale == "paper" and not allow_dirty and (commit is None or commit.endswith("-dirty")):
        raise ConfigError(f"{spec.name} [paper]: the checkout is {'not a git checkout' if commit is None else 'dirty'}"
                          f"; paper-scale results count only from a clean, committed tree: commit (or stash) first, "
                          f"or pass --allow-dirty for a trial that is not a result")
    items = plan(spec, scale, runs, seeds)
    results_path = results_path or out / spec.name / scale / "results.json"
    records: list[dict[str, Any]] = []
    bar = tqdm(items, desc=f"{spec.name} [{scale}]", unit="run", position=0, disable=not progress, dynamic_ncols=True)
    for item in bar:
        bar.set_postfix_str(item.key)
        try:
            record = run_one(spec, item, scale, out, list(extra or []), progress=progress, commit=commit)
        except RunInterrupted:
            bar.close()
            raise
        except Exception as err:  # noqa: BLE001 - one broken run must not stop the table
            record = {"spec": spec.name, "scale": scale, "run": item.run.name, "seed": item.seed, "status": "failed",
                      "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=5)}
        records.append(record)
        state = ("skipped (done earlier)" if record.get("skipped") else record["status"])
        shown = ", ".join(f"{k}={v:.4g}" for k, v in record.get("values", {}).items() if isinstance(v, float))
        log(f"[{spec.name}/{scale}] {item.key}: {state}" + (f" {shown}" if shown else "") +
            (f" -- {record['error']}" if record["status"] == "failed" else ""))
        write_results(results_path, spec, scale, [record])  # only this run: another process may have re-measured
        # an earlier one of ours since, and the file already holds what this call wrote before
    bar.close()
    return records


def write_results(path: Path, spec: ReproSpec, scale: str, records: list[dict[str, Any]]) -> None:
    """The spec's results at `scale` as one small JSON (no tracebacks, no run paths; the protocol's settings and
    diagnostics, e.g. the density-ratio classifiers' final losses, kept): what render reads. Records of
    runs this call did not touch (a subset run, or rows imported from elsewhere, which say their `source`) are kept;
    all are ordered as the spec lists its runs."""
    keep = ("run", "seed", "status", "values", "steps", "overrides", "args", "commit", "commits", "devices", "seconds",
            "error", "options", "source", "checkpoints_of")

    s = spec.scale(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (one per core, each with its own runs) merge into one file: read-merge-write under a lock,
    # and replace the file atomically so a reader never sees half of it.
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = {(r["run"], r["seed"]): r for r in json.loads(path.read_text())["runs"]} if path.is_file() else {}
        for r in records:
            if scale == "paper" and r.get("status") != "done":
                continue  # the paper-scale file holds finished runs only
            kept = {k: r[k] for k in keep if k in r}
            if "protocol" in r:  # its settings and diagnostics, without the run's path
                kept["protocol"] = {k: v for k, v in r["protocol"].items() if k not in ("checkpoint", "metadata")}
            merged[(r["run"], r["seed"])] = kept
        order = {r.name: i for i, r in enumerate(spec.runs)}
        doc = {"spec": spec.name, "scale": scale, "scale_description": s.description, "epochs": s.epochs,
               "runs": [merged[k] for k in sorted(merged, key=lambda k: (order.get(k[0], len(order)), k[1]))]}
        _write_json(path, doc)
