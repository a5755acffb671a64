"""Measurement protocols of reproduction specs: a finished run (or a paper study) -> named numbers.

Each protocol returns `(values, protocol)`: metric name -> float, and the settings that produced them (recorded in the
catalog and the results JSON). Options come from the spec's `protocol.options`, updated by the scale's.
Weight-file options may use environment variables (`${ZOO_SHARED}/weights/...`).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from zoo import load_checkpoint
from zoo.config import ConfigError, check_keys
from zoo.data import load_dataset
from zoo.evaluation import EvalContext, MetricNotApplicable
from zoo.registry import METRICS
from zoo.studies.evidence import evidence_estimate
from zoo.studies.latent_analysis import appendix_e_table1

Values = dict[str, float]


def _eval_data(recipe: Any, options: dict[str, Any], default_split: str) -> tuple[Any, str]:
    """The evaluation split of a run's dataset: the recipe's data options without its training `limit`, with the
    protocol's own `limit`."""

    split = options.get("split", default_split)
    data_options = {k: v for k, v in recipe.data.options.items() if k != "limit"}
    if options.get("limit") is not None:
        data_options["limit"] = options["limit"]
    return load_dataset(recipe.data.name, split, recipe.data.root, **data_options), split


def latent_kl(run_dir: Path, options: dict[str, Any], progress: bool = False) -> tuple[Values, dict[str, Any]]:
    """Rosca et al. App. E Table 1 on the run's latest checkpoint (`zoo.studies.latent_analysis.appendix_e_table1`):
    options split (default the training split, as the paper's N = 60000), limit, num_z, seed, ratio (the
    density-ratio classifiers, each {name, layers, hidden, steps, lr, seeds, window, tol}). The classifiers' training
    states are kept in <run>/latent/<checkpoint>/ratio_classifiers, so rerunning a stopped measurement resumes it."""
    check_keys("protocol latent_kl", options, ["split", "limit", "num_z", "seed", "ratio"], what="option")
    ratio = options.get("ratio", [])
    for i, cfg in enumerate(ratio):
        if not isinstance(cfg, dict) or "name" not in cfg:
            raise ConfigError(f"protocol latent_kl: ratio[{i}] must be a mapping with a name, got {cfg!r}")
        check_keys(f"protocol latent_kl.ratio[{i}]", cfg,
                   ["name", "layers", "hidden", "steps", "lr", "seeds", "window", "tol"], what="option")
    model, recipe, step, ckpt = load_checkpoint(run_dir)
    data, split = _eval_data(recipe, options, recipe.data.split)
    num_z, seed = int(options.get("num_z", 10_000)), int(options.get("seed", 0))
    # the classifiers can train for hours: their states live beside the checkpoint, so a stopped measurement resumes
    state_dir = run_dir / "latent" / Path(ckpt).name / "ratio_classifiers"
    values, details = appendix_e_table1(model, data, num_z=num_z, seed=seed, ratio=ratio, state_dir=state_dir,
                                        progress=progress)
    return values, {"protocol": "latent_kl", "split": split, "num_z": num_z, "seed": seed, **details, "step": step,
                    "checkpoint": str(ckpt)}


def metrics(run_dir: Path, options: dict[str, Any], progress: bool = False) -> tuple[Values, dict[str, Any]]:
    """Registered zoo metrics (docs/metrics.md) on the run's latest checkpoint. Options: metrics (list of names),
    n_samples, n_real, split, batch_size, seed, and metric options (weights paths, critic_steps, ...)."""

    options = dict(options)
    names = options.pop("metrics", None)
    if not names:
        raise ConfigError("protocol metrics: options.metrics must list registered metrics, e.g. [msssim, wcritic]")
    common = {k: options.pop(k) for k in ("n_samples", "n_real", "split", "batch_size", "seed") if k in options}
    metric_options = {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in options.items()}
    model, recipe, step, ckpt = load_checkpoint(run_dir)
    ctx = EvalContext(model, recipe.data, source=str(ckpt), options=metric_options, **common)
    values, protocols, spreads, metadata, skipped = {}, {}, {}, {}, {}
    for name in names:
        try:
            results = METRICS.get(name)(ctx)
        except MetricNotApplicable as err:
            skipped[name] = str(err)
            continue
        for r in results:
            values[r.metric] = r.value
            if r.std is not None:
                values[f"{r.metric}_std"] = r.std
                spreads[r.metric] = r.spread
            protocols[r.metric] = r.protocol
            if r.metadata:  # e.g. the critic's training curve: into the catalog, not into the docs JSON
                metadata[r.metric] = r.metadata
    return values, {"protocol": "metrics", "metrics": protocols, "spreads": spreads, "metadata": metadata,
                    "skipped": skipped, "step": step, "checkpoint": str(ckpt)}


def evidence(run_dir: Path, options: dict[str, Any], progress: bool = False) -> tuple[Values, dict[str, Any]]:
    """Deasy et al. Fig. 5: log model evidence, mean and bootstrapped 95 % interval over test batches. Options:
    split, limit, batches, samples, resamples, seed."""

    check_keys("protocol evidence", options, ["split", "limit", "batches", "samples", "resamples", "seed"],
               what="option")
    model, recipe, step, ckpt = load_checkpoint(run_dir)
    data, split = _eval_data(recipe, {k: v for k, v in options.items() if k in ("split", "limit")}, "test")
    result = evidence_estimate(model, data, n_batches=options.get("batches", 100),
                               n_samples=options.get("samples", 100), n_resamples=options.get("resamples", 1000),
                               seed=options.get("seed", 0))
    values = {"log_evidence": result["mean"], "log_evidence_low": result["low"], "log_evidence_high": result["high"]}
    return values, {"protocol": "evidence", "split": split, "step": step, "checkpoint": str(ckpt),
                    **{k: result[k] for k in ("n_batches", "batch_size", "n_samples", "n_resamples", "level")}}


def _lookup(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if part == "*" and isinstance(node, dict) and len(node) == 1:  # the only key (e.g. the one dimension run)
            node = next(iter(node.values()))
        elif isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(dotted)
    return node


def studies() -> dict[str, Callable[[list[str]], int]]:
    """The paper studies a spec's `study` option may name: the study's command (`zoo NAME ARGS --out DIR`, its
    `main`), which writes its numbers as JSON into DIR."""
    from zoo.studies import appendix_d, jeffreys_1d, jsg_fig2  # here: their figures need matplotlib

    return {"appendix_d": appendix_d.main, "jeffreys_1d": jeffreys_1d.main, "jsg_fig2": jsg_fig2.main}


def study(out_dir: Path, options: dict[str, Any], args: list[str]) -> tuple[Values, dict[str, Any]]:
    """A paper study (`zoo STUDY ARGS --out OUT`, run in this process), its numbers read from the JSON it writes.
    Options: study (a name of `studies()`), json (file name in OUT), values (metric -> dotted path in that JSON; list
    items by index, -1 the last; '*' the only key of a mapping). The study's output goes to OUT/study.log."""
    check_keys("protocol study", options, ["study", "json", "values"], what="option")
    known = studies()
    name = options.get("study")
    if name not in known:
        raise ConfigError(f"protocol study: unknown study {name!r}; studies: {', '.join(sorted(known))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [*args, "--out", str(out_dir)]
    with open(out_dir / "study.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            status = known[name](argv)
        except SystemExit as stop:  # an argument error: argparse has written why into the log
            status = stop.code if isinstance(stop.code, int) else 2
    if status != 0:
        tail = (out_dir / "study.log").read_text()[-2000:]
        raise RuntimeError(f"zoo {name} {' '.join(argv)} exited with {status}:\n{tail}")
    tree = json.loads((out_dir / options["json"]).read_text())
    values = {}
    for metric, path in options.get("values", {}).items():
        try:
            value = _lookup(tree, path)
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"protocol study: {options['json']} has no {path!r} (metric {metric})") from None
        values[metric] = float(value) if value is not None else math.nan
    return values, {"protocol": "study", "command": f"zoo {name} {' '.join(argv)}", "json": options["json"]}


# each takes (run_dir, options, progress) and returns (values, protocol); progress draws bars where a measurement
# is long (the density-ratio classifiers), and is accepted but unused by the others
CHECKPOINT_PROTOCOLS: dict[str, Callable[..., tuple[Values, dict[str, Any]]]] = {
    "latent_kl": latent_kl, "metrics": metrics, "evidence": evidence}
