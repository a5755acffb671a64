"""The zoo's figures, drawn with matplotlib in one style (zoo/figures/style.py): grids of line plots (training
curves, toy studies), a labelled scatter with its Pareto front (`zoo registry plot`, IJAE Fig. 2-3 style), and a
run's loss curves from its metrics.jsonl.

    panel = Panel("a) densities", [Series(x, p, "target", "black", dashed=True), Series(x, q, "fit")])
    save_line_plots([panel], "figure.png", formats=("pdf",))   # figure.png + figure.pdf
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zoo.figures.style import DPI, PALETTE, plt, save, style

LEGEND_PLACES = ("below", "upper left", "upper right", "lower center")  # below the axes, or a box inside them


@dataclass
class Series:
    """One curve: y over x (sequences of floats or 1-D tensors), its legend label, its colour (any matplotlib colour;
    default: the panel's next palette colour), solid or dashed, and an optional `band` = (low, high) drawn as a
    lighter area under the curves (e.g. min / max over seeds)."""

    x: Sequence[float]
    y: Sequence[float]
    label: str = ""
    color: str | tuple[float, ...] | None = None
    dashed: bool = False
    band: tuple[Sequence[float], Sequence[float]] | None = None


@dataclass
class Panel:
    """One plot: a title, curves, dashed horizontal reference lines {label: y}, axis labels, a linear or log10 y axis,
    y limits (default: matplotlib's fit to the data) and where the legend goes (one of `LEGEND_PLACES`)."""

    title: str
    series: list[Series] = field(default_factory=list)
    hlines: dict[str, float] = field(default_factory=dict)
    xlabel: str = ""
    ylabel: str = ""
    log_y: bool = False
    ylim: tuple[float, float] | None = None
    legend: str = "below"


def _floats(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values]


def _color(color, i: int):
    """Pillow-era RGB tuples of 0-255 ints still work; anything else is a matplotlib colour."""
    if isinstance(color, tuple) and any(c > 1 for c in color):
        return tuple(c / 255 for c in color)
    return color if color is not None else PALETTE[i % len(PALETTE)]


def _draw_panel(ax, panel: Panel) -> None:
    for i, s in enumerate(panel.series):
        color = _color(s.color, i)
        if s.band is not None:  # under the curves
            ax.fill_between(_floats(s.x), _floats(s.band[0]), _floats(s.band[1]), color=color, alpha=0.2, lw=0)
        x = _floats(s.x)
        ax.plot(x, _floats(s.y), color=color, ls="--" if s.dashed else "-", label=s.label or None,
                marker="o" if len(x) < 30 else None, ms=3)  # markers: a short run's few points stay visible
    for j, (label, value) in enumerate(panel.hlines.items()):
        ax.axhline(value, color=PALETTE[(len(panel.series) + j) % len(PALETTE)], ls=":", lw=1.5,
                   label=f"{label} = {value:.4g}")
    if panel.log_y:
        ax.set_yscale("log")
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    ax.set_title(panel.title, loc="left")
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if not panel.series:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    if ax.get_legend_handles_labels()[0]:
        if panel.legend == "below":
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        else:
            ax.legend(loc=panel.legend)


def save_line_plots(panels: Sequence[Panel], path: str | Path, columns: int = 2, size: tuple[int, int] = (520, 380),
                    formats: Sequence[str] = ()) -> Path:
    """Draw `panels` on a grid of `columns` per row, each `size` = (width, height) pixels, and save it at `path`
    (PNG, PDF or SVG by its suffix; `formats` adds copies in other formats). Returns `path`."""
    if not panels:
        raise ValueError("save_line_plots: no panels to draw")
    for panel in panels:
        if panel.legend not in LEGEND_PLACES:
            raise ValueError(f"Panel.legend: got {panel.legend!r}, choose one of {', '.join(LEGEND_PLACES)}")
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    with style():
        fig, axes = plt.subplots(rows, columns, figsize=(size[0] * columns / DPI, size[1] * rows / DPI),
                                 squeeze=False, layout="constrained")
        for ax, panel in zip(axes.flat, panels):
            _draw_panel(ax, panel)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        return save(fig, path, formats)[0]


def plain(text: object) -> str:
    """Data (a run name, a metric or model name) as literal text in a figure: matplotlib reads `$...$` as mathtext,
    so a run named `lr$1e-4$` or `$x` would render oddly or raise a parse error that loses the whole figure."""
    return str(text).replace("$", r"\$")


def scatter_plot(path: str | Path, points: Sequence[tuple[float, float]], labels: Sequence[str],
                 groups: Sequence[str], front: Sequence[int], x_label: str, y_label: str, title: str = "",
                 size: tuple[int, int] = (900, 650), formats: Sequence[str] = (),
                 errors: Sequence[tuple[float, float]] | None = None) -> Path:
    """A scatter plot: one colour per group (legend), a text label per point, the `front` points (indices, in order
    of x) outlined and joined by a line, and +- `errors` (x, y) bars per point when given. Returns `path`."""
    labels, groups, x_label, y_label, title = ([plain(t) for t in labels], [plain(g) for g in groups], plain(x_label),
                                               plain(y_label), plain(title))  # every text here is catalog data
    with style():
        fig, ax = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), layout="constrained")
        colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(dict.fromkeys(groups))}
        if len(front) > 1:
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="#555555", lw=1.5,
                    zorder=1, label="Pareto front")
        for group, colour in colours.items():
            mine = [i for i, g in enumerate(groups) if g == group]
            if errors is not None and any(errors[i] != (0.0, 0.0) for i in mine):
                ax.errorbar([points[i][0] for i in mine], [points[i][1] for i in mine], xerr=[errors[i][0] for i in mine],
                            yerr=[errors[i][1] for i in mine], fmt="none", ecolor=colour, elinewidth=1, zorder=1.5)
            ax.scatter([points[i][0] for i in mine], [points[i][1] for i in mine], color=colour, label=group,
                       s=[70 if i in front else 30 for i in mine],
                       edgecolors=["black" if i in front else colour for i in mine], zorder=2)
        for (x, y), label in zip(points, labels):
            ax.annotate(label, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8, color="#333333")
        ax.margins(x=0.15, y=0.1)  # room for the labels of the outermost points
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(title, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="model (outlined: Pareto front)")
        return save(fig, path, formats)[0]


def loss_panels(records: Sequence[dict], title: str = "") -> list[Panel]:
    """The panels of `loss_curves`: per phase (the key's prefix before "/"), its logged values grouped by scale, so
    that a KL of a few nats is not drawn flat under an NLL of hundreds: curves whose median magnitudes lie within a
    factor 10 of the group's smallest share a panel. Legends sit below the axes, off the data."""
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(dict)
    for record in records:
        for key, value in record.items():
            if key == "step" or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            phase, _, name = key.partition("/")
            xs, ys = curves[phase if name else "other"].setdefault(name or key, ([], []))
            xs.append(float(record["step"]))
            ys.append(float(value))
    if not curves:
        raise ValueError(f"loss_curves: no finite scalars in {len(records)} records; is the metrics.jsonl empty?")
    panels = []
    for phase, named in curves.items():
        groups: list[tuple[float, list[str]]] = []  # (smallest median magnitude, names), by magnitude
        for name in sorted(named, key=lambda n: _magnitude(named[n][1])):
            size = _magnitude(named[name][1])
            if groups and size <= 10 * max(groups[-1][0], 1e-12):
                groups[-1][1].append(name)
            else:
                groups.append((size, [name]))
        for _, names in groups:
            label = f"{title} {phase}".strip() + (f" ({', '.join(sorted(names))})" if len(groups) > 1 else "")
            panels.append(Panel(plain(label),  # the run's name and logged keys are data, not mathtext
                                [Series(*named[n], plain(n)) for n in names], xlabel="step", legend="below"))
    return panels


def _magnitude(values: Sequence[float]) -> float:
    ordered = sorted(abs(v) for v in values)
    return ordered[len(ordered) // 2]


def loss_curves(records: Sequence[dict], path: str | Path, title: str = "", columns: int = 3,
                formats: Sequence[str] = ()) -> Path:
    """A run's training curves from its metrics.jsonl records ({"step": s, "<phase>/<name>": value, ...}), drawn as
    `loss_panels`. Non-finite values (logged as strings) are left out. Returns `path`."""
    return save_line_plots(loss_panels(records, title), path, columns=columns, size=(420, 320), formats=formats)
