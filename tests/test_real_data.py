"""A short VAE run on the shared MNIST improves the test ELBO by a clear margin."""
from __future__ import annotations

import torch

from zoo import build_model, load_recipe
from zoo.data import load_dataset
from zoo.data.stream import to_model_range
from zoo.training import Trainer

from conftest import train_until


def test_vae_mnist_test_elbo_improves(shared_data):
    recipe = load_recipe({
        "model": {"name": "vae", "backbone": "rosca_mnist", "channels": 1, "latent_dim": 16, "width": 16},
        "data": {"name": "mnist", "root": str(shared_data), "batch_size": 64},
        "optim": {"vae": {"lr": 1e-3}},
        "train": {"max_steps": 450, "progress": False, "tensorboard": False, "log_every": 50},
    })
    torch.manual_seed(0)
    model = build_model(recipe)
    test = to_model_range(load_dataset("mnist", "test", shared_data).as_uint8_tensor()[:1000])

    def test_elbo() -> float:
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            value = torch.cat([model.elbo(chunk) for chunk in test.split(250)]).mean().item()
        model.train()
        return value

    before = test_elbo()
    assert before < -400  # an untrained Bernoulli decoder: about 784 log 2 = 543 nats
    # until the criterion holds (seen after 150 steps), at most 450: not one build's value at a fixed step
    steps, after = train_until(Trainer(model, recipe), test_elbo, lambda v: v > before + 250 and v > -230, every=50,
                               max_steps=450)
    print(f"test ELBO before {before:.1f} nats, after {steps} steps {after:.1f} nats")
    assert after > before + 250 and after > -230, (before, steps, after)
