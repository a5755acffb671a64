#!/usr/bin/env python
"""Evaluate checkpoints (or real data, as a reference) with registered metrics; print a table, write JSON and record
every result in the catalog.

    zoo evaluate CHECKPOINT [CHECKPOINT ...] [--metric is,lpips[,...]] [--n-samples N] [--batch-size B]
        [--seed S] [--split test]
    accelerate launch --multi_gpu --num_processes 2 -m zoo.cli evaluate runs/vae --metric fid,kid   # sharded samples
    zoo evaluate data:cifar10_folder:test --metric is_cifar --cifar-classifier PATH   # a real split
    zoo evaluate runs/mine --import my_model --metric elbo   # a model defined outside the package

A CHECKPOINT is a checkpoint directory or a run directory (its latest checkpoint); `data:NAME[:SPLIT]` evaluates the
images of a dataset split as if they were samples (the reference value of a sample metric, and the classifier
accuracy of is_cifar / modes). Metrics: is, fid, kid, is_cifar, lpips, msssim, wcritic, elbo, modes (docs/metrics.md).
Without --metric, each checkpoint gets the metrics its recipe's `eval.metrics` lists (the ones its paper reports).
Results go to stdout as a table, to `<checkpoint>/eval.json`, to --json if given, and to the catalog
(runs/catalog.sqlite, or ZOO_CATALOG, or --registry). Exit status 2: a usage error, missing weights or data.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any


from zoo.arguments import ArgumentParser, add_trust_imports, positive_float, positive_int, seed_int
from zoo.config import DataConfig, apply_overrides

# every int option of a metric is a count or a size, every float a rate or a width: > 0, finite
_TYPES = {"int": positive_int, "float": positive_float, "str": str}


def add_metric_options(p: argparse.ArgumentParser) -> list[str]:
    """One --flag per option field of every registered metric (zoo.evaluation.core.metric_options); returns the
    option names. Types come from the field annotations (`int | None` -> int)."""
    from zoo.evaluation.core import metric_options, option_help
    from zoo.factory import discover
    discover()
    group = p.add_argument_group("metric options (default: each metric's protocol)")
    names = []
    for name, (f, metrics) in sorted(metric_options().items()):
        kind = str(f.type).split("|")[0].strip()
        if kind not in _TYPES:
            raise TypeError(f"metric option {name!r} of {metrics}: type {f.type} has no command-line form; use int, "
                            f"float or str")
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=_TYPES[kind], default=None,
                           help=f"{option_help(f)} [{', '.join(metrics)}]")
        names.append(name)
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="zoo evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", help="checkpoint / run directories, or data:NAME[:SPLIT]")
    p.add_argument("--metric", help="comma-separated metric names, e.g. is,fid,lpips (default: each checkpoint's "
                                    "recipe eval.metrics)")
    p.add_argument("--n-samples", type=positive_int,
                   help="samples per metric (default: each metric's protocol, e.g. 50000 for is/fid/kid)")
    p.add_argument("--n-real", type=positive_int, help="reference images (default: the whole split)")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--split", default="test", help="reference split (FID/KID, LPIPS, ELBO, critic test data)")
    p.add_argument("--data-root", help="data root for every source (default: the recipe's, else ZOO_DATA)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option of data: sources, as a recipe's data.options (e.g. limit=512, pad_to=32)")
    p.add_argument("--cache-dir", help="where reference statistics of real splits are cached (default "
                                       "<user cache>/zoo/eval, or ZOO_EVAL_CACHE)")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the disk cache of reference statistics")
    options = add_metric_options(p)
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import this module (or .py file) first: models defined outside the package (repeatable). "
                        "A checkpoint trained with --import records it; loading imports it only with --trust-imports")
    add_trust_imports(p)
    p.add_argument("--json", help="also write all results of this call to this JSON file")
    p.add_argument("--registry", help="the catalog (default: ZOO_CATALOG, else runs/catalog.sqlite)")
    p.add_argument("--no-registry", action="store_true", help="do not record results in the catalog")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.options = options
    return args


def build_context(source: str, args: argparse.Namespace, accelerator: Any):
    """(EvalContext, checkpoint path or None, recipe or None) for one source."""
    from zoo.evaluation import EvalContext
    from zoo.evaluation.sampling import checkpoint_label, parse_source
    from zoo.factory import load_checkpoint

    common = dict(split=args.split, n_samples=args.n_samples, n_real=args.n_real, batch_size=args.batch_size,
                  seed=args.seed, options={k: getattr(args, k) for k in args.options}, accelerator=accelerator,
                  progress=not args.no_progress,
                  cache_dir=False if args.no_cache else args.cache_dir)
    parsed = parse_source(source)
    if parsed is not None:
        name, split = parsed
        label = f"data:{name}:{split or args.split}"
        options = apply_overrides({}, args.data_option)
        return EvalContext(None, DataConfig(name=name, root=args.data_root, options=options), source=label,
                           sample_split=split, **common), None, None
    ckpt = load_checkpoint(source, device=accelerator.device, trust_imports=args.trust_imports)
    data = ckpt.recipe.data
    if args.data_root:
        data = dataclasses.replace(data, root=args.data_root)
    return EvalContext(ckpt.model, data, source=checkpoint_label(ckpt.path), **common), ckpt.path, ckpt.recipe


def code_identity() -> dict[str, str | None]:
    """The evaluation code that produced a result: zoo version and git commit (with -dirty), once per process."""
    if not _CODE:
        import zoo
        from zoo.catalog import git_commit
        _CODE.update(code_commit=git_commit(), zoo_version=getattr(zoo, "__version__", None))
    return _CODE


_CODE: dict[str, str | None] = {}


def record(catalog: Any, ctx: Any, ckpt: Path | None, results: list[Any]) -> None:
    """Results into the catalog; a failure only warns (the numbers are printed and in the JSON)."""
    if catalog is None:
        return
    try:
        cid = (catalog.register_checkpoint_dir(ckpt) if ckpt is not None
               else catalog.register_source(ctx.source, ctx.data.name))
        for r in results:
            catalog.add_result(cid, r.metric, r.value, r.std, r.protocol, spread=r.spread, metadata=r.metadata,
                               **code_identity())
    except Exception as err:  # noqa: BLE001 - sqlite, disk, permissions: never lose the evaluation over it
        warnings.warn(f"could not record results in the catalog {catalog.path}: {err}", stacklevel=2)


def write_eval_json(ckpt: Path, results: list[Any]) -> None:
    """Merge results into <checkpoint>/eval.json (latest per result name)."""
    path = ckpt / "eval.json"
    try:
        current = json.loads(path.read_text()) if path.is_file() else {}
        current.update({r.metric: {**r.to_dict(), **code_identity()} for r in results})
        path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str) + "\n")
    except (OSError, ValueError) as err:
        print(f"zoo: warning: could not write {path}: {err}", file=sys.stderr)


def format_table(rows: list[tuple[str, Any]]) -> str:
    header = ("source", "metric", "value", "std", "n")
    lines = [header]
    for source, r in rows:
        n = r.protocol.get("n_samples", r.protocol.get("n_real", r.protocol.get("n_test", "")))
        lines.append((source, r.metric, f"{r.value:.6g}", "" if r.std is None else f"{r.std:.3g}", str(n)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [" | ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from zoo.evaluation import EvaluationError, MetricNotApplicable
    from zoo.evaluation.core import WeightsNotFoundError, check_options
    from zoo.factory import discover
    from zoo.registry import METRICS, UnknownNameError
    from zoo.training import CheckpointError
    from zoo.training.distributed import default_accelerator

    from zoo.config import ConfigError
    from zoo.factory import import_modules
    discover()
    try:
        import_modules(args.imports)
    except ConfigError as err:
        print(f"error: --import: {err}", file=sys.stderr)
        return 2
    def metric_specs(names: list[str], where: str) -> list[Any] | None:
        try:
            specs = [METRICS.get(n) for n in names]
            check_options(specs, {k: getattr(args, k) for k in args.options})  # an option no metric takes: refused
        except (UnknownNameError, EvaluationError) as err:
            print(f"error: {where}: {err}", file=sys.stderr)
            return None
        return specs

    chosen = None  # --metric for every source; else each checkpoint's recipe eval.metrics
    if args.metric is not None:
        chosen = metric_specs([m.strip() for m in args.metric.split(",") if m.strip()], "--metric")
        if chosen is None:
            return 2
    accelerator = default_accelerator()
    catalog = None
    if accelerator.is_main_process and not args.no_registry:
        try:
            from zoo.catalog import Catalog
            catalog = Catalog(args.registry)
        except Exception as err:  # noqa: BLE001
            print(f"zoo: warning: catalog unavailable ({err}); results go to stdout and JSON only",
                  file=sys.stderr)
    table: list[tuple[str, Any]] = []
    everything: list[dict[str, Any]] = []
    missing: list[str] = []  # metrics whose weights are not here: the others are still computed
    interrupted = False
    for source in args.sources:
        try:
            ctx, ckpt, recipe = build_context(source, args, accelerator)
        except (CheckpointError, EvaluationError, FileNotFoundError) as err:
            print(f"error: {source}: {err}", file=sys.stderr)
            return 2
        specs = chosen
        if specs is None:
            if recipe is None or not recipe.eval.metrics:
                why = "a data: source has no recipe" if recipe is None else "its recipe's eval.metrics is empty"
                print(f"error: {source}: no --metric given and {why}; pass --metric NAME[,NAME...] (docs/metrics.md)",
                      file=sys.stderr)
                return 2
            specs = metric_specs(recipe.eval.metrics, f"{source}: eval.metrics")
            if specs is None:
                return 2
            if ctx.is_main:
                print(f"zoo: {ctx.source}: the metrics of its recipe's eval.metrics: {', '.join(recipe.eval.metrics)}",
                      file=sys.stderr)
        for spec in specs:
            try:
                results = spec(ctx)
            except MetricNotApplicable as err:
                if ctx.is_main:
                    print(f"zoo: {spec.name} skipped for {ctx.source}: {err}", file=sys.stderr)
                continue
            except WeightsNotFoundError as err:
                missing.append(f"{spec.name} on {ctx.source}: {err}{cifar_hint(spec.name, ctx.data.name)}")
                continue
            except (EvaluationError, FileNotFoundError) as err:
                print(f"error: {spec.name} on {ctx.source}: {err}", file=sys.stderr)
                return 2
            stopped = [r.metric for r in results if r.protocol.get("stopped_early")]  # the same on every process
            if ctx.is_main:
                for r in results:  # recorded as soon as known: a later failure loses nothing
                    print(f"zoo: {ctx.source}: {r.metric} = {r.value:.6g}" +
                          ("" if r.std is None else f" ± {r.std:.3g}"), file=sys.stderr, flush=True)
                record(catalog, ctx, ckpt, results)
                if ckpt is not None:
                    write_eval_json(ckpt, results)
                table += [(ctx.source, r) for r in results]
                everything += [{"source": ctx.source, **r.to_dict(), **code_identity()} for r in results]
                if stopped:
                    print(f"zoo: {', '.join(stopped)} on {ctx.source} stopped early by a signal; recorded with the "
                          f"protocol actually run (stopped_early); evaluation ends here", file=sys.stderr)
            if stopped:  # a stop signal cut the protocol short: no further work
                interrupted = True
                break
        if interrupted:
            break
    if accelerator.is_main_process:
        print(format_table(table))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(everything, indent=2, default=str) + "\n")
        for line in missing:
            print(f"error: not computed: {line}", file=sys.stderr)
    return 130 if interrupted else 2 if missing else 0


def cifar_hint(metric: str, dataset: str) -> str:
    """For CIFAR-10, the Inception-free alternative of the TF-Inception metrics."""
    if metric in ("is", "fid", "kid") and dataset.startswith("cifar10"):
        return ("; for CIFAR-10 without these weights, --metric is_cifar scores samples with a CIFAR-10 ResNet "
                "(--cifar-classifier ../shared/weights/cifar10_resnet/resnet56-4bfd9763.th)")
    return ""

