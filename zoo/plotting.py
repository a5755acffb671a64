"""A labelled scatter plot with a highlighted Pareto front, drawn with Pillow as a PNG (no plotting library needed);
`tools/registry.py plot` uses it for IJAE Fig. 2-3 style IS-against-LPIPS trade-off plots."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22"]


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [math.floor(lo / step) * step]
    while ticks[-1] < hi - 1e-9 * step:  # up to the first tick at or above hi
        ticks.append(ticks[-1] + step)
    return [round(t, 12) for t in ticks]


def scatter_png(path: str | Path, points: Sequence[tuple[float, float]], labels: Sequence[str],
                groups: Sequence[str], front: Sequence[int], x_label: str, y_label: str, title: str = "",
                size: tuple[int, int] = (900, 650)) -> Path:
    """Write a scatter plot: one colour per group (legend), a text label per point, the `front` points joined by a
    line in order of x. Returns the path."""
    width, height = size
    left, right, top, bottom = 80, 200, 50, 60
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xt, yt = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
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
