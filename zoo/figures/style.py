"""One look for every figure the zoo draws: matplotlib's Agg backend (no display needed), readable fonts, light grid,
a colour-blind-friendly palette, and saving one figure in several formats (PNG for the README and the report,
PDF / SVG for papers).

    with style():
        fig, ax = plt.subplots()
        ...
    save(fig, "runs/plots/curve.png", formats=("pdf",))   # writes curve.png and curve.pdf
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, never windows (tests and cluster nodes have no display)
import matplotlib.pyplot as plt  # noqa: E402

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999")
FORMATS = ("png", "pdf", "svg")
DPI = 100  # pixel sizes stay what callers ask for: a (540, 394) panel is 5.4 x 3.94 inches at 100 dpi

RC = {
    "font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
    "legend.fontsize": 8.5, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "axes.grid": True, "grid.color": "#e6e6e6", "grid.linewidth": 0.8, "axes.axisbelow": True,
    "axes.spines.top": False, "axes.spines.right": False, "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "lines.linewidth": 1.8, "figure.dpi": DPI, "savefig.dpi": DPI, "legend.frameon": True, "legend.framealpha": 0.9,
    "svg.fonttype": "none", "pdf.fonttype": 42,  # text stays text in SVG / PDF (searchable, editable)
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The zoo's rcParams for the figures made inside the block (global settings are left as they were)."""
    with plt.rc_context(RC):
        yield


def save(fig: "plt.Figure", path: str | Path, formats: Sequence[str] = ()) -> list[Path]:
    """Write `fig` to `path` (its suffix picks the format) and beside it as each of `formats` (same stem), then close
    it. Returns the paths written, `path` first."""
    path = Path(path)
    wanted = [path.suffix.lstrip(".").lower()] + [f.lower().lstrip(".") for f in formats]
    bad = [f for f in wanted if f not in FORMATS]
    if bad:
        raise ValueError(f"figure format {bad[0]!r} of {path} is not supported; use one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in dict.fromkeys(wanted):
        target = path.with_suffix("." + fmt)
        fig.savefig(target, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
        written.append(target)
    plt.close(fig)
    return written
