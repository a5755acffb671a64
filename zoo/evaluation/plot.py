"""Line plots as PNG with Pillow alone (matplotlib is not a dependency): panels of curves and reference lines, a
linear or log10 y axis, tick labels and a legend. Enough for training curves and toy studies; not a plotting library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75))


@dataclass
class Series:
    """One curve: y over x; `band` = (low, high) values drawn as a lighter area (e.g. min / max over seeds)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    band: tuple[Sequence[float], Sequence[float]] | None = None
    dashed: bool = False


@dataclass
class Panel:
    """One plot: curves, horizontal reference lines {label: y}, axis labels, log10 or linear y axis."""

    title: str
    series: list[Series] = field(default_factory=list)
    hlines: dict[str, float] = field(default_factory=dict)
    xlabel: str = ""
    ylabel: str = ""
    log_y: bool = False


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def save_line_plots(panels: Sequence[Panel], path: str | Path, ncols: int = 2, size: tuple[int, int] = (520, 380)
                    ) -> Path:
    """Draw `panels` on a grid of `ncols` columns and save a PNG at `path` (parents created)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    w, h = size
    nrows = math.ceil(len(panels) / ncols)
    image = Image.new("RGB", (w * min(ncols, len(panels)), h * nrows), "white")
    draw = ImageDraw.Draw(image)
    for i, panel in enumerate(panels):
        _draw_panel(draw, font, panel, (i % ncols) * w, (i // ncols) * h, w, h)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _draw_panel(draw, font, panel: Panel, ox: int, oy: int, w: int, h: int) -> None:
    left, right, top, bottom = ox + 62, ox + w - 12, oy + 26, oy + h - 96
    ty = (lambda v: math.log10(max(v, 1e-12))) if panel.log_y else (lambda v: v)
    xs = [x for s in panel.series for x in s.x]
    ys = [ty(y) for s in panel.series for y in [*s.y, *(s.band[0] if s.band else []), *(s.band[1] if s.band else [])]
          if math.isfinite(y) and (y > 0 or not panel.log_y)]
    ys += [ty(v) for v in panel.hlines.values() if math.isfinite(v) and (v > 0 or not panel.log_y)]
    if not xs or not ys:
        draw.text((left, top), f"{panel.title}: no data", fill="black", font=font)
        return
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    pad = 0.05 * (y1 - y0) if y1 > y0 else 0.5
    y0, y1 = y0 - pad, y1 + pad
    px = lambda x: left + (x - x0) / (x1 - x0) * (right - left)  # noqa: E731
    py = lambda y: bottom - (ty(y) - y0) / (y1 - y0) * (bottom - top)  # noqa: E731
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text((left, oy + 8), panel.title, fill="black", font=font)
    for t in _ticks(x0, x1):
        draw.line([px(t), bottom, px(t), bottom + 4], fill="black")
        draw.text((px(t) - 10, bottom + 6), _fmt(t), fill="black", font=font)
    for t in _ticks(y0, y1):
        yy = bottom - (t - y0) / (y1 - y0) * (bottom - top)
        draw.line([left - 4, yy, left, yy], fill="black")
        draw.line([left, yy, right, yy], fill=(230, 230, 230))
        draw.text((ox + 4, yy - 6), _fmt(10 ** t) if panel.log_y else _fmt(t), fill="black", font=font)
    draw.text((left + (right - left) // 2 - 30, bottom + 20), panel.xlabel, fill="black", font=font)
    draw.text((ox + 4, top - 14), panel.ylabel + (" (log scale)" if panel.log_y else ""), fill="black", font=font)
    legend = []
    for i, s in enumerate(panel.series):
        color = PALETTE[i % len(PALETTE)]
        if s.band is not None:
            light = tuple(int(c + (255 - c) * 0.75) for c in color)
            for x, lo, hi in zip(s.x, *s.band):
                if all(math.isfinite(v) and (v > 0 or not panel.log_y) for v in (lo, hi)):
                    draw.line([px(x), py(lo), px(x), py(hi)], fill=light, width=3)
        points = [(px(x), py(y)) for x, y in zip(s.x, s.y) if math.isfinite(y) and (y > 0 or not panel.log_y)]
        for j, (a, b) in enumerate(zip(points, points[1:])):
            if not s.dashed or j % 2 == 0:
                draw.line([a, b], fill=color, width=2)
        legend.append((s.label, color))
    for j, (label, value) in enumerate(panel.hlines.items()):
        color = PALETTE[(len(panel.series) + j) % len(PALETTE)]
        if math.isfinite(value) and (value > 0 or not panel.log_y):
            y = py(value)
            for x in range(left, right, 12):
                draw.line([x, y, min(x + 6, right), y], fill=color, width=2)
        legend.append((f"{label} = {_fmt(value)}", color))
    for j, (label, color) in enumerate(legend):
        ly = bottom + 36 + 13 * j
        draw.line([left, ly + 6, left + 18, ly + 6], fill=color, width=3)
        draw.text((left + 24, ly), label, fill="black", font=font)
