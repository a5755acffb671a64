"""Figures drawn with matplotlib in one consistent style (see style.py)."""
from zoo.figures.plots import LEGEND_PLACES, Panel, Series, loss_curves, save_line_plots, scatter_plot
from zoo.figures.style import FORMATS, PALETTE, save, style

__all__ = ["FORMATS", "LEGEND_PLACES", "PALETTE", "Panel", "Series", "loss_curves", "save", "save_line_plots",
           "scatter_plot", "style"]
