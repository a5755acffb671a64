"""Render reproduction specs and their results as markdown: the paper's values beside ours, the claims checked.

Reads only the spec YAMLs and the small results JSONs (`docs/data/reproduction/<spec>.<scale>.json`), so the page can
be re-rendered without any run directory. `smoke` results are never rendered: they check the pipeline, not the paper.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.reproduction.figure import save_comparison_figure
from zoo.reproduction.spec import ClaimSpec, ReproSpec, Term
from zoo.reproduction.verdicts import Sample, trend_verdict, verdict

RENDERED_SCALES = ("paper", "cpu")  # best first; smoke is never a result


@dataclass
class Stat:
    mean: float
    std: float | None  # sample std over seeds (None for one seed)
    n: int
    stderr: float | None = None  # one seed's recorded estimator error, shown where no seed spread exists


def aggregate(doc: dict[str, Any] | None, run: str, metric: str) -> Stat | None:
    """Mean and std over the seeds of `run` that finished (NaN values, e.g. a diverged run, count as NaN)."""
    if doc is None:
        return None
    rows = _finished_rows(doc, run, metric)
    values = [r["values"][metric] for r in rows]
    if not values:
        return None
    if any(v != v for v in values):
        return Stat(math.nan, None, len(values))
    if len(values) == 1:
        return Stat(values[0], None, 1, stderr=_standard_error(rows[0], metric))
    return Stat(statistics.fmean(values), statistics.stdev(values), len(values))


def _finished_rows(doc: dict[str, Any], run: str, metric: str) -> list[dict[str, Any]]:
    return [r for r in doc["runs"] if r["run"] == run and r.get("status") == "done" and metric in r.get("values", {})]


def fmt(stat: Stat | None, digits: int) -> str:
    if stat is None:
        return "—"
    if stat.mean != stat.mean:
        return f"diverged (n={stat.n})"
    spread = f" ± {stat.std:.{digits}f}" if stat.std is not None else ""
    error = f", s.e. {stat.stderr:.2g}" if stat.stderr is not None else ""
    return f"{stat.mean:.{digits}f}{spread} (n={stat.n}{error})"


def sample(doc: dict[str, Any] | None, run: str, metric: str) -> Sample | None:
    """The finished seeds' values of `run` (None when there are none or one diverged); a single seed carries its
    estimator error when the protocol recorded one (`<metric>_sem` or `<metric>_stderr`)."""
    if doc is None:
        return None
    rows = _finished_rows(doc, run, metric)
    values = tuple(float(r["values"][metric]) for r in rows)
    if not values or any(v != v for v in values):
        return None
    return Sample(values, stderr=_standard_error(rows[0], metric) if len(rows) == 1 else None)


def _standard_error(row: dict[str, Any], metric: str) -> float | None:
    """The estimator's standard error recorded with a result: `<metric>_sem` / `_stderr`, or its `_std` when the
    metric's spread is a standard error (a per-image or split std is not one)."""
    values = row.get("values", {})
    for key in (f"{metric}_sem", f"{metric}_stderr"):
        if key in values:
            return float(values[key])
    spread = (row.get("protocol", {}).get("spreads") or {}).get(metric) or ""
    return float(values[f"{metric}_std"]) if f"{metric}_std" in values and "standard error" in spread else None


def _term_sample(spec: ReproSpec, doc: dict[str, Any] | None, term: Term) -> tuple[Sample | None, str, list[str]]:
    """(the term's sample, description, runs of the term not run at this scale): a constant, one run's seeds, the
    best / worst run's seeds (picked by its mean), or the runs' means (reduce: mean); None when no run is there."""
    if term.value is not None:
        return Sample((term.value,), constant=True), f"{term.value:g}", []
    metric = spec.metric(term.metric).name
    samples = {r: sample(doc, r, metric) for r in term.runs}
    missing = [r for r, s in samples.items() if s is None]
    if term.reduce == "single" or len(missing) == len(samples):
        if missing:
            return None, "", missing
        (run, picked), = samples.items()
        return picked, run, []
    samples = {r: s for r, s in samples.items() if s is not None}
    pick = {"min": min, "max": max}.get(term.reduce)
    if pick is not None:
        run = pick(samples, key=lambda r: samples[r].mean)
        return samples[run], f"{term.reduce} over {', '.join(samples)} = {run}", missing
    return Sample(tuple(s.mean for s in samples.values())), f"mean over {', '.join(samples)}", missing


def check_claim(spec: ReproSpec, doc: dict[str, Any] | None, claim: ClaimSpec) -> tuple[str, str]:
    """(verdict, detail): "holds", "inconclusive" (the difference is inside the seeds' 95 % interval, see
    zoo.reproduction.verdicts), "does not hold", or "not checked" (a run of the claim was not run at this scale; the
    detail then says what the runs that were give); a detail starting "one seed" says no seed spread stands behind
    the verdict."""
    if claim.op in ("increasing", "decreasing"):
        metric = spec.metric(claim.lhs.metric)
        samples = [sample(doc, r, metric.name) for r in claim.lhs.runs]
        if any(s is None for s in samples):
            return "not checked", "not every run of the claim was run at this scale"
        result = trend_verdict(samples, claim.op == "increasing")
        shown = ", ".join(f"{r} {s.mean:.{metric.digits}f}" for r, s in zip(claim.lhs.runs, samples))
        return result.kind, ("one seed: " if result.one_seed else "") + f"{shown}; {result.detail}"
    lhs, ldesc, lmissing = _term_sample(spec, doc, claim.lhs)
    rhs, rdesc, rmissing = _term_sample(spec, doc, claim.rhs)
    if lhs is None or rhs is None:
        return "not checked", "not every run of the claim was run at this scale"
    digits = spec.metric(claim.lhs.metric).digits
    result = verdict(lhs, claim.op, rhs)
    detail = ("one seed: " if result.one_seed else "") + \
        f"{ldesc}: {lhs.mean:.{digits}f} vs {rdesc}: {rhs.mean:.{digits}f}; {result.detail}"
    missing = list(dict.fromkeys(lmissing + rmissing))  # a run on both sides is named once
    if missing:  # a best / worst of several runs is not known until all of them are
        return "not checked", f"not run at this scale: {', '.join(missing)}; over the runs that were, " \
                              f"{result.kind}: {detail}"
    return result.kind, detail


def command(spec: ReproSpec, scale: str) -> str:
    return f"python tools/reproduce.py {spec.path} --scale {scale}"


def render_spec(spec: ReproSpec, results: dict[str, dict[str, Any]], figure_dir: Path | None = None,
                page_dir: Path | None = None) -> str:
    """One section: the spec's table and claims at each rendered scale with results (the paper's schedule first, a
    reduced one below it), or the paper's values and the command when nothing was run. With `figure_dir`, each scale
    with comparable numbers also gets a figure (`<spec>.<scale>.png` there), linked relative to `page_dir`."""
    scales = [s for s in RENDERED_SCALES if s in results]
    lines = [f"## {spec.title}", "", f"{spec.paper}, {spec.source}. Spec: `{spec.path}`; protocol "
             f"`{spec.protocol.name}`."]
    if spec.notes:
        lines += ["", spec.notes.strip()]
    lines.append("")
    if not scales:
        lines.append(f"**Not yet run.** Paper scale: `{command(spec, 'paper')}`" +
                     (f" (needs: {', '.join(spec.requires)})." if spec.requires else "."))
        return "\n".join(lines + [""] + _results_block(spec, None)) + "\n"
    for scale in scales:
        if len(scales) > 1:
            lines += [f"### Scale `{scale}`", ""]
        lines += _run_summary(spec, scale, results[scale], other_scales=scales) + [""]
        if figure_dir is not None:
            lines += _figure(spec, scale, results[scale], figure_dir, page_dir or Path("."))
        lines += _results_block(spec, results[scale]) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _figure(spec: ReproSpec, scale: str, doc: dict[str, Any], figure_dir: Path, page_dir: Path) -> list[str]:
    """The markdown lines of the scale's paper-beside-ours figure (none when nothing can be compared)."""
    path = save_comparison_figure(spec, scale, doc, Path(figure_dir) / f"{spec.name}.{scale}.png")
    if path is None:
        return []
    link = Path(os.path.relpath(path, page_dir)).as_posix()
    return [f"![{spec.title}, scale {scale}: the paper's values (diamonds) beside each of our seeds (dots)]({link})",
            ""]


def _devices(doc: dict[str, Any]) -> str:
    """"; devices: <device> (n runs), ..." over the finished trained runs: each run's recorded devices (`devices`,
    noted by the training process; `device`, written by hand on older rows), else "not recorded"."""
    counts: dict[str, int] = {}
    for r in doc["runs"]:
        if r.get("status") == "done" and r.get("steps") is not None:
            where = " then ".join(r.get("devices") or ([r["device"]] if r.get("device") else ["not recorded"]))
            counts[where] = counts.get(where, 0) + 1
    return ("; devices: " + ", ".join(f"{d} ({n} run{'s' if n != 1 else ''})" for d, n in counts.items())
            if counts else "")


def _run_summary(spec: ReproSpec, scale: str, doc: dict[str, Any], other_scales: list[str]) -> list[str]:
    """What was run at `scale`: its schedule, every commit it trained under, the command; failed and imported rows."""
    s = spec.scale(scale)
    # every commit a run trained under, in full with its -dirty flag (a dirty one is not a clean result)
    commits = sorted({c for r in doc["runs"] if r.get("status") == "done"
                      for c in (r.get("commits") or [r.get("commit") or "?"])})
    steps = sorted({r["steps"] for r in doc["runs"] if r.get("steps") is not None})
    schedule = (f"{doc['epochs']:g} epochs" if doc.get("epochs") else "") + \
               (f"{', ' if doc.get('epochs') else ''}{'/'.join(map(str, steps))} steps" if steps else "")
    # a finished run measured later (a re-measurement, or another spec's checkpoints) names the measuring commit too
    measured = sorted({r["commit"] for r in doc["runs"] if r.get("status") == "done" and r.get("commit")} -
                      set(commits))
    lines = [f"Ours: scale `{scale}` ({s.description.strip() or 'see the spec'}); schedule run: "
             f"{schedule or 'n/a'}; commit {', '.join(commits)}" +
             (f" (measured at {', '.join(measured)})" if measured else "") + _devices(doc) +
             f". Command: `{command(spec, scale)}`."]
    if "paper" not in other_scales and "paper" in spec.scales:
        lines.append(f"Paper scale, not yet run: `{command(spec, 'paper')}`" +
                     (f" (needs: {', '.join(spec.requires)})." if spec.requires else "."))
    failed = [f"{r['run']}/seed{r['seed']}: {r.get('error', '')}" for r in doc["runs"] if r.get("status") == "failed"]
    if failed:
        lines.append("Failed runs: " + "; ".join(failed) + ".")
    imported = [f"{r['run']}/seed{r['seed']}: {r['source']}" for r in doc["runs"] if r.get("source")]
    if imported:
        lines.append("Rows not run by this command: " + "; ".join(imported) + ".")
    return lines


def _results_block(spec: ReproSpec, doc: dict[str, Any] | None) -> list[str]:
    """The table (ours beside the paper's), units, notes and the claims' verdicts on `doc` (None: nothing run)."""
    lines: list[str] = []
    shown = [m for m in spec.metrics if doc is not None or any(m.name in r.paper for r in spec.runs)]
    lines += _single_run_table(spec, doc, shown) if len(spec.runs) == 1 else _table(spec, doc, shown)
    units = [f"{m.label or m.name}: {m.units}" for m in shown if m.units]
    if units and len(spec.runs) > 1:
        lines += ["", "Units: " + "; ".join(units) + ". Ours: mean ± std over seeds (n seeds)."]
    notes = [f"{r.label or r.name}: {r.note}" for r in spec.runs if r.note]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    if spec.claims:
        lines += ["", "Verdicts: **holds** / **does not hold** when the 95 % interval of the difference lies on one side "
                  "of zero (Welch's t over seeds; see zoo/reproduction/verdicts.py), **inconclusive** when it contains "
                  "zero; \"one seed\" marks a verdict with no seed spread behind it.", "",
                  "| claim (source) | on the paper's own numbers | ours |", "|---|---|---|"]
        for claim in spec.claims:
            kind, detail = check_claim(spec, doc, claim)
            paper = claim.on_paper_values + (f" ({claim.note})" if claim.note else "")
            lines.append(f"| {claim.statement} ({claim.source}) | {paper} | **{kind}**" +
                         (f": {detail}" if detail else "") + " |")
    return lines


def _paper_cell(paper: Any, digits: int) -> str:
    if paper is None:
        return "—"
    return f"{paper.value:.{digits}f}" + (f" ± {paper.std:.{digits}f}" if paper.std is not None else "")


def _single_run_table(spec: ReproSpec, doc: dict[str, Any] | None, shown: list) -> list[str]:
    """One run (e.g. one model's several estimates): a row per quantity."""
    run = spec.runs[0]
    lines = [f"Run: {run.label or run.name}.", "", "| quantity | units | ours | paper | paper source |",
             "|---|---|---|---|---|"]
    for m in shown:
        paper = run.paper.get(m.name)
        ours = fmt(aggregate(doc, run.name, m.name), m.digits)
        lines.append(f"| {m.label or m.name} | {m.units or '—'} | {ours} | {_paper_cell(paper, m.digits)} | "
                     f"{paper.source if paper else '—'} |")
    return lines


def _table(spec: ReproSpec, doc: dict[str, Any] | None, shown: list) -> list[str]:
    """A row per run, an ours / paper column pair per metric."""
    header = ["run"] + [c for m in shown for c in (f"{m.label or m.name} ours", f"{m.label or m.name} paper")]
    lines = ["| " + " | ".join(header) + " | paper source |", "|" + "---|" * (len(header) + 1)]
    for run in spec.runs:
        cells = [run.label or run.name]
        for m in shown:
            cells += [fmt(aggregate(doc, run.name, m.name), m.digits), _paper_cell(run.paper.get(m.name), m.digits)]
        sources = "; ".join(dict.fromkeys(p.source for p in run.paper.values()))
        lines.append("| " + " | ".join(cells) + f" | {sources or '—'} |")
    return lines


def load_results(results_dir: Path, spec: ReproSpec) -> dict[str, dict[str, Any]]:
    """scale -> results document, for the rendered scales present in `results_dir`."""
    out = {}
    for scale in RENDERED_SCALES:
        path = Path(results_dir) / f"{spec.name}.{scale}.json"
        if path.is_file():
            out[scale] = json.loads(path.read_text())
    return out


HEADER = """# Reproduction: the papers' numbers beside ours

Generated by `python tools/reproduce.py --render` from the specs in `recipes/reproduction/` and the results in
`docs/data/reproduction/`; do not edit by hand. Each section is one paper table or figure: the paper's value beside
ours (mean ± std over seeds, n seeds), the scale and schedule we actually ran, the commit, and whether each of the
paper's claims holds in our numbers; where both exist, a figure draws the paper's value beside each of our seeds. A
scale other than `paper` is a reduced schedule: its numbers are not expected to match the paper's, and the difference
says as much about the schedule as about the model. Specs marked **not yet run** list the exact paper-scale command.
"""


def render_document(specs: list[ReproSpec], results_dir: Path, preamble: str = "", figure_dir: Path | None = None,
                    page_dir: Path | None = None) -> str:
    """The whole page; with `figure_dir`, figures are written there and linked relative to `page_dir`."""
    parts = [HEADER]
    if preamble:
        parts.append(preamble.strip() + "\n")
    ran = [s for s in specs if load_results(results_dir, s)]
    not_run = [s for s in specs if s not in ran]
    parts += [render_spec(s, load_results(results_dir, s), figure_dir, page_dir) for s in ran]
    if not_run:
        lines = ["## Not yet run", "", "| spec | what | paper-scale command | needs |", "|---|---|---|---|"]
        lines += [f"| `{s.name}` | {s.title} | `{command(s, 'paper')}` | {', '.join(s.requires) or '—'} |"
                  for s in not_run]
        parts.append("\n".join(lines) + "\n")
        parts += [render_spec(s, {}) for s in not_run]
    return "\n".join(parts)
