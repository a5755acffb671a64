"""lambda-IJAE: the cyclic-shift likelihood r(y|x) (section 5), what each discriminator sees (eq. 3-5), loss values
on tiny tensors (eq. 6-7), the lambda extremes and the eq. 6 / J_lambda weightings."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo.losses
from conftest import tiny_recipe
from zoo import build_model
from zoo.config import ConfigError
from zoo.losses.likelihoods import near_delta_gaussian, roll_images, shift_size_probabilities

HARMONIC_6 = 1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5 + 1 / 6  # 2.45


# ------------------------------------------------------------------------------------------ r(y|x) and r'(y|x)
def test_shift_size_probabilities_are_normalised():
    p = shift_size_probabilities(5)
    torch.testing.assert_close(p, torch.tensor([1 / (s + 1) / HARMONIC_6 for s in range(6)], dtype=torch.float64))
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12) and p[0].item() == pytest.approx(0.408163, abs=1e-6)
    # the paper's normaliser sum_{i=1}^{S} 1/(i+1) = 1.45 would give probabilities summing to 2.45 / 1.45 = 1.69
    assert (HARMONIC_6 / (HARMONIC_6 - 1)) == pytest.approx(1.6897, abs=1e-4)
    with pytest.raises(ValueError, match="max_shift must be >= 0"):
        shift_size_probabilities(-1)


def test_roll_images_is_torch_roll_per_example():
    x = torch.randn(5, 2, 6, 7)
    dh, dw = torch.tensor([0, 2, -3, 0, 6]), torch.tensor([1, 0, 0, -4, 13])
    out = roll_images(x, dh, dw)
    for b in range(5):
        assert torch.equal(out[b], torch.roll(x[b], (int(dh[b]), int(dw[b])), dims=(-2, -1)))


def _identify_shifts(x: torch.Tensor, y: torch.Tensor, max_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(direction, size) of each y[b] as an exact roll of x[b]: -1 where no roll matches. Direction is -1 for s = 0
    (all directions agree). Images must be wider than 2 * max_shift so that different rolls differ."""
    n = x.shape[0]
    direction, size = torch.full((n,), -1), torch.full((n,), -1)
    size[(y == x).flatten(1).all(1)] = 0
    for s in range(1, max_shift + 1):
        for d, (dh, dw) in enumerate([(-s, 0), (s, 0), (0, -s), (0, s)]):  # up, down, left, right
            hit = (y == torch.roll(x, (dh, dw), dims=(-2, -1))).flatten(1).all(1)
            assert not (hit & (size >= 0)).any(), "an output matches two different rolls"
            direction[hit], size[hit] = d, s
    return direction, size


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of Pearson's chi-square goodness-of-fit test (df = K - 1) via the regularised upper incomplete gamma."""
    expected = probs * counts.sum()
    stat = ((counts - expected) ** 2 / expected).sum()
    return torch.special.gammaincc(torch.tensor((len(counts) - 1) / 2, dtype=torch.float64), stat / 2).item()


def test_cyclic_shift_frequencies_and_exact_rolls():
    n, S = 6000, 5
    x = torch.randn(n, 1, 12, 12)  # 12 > 2 S: a roll by s and the opposite roll by 12 - s never coincide
    y = zoo.losses.cyclic_shift(x, max_shift=S, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    direction, size = _identify_shifts(x, y, S)
    assert (size >= 0).all(), "some output is not an exact cyclic roll of its input"
    assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)  # the same pixels, moved

    size_counts = torch.bincount(size, minlength=S + 1).double()
    p_size = _chi_square_p(size_counts, shift_size_probabilities(S))
    dir_counts = torch.bincount(direction[size > 0], minlength=4).double()
    p_dir = _chi_square_p(dir_counts, torch.full((4,), 0.25, dtype=torch.float64))
    assert p_size > 1e-3 and p_dir > 1e-3, (size_counts.tolist(), dir_counts.tolist())
    # the test has power: uniform sizes, or P(s) proportional to 1 / (s + 1) without s = 0, are rejected outright
    assert _chi_square_p(size_counts, torch.full((S + 1,), 1 / (S + 1), dtype=torch.float64)) < 1e-12
    assert size_counts[0] > 0.35 * n  # P(0) = 1 / 2.45 = 0.408

    again = zoo.losses.cyclic_shift(x, max_shift=S, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, y)
    assert torch.equal(zoo.losses.cyclic_shift(x[:7], max_shift=0), x[:7])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        zoo.losses.cyclic_shift(x[0])


def test_cyclic_shift_direction_labels_say_where_the_content_moves():
    """The draw labelled "down" moves a lone bright pixel to a larger row index, "up" to a smaller one, "right" /
    "left" likewise along columns (the labels were once swapped)."""
    from zoo.losses.likelihoods import SHIFT_DIRECTIONS, sample_cyclic_shifts
    n = 400
    x = torch.zeros(n, 1, 12, 12)
    x[:, 0, 6, 6] = 1.0
    y = zoo.losses.cyclic_shift(x, max_shift=3, generator=torch.Generator().manual_seed(4))
    direction, size = sample_cyclic_shifts(n, 3, torch.Generator().manual_seed(4))
    where = y.flatten(1).argmax(1)
    row, col = where // 12, where % 12
    moved = {"down": (row - 6, col - 6), "up": (6 - row, col - 6), "right": (col - 6, row - 6),
             "left": (6 - col, row - 6)}
    for code, label in enumerate(SHIFT_DIRECTIONS):
        pick = direction == code
        along, across = moved[label]
        assert pick.sum() > 50 and torch.equal(along[pick], size[pick]) and (across[pick] == 0).all(), label


def test_near_delta_gaussian():
    g = torch.Generator().manual_seed(0)
    noise = near_delta_gaussian(torch.zeros(200_000, dtype=torch.float64), sigma=0.5, generator=g)
    assert abs(noise.mean().item()) < 0.005 and noise.std().item() == pytest.approx(0.5, rel=0.01)
    x = torch.full((1000,), 0.75, dtype=torch.float64)
    tiny = near_delta_gaussian(x, generator=g) - x  # sigma = 1e-8, section 5
    assert tiny.std().item() == pytest.approx(1e-8, rel=0.1)
    # float32 pixels in [0.5, 1) are 6e-8 apart: only |noise| > 3 sigma survives rounding, as one step (0.3 %)
    x32 = torch.full((100_000,), -0.75)
    moved = (near_delta_gaussian(x32, generator=g) - x32).abs()
    assert 0 < (moved > 0).float().mean().item() < 0.005
    assert torch.equal(moved[moved > 0], torch.full_like(moved[moved > 0], 2.0**-24))


# ------------------------------------------------------------------------------------------ the model
def tiny(**model) -> nn.Module:
    """The tiny recipe's model at 16 px (cheaper; the losses do not depend on the size) with `model` overrides."""
    recipe = tiny_recipe("ijae", [f"model.{k}={v}" for k, v in {"image_size": 16, **model}.items()])
    torch.manual_seed(0)
    return build_model(recipe)


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """n random images of the shape of `tiny()`'s model, (1, 16, 16), in [-1, 1]."""
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def record_inputs(module: nn.Module) -> list[tuple]:
    calls: list[tuple] = []
    module.register_forward_pre_hook(lambda m, args, kwargs: calls.append(args), with_kwargs=True)
    return calls


def test_discriminator_inputs():
    model = tiny()
    x = images()
    calls = {n: record_inputs(model.players[n]) for n in ("disc_x", "disc_pair", "disc_joint", "generator")}
    model.disc_phase(x)
    (x_real,), (fake,) = calls["disc_x"]
    assert torch.equal(x_real, x) and fake.shape == x.shape
    (z_prior,) = calls["generator"][0]
    (x1, z_p), (x2, z_q) = calls["disc_joint"]  # eq. 5: (x, z ~ p(z)) is the real class
    assert torch.equal(x1, x) and torch.equal(x2, x) and torch.equal(z_p, z_prior) and z_q.shape == (4, 8)
    (xr, y_real, zr), (xf, y_fake, zf) = calls["disc_pair"]  # eq. 4: real (x, z, y ~ r(y|x)), fake (x, z, r'(G(z)))
    assert torch.equal(xr, x) and torch.equal(xf, x) and torch.equal(zr, z_q) and torch.equal(zf, z_q)
    assert (_identify_shifts(x, y_real, 5)[1] >= 0).all()
    (z_rec,) = calls["generator"][1]
    assert torch.equal(z_rec, z_q)
    with torch.no_grad():
        torch.testing.assert_close(y_fake, model.players["generator"](z_q), atol=1e-6, rtol=0)
    # the pair discriminator stacks x and y side by side (Table 6)
    stacked = record_inputs(model.players["disc_pair"].body.stem.block1)
    model.disc_phase(x)
    assert stacked[0][0].shape == (4, 1, 16, 32)

    for calls_ in calls.values():
        calls_.clear()
    model.gen_phase(x)
    (x_g, y_g, z_g), = calls["disc_pair"]  # Theorem 1: D_tau(x, z, G(z)), no r' noise
    (z_gan,), (z_enc,) = calls["generator"]
    assert torch.equal(x_g, x) and torch.equal(z_g, z_enc) and z_gan.shape == z_enc.shape
    with torch.no_grad():
        torch.testing.assert_close(y_g, model.players["generator"](z_enc))


class Const(nn.Module):
    """A stub player returning `value + f(inputs)` with f a simple function of its inputs, as a (B,) logit."""

    def __init__(self, value: float, f=None):
        super().__init__()
        self.value, self.f = value, f

    def forward(self, *args, noise=None):
        f = self.f(*args) if self.f is not None else 0.0 * args[0].flatten(1).sum(1)
        return self.value + f


def stub(model, x: torch.Tensor, z_prior: torch.Tensor) -> None:
    """Deterministic stub players: E(x) = mean(x) * (1..L), G(z) = constant image tanh(sum z), fixed prior draws."""
    ramp = torch.arange(1.0, 1 + z_prior.shape[1])
    model.players["encoder"] = Const(0.0, lambda x, noise=None: x.mean((1, 2, 3))[:, None] * ramp)
    model.players["generator"] = Const(0.0, lambda z: torch.tanh(z.sum(1))[:, None, None, None].expand_as(x))
    model.prior = lambda n, dim, generator=None: z_prior


def test_loss_values_with_constant_logits():
    """Hand-computed: D_psi = 2, D_tau = -1, D_zeta = 0.5 everywhere, lambda = 0.3."""
    model = tiny(lam=0.3)
    x, z_prior = images(2), torch.randn(2, 8)
    stub(model, x, z_prior)
    model.players["disc_x"], model.players["disc_pair"], model.players["disc_joint"] = Const(2.), Const(-1.), Const(.5)
    disc = model.disc_phase(x)
    bce = {v: math.log1p(math.exp(-v)) + math.log1p(math.exp(v)) for v in (2.0, -1.0, 0.5)}  # eq. 3-5, real + fake
    assert disc.loss.item() == pytest.approx(sum(bce.values()), abs=1e-6)
    assert disc.logs["psi"].item() == pytest.approx(2.2538560, abs=1e-6)
    gen = model.gen_phase(x)
    assert gen.loss.item() == pytest.approx(0.7 * -2.0 + 0.3 * (1.0 - 0.5), abs=1e-6)  # -1.25
    assert (gen.logs["gan"].item(), gen.logs["recon"].item(), gen.logs["kl"].item()) == (-2.0, 1.0, -0.5)
    model.config.weighting = "eq6"  # G: 0.3 GAN + 0.7 recon; E: 0.3 (recon + KL)
    assert model.gen_phase(x).loss.item() == pytest.approx(0.3 * -2.0 + 0.7 * 1.0 + 0.3 * -0.5, abs=1e-6)


def test_loss_values_route_each_input():
    model = tiny(lam=0.4)
    x, z_prior = images(2, seed=3), torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    stub(model, x, z_prior)
    total = lambda t: t.flatten(1).sum(1)  # noqa: E731
    model.players["disc_x"] = Const(0.1, lambda v: 0.3 * total(v))
    model.players["disc_pair"] = Const(-0.2, lambda a, y, z: 0.05 * total(y) - 0.02 * total(a) + 0.1 * z.sum(1))
    model.players["disc_joint"] = Const(0.3, lambda a, z: total(a).mul(0.01) + 0.2 * z.sum(1))
    E, G = model.players["encoder"], model.players["generator"]
    z_q, g_p = E(x), G(z_prior)
    g_q = G(z_q)
    d_x = lambda v: 0.1 + 0.3 * total(v)  # noqa: E731
    d_pair = lambda y, z: -0.2 + 0.05 * total(y) - 0.02 * total(x) + 0.1 * z.sum(1)  # noqa: E731
    d_joint = lambda z: 0.3 + 0.01 * total(x) + 0.2 * z.sum(1)  # noqa: E731
    bce = lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean()  # noqa: E731
    # eq. 3, 4, 5; the stub D_tau sees y only through its pixel sum, which no cyclic roll changes
    expected = bce(d_x(x), d_x(g_p)) + bce(d_pair(x, z_q), d_pair(g_q, z_q)) + bce(d_joint(z_prior), d_joint(z_q))
    torch.testing.assert_close(model.disc_phase(x).loss, expected, atol=1e-5, rtol=0)
    gan, nll, kl = -d_x(g_p).mean(), -d_pair(g_q, z_q).mean(), -d_joint(z_q).mean()
    torch.testing.assert_close(model.gen_phase(x).loss, 0.6 * gan + 0.4 * (nll + kl))  # section 4 / eq. 6-7

    for kind, scale in (("l1", 0.5), ("l2", 0.25)):  # explicit reconstruction terms of the ablations
        ablation = tiny(lam=0.4, likelihood=kind, recon_scale=scale)
        assert "disc_pair" not in ablation.players
        assert ablation.default_optim(ablation.config)["disc"].players == ["disc_x", "disc_joint"]
        stub(ablation, x, z_prior)
        for name in ("disc_x", "disc_joint"):
            ablation.players[name] = model.players[name]
        n = x[0].numel()
        if kind == "l1":  # -log Laplace(x | G(z), b), summed over pixels
            nll = ((x - g_q).abs() / scale).flatten(1).sum(1) + n * math.log(2 * scale)
        else:  # -log N(x | G(z), sigma^2)
            log_norm = math.log(scale) + 0.5 * math.log(2 * math.pi)
            nll = ((x - g_q) ** 2 / (2 * scale**2)).flatten(1).sum(1) + n * log_norm
        out = ablation.gen_phase(x)
        torch.testing.assert_close(out.logs["recon"], nll.mean())
        torch.testing.assert_close(out.loss, 0.6 * gan + 0.4 * (nll.mean() + kl))
        assert set(ablation.disc_phase(x).logs) == {"psi", "zeta"}


def grads(model, x: torch.Tensor, players=("encoder", "generator"), seed: int = 7) -> dict[str, torch.Tensor]:
    """Gradients of the eq. 6-7 phase loss for `players`, with the model's RNG draws fixed by `seed`."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    model.gen_phase(x).loss.backward()
    return {f"{p}.{n}": (q.grad.clone() if q.grad is not None else torch.zeros_like(q))
            for p in players for n, q in model.players[p].named_parameters()}


def rerandomise(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def same(a: dict, b: dict, atol: float = 1e-6) -> bool:
    return all(torch.allclose(a[k], b[k], atol=atol, rtol=1e-5) for k in a)


@pytest.mark.parametrize("lam,disc", [(1.0, "disc_x"), (0.0, "disc_pair")])
def test_lambda_extremes(lam, disc):
    """lambda = 1: the generator gets no gradient from D_psi; lambda = 0: none from D_tau (J_lambda weighting)."""
    model, x = tiny(lam=lam), images()
    before = grads(model, x, ("generator",))
    assert any(g.abs().sum() > 0 for g in before.values())
    rerandomise(model.players[disc], seed=1)
    assert same(grads(model, x, ("generator",)), before, atol=0)  # exactly: the term is multiplied by 0
    model.config.lam = 0.5  # control: with a non-zero weight the same change does move the gradient
    half = grads(model, x, ("generator",))
    rerandomise(model.players[disc], seed=2)
    assert not same(grads(model, x, ("generator",)), half)
    if lam == 0.0:  # the encoder is trained by the ELBO only, whose weight is lambda
        model.config.lam = 0.0
        assert all(g.abs().sum() == 0 for g in grads(model, x, ("encoder",)).values())


def test_gradients_are_linear_in_lambda_and_eq6_swaps_the_generator_weights():
    model, x = tiny(), images()
    at = {}
    for lam in (0.0, 0.3, 0.7, 1.0):
        model.config.lam = lam
        at[lam] = grads(model, x)
    assert same(at[0.3], {k: 0.7 * at[0.0][k] + 0.3 * at[1.0][k] for k in at[0.0]})
    model.config.weighting, model.config.lam = "eq6", 0.3
    eq6 = grads(model, x)
    gen = [k for k in eq6 if k.startswith("generator.")]
    enc = [k for k in eq6 if k.startswith("encoder.")]
    # eq. 6 as printed: G gets 0.3 GAN + 0.7 reconstruction, i.e. the J_lambda generator gradient at lambda = 0.7;
    # eq. 7: E keeps lambda = 0.3
    assert same({k: eq6[k] for k in gen}, {k: at[0.7][k] for k in gen})
    assert same({k: eq6[k] for k in enc}, {k: at[0.3][k] for k in enc})
    assert not same({k: eq6[k] for k in gen}, {k: at[0.3][k] for k in gen})


def test_config_errors_teach():
    with pytest.raises(ConfigError, match=r"model.lam: got 1.5, expected a weight in \[0, 1\]"):
        tiny(lam=1.5)
    with pytest.raises(ConfigError, match="model.max_shift: got 16"):
        tiny(max_shift=16)
    with pytest.raises(ConfigError, match="allowed values: 'implicit', 'l1', 'l2'"):
        tiny(likelihood="l3")
    with pytest.raises(ConfigError, match="model.noise_dim: got 16 with width 8; enc_noise 'position'"):
        tiny(noise_dim=16)
    # the per-channel options take any noise_dim
    assert tiny(noise_dim=16, enc_noise="channel", disc_noise="channel").players["encoder"].noise_dim == 16


def test_encode_reconstruct_and_sample():
    model, x = tiny().eval(), images(3)
    noise = torch.randn(3, 3, 8)
    assert torch.equal(model.encode(x, noise), model.encode(x, noise))  # E(x, xi) is a function of (x, xi)
    assert not torch.equal(model.encode(x), model.encode(x))  # an implicit posterior: fresh xi per call
    with torch.no_grad():
        assert model.reconstruct(x).shape == x.shape and model.sample(5).abs().max() <= 1
