"""benchmarks/: the developer harnesses (bench.py, bench_eval.py, device_check.py) live beside the package, run as
scripts from the checkout, import the zoo, and are never imported by it. The device check's dry run has its own
file (tests/test_device_check.py)."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

import pytest
import yaml

import procs
from conftest import BENCHMARKS, REPO, SHARED, benchmark, subprocess_env
from zoo.cli import COMMANDS, MOVED, main

HARNESSES = {path.stem for path in BENCHMARKS.glob("*.py")} | {"benchmarks"}
ALEXNET = SHARED / "weights" / "lpips" / "alexnet_features.pth"


def imported_modules(tree: ast.AST):
    """Every dotted module name an import statement or an importlib string in `tree` names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield from (f"{node.module or ''}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"\w+(\.\w+)+",
                                                                                           node.value):
            yield node.value  # "zoo.commands.bench" as importlib.import_module's argument (zoo/cli.py COMMANDS)


def test_the_zoo_package_never_imports_the_benchmarks():
    assert {"bench", "bench_eval", "device_check", "device_sections"} <= HARNESSES
    for path in sorted((REPO / "zoo").rglob("*.py")):
        for module in imported_modules(ast.parse(path.read_text())):
            assert not HARNESSES & set(module.split(".")), f"{path.relative_to(REPO)} imports {module}"
    for name in HARNESSES:
        assert not (REPO / "zoo" / "commands" / f"{name}.py").exists(), name


def run_script(name: str, *argv: str) -> subprocess.CompletedProcess:
    return procs.run([sys.executable, str(BENCHMARKS / name), *argv], env=subprocess_env(OMP_NUM_THREADS="1"),
                     cwd=REPO, timeout=300)


def test_bench_runs_as_a_script_and_writes_its_rows(tmp_path):
    out = tmp_path / "rows.json"
    res = run_script("bench.py", "--models", "dcgan", "--configs", "off", "--width", "8", "--batch-size", "8",
                     "--steps", "1", "--rounds", "1", "--warmup", "0", "--device", "cpu", "--json", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["model"], row["config"], len(row["ratios"])) == ("dcgan", "off", 1)
    assert row["ratio"] == row["ratios"][0] == pytest.approx(row["trainer_ms"] / row["plain_ms"])
    assert row["trainer_img_s"] * row["trainer_ms"] / 1e3 == pytest.approx(8 * 2)  # batch 8, 2 batches a step
    assert res.stdout.splitlines()[-1].startswith("dcgan    off ")  # the table's last row


@pytest.mark.skipif(not ALEXNET.exists(), reason=f"shared file {ALEXNET} is absent (set ZOO_SHARED)")
def test_bench_eval_runs_as_a_script_and_prints_the_lpips_ratio():
    res = run_script("bench_eval.py", "--metrics", "lpips", "--n", "4", "--batch-size", "2", "--rounds", "1",
                     "--device", "cpu", "--lpips-weights", str(ALEXNET))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    line = res.stdout.splitlines()[-1]
    zoo, reference, ratio = (float(v) for v in re.fullmatch(
        r"lpips \(32 px pairs\) +zoo +([\d.]+) +reference +([\d.]+) s / 1000 images +ratio +([\d.]+)", line).groups())
    assert ratio == pytest.approx(zoo / reference, rel=0.01, abs=2e-3)  # one round: the ratio of the two times


def test_bench_out_of_range_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as caught:
        benchmark("bench").main(["--steps", "0"])
    out, err = capsys.readouterr()
    assert caught.value.code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("python benchmarks/bench.py: error: argument --steps: got 0, expected an integer >= 1")
    assert "Traceback" not in err


@pytest.mark.parametrize("name", sorted(MOVED))
def test_former_zoo_commands_point_to_their_script_in_one_line(name, capsys):
    assert main([name, "--n", "50"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (f"zoo {name}: moved out of the zoo package; from a checkout of the zoo run: "
                                 f"python benchmarks/{name}.py --n 50\n")
    assert (REPO / MOVED[name]).is_file() and name not in COMMANDS


def test_a_former_command_through_the_installed_entry_point_exits_2_without_a_traceback():
    res = procs.run([sys.executable, "-m", "zoo.cli", "device_check", "--dry-run"], env=subprocess_env(), cwd=REPO,
                    timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == ["zoo device_check: moved out of the zoo package; from a checkout of the zoo "
                                       "run: python benchmarks/device_check.py --dry-run"]


def test_precision_ab_compares_each_difference_with_the_seeds_spread():
    ab = benchmark("precision_ab")
    records = [{"arm": "fp32", "values": {"x": 1.0, "y": 5.0, "z": 0.0}},
               {"arm": "fp32", "values": {"x": 3.0, "y": 5.2}},
               {"arm": "bf16", "values": {"x": 2.0, "y": 9.0, "z": 1.0}},
               {"arm": "bf16", "values": {"x": 4.0, "y": 9.2}}]
    rows = {r["metric"]: r for r in ab.compare(records, "fp32", "bf16")}
    assert set(rows) == {"x", "y"}  # z has one seed per arm: no spread to compare with
    x, y = rows["x"], rows["y"]
    assert x["difference"] == pytest.approx(1.0) and x["fp32_std"] == pytest.approx(2 ** 0.5)
    assert x["within_seed_spread"]  # 1.0 <= sqrt(2)
    # Welch with n = 2 vs 2 and equal variances: se = sqrt(2 / 2 + 2 / 2), df = 2, t(0.975, 2) = 4.3027
    assert x["welch_95"] == pytest.approx([1 - 4.3027 * 2 ** 0.5, 1 + 4.3027 * 2 ** 0.5], abs=1e-3)
    assert y["difference"] == pytest.approx(4.0) and not y["within_seed_spread"]  # 4.0 against a std of 0.14


def test_precision_ab_trains_each_arm_with_its_switches_and_reuses_measured_runs(tmp_path, shared_data):
    ab = benchmark("precision_ab")
    out, report = tmp_path / "ab", tmp_path / "ab.json"
    argv = [str(REPO / "recipes" / "tiny_vae.yaml"), "--steps", "2", "--seeds", "0,1", "--out", str(out),
            "--override", f"data.root={shared_data}", "--override", "data.options.limit=64",
            "--option", "limit=64", "--option", "num_z=16", "--json", str(report)]
    assert ab.main(argv) == 0
    first = json.loads(report.read_text())
    assert [(r["arm"], r["seed"], r["steps"]) for r in first["runs"]] == [
        ("fp32", 0, 2), ("fp32", 1, 2), ("bf16", 0, 2), ("bf16", 1, 2)]
    for arm, precision, layout in (("fp32", "no", False), ("bf16", "bf16", True)):
        train = yaml.safe_load((out / arm / "seed0" / "config.yaml").read_text())["train"]
        assert (train["mixed_precision"], train["channels_last"], train["seed"]) == (precision, layout, 0)
    assert {r["metric"] for r in first["comparison"]} >= {"marginal_kl", "avg_posterior_kl", "reconstruction_term"}
    stamp = (out / "bf16" / "seed1" / "ab.json").stat().st_mtime_ns
    assert ab.main(argv) == 0  # everything measured: nothing is trained or measured again
    assert (out / "bf16" / "seed1" / "ab.json").stat().st_mtime_ns == stamp
    assert json.loads(report.read_text())["comparison"] == first["comparison"]


def test_precision_ab_unknown_arm_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as caught:
        benchmark("precision_ab").main([str(REPO / "recipes" / "tiny_vae.yaml"), "--arms", "fp32,fp8",
                                        "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "unknown ['fp8']; choose from fp32, bf16" in err and "Traceback" not in err
