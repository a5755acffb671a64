"""Models defined outside the package: `imports` / --import (module names and .py files) and the `zoo.models`
entry-point group of installed distributions (a real dist-info on sys.path, read by importlib.metadata)."""
from __future__ import annotations

import sys
import warnings

import pytest

from zoo import create_model, load_recipe
from zoo import factory
from zoo.config import ConfigError, to_dict
from zoo.registry import MODELS

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
    model = create_model(recipe)
    assert type(model).name == "outside_file_vae" and type(model).__module__ == "outside_file_model"
    assert to_dict(recipe)["imports"] == [str(file)]  # the saved config.yaml names it: checkpoints load anywhere

    package = tmp_path / "pkg_dir"
    (package / "outside_pkg").mkdir(parents=True)
    (package / "outside_pkg" / "__init__.py").write_text("")
    (package / "outside_pkg" / "model.py").write_text(MODEL.format(name="outside_module_vae"))
    monkeypatch.chdir(package)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(package))])
    assert factory.import_modules(["outside_pkg.model"]) == ["outside_pkg.model"]  # found in the working directory
    assert "outside_module_vae" in MODELS.names()

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
