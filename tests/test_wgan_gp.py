"""WGAN-GP schedule (Gulrajani et al. Algorithm 1): 5 critic steps per generator step, each on a fresh batch."""
from __future__ import annotations

import torch

from conftest import RandomImages, data_shape, tiny_recipe
from zoo import build_model
from zoo.training import Trainer


def test_five_critic_steps_per_generator_step_each_on_a_new_batch():
    recipe = tiny_recipe("wgan_gp")
    model = build_model(recipe)
    trainer = Trainer(model, recipe, dataset=RandomImages(1024, data_shape(recipe)))
    steps = {k: 0 for k in trainer.optimizers}
    for key, opt in trainer.optimizers.items():
        original = opt.step

        def counted(*args, _key=key, _orig=original, **kwargs):
            steps[_key] += 1
            return _orig(*args, **kwargs)

        opt.step = counted
    seen: list[tuple[str, torch.Tensor]] = []
    phase_loss = model.phase_loss

    def spy(phase, batch, step):
        seen.append((phase, batch.clone()))
        return phase_loss(phase, batch, step)

    model.phase_loss = spy
    for _ in range(3):
        trainer.train_step()
    assert steps == {"critic": 15, "gen": 3}
    assert [p for p, _ in seen] == (["critic"] * 5 + ["gen"]) * 3
    critic_batches = [b for p, b in seen if p == "critic"]
    for i in range(len(critic_batches)):
        for j in range(i):
            assert not torch.equal(critic_batches[i], critic_batches[j]), f"critic batches {j} and {i} are the same"
    assert trainer.stream.state_dict()["position"] == 18  # 6 batches per step drawn from the stream
