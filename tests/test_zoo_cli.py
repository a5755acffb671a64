"""zoo/cli.py: the installed `zoo` command, its subcommands' --help, the console-script target and the tools/ shims."""
from __future__ import annotations

import ast
import importlib
import sys
import tomllib

import pytest

import procs
from conftest import REPO, subprocess_env
from zoo.cli import COMMANDS, main


def test_zoo_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: zoo ")
    for name in COMMANDS:
        assert f"\n  {name} " in out, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: zoo {name} ")


def test_registry_subcommands_have_help(capsys):
    for sub in ("list", "compare", "plot", "export", "models"):
        with pytest.raises(SystemExit):
            main(["registry", sub, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: zoo registry {sub} "), sub


def test_unknown_command_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["trian"])
    assert exit_.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err


def test_console_script_target_resolves():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["zoo"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert (module, function) == ("zoo.cli", "entry")


def test_tools_are_shims_for_their_command():
    """Each tools/*.py only calls `zoo.cli.entry([COMMAND, *argv])` for a known command, without sys.path edits."""
    for path in sorted((REPO / "tools").glob("*.py")):
        text = path.read_text()
        assert "sys.path" not in text, path.name
        calls = [n for n in ast.walk(ast.parse(text))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "entry"]
        assert len(calls) == 1, path.name
        command = calls[0].args[0].elts[0].value
        assert command in COMMANDS, (path.name, command)


def test_a_shim_runs_as_a_script():
    res = procs.run([sys.executable, str(REPO / "tools" / "evaluate.py"), "--help"], capture_output=True,
                    text=True, env=subprocess_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: zoo evaluate ")


def test_a_closed_pipe_ends_a_command_quietly():
    """`zoo ... | head`: the reader leaves early; the command ends with 141 (128 + SIGPIPE) and no traceback."""
    import subprocess
    proc = procs.popen([sys.executable, "-m", "zoo.cli", "registry", "models"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=subprocess_env(), cwd=REPO)
    proc.stdout.close()  # as `head` does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_headline_recipe_offline_names_the_offline_recipe_in_one_message(tmp_path, monkeypatch, capsys):
    """`accelerate launch tools/train.py recipes/ijae_cifar10.yaml` without CIFAR-10: one error naming the offline
    recipe (ijae_cifar10_folder.yaml) and, under Accelerate, its -q flag; status 2, nothing written."""
    from zoo.commands import train
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch` sets for its child
    monkeypatch.setattr("torchvision.datasets.CIFAR10", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    out = tmp_path / "run"
    assert train.main([str(REPO / "recipes" / "ijae_cifar10.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'cifar10' not found") and "Traceback" not in err
    assert f"Offline: {REPO / 'recipes' / 'ijae_cifar10_folder.yaml'} trains on" in err
    assert "accelerate launch -q" in err
    assert not out.exists() or not any(out.iterdir())
