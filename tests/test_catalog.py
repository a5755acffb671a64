"""The registry table (zoo/catalog.py) and tools/registry.py: concurrent writers, compare, export, plot, models."""
from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import time


from conftest import REPO
from zoo.catalog import Catalog, pareto_front, record_training


CATALOG = REPO / "zoo" / "catalog.py"


def load_tool(name: str):
    """The module behind `zoo NAME`."""
    from zoo.cli import COMMANDS
    return importlib.import_module(COMMANDS[name][0])


WRITER = """
import importlib.util, sys, time
from pathlib import Path
path, tag, n, go, source = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
spec = importlib.util.spec_from_file_location("catalog", source)  # zoo/catalog.py alone: no torch import to wait for
module = sys.modules["catalog"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
Catalog = module.Catalog
catalog = Catalog(path)
while not go.exists():
    time.sleep(0.01)
cid = catalog.register_source("data:mnist:test", "mnist")  # both processes register the same source
for i in range(n):
    catalog.add_result(cid, "msssim", i, None, {"writer": tag, "i": i})
"""


def test_two_writer_processes_at_once_lose_no_rows(tmp_path):
    path, go = tmp_path / "registry.sqlite", tmp_path / "go"
    Catalog(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, "300", str(go), str(CATALOG)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # hold the write lock: both writers start against a locked database ...
    go.touch()
    time.sleep(1.0)
    holder.execute("COMMIT")  # ... wait (not fail) until it is released, then race each other
    holder.close()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    with Catalog(path) as catalog:
        # both registered the same source at once: one run, one checkpoint, and every result row kept
        assert catalog.count("results") == 600 and catalog.count("runs") == 1 and catalog.count("checkpoints") == 1
        writers = [json.loads(r[0])["writer"] for r in catalog.query("SELECT protocol FROM results ORDER BY id")]
        assert writers.count("a") == writers.count("b") == 300
        assert catalog.query("PRAGMA journal_mode")[0][0] == "wal"


def fill(catalog: Catalog) -> None:
    """Three runs: two VAEs (IS 4.0 / 5.0, LPIPS 0.20 / 0.30) and a WGAN-GP (IS 6.0, no LPIPS); results rewritten
    once, so only the latest must count."""
    for name, model, steps, values in (("vae_a", "vae", (10, 20), {"is": (4.0, 3.0), "lpips": (0.2, 0.25)}),
                                       ("vae_b", "vae", (10,), {"is": (5.0,), "lpips": (0.3,)}),
                                       ("wgan", "wgan_gp", (10,), {"is": (6.0,)})):
        run = catalog.register_run(f"/runs/{name}", model=model, dataset="cifar10")
        for step, *_ in zip(steps, range(9)):
            ckpt = catalog.register_checkpoint(run, step, f"/runs/{name}/checkpoints/step_{step:08d}", "ab" * 32)
            for metric, series in values.items():
                value = series[steps.index(step)]
                catalog.add_result(ckpt, metric, value - 1.0, 0.1, {"n_samples": 10})  # superseded
                catalog.add_result(ckpt, metric, value, 0.1, {"n_samples": 50000, "splits": 10})


def test_compare_sorts_and_keeps_the_best_checkpoint_per_model(tmp_path, capsys):
    path = tmp_path / "registry.sqlite"
    with Catalog(path) as catalog:
        fill(catalog)
    tool = load_tool("registry")
    assert tool.main(["--registry", str(path), "compare", "--metric", "is,lpips", "--sort", "is", "--best",
                      "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "run,model,dataset,step,is,lpips"
    assert [line.split(",")[:4] for line in lines[1:]] == [["wgan", "wgan_gp", "cifar10", "10"],
                                                           ["vae_b", "vae", "cifar10", "10"]]
    assert lines[1].split(",")[4] == "6 ± 0.1"

    tool.main(["--registry", str(path), "compare", "--metric", "lpips", "--sort", "lpips", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run"], r["step"], r["results"]["lpips"]["value"]) for r in rows[:3]] == [
        ("vae_a", 10, 0.2), ("vae_a", 20, 0.25), ("vae_b", 10, 0.3)]  # lower is better: ascending
    assert rows[0]["results"]["lpips"]["protocol"] == {"n_samples": 50000, "splits": 10}
    assert rows[-1]["run"] == "wgan" and rows[-1]["results"] == {}

    tool.main(["--registry", str(path), "compare", "--sort", "is"])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| run | model | dataset | step | is | lpips |" and table[2].startswith("| wgan | wgan_gp |")


def test_export_writes_the_best_row_per_model_with_protocols(tmp_path, capsys):
    path, out = tmp_path / "registry.sqlite", tmp_path / "model_zoo.md"
    with Catalog(path) as catalog:
        fill(catalog)
    load_tool("registry").main(["--registry", str(path), "export", "--out", str(out)])
    text = out.read_text()
    assert "## cifar10" in text and "| model | run | step | is | lpips |" in text
    assert "| wgan_gp | wgan | 10 | 6 ± 0.1 |  |" in text and "| vae | vae_b | 10 | 5 ± 0.1 | 0.3 ± 0.1 |" in text
    assert "vae_a" not in text  # not the best VAE by IS
    assert "- `is`: n_samples=50000, splits=10" in text and "n_samples=10," not in text
    note = tmp_path / "note.md"
    note.write_text("Made on a CPU in 2,000 steps.\n\n")
    load_tool("registry").main(["--registry", str(path), "export", "--out", str(out), "--note", f"@{note}"])
    lines = out.read_text().splitlines()
    assert lines[4] == "Made on a CPU in 2,000 steps." and lines[6] == "## cifar10"  # under the title, before tables


def test_pareto_front_and_plot(tmp_path, capsys):
    # IS up, LPIPS down: (6, 0.3) and (5, 0.1) trade off; (4, 0.2) is dominated by (5, 0.1)
    points = [(6.0, 0.3), (5.0, 0.1), (4.0, 0.2), (6.0, 0.35)]
    assert pareto_front(points, higher_x=True, higher_y=False) == [1, 0]
    assert pareto_front(points, higher_x=True, higher_y=True) == [3]
    path = tmp_path / "registry.sqlite"
    with Catalog(path) as catalog:
        fill(catalog)
    png = tmp_path / "plot.png"
    load_tool("registry").main(["--registry", str(path), "plot", "--x", "is", "--y", "lpips", "--out", str(png)])
    assert "Pareto front: vae_a@10, vae_b@10" in capsys.readouterr().out
    from PIL import Image
    assert Image.open(png).size == (900, 650)


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
    assert record_training(run, path=blocker / "registry.sqlite") is False
    assert "could not record the run" in capsys.readouterr().err
    assert record_training(run, path=tmp_path / "ok.sqlite") is True
    with Catalog(tmp_path / "ok.sqlite") as catalog:
        (row,) = catalog.runs()
        assert row["model"] == "vae" and row["dataset"] == "mnist" and row["out_dir"] == str(run.resolve())
