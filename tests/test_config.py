"""Recipes: strict schema, errors naming the dotted key / value / allowed, typed overrides, the registry."""
from __future__ import annotations

import pytest
import yaml

from conftest import RECIPES
from zoo import build_model, create_model, list_models, load_recipe
from zoo.config import ConfigError, apply_overrides, to_dict
from zoo.registry import Registry, UnknownNameError

BASE = {"model": {"name": "vae", "backbone": "rosca_mnist", "channels": 1, "width": 8, "latent_dim": 4}}


def test_unknown_key_names_dotted_key_and_suggestion():
    with pytest.raises(ConfigError, match=r"model\.latnt_dim: unknown key \(did you mean 'latent_dim'\?\)"):
        load_recipe({**BASE, "model": {**BASE["model"], "latnt_dim": 3}})
    with pytest.raises(ConfigError, match=r"train\.max_step: unknown key .*allowed keys: max_steps"):
        load_recipe(BASE, ["train.max_step=3"])


def test_wrong_type_names_key_value_and_expected_type():
    with pytest.raises(ConfigError, match=r"train\.max_steps: got 'abc' \(str\), expected int"):
        load_recipe(BASE, ["train.max_steps=abc"])
    with pytest.raises(ConfigError, match=r"optim\.vae\.betas: got \[0\.5\] with 1 items, expected 2"):
        load_recipe(BASE, ["optim.vae.betas=[0.5]"])
    with pytest.raises(ConfigError, match=r"model\.likelihood: got 'poisson', allowed values: 'bernoulli'"):
        load_recipe(BASE, ["model.likelihood=poisson"])
    with pytest.raises(ConfigError, match=r"train\.mixed_precision: got 'fp8', allowed values"):
        load_recipe(BASE, ["train.mixed_precision=fp8"])


def test_unknown_model_lists_registered_names():
    with pytest.raises(ConfigError, match=r"unknown model 'vea'\. Did you mean [^?]*'vae'.*Registered models: .*dcgan"):
        load_recipe({"model": {"name": "vea"}})
    with pytest.raises(ConfigError, match=r"Registered models: .*wgan_gp"):
        create_model("no_such_model")


def test_overrides_are_typed():
    tree = apply_overrides({}, ["train.max_steps=20", "optim.vae.lr=1e-4", "optim.vae.betas=[0.5,0.9]",
                                "train.progress=false", "data.name=mnist"])
    assert tree == {"train": {"max_steps": 20, "progress": False}, "data": {"name": "mnist"},
                    "optim": {"vae": {"lr": 1e-4, "betas": [0.5, 0.9]}}}
    recipe = load_recipe(BASE, ["train.max_steps=20", "optim.vae.lr=1e-4"])
    assert recipe.train.max_steps == 20 and recipe.optim["vae"].lr == 1e-4
    assert recipe.optim["vae"].betas == (0.5, 0.9)  # model default kept where not overridden
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["train.max_steps"])


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(BASE, ["train.max_steps=7"])
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(to_dict(recipe)))
    assert load_recipe(path) == recipe
    model = build_model(recipe)
    assert model.config.latent_dim == 4 and model.config.width == 8


def test_every_recipe_file_is_valid():
    files = sorted(RECIPES.glob("*.yaml"))
    assert len(files) >= 15
    for path in files:
        recipe = load_recipe(path)
        assert recipe.model.name in list_models(), path


def test_create_model_overrides_and_registry():
    model = create_model("vae", latent_dim=3, width=8, channels=1)
    assert model.config.latent_dim == 3
    assert list_models("wgan*") == ["wgan_gp"]
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    with pytest.raises(UnknownNameError, match=r"unknown thing 'b'\. Registered things: a"):
        reg.get("b")


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: level k is ten aliases of level k - 1, so the last level is 10**levels strings."""
    lines = ['a0: &a0 "lol"']
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, levels + 1)]
    return "\n".join(lines) + f"\nmodel: {{name: vae, width: *a{levels}}}\n"


@pytest.mark.parametrize("reader", ["recipe", "load_checkpoint", "sweep", "reproduction spec", "catalog"])
def test_a_billion_laughs_document_fails_fast_naming_the_file(tmp_path, reader):
    import time

    from zoo import load_checkpoint
    from zoo.catalog import train_seed
    from zoo.factory import expand_sweep
    from zoo.reproduction.spec import load_spec
    from zoo.training.checkpoint import CheckpointError
    from zoo.yaml_limits import YAMLLimitError

    bomb = tmp_path / "checkpoints" / "step_00000001" / "config.yaml"
    bomb.parent.mkdir(parents=True)
    bomb.write_text(billion_laughs())
    (bomb.parent / "model.safetensors").write_bytes(b"")
    read = {"recipe": lambda: load_recipe(bomb), "load_checkpoint": lambda: load_checkpoint(tmp_path),
            "sweep": lambda: expand_sweep(bomb), "reproduction spec": lambda: load_spec(bomb),
            "catalog": lambda: train_seed(bomb.read_text())}[reader]
    start = time.perf_counter()
    with pytest.raises((ConfigError, CheckpointError, YAMLLimitError)) as caught:
        read()
    assert time.perf_counter() - start < 2
    assert "expands to more than 100,000 nodes" in str(caught.value)
    assert reader == "catalog" or str(bomb) in str(caught.value)  # the catalog's caller names the run


def test_recursive_aliases_oversized_files_and_override_bombs_are_refused(tmp_path):
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("model: &m {name: vae, options: *m}\n")
    with pytest.raises(ConfigError, match=r"recursive.yaml' refused: an alias refers to a node that contains it"):
        load_recipe(recursive)
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match=r"big.yaml' is 2,000,000 bytes, over the 1,048,576-byte limit"):
        load_recipe(big)
    levels = ["&l0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&l{k} [{', '.join([f'*l{k - 1}'] * 10)}]" for k in range(1, 7)]
    with pytest.raises(ConfigError, match=r"override 'model.width' refused: it expands to more than 100,000 nodes"):
        apply_overrides({}, [f"model.width=[{', '.join(levels)}]"])  # 10**7 leaves from a 300-character value
    assert load_recipe(RECIPES / "tiny_vae.yaml").model.name == "vae"  # ordinary recipes are far inside the bounds


@pytest.mark.parametrize("override, message", [
    ("optim.vae.eps=.inf", "optim.vae.eps: got inf, expected finite and >= 0"),
    ("optim.vae.lr=.nan", "optim.vae.lr: got nan, expected finite and >= 0"),
    ("optim.vae.grad_clip=.inf", "optim.vae.grad_clip: got inf, expected finite and > 0, or null for none"),
    ("model.beta=.inf", "model.beta: got inf, expected a finite number"),
])
def test_infinite_or_nan_settings_are_refused_naming_the_key(override, message):
    """YAML's .inf / .nan parse as floats of the right type; Adam with eps = inf would silently never move."""
    with pytest.raises(ConfigError) as err:
        load_recipe(str(RECIPES / "tiny_vae.yaml"), [override])
    assert message in str(err.value)


def test_eval_section_lists_registered_metrics_and_old_configs_still_load(tmp_path):
    """eval.metrics names registered metrics (a typo fails at load, naming the key); the never-read eval.n_samples /
    batch_size / split of older run folders load when at their old defaults, and a changed one says it was unused."""
    tiny = RECIPES / "tiny_vae.yaml"
    assert load_recipe(tiny, ["eval.metrics=[reconstruction,lpips]"]).eval.metrics == ["reconstruction", "lpips"]
    with pytest.raises(ConfigError, match=r"eval\.metrics: unknown metric 'recontruction'.*'reconstruction'"):
        load_recipe(tiny, ["eval.metrics=[recontruction]"])
    old = ["eval.n_samples=10000", "eval.batch_size=256", "eval.split=test"]
    assert load_recipe(tiny, old).eval.metrics == []
    with pytest.raises(ConfigError, match=r"eval\.n_samples=5000: no zoo version read this key .*--n-samples"):
        load_recipe(tiny, ["eval.n_samples=5000"])


def test_create_model_takes_a_name_and_build_model_a_recipe():
    """One input kind per entry point: create_model(NAME, **options), build_model(RECIPE); under one seed both give
    the same initial weights for the same config, and each refuses the other's input naming the right call."""
    from zoo import build_model
    from zoo.config import to_dict
    recipe = load_recipe(RECIPES / "tiny_vae.yaml")
    options = {k: v for k, v in to_dict(recipe.model).items() if k != "name"}
    by_name = create_model("vae", seed=recipe.train.seed, **options).state_dict()
    by_recipe = build_model(recipe).state_dict()  # seeded by train.seed
    assert by_name.keys() == by_recipe.keys() and all(by_name[k].equal(by_recipe[k]) for k in by_name)
    with pytest.raises(TypeError, match=r"zoo\.build_model\(zoo\.load_recipe"):
        create_model(str(RECIPES / "tiny_vae.yaml"))
    with pytest.raises(TypeError, match=r"zoo\.create_model\(NAME"):
        build_model("vae")
