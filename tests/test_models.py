"""Every registered model (timm pattern): builds from its tiny recipe, samples, and each phase trains only its own
optimizer's players while the optimizers together cover every parameter exactly once."""
from __future__ import annotations

import pytest
import torch

from conftest import RECIPES, RandomImages, data_shape, tiny_recipe
from zoo import build_model, list_models
from zoo.training import Trainer

MODELS = list_models()


def test_every_model_has_a_tiny_recipe():
    missing = [m for m in MODELS if not (RECIPES / f"tiny_{m}.yaml").is_file()]
    assert not missing, f"add recipes/tiny_<name>.yaml for {missing}"
    assert {"vae", "dcgan", "wgan_gp"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_sample_shape_and_finite(name):
    recipe = tiny_recipe(name)
    torch.manual_seed(0)
    model = build_model(recipe).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = model.sample(5, generator=g)
        again = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert x.shape == (5, *data_shape(recipe))
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, again), "sample(generator=...) must be reproducible"
    if model.has_encoder:
        batch = torch.rand(3, *data_shape(recipe)) * 2 - 1
        with torch.no_grad():
            assert model.reconstruct(batch).shape == batch.shape
            assert model.encode(batch).shape[0] == 3


@pytest.mark.parametrize("name", MODELS)
def test_phase_gradient_isolation_and_coverage(name):
    recipe = tiny_recipe(name)
    torch.manual_seed(0)
    model = build_model(recipe)
    trainer = Trainer(model, recipe, dataset=RandomImages(64, data_shape(recipe)))

    # coverage: every parameter in exactly one optim entry; a phase with its own state (Phase.own_state) has one more
    # optimizer, over exactly its trained players
    def params(key: str) -> list[int]:
        return [id(p) for g in trainer.optimizers[key].param_groups for p in g["params"]]

    owned = [i for key in recipe.optim for i in params(key)]
    assert len(owned) == len(set(owned)), "a parameter is in two optimizers"
    assert set(owned) == {id(p) for p in model.parameters()}, "some parameters are in no optimizer"
    own = [p for p in model.phases() if p.own_state]
    assert set(trainer.optimizers) == set(recipe.optim) | {p.state_key for p in own}
    for phase in own:
        players = phase.players or recipe.optim[phase.optimizer].players
        assert params(phase.state_key) == [id(p) for n in players for p in model.players[n].parameters()]

    for phase in model.phases():
        trained = set(phase.players or recipe.optim[phase.optimizer].players)
        for p in model.parameters():
            p.grad = None
        before = {n: [p.detach().clone() for p in m.parameters()] for n, m in trainer.players.items()}
        trainer.run_phase(phase, trainer.stream.next(), step=0)
        for player_name, player in trainer.players.items():
            grads = [p.grad for p in player.parameters()]
            if player_name in trained:
                assert all(g is not None and torch.isfinite(g).all() for g in grads), \
                    f"{name}/{phase.name}: a parameter of trained player {player_name} got no gradient"
                assert any(g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None for g in grads), \
                    f"{name}/{phase.name}: player {player_name} received gradients but is not trained in this phase"
                after = list(player.parameters())
                assert all(torch.equal(a, b) for a, b in zip(after, before[player_name])), \
                    f"{name}/{phase.name}: untrained player {player_name} changed"
