"""Rosca et al. 2018 App. D: affine Gaussians (eq. 13), their closed-form KL against Monte Carlo, and the
estimation / minimisation study with a classifier in one dimension."""
from __future__ import annotations

import json
import math

import pytest
import torch

from zoo.studies.appendix_d import AffineGaussian, appendix_d_run
from zoo.losses.divergences import kl_mvn


def gaussians(dim: int) -> tuple[AffineGaussian, AffineGaussian]:
    g = torch.Generator().manual_seed(dim)
    return AffineGaussian.random(dim, 10 * dim, g), AffineGaussian.random(dim, 10 * dim, g)


def test_affine_gaussian_is_normal_with_covariance_wtw():
    q, _ = gaussians(3)
    x = q.sample(200_000, torch.Generator().manual_seed(0)).detach().double()
    torch.testing.assert_close(x.mean(0), q.bias.detach().double(), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), q.covariance(), atol=0.01, rtol=0)  # eq. 13: N(b, W^T W)


def test_closed_form_kl_agrees_with_monte_carlo_and_torch():
    q, p = gaussians(10)
    exact = q.kl_to(p)
    mvn = lambda a: torch.distributions.MultivariateNormal(a.bias.detach().double(), a.covariance())  # noqa: E731
    assert exact == pytest.approx(torch.distributions.kl_divergence(mvn(q), mvn(p)).item(), rel=1e-9)
    x = q.sample(200_000, torch.Generator().manual_seed(1)).detach().double()
    log_ratio = mvn(q).log_prob(x) - mvn(p).log_prob(x)  # KL(Q || P) = E_Q[log q - log p]
    stderr = log_ratio.std().item() / math.sqrt(len(x))
    assert abs(log_ratio.mean().item() - exact) < 4 * stderr, (log_ratio.mean().item(), exact, stderr)
    assert kl_mvn(q.bias, q.covariance(), q.bias, q.covariance()).abs().item() < 1e-9
    assert exact > 1.0  # two random 10-d Gaussians are far apart: a meaningful check


def test_one_dimensional_study_estimates_and_minimises_the_kl(one_thread):
    """d = 1, as the paper finds: the classifier estimates KL(Q0 || P) well and minimising its estimate drives the
    true KL towards 0."""
    run = appendix_d_run(1, iterations=400, eval_every=100, hidden=64, eval_samples=20000)
    init = run["true_kl_init"]
    assert init == pytest.approx(0.1888, abs=1e-3)  # closed form for gaussian_seed 0
    assert run["estimation"]["step"] == [0, 100, 200, 300, 400]
    assert run["estimation"]["estimated_kl"][-1] == pytest.approx(init, rel=0.35)
    curve = run["minimisation"]["true_kl"]
    assert curve[0] == pytest.approx(init) and curve[-1] < 0.2 * init, curve


def test_appendix_d_tool_writes_curves(tmp_path, one_thread):
    from zoo.studies import appendix_d as tool
    assert tool.main(["--dims", "1", "2", "--seeds", "2", "--iterations", "20", "--eval-every", "10",
                      "--hidden", "16", "--eval-samples", "500", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocol"]["iterations"] == 20 and set(results["dims"]) == {"1", "2"}
    d2 = results["dims"]["2"]
    finals = [r["minimisation"]["true_kl"][-1] for r in d2["runs"]]
    assert d2["summary"]["true_kl"]["mean"][-1] == pytest.approx(sum(finals) / 2)
    assert d2["summary"]["step"] == [0, 10, 20]
    from PIL import Image
    assert Image.open(tmp_path / "appendix_d.png").size == (2 * 520, 380)  # one panel per dimension
    assert (tmp_path / "appendix_d.pdf").read_bytes()[:5] == b"%PDF-"
