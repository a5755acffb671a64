"""JS^G_alpha, JS^G_alpha_* and the kernel MMD against numerical integration, Monte Carlo, the paper's printed
closed forms (eq. 9, 11, 23-26), its limits (eq. 14-15, 18-19) and the normalised form of eq. 31."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.losses.divergences import gaussian_kernel, geometric_mean_normal, jsg, kl_normal, mmd

CASES = [(dual, primed) for dual in (False, True) for primed in (True, False)]


def _grid_1d(m1: float, v1: float, m2: float, v2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A float64 grid wide enough for both Gaussians and their log-densities on it."""
    s = math.sqrt(max(v1, v2))
    x = torch.linspace(min(m1, m2) - 14 * s, max(m1, m2) + 14 * s, 20_001, dtype=torch.float64)
    lp = lambda m, v: -0.5 * ((x - m) ** 2 / v + math.log(2 * math.pi * v))  # noqa: E731
    return x, lp(m1, v1), lp(m2, v2)


def _integrated(x, lp, lq, alpha: float, dual: bool, primed: bool) -> float:
    """The definitions eq. 7 / 10 / 17 by the trapezoid rule: the geometric mean is normalised numerically."""
    w2 = 1 - alpha if primed else alpha  # exponent of q in the geometric mean
    lg = (1 - w2) * lp + w2 * lq
    lg = lg - torch.log(torch.trapezoid(lg.exp(), x))
    kl = lambda la, lb: torch.trapezoid(la.exp() * (la - lb), x).item()  # noqa: E731
    if dual:
        return (1 - alpha) * kl(lg, lp) + alpha * kl(lg, lq)
    return (1 - alpha) * kl(lp, lg) + alpha * kl(lq, lg)


def _jsg1(m1, v1, m2, v2, alpha, **kw) -> float:
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    return jsg(t(m1), t(math.log(v1)), t(m2), t(math.log(v2)), alpha, **kw).item()


@pytest.mark.parametrize("dual,primed", CASES)
def test_closed_form_matches_numerical_integration_in_1d(dual, primed):
    g = torch.Generator().manual_seed(10 + 2 * dual + primed)
    for _ in range(6):
        m1, m2 = (torch.randn(2, generator=g, dtype=torch.float64) * 1.5).tolist()
        v1, v2 = torch.exp(torch.empty(2, dtype=torch.float64).uniform_(-2.5, 1.5, generator=g)).tolist()
        alpha = torch.rand(1, generator=g).item()
        x, lp, lq = _grid_1d(m1, v1, m2, v2)
        expected = _integrated(x, lp, lq, alpha, dual, primed)
        got = _jsg1(m1, v1, m2, v2, alpha, dual=dual, primed=primed)
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9), (m1, v1, m2, v2, alpha)


@pytest.mark.parametrize("dual", [False, True])
def test_closed_form_matches_monte_carlo_in_several_dimensions(dual):
    """Monte Carlo from the two densities only: the geometric mean G = p^a q^(1-a) / Z is reached by importance
    sampling from the mixture r = (p + q) / 2, which covers it (log Z = log E_r[p^a q^(1-a) / r]; expectations under
    G self-normalised)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3 + dual)
    d, n = 3, 200_000
    for alpha in (0.2, 0.5, 0.85):
        mu1, mu2 = torch.randn(2, d, generator=g, dtype=torch.float64) * 0.5
        lv1, lv2 = torch.empty(2, d, dtype=torch.float64).uniform_(-0.5, 0.5, generator=g)
        p = torch.distributions.Independent(torch.distributions.Normal(mu1, (0.5 * lv1).exp()), 1)
        q = torch.distributions.Independent(torch.distributions.Normal(mu2, (0.5 * lv2).exp()), 1)
        w2 = 1 - alpha  # primed: the exponent of q in the geometric mean
        xp, xq = p.sample((n,)), q.sample((n,))
        xr = torch.cat([xp, xq])  # a sample of the mixture r
        lp, lq = p.log_prob(xr), q.log_prob(xr)
        log_w = (1 - w2) * lp + w2 * lq - (torch.logaddexp(lp, lq) - math.log(2))  # unnormalised G / r
        log_z = (torch.logsumexp(log_w, 0) - math.log(2 * n)).item()
        if dual:
            e_log_qp = (torch.softmax(log_w, 0) * (lq - lp)).sum().item()  # E_G[log q/p]
            expected = (1 - alpha) * (w2 * e_log_qp - log_z) + alpha * (-(1 - w2) * e_log_qp - log_z)
        else:
            kl_pg = w2 * (p.log_prob(xp) - q.log_prob(xp)).mean().item() + log_z
            kl_qg = (1 - w2) * (q.log_prob(xq) - p.log_prob(xq)).mean().item() + log_z
            expected = (1 - alpha) * kl_pg + alpha * kl_qg
        got = jsg(mu1, lv1, mu2, lv2, alpha, dual=dual).item()
        assert got == pytest.approx(expected, rel=0.02, abs=2e-3), (alpha, got, expected)


def test_printed_closed_forms_eq9_eq11_and_the_vae_forms_eq23_to_26():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    v1, v2 = torch.exp(torch.randn(2, 5, 4, generator=g, dtype=torch.float64))
    for alpha in (0.1, 0.35, 0.9):
        for primed in (False, True):
            a = 1 - alpha if primed else alpha  # N_alpha' = N_(1 - alpha) (eq. 16)
            va = 1 / ((1 - a) / v1 + a / v2)  # eq. 12
            ma = va * ((1 - a) * mu1 / v1 + a * mu2 / v2)  # eq. 13
            # eq. 9 is the weighted sum of two KLs to the intermediate: valid for N_alpha and N_alpha' alike
            eq9 = 0.5 * ((((1 - alpha) * v1 + alpha * v2) / va).sum(-1)
                         + (va.log() - (1 - alpha) * v1.log() - alpha * v2.log()).sum(-1)
                         + ((1 - alpha) * (ma - mu1) ** 2 / va + alpha * (ma - mu2) ** 2 / va).sum(-1) - 4)
            torch.testing.assert_close(jsg(mu1, v1.log(), mu2, v2.log(), alpha, primed=primed), eq9)
            if primed:  # eq. 11 cancels tr(...) against n using eq. 12's weights, which N_alpha' swaps: eq. 10 it is
                dual = 0.5 * ((1 - alpha) * (va / v1 + (ma - mu1) ** 2 / v1 - 1 + (v1 / va).log())
                              + alpha * (va / v2 + (ma - mu2) ** 2 / v2 - 1 + (v2 / va).log())).sum(-1)
            else:  # eq. 11
                dual = 0.5 * ((1 - alpha) * mu1 ** 2 / v1 + alpha * mu2 ** 2 / v2 - ma ** 2 / va
                              + (1 - alpha) * v1.log() + alpha * v2.log() - va.log()).sum(-1)
            torch.testing.assert_close(jsg(mu1, v1.log(), mu2, v2.log(), alpha, dual=True, primed=primed), dual)

        # eq. 23-26: N2 = N(0, I) with the unprimed N_alpha (eq. 25 is eq. 12 with Sigma_2 = I)
        s2a = v1 / ((1 - alpha) + alpha * v1)  # eq. 25
        mua = s2a * (1 - alpha) * mu1 / v1  # eq. 26
        eq23 = 0.5 * (((1 - alpha) * v1 + alpha) / s2a + (s2a / v1 ** (1 - alpha)).log()
                      + (1 - alpha) * (mua - mu1) ** 2 / s2a + alpha * mua ** 2 / s2a - 1).sum(-1)
        torch.testing.assert_close(jsg(mu1, v1.log(), 0.0, 0.0, alpha, primed=False), eq23)
        log_term = (v1 ** (1 - alpha) / s2a).log()
        eq24_with_factor = 0.5 * ((1 - alpha) * mu1 ** 2 / v1 - mua ** 2 / s2a + log_term).sum(-1)
        torch.testing.assert_close(jsg(mu1, v1.log(), 0.0, 0.0, alpha, dual=True, primed=False), eq24_with_factor)
        eq24_as_printed = 0.5 * (mu1 ** 2 / v1 - mua ** 2 / s2a + log_term).sum(-1)
        assert not torch.allclose(eq24_as_printed, eq24_with_factor)  # the printed eq. 24 lacks (1 - alpha)


def test_limits_of_the_primed_and_unprimed_forms():
    g = torch.Generator().manual_seed(1)
    mu1, mu2, lv1, lv2 = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    kl12, kl21 = kl_normal(mu1, lv1, mu2, lv2), kl_normal(mu2, lv2, mu1, lv1)
    f = lambda a, **kw: jsg(mu1, lv1, mu2, lv2, a, **kw)  # noqa: E731
    for eps, tol in ((0.0, 1e-12), (1e-7, 1e-5)):
        torch.testing.assert_close(f(eps), kl12, rtol=tol, atol=tol)  # eq. 18
        torch.testing.assert_close(f(1 - eps), kl21, rtol=tol, atol=tol)
        torch.testing.assert_close(f(eps, dual=True), kl21, rtol=tol, atol=tol)  # eq. 19
        torch.testing.assert_close(f(1 - eps, dual=True), kl12, rtol=tol, atol=tol)
        for dual in (False, True):  # eq. 14-15
            assert f(eps, dual=dual, primed=False).abs().max() < 1e-5 + tol
            assert f(1 - eps, dual=dual, primed=False).abs().max() < 1e-5 + tol
    assert (f(0.5, primed=False) > 0.01).all()  # vanishing only at the ends
    torch.testing.assert_close(f(0.5), f(0.5, primed=False))  # N_0.5 = N_0.5'


def test_eq31_holds_only_with_the_log_normaliser_of_the_geometric_mean():
    """(1 - a) KL(p || G) + a KL(q || G) with G = p^a q^(1-a) / Z equals (1 - a)^2 KL(p||q) + a^2 KL(q||p) + log Z:
    eq. 31 as printed drops log Z <= 0, so JS^G_alpha' is below the 'quadratic interpolation' in between the ends."""
    m1, v1, m2, v2 = 0.3, 0.4, -1.1, 2.0
    x, lp, lq = _grid_1d(m1, v1, m2, v2)
    kl12, kl21 = _jsg1(m1, v1, m2, v2, 0.0), _jsg1(m1, v1, m2, v2, 1.0)
    for alpha in (0.2, 0.5, 0.7):
        log_z = torch.log(torch.trapezoid(torch.exp(alpha * lp + (1 - alpha) * lq), x)).item()
        quadratic = (1 - alpha) ** 2 * kl12 + alpha ** 2 * kl21
        assert _jsg1(m1, v1, m2, v2, alpha) == pytest.approx(quadratic + log_z, rel=1e-7)
        assert log_z < -0.05


def test_zero_for_identical_nonnegative_otherwise_and_geometric_mean_parameters():
    g = torch.Generator().manual_seed(2)
    mu, lv = torch.randn(100, 8, generator=g) * 3, torch.randn(100, 8, generator=g) * 4
    mu2, lv2 = torch.randn(100, 8, generator=g) * 3, torch.randn(100, 8, generator=g) * 4
    for dual in (False, True):
        for primed in (False, True):
            for alpha in (0.0, 0.3, 0.5, 1.0):
                same = jsg(mu, lv, mu, lv, alpha, dual=dual, primed=primed)
                assert same.abs().max() < 1e-5
                assert (jsg(mu, lv, mu2, lv2, alpha, dual=dual, primed=primed) >= -1e-5).all()
    m, logv = geometric_mean_normal(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([3.0]),
                                    torch.tensor([math.log(0.5)]), 0.5)  # precisions 0.5 * 1 + 0.5 * 2 = 1.5
    assert logv.item() == pytest.approx(-math.log(1.5)) and m.item() == pytest.approx((0.5 * 1 + 1.0 * 3) / 1.5)


def test_finite_values_and_gradients_for_very_small_variances():
    mu = torch.tensor([[0.5, -2.0, 0.0]], requires_grad=True)
    lv = torch.tensor([[-30.0, -60.0, -80.0]], requires_grad=True)
    alpha = torch.tensor(0.3, requires_grad=True)
    for dual in (False, True):
        for primed in (False, True):
            value = jsg(mu, lv, 0.0, 0.0, alpha, dual=dual, primed=primed)
            grads = torch.autograd.grad(value.sum(), (mu, lv, alpha))
            assert torch.isfinite(value).all() and all(torch.isfinite(gr).all() for gr in grads), (dual, primed)
    # float32 near alpha = 0 or 1 too, the ends where one weight vanishes
    for a in (1e-6, 1 - 1e-6):
        value = jsg(mu, lv, 0.0, 0.0, torch.tensor(a, requires_grad=True), dual=True)
        assert torch.isfinite(torch.autograd.grad(value.sum(), lv)[0]).all()


def test_mmd_by_hand_and_against_the_population_value_for_gaussians():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, 2.0]])
    k = lambda sq: math.exp(-sq / 4.0)  # noqa: E731 -- default scale D^2 = 4
    expected = (2 * k(0) + 2 * k(1)) / 4 + k(0) - 2 * (k(4) + k(5)) / 2
    assert mmd(x, y).item() == pytest.approx(expected, rel=1e-6)
    assert gaussian_kernel(x, y, 2.0)[1, 0].item() == pytest.approx(math.exp(-5 / 2))
    assert mmd(x, x).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd(x, y, unbiased=True)

    # population MMD^2 of N(m1, S1) and N(m2, S2) under exp(-||v||^2 / s): E k = det(I + 2S/s)^-1/2
    # exp(-d^T (sI + 2S)^-1 d) with v ~ N(d, S)
    g = torch.Generator().manual_seed(5)
    s, m1, m2 = 2.0, torch.tensor([0.0, 0.0]), torch.tensor([1.0, -0.5])
    v1, v2 = torch.tensor([1.0, 0.5]), torch.tensor([0.3, 2.0])
    def ek(d, var):  # E k(a, b) with a - b ~ N(d, diag var)
        return (torch.prod(1 + 2 * var / s) ** -0.5 * torch.exp(-(d ** 2 / (s + 2 * var)).sum())).item()

    population = ek(torch.zeros(2), 2 * v1) + ek(torch.zeros(2), 2 * v2) - 2 * ek(m1 - m2, v1 + v2)
    xs = m1 + v1.sqrt() * torch.randn(3000, 2, generator=g, dtype=torch.float64).float()
    ys = m2 + v2.sqrt() * torch.randn(3000, 2, generator=g, dtype=torch.float64).float()
    assert mmd(xs.double(), ys.double(), s, unbiased=True).item() == pytest.approx(population, rel=0.05)
    assert population > 0.1
