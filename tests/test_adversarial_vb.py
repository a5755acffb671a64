"""AdversarialVB: adversary and encoder/decoder losses by hand, with and without adaptive contrast, and adaptive
contrast's decomposition against the closed-form KL of a Gaussian encoder."""
from __future__ import annotations

import math

import pytest
import torch

from stubs import Affine, affine, bernoulli_nll, mean, rows, softplus
from zoo import create_model
from zoo.losses.divergences import kl_normal
from zoo.losses.likelihoods import VisibleDistribution
from zoo.nn.decoder import Decoder

X = torch.tensor([[-1.0, 1.0, 0.0, 1.0], [1.0, -1.0, 1.0, 0.5]]).view(2, 1, 2, 2)
# E(x, eps) = W [x, eps] + b: codes of size 2 from four pixels and two noise values
ENC_W, ENC_B = [[0.5, 0, 0, 0, 1.0, 0], [0, 0, 0.5, 0, 0.3, 0.5]], [0.1, -0.2]
DEC_W, DEC_B = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]], [0.0, 0.2, -0.1, 0.0]
T_W, T_B = [[0.1, 0.2, -0.1, 0.3, 1.0, -0.5]], [0.05]


def stubbed(adaptive_contrast: bool = False, ac_samples: int = 3):
    model = create_model("adversarial_vb", channels=1, latent_dim=2, noise_dim=2, width=8, code_disc_hidden=8,
                         joint_width=8, adaptive_contrast=adaptive_contrast, ac_samples=ac_samples)
    model.players["encoder"] = Affine(ENC_W, ENC_B)
    model.players["decoder"] = Decoder(Affine(DEC_W, DEC_B, out_shape=(1, 2, 2)), VisibleDistribution("bernoulli", 1))
    model.players["discriminator"] = Affine(T_W, T_B)
    return model


def t_logit(x: list[float], z: list[float]) -> float:
    return affine(T_W, T_B, x, z)[0]


def hand_codes(calls) -> list[list[float]]:
    """z = E(x, eps) from the inputs the encoder stub saw."""
    (x, eps), = calls
    return [affine(ENC_W, ENC_B, xi, ei) for xi, ei in zip(rows(x), eps.tolist())]


def test_vae_loss_is_nll_plus_adversary_by_hand():
    model = stubbed()
    out = model.phase_loss("vae", X, step=0)
    z = hand_codes(model.players["encoder"].calls)
    x01 = rows((X + 1) / 2)
    nll = [bernoulli_nll(xi, affine(DEC_W, DEC_B, zi)) for xi, zi in zip(x01, z)]
    kl = [t_logit(xi, zi) for xi, zi in zip(rows(X), z)]  # T(x, z) ~ log q(z|x) - log p(z)
    assert out.loss.item() == pytest.approx(mean(nll) + mean(kl), rel=1e-6)  # Mescheder eq. 3.7
    assert out.logs["kl"].item() == pytest.approx(mean(kl), rel=1e-6)
    assert out.logs["elbo"].item() == pytest.approx(-mean(nll) - mean(kl), rel=1e-6)


def test_adversary_loss_by_hand_posterior_is_class_one():
    model = stubbed()
    out = model.phase_loss("disc", X, step=0)
    z_q = hand_codes(model.players["encoder"].calls)
    (x1, zq_seen), (x2, z_p) = model.players["discriminator"].calls
    torch.testing.assert_close(zq_seen, torch.tensor(z_q))
    assert torch.equal(x1, X) and torch.equal(x2, X) and z_p.shape == (2, 2)
    expected = mean([softplus(-t_logit(x, z)) for x, z in zip(rows(X), z_q)]) + \
        mean([softplus(t_logit(x, z)) for x, z in zip(rows(X), z_p.tolist())])  # Mescheder eq. 3.3
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def moments(draws: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per-dimension mean and unbiased standard deviation of K draws."""
    k, dims = len(draws), range(len(draws[0]))
    mu = [sum(d[i] for d in draws) / k for i in dims]
    sd = [math.sqrt(sum((d[i] - mu[i]) ** 2 for d in draws) / (k - 1)) for i in dims]
    return mu, sd


def contrast_by_hand(model, k: int):
    """(x row, z, z~, sum log sigma) for the first draw of each x, from the encoder stub's recorded inputs."""
    (xs, _), = model.players["encoder"].calls
    assert torch.equal(xs, X.repeat_interleave(k, 0))  # the K draws of one x are adjacent
    z = hand_codes(model.players["encoder"].calls)
    out = []
    for i, xi in enumerate(rows(X)):
        group = z[i * k:(i + 1) * k]  # the K draws of x_i give the moments; the first is the one scored
        mu, sd = moments(group)
        out.append((xi, group[0], [(a - m) / s for a, m, s in zip(group[0], mu, sd)], sum(math.log(s) for s in sd)))
    return out


def test_adaptive_contrast_vae_loss_by_hand():
    k = 3
    model = stubbed(adaptive_contrast=True, ac_samples=k)
    out = model.phase_loss("vae", X, step=0)
    terms = []
    for xi, z, zt, log_sigma in contrast_by_hand(model, k):
        nll = bernoulli_nll([(v + 1) / 2 for v in xi], affine(DEC_W, DEC_B, z))
        # -log p(z) + log r(z|x) + T(x, z~) (Mescheder eq. 3.10)
        kl = 0.5 * sum(v * v for v in z) - 0.5 * sum(v * v for v in zt) - log_sigma + t_logit(xi, zt)
        terms.append((nll, kl))
    assert out.loss.item() == pytest.approx(mean([a + b for a, b in terms]), rel=1e-5)
    assert out.logs["kl"].item() == pytest.approx(mean([b for _, b in terms]), rel=1e-5)
    (x_seen, z_seen), = model.players["discriminator"].calls
    assert torch.equal(x_seen, X)  # decoder and T see one draw per x
    torch.testing.assert_close(z_seen, torch.tensor([zt for _, _, zt, _ in contrast_by_hand(model, k)]))


def test_adaptive_contrast_adversary_sees_normalised_codes_against_n01():
    k = 3
    model = stubbed(adaptive_contrast=True, ac_samples=k)
    out = model.phase_loss("disc", X, step=0)
    drawn = contrast_by_hand(model, k)
    (x1, zt_seen), (x2, z_p) = model.players["discriminator"].calls
    torch.testing.assert_close(zt_seen, torch.tensor([zt for _, _, zt, _ in drawn]))
    assert torch.equal(x1, X) and torch.equal(x2, X) and z_p.shape == (2, 2)
    expected = mean([softplus(-t_logit(xi, zt)) for xi, _, zt, _ in drawn]) + \
        mean([softplus(t_logit(xi, zp)) for (xi, *_), zp in zip(drawn, z_p.tolist())])
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_adaptive_contrast_recovers_the_closed_form_kl_of_a_gaussian_encoder():
    """q(z|x) = N(m(x), diag s^2) is its own contrast r: z~ ~ N(0, I) exactly (up to the moment estimates), the
    optimal adversary is T = 0, and -log p(z) + log r(z|x) averages to KL(q(z|x) || N(0, I))."""
    k, n = 200, 5000  # moment bias about d / K = 0.01 nats; Monte-Carlo std of the mean 0.015 (8 seeds)
    model = stubbed(adaptive_contrast=True, ac_samples=k)
    scale = [0.4, 1.7]
    weight = [[0.5, 0, 0, 0, scale[0], 0], [0, 0, 0.5, 0, 0, scale[1]]]  # z = m(x) + diag(scale) eps
    model.players["encoder"] = Affine(weight, ENC_B)
    model.players["discriminator"] = Affine([[0.0] * 6], [0.0])
    x = X.repeat(n, 1, 1, 1)  # both images, n times each
    torch.manual_seed(0)
    out = model.phase_loss("vae", x, step=0)
    mu = torch.tensor([affine(weight, ENC_B, xi, [0.0, 0.0]) for xi in rows(X)])
    logvar = torch.log(torch.tensor(scale) ** 2).expand(2, 2)
    closed = kl_normal(mu, logvar).mean().item()  # 0.5 sum(m^2 + s^2 - 1 - log s^2)
    assert out.logs["kl"].item() == pytest.approx(closed, abs=0.06)


def test_adaptive_contrast_needs_two_draws():
    with pytest.raises(ValueError, match="ac_samples >= 2, got 1"):
        create_model("adversarial_vb", channels=1, latent_dim=2, width=8, adaptive_contrast=True, ac_samples=1)


def test_encode_is_one_draw_of_the_implicit_posterior():
    torch.manual_seed(0)
    model = create_model("adversarial_vb", channels=1, latent_dim=4, noise_dim=3, width=8, code_disc_hidden=8,
                         joint_width=8).eval()
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    eps = torch.randn(2, 3)
    with torch.no_grad():
        a, b = model.encode(x, eps), model.encode(x, eps)
        torch.testing.assert_close(a, b)  # deterministic given the noise
        assert not torch.allclose(model.encode(x), model.encode(x))  # the noise matters: q(z|x) is not a point mass
        assert a.shape == (2, 4)
