"""Render reproduction specs and their results as markdown: the paper's values beside ours, the claims checked.

Reads only the spec YAMLs and the small results JSONs (`docs/data/reproduction/<spec>.<scale>.json`), so the page can
be re-rendered without any run directory. `smoke` results are never rendered: they check the pipeline, not the paper.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.reproduction.spec import ClaimSpec, ReproSpec, Term

RENDERED_SCALES = ("paper", "cpu")  # best first; smoke is never a result


@dataclass
class Stat:
    mean: float
    std: float | None  # sample std over seeds (None for one seed)
    n: int


def aggregate(doc: dict[str, Any] | None, run: str, metric: str) -> Stat | None:
    """Mean and std over the seeds of `run` that finished (NaN values, e.g. a diverged run, count as NaN)."""
    if doc is None:
        return None
    values = [r["values"][metric] for r in doc["runs"]
              if r["run"] == run and r.get("status") == "done" and metric in r.get("values", {})]
    if not values:
        return None
    if any(v != v for v in values):
        return Stat(math.nan, None, len(values))
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def fmt(stat: Stat | None, digits: int) -> str:
    if stat is None:
        return "—"
    if stat.mean != stat.mean:
        return f"diverged (n={stat.n})"
    spread = f" ± {stat.std:.{digits}f}" if stat.std is not None else ""
    return f"{stat.mean:.{digits}f}{spread} (n={stat.n})"


def _term_value(spec: ReproSpec, doc: dict[str, Any] | None, term: Term) -> tuple[float | None, Stat | None, str]:
    """(value, its Stat when a single run, description) of a claim term; value None when a run is missing."""
    if term.value is not None:
        return term.value, None, f"{term.value:g}"
    metric = spec.metric(term.metric).name
    stats = {r: aggregate(doc, r, metric) for r in term.runs}
    if any(s is None or s.mean != s.mean for s in stats.values()):
        return None, None, ""
    if term.reduce == "single":
        (run, stat), = stats.items()
        return stat.mean, stat, run
    pick = {"min": min, "max": max}.get(term.reduce)
    if pick is not None:
        run = pick(stats, key=lambda r: stats[r].mean)
        return stats[run].mean, stats[run], f"{term.reduce} over {', '.join(term.runs)} = {run}"
    return statistics.fmean(s.mean for s in stats.values()), None, f"mean over {', '.join(term.runs)}"


def check_claim(spec: ReproSpec, doc: dict[str, Any] | None, claim: ClaimSpec) -> tuple[str, str]:
    """(verdict, detail): verdict is "holds", "does not hold" or "not checked"."""
    if claim.op in ("increasing", "decreasing"):
        metric = spec.metric(claim.lhs.metric)
        stats = [aggregate(doc, r, metric.name) for r in claim.lhs.runs]
        if any(s is None or s.mean != s.mean for s in stats):
            return "not checked", "not every run of the claim was run at this scale"
        means = [s.mean for s in stats]
        pairs = list(zip(means, means[1:]))
        ok = all(b > a for a, b in pairs) if claim.op == "increasing" else all(b < a for a, b in pairs)
        shown = ", ".join(f"{r} {m:.{metric.digits}f}" for r, m in zip(claim.lhs.runs, means))
        return ("holds" if ok else "does not hold"), shown
    lhs, lstat, ldesc = _term_value(spec, doc, claim.lhs)
    rhs, rstat, rdesc = _term_value(spec, doc, claim.rhs)
    if lhs is None or rhs is None:
        return "not checked", "not every run of the claim was run at this scale"
    ok = {"<": lhs < rhs, ">": lhs > rhs, "<=": lhs <= rhs, ">=": lhs >= rhs}[claim.op]
    digits = spec.metric(claim.lhs.metric).digits
    detail = f"{ldesc}: {lhs:.{digits}f} {claim.op if ok else 'is not ' + claim.op} {rdesc}: {rhs:.{digits}f}"
    spreads = [s.std for s in (lstat, rstat) if s is not None and s.std is not None]
    if spreads and abs(lhs - rhs) <= sum(spreads):
        detail += (f" (the difference {abs(lhs - rhs):.{digits}f} is within the seeds' spread, the sum of the stds "
                   f"{sum(spreads):.{digits}f})")
    elif not spreads and (lstat is not None or rstat is not None):
        detail += " (one seed: no spread)"
    return ("holds" if ok else "does not hold"), detail


def command(spec: ReproSpec, scale: str) -> str:
    return f"python tools/reproduce.py {spec.path} --scale {scale}"


def render_spec(spec: ReproSpec, results: dict[str, dict[str, Any]]) -> str:
    """One section: the spec's table at its largest rendered scale with results, the claims, and what is not run."""
    scale = next((s for s in RENDERED_SCALES if s in results), None)
    doc = results.get(scale) if scale else None
    lines = [f"## {spec.title}", "", f"{spec.paper}, {spec.source}. Spec: `{spec.path}`; protocol "
             f"`{spec.protocol.name}`."]
    if spec.notes:
        lines += ["", spec.notes.strip()]
    lines.append("")
    if doc is None:
        lines.append(f"**Not yet run.** Paper scale: `{command(spec, 'paper')}`" +
                     (f" (needs: {', '.join(spec.requires)})." if spec.requires else "."))
    else:
        s = spec.scale(scale)
        commits = sorted({r.get("commit") or "?" for r in doc["runs"] if r.get("status") == "done"})
        steps = sorted({r["steps"] for r in doc["runs"] if r.get("steps") is not None})
        schedule = (f"{doc['epochs']:g} epochs" if doc.get("epochs") else "") + \
                   (f"{', ' if doc.get('epochs') else ''}{'/'.join(map(str, steps))} steps" if steps else "")
        lines.append(f"Ours: scale `{scale}` ({s.description.strip() or 'see the spec'}); schedule run: "
                     f"{schedule or 'n/a'}; commit {', '.join(c[:12] for c in commits)}. Command: "
                     f"`{command(spec, scale)}`.")
        if scale != "paper" and "paper" in spec.scales:
            lines.append(f"Paper scale, not yet run: `{command(spec, 'paper')}`" +
                         (f" (needs: {', '.join(spec.requires)})." if spec.requires else "."))
        failed = [f"{r['run']}/seed{r['seed']}: {r.get('error', '')}" for r in doc["runs"]
                  if r.get("status") == "failed"]
        if failed:
            lines.append("Failed runs: " + "; ".join(failed) + ".")
        imported = [f"{r['run']}/seed{r['seed']}: {r['source']}" for r in doc["runs"] if r.get("source")]
        if imported:
            lines.append("Rows not run by this command: " + "; ".join(imported) + ".")
    lines.append("")
    shown = [m for m in spec.metrics if doc is not None or any(m.name in r.paper for r in spec.runs)]
    lines += _single_run_table(spec, doc, shown) if len(spec.runs) == 1 else _table(spec, doc, shown)
    units = [f"{m.label or m.name}: {m.units}" for m in shown if m.units]
    if units and len(spec.runs) > 1:
        lines += ["", "Units: " + "; ".join(units) + ". Ours: mean ± std over seeds (n seeds)."]
    notes = [f"{r.label or r.name}: {r.note}" for r in spec.runs if r.note]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    if spec.claims:
        lines += ["", "| claim (source) | ours |", "|---|---|"]
        for claim in spec.claims:
            verdict, detail = check_claim(spec, doc, claim)
            lines.append(f"| {claim.statement} ({claim.source}) | **{verdict}**" + (f": {detail}" if detail else "")
                         + " |")
    return "\n".join(lines) + "\n"


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
paper's claims holds in our numbers. A scale other than `paper` is a reduced schedule: its numbers are not expected
to match the paper's, and the difference says as much about the schedule as about the model. Specs marked **not yet
run** list the exact paper-scale command.
"""


def render_document(specs: list[ReproSpec], results_dir: Path, preamble: str = "") -> str:
    parts = [HEADER]
    if preamble:
        parts.append(preamble.strip() + "\n")
    ran = [s for s in specs if load_results(results_dir, s)]
    not_run = [s for s in specs if s not in ran]
    parts += [render_spec(s, load_results(results_dir, s)) for s in ran]
    if not_run:
        lines = ["## Not yet run", "", "| spec | what | paper-scale command | needs |", "|---|---|---|---|"]
        lines += [f"| `{s.name}` | {s.title} | `{command(s, 'paper')}` | {', '.join(s.requires) or '—'} |"
                  for s in not_run]
        parts.append("\n".join(lines) + "\n")
        parts += [render_spec(s, {}) for s in not_run]
    return "\n".join(parts)
