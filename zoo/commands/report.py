"""`zoo registry report`: the catalog as ONE self-contained HTML file that opens offline (every image is
embedded as base64, the script and styles are inline; nothing is fetched from the network).

    zoo registry report --out runs/report.html [--model vae] [--dataset cifar10]
    # open runs/report.html; runs/report.html?sort=fid sorts by FID best first, ?filter=vae keeps rows with "vae"

The page holds: a table of every checkpoint with its run, model, dataset, step, latest result per metric (mean ± std,
the metric's protocol in the column's tooltip and listed under the table) and its sample grid; click a column to sort
(best first for metrics, again to reverse), type in the filter box to keep matching rows; the Pareto plot of every
pair of metrics two or more checkpoints share (`*.reference` values, measured on real data, left out); each run's loss
curves from its metrics.jsonl.
"""
from __future__ import annotations

import base64
import hashlib
import html
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Callable

from zoo.catalog import NON_PROTOCOL_KEYS, Catalog, Row, pareto_front
from zoo.commands.formats import cell, protocol_differences, protocol_summary
from zoo.figures import loss_curves, scatter_plot
from zoo.training.logging import read_metrics

MAX_PARETO = 6  # metric pairs drawn; a catalog with many metrics would otherwise get dozens of plots

SCRIPT = """
const table = document.getElementById('runs'), body = table.tBodies[0];
function sortBy(col, descending) {
  const th = table.tHead.rows[0].cells[col], numeric = th.dataset.numeric === '1';
  const key = r => { const c = r.cells[col]; return numeric ? (c.dataset.value === undefined ? null : +c.dataset.value)
                                                            : c.textContent; };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => { const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);   // rows without the metric go last
    return (x < y ? -1 : x > y ? 1 : 0) * (descending ? -1 : 1); });
  rows.forEach(r => body.appendChild(r));
  table.dataset.sortedBy = th.dataset.key; table.dataset.descending = descending ? '1' : '0';
}
function best(col) { return table.tHead.rows[0].cells[col].dataset.higher === '1'; }
Array.from(table.tHead.rows[0].cells).forEach((th, col) => th.addEventListener('click', () => {
  const again = table.dataset.sortedBy === th.dataset.key;
  sortBy(col, again ? table.dataset.descending !== '1' : best(col)); }));
function filterRows(text) {
  const words = text.toLowerCase().split(/\\s+/).filter(w => w);
  Array.from(body.rows).forEach(r => { const t = r.textContent.toLowerCase();
    r.hidden = !words.every(w => t.includes(w)); });
}
document.getElementById('filter').addEventListener('input', e => filterRows(e.target.value));
const params = new URLSearchParams(location.search);
if (params.get('filter')) { document.getElementById('filter').value = params.get('filter');
                            filterRows(params.get('filter')); }
// How many images decoded: a broken embedded image shows here (read by the headless-browser test).
window.addEventListener('load', () => { document.body.dataset.imagesDecoded =
  Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length; });
if (params.get('sort')) {
  const col = Array.from(table.tHead.rows[0].cells).findIndex(th => th.dataset.key === params.get('sort'));
  if (col >= 0) sortBy(col, params.has('desc') ? params.get('desc') === '1' : best(col));
}
"""

STYLE = """
body { font-family: system-ui, 'DejaVu Sans', sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f2f2f2; cursor: pointer; position: sticky; top: 0; } td.num { text-align: right; }
td img { width: 256px; image-rendering: pixelated; transition: transform 0.1s; }
td img:hover { transform: scale(2.5); transform-origin: right center; position: relative; z-index: 2;
             box-shadow: 0 2px 12px #0006; }  /* a thumbnail read at full size without leaving the table */
figure { display: inline-block; margin: 0.5em; }
figure img { max-width: 640px; } #filter { margin: 0.5em 0; width: 24em; }
"""


# What a metric cannot see, said wherever its numbers are shown (docs/metrics.md has the measurements).
CAVEATS = {"msssim": "blind to collapse onto a few distinct images: random pairs of 10 prototypes score about like the "
                     "data; read it with modes (stacked MNIST) or the critic for coverage"}


def escape(value: object) -> str:
    """Any value as HTML text or a quoted attribute value: catalog values are data from anyone who wrote the table
    (a run name, a step or a protocol field holding `<script>` must show as text, never run)."""
    return html.escape(str(value), quote=True)


def csp() -> str:
    """The page's Content-Security-Policy: nothing from the network, images only as data: URIs, and the one script
    and style block this module wrote, allowed by their hashes; so a value that slipped through escaping still could
    not run script (no inline handlers, no other <script>)."""
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    return (f"default-src 'none'; script-src {digest(SCRIPT)}; style-src {digest(STYLE)}; img-src data:; "
            f"base-uri 'none'; form-action 'none'")


def data_uri(path: Path) -> str:
    """The file as a data: URI (PNG), so the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def sample_grid(out_dir: Path, step: int) -> Path | None:
    """The run's sample grid at `step`, else its latest one before it."""
    if not isinstance(step, int):  # a damaged or crafted catalog row: no grid rather than no page
        return None
    grids = sorted((out_dir / "samples").glob("step_*.png")) if out_dir.is_dir() else []
    before = [g for g in grids if g.stem[5:].isdigit() and int(g.stem[5:]) <= step]
    return before[-1] if before else None


def build_report(catalog: Catalog, out: Path, direction: Callable[[str], bool | None], model: str | None = None,
                 dataset: str | None = None, protocol: str | None = None) -> dict[str, int]:
    """Write the report to `out`; returns what it holds (rows, sample grids, Pareto plots, loss curves). A metric
    whose results mix protocols gets one column per protocol id; a Pareto plot holds one protocol per axis."""

    rows = catalog.rows(model, dataset, protocol)
    run_dirs = {run["name"]: Path(run["out_dir"]) for run in catalog.runs()}
    metrics = sorted({m for r in rows for m in r.results})
    higher = {m: direction(m) for m in metrics}
    protocols = {m: {r.results[m]["protocol_id"]: protocol_summary(r.results[m]["protocol"]) for r in rows
                     if m in r.results} for m in metrics}
    differs = {m: protocol_differences({r.results[m]["protocol_id"]: r.results[m]["protocol"] for r in rows
                                        if m in r.results}, NON_PROTOCOL_KEYS) for m in metrics}
    mixed = {m for m in metrics if len({r.protocol_id(m) for r in rows if m in r.results}) > 1}
    counts = {"rows": len(rows), "grids": 0, "pareto": 0, "curves": 0}
    arrow = {True: " ↑", False: " ↓", None: ""}
    head = "".join(f'<th data-key="{k}" data-numeric="{int(k == "step")}" data-higher="1">{k}</th>'
                   for k in ("run", "model", "dataset", "step"))
    # one column per metric and protocol, as `registry compare` groups: values measured under different protocols are
    # never ranked in one column (a metric whose results mix protocols gets a column per protocol id)
    columns = [(m, pid) for m in metrics for pid in (sorted(protocols[m]) if m in mixed else [None])]
    head += "".join(f'<th data-key="{escape(m + (f"@{pid[:6]}" if pid else ""))}" data-numeric="1" '
                    f'data-higher="{int(higher[m] is not False)}" '
                    f'title="{escape(protocols[m][pid] if pid else "; ".join(sorted(protocols[m].values())))}">'
                    f'{escape(m)}{arrow[higher[m]]}{escape(f" [{pid[:6]}]" if pid else "")}</th>'
                    for m, pid in columns)
    head += '<th data-key="samples">samples</th>'
    body = []
    for r in rows:
        cells = [f"<td>{escape(v)}</td>" for v in (r.run, r.model, r.dataset)]
        cells.append(f'<td class="num" data-value="{escape(r.step)}">{escape(r.step)}</td>')
        for m, pid in columns:
            value = r.value(m) if pid is None or r.protocol_id(m) == pid else None
            cells.append(f'<td class="num" data-value="{escape(repr(value))}">{escape(cell(r, m))}</td>'
                         if value is not None else "<td></td>")
        grid = sample_grid(run_dirs.get(r.run, Path(r.path).parent.parent), r.step)
        counts["grids"] += grid is not None
        cells.append(f'<td><img alt="samples of {escape(r.run)} at step {escape(r.step)}" '
                     f'src="{escape(data_uri(grid))}"></td>' if grid else "<td></td>")
        body.append(f'<tr data-run="{escape(r.run)}">' + "".join(cells) + "</tr>")
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        scores = [m for m in metrics if not m.endswith(".reference")]  # a real-data reference is no model's result
        plots = []  # (x, y, rows): one plot per metric pair and protocol pair with two or more checkpoints
        for x, y in itertools.combinations(scores, 2):
            groups: dict[tuple, list[Row]] = {}
            for r in rows:
                if isinstance(r.value(x), (int, float)) and isinstance(r.value(y), (int, float)):  # not a damaged row
                    groups.setdefault((r.protocol_id(x), r.protocol_id(y)), []).append(r)
            plots += [(x, y, group) for group in groups.values() if len(group) > 1]
        for x, y, both in plots[:MAX_PARETO]:
            points = [(r.value(x), r.value(y)) for r in both]
            front = pareto_front(points, higher[x] is not False, higher[y] is not False)
            png = scatter_plot(Path(tmp) / f"pareto_{counts['pareto']}.png", points, [f"{r.run}@{r.step}" for r in both],
                               [r.model or "?" for r in both], front, x + arrow[higher[x]], y + arrow[higher[y]],
                               title=f"{y} against {x}", size=(800, 520))
            tags = f" (protocols {both[0].protocol_id(x)[:6]}, {both[0].protocol_id(y)[:6]})" if {x, y} & mixed else ""
            figures.append(("pareto", f"{y} against {x}{tags}", png))
            counts["pareto"] += 1
        for name in dict.fromkeys(r.run for r in rows):
            run_dir = run_dirs.get(name)
            try:
                records = read_metrics(run_dir) if run_dir and (run_dir / "metrics.jsonl").is_file() else []
            except ValueError as err:  # a damaged log costs its run's curves, not the page
                print(f"zoo: warning: no loss curves for {name}: {err}", file=sys.stderr)
                records = []
            records = [{k: v for k, v in rec.items() if not k.startswith("lr/")} for rec in records]
            if any(len(rec) > 1 for rec in records):
                png = loss_curves(records, Path(tmp) / f"curves_{counts['curves']}.png", title=name)
                figures.append(("curves", f"training curves of {name}", png))
                counts["curves"] += 1
        sections = {kind: "".join(f'<figure class="{kind}"><img alt="{escape(caption)}" src="{escape(data_uri(png))}">'
                                  f"<figcaption>{escape(caption)}</figcaption></figure>"
                                  for k, caption, png in figures if k == kind) for kind in ("pareto", "curves")}
    listing = "".join(f"<li><code>{escape(m)}</code>{arrow[higher[m]]} [{escape(pid[:6])}]: "
                      f"{escape(p) or '(none recorded)'}"
                      + (f"; differs in {escape(differs[m][pid])}" if pid in differs[m] else "") + "</li>"
                      for m in metrics for pid, p in sorted(protocols[m].items()))
    listing += "".join(f"<li><b>{escape(m)}</b>: {escape(CAVEATS[m])}</li>" for m in metrics if m in CAVEATS)
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{escape(csp())}"><title>zoo registry report</title>'
            f"<style>{STYLE}</style></head><body><h1>zoo registry report</h1>"
            f"<p>{len(rows)} checkpoints from {escape(str(catalog.path))}. Click a column to sort (metrics best "
            f"first: ↑ higher is better, ↓ lower); the filter keeps rows holding every word typed.</p>"
            f'<input id="filter" type="search" placeholder="filter rows, e.g. vae cifar10">'
            f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f"<h2>Protocols</h2><ul>{listing}</ul>"
            f"<h2>Pareto plots</h2>{sections['pareto'] or '<p>(no two checkpoints have two metrics under the same pair of protocols)</p>'}"
            f"<h2>Loss curves</h2>{sections['curves'] or '<p>(no run has a metrics.jsonl)</p>'}"
            f"<script>{SCRIPT}</script></body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return counts
