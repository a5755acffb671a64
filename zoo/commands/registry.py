#!/usr/bin/env python
"""Read the model registry: the code registry of models, and the registry table of runs, checkpoints and results.

    zoo registry models                      # name, paper, players, phases of every registered model
    zoo registry list                        # runs and checkpoints with their latest results
    zoo registry compare --metric is,lpips --sort is [--best] [--format markdown|csv|json]
    zoo registry plot --x is --y lpips --out runs/plots/is_lpips.png   # with the Pareto front
    zoo registry export [--out docs/model_zoo.md] [--note @NOTE.md]

The table is runs/registry.sqlite, or ZOO_REGISTRY, or --registry PATH (see zoo/catalog.py).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence


from zoo.catalog import Catalog, Row, best_per_model, iter_json_rows, pareto_front, sort_rows

HEADLINE = ("is", "is_cifar", "fid", "lpips", "wcritic", "modes", "elbo")  # export: which number picks the best
PROTOCOL_KEYS = ("n_samples", "n_real", "pairs", "splits", "reference_split", "sample_split", "backbone", "weights",
                 "weights_sha256", "backbone_weights", "backbone_weights_sha256", "iw_samples", "critic_backbone",
                 "critic_steps", "critic_train_data", "n_test", "kid_subset_size", "seed")


def direction(metric: str) -> bool | None:
    from zoo.evaluation.core import higher_is_better
    from zoo.factory import discover
    discover()
    return higher_is_better(metric)


# ---------------------------------------------------------------------------------------------------- formats
def markdown(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def as_csv(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def cell(row: Row, metric: str) -> str:
    if metric not in row.results:
        return ""
    r = row.results[metric]
    return f"{r['value']:.4g}" + ("" if r["std"] is None else f" ± {r['std']:.2g}")


def protocol_summary(protocol: dict[str, Any]) -> str:
    parts = []
    for key in PROTOCOL_KEYS:
        if key in protocol and protocol[key] is not None:
            value = protocol[key]
            parts.append(f"{key}={str(value)[:12] if key.endswith('sha256') else value}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------- commands
def cmd_models(args: argparse.Namespace) -> str:
    from zoo.factory import list_models
    from zoo.registry import MODELS
    rows = []
    for name in list_models():
        cls = MODELS.get(name)
        try:
            model = cls(cls.config_class())
            players = ", ".join(model.players)
            phases = ", ".join(p.name + (f" ×{p.repeats}" if p.repeats > 1 else "") +
                               (f" every {p.every}" if p.every > 1 else "") for p in model.phases())
        except Exception as err:  # noqa: BLE001 - a model whose defaults need data still gets listed
            players = phases = f"(default config fails: {err})"
        rows.append((f"`{name}`", cls.paper, players, phases))
    header = ("name", "paper", "players", "phases")
    return as_csv(header, rows) if args.format == "csv" else json.dumps(
        [dict(zip(header, r)) for r in rows], indent=2) if args.format == "json" else markdown(header, rows)


def cmd_list(args: argparse.Namespace, catalog: Catalog) -> str:
    lines = []
    by_run: dict[str, list[Row]] = {}
    for row in catalog.rows(args.model, args.dataset):
        by_run.setdefault(row.run, []).append(row)
    for run in catalog.runs():
        if run["name"] not in by_run and (args.model or args.dataset):
            continue
        lines.append(f"{run['name']}  model={run['model']} dataset={run['dataset']} commit="
                     f"{(run['git_commit'] or '?')[:12]} created={run['created_at']}  {run['out_dir']}")
        for row in by_run.get(run["name"], []):
            missing = "" if row.path.startswith("data:") or Path(row.path).exists() else "  [deleted]"
            results = ", ".join(f"{m}={cell(row, m)}" for m in sorted(row.results))
            lines.append(f"  step {row.step:>8}  sha256={(row.sha256 or '-')[:12]}  {results or '(no results)'}"
                         f"{missing}")
    return "\n".join(lines) if lines else f"(the registry table {catalog.path} holds no runs)"


def selected(args: argparse.Namespace, catalog: Catalog) -> tuple[list[Row], list[str], str | None]:
    rows = catalog.rows(args.model, args.dataset)
    metrics = [m for m in (args.metric or "").split(",") if m] or sorted({m for r in rows for m in r.results})
    sort = args.sort or (metrics[0] if metrics else None)
    if sort is not None:
        if args.best:
            rows = best_per_model(rows, sort, direction(sort))
        rows = sort_rows(rows, sort, direction(sort))
    return rows, metrics, sort


def cmd_compare(args: argparse.Namespace, catalog: Catalog) -> str:
    rows, metrics, _ = selected(args, catalog)
    if args.format == "json":
        return json.dumps(list(iter_json_rows(rows, metrics)), indent=2, default=str)
    header = ["run", "model", "dataset", "step", *metrics]
    body = [[r.run, r.model, r.dataset, r.step, *[cell(r, m) for m in metrics]] for r in rows]
    return as_csv(header, body) if args.format == "csv" else markdown(header, body)


def cmd_plot(args: argparse.Namespace, catalog: Catalog) -> str:
    from zoo.studies.plot import scatter_png
    rows = [r for r in catalog.rows(args.model, args.dataset) if r.value(args.x) is not None
            and r.value(args.y) is not None]
    if args.best:
        rows = best_per_model(rows, args.x, direction(args.x))
    if not rows:
        raise SystemExit(f"error: no checkpoint has both {args.x} and {args.y} in {catalog.path}; evaluate with "
                         f"zoo evaluate --metric {args.x},{args.y}")
    points = [(r.value(args.x), r.value(args.y)) for r in rows]
    front = pareto_front(points, direction(args.x) is not False, direction(args.y) is not False)
    out = Path(args.out or f"runs/plots/{args.x}_vs_{args.y}.png")
    arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}
    datasets = ", ".join(sorted({str(r.dataset) for r in rows}))
    scatter_png(out, points, [f"{r.run}@{r.step}" for r in rows], [r.model or "?" for r in rows], front,
                args.x + arrow[direction(args.x)], args.y + arrow[direction(args.y)],
                title=f"{args.y} against {args.x}, Pareto front joined ({datasets})")
    names = ", ".join(f"{rows[i].run}@{rows[i].step}" for i in front)
    return f"wrote {out} ({len(rows)} checkpoints; Pareto front: {names})"


def cmd_export(args: argparse.Namespace, catalog: Catalog) -> str:
    rows = catalog.rows(args.model, args.dataset)
    wanted = [m for m in (args.metric or "").split(",") if m]
    out = Path(args.out)
    text = [f"# Model zoo: results\n\nGenerated by `zoo registry export` from the registry table; do not "
            f"edit by hand. One row per model and dataset: its checkpoint best by the first of {', '.join(HEADLINE)} "
            f"it has been evaluated with (or --sort). Numbers are mean ± std as each metric defines them "
            f"([docs/metrics.md](metrics.md)); the protocol of every number "
            f"is listed below its table.\n"]
    if args.note:  # how the runs were made: the table cannot say it
        note = Path(args.note[1:]).read_text() if args.note.startswith("@") else args.note
        text.append(note.strip() + "\n")
    for dataset in sorted({str(r.dataset) for r in rows}):
        subset = [r for r in rows if str(r.dataset) == dataset]
        metrics = sorted({m for r in subset for m in r.results if not wanted or m in wanted})
        if not metrics:
            continue
        preference = [m for m in (args.sort, *HEADLINE) if m in metrics] + metrics
        best = []
        for model in sorted({str(r.model) for r in subset}):  # each model by the first headline metric it has
            mine = [r for r in subset if str(r.model) == model]
            key = next((m for m in preference if any(m in r.results for r in mine)), None)
            best += best_per_model(mine, key, direction(key)) if key else []
        sort = preference[0]
        metrics = [sort] + [m for m in metrics if m != sort]
        subset = sort_rows(best, sort, direction(sort))
        text.append(f"## {dataset}\n")
        text.append(markdown(["model", "run", "step", *metrics],
                             [[r.model, r.run, r.step, *[cell(r, m) for m in metrics]] for r in subset]))
        text.append("\nProtocols:\n")
        for m in metrics:
            seen = sorted({protocol_summary(r.results[m]["protocol"]) for r in subset if m in r.results})
            text += [f"- `{m}`: {p}" for p in seen]
        text.append("")
    if len(text) == 1:
        text.append("(no results yet: evaluate checkpoints with `zoo evaluate`)\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text).rstrip("\n") + "\n")
    return f"wrote {out}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", help="registry table (default: ZOO_REGISTRY, else runs/registry.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="the code registry").add_argument("--format", choices=("markdown", "csv", "json"),
                                                                     default="markdown")
    for name in ("list", "compare", "plot", "export"):
        p = sub.add_parser(name)
        p.add_argument("--model", help="only runs of this registered model")
        p.add_argument("--dataset", help="only runs on this dataset")
        if name in ("compare", "export"):
            p.add_argument("--metric", help="comma-separated result names (default: all)")
            p.add_argument("--sort", help="result name to sort by, best first (default: the first metric)")
        if name == "compare":
            p.add_argument("--best", action="store_true", help="only the best checkpoint per model and dataset")
            p.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
        if name == "plot":
            p.add_argument("--x", default="is")
            p.add_argument("--y", default="lpips")
            p.add_argument("--best", action="store_true", help="only the best checkpoint per model (by --x)")
            p.add_argument("--out", help="PNG path (default runs/plots/<x>_vs_<y>.png)")
        if name == "export":
            p.add_argument("--out", default="docs/model_zoo.md")
            p.add_argument("--note", help="Markdown placed under the title, e.g. how the runs were made (@FILE: read "
                                          "it from FILE)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "models":
        print(cmd_models(args))
        return 0
    with Catalog(args.registry) as catalog:
        print({"list": cmd_list, "compare": cmd_compare, "plot": cmd_plot, "export": cmd_export}[args.command](
            args, catalog))
    return 0
