"""JS^G tools: the model-evidence estimate (exact on a linear-Gaussian model), the bootstrap, latent traversals, the
resumable Table 1 / 2 reproduction, and the Fig. 2 divergence study."""
from __future__ import annotations

import importlib.util
import json
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from conftest import tiny_recipe
from zoo import build_model
from zoo.studies.evidence import bootstrap_interval, evidence_estimate, log_evidence
from zoo.studies.traversal import PRIOR_95, latent_traversal, traversal_codes
from zoo.training import Trainer


def _tool(name: str):
    """The module behind `zoo NAME`."""
    from zoo.cli import COMMANDS
    return importlib.import_module(COMMANDS[name][0])


class LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I) with orthogonal columns of W, so the exact posterior is diagonal
    and p(x) = N(b, W W^T + s^2 I) is known."""

    def __init__(self, exact: bool = True):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
        self.b, self.s2, self.exact = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64), 0.3, exact
        self.config = SimpleNamespace(latent_dim=2)

    def marginal(self) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(self.b, self.w @ self.w.T + self.s2 * torch.eye(3))

    def posterior(self, x):
        precision = 1 + (self.w ** 2).sum(0) / self.s2  # diagonal because W^T W is
        mu = ((x - self.b) @ self.w / self.s2) / precision
        logvar = -precision.log().expand_as(mu)
        return (mu, logvar) if self.exact else (mu + 0.3, logvar + 0.5)  # a deliberately imperfect proposal

    def log_px_given_z(self, x, z):
        return torch.distributions.Normal(z @ self.w.T + self.b, self.s2 ** 0.5).log_prob(x).sum(-1)


def test_log_evidence_is_exact_with_the_exact_posterior_and_converges_otherwise():
    model = LinearGaussian()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    truth = model.marginal().log_prob(x)
    g = torch.Generator().manual_seed(1)
    torch.testing.assert_close(log_evidence(model, x, 1, generator=g), truth)  # every weight equals p(x)
    torch.testing.assert_close(log_evidence(model, x, 3, generator=g), truth)
    model.exact = False
    estimate = log_evidence(model, x, 10000, generator=g, max_batch=60000)
    assert (estimate - truth).abs().max() < 0.05
    prior = log_evidence(model, x, 10000, proposal="prior", generator=g, max_batch=60000)
    assert (prior - truth).abs().max() < 0.1


def test_bootstrap_interval_and_the_batch_protocol():
    mean, low, high = bootstrap_interval(torch.full((10,), 3.0))
    assert mean == low == high == 3.0
    values = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, low, high = bootstrap_interval(values, 2000, generator=torch.Generator().manual_seed(1))
    assert mean == pytest.approx(values.mean().item()) and low < mean < high
    assert high - low == pytest.approx(2 * 1.96 * values.std().item() / 20, rel=0.12)  # ~ the normal interval

    model = LinearGaussian()
    data = torch.randn(1005, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    result = evidence_estimate(model, data, n_batches=100, n_samples=2, n_resamples=500)
    batch_truth = model.marginal().log_prob(data[:1000]).view(100, 10).mean(1)  # the remainder 5 dropped
    assert result["batch_size"] == 10 and len(result["batch_means"]) == 100
    torch.testing.assert_close(torch.tensor(result["batch_means"], dtype=torch.float64), batch_truth)
    assert result["mean"] == pytest.approx(batch_truth.mean().item())
    assert result["low"] < result["mean"] < result["high"]


def test_traversal_sweeps_one_dimension_per_row():
    z0 = torch.tensor([0.5, -1.0, 2.0])
    codes = traversal_codes(z0, steps=10)
    grid = codes.view(3, 10, 3)
    sweep = torch.linspace(-PRIOR_95, PRIOR_95, 10)
    for d in range(3):
        torch.testing.assert_close(grid[d, :, d], sweep)
        others = [i for i in range(3) if i != d]
        assert torch.equal(grid[d][:, others], z0[others].expand(10, 2))
    model = SimpleNamespace(training=False, eval=lambda: None, train=lambda mode: None,
                            decode=lambda z: z.view(-1, 1, 1, 3))
    torch.testing.assert_close(latent_traversal(model, z0, 10, batch_size=7), codes.view(30, 1, 1, 3))


def test_traverse_and_evidence_tools_on_a_trained_checkpoint(tmp_path, shared_data, capsys):
    recipe = tiny_recipe("jsg_vae", [f"data.root={shared_data}", "train.max_steps=3"])
    torch.manual_seed(0)
    Trainer(build_model(recipe), recipe, tmp_path / "run").train()
    png = tmp_path / "t.png"
    assert _tool("traverse").main([str(tmp_path / "run"), "--out", str(png), "--index", "3"]) == 0
    assert Image.open(png).size == (11 * 33 + 1, 4 * 33 + 1)  # latent 4 rows x (reference + 10), 32 px + 1 pad
    out = tmp_path / "e.json"
    assert _tool("evidence").main([str(tmp_path / "run"), "--limit", "60", "--batches", "6", "--samples", "4",
                                   "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch_size"] == 10 and len(result["batch_means"]) == 6 and result["step"] == 3
    assert result["low"] <= result["mean"] <= result["high"] and math.isfinite(result["mean"])
    assert "log p(x) =" in capsys.readouterr().out


def test_fig2_study_fits_the_moments_by_forward_kl_and_a_mode_by_reverse_kl(tmp_path):
    tool = _tool("jsg_fig2")
    from zoo.data import load_dataset
    data = load_dataset("mixture_2d", "train", None, size=5000, seed=0, **tool.MIXTURE)
    mean, cov = tool.moments(data)
    forward = tool.fit("kl_pq", data, steps=400, lr=0.05)
    torch.testing.assert_close(torch.tensor(forward["mean"]).double(), mean, atol=0.15, rtol=0)
    torch.testing.assert_close(torch.tensor(forward["cov"]).double(), cov, atol=0.3, rtol=0.1)
    reverse = tool.fit("kl_qp", data, steps=400, lr=0.05)  # zero-forcing: the dominant mode N((0, 0), 0.7^2 I)
    torch.testing.assert_close(torch.tensor(reverse["mean"]), torch.zeros(2), atol=0.2, rtol=0)
    torch.testing.assert_close(torch.tensor(reverse["cov"]), 0.49 * torch.eye(2), atol=0.15, rtol=0)
    jsg = tool.fit("jsg", data, steps=400, lr=0.05)  # in between: narrower than forward KL, wider than reverse
    det = lambda c: torch.linalg.det(torch.tensor(c)).item()  # noqa: E731
    assert det(reverse["cov"]) < det(jsg["cov"]) < det(forward["cov"])
    assert tool.main(["--out", str(tmp_path), "--steps", "20", "--samples", "2000"]) == 0
    assert Image.open(tmp_path / "fig2.png").size == (4 * 320, 340)
    assert (tmp_path / "fig2.pdf").read_bytes()[:5] == b"%PDF-"
    assert set(json.loads((tmp_path / "fig2.json").read_text())["fits"]) == {"kl_pq", "kl_qp", "js", "jsg"}
