"""The reproduction page's figures: for one spec at one scale, each number the paper printed beside every seed we ran.

A table says "10.35 ± 0.05 (n=2) | 8.46"; the figure shows the two seeds as dots, their mean and std, and the paper's
value as a diamond on the same axis, so a gap larger than the seeds' spread is seen at a glance. Only cells with both
a paper value and at least one finished seed are drawn. A spec with several runs gets one panel per metric (a row per
run); a one-run spec (several quantities of one model, as App. E Table 1) one panel per unit (a row per quantity).

`comparison_panels` is the pure part (what is drawn, tested on values); `save_comparison_figure` draws it.
"""
from __future__ import annotations

from dataclasses import dataclass
from textwrap import fill
from pathlib import Path
from typing import Any

from zoo.figures.plots import plain
from zoo.figures.style import DPI, plt, save, style
from zoo.reproduction.spec import ReproSpec

PAPER_COLOUR, OURS_COLOUR = "#000000", "#0072B2"  # black diamonds: the paper; blue dots: our seeds (Okabe-Ito)


@dataclass(frozen=True)
class Row:
    """One compared cell: its label, the paper's value (and printed std, if any) and our finished seeds' values."""

    label: str
    paper: float
    paper_std: float | None
    ours: tuple[float, ...]


@dataclass(frozen=True)
class ComparisonPanel:
    title: str  # the metric ("" for a one-run spec's panel of quantities)
    units: str  # the x axis
    rows: tuple[Row, ...]


def _seed_values(doc: dict[str, Any], run: str, metric: str) -> tuple[float, ...]:
    """The finished seeds' finite values of `metric` for `run`, in seed order (a diverged seed is left out)."""
    rows = sorted((r for r in doc.get("runs", []) if r["run"] == run and r.get("status") == "done"
                   and metric in r.get("values", {})), key=lambda r: r.get("seed", 0))
    values = (float(r["values"][metric]) for r in rows)
    return tuple(v for v in values if v == v and abs(v) != float("inf"))


def comparison_panels(spec: ReproSpec, doc: dict[str, Any] | None) -> list[ComparisonPanel]:
    """The panels of the figure of `spec` on the results document `doc` (empty when nothing can be compared)."""
    if doc is None:
        return []
    metrics = {m.name: m for m in spec.metrics}
    cells = [(run, metrics[name], paper, _seed_values(doc, run.name, name))
             for run in spec.runs for name, paper in run.paper.items() if name in metrics]
    cells = [c for c in cells if c[3]]
    groups: dict[tuple[str, str], list[Row]] = {}
    for run, metric, paper, ours in cells:
        if len(spec.runs) == 1:  # one model's quantities: those sharing a unit share an axis
            key, label = ("", metric.units), metric.label or metric.name
        else:
            key, label = (metric.label or metric.name, metric.units), run.label or run.name
        groups.setdefault(key, []).append(Row(label, paper.value, paper.std, ours))
    return [ComparisonPanel(title, units, tuple(rows)) for (title, units), rows in groups.items()]


def save_comparison_figure(spec: ReproSpec, scale: str, doc: dict[str, Any] | None, path: str | Path) -> Path | None:
    """Draw `comparison_panels` of `spec` at `scale` to `path` (PNG); None, and nothing written, when it is empty."""
    panels = comparison_panels(spec, doc)
    if not panels:
        return None
    heights = [len(p.rows) for p in panels]
    with style():
        fig, axes = plt.subplots(len(panels), 1, squeeze=False, layout="constrained", height_ratios=heights,
                                 figsize=(760 / DPI, (60 + sum(40 * h + 90 for h in heights)) / DPI))
        labelled: set[str] = set()

        def once(label: str) -> str | None:  # each legend entry once per figure
            return None if label in labelled or labelled.add(label) else label

        for ax, panel in zip(axes[:, 0], panels):
            for y, row in enumerate(panel.rows):
                if len(row.ours) > 1:
                    mean = sum(row.ours) / len(row.ours)
                    std = (sum((v - mean) ** 2 for v in row.ours) / (len(row.ours) - 1)) ** 0.5
                    ax.errorbar(mean, y + 0.12, xerr=std, fmt="o", color=OURS_COLOUR, ms=7, capsize=3,
                                label=once("ours: mean ± std over seeds"))
                    ax.scatter(row.ours, [y + 0.12] * len(row.ours), s=14, color="white", edgecolors=OURS_COLOUR,
                               linewidths=1, zorder=3, label=once("ours: each seed"))
                else:
                    ax.plot(row.ours, [y + 0.12], "o", color=OURS_COLOUR, ms=7, label=once("ours: one seed"))
                ax.errorbar(row.paper, y - 0.12, xerr=row.paper_std, fmt="D", mfc="white", mec=PAPER_COLOUR,
                            ecolor=PAPER_COLOUR, ms=7, capsize=3, label=once("paper"))
            ax.set_yticks(range(len(panel.rows)), [plain(r.label) for r in panel.rows])
            ax.set_ylim(len(panel.rows) - 0.5, -0.5)  # first row on top, as in the table
            ax.margins(x=0.08)
            if panel.title:
                ax.set_title(plain(panel.title), loc="left")
            ax.set_xlabel(plain(fill(panel.units, 70)))  # the axes are narrower than the figure: 95 clipped
        fig.legend(loc="outside lower center", ncols=3, frameon=False)
        fig.suptitle(plain(f"{spec.title}, scale {scale}"), x=0.01, ha="left", fontsize=11)
        return save(fig, path)[0]
