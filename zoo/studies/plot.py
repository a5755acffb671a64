"""Plots written as PNG with Pillow alone (matplotlib is not a dependency). Line plots for training curves and toy
studies (`save_line_plots`), and a labelled scatter with a Pareto front (`scatter_png`, used by `zoo registry`
plot` for IJAE Fig. 2-3 style IS-against-LPIPS plots). Line plots:
a grid of panels, each with curves (solid or dashed, optionally with a shaded band), dashed horizontal reference
lines, a linear or log10 y axis, automatic or fixed y limits, axis labels and a legend. Not a plotting library.

    panel = Panel("a) densities", [Series(x, p, "target", "black", dashed=True), Series(x, q, "fit", "red")])
    save_line_plots([panel], "figure.png")
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageColor, ImageDraw, ImageFont

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (23, 190, 207), (227, 119, 194), (127, 127, 127), (188, 189, 34))
LEGEND_PLACES = ("below", "upper left", "upper right", "lower center")  # below the axes, or a box inside them
GRID = (230, 230, 230)


@dataclass
class Series:
    """One curve: y over x (sequences of floats or 1-D tensors), its legend label, its colour (a Pillow colour name or
    RGB; default: the panel's next `PALETTE` colour), solid or dashed, and an optional `band` = (low, high) drawn as a
    lighter area under the curves (e.g. min / max over seeds)."""

    x: Sequence[float]
    y: Sequence[float]
    label: str = ""
    color: str | tuple[int, int, int] | None = None
    dashed: bool = False
    band: tuple[Sequence[float], Sequence[float]] | None = None


@dataclass
class Panel:
    """One plot: a title, curves, dashed horizontal reference lines {label: y}, axis labels, a linear or log10 y axis,
    y limits (default: the data's range plus 5 % each side; curves are clipped to them) and where the legend goes (one
    of `LEGEND_PLACES`)."""

    title: str
    series: list[Series] = field(default_factory=list)
    hlines: dict[str, float] = field(default_factory=dict)
    xlabel: str = ""
    ylabel: str = ""
    log_y: bool = False
    ylim: tuple[float, float] | None = None
    legend: str = "below"


def nice_ticks(lo: float, hi: float, count: int = 5, *, enclose: bool = False) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart): inside [lo, hi], or with
    `enclose=True` from the last tick at or below lo to the first at or above hi (axes fitted to scattered data)."""
    if enclose and hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if enclose:
        ticks = [math.floor(lo / step) * step]
        while ticks[-1] < hi - 1e-9 * step:
            ticks.append(ticks[-1] + step)
        return [round(t, 12) for t in ticks]
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) + 0.0 for i in range(int((hi - first) / step + 1e-9) + 1)]  # + 0.0: no -0


def save_line_plots(panels: Sequence[Panel], path: str | Path, columns: int = 2, size: tuple[int, int] = (520, 380)
                    ) -> Path:
    """Draw `panels` on a grid of `columns` per row, each in a cell of `size` = (width, height) pixels margins
    included, and save a PNG at `path` (parents created); returns the path."""
    if not panels:
        raise ValueError("save_line_plots: no panels to draw")
    for panel in panels:
        if panel.legend not in LEGEND_PLACES:
            raise ValueError(f"Panel.legend: got {panel.legend!r}, choose one of {', '.join(LEGEND_PLACES)}")
    columns, (w, h) = max(1, min(columns, len(panels))), size
    image = Image.new("RGB", (w * columns, h * math.ceil(len(panels) / columns)), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    for i, panel in enumerate(panels):
        _draw_panel(draw, font, panel, (i % columns) * w, (i // columns) * h, w, h)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _line(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], color, dashed: bool, dash: float = 6.0
          ) -> None:
    """A 2-pixel polyline, solid or dashed (`dash` pixels on, `dash` off along its length, however dense the points)."""
    if not dashed:
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        return
    run = 0.0  # length drawn or skipped so far
    for (xa, ya), (xb, yb) in zip(points, points[1:]):
        length, done = math.hypot(xb - xa, yb - ya), 0.0
        while done < length:
            step = min(dash - run % dash, length - done)
            if int(run // dash) % 2 == 0:
                a, b = done / length, (done + step) / length
                draw.line([(xa + a * (xb - xa), ya + a * (yb - ya)), (xa + b * (xb - xa), ya + b * (yb - ya))],
                          fill=color, width=2)
            done, run = done + step, run + step


def _draw_panel(draw: ImageDraw.ImageDraw, font, panel: Panel, ox: int, oy: int, w: int, h: int) -> None:
    """Draw one panel in the cell whose top-left corner is (ox, oy)."""
    ty = math.log10 if panel.log_y else float  # data -> axis units

    def ok(v: float) -> bool:
        return math.isfinite(v) and (v > 0 or not panel.log_y)

    def rows(x: Sequence[float], *ys: Sequence[float]) -> list[tuple[float, ...]]:
        """(x, y...) in axis units where every y can be drawn (finite, and > 0 on a log axis)."""
        return [(float(r[0]), *(ty(float(v)) for v in r[1:])) for r in zip(x, *ys) if all(ok(float(v)) for v in r[1:])]

    colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(panel.series)]
    curves = [rows(s.x, s.y) for s in panel.series]
    bands = [rows(s.x, *s.band) if s.band is not None else [] for s in panel.series]
    ref_colors = [PALETTE[(len(panel.series) + j) % len(PALETTE)] for j in range(len(panel.hlines))]
    refs = [(ty(v), c) for v, c in zip(panel.hlines.values(), ref_colors) if ok(v)]
    entries = [(s.label, c, s.dashed) for s, c in zip(panel.series, colors) if s.label]
    entries += [(f"{label} = {v:.4g}", c, True) for (label, v), c in zip(panel.hlines.items(), ref_colors)]
    left, right, top = ox + 62, ox + w - 16, oy + (36 if panel.ylabel or panel.log_y else 26)  # ylabel above the axes
    bottom = oy + h - 40 - (14 * len(entries) if panel.legend == "below" else 0)
    xs = [x for c in curves for x, _ in c]
    ys = [y for c in curves for _, y in c] + [t for b in bands for _, lo, hi in b for t in (lo, hi)]
    ys += [t for t, _ in refs]
    draw.text((left, oy + 6), panel.title, fill="black", font=font)
    if not xs or not ys:
        draw.text((left, top), "no data", fill="black", font=font)
        return
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    if panel.ylim is not None:
        y0, y1 = ty(panel.ylim[0]), ty(panel.ylim[1])
    else:
        y0, y1 = min(ys), max(ys)
        pad = 0.05 * (y1 - y0) if y1 > y0 else 0.5
        y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(t: float) -> float:  # t in axis units, clipped to the panel
        return bottom - (min(max(t, y0), y1) - y0) / (y1 - y0) * (bottom - top)

    yticks = nice_ticks(y0, y1)
    if panel.log_y:  # 1, 2 and 5 times powers of ten (only 1 beyond three decades), where two or more fall inside
        marks = (1,) if y1 - y0 > 3 else (1, 2, 5)
        decades = [k + math.log10(m) for k in range(math.floor(y0), math.ceil(y1) + 1) for m in marks]
        yticks = [t for t in decades if y0 <= t <= y1] if sum(y0 <= t <= y1 for t in decades) > 1 else yticks
    for t in yticks:
        label = f"{10 ** t if panel.log_y else t:.4g}"
        draw.line([(left, py(t)), (right, py(t))], fill=GRID)
        draw.line([(left - 4, py(t)), (left, py(t))], fill="black")
        draw.text((left - 6 - draw.textlength(label, font=font), py(t) - 6), label, fill="black", font=font)
    for t in nice_ticks(x0, x1):
        label = f"{t:.4g}"
        draw.line([(px(t), bottom), (px(t), bottom + 4)], fill="black")
        draw.text((px(t) - draw.textlength(label, font=font) / 2, bottom + 6), label, fill="black", font=font)
    draw.text(((left + right - draw.textlength(panel.xlabel, font=font)) / 2, bottom + 20), panel.xlabel, fill="black",
              font=font)
    draw.text((ox + 4, top - 14), panel.ylabel + (" (log scale)" if panel.log_y else ""), fill="black", font=font)
    draw.rectangle([left, top, right, bottom], outline="black")
    for band, color in zip(bands, colors):  # bands first: under every curve
        if len(band) > 1:
            rgb = ImageColor.getrgb(color) if isinstance(color, str) else color
            light = tuple(int(c + (255 - c) * 0.75) for c in rgb[:3])
            draw.polygon([(px(x), py(hi)) for x, _, hi in band] + [(px(x), py(lo)) for x, lo, _ in reversed(band)],
                         fill=light)
    for curve, color, s in zip(curves, colors, panel.series):
        _line(draw, [(px(x), py(t)) for x, t in curve], color, s.dashed)
    for t, color in refs:
        if y0 <= t <= y1:
            _line(draw, [(left, py(t)), (right, py(t))], color, dashed=True)
    lx, ly = left - 6, bottom + 33  # the legend's top-left corner: below the axes, or a box inside them
    if panel.legend != "below" and entries:
        box_w, box_h = 40 + max(draw.textlength(label, font=font) for label, _, _ in entries), 14 * len(entries) + 4
        lx = {"upper left": left + 4, "upper right": right - 4 - box_w, "lower center": (left + right - box_w) / 2}
        lx, ly = lx[panel.legend], (bottom - 6 - box_h if panel.legend == "lower center" else top + 6)
        draw.rectangle((lx, ly, lx + box_w, ly + box_h), fill="white", outline="gray")
    for j, (label, color, dashed) in enumerate(entries):
        y = ly + 3 + 14 * j
        _line(draw, [(lx + 6, y + 6), (lx + 28, y + 6)], color, dashed)
        draw.text((lx + 34, y), label, fill="black", font=font)


def scatter_png(path: str | Path, points: Sequence[tuple[float, float]], labels: Sequence[str],
                groups: Sequence[str], front: Sequence[int], x_label: str, y_label: str, title: str = "",
                size: tuple[int, int] = (900, 650), errors: Sequence[tuple[float, float]] | None = None) -> Path:
    """Write a scatter plot: one colour per group (legend), a text label per point, the `front` points joined by a
    line in order of x, and +- `errors` (x, y) bars per point when given. Returns the path."""
    width, height = size
    left, right, top, bottom = 80, 200, 50, 60
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    errors = list(errors or [(0.0, 0.0)] * len(points))
    xs = [p[0] + s * e[0] for p, e in zip(points, errors) for s in (-1, 1)]
    ys = [p[1] + s * e[1] for p, e in zip(points, errors) for s in (-1, 1)]
    xt, yt = nice_ticks(min(xs), max(xs), enclose=True), nice_ticks(min(ys), max(ys), enclose=True)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / ((x1 - x0) or 1) * (width - left - right),
                height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - top - bottom))

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for t in xt:
        u, _ = px(t, y0)
        draw.line([u, height - bottom, u, height - bottom + 5], fill="black")
        draw.text((u - 12, height - bottom + 8), f"{t:g}", fill="black", font=font)
    for t in yt:
        _, v = px(x0, t)
        draw.line([left - 5, v, left, v], fill="black")
        draw.text((left - 55, v - 6), f"{t:g}", fill="black", font=font)
    draw.text(((left + width - right) / 2 - 20, height - 30), x_label, fill="black", font=font)
    draw.text((10, top - 16), y_label, fill="black", font=font)
    if title:
        draw.text((left, 8), title, fill="black", font=font)
    if len(front) > 1:
        draw.line([px(*points[i]) for i in front], fill="#555555", width=2)
    colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(dict.fromkeys(groups))}
    for i, ((x, y), label, group) in enumerate(zip(points, labels, groups)):
        u, v = px(x, y)
        ex, ey = errors[i]
        if ex:
            draw.line([px(x - ex, y), px(x + ex, y)], fill=colours[group], width=1)
        if ey:
            draw.line([px(x, y - ey), px(x, y + ey)], fill=colours[group], width=1)
        r = 6 if i in front else 4
        draw.ellipse([u - r, v - r, u + r, v + r], fill=colours[group], outline="black" if i in front else None)
        draw.text((u + 8, v - 6), label, fill="#333333", font=font)
    for i, (group, colour) in enumerate(colours.items()):
        y = top + 10 + 18 * i
        draw.ellipse([width - right + 15, y, width - right + 25, y + 10], fill=colour)
        draw.text((width - right + 32, y - 1), group, fill="black", font=font)
    draw.text((width - right + 15, top + 14 + 18 * len(colours)), "outlined: Pareto front", fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
