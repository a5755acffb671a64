"""The registered `marginal_kl` metric is the Algorithm 2 estimate on the encoded training split, with eq. 5 terms."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import RandomImages
from zoo import create_model
from zoo.config import DataConfig
from zoo.evaluation.core import MetricNotApplicable
from zoo.evaluation.latent import encode_posteriors, marginal_kl_mc
from zoo.evaluation.sampling import EvalContext
from zoo.registry import METRICS


def test_marginal_kl_metric_equals_algorithm_2_on_the_training_split():
    torch.manual_seed(0)
    model = create_model("vae", backbone="rosca_mnist", channels=1, latent_dim=4, width=8).eval()
    train = RandomImages(48, (1, 28, 28))
    ctx = EvalContext(model, DataConfig(name="mnist"), datasets={"train": train}, n_samples=300, batch_size=16, seed=3)
    results = {r.metric: r for r in METRICS.get("marginal_kl")(ctx)}

    order = ctx.indices("train")  # the metric reads the split in its seeded order
    mu, logvar = encode_posteriors(model, train.images[order], batch_size=16)
    direct = marginal_kl_mc(mu, logvar, num_z=300, generator=torch.Generator().manual_seed(3))
    assert results["marginal_kl"].value == pytest.approx(direct.marginal_kl, rel=1e-5)
    assert results["marginal_kl"].std == pytest.approx(direct.marginal_kl_stderr, rel=1e-5)
    assert results["marginal_kl.avg_posterior_kl"].value == pytest.approx(direct.avg_posterior_kl, rel=1e-5)
    # eq. 5: avg posterior KL = marginal KL + I[x; z] (up to Monte-Carlo error) and I <= log N
    assert results["marginal_kl.lower_bound"].value == pytest.approx(direct.avg_posterior_kl - math.log(48), rel=1e-5)
    protocol = results["marginal_kl"].protocol
    assert (protocol["reference_split"], protocol["num_points"], protocol["num_z"]) == ("train", 48, 300)


def test_marginal_kl_metric_needs_a_density_for_deterministic_encoders():
    torch.manual_seed(0)
    model = create_model("vgh", backbone="rosca_mnist", channels=1, latent_dim=4, width=8).eval()
    ctx = EvalContext(model, DataConfig(name="mnist"), datasets={"train": RandomImages(16, (1, 28, 28))},
                      n_samples=50, batch_size=8)
    with pytest.raises(MetricNotApplicable, match="smoothing_std"):
        METRICS.get("marginal_kl")(ctx)
    ctx.options["smoothing_std"] = 0.1
    results = {r.metric: r for r in METRICS.get("marginal_kl")(ctx)}
    assert math.isfinite(results["marginal_kl"].value) and results["marginal_kl"].protocol["smoothing_std"] == 0.1
