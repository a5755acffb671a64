"""Reproduce paper tables: run reproduction specs at a scale, record the results, render docs/reproduction.md.

    python tools/reproduce.py recipes/reproduction/deasy2020_table2_mnist.yaml --scale cpu [--out runs/reproduction]
    python tools/reproduce.py SPEC [SPEC ...] --scale smoke [KEY=VALUE ...]   # extra overrides for every run
    python tools/reproduce.py --render          # re-render docs/reproduction.md from the committed results
    python tools/reproduce.py --list            # the specs, their scales and whether they have results
    python tools/reproduce.py SPEC --scale cpu --record   # re-record finished runs in the catalog only

A spec (recipes/reproduction/*.yaml) lists runs (recipe + overrides), seeds, a measurement protocol, the paper's
values with their source, the paper's claims, and scales: `smoke` (tests), `cpu` (a reduced schedule for a CPU),
`paper` (the paper's schedule). Runs live in `<out>/<spec>/<scale>/<run>/seed<k>/` and are resumable: a finished run
is skipped, an interrupted one resumes from its latest checkpoint, a failing one is reported while the others go on
(exit status 1). Every run and result is recorded in the catalog (runs/catalog.sqlite or ZOO_CATALOG). The
`cpu` and `paper` results are written to `--results` (docs/data/reproduction/<spec>.<scale>.json) and the page is
re-rendered, with a figure per spec and scale beside it (figures/reproduction/<spec>.<scale>.png: the paper's values
beside each seed); `smoke` results stay under --out and are never rendered.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.arguments import ArgumentParser, seed_list
from zoo.config import ConfigError
from zoo.reproduction import find_specs, load_spec, render_document, run_spec
from zoo.reproduction.render import load_results
from zoo.reproduction.run import RunInterrupted, record_finished
from zoo.reproduction.spec import SCALES

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "recipes" / "reproduction"
RESULTS = REPO / "docs" / "data" / "reproduction"
PAGE = REPO / "docs" / "reproduction.md"
FIGURES = Path("figures") / "reproduction"  # beside the page: docs/figures/reproduction/<spec>.<scale>.png


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="zoo reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="*", help="spec files (recipes/reproduction/*.yaml)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE recipe overrides for every run (e.g. data.root=DIR)")
    p.add_argument("--scale", choices=SCALES, help="which schedule to run")
    p.add_argument("--out", default="runs/reproduction", help="folder of the run directories")
    p.add_argument("--results", default=str(RESULTS), help="folder of the results JSONs that --render reads")
    p.add_argument("--page", default=str(PAGE), help="the rendered markdown page")
    p.add_argument("--render", action="store_true", help="(re-)render the page from every spec's results")
    p.add_argument("--list", action="store_true", help="list the specs and exit")
    p.add_argument("--record", action="store_true",
                   help="only (re-)record the finished runs of the specs at --scale in the catalog (e.g. a fresh "
                        "ZOO_CATALOG); trains and measures nothing")
    p.add_argument("--runs", type=lambda v: [r for r in v.split(",") if r],
                   help="comma-separated run names: only these runs of the scale (e.g. one process per core)")
    p.add_argument("--seeds", type=seed_list, help="comma-separated seeds: only these seeds of the scale")
    p.add_argument("--allow-dirty", action="store_true",
                   help="let a paper-scale run start from a checkout with uncommitted changes (a trial, not a result)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_intermixed_args(argv)
    args.overrides = [s for s in args.specs if "=" in s and not s.endswith(".yaml")] + args.overrides
    args.specs = [s for s in args.specs if s not in args.overrides]
    if args.specs and args.scale is None:
        p.error("--scale is required to run specs (smoke, cpu or paper)")
    if not args.specs and not (args.render or args.list):
        p.error("give spec files to run, or --render, or --list")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = [load_spec(s) for s in args.specs]
        every = [load_spec(p) for p in find_specs(SPECS)] if (args.render or args.list) else []
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list:
        for spec in every:
            have = ", ".join(load_results(Path(args.results), spec)) or "no results"
            print(f"{spec.path}: {spec.title} [scales: {', '.join(spec.scales)}; {have}]")
        return 0
    if args.record:
        if not args.scale or not specs:
            print("error: --record needs spec files and --scale", file=sys.stderr)
            return 2
        for spec in specs:
            print(f"{spec.name} [{args.scale}]: recorded {record_finished(spec, args.scale, Path(args.out))} "
                  f"finished runs in the catalog")
        return 0
    status = 0
    for spec in specs:
        results_path = (Path(args.results) / f"{spec.name}.{args.scale}.json" if args.scale != "smoke" else None)
        try:
            records = run_spec(spec, args.scale, Path(args.out), extra=args.overrides, progress=not args.no_progress,
                               results_path=results_path, runs=args.runs, seeds=args.seeds,
                               allow_dirty=args.allow_dirty)
        except RunInterrupted as err:
            print(f"stopped: {err}", file=sys.stderr)
            return 130
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        failed = [r for r in records if r["status"] == "failed"]
        if failed:
            status = 1
            print(f"{spec.name}: {len(failed)} of {len(records)} runs failed", file=sys.stderr)
    if args.render or (specs and args.scale != "smoke"):
        every = every or [load_spec(p) for p in find_specs(SPECS)]
        preamble = Path(args.results) / "preamble.md"  # hand-written status above the generated sections
        page = Path(args.page)
        page.write_text(render_document(every, Path(args.results), preamble.read_text() if preamble.is_file() else "",
                                        figure_dir=page.parent / FIGURES, page_dir=page.parent))
        print(f"wrote {args.page}")
    return status
