"""zoo/figures: matplotlib figures in one style, at the pixel size asked, in PNG / PDF / SVG, with the data drawn."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from zoo.figures import Panel, Series, loss_curves, save_line_plots, scatter_plot


def svg_texts(path) -> str:
    return " ".join(t.text or "" for t in ET.parse(path).iter() if t.tag.endswith("text"))


def test_line_plots_pixel_size_formats_and_labels(tmp_path):
    x = [i / 10 for i in range(50)]
    panels = [Panel("a) sines", [Series(x, [math.sin(v) for v in x], "sin", band=([-1] * 50, [1] * 50)),
                                 Series(x, [math.cos(v) for v in x], "cos", (255, 0, 0), dashed=True)],
                    hlines={"zero": 0.0}, xlabel="x"),
              Panel("b) log", [Series(x, [math.exp(v) for v in x], "exp")], log_y=True, legend="upper left")]
    png = save_line_plots(panels, tmp_path / "f.png", columns=2, size=(400, 300), formats=("pdf", "svg"))
    with Image.open(png) as image:
        assert image.size == (800, 300)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16)) > 20  # curves and text, not a blank canvas
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    text = svg_texts(tmp_path / "f.svg")  # svg.fonttype=none: labels stay searchable text
    for label in ("a) sines", "b) log", "sin", "cos", "zero = 0", "exp"):
        assert label in text
    with pytest.raises(ValueError, match="Panel.legend: got 'left'"):
        save_line_plots([Panel("p", legend="left")], tmp_path / "g.png")
    with pytest.raises(ValueError, match="format 'jpg'"):
        save_line_plots(panels, tmp_path / "g.jpg")


def test_scatter_plot_labels_points_and_groups(tmp_path):
    svg = scatter_plot(tmp_path / "s.svg", [(6, 0.3), (5, 0.1), (4, 0.2)], ["a@1", "b@1", "c@1"], ["vae", "vae", "aae"],
                       [1, 0], "is", "lpips", title="lpips against is")
    text = svg_texts(svg)
    assert all(s in text for s in ("a@1", "b@1", "c@1", "vae", "aae", "Pareto front", "lpips against is"))


def test_loss_curves_one_panel_per_phase_and_non_finite_left_out(tmp_path):
    records = [{"step": s, "disc/loss": 1.0 / s, "gen/loss": float(s), "gen/acc": "nan"} for s in (1, 2, 3)]
    svg = loss_curves(records, tmp_path / "c.svg", title="run")
    text = svg_texts(svg)
    assert "run disc" in text and "run gen" in text and "loss" in text and "acc" not in text
    with pytest.raises(ValueError, match="no finite scalars in 1 records"):
        loss_curves([{"step": 1, "x/y": "inf"}], tmp_path / "d.png")


def test_names_with_dollar_signs_are_plain_text_in_figures(tmp_path):
    """A run named like mathtext (`$\\bad{$`) once raised a parse error that lost the end-of-training loss curves and
    the registry report; names are data, drawn as written."""
    import matplotlib.pyplot as plt

    from zoo.figures import loss_curves, scatter_plot
    from zoo.figures.plots import plain

    name = r"lr$\bad{$ run"
    fig, ax = plt.subplots()
    ax.set_title(name)
    with pytest.raises(ValueError, match="bad"):  # what matplotlib does with it as is
        fig.savefig(tmp_path / "raw.png")
    plt.close(fig)
    assert plain(name) == r"lr\$\bad{\$ run"
    curves = loss_curves([{"step": 1, "vae/lo$ss": 1.0}, {"step": 2, "vae/lo$ss": 0.5}], tmp_path / "c.png", title=name,
                         formats=("svg",))
    scatter = scatter_plot(tmp_path / "s.png", [(1.0, 2.0), (2.0, 1.0)], [f"{name}@10", "$b@10"], [name, "$m"], [0, 1],
                           "is$", "$lpips", title=name, formats=("svg",))
    assert f"{name} vae" in svg_texts(tmp_path / "c.svg") and "lo$ss" in svg_texts(tmp_path / "c.svg")  # as written
    assert all(t in svg_texts(tmp_path / "s.svg") for t in (f"{name}@10", "$b@10", "$m", "is$", "$lpips"))
    assert curves.stat().st_size > 0 and scatter.stat().st_size > 0


def test_loss_curves_draw_kl_and_nll_on_separate_axes():
    """A VAE's NLL (~600) and KL (~3) never share an axis (the KL would be drawn flat); values of one scale (loss and
    NLL) do; every panel keeps its legend below the axes, off the data."""
    from zoo.figures.plots import loss_panels
    records = [{"step": s, "vae/loss": 600.0 - s, "vae/nll": 597.0 - s, "vae/div": 3.0 + s / 100, "disc/loss": 1.3}
               for s in range(1, 50)]
    panels = loss_panels(records, "run")
    groups = {p.title: sorted(s.label for s in p.series) for p in panels}
    assert groups == {"run vae (div)": ["div"], "run vae (loss, nll)": ["loss", "nll"], "run disc": ["loss"]}
    assert all(p.legend == "below" for p in panels)
