"""The catalog (zoo/catalog/) and tools/registry.py: concurrent writers, compare, export, plot, models."""
from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import procs

from conftest import REPO
from zoo.catalog import Catalog, pareto_front, recipe_key, record_training


CATALOG = REPO / "zoo" / "catalog"


def load_tool(name: str):
    """The module behind `zoo NAME`."""
    from zoo.cli import COMMANDS
    return importlib.import_module(COMMANDS[name][0])


WRITER = """
import sys, time
from pathlib import Path
path, tag, n, go, source = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
sys.path.insert(0, str(Path(source).parents[1]))  # the checkout holding zoo/catalog, whatever PYTHONPATH says
from zoo.catalog import Catalog
catalog = Catalog(path)
while not go.exists():
    time.sleep(0.01)
cid = catalog.register_source("data:mnist:test", "mnist")  # both processes register the same source
for i in range(n):
    catalog.add_result(cid, "msssim", i, None, {"writer": tag, "i": i})
"""


def test_two_writer_processes_at_once_lose_no_rows(tmp_path):
    path, go = tmp_path / "catalog.sqlite", tmp_path / "go"
    Catalog(path).close()
    writers = [procs.popen([sys.executable, "-c", WRITER, str(path), tag, "300", str(go), str(CATALOG)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # hold the write lock: both writers start against a locked database ...
    go.touch()
    time.sleep(1.0)
    holder.execute("COMMIT")  # ... wait (not fail) until it is released, then race each other
    holder.close()
    outputs = [p.communicate(timeout=300) for p in writers]
    assert all(p.returncode == 0 for p in writers), outputs
    with Catalog(path) as catalog:
        # both registered the same source at once: one run, one checkpoint, and every result row kept
        assert catalog.count("results") == 600 and catalog.count("runs") == 1 and catalog.count("checkpoints") == 1
        writers = [json.loads(r[0])["writer"] for r in catalog.query("SELECT protocol FROM results ORDER BY id")]
        assert writers.count("a") == writers.count("b") == 300
        assert catalog.query("PRAGMA journal_mode")[0][0] == "wal"


FULL, QUICK = {"n_samples": 50000, "splits": 10, "seed": 0}, {"n_samples": 10, "splits": 10, "seed": 0}


def fill(catalog: Catalog) -> None:
    """Three runs: two VAEs (IS 4.0 / 5.0, LPIPS 0.20 / 0.30) and a WGAN-GP (IS 6.0, no LPIPS), all under the full
    protocol; every checkpoint was also evaluated with 10 samples (value - 1), a result that must be kept apart."""
    for name, model, steps, values in (("vae_a", "vae", (10, 20), {"is": (4.0, 3.0), "lpips": (0.2, 0.25)}),
                                       ("vae_b", "vae", (10,), {"is": (5.0,), "lpips": (0.3,)}),
                                       ("wgan", "wgan_gp", (10,), {"is": (6.0,)})):
        run = catalog.register_run(f"/runs/{name}", model=model, dataset="cifar10")
        for step, *_ in zip(steps, range(9)):
            ckpt = catalog.register_checkpoint(run, step, f"/runs/{name}/checkpoints/step_{step:08d}", "ab" * 32)
            for metric, series in values.items():
                value = series[steps.index(step)]
                spread = "split std" if metric == "is" else "per-image std"
                catalog.add_result(ckpt, metric, value, 0.1, FULL, spread=spread, code_commit="c0ffee",
                                   zoo_version="0.1.0")
                if metric == "is":
                    catalog.add_result(ckpt, metric, value - 1.0, 0.5, QUICK, spread=spread)


def test_two_protocols_of_one_checkpoint_are_both_kept_and_never_ranked_across(tmp_path, capsys):
    """The issue's case: a 1,000-sample IS of 7.40 and a 50,000-sample IS of 6.10 of checkpoint A, another model's
    50,000-sample 7.2: A's 7.40 must not rank above 7.2."""
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        a = catalog.register_checkpoint(catalog.register_run("/runs/a", model="vae", dataset="cifar10"), 5, "/a/s5")
        b = catalog.register_checkpoint(catalog.register_run("/runs/b", model="dcgan", dataset="cifar10"), 5, "/b/s5")
        catalog.add_result(a, "is", 6.10, 0.05, {"n_samples": 50000, "splits": 10, "seed": 0, "source": "/a/s5"})
        catalog.add_result(a, "is", 7.40, 0.30, {"n_samples": 1000, "splits": 10, "seed": 0, "source": "/a/s5"})
        catalog.add_result(b, "is", 7.20, 0.05, {"n_samples": 50000, "splits": 10, "seed": 0, "source": "/b/s5"})
        assert [(r.value, r.n) for r in catalog.results()] == [(6.10, 50000), (7.40, 1000), (7.20, 50000)]
        full, quick = catalog.results()[0].protocol_id, catalog.results()[1].protocol_id
        assert catalog.results()[2].protocol_id == full != quick  # the source is not part of the protocol
        assert {(r.run, r.value(("is"))) for r in catalog.rows()} == {("a", 6.10), ("a", 7.40), ("b", 7.20)}
    tool = load_tool("registry")
    tool.main(["--registry", str(path), "compare", "--metric", "is", "--best"])
    text = capsys.readouterr().out
    tables = text.split("### ")[1:]
    assert len(tables) == 2 and tables[0].startswith(f"`is` protocol [{full[:6]}]")
    body = [line for line in tables[0].splitlines() if line.startswith("| ") and "run" not in line]
    assert [line.split(" | ")[0] for line in body] == ["| b", "| a"]  # 7.20 above 6.10; 7.40 is elsewhere
    assert "7.4" in tables[1] and "7.4" not in tables[0] and "n_samples=1000" in tables[1]
    tool.main(["--registry", str(path), "compare", "--metric", "is", "--protocol", "n_samples=50000"])
    assert "7.4" not in capsys.readouterr().out
    tool.main(["--registry", str(path), "compare", "--metric", "is", "--protocol", quick[:8], "--format", "json"])
    (only,) = json.loads(capsys.readouterr().out)
    assert (only["run"], only["value"], only["n_samples"], only["protocol_id"]) == ("a", 7.40, 1000, quick)


def test_compare_sorts_keeps_the_best_per_model_and_exports_numeric_columns(tmp_path, capsys):
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        fill(catalog)
        assert catalog.count("results") == 7 + 4  # every result kept, the quick ones too
    tool = load_tool("registry")
    assert tool.main(["--registry", str(path), "compare", "--metric", "is,lpips", "--sort", "is", "--best",
                      "--protocol", "n_samples=50000", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == ("run,model,dataset,step,checkpoint_sha256,metric,value,spread,spread_kind,n_samples,seed,"
                        "train_seed,n_seeds,protocol_id,complete,code_commit,zoo_version,created_at")
    records = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert [(r["metric"], r["run"], float(r["value"])) for r in records] == [
        ("is", "wgan", 6.0), ("is", "vae_b", 5.0), ("lpips", "vae_b", 0.3)]  # best per model by IS, best first
    assert records[0]["spread"] == "0.1" and records[0]["spread_kind"] == "split std"
    assert (records[0]["n_samples"], records[0]["seed"], records[0]["code_commit"]) == ("50000", "0", "c0ffee")

    tool.main(["--registry", str(path), "compare", "--metric", "lpips", "--sort", "lpips", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run"], r["step"], r["value"]) for r in rows] == [("vae_a", 10, 0.2), ("vae_a", 20, 0.25),
                                                                ("vae_b", 10, 0.3)]  # lower is better: ascending
    assert rows[0]["protocol"] == FULL and rows[0]["n_samples"] == 50000

    tool.main(["--registry", str(path), "compare", "--sort", "is", "--protocol", "n_samples=50000"])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| run | model | dataset | step | is (± split std) | lpips (± per-image std) |"
    assert table[2].startswith("| wgan | wgan_gp | cifar10 | 10 | 6 ± 0.1 |")
    with pytest.raises(SystemExit, match=r"unknown metric 'iss'; known: .*\bis\b.*lpips"):
        tool.main(["--registry", str(path), "compare", "--metric", "iss"])


def test_runs_that_differ_only_in_seed_are_aggregated(tmp_path, capsys):
    path = tmp_path / "catalog.sqlite"
    config = "model:\n  name: vae\ntrain:\n  seed: {seed}\n  max_steps: 10\n"
    with Catalog(path) as catalog:
        for seed, value in ((0, 4.0), (1, 5.0), (2, 6.0)):
            run = catalog.register_run(f"/runs/vae_s{seed}", model="vae", dataset="mnist",
                                       config=config.format(seed=seed))
            catalog.add_result(catalog.register_checkpoint(run, 10, f"/runs/vae_s{seed}/c"), "is", value, 0.1, FULL)
        other = catalog.register_run("/runs/vae_lr", model="vae", dataset="mnist",
                                     config=config.format(seed=0).replace("10", "20"))  # another recipe
        catalog.add_result(catalog.register_checkpoint(other, 10, "/runs/vae_lr/c"), "is", 9.0, 0.1, FULL)
    # eval names what to measure, not what was trained: configs differing only there are still one recipe
    evals = ("eval:\n  metrics: [is]\n", "eval:\n  metrics: []\n  n_samples: 10000\n", "")
    assert len({recipe_key(config.format(seed=0) + e) for e in evals}) == 1
    tool = load_tool("registry")
    tool.main(["--registry", str(path), "compare", "--metric", "is", "--aggregate-seeds", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["value"], r["n_seeds"]) for r in rows] == [(9.0, 1), (5.0, 3)]
    assert rows[1]["spread"] == pytest.approx(1.0) and rows[1]["spread_kind"] == "std over 3 training seeds"
    tool.main(["--registry", str(path), "compare", "--metric", "is", "--aggregate-seeds"])
    assert "| 5 ± 1 (3 seeds) |" in capsys.readouterr().out
    png = tmp_path / "seeds.png"
    with Catalog(path) as catalog:  # a second metric to plot against
        for cid in range(1, 5):
            catalog.add_result(cid, "fid", 10.0 * cid, None, FULL)
    tool.main(["--registry", str(path), "plot", "--x", "is", "--y", "fid", "--aggregate-seeds", "--out", str(png)])
    assert "(2 checkpoints" in capsys.readouterr().out


def test_export_writes_the_best_row_per_model_per_protocol(tmp_path, capsys):
    path, out = tmp_path / "catalog.sqlite", tmp_path / "model_zoo.md"
    with Catalog(path) as catalog:
        fill(catalog)
    csv_out, json_out = tmp_path / "zoo.csv", tmp_path / "zoo.json"
    load_tool("registry").main(["--registry", str(path), "export", "--out", str(out), "--csv", str(csv_out),
                                "--json", str(json_out)])
    text = out.read_text()
    full, quick = (catalog_id(FULL), catalog_id(QUICK))
    assert "## cifar10" in text and f"### `is` protocol [{full[:6]}]" in text and f"[{quick[:6]}]" in text
    first = text[text.index(f"### `is` protocol [{full[:6]}]"):text.index(f"### `is` protocol [{quick[:6]}]")]
    assert "| model | run | step | is (± split std) | lpips (± per-image std) |" in first
    assert "| wgan_gp | wgan | 10 | 6 ± 0.1 |  |" in first and "| vae | vae_b | 10 | 5 ± 0.1 | 0.3 ± 0.1 |" in first
    assert "vae_a" not in first  # not the best VAE by IS
    assert f"- `is` [{full[:6]}]: n_samples=50000, splits=10, seed=0" in first
    assert len(json.loads(json_out.read_text())) == 11 and len(csv_out.read_text().splitlines()) == 12
    note = tmp_path / "note.md"
    note.write_text("Made on a CPU in 2,000 steps.\n\n")
    load_tool("registry").main(["--registry", str(path), "export", "--out", str(out), "--note", f"@{note}"])
    lines = out.read_text().splitlines()
    assert lines[4] == "Made on a CPU in 2,000 steps." and lines[6] == "## cifar10"  # under the title, before tables


def catalog_id(protocol):
    from zoo.catalog import protocol_id
    return protocol_id(protocol)


def test_pareto_front_and_plot(tmp_path, capsys):
    # IS up, LPIPS down: (6, 0.3) and (5, 0.1) trade off; (4, 0.2) is dominated by (5, 0.1)
    points = [(6.0, 0.3), (5.0, 0.1), (4.0, 0.2), (6.0, 0.35)]
    assert pareto_front(points, higher_x=True, higher_y=False) == [1, 0]
    assert pareto_front(points, higher_x=True, higher_y=True) == [3]
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        fill(catalog)
    png = tmp_path / "plot.png"
    tool = load_tool("registry")
    with pytest.raises(SystemExit, match="mix protocols .* pick one with --protocol"):
        tool.main(["--registry", str(path), "plot", "--x", "is", "--y", "lpips", "--out", str(png)])
    tool.main(["--registry", str(path), "plot", "--x", "is", "--y", "lpips", "--out", str(png), "--protocol",
               "n_samples=50000"])
    assert "Pareto front: vae_a@10, vae_b@10" in capsys.readouterr().out
    from PIL import Image
    assert Image.open(png).size == (900, 650)


def test_a_schema_1_table_gains_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(str(path))
    db.executescript("""CREATE TABLE results (id INTEGER PRIMARY KEY, checkpoint_id INTEGER NOT NULL, metric TEXT NOT
        NULL, value REAL NOT NULL, std REAL, protocol TEXT NOT NULL, created_at TEXT NOT NULL);
        INSERT INTO results VALUES (1, 1, 'is', 6.5, 0.1, '{"n_samples": 50000, "seed": 0}', 'then');""")
    db.close()
    with Catalog(path) as catalog:
        catalog.register_checkpoint(catalog.register_run("/r", model="vae", dataset="mnist"), 1, "/r/c")
        (old,) = catalog.results()
        assert (old.value, old.n, old.seed, old.complete) == (6.5, 50000, 0, True)
        assert old.protocol_id == catalog_id({"n_samples": 50000, "seed": 0})


def test_models_lists_the_code_registry(capsys):
    load_tool("registry").main(["models", "--format", "json"])
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert models["`wgan_gp`"]["players"] == "generator, critic" and models["`wgan_gp`"]["phases"] == "critic ×5, gen"
    assert models["`vae`"]["paper"].startswith("Kingma & Welling")


def test_an_unreachable_registry_only_warns(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: vae}\ndata: {name: mnist}\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert record_training(run, path=blocker / "catalog.sqlite") is False
    assert "could not record the run" in capsys.readouterr().err
    assert record_training(run, path=tmp_path / "ok.sqlite") is True
    with Catalog(tmp_path / "ok.sqlite") as catalog:
        (row,) = catalog.runs()
        assert row["model"] == "vae" and row["dataset"] == "mnist" and row["out_dir"] == str(run.resolve())


def test_a_metric_and_its_reference_share_a_row_only_under_one_protocol(tmp_path):
    with Catalog(tmp_path / "r.sqlite") as catalog:
        cid = catalog.register_checkpoint(catalog.register_run("/r", model="vae", dataset="mnist"), 1, "/r/c")
        for name, value, ref in (("small3", 0.26, 0.38), ("tf5", 0.63, 0.82)):
            catalog.add_result(cid, "msssim", value, 0.1, {"msssim_protocol": name, "n_samples": 2000, "pairs": 1000})
            catalog.add_result(cid, "msssim.reference", ref, 0.1, {"msssim_protocol": name, "n_real": 2000,
                                                                    "pairs": 1000, "reference_split": "test"})
        rows = catalog.rows()
    assert sorted((r.value("msssim"), r.value("msssim.reference")) for r in rows) == [(0.26, 0.38), (0.63, 0.82)]


@pytest.mark.parametrize("value, written", [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
                                            ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
                                            ("\tx", "'\tx"), ("\r=1", "'\r=1"), ("-5.3", "-5.3"), ("+1e-3", "+1e-3"),
                                            (-5.3, -5.3), ("vae", "vae"), (None, None)])
def test_csv_cells_that_start_like_a_formula_are_text_and_numbers_stay_numbers(value, written):
    from zoo.commands.formats import csv_cell
    assert csv_cell(value) == written


def test_export_neutralises_formulas_in_csv_and_html_in_markdown(tmp_path):
    """Registry values written by anyone: a run named like a formula, a model holding HTML and a pipe. The CSV shows
    them as text and keeps a negative metric value numeric; the Markdown shows the HTML as text in its own cell."""
    import csv
    path, out, csv_out = tmp_path / "catalog.sqlite", tmp_path / "model_zoo.md", tmp_path / "zoo.csv"
    with Catalog(path) as catalog:
        run = catalog.register_run(tmp_path / "r", model="<img src=x onerror=alert(1)>|vae", dataset="cifar10")
        ckpt = catalog.register_checkpoint(run, 10, tmp_path / "r" / "checkpoints" / "step_00000010")
        catalog.add_result(ckpt, "elbo", -5.3, None, {"n_samples": 100})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET name = '=HYPERLINK(\"http://evil\")'")
    load_tool("registry").main(["--registry", str(path), "export", "--out", str(out), "--csv", str(csv_out)])
    (record,) = csv.DictReader(csv_out.open())
    assert record["run"] == "'=HYPERLINK(\"http://evil\")" and record["value"] == "-5.3"
    assert record["model"] == "<img src=x onerror=alert(1)>|vae"  # starts with no formula character: as it is
    text = out.read_text()
    assert "| &lt;img src=x onerror=alert(1)&gt;\\|vae | =HYPERLINK(\"http://evil\") | 10 | -5.3 |" in text
    assert "<img" not in text


def test_protocols_that_read_alike_say_what_differs(tmp_path, capsys):
    """Two `is` protocols whose summary lines read the same (they differ only in a dataset option the summary does not
    show): compare lists both ids and, beside each, the setting that tells them apart."""
    path = tmp_path / "catalog.sqlite"
    base = {"n_samples": 1000, "splits": 10, "seed": 0, "dataset": "cifar10"}
    with Catalog(path) as catalog:
        for name, options in (("full", {}), ("cut", {"limit": 256})):
            run = catalog.register_run(tmp_path / name, model="vae", dataset="cifar10")
            ckpt = catalog.register_checkpoint(run, 10, tmp_path / name / "c")
            catalog.add_result(ckpt, "is", 5.0, 0.1, {**base, "dataset_options": options})
    assert load_tool("registry").main(["--registry", str(path), "compare", "--metric", "is"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- `is` [")]
    assert len(lines) == 2
    assert sorted(line.split("; differs in ")[1] for line in lines) == ["dataset_options.limit=(unset)",
                                                                       "dataset_options.limit=256"]
    assert all(line.split("]: ")[1].startswith("n_samples=1000, splits=10, seed=0") for line in lines)


def test_plot_with_one_metrics_protocol_keeps_the_other_axis(tmp_path, capsys):
    """`plot --x is --y lpips --protocol <is's id>`: the id picks the IS protocol and leaves LPIPS alone, so the
    checkpoint that has both is plotted (it used to say no checkpoint has both)."""
    from zoo.catalog import protocol_id
    path = tmp_path / "catalog.sqlite"
    is_protocol = {"n_samples": 1000, "splits": 10, "seed": 0}
    with Catalog(path) as catalog:
        for name, is_value, lpips in (("a", 5.0, 0.2), ("b", 6.0, 0.3)):
            run = catalog.register_run(tmp_path / name, model="vae", dataset="cifar10")
            ckpt = catalog.register_checkpoint(run, 10, tmp_path / name / "c")
            catalog.add_result(ckpt, "is", is_value, 0.1, is_protocol)
            catalog.add_result(ckpt, "lpips", lpips, 0.01, {"pairs": 1000, "seed": 0})
        run = catalog.register_run(tmp_path / "quick", model="vae", dataset="cifar10")
        catalog.add_result(catalog.register_checkpoint(run, 10, tmp_path / "quick" / "c"), "is", 9.0, 0.1,
                           {**is_protocol, "n_samples": 50})
    out = tmp_path / "plot.png"
    assert load_tool("registry").main(["--registry", str(path), "plot", "--x", "is", "--y", "lpips", "--protocol",
                                       protocol_id(is_protocol)[:8], "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.is_file() and "(2 checkpoints; Pareto front:" in said


# ---- the names before issue 22: RegistryError, ZOO_REGISTRY, runs/registry.sqlite ----------------------------------
@pytest.fixture
def fresh_notices(monkeypatch):
    """default_path's notices are said once per process: each test starts with none said."""
    from zoo.catalog import store
    monkeypatch.setattr(store, "_said", set())


def test_registry_error_is_a_kept_alias_of_catalog_error(tmp_path):
    import zoo.catalog
    from zoo.catalog import CatalogError, RegistryError, store
    assert RegistryError is CatalogError and "RegistryError" in zoo.catalog.__all__
    assert not hasattr(store, "RegistryError")  # the alias lives in the package's __init__ only
    with pytest.raises(RegistryError, match=r"^catalog '.*missing\.sqlite' does not exist \(set ZOO_CATALOG"):
        Catalog(tmp_path / "missing.sqlite", readonly=True)


def test_zoo_registry_is_honoured_while_zoo_catalog_is_unset(tmp_path, monkeypatch, capsys, fresh_notices):
    from zoo.catalog import default_path
    monkeypatch.delenv("ZOO_CATALOG")
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "old_name.sqlite"))
    assert default_path() == tmp_path / "old_name.sqlite"
    assert default_path() == tmp_path / "old_name.sqlite"
    err = capsys.readouterr().err
    assert err == ("zoo: DeprecationWarning: ZOO_REGISTRY is deprecated; rename it to ZOO_CATALOG (read only while "
                   "ZOO_CATALOG is unset)\n")  # one line, once
    monkeypatch.setenv("ZOO_CATALOG", str(tmp_path / "new_name.sqlite"))
    assert default_path() == tmp_path / "new_name.sqlite"  # the new name wins, silently
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("ZOO_REGISTRY")
    monkeypatch.delenv("ZOO_CATALOG")
    monkeypatch.chdir(tmp_path)
    assert default_path() == Path("runs") / "catalog.sqlite"  # no variable, no old file: the new default


def test_an_old_runs_registry_sqlite_is_used_in_place_with_its_rows(tmp_path, monkeypatch, capsys, fresh_notices):
    """Only runs/registry.sqlite (the default before issue 22) exists: it is found, read and written where it is,
    its rows kept, including one still in its -wal file; no runs/catalog.sqlite appears beside it."""
    from zoo.catalog import default_path
    monkeypatch.delenv("ZOO_CATALOG")
    monkeypatch.chdir(tmp_path)
    old = Path("runs") / "registry.sqlite"
    with Catalog(old) as catalog:
        cid = catalog.register_checkpoint(catalog.register_run("/runs/old", model="vae", dataset="mnist"), 5, "/c")
        catalog.add_result(cid, "is", 4.5, 0.1, {"n_samples": 100})
    holder = sqlite3.connect(str(old), isolation_level=None)  # an open writer keeps its last row in the -wal file
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("INSERT INTO runs (name, out_dir, created_at) VALUES ('in_wal', '/runs/in_wal', 'now')")
    try:
        assert (tmp_path / "runs" / "registry.sqlite-wal").stat().st_size > 0
        assert default_path() == old
        with Catalog() as catalog:
            assert catalog.path == old
            assert [r["name"] for r in catalog.runs()] == ["old", "in_wal"]
            assert [(r.run, r.value) for r in catalog.results()] == [("old", 4.5)]
        run = tmp_path / "new_run"
        run.mkdir()
        (run / "config.yaml").write_text("model: {name: aae}\ndata: {name: mnist}\n")
        assert record_training(run) is True  # what `zoo train` calls: into the old file
        from zoo.commands.registry import main
        assert main(["list"]) == 0  # `zoo registry list` without --registry reads it too
        out, err = capsys.readouterr()
        assert "model=vae dataset=mnist" in out and "model=aae dataset=mnist" in out
    finally:
        holder.close()
    assert not (tmp_path / "runs" / "catalog.sqlite").exists()
    with Catalog(old) as catalog:
        assert catalog.count("runs") == 3 and catalog.count("results") == 1
    assert err == ("zoo: using the catalog at its old name runs/registry.sqlite; rename it and its -wal/-shm files to "
                   "catalog.sqlite when no zoo process is running, or set ZOO_CATALOG\n")  # one line, once


def test_with_both_default_files_the_new_one_is_used_and_the_old_one_named(tmp_path, monkeypatch, capsys,
                                                                          fresh_notices):
    from zoo.catalog import default_path
    monkeypatch.delenv("ZOO_CATALOG")
    monkeypatch.chdir(tmp_path)
    Catalog(Path("runs") / "registry.sqlite").close()
    Catalog(Path("runs") / "catalog.sqlite").close()
    assert default_path() == Path("runs") / "catalog.sqlite"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "both runs/catalog.sqlite and the older runs/registry.sqlite exist" in err
