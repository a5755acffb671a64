"""Line plots written as PNG with Pillow only (no plotting library is a dependency), for the toy studies' figures.

    panel = Panel("a) densities", [Series(x, y, "target", "black", dashed=True), Series(x, y2, "fit", "red")])
    save_line_plot([panel], "figure.png")
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

LEGEND_PLACES = ("upper left", "upper right", "lower center")


@dataclass
class Series:
    """One curve: x and y values (sequences of floats or 1-D tensors), its legend label and colour."""

    x: Sequence[float]
    y: Sequence[float]
    label: str
    color: str = "black"
    dashed: bool = False


@dataclass
class Panel:
    """One plot area: a title, curves, optional y limits (default: the data's range), an x-axis label and where the
    legend goes ("upper left", "upper right" or "lower center")."""

    title: str
    series: list[Series]
    ylim: tuple[float, float] | None = None
    xlabel: str = "x"
    legend: str = "upper right"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _draw_panel(draw: ImageDraw.ImageDraw, panel: Panel, box: tuple[int, int, int, int],
                font: ImageFont.ImageFont) -> None:
    left, top, right, bottom = box
    xs = [float(v) for s in panel.series for v in s.x]
    ys = [float(v) for s in panel.series for v in s.y if math.isfinite(float(v))]
    x0, x1 = min(xs), max(xs)
    if panel.ylim is not None:
        y0, y1 = panel.ylim
    else:  # the data's range plus 5 % headroom
        y0, y1 = min(ys), max(ys)
        y0, y1 = (y0 - 1, y1 + 1) if y1 <= y0 else (y0, y1 + 0.05 * (y1 - y0))

    def px(x: float, y: float) -> tuple[float, float]:
        y = min(max(y, y0), y1)  # clip to the panel
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    draw.rectangle(box, outline="black")
    draw.text((left, top - 16), panel.title, fill="black", font=font)
    for t in nice_ticks(x0, x1):
        x, _ = px(t, y0)
        draw.line([(x, bottom), (x, bottom + 4)], fill="black")
        draw.text((x - 8, bottom + 6), f"{t:g}", fill="black", font=font)
    for t in nice_ticks(y0, y1):
        _, y = px(x0, t)
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((left - 44, y - 6), f"{t:g}", fill="black", font=font)
    draw.text(((left + right) / 2, bottom + 20), panel.xlabel, fill="black", font=font)
    for s in panel.series:
        points = [px(float(a), float(b)) for a, b in zip(s.x, s.y) if math.isfinite(float(b))]
        if s.dashed:  # draw every other pair of short segments
            for i in range(0, len(points) - 1, 4):
                draw.line(points[i:i + 3], fill=s.color, width=2)
        else:
            draw.line(points, fill=s.color, width=2)
    if panel.legend not in LEGEND_PLACES:
        raise ValueError(f"Panel.legend: got {panel.legend!r}, choose one of {', '.join(LEGEND_PLACES)}")
    box_w, box_h = 152, 14 * len(panel.series) + 4
    lx = {"upper left": left + 4, "upper right": right - 4 - box_w, "lower center": (left + right - box_w) // 2}
    lx = lx[panel.legend]
    ly = bottom - 6 - box_h if panel.legend == "lower center" else top + 6
    draw.rectangle((lx, ly, lx + box_w, ly + box_h), fill="white", outline="gray")
    for i, s in enumerate(panel.series):
        y = ly + 3 + 14 * i
        draw.line([(lx + 6, y + 6), (lx + 28, y + 6)], fill=s.color, width=2)
        draw.text((lx + 34, y), s.label, fill="black", font=font)


def save_line_plot(panels: Sequence[Panel], path: str | Path, columns: int | None = None,
                   panel_size: tuple[int, int] = (460, 320)) -> Path:
    """Draw `panels` in a grid (`columns` per row, default all in one row) and write a PNG; returns its path."""
    columns = columns or len(panels)
    rows = math.ceil(len(panels) / columns)
    margin_l, margin_t, margin_r, margin_b = 60, 30, 20, 44
    width, height = panel_size
    cell_w, cell_h = width + margin_l + margin_r, height + margin_t + margin_b
    image = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    for i, panel in enumerate(panels):
        cx, cy = (i % columns) * cell_w, (i // columns) * cell_h
        _draw_panel(draw, panel, (cx + margin_l, cy + margin_t, cx + margin_l + width, cy + margin_t + height), font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
