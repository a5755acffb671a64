"""Models defined outside the package: `imports` / --import (module names and .py files) and the `zoo.models`
entry-point group of installed distributions (a real dist-info on sys.path, read by importlib.metadata)."""
from __future__ import annotations

import sys
import warnings

import yaml

import pytest

from zoo import build_model, create_model, load_checkpoint, load_recipe
from zoo import factory
from zoo.config import ConfigError, to_dict
from zoo.registry import MODELS
from zoo.training.checkpoint import TRAINER_STATE_KEYS, CheckpointError, write_checkpoint

MODEL = '''
from dataclasses import dataclass
from zoo.models.vae import VAE, VAEConfig
from zoo.registry import register_model


@dataclass
class Config(VAEConfig):
    marker: int = 7


@register_model("{name}")
class Outside(VAE):
    config_class = Config
'''


@pytest.fixture(autouse=True)
def restore_models(monkeypatch):
    """The models these tests register leave with them: other tests see the package's models only."""
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))


def test_import_a_py_file_and_a_module_and_record_them(tmp_path, monkeypatch):
    file = tmp_path / "outside_file_model.py"
    file.write_text(MODEL.format(name="outside_file_vae"))
    recipe = load_recipe({"imports": [str(file)], "model": {"name": "outside_file_vae", "marker": 3, "width": 8}})
    assert recipe.imports == [str(file)] and recipe.model.config.marker == 3
    model = build_model(recipe)
    assert type(model).name == "outside_file_vae" and type(model).__module__ == "outside_file_model"
    assert to_dict(recipe)["imports"] == [str(file)]  # the saved config.yaml names it: checkpoints load anywhere

    package = tmp_path / "pkg_dir"
    (package / "outside_pkg").mkdir(parents=True)
    (package / "outside_pkg" / "__init__.py").write_text("")
    (package / "outside_pkg" / "model.py").write_text(MODEL.format(name="outside_module_vae"))
    monkeypatch.chdir(package)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(package))])
    recorded = factory.import_modules(["outside_pkg.model"])  # found in the working directory: recorded with it
    assert recorded == [f"outside_pkg.model@{package.resolve()}"] and "outside_module_vae" in MODELS.names()
    for name in ("outside_pkg", "outside_pkg.model"):
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(MODELS._entries, "outside_module_vae")  # as in a new process
    monkeypatch.chdir(tmp_path)  # a checkpoint loaded from another working directory finds the module by its folder
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(package), str(tmp_path))])
    assert factory.import_modules(recorded) == recorded and "outside_pkg.model" in sys.modules

    with pytest.raises(ConfigError, match=r"cannot import 'no_such_module_x'.*PYTHONPATH"):
        factory.import_modules(["no_such_module_x"])
    with pytest.raises(ConfigError, match=r"'missing.py' is not a file"):
        load_recipe({"imports": ["missing.py"], "model": {"name": "vae"}})
    with pytest.raises(ConfigError, match="unknown model 'outside_never'"):
        load_recipe({"model": {"name": "outside_never"}})


def test_entry_point_group_registers_installed_models(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "zoo_plugin_demo").mkdir(parents=True)
    (site / "zoo_plugin_demo" / "__init__.py").write_text(MODEL.format(name="plugin_entry_vae"))
    info = site / "zoo_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zoo.models]\nplugin_entry_vae = zoo_plugin_demo\n"
                                           "broken = zoo_plugin_missing_module\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(factory, "_plugins_loaded", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = factory.load_plugins()
    assert loaded == ["plugin_entry_vae"] and "plugin_entry_vae" in factory.list_models()
    (warning,) = [w for w in caught if "zoo_plugin_missing_module" in str(w.message)]
    assert "plugin 'broken'" in str(warning.message) and "ModuleNotFoundError" in str(warning.message)
    assert create_model("plugin_entry_vae", width=8).config.marker == 7
    assert factory.load_plugins() == []  # once per process


def test_a_run_folder_imports_nothing_unless_trusted(tmp_path, monkeypatch, capsys):
    """A run folder's config.yaml naming a plugin file: load_checkpoint, `zoo sample` and `zoo evaluate` refuse in one
    line naming the file and the switch, having run none of it; trusted, the model loads from any working
    directory; once imported, it needs no trust."""
    marker = tmp_path / "plugin_ran"
    plugin = tmp_path / "shared_plugin" / "outside_trust_model.py"
    plugin.parent.mkdir()
    plugin.write_text(MODEL.format(name="outside_trust_vae") + f"\nopen({str(marker)!r}, 'w').close()\n")
    recipe = load_recipe({"model": {"name": "vae", "width": 8}})
    tree = to_dict(recipe)
    weights = build_model(recipe).state_dict()  # the plugin's model is a VAE: the same players
    tree.update(imports=[str(plugin)], model={**tree["model"], "name": "outside_trust_vae"})
    run = tmp_path / "downloaded_run"
    write_checkpoint(run, 3, weights=weights, config_yaml=yaml.safe_dump(tree),
                     trainer_state={"step": 3, **{k: {} for k in TRAINER_STATE_KEYS[1:]}})
    monkeypatch.chdir(tmp_path / "shared_plugin")  # even from the plugin's own folder

    refusal = (f"run folder '{run}' asks to import {plugin} (code from outside the zoo); pass --trust-imports / "
               f"trust_imports=True if you trust it")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(run)
    assert str(caught.value) == refusal
    from zoo.commands import evaluate, sample
    assert sample.main([str(run), "-n", "2", "--out", str(tmp_path / "s.npz")]) == 2
    assert evaluate.main([str(run), "--metric", "fid", "--no-registry"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {refusal}", f"error: {run}: {refusal}"]  # one line each, no traceback
    assert not marker.exists() and "outside_trust_model" not in sys.modules and not (tmp_path / "s.npz").exists()

    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "outside_trust_model", raising=False)  # the import below leaves with the test
    assert sample.main([str(run), "-n", "2", "--out", str(tmp_path / "s.npz"), "--trust-imports"]) == 0
    assert marker.exists() and (tmp_path / "s.npz").is_file()
    marker.unlink()
    loaded = load_checkpoint(run)  # imported now, by the user's choice: no trust needed, nothing runs again
    assert type(loaded.model).name == "outside_trust_vae" and loaded.step == 3 and not marker.exists()


@pytest.mark.parametrize("stem, reason", [("json", "standard-library module 'json'"),
                                          ("torch", "imported module 'torch'")])
def test_a_plugin_file_named_like_another_module_is_refused(tmp_path, stem, reason):
    plugin = tmp_path / f"{stem}.py"
    plugin.write_text("raise SystemExit('must not run')\n")
    with pytest.raises(ConfigError, match=f"{stem}.py' has the name of the {reason}, which it would replace"):
        factory.import_modules([str(plugin)])
    assert getattr(sys.modules[stem], "__file__", None) != str(plugin)
