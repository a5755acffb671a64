"""Reproduction specs: the strict loader, resumable runs, rendering of the paper beside ours, smoke runs end to end."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SHARED, RandomImages
from zoo.catalog import Catalog
from zoo.config import ConfigError
from zoo.reproduction import find_specs, load_spec, plan, render_spec, run_spec
from zoo.reproduction.render import check_claim
from zoo.reproduction.run import PlannedRun, describe_device, run_one

SPECS = REPO / "recipes" / "reproduction"
PAPERS = SHARED / "papers"
TINY = str(REPO / "recipes" / "tiny_vae.yaml")


def tiny_spec(tmp_path: Path, **changes) -> Path:
    """A two-run spec over the tiny VAE recipe, measured by the registered reconstruction metric on 32 test images."""
    tree = {
        "name": "tiny", "title": "Tiny table", "paper": "Nobody 2020", "source": "Table 9",
        "metrics": [{"name": "reconstruction", "label": "error", "units": "SSE per image"}],
        "protocol": {"name": "metrics", "options": {"metrics": ["reconstruction"], "split": "test", "n_real": 32}},
        "runs": [{"name": "small", "recipe": TINY, "overrides": ["model.latent_dim=4"],
                  "paper": {"reconstruction": {"value": 8.5, "source": "Table 9, row small"}}},
                 {"name": "big", "recipe": TINY, "paper": {"reconstruction": {"value": 7.25,
                                                                                     "source": "Table 9, row big"}}}],
        "seeds": [0],
        "scales": {"smoke": {"description": "tiny", "overrides": ["train.max_steps=4", "train.checkpoint_every=2",
                                                                  "train.progress=false"]}},
        "claims": [{"statement": "big beats small", "source": "Table 9",
                    "lhs": {"runs": ["big"]}, "op": "<", "rhs": {"runs": ["small"]}}],
    }
    tree.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


# ---- the loader ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where, change, message", [
    ("top", {"titel": "x"}, "tiny.titel: unknown key (did you mean 'title'?)"),
    ("run", {"runs": [{"name": "a", "recipe": TINY, "overides": []}]}, "tiny.runs[0].overides: unknown key"),
    ("scale", {"scales": {"smoke": {"epoch": 1}}}, "tiny.scales.smoke.epoch: unknown key (did you mean 'epochs'?)"),
    ("paper", {"runs": [{"name": "a", "recipe": TINY, "paper": {"reconstruction": {"value": 1, "src": "x"}}}]},
     "tiny.runs[0].paper.reconstruction.src: unknown key"),
])
def test_spec_loader_names_unknown_keys(tmp_path, where, change, message):
    with pytest.raises(ConfigError) as err:
        load_spec(tiny_spec(tmp_path, **change))
    assert message in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"scales": {"cpu": {}}}, "'smoke' is required"),
    ({"runs": [{"name": "a", "recipe": "nope.yaml"}]}, "runs.a.recipe: 'nope.yaml' is not a recipe file"),
    ({"claims": [{"statement": "s", "source": "t", "lhs": {"runs": ["zzz"]}, "op": "increasing"}]},
     "no run named 'zzz'"),
    ({"protocol": {"name": "fid"}}, "tiny.protocol.name: got 'fid', allowed values"),
])
def test_spec_loader_checks_names_and_files(tmp_path, change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_spec(tiny_spec(tmp_path, **change))


def test_every_spec_loads_and_has_a_smoke_scale():
    paths = find_specs(SPECS)
    assert len(paths) >= 12
    for path in paths:
        spec = load_spec(path)
        assert spec.name == path.stem and "smoke" in spec.scales and "paper" in spec.scales
        assert plan(spec, "smoke"), spec.name


def test_deasy_paper_values_are_the_papers_table_2():
    """Spot values of Table 2, and every paper value of the four Deasy specs appears in the paper's text."""
    text = (PAPERS / "deasy2020_jsg_vae_arxiv.md").read_text() + (PAPERS / "deasy2020_jsg_vae_appendix.md").read_text()
    mnist = load_spec(SPECS / "deasy2020_tables12_mnist.yaml")
    assert mnist.run("kl_qp").paper["reconstruction"].value == 8.46
    assert mnist.run("jsg_a0.1").paper["reconstruction"].value == 7.52
    assert mnist.run("jsg_dual_a0.3").paper["reconstruction"].value == 7.34
    for ds in ("mnist", "fashion_mnist", "dsprites", "chairs"):
        spec = load_spec(SPECS / f"deasy2020_tables12_{ds}.yaml")
        # 4 baselines, 9 + 9 alphas; MNIST and Fashion-MNIST add the NeurIPS appendix's beta = 0.25 row
        assert len(spec.runs) == (23 if ds in ("mnist", "fashion_mnist") else 22)
        for run in spec.runs:
            value = run.paper["reconstruction"].value
            assert f"{value:.2f}" in text, (ds, run.name, value)


def test_claims_hold_on_the_papers_own_values():
    """A spec's claims are the paper's: checked on the paper's numbers they hold (those that have numbers)."""
    for name in ("deasy2020_tables12_mnist", "deasy2020_tables12_fashion_mnist", "deasy2020_tables12_chairs"):
        spec = load_spec(SPECS / f"{name}.yaml")
        doc = {"runs": [{"run": r.name, "seed": 0, "status": "done",
                         "values": {m: p.value for m, p in r.paper.items()}} for r in spec.runs]}
        verdicts = [check_claim(spec, doc, c)[0] for c in spec.claims]
        assert verdicts == [c.on_paper_values for c in spec.claims], (name, verdicts)


# ---- running: resumption, failures, the registry ----------------------------------------------------------------
def test_finished_runs_are_skipped_and_interrupted_runs_resume(tmp_path, shared_data, monkeypatch, one_thread):
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    spec = load_spec(tiny_spec(tmp_path))
    out = tmp_path / "runs"
    first = run_spec(spec, "smoke", out, progress=False, log=lambda *a: None)
    assert [(r["run"], r["status"], r["steps"], r["trained_now"]) for r in first] == [
        ("small", "done", 4, 4), ("big", "done", 4, 4)]
    run_dir = out / "tiny" / "smoke" / "small" / "seed0"
    ckpts = sorted((run_dir / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step_00000002", "step_00000004"]
    stamps = {c: c.stat().st_mtime_ns for c in ckpts}
    result_stamp = (run_dir / "result.json").stat().st_mtime_ns

    again = run_spec(spec, "smoke", out, progress=False, log=lambda *a: None)
    assert all(r.get("skipped") for r in again)
    assert [r["values"] for r in again] == [r["values"] for r in first]
    assert {c: c.stat().st_mtime_ns for c in ckpts} == stamps  # not retrained
    assert (run_dir / "result.json").stat().st_mtime_ns == result_stamp

    # a run saved before the recipe's `eval` section changed (it names evaluation defaults; training never reads
    # it) is measured as it is, not refused as "other settings"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["eval"] = {"metrics": [], "n_samples": 10000, "batch_size": 256, "split": "test"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "result.json").write_text(json.dumps({**first[0], "options": {}}))  # stale options: measured again
    remeasured = run_one(spec, plan(spec, "smoke")[0], "smoke", out, [])
    assert (remeasured["status"], remeasured["trained_now"]) == ("done", 0)
    assert remeasured["values"] == first[0]["values"]

    # interrupted after step 2: no result, latest checkpoint step 2 -> resumes and trains only the last 2 steps
    (run_dir / "result.json").unlink()
    import shutil
    shutil.rmtree(ckpts[-1])
    resumed = run_one(spec, PlannedRun(spec.run("small"), 0, plan(spec, "smoke")[0].overrides), "smoke", out, [])
    assert (resumed["steps"], resumed["trained_now"], resumed["status"]) == (4, 2, "done")
    assert resumed["values"]["reconstruction"] == pytest.approx(first[0]["values"]["reconstruction"])

    with Catalog() as catalog:  # every run and result recorded in the registry table
        rows = catalog.rows()
        assert {Path(r.path).parent.parent.parent.name for r in rows} == {"small", "big"}
        assert {name for (name,) in catalog.query("SELECT name FROM runs")} == {"small_seed0", "big_seed0"}
        assert catalog.count("results") == 4  # 2 runs, the re-measured and the resumed one: a metric each

    longer = run_one(spec, plan(spec, "smoke")[0], "smoke", out, ["train.max_steps=6"])  # a longer schedule extends
    assert (longer["steps"], longer["trained_now"]) == (6, 2)
    refused = run_spec(spec, "smoke", out, extra=["model.width=16"], progress=False, log=lambda *a: None)
    assert [r["status"] for r in refused] == ["failed", "failed"]  # other settings never continue a run
    assert "model.width: 8 -> 16" in refused[0]["error"]


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, shared_data, monkeypatch, one_thread):
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    spec = load_spec(tiny_spec(tmp_path, runs=[
        {"name": "broken", "recipe": TINY, "overrides": ["model.latent_dim=oops"]},
        {"name": "fine", "recipe": TINY}], claims=[]))
    lines: list[str] = []
    records = run_spec(spec, "smoke", tmp_path / "runs", progress=False, log=lines.append)
    assert [r["status"] for r in records] == ["failed", "done"]
    assert "model.latent_dim" in records[0]["error"] and "oops" in records[0]["error"]
    assert lines[0].startswith("[tiny/smoke] broken/seed0: failed -- ConfigError")
    saved = json.loads((tmp_path / "runs" / "tiny" / "smoke" / "results.json").read_text())
    assert [r["status"] for r in saved["runs"]] == ["failed", "done"]


def test_registered_metrics_are_recorded_with_their_own_protocol_and_can_be_recorded_again(
        tmp_path, shared_data, monkeypatch, one_thread):
    """A `metrics` spec's results are rows `zoo evaluate` would write (the metric's protocol, std and spread), so the
    registry groups them with other evaluations of that protocol; --record puts finished runs into a fresh table."""
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    spec = load_spec(tiny_spec(tmp_path, runs=[{"name": "small", "recipe": TINY}], claims=[],
                               metrics=[{"name": "msssim", "label": "diversity"}],
                               protocol={"name": "metrics", "options": {"metrics": ["msssim"], "n_samples": 16,
                                                                        "n_real": 16, "batch_size": 8}}))
    (record,) = run_spec(spec, "smoke", tmp_path / "runs", progress=False, log=lambda *a: None)

    def rows():
        with Catalog() as catalog:
            (row,) = [r for r in catalog.rows() if r.results]  # the measured (latest) checkpoint
            return row.run, {m: (r["value"], r["std"], r["spread"], r["protocol"]) for m, r in row.results.items()}

    name, results = rows()
    assert name == "small_seed0" and set(results) == {"msssim", "msssim.reference"}  # no "msssim_std" result
    value, std, spread, protocol = results["msssim"]
    assert (value, std) == (record["values"]["msssim"], record["values"]["msssim_std"])
    assert spread == "per-pair std" and protocol == record["protocol"]["metrics"]["msssim"]
    assert protocol["msssim_protocol"] == "small3" and protocol["n_samples"] == 16 and "spec" not in protocol

    # a result.json written before spreads were kept: in a fresh process, the spread comes from the metric definition
    result_path = tmp_path / "runs" / "tiny" / "smoke" / "small" / "seed0" / "result.json"
    saved = json.loads(result_path.read_text())
    del saved["protocol"]["spreads"]
    result_path.write_text(json.dumps(saved))
    monkeypatch.setenv("ZOO_CATALOG", str(tmp_path / "fresh.sqlite"))
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "reproduce", str(spec.path), "--scale", "smoke", "--out",
                           str(tmp_path / "runs"), "--record"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "recorded 1 finished runs" in done.stdout and "could not" not in done.stderr, \
        done.stderr[-2000:]
    assert rows() == (name, results)


def test_a_run_with_steps_left_restarts_when_the_training_code_changed_and_a_trained_one_never_does(
        tmp_path, shared_data, monkeypatch, one_thread):
    """Checkpoints from two versions of the training code never mix: resuming under a commit whose training code
    differs moves the run aside (nothing deleted) and trains it again; a run whose training is complete is measured
    as it is (a session may end between training and measuring), listing the commits that trained it."""
    import zoo.reproduction.run as run_module
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.setattr(run_module, "training_code_changes", lambda old, new, recipe=None: ["zoo/training/x.py"])
    spec = load_spec(tiny_spec(tmp_path))
    item, out = plan(spec, "smoke")[0], tmp_path / "runs"
    run_dir = item.directory(out, "tiny", "smoke")
    first = run_one(spec, item, "smoke", out, [], commit="a" * 40)
    (run_dir / "result.json").unlink()  # trained, not measured
    trained = run_one(spec, item, "smoke", out, [], commit="b" * 40)
    assert (trained["trained_now"], trained["commits"], trained["commit"]) == (0, ["a" * 40], "b" * 40)
    assert trained["values"] == first["values"] and not list(out.glob("tiny/smoke/small/seed0.stale-*"))

    import shutil
    (run_dir / "result.json").unlink()
    shutil.rmtree(run_dir / "checkpoints" / "step_00000004")  # interrupted at step 2 of 4
    restarted = run_one(spec, item, "smoke", out, [], commit="c" * 40)
    assert (restarted["trained_now"], restarted["commits"]) == (4, ["c" * 40])
    (stale,) = out.glob("tiny/smoke/small/seed0.stale-*")
    assert stale.name == "seed0.stale-" + "a" * 12 and (stale / "checkpoints" / "step_00000002").is_dir()
    assert restarted["values"] == first["values"]  # same seed, same code: the same model again


def test_a_run_records_every_device_that_trained_it_and_the_page_names_them(tmp_path, shared_data, monkeypatch,
                                                                            one_thread):
    """A result counts the same from any device, and says which trained it: the training process notes its device and
    precision in provenance.json beside the commits (kept when the commit is noted again), a resume on another
    device appends it, and the page's run summary counts the runs per device chain."""
    import shutil

    import zoo.reproduction.run as run_module
    from zoo import Trainer, build_model, load_recipe
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    spec = load_spec(tiny_spec(tmp_path))
    item, out = plan(spec, "smoke")[0], tmp_path / "runs"
    run_dir = item.directory(out, "tiny", "smoke")
    first = run_one(spec, item, "smoke", out, [], commit="a" * 40)
    assert first["devices"] == ["cpu (1 thread), fp32"]
    assert json.loads((run_dir / "provenance.json").read_text()) == {"commits": ["a" * 40],
                                                                     "devices": ["cpu (1 thread), fp32"]}

    (run_dir / "result.json").unlink()
    shutil.rmtree(run_dir / "checkpoints" / "step_00000004")  # interrupted at step 2 of 4, resumed elsewhere
    monkeypatch.setattr(run_module, "describe_device", lambda trainer: "cuda (Some GPU), fp32")
    resumed = run_one(spec, item, "smoke", out, [], commit="a" * 40)
    assert resumed["trained_now"] == 2 and resumed["devices"] == ["cpu (1 thread), fp32", "cuda (Some GPU), fp32"]
    measured_again = run_one(spec, item, "smoke", out, [], commit="a" * 40)  # nothing trained: the devices stay
    assert measured_again["devices"] == resumed["devices"]

    old = {**first, "run": "big", "commits": ["b" * 40]}
    del old["devices"]  # a row from before devices were noted
    smoke = yaml.safe_load(Path(spec.path).read_text())["scales"]["smoke"]
    (tmp_path / "page").mkdir()
    page_spec = load_spec(tiny_spec(tmp_path / "page", scales={"smoke": smoke, "cpu": {"description": "tiny"}}))
    shown = render_spec(page_spec, {"cpu": {"runs": [resumed, old, {**first, "seed": 1}]}})  # the page skips smoke
    assert ("; devices: cpu (1 thread), fp32 then cuda (Some GPU), fp32 (1 run), not recorded (1 run), "
            "cpu (1 thread), fp32 (1 run). Command:") in shown

    recipe = load_recipe(TINY, ["train.mixed_precision=bf16", "train.channels_last=true", "train.progress=false"])
    trainer = Trainer(build_model(recipe), recipe, None, dataset=RandomImages(32, (1, 28, 28)))
    assert describe_device(trainer) == "cpu (1 thread), bf16 autocast, channels_last"


def test_a_run_can_measure_another_specs_checkpoints_without_training_twice(tmp_path, shared_data, monkeypatch,
                                                                            one_thread):
    """Fig. 5 measures Tables 1-2's models: a run with `checkpoints_of` trains (if needed) in the other spec's run
    folder, by that spec's settings, and keeps its own result there untouched; both specs then measure one training."""
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    tables = load_spec(tiny_spec(tmp_path))
    (tmp_path / "figure.yaml").write_text(yaml.safe_dump({
        "name": "figure", "title": "Tiny figure", "paper": "Nobody 2020", "source": "Fig. 9",
        "metrics": [{"name": "reconstruction"}], "protocol": tables.protocol.__dict__,
        "runs": [{"name": "small_again", "checkpoints_of": "tiny/small"}], "scales": {"smoke": {}, "cpu": {}}}))
    figure = load_spec(tmp_path / "figure.yaml")
    out = tmp_path / "runs"
    [measured] = run_spec(figure, "smoke", out, progress=False, log=lambda *a: None)
    trained_in = out / "tiny" / "smoke" / "small" / "seed0"
    assert (measured["steps"], measured["trained_now"], measured["checkpoints_of"]) == (4, 4, "tiny/small")
    assert measured["run_dir"] == str(trained_in) and (trained_in / "checkpoints" / "step_00000004").is_dir()
    shown = render_spec(figure, {"cpu": {"runs": [{**measured, "commits": ["a" * 40], "commit": "b" * 40}]}})
    assert f"commit {'a' * 40} (measured at {'b' * 40}); devices: cpu (1 thread), fp32 (1 run). Command:" in shown
    # trained under a, measured at b, on the device the training process noted in the other spec's run folder
    assert not (out / "figure" / "smoke" / "small_again" / "seed0" / "checkpoints").exists()
    assert (out / "figure" / "smoke" / "small_again" / "seed0" / "result.json").is_file()
    assert not (trained_in / "result.json").exists()  # the other spec's result is its own to write
    assert "model.latent_dim=4" in measured["overrides"]  # the other spec's settings trained it

    small, big = run_spec(tables, "smoke", out, progress=False, log=lambda *a: None)
    assert small["trained_now"] == 0 and big["trained_now"] == 4  # small was trained once, for the figure
    assert small["values"]["reconstruction"] == measured["values"]["reconstruction"]  # one checkpoint, one number
    assert run_spec(figure, "smoke", out, progress=False, log=lambda *a: None)[0].get("skipped")

    with pytest.raises(ConfigError, match="measures tiny/small, which this scale cannot train: tiny: no scale 'cpu'"):
        run_one(figure, plan(figure, "cpu")[0], "cpu", out, [])


@pytest.mark.parametrize("run, message", [
    ({"name": "r", "checkpoints_of": "tiny/small", "recipe": TINY}, "trains nothing: drop its recipe"),
    ({"name": "r", "checkpoints_of": "tiny"}, "'tiny' must be <spec>/<run>"),
    ({"name": "r", "checkpoints_of": "nowhere/small"}, "'nowhere/small' must be <spec>/<run>"),
    ({"name": "r", "checkpoints_of": "tiny/huge"}, "tiny: no run named 'huge'; runs: small, big"),
])
def test_checkpoints_of_must_name_a_run_that_trains(tmp_path, run, message):
    tiny_spec(tmp_path)
    (tmp_path / "figure.yaml").write_text(yaml.safe_dump({
        "name": "figure", "title": "t", "paper": "p", "source": "s", "metrics": [{"name": "reconstruction"}],
        "protocol": {"name": "metrics"}, "runs": [run], "scales": {"smoke": {}}}))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_spec(tmp_path / "figure.yaml")


# ---- rendering ---------------------------------------------------------------------------------------------------
def test_render_puts_the_paper_beside_ours_and_checks_claims(tmp_path):
    spec = load_spec(tiny_spec(tmp_path, seeds=[0, 1], scales={
        "smoke": {}, "cpu": {"description": "two steps", "epochs": 0.5}, "paper": {"description": "all of it"}}))
    doc = {"spec": "tiny", "scale": "cpu", "epochs": 0.5, "runs": [
        {"run": "small", "seed": 0, "status": "done", "values": {"reconstruction": 9.0}, "steps": 8,
         "commit": "abcdef1234567890"},
        {"run": "small", "seed": 1, "status": "done", "values": {"reconstruction": 10.0}, "steps": 8,
         "commit": "abcdef1234567890"},
        {"run": "big", "seed": 0, "status": "done", "values": {"reconstruction": 6.0}, "steps": 8,
         "commit": "abcdef1234567890"},
        {"run": "big", "seed": 1, "status": "failed", "error": "ValueError: boom"}]}
    text = render_spec(spec, {"cpu": doc})
    lines = text.splitlines()
    assert lines[0] == "## Tiny table"
    assert ("Ours: scale `cpu` (two steps); schedule run: 0.5 epochs, 8 steps; commit abcdef1234567890; devices: not "
            "recorded (3 runs). Command: `python tools/reproduce.py " + spec.path + " --scale cpu`.") in lines
    assert "Failed runs: big/seed1: ValueError: boom." in lines
    assert "| run | error ours | error paper | paper source |" in lines
    assert "| small | 9.50 ± 0.71 (n=2) | 8.50 | Table 9, row small |" in lines
    assert "| big | 6.00 (n=1) | 7.25 | Table 9, row big |" in lines
    # one seed of big against two of small: the 95 % prediction interval (t, 1 df) is far wider than the gap
    assert any(line.startswith("| big beats small (Table 9) | holds | **inconclusive**: big: 6.00 vs small: 9.50; "
                               "difference -3.5, 95 % CI [") and "the interval contains 0" in line for line in lines)
    not_run = render_spec(spec, {}).splitlines()
    assert f"**Not yet run.** Paper scale: `python tools/reproduce.py {spec.path} --scale paper`." in not_run
    assert "| small | — | 8.50 | Table 9, row small |" in not_run
    assert "| big beats small (Table 9) | holds | **not checked**: not every run of the claim was run at this scale |" \
        in not_run


def test_one_run_specs_render_a_row_per_quantity_and_results_merge(tmp_path):
    from zoo.reproduction.run import write_results
    spec = load_spec(SPECS / "rosca2018_appE_table1.yaml")
    path = tmp_path / "appE.cpu.json"
    write_results(path, spec, "cpu", [{"run": "vae50", "seed": 1, "status": "done", "steps": 10, "commit": "c0ffee",
                                       "values": {"marginal_kl": 14.0}, "source": "elsewhere"}])
    write_results(path, spec, "cpu", [{"run": "vae50", "seed": 0, "status": "done", "steps": 10, "commit": "c0ffee",
                                       "values": {"marginal_kl": 12.0, "dr_l3": 1.5}, "traceback": "dropped"}])
    doc = json.loads(path.read_text())
    assert [(r["run"], r["seed"]) for r in doc["runs"]] == [("vae50", 0), ("vae50", 1)]  # earlier rows kept, ordered
    assert "traceback" not in doc["runs"][0] and doc["runs"][1]["source"] == "elsewhere"
    lines = render_spec(spec, {"cpu": doc}).splitlines()
    assert ("| KL[q(z)||p(z)], Algorithm 2 (MC) | nats | 13.00 ± 1.41 (n=2) | 12.30 | Table 1 caption: 'When the KL "
            "is estimated numerically, the result is 12.3' |") in lines
    assert "| Algorithm 3, 3-layer classifier | nats | 1.50 (n=1) | 2.30 | Table 1, row 3 layers, no GP, no noise |" \
        in lines
    assert "Rows not run by this command: vae50/seed1: elsewhere." in lines
    assert any(line.startswith("| the density-ratio trick (3 layers) underestimates the marginal KL") and
               "**inconclusive**: vae50: 1.50 vs vae50: 13.00; difference -11.5, 95 % CI [-33.5, +10.5] (t against one "
               "seed (prediction interval), df 1, n = 1 vs 2)" in line for line in lines)


def test_the_figure_shows_every_seed_beside_the_paper_and_only_comparable_cells(tmp_path):
    from zoo.reproduction.figure import ComparisonPanel, Row, comparison_panels
    spec = load_spec(tiny_spec(tmp_path, metrics=[{"name": "reconstruction", "label": "error", "units": "SSE"},
                                                  {"name": "kl", "label": "KL", "units": "nats"}]))
    runs = [{"run": "small", "seed": 1, "status": "done", "values": {"reconstruction": 10.0, "kl": 3.0}},
            {"run": "small", "seed": 0, "status": "done", "values": {"reconstruction": 9.0}},
            {"run": "small", "seed": 2, "status": "done", "values": {"reconstruction": float("nan")}},  # diverged
            {"run": "big", "seed": 0, "status": "failed", "values": {"reconstruction": 1.0}}]  # failed: not drawn
    # one panel per metric that has a paper value and a finished seed (no paper prints a KL here; big never finished)
    assert comparison_panels(spec, {"runs": runs}) == [
        ComparisonPanel("error", "SSE", (Row("small", 8.5, None, (9.0, 10.0)),))]
    assert comparison_panels(spec, None) == [] and comparison_panels(spec, {"runs": runs[3:]}) == []

    one_run = load_spec(SPECS / "rosca2018_appE_table1.yaml")  # one model: a row per quantity, a panel per unit
    panels = comparison_panels(one_run, {"runs": [{"run": "vae50", "seed": 0, "status": "done",
                                                   "values": {"marginal_kl": 12.0, "dr_l3": 1.5, "elbo": -90.0}}]})
    assert panels == [ComparisonPanel("", "nats", (Row("KL[q(z)||p(z)], Algorithm 2 (MC)", 12.3, None, (12.0,)),
                                                   Row("Algorithm 3, 3-layer classifier", 2.3, None, (1.5,))))]


def test_the_page_links_each_scales_figure_relative_to_the_page(tmp_path):
    from PIL import Image
    from zoo.reproduction.render import render_document
    spec = load_spec(tiny_spec(tmp_path, scales={"smoke": {}, "cpu": {"description": "two steps"}}))
    results = tmp_path / "results"
    results.mkdir()
    row = {"run": "small", "seed": 0, "status": "done", "values": {"reconstruction": 9.0}, "steps": 4, "commit": "c"}
    (results / "tiny.cpu.json").write_text(json.dumps({"spec": "tiny", "scale": "cpu", "runs": [row]}))
    page_dir, figures = tmp_path / "docs", tmp_path / "docs" / "figures" / "reproduction"
    text = render_document([spec], results, figure_dir=figures, page_dir=page_dir)
    assert ("![Tiny table, scale cpu: the paper's values (diamonds) beside each of our seeds (dots)]"
            "(figures/reproduction/tiny.cpu.png)") in text.splitlines()
    assert Image.open(figures / "tiny.cpu.png").size[0] == 760
    # nothing comparable (no paper value for any finished cell): no figure, no link
    (results / "tiny.cpu.json").write_text(json.dumps({"spec": "tiny", "scale": "cpu", "runs": [
        {**row, "values": {"other": 1.0}}]}))
    (figures / "tiny.cpu.png").unlink()
    assert "![" not in render_document([spec], results, figure_dir=figures, page_dir=page_dir)
    assert not (figures / "tiny.cpu.png").exists()


def test_smoke_results_are_never_rendered(tmp_path):
    from zoo.reproduction.render import load_results
    spec = load_spec(tiny_spec(tmp_path))
    (tmp_path / "tiny.smoke.json").write_text(json.dumps({"runs": []}))
    assert load_results(tmp_path, spec) == {}


# ---- smoke runs of the specs, end to end --------------------------------------------------------------------------
FAST = ("deasy2020_tables12_mnist", "rosca2018_appE_table1")


@pytest.mark.parametrize("name", [p.stem if p.stem in FAST else pytest.param(p.stem, marks=pytest.mark.slow)
                                  for p in find_specs(SPECS)])
def test_spec_smoke_run_end_to_end(name, tmp_path, shared_data, monkeypatch, one_thread):
    """`zoo reproduce SPEC --scale smoke` trains, measures and records every smoke run; nothing is rendered."""
    from zoo.commands.reproduce import main

    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.setenv("ZOO_SHARED", str(SHARED))
    page, results = tmp_path / "page.md", tmp_path / "results"
    code = main([str(SPECS / f"{name}.yaml"), "--scale", "smoke", "--out", str(tmp_path / "runs"),
                      "--results", str(results), "--page", str(page), "--no-progress"])
    assert code == 0
    spec = load_spec(SPECS / f"{name}.yaml")
    doc = json.loads((tmp_path / "runs" / name / "smoke" / "results.json").read_text())
    assert [(r["run"], r["seed"]) for r in doc["runs"]] == [(p.run.name, p.seed) for p in plan(spec, "smoke")]
    for record in doc["runs"]:
        assert record["status"] == "done"
        for metric in spec.metrics:  # every metric the spec renders is produced (bar paper-only rows)
            if metric.name in record["values"]:
                assert record["values"][metric.name] == record["values"][metric.name]  # not NaN
        produced = {m.name for m in spec.metrics} & set(record["values"])
        assert produced, (name, record["values"])
    assert not page.exists() and not results.exists()  # smoke numbers never reach the page
    if spec.protocol.name == "latent_kl":  # each density-ratio classifier's state, kept so a rerun resumes it
        states = sorted(p.name for p in (tmp_path / "runs").rglob("latent/step_*/ratio_classifiers/*.pt"))
        assert states == ["dr_l3-seed0.pt", "dr_l3-seed1.pt"]
    with Catalog() as catalog:
        assert catalog.count("results") >= len(doc["runs"])


def test_a_study_spec_runs_its_study_in_process_from_outside_the_checkout(tmp_path, monkeypatch, one_thread):
    """A study spec calls the study's command in this process (no `python tools/...` subprocess, no checkout needed):
    a copy of the App. D spec elsewhere, run from another folder, records exactly what `zoo appendix_d` gives."""
    import subprocess

    from zoo.commands.reproduce import main
    from zoo.studies import appendix_d

    popen = subprocess.Popen

    def git_only(command, *args, **kwargs):  # the checkout's commit is still read with git
        if command[0] != "git":
            raise AssertionError(f"a study must not run in a subprocess: {command}")
        return popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", git_only)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "appd.yaml").write_text((SPECS / "rosca2018_appD.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["elsewhere/appd.yaml", "--scale", "smoke", "--out", "runs", "--results", "res", "--page", "page.md",
                 "--no-progress"]) == 0
    record = json.loads((tmp_path / "runs" / "rosca2018_appD" / "smoke" / "results.json").read_text())["runs"][0]
    assert record["protocol"]["command"].startswith("zoo appendix_d --dims 1 --iterations 20")
    spec = load_spec(elsewhere / "appd.yaml")
    assert Path(spec.path).is_absolute()  # outside the checkout: resolvable from any folder
    assert appendix_d.main([*spec.runs[0].args, *spec.scales["smoke"].args, "--out", str(tmp_path / "direct")]) == 0
    direct = json.loads((tmp_path / "direct" / "results.json").read_text())["dims"]["1"]["summary"]
    assert record["values"] == {"true_kl_init": direct["true_kl_init"],
                                "estimated_kl_init": direct["estimation"]["mean"][-1],
                                "true_kl_final": direct["true_kl"]["mean"][-1]}
    assert "KL(Q0||P)" in next((tmp_path / "runs").rglob("study.log")).read_text()  # its table went to the log


# ---- verdicts: holds / inconclusive / does not hold ---------------------------------------------------------------
def test_welch_interval_is_scipys_and_decides_the_three_verdicts():
    from scipy import stats

    from zoo.reproduction.verdicts import Sample, difference_interval, verdict
    a, b = Sample((7.1, 7.6, 7.4)), Sample((8.2, 8.9, 8.5, 8.4))
    interval = difference_interval(a, b)
    reference = stats.ttest_ind(a.values, b.values, equal_var=False).confidence_interval(0.95)
    assert interval.low == pytest.approx(reference.low, rel=1e-9)
    assert interval.high == pytest.approx(reference.high, rel=1e-9)
    assert verdict(a, "<", b).kind == "holds" and verdict(a, ">", b).kind == "does not hold"
    close = Sample((8.0, 8.9, 8.3))  # overlapping seeds: the interval contains 0
    assert verdict(a, "<", close).kind == "holds"
    assert verdict(Sample((8.1, 8.6, 8.4)), "<", Sample((8.2, 8.9, 8.5))).kind == "inconclusive"
    assert verdict(Sample((8.1, 8.6, 8.4)), "<=", Sample((8.2, 8.9, 8.5))).kind == "holds"  # a tie is allowed


def test_one_seed_verdicts_use_estimator_errors_or_say_direction_only():
    from zoo.reproduction.verdicts import Sample, verdict
    # two single seeds with standard errors 0.1 and 0.2: a gap of 1.0 is 4.5 combined errors, 0.3 is 1.3
    assert verdict(Sample((5.0,), stderr=0.1), "<", Sample((6.0,), stderr=0.2)).kind == "holds"
    near = verdict(Sample((5.7,), stderr=0.1), "<", Sample((6.0,), stderr=0.2))
    assert near.kind == "inconclusive" and near.one_seed and str(near) == "inconclusive (one seed)"
    bare = verdict(Sample((5.0,)), "<", Sample((6.0,)))
    assert bare.kind == "holds" and bare.one_seed and "the direction only" in bare.detail
    # against a constant, the seeds' spread decides: mean 5.0, s 0.1, n 3 -> half width 4.30 * 0.1 / sqrt(3) = 0.25
    assert verdict(Sample((4.9, 5.0, 5.1)), "<", Sample((5.3,), constant=True)).kind == "holds"
    assert verdict(Sample((4.9, 5.0, 5.1)), "<", Sample((5.2,), constant=True)).kind == "inconclusive"


def test_the_cpu_mnist_claims_within_the_seeds_spread_are_inconclusive():
    """The two MNIST claims the review flagged (margins 2.60 and 0.82 against summed stds 3.31 and 3.86, n = 2) are
    inconclusive on the committed cpu-scale results, not 'holds'."""
    from zoo.reproduction.render import load_results
    spec = load_spec(SPECS / "deasy2020_tables12_mnist.yaml")
    doc = load_results(REPO / "docs" / "data" / "reproduction", spec)["cpu"]
    by_statement = {c.statement: check_claim(spec, doc, c) for c in spec.claims}
    for statement in ("JS^G at Table 1's best alpha (0.1) beats every baseline",
                      "JS^G_* at Table 1's best alpha (0.3) beats every baseline"):
        kind, detail = by_statement[statement]  # beta = 0.25 (added since) was not run at the cpu scale
        assert kind == "not checked" and "not run at this scale: beta025; over the runs that were, inconclusive" \
            in detail and "Welch's t" in detail and "n = 2 vs 2" in detail, (statement, detail)


def test_a_claim_names_each_run_it_still_needs_once():
    """A run on both sides of a claim (Fashion's "the best JS^G alpha is 0.1 or 0.2": jsg_a0.1 is in the best-of
    and in the compared pair) is listed once among the runs not yet run."""
    spec = load_spec(SPECS / "deasy2020_tables12_fashion_mnist.yaml")
    claim, = [c for c in spec.claims if c.statement.startswith("the best JS^G alpha is 0.1 or 0.2")]
    doc = {"runs": [{"run": "jsg_a0.2", "seed": 0, "status": "done",
                     "values": {"reconstruction": 10.06, "reconstruction_std": 0.07}}]}
    kind, detail = check_claim(spec, doc, claim)
    needed = detail.split("not run at this scale: ")[1].split(";")[0].split(", ")
    assert kind == "not checked" and needed.count("jsg_a0.1") == 1 and "jsg_a0.2" not in needed
    assert set(needed) == {f"jsg_a0.{k}" for k in (1, 3, 4, 5, 6, 7, 8, 9)}


def test_zoo_evaluate_reconstruction_is_the_reproduction_number_under_the_same_protocol(tmp_path, shared_data,
                                                                                         monkeypatch, one_thread):
    """`zoo evaluate RUN --metric reconstruction` gives a spec's Table 1-2 number for any checkpoint: the same value
    and the same protocol id as the reproduction's `metrics: [reconstruction]` measurement of that run."""
    from zoo.catalog import protocol_id
    from zoo.commands import evaluate
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    spec = load_spec(tiny_spec(tmp_path, runs=[{"name": "small", "recipe": TINY}], claims=[]))
    record, = run_spec(spec, "smoke", tmp_path / "runs", progress=False, log=lambda *a: None)
    out = tmp_path / "evaluate.json"
    assert evaluate.main([record["run_dir"], "--metric", "reconstruction", "--n-real", "32", "--json", str(out),
                          "--no-registry", "--no-progress"]) == 0
    result, = [r for r in json.loads(out.read_text()) if r["metric"] == "reconstruction"]
    ours = record["protocol"]["metrics"]["reconstruction"]
    assert result["value"] == pytest.approx(record["values"]["reconstruction"], rel=1e-6)
    assert result["std"] == pytest.approx(record["values"]["reconstruction_std"], rel=1e-6)
    assert protocol_id(result["protocol"]) == protocol_id(ours)
    assert ours["n_real"] == 32 and ours["point"] == "posterior mean" and record["values"]["reconstruction"] > 0


def test_a_spec_with_paper_and_cpu_results_shows_both_paper_first(tmp_path):
    spec = load_spec(tiny_spec(tmp_path, scales={"smoke": {}, "cpu": {"description": "short"},
                                                 "paper": {"description": "all of it"}}))
    row = {"run": "big", "seed": 0, "status": "done", "values": {"reconstruction": 6.0}, "steps": 8}
    text = render_spec(spec, {"cpu": {"runs": [row]}, "paper": {"runs": [{**row, "values": {"reconstruction": 5.0}}]}})
    lines = text.splitlines()
    assert lines.index("### Scale `paper`") < lines.index("### Scale `cpu`")
    assert "| big | 5.00 (n=1) | 7.25 | Table 9, row big |" in lines and "| big | 6.00 (n=1) | 7.25 | Table 9, row big |" \
        in lines
    assert not any(line.startswith("Paper scale, not yet run") for line in lines)


def test_a_single_seed_cell_shows_its_recorded_estimator_error(tmp_path):
    """With no seed spread, the table cell carries the protocol's standard error (`<metric>_stderr`), so a margin such
    as App. E's bound margin can be read against it; two seeds show their std instead."""
    from zoo.reproduction.run import write_results
    spec = load_spec(SPECS / "rosca2018_appE_table1.yaml")
    path = tmp_path / "appE.cpu.json"
    write_results(path, spec, "cpu", [{"run": "vae50", "seed": 0, "status": "done", "steps": 10, "commit": "c0ffee",
                                       "values": {"marginal_kl": 26.5, "marginal_kl_stderr": 0.08257,
                                                  "bound_margin": 0.0942}}])
    lines = render_spec(spec, {"cpu": json.loads(path.read_text())}).splitlines()
    assert any(line.startswith("| KL[q(z)||p(z)], Algorithm 2 (MC) | nats | 26.50 (n=1, s.e. 0.083) | 12.30 |")
               for line in lines)
    assert any(line.startswith("| MC KL minus the eq. 5 bound (compare marginal_kl_stderr) | nats | 0.09 (n=1) |")
               for line in lines)  # no error recorded for it: none shown
    write_results(path, spec, "cpu", [{"run": "vae50", "seed": 1, "status": "done", "steps": 10, "commit": "c0ffee",
                                       "values": {"marginal_kl": 28.5, "marginal_kl_stderr": 0.09}}])
    lines = render_spec(spec, {"cpu": json.loads(path.read_text())}).splitlines()
    assert any("| 27.50 ± 1.41 (n=2) |" in line for line in lines)
