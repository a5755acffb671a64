"""VEEGAN: discriminator and generator/reconstructor losses by hand (Srivastava et al. Algorithm 1 with Rosca's l1
code reconstruction), the reconstructor's gradient, and the encoder API."""
from __future__ import annotations

import pytest
import torch

from stubs import Affine, affine, mean, rows, softplus
from zoo import create_model

X = torch.tensor([[-1.0, 1.0, 0.0, 1.0], [1.0, -1.0, 1.0, 0.5]]).view(2, 1, 2, 2)
G_W, G_B = [[1.0, 0.0], [0.0, 1.0], [0.5, -0.5], [-1.0, 0.25]], [0.0, 0.1, 0.0, -0.2]  # z (2) -> x (1x2x2)
F_W, F_B = [[0.5, 0.0, 0.0, -0.5], [0.0, 1.0, 0.5, 0.0]], [0.1, 0.0]  # x -> z
D_W, D_B = [[0.1, 0.2, -0.1, 0.3, 1.0, -0.5]], [0.05]  # D(x, z)


def stubbed(**overrides):
    model = create_model("veegan", channels=1, latent_dim=2, width=8, code_disc_hidden=8, joint_width=8, **overrides)
    model.players["generator"] = Affine(G_W, G_B, out_shape=(1, 2, 2))
    model.players["reconstructor"] = Affine(F_W, F_B)
    model.players["discriminator"] = Affine(D_W, D_B)
    return model


def d_logit(x: list[float], z: list[float]) -> float:
    return affine(D_W, D_B, x, z)[0]


def test_discriminator_loss_by_hand_generated_pairs_are_class_one():
    model = stubbed()
    out = model.phase_loss("disc", X, step=0)
    (x_gen, z), (x_data, z_data) = model.players["discriminator"].calls
    torch.testing.assert_close(x_gen.flatten(1), torch.tensor([affine(G_W, G_B, zi) for zi in z.tolist()]))
    assert torch.equal(x_data, X)
    torch.testing.assert_close(z_data, torch.tensor([affine(F_W, F_B, x) for x in rows(X)]))
    expected = mean([softplus(-d_logit(x, zi)) for x, zi in zip(rows(x_gen), z.tolist())]) + \
        mean([softplus(d_logit(x, zi)) for x, zi in zip(rows(X), z_data.tolist())])  # Alg. 1 line 7
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_generator_loss_is_log_ratio_plus_l1_code_reconstruction_by_hand():
    model = stubbed()
    out = model.phase_loss("gen", X, step=0)
    ((x_gen, z),) = model.players["discriminator"].calls
    z = z.tolist()
    x_hat = [affine(G_W, G_B, zi) for zi in z]
    log_ratio = mean([d_logit(x, zi) for x, zi in zip(x_hat, z)])  # the raw logit: no sigmoid, no log
    l1 = mean([sum(abs(a - b) for a, b in zip(zi, affine(F_W, F_B, x))) for x, zi in zip(x_hat, z)])
    assert out.loss.item() == pytest.approx(log_ratio + l1, rel=1e-6)
    assert out.logs["log_ratio"].item() == pytest.approx(log_ratio, rel=1e-6)
    assert out.logs["code_l1"].item() == pytest.approx(l1, rel=1e-6)


def test_reconstructor_gradient_is_the_l1_term_only():
    """Algorithm 1 line 8: F is trained by the code reconstruction alone; D(G(z), z) does not depend on F."""
    model = stubbed()
    torch.manual_seed(3)
    model.phase_loss("gen", X, step=0).loss.backward()
    F = model.players["reconstructor"]
    grad = F.weight.grad.clone()
    ((x_gen, z),) = model.players["discriminator"].calls
    # d/dW_F mean_i ||z_i - (W_F x_i + b)||_1 = -mean_i sign(z_i - F(x_i)) x_i^T
    residual = z - (x_gen.flatten(1) @ F.weight.detach().T + F.bias.detach())
    expected = -(residual.sign()[:, :, None] * x_gen.flatten(1)[:, None, :]).mean(0)
    torch.testing.assert_close(grad, expected)


def test_adversarial_reconstructor_adds_minus_the_data_pair_logit_to_F_only():
    """reconstructor_adversarial=True: loss = mean D(G(z), z) + l1 - mean D(x, F(x)); G's gradient is unchanged and
    F's gains -mean_i w_z x_i^T, w_z being D's weights on the code (affine stubs)."""
    plain, adversarial = stubbed(), stubbed(reconstructor_adversarial=True)
    torch.manual_seed(3)
    base = plain.phase_loss("gen", X, step=0)
    base.loss.backward()
    torch.manual_seed(3)
    out = adversarial.phase_loss("gen", X, step=0)
    out.loss.backward()
    (_, z_gen), (x_data, z_data) = adversarial.players["discriminator"].calls
    assert torch.equal(x_data, X)
    data_log_ratio = mean([d_logit(x, zi) for x, zi in zip(rows(X), z_data.tolist())])
    assert out.loss.item() == pytest.approx(base.loss.item() - data_log_ratio, rel=1e-6)
    assert out.logs["data_log_ratio"].item() == pytest.approx(data_log_ratio, rel=1e-6)
    G, G0 = adversarial.players["generator"], plain.players["generator"]
    torch.testing.assert_close(G.weight.grad, G0.weight.grad)
    w_z = torch.tensor(D_W[0][4:])  # D's weights on the code half of its input
    expected = plain.players["reconstructor"].weight.grad - (w_z[:, None] * X.flatten(1).mean(0)[None, :])
    torch.testing.assert_close(adversarial.players["reconstructor"].weight.grad, expected)


def test_encoder_api_is_the_deterministic_reconstructor():
    torch.manual_seed(0)
    model = create_model("veegan", channels=1, latent_dim=4, width=8, code_disc_hidden=8, joint_width=8).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        torch.testing.assert_close(z, model.players["reconstructor"](x))
        mu, logvar = model.posterior(x)
        assert logvar is None  # a point mass: the latent analyses treat it as deterministic
        torch.testing.assert_close(mu, z)
        torch.testing.assert_close(model.reconstruct(x), model.players["generator"](z))
        torch.testing.assert_close(model.decode(z), model.players["generator"](z))
