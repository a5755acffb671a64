#!/usr/bin/env python
"""Read the code registry of models, and the catalog: the SQLite table of runs, checkpoints and results.

    zoo registry models                      # name, paper, players, phases of every registered model
    zoo registry list                        # runs and checkpoints with every result
    zoo registry compare --metric is,lpips --sort is [--best] [--format markdown|csv|json]
    zoo registry plot --x is --y lpips --out runs/plots/is_lpips.png   # with the Pareto front (+ .pdf)
    zoo registry export [--out docs/model_zoo.md] [--note @NOTE.md] [--csv F] [--json F]
    zoo registry report [--out runs/report.html]     # one offline HTML page: sortable table, samples, plots

The catalog is runs/catalog.sqlite, or ZOO_CATALOG, or --registry PATH (see zoo/catalog/). Every result is kept;
results are only ranked against results of the same protocol (`protocol_id`): compare and export print one table
per protocol of the ranking metric, plot refuses a mix. `--protocol ID|key=value,...` picks one;
`--aggregate-seeds` turns runs of one recipe that differ only in training seed into mean ± std (n seeds).
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, Sequence


from zoo.arguments import ArgumentParser
from zoo.catalog import (NON_PROTOCOL_KEYS, Catalog, CatalogError, Result, Row, aggregate_seeds, best_per_model,
                         describe_error, pareto_front, sort_rows, wide_rows)
from zoo.commands.formats import (as_csv, cell, header, markdown, markdown_text, protocol_differences,
                                  protocol_summary)
from zoo.figures.style import FORMATS

HEADLINE = ("is", "is_cifar", "fid", "lpips", "wcritic", "modes", "elbo")  # export: which number picks the best
LONG_COLUMNS = ("run", "model", "dataset", "step", "checkpoint_sha256", "metric", "value", "spread", "spread_kind",
                "n_samples", "seed", "train_seed", "n_seeds", "protocol_id", "complete", "code_commit", "zoo_version",
                "created_at")


def direction(metric: str) -> bool | None:
    from zoo.evaluation.core import higher_is_better
    from zoo.factory import discover
    discover()
    return higher_is_better(metric)


def known_metrics(catalog: Catalog) -> list[str]:
    from zoo.factory import discover
    from zoo.registry import METRICS
    discover()
    names = {o for n in METRICS.names() for o in METRICS.get(n).outputs}
    return sorted(names | {rec[0] for rec in catalog.query("SELECT DISTINCT metric FROM results")})


def wanted_metrics(args: argparse.Namespace, catalog: Catalog) -> list[str]:
    """--metric names; an unknown one is an error naming the known ones."""
    names = [m for m in (args.metric or "").split(",") if m]
    known = known_metrics(catalog)
    for name in names + ([args.sort] if getattr(args, "sort", None) else []):
        if name not in known:
            raise SystemExit(f"error: unknown metric {name!r}; known: {', '.join(known)}")
    return names


def load(args: argparse.Namespace, catalog: Catalog, metrics: list[str] | None = None) -> list[Result]:
    results = catalog.results(args.model, args.dataset, metrics or None, getattr(args, "protocol", None))
    return aggregate_seeds(results) if getattr(args, "aggregate_seeds", False) else results


def by_protocol(rows: list[Row], metric: str) -> dict[str | None, list[Row]]:
    """Rows grouped by the protocol id of `metric` (None: rows without it), largest group first."""
    groups: dict[str | None, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.protocol_id(metric), []).append(row)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] is None, -len(kv[1]))))


def long_rows(results: list[Result]) -> list[dict[str, Any]]:
    """One flat record per result with numeric columns (exports)."""
    return [{"run": r.run, "model": r.model, "dataset": r.dataset, "step": r.step, "checkpoint_sha256": r.sha256,
             "metric": r.metric, "value": r.value, "spread": r.std, "spread_kind": r.spread, "n_samples": r.n,
             "seed": r.seed, "train_seed": r.train_seed, "n_seeds": r.n_seeds, "protocol_id": r.protocol_id,
             "complete": r.complete, "code_commit": r.code_commit, "zoo_version": r.zoo_version,
             "created_at": r.created_at} for r in results]


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
    for row in catalog.rows(args.model, args.dataset, args.protocol):
        by_run.setdefault(row.run, []).append(row)
    for run in catalog.runs():
        if run["name"] not in by_run and (args.model or args.dataset):
            continue
        lines.append(f"{run['name']}  model={run['model']} dataset={run['dataset']} commit="
                     f"{(run['git_commit'] or '?')[:12]} created={run['created_at']}  {run['out_dir']}")
        for row in by_run.get(run["name"], []):
            missing = "" if row.path.startswith("data:") or Path(row.path).exists() else "  [deleted]"
            results = ", ".join(f"{m}={cell(row, m)} [{row.results[m]['protocol_id'][:6]}]" for m in sorted(row.results))
            lines.append(f"  step {row.step:>8}  sha256={(row.sha256 or '-')[:12]}  {results or '(no results)'}"
                         f"{missing}")
    return "\n".join(lines) if lines else f"(the catalog {catalog.path} holds no runs)"


def ranked_tables(args: argparse.Namespace, catalog: Catalog) -> tuple[list[tuple[str | None, list[Row]]], list[str],
                                                                          list[Result]]:
    """(protocol id of the sort metric, its rows best first) for each protocol, the metrics, the results read."""
    metrics = wanted_metrics(args, catalog)
    results = load(args, catalog, metrics)
    metrics = metrics or sorted({r.metric for r in results})
    rows = wide_rows(results)
    sort = args.sort or (metrics[0] if metrics else None)
    if sort is None:
        return [(None, rows)], metrics, results
    tables = []
    for pid, group in by_protocol(rows, sort).items():
        if args.best and pid is not None:
            group = best_per_model(group, sort, direction(sort))
        tables.append((pid, sort_rows(group, sort, direction(sort))))
    return tables, metrics, results


def differences(rows: list[Row], metric: str) -> dict[str, str]:
    """protocol id -> the settings that tell the protocols of `metric` in `rows` apart beyond their summary lines."""
    full = {r.results[metric]["protocol_id"]: r.results[metric]["protocol"] for r in rows if metric in r.results}
    return protocol_differences(full, NON_PROTOCOL_KEYS)


def protocol_line(rows: list[Row], metric: str, differs: dict[str, str] | None = None) -> list[str]:
    """One line per protocol of `metric` in `rows`; `differs` (from `differences` over every table shown) adds what
    tells protocols apart whose lines read alike."""
    seen = {r.results[metric]["protocol_id"]: protocol_summary(r.results[metric]["protocol"])
            for r in rows if metric in r.results}
    differs = differs if differs is not None else differences(rows, metric)
    return [f"- `{markdown_text(metric).replace('`', '')}` [{pid[:6]}]: {markdown_text(text)}" +
            (f"; differs in {markdown_text(differs[pid])}" if pid in differs else "")
            for pid, text in sorted(seen.items())]


def markdown_tables(tables: list[tuple[str | None, list[Row]]], metrics: list[str], sort: str | None,
                    first: Sequence[str] = ("run", "model", "dataset", "step")) -> str:
    out = []
    everyone = [r for _, rows in tables for r in rows]
    differs = {m: differences(everyone, m) for m in metrics}
    for pid, rows in tables:
        if len(tables) > 1:
            out.append(f"### `{sort}` protocol [{pid[:6]}]\n" if pid else f"### without `{sort}`\n")
        mixed = {m for m in metrics if len({r.protocol_id(m) for r in rows if m in r.results}) > 1}
        body = [[getattr(r, c) for c in first] + [cell(r, m, m in mixed) for m in metrics] for r in rows]
        out.append(markdown([*first, *[header(m, rows) for m in metrics]], body))
        out.append("\nProtocols:\n" + "\n".join(line for m in metrics for line in protocol_line(rows, m, differs[m]))
                   + "\n")
    return "\n".join(out).rstrip("\n")


def cmd_compare(args: argparse.Namespace, catalog: Catalog) -> str:
    tables, metrics, results = ranked_tables(args, catalog)
    if args.format in ("csv", "json"):  # long format: one record per result, protocols never merged
        ranked = [r for _, rows in tables for r in rows]
        order = {(r.checkpoint_id, m): i for i, r in enumerate(ranked) for m in r.results}
        chosen = {(r.checkpoint_id, m, r.results[m]["protocol_id"]) for _, rows in tables for r in rows
                  for m in r.results}
        records = [r for r in results if (r.checkpoint_id, r.metric, r.protocol_id) in chosen]
        records.sort(key=lambda r: (r.metric, r.protocol_id, order.get((r.checkpoint_id, r.metric), 0)))
        flat = long_rows(records)
        if args.format == "json":
            for f, r in zip(flat, records):
                f["protocol"] = r.protocol
            return json.dumps(flat, indent=2, default=str)
        return as_csv(LONG_COLUMNS, [[f[c] for c in LONG_COLUMNS] for f in flat])
    sort = args.sort or (metrics[0] if metrics else None)
    return markdown_tables(tables, metrics, sort)


def cmd_plot(args: argparse.Namespace, catalog: Catalog) -> str:
    from zoo.figures import scatter_plot
    wanted_metrics(argparse.Namespace(metric=f"{args.x},{args.y}"), catalog)
    rows = [r for r in wide_rows(load(args, catalog, [args.x, args.y])) if r.value(args.x) is not None
            and r.value(args.y) is not None]
    if not rows:
        raise SystemExit(f"error: no checkpoint has both {args.x} and {args.y} in {catalog.path}; evaluate with "
                         f"zoo evaluate --metric {args.x},{args.y}")
    combos: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r.protocol_id(args.x), r.protocol_id(args.y))
        combos[key] = combos.get(key, 0) + 1
    if len(combos) > 1:  # one plot, one protocol per axis
        listing = "; ".join(f"{args.x} [{x[:6]}] with {args.y} [{y[:6]}]: {n} checkpoints"
                            for (x, y), n in sorted(combos.items(), key=lambda kv: -kv[1]))
        raise SystemExit(f"error: the results mix protocols ({listing}); pick one with --protocol ID (see "
                         f"tools/registry.py compare --metric {args.x},{args.y})")
    if args.best:
        rows = best_per_model(rows, args.x, direction(args.x))
    points = [(r.value(args.x), r.value(args.y)) for r in rows]
    errors = [tuple((r.results[m]["std"] or 0.0) if r.results[m].get("n_seeds", 1) > 1 else 0.0
                    for m in (args.x, args.y)) for r in rows]
    front = pareto_front(points, direction(args.x) is not False, direction(args.y) is not False)
    out = Path(args.out or f"runs/plots/{args.x}_vs_{args.y}.png")
    arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}
    datasets = ", ".join(sorted({str(r.dataset) for r in rows}))
    bars = " ; bars: std over training seeds" if any(e != (0.0, 0.0) for e in errors) else ""
    scatter_plot(out, points, [f"{r.run}@{r.step}" for r in rows], [r.model or "?" for r in rows], front,
                 args.x + arrow[direction(args.x)], args.y + arrow[direction(args.y)],
                 title=f"{args.y} against {args.x}, Pareto front joined ({datasets}){bars}", errors=errors,
                 formats=args.formats)
    names = ", ".join(f"{rows[i].run}@{rows[i].step}" for i in front)
    return f"wrote {out} ({len(rows)} checkpoints; Pareto front: {names})"


def cmd_export(args: argparse.Namespace, catalog: Catalog) -> str:
    wanted = wanted_metrics(args, catalog)
    args.aggregate_seeds = True  # the zoo table shows a recipe's seeds as one mean ± std
    results = load(args, catalog, wanted)
    rows = wide_rows(results)
    out = Path(args.out)
    text = [f"# Model zoo: results\n\nGenerated by `zoo registry export` from the catalog; do not "
            f"edit by hand. One row per model and dataset: its checkpoint best by the first of {', '.join(HEADLINE)} "
            f"it has been evaluated with (or --sort), ranked only against results of the same protocol (one table "
            f"per protocol). Each column header says what its ± is ([docs/metrics.md](metrics.md)); runs of one "
            f"recipe that differ only in seed show mean ± std over seeds with their count. The protocol of every "
            f"number is listed below its table, with its id in brackets.\n"]
    if args.note:  # how the runs were made: the table cannot say it
        note = Path(args.note[1:]).read_text() if args.note.startswith("@") else args.note
        text.append(note.strip() + "\n")
    for dataset in sorted({str(r.dataset) for r in rows}):
        subset = [r for r in rows if str(r.dataset) == dataset]
        metrics = sorted({m for r in subset for m in r.results})
        if not metrics:
            continue
        preference = [m for m in (args.sort, *HEADLINE) if m in metrics] + metrics
        sort = preference[0]
        tables = []
        for pid, group in by_protocol(subset, sort).items():
            best = []
            for model in sorted({str(r.model) for r in group}):  # each model by the first headline metric it has
                mine = [r for r in group if str(r.model) == model]
                key = next((m for m in preference if any(m in r.results for r in mine)), None)
                best += best_per_model(mine, key, direction(key)) if key else []
            tables.append((pid, sort_rows(best, sort, direction(sort))))
        metrics = [sort] + [m for m in metrics if m != sort]
        text.append(f"## {dataset}\n")
        text.append(markdown_tables(tables, metrics, sort, first=("model", "run", "step")) + "\n")
    if len(text) == 1:
        text.append("(no results yet: evaluate checkpoints with `zoo evaluate`)\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text).rstrip("\n") + "\n")
    written = [str(out)]
    flat = long_rows(results)
    if args.csv:
        Path(args.csv).write_text(as_csv(LONG_COLUMNS, [[f[c] for c in LONG_COLUMNS] for f in flat]) + "\n")
        written.append(args.csv)
    if args.json:
        for f, r in zip(flat, results):
            f["protocol"] = r.protocol
        Path(args.json).write_text(json.dumps(flat, indent=2, default=str) + "\n")
        written.append(args.json)
    return f"wrote {', '.join(written)}"


def cmd_report(args: argparse.Namespace, catalog: Catalog) -> str:
    from zoo.commands.report import build_report
    out = Path(args.out)
    counts = build_report(catalog, out, direction, args.model, args.dataset, args.protocol)
    return (f"wrote {out} ({counts['rows']} checkpoints, {counts['grids']} sample grids, {counts['pareto']} Pareto "
            f"plots, {counts['curves']} loss-curve figures; self-contained, opens offline)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="zoo registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", help="the catalog (default: ZOO_CATALOG, else runs/catalog.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="the code registry").add_argument("--format", choices=("markdown", "csv", "json"),
                                                                     default="markdown")
    for name in ("list", "compare", "plot", "export", "report"):
        p = sub.add_parser(name)
        p.add_argument("--model", help="only runs of this registered model")
        p.add_argument("--dataset", help="only runs on this dataset")
        p.add_argument("--protocol", help="only results of this protocol: an id (prefix) as printed, or "
                                          "key=value[,key=value] of the protocol (e.g. n_samples=50000)")
        if name in ("compare", "plot"):
            p.add_argument("--aggregate-seeds", action="store_true",
                           help="runs of one recipe that differ only in seed: mean ± std over seeds, n")
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
            p.add_argument("--formats", nargs="*", default=["pdf"], choices=FORMATS,
                           help="also write the figure in these formats beside --out (default: pdf)")
        if name == "report":
            p.add_argument("--out", default="runs/report.html", help="the HTML file to write")
        if name == "export":
            p.add_argument("--out", default="docs/model_zoo.md")
            p.add_argument("--note", help="Markdown placed under the title, e.g. how the runs were made (@FILE: read "
                                          "it from FILE)")
            p.add_argument("--csv", help="also write every result as CSV (numeric columns) to this file")
            p.add_argument("--json", help="also write every result with its protocol as JSON to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "models":
        print(cmd_models(args))
        return 0
    commands = {"list": cmd_list, "compare": cmd_compare, "plot": cmd_plot, "export": cmd_export,
                "report": cmd_report}
    try:
        with Catalog(args.registry, readonly=True) as catalog:  # reading only: works on a read-only table too
            print(commands[args.command](args, catalog))
    except (CatalogError, sqlite3.DatabaseError) as err:
        print(f"error: {err if isinstance(err, CatalogError) else describe_error(args.registry, err)}",
              file=sys.stderr)
        return 2
    return 0

