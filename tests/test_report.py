"""`zoo registry report` opened in a real headless Chromium: rows, decoded images, sorting by a metric from the URL,
filtering, nothing fetched from the network; the screenshot is kept in the test's tmp_path (its path is printed)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest
from PIL import Image

from zoo.catalog import Catalog
from zoo.commands import registry

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs Chromium and sets ZOO_REQUIRE_BROWSER=1: there a missing browser fails the test; elsewhere (a
# developer's machine without it) the browser test is skipped with the line that installs it.
REQUIRE_BROWSER = os.environ.get("ZOO_REQUIRE_BROWSER") == "1"


def browse(url: str, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium on `url` with `args`; kills its whole process group on timeout or failure."""
    if CHROMIUM is None:
        message = "headless Chromium is needed: apt-get install chromium (.ci/run installs it)"
        if REQUIRE_BROWSER:
            pytest.fail(message + "; ZOO_REQUIRE_BROWSER=1 says it must be here")
        pytest.skip(message)
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-dev-shm-usage", "--virtual-time-budget=5000", *args, url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return out


def make_registry(tmp_path):
    """Three runs with sample grids and metrics.jsonl: IS 4 / 5 / 6, LPIPS 0.2 / 0.3 / (none)."""
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        for i, (name, model, is_, lpips) in enumerate((("vae_a", "vae", 4.0, 0.2), ("vae_b", "vae", 5.0, 0.3),
                                                      ("wgan", "wgan_gp", 6.0, None))):
            run_dir = tmp_path / "runs" / name
            (run_dir / "samples").mkdir(parents=True)
            grid = np.full((34, 34, 3), 60 * i, np.uint8)
            Image.fromarray(grid).save(run_dir / "samples" / "step_00000010.png")
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, f"{model}/loss": 1 / s}) + "\n"
                                                           for s in (5, 10)))
            run = catalog.register_run(run_dir, model=model, dataset="cifar10")
            ckpt = catalog.register_checkpoint(run, 10, run_dir / "checkpoints" / "step_00000010")
            catalog.add_result(ckpt, "is", is_, 0.1, {"n_samples": 50000, "splits": 10})
            if lpips is not None:
                catalog.add_result(ckpt, "lpips", lpips, 0.01, {"pairs": 1000})
                catalog.add_result(ckpt, "lpips.reference", 0.5, 0.01, {"pairs": 1000})  # real data: in no Pareto plot
    return path


def run_order(dom: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)"', dom)


def test_report_in_headless_chromium(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert registry.main(["--registry", str(make_registry(tmp_path)), "report", "--out", str(out)]) == 0
    assert "(3 checkpoints, 3 sample grids, 1 Pareto plots, 3 loss-curve figures" in capsys.readouterr().out  # is-lpips
    page = out.read_text()
    assert not re.findall(r'(?:src|href)="(?!data:)', page)  # self-contained: every image is a data: URI
    assert "n_samples=50000, splits=10" in page and "pairs=1000" in page  # each metric's protocol

    url = out.as_uri()
    dom = browse(url, "--dump-dom")
    assert run_order(dom) == ["vae_a", "vae_b", "wgan"]  # registry order without ?sort
    assert 'data-images-decoded="7"' in dom  # 3 sample grids + 1 Pareto plot + 3 loss curves, all decodable
    assert run_order(browse(url + "?sort=is", "--dump-dom")) == ["wgan", "vae_b", "vae_a"]  # IS: higher first
    # LPIPS: lower first, the run without LPIPS last; desc=1 reverses
    assert run_order(browse(url + "?sort=lpips", "--dump-dom")) == ["vae_a", "vae_b", "wgan"]
    assert run_order(browse(url + "?sort=lpips&desc=1", "--dump-dom")) == ["vae_b", "vae_a", "wgan"]
    filtered = browse(url + "?filter=wgan_gp", "--dump-dom")
    hidden = re.findall(r'<tr data-run="([^"]+)"( hidden="")?', filtered)
    assert [name for name, h in hidden if not h] == ["wgan"]

    shot = tmp_path / "report.png"
    browse(url + "?sort=is", f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars")
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # text, table and figures drawn
    print(f"report screenshot: {shot}")


SCRIPT_PAYLOAD, ATTRIBUTE_PAYLOAD = "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'


def test_crafted_registry_values_reach_the_page_only_escaped(tmp_path, capsys):
    """A registry table written by someone else: a run name, a step, a metric name and value and protocol fields hold
    HTML. The page shows each as text, holds one script (its own, allowed by its hash in the CSP) and no other tag."""
    import base64
    import hashlib
    import html
    import sqlite3

    path = make_registry(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET name = ?, model = ? WHERE name = 'vae_a'", (SCRIPT_PAYLOAD, ATTRIBUTE_PAYLOAD))
        db.execute("UPDATE checkpoints SET step = ? WHERE id = (SELECT MIN(id) FROM checkpoints)", (ATTRIBUTE_PAYLOAD,))
        db.execute("UPDATE results SET value = ? WHERE metric = 'is' AND value = 5.0", (SCRIPT_PAYLOAD,))
        db.execute("UPDATE results SET metric = ?, protocol = ? WHERE metric = 'lpips.reference'",
                   (ATTRIBUTE_PAYLOAD, json.dumps({"n_samples": SCRIPT_PAYLOAD, "backbone": ATTRIBUTE_PAYLOAD})))
    with (tmp_path / "runs" / "wgan" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 15, "wgan_gp/lo')  # a torn last line (killed mid-write): skipped, the curves still drawn
    out = tmp_path / "report.html"
    assert registry.main(["--registry", str(path), "report", "--out", str(out)]) == 0
    assert "3 loss-curve figures" in capsys.readouterr().out
    page = out.read_text()
    for payload in (SCRIPT_PAYLOAD, ATTRIBUTE_PAYLOAD):
        assert payload not in page and html.escape(payload, quote=True) in page
    assert "<img src=x" not in page and page.count("<script") == 1 and "onerror=alert" not in page.replace(
        html.escape(ATTRIBUTE_PAYLOAD, quote=True), "")
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (policy,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert html.unescape(policy).split("; ")[:2] == ["default-src 'none'", f"script-src 'sha256-{digest}'"]
    assert "img-src data:" in html.unescape(policy)


def test_the_report_says_what_msssim_cannot_see(tmp_path, capsys):
    """A registry with an msssim result: the page's protocol list carries the metric's blind spot (collapse onto a
    few distinct images) beside its numbers."""
    path = make_registry(tmp_path)
    with Catalog(path) as catalog:
        run = catalog.register_run(tmp_path / "runs" / "dcgan", model="dcgan", dataset="cifar10")
        ckpt = catalog.register_checkpoint(run, 10, tmp_path / "runs" / "dcgan" / "checkpoints" / "step_00000010")
        catalog.add_result(ckpt, "msssim", 0.38, 0.05, {"pairs": 5000})
    out = tmp_path / "report.html"
    assert registry.main(["--registry", str(path), "report", "--out", str(out)]) == 0
    page = out.read_text()
    assert "<li><b>msssim</b>: blind to collapse onto a few distinct images" in page
    assert page.count("blind to collapse") == 1



def test_a_metric_measured_under_two_protocols_gets_a_column_per_protocol(tmp_path, capsys):
    """As `registry compare` refuses to rank across protocols, the report never sorts values of different protocols
    in one column: IS at 50,000 and at 5,000 samples are two columns, each row's value in its own protocol's."""
    from zoo.catalog import protocol_id
    path = make_registry(tmp_path)
    with Catalog(path) as catalog:
        run = catalog.register_run(tmp_path / "runs" / "wgan", model="wgan_gp", dataset="cifar10")  # the same run
        ckpt = catalog.register_checkpoint(run, 20, tmp_path / "runs" / "wgan" / "checkpoints" / "step_00000020")
        catalog.add_result(ckpt, "is", 9.0, 0.1, {"n_samples": 5000, "splits": 10})
    out = tmp_path / "report.html"
    assert registry.main(["--registry", str(path), "report", "--out", str(out)]) == 0
    page = out.read_text()
    big, small = (f"is@{protocol_id({'n_samples': n, 'splits': 10})[:6]}" for n in (50000, 5000))
    heads = re.findall(r'<th data-key="([^"]+)"', page)
    assert sorted(k for k in heads if k.startswith("is")) == sorted([big, small])
    column = {key: i for i, key in enumerate(heads)}
    wgan = {cells[column["step"]]: cells for cells in
            (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r'<tr data-run="wgan">(.*?)</tr>', page))}
    assert wgan["20"][column[small]].startswith("9") and wgan["20"][column[big]] == ""
    assert wgan["10"][column[big]].startswith("6") and wgan["10"][column[small]] == ""
