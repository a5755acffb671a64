"""Latent-space analyses (Rosca et al. 2018, Algorithms 1-3, eq. 5) against closed forms, a naive reference and a
trained VAE checkpoint; bounded memory over 60k posteriors."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from conftest import tiny_recipe
from zoo import build_model, create_model
from zoo.data import TensorImages
from zoo.evaluation import latent
from zoo.losses.divergences import kl_normal
from zoo.studies.latent_analysis import low_posterior_codes, marginal_kl_density_ratio
from zoo.training import Trainer


def naive_log_q(z, mu, logvar):
    """log (1/N) sum_n N(z; mu_n, diag exp(logvar_n)) with torch.distributions, all pairs at once."""
    normal = torch.distributions.Normal(mu.double(), (0.5 * logvar.double()).exp())
    log_pairs = normal.log_prob(z.double()[:, None, :]).sum(-1)  # (M, N)
    return torch.logsumexp(log_pairs, dim=1) - math.log(mu.shape[0])


def test_chunked_log_marginal_posterior_matches_naive_reference():
    g = torch.Generator().manual_seed(0)
    mu, logvar, z = torch.randn(37, 3, generator=g), torch.randn(37, 3, generator=g), torch.randn(11, 3, generator=g)
    calls = []
    got = latent.log_marginal_posterior(z, mu, logvar, code_chunk=4, data_chunk=5,
                                        progress=lambda done, total: calls.append((done, total)))
    torch.testing.assert_close(got, naive_log_q(z, mu, logvar))
    assert calls[-1] == (24, 24) and len(calls) == 24  # ceil(11 / 4) x ceil(37 / 5) blocks, each reported


def test_monte_carlo_marginal_kl_equals_closed_form_for_identical_posteriors():
    """Every x encodes to the same N(m, diag s^2): q(z) is that Gaussian, KL[q(z)||p(z)] its closed form, I = 0."""
    m, lv = torch.tensor([0.5, -1.0, 0.3]), torch.tensor([0.5, 2.0, 0.1]).log()
    result = latent.marginal_kl_mc(m.expand(100, 3), lv.expand(100, 3), num_z=20000,
                                   generator=torch.Generator().manual_seed(0))
    exact = kl_normal(m, lv).item()  # 1.6213
    assert abs(result.marginal_kl - exact) < 4 * result.marginal_kl_stderr
    assert result.marginal_kl_stderr < 0.02
    assert abs(result.mutual_information) < 1e-9  # log q(z|x) == log q(z) exactly
    assert result.avg_posterior_kl == pytest.approx(exact)
    assert result.log_n == pytest.approx(math.log(100))


class FixedGaussianEncoder(nn.Module):
    """A model whose q(z|x) is N((a, 0), I) for bright images and N((-a, 0), I) for dark ones."""

    has_encoder = True

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def posterior(self, x):
        mu = torch.zeros(x.shape[0], 2)
        mu[:, 0] = torch.where(x.flatten(1).mean(1) > 0, self.a, -self.a)
        return mu, torch.zeros_like(mu)


def test_monte_carlo_marginal_kl_of_a_known_two_component_mixture():
    """30 images encode to N((a, 0), I), 50 to N((-a, 0), I), a = 20: q(z) = w1 N((a,0), I) + w2 N((-a,0), I) with
    components that do not overlap, so KL[q(z)||p(z)] = a^2 / 2 - H(w) and I[x; z] = H(w) (eq. 5), H(w) = 0.6616."""
    images = torch.cat([torch.full((30, 1, 2, 2), 255), torch.zeros(50, 1, 2, 2)]).to(torch.uint8)
    mu, logvar = latent.encode_posteriors(FixedGaussianEncoder(20.0), TensorImages(images), batch_size=16)
    assert mu.shape == (80, 2) and (mu[:30, 0] == 20).all() and (mu[30:, 0] == -20).all()
    result = latent.marginal_kl_mc(mu, logvar, num_z=4000, generator=torch.Generator().manual_seed(1))
    w = torch.tensor([30 / 80, 50 / 80])
    entropy = -(w * w.log()).sum().item()
    assert result.avg_posterior_kl == pytest.approx(200.0)
    assert abs(result.marginal_kl - (200.0 - entropy)) < 4 * result.marginal_kl_stderr
    assert result.mutual_information == pytest.approx(entropy, abs=0.02)  # per-draw I = -log w_component


def test_deterministic_encoders_are_point_masses_unless_smoothed():
    model = create_model("vgh", channels=1, width=8, latent_dim=3, code_disc_hidden=8)
    images = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)
    mu, logvar = latent.encode_posteriors(model, images, batch_size=8)
    assert logvar is None and mu.shape == (20, 3)
    with torch.no_grad():
        torch.testing.assert_close(mu, model.encode(images.float() / 127.5 - 1))
    with pytest.raises(ValueError, match="point mass.*smoothing_std"):
        latent.marginal_kl_mc(mu, logvar)
    _, smoothed = latent.encode_posteriors(model, images, smoothing_std=0.5)
    torch.testing.assert_close(smoothed, torch.full((20, 3), 2 * math.log(0.5)))
    vae = create_model("vae", channels=1, width=8, latent_dim=3)
    with pytest.raises(ValueError, match="only for deterministic encoders"):
        latent.encode_posteriors(vae, images, smoothing_std=0.5)


def test_density_ratio_estimate_recovers_a_known_kl(one_thread):
    """Algorithm 3 with q(z) = N((1, 0), 0.6^2 I): a small classifier's mean logit is near the closed form 0.882."""
    mu, logvar = torch.tensor([[1.0, 0.0]]).expand(500, 2), torch.full((500, 2), 2 * math.log(0.6))
    torch.manual_seed(0)
    result = marginal_kl_density_ratio(mu, logvar, steps=1500, hidden=64, layers=2, lr=1e-3,
                                              betas=(0.5, 0.9), generator=torch.Generator().manual_seed(1))
    exact = kl_normal(mu[:1], logvar[:1]).item()
    assert result["marginal_kl"] == pytest.approx(exact, rel=0.1)
    assert result["final_loss"] < math.log(4) - 0.2  # the classifier learned something


def test_ratio_classifier_trains_to_convergence_and_reports_it(one_thread):
    """With `window`, Algorithm 3's classifier stops once its windowed mean loss stops improving (tolerance in nats),
    well before the cap, reports it converged, and still recovers the closed-form KL 0.882 within 10 %."""
    from zoo.evaluation.density_ratio import converged
    assert not converged([1.0] * 15, 10, 1e-3)  # fewer than two windows
    assert converged([1.0] * 10 + [0.9995] * 10, 10, 1e-3) and not converged([1.0] * 10 + [0.9] * 10, 10, 1e-3)
    mu, logvar = torch.tensor([[1.0, 0.0]]).expand(500, 2), torch.full((500, 2), 2 * math.log(0.6))
    torch.manual_seed(0)
    result = marginal_kl_density_ratio(mu, logvar, steps=20_000, hidden=64, layers=2, lr=1e-3,
                                                      betas=(0.5, 0.9), generator=torch.Generator().manual_seed(1),
                                                      window=500, tol=0.01)
    assert result["converged"] and 1000 <= result["steps"] < 20_000 and result["steps"] % 500 == 0
    assert result["marginal_kl"] == pytest.approx(kl_normal(mu[:1], logvar[:1]).item(), rel=0.1)


def test_reconstruction_term_is_the_mean_log_likelihood_of_one_posterior_draw():
    """A model with q(z|x) = N(mu_x, I) and log p(x|z) = -|z|^2: E_q log p(x|z) = -(|mu_x|^2 + D) in closed form; the
    estimate is within 4 standard errors of it, and the standard error is the spread of the draws over sqrt(N)."""

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device

        def posterior(self, x):
            mu = x.flatten(1)[:, :3]
            return mu, torch.zeros_like(mu)

        def log_px_given_z(self, x, z):
            return -(z ** 2).sum(1)

    images = torch.rand(4000, 1, 2, 2) * 2 - 1  # floats in [-1, 1]: passed through as they are
    term = latent.reconstruction_term(Toy(), images, generator=torch.Generator().manual_seed(0))
    exact = -(images.flatten(1)[:, :3] ** 2).sum(1).mean().item() - 3
    assert term.n == 4000 and 0 < term.stderr < 0.1
    assert abs(term.mean - exact) < 4 * term.stderr, (term.mean, exact, term.stderr)


def test_low_posterior_codes_are_the_lowest_of_the_pool():
    mu, logvar = torch.tensor([[2.0, 0.0]]).expand(50, 2), torch.full((50, 2), 2 * math.log(0.3))
    z, log_q = low_posterior_codes(mu, logvar, 5, num_z=400, generator=torch.Generator().manual_seed(3))
    pool = torch.randn(400, 2, generator=torch.Generator().manual_seed(3))
    all_log_q = naive_log_q(pool, mu, logvar)
    torch.testing.assert_close(log_q, all_log_q.sort().values[:5])
    torch.testing.assert_close(log_q, naive_log_q(z, mu, logvar))
    assert (z[:, 0] < 0).all()  # far from q(z)'s mass at (2, 0)


def test_sixty_thousand_posteriors_stream_in_bounded_blocks(monkeypatch):
    """Algorithm 2's log-sum-exp over 60k MNIST-sized posteriors never holds more than one block of densities."""
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(60_000, 50, generator=g), torch.randn(60_000, 50, generator=g) * 0.1 - 1
    largest, real = [0], latent.log_density_block

    def spy(z, m, lv):
        largest[0] = max(largest[0], z.shape[0] * m.shape[0])
        return real(z, m, lv)

    monkeypatch.setattr(latent, "log_density_block", spy)
    reports = []
    result = latent.marginal_kl_mc(mu, logvar, num_z=300, generator=g, code_chunk=128, data_chunk=8192,
                                   progress=lambda done, total: reports.append((done, total)))
    assert largest[0] == 128 * 8192  # 8 MB of float64 at a time, not 300 x 60000
    assert reports[-1] == (3 * 8, 3 * 8)  # ceil(300/128) x ceil(60000/8192) blocks, progress after each
    assert math.isfinite(result.marginal_kl) and result.num_points == 60_000
    assert result.mutual_information <= result.log_n + 1e-6


def test_latent_analysis_tool_on_a_vae_checkpoint(tmp_path, shared_data, capsys, one_thread):
    recipe = tiny_recipe("vae", [f"data.root={shared_data}", "train.max_steps=10", "data.options={limit: 256}"])
    torch.manual_seed(0)
    Trainer(build_model(recipe), recipe, tmp_path / "run").train()
    from zoo.studies import latent_analysis as tool
    out = tmp_path / "latent"
    assert tool.main([str(tmp_path / "run"), "--num-z", "1000", "--ratio-steps", "50", "--ratio-hidden", "32",
                      "--low-posterior", "9", "--low-posterior-pool", "500", "--out", str(out)]) == 0
    report = json.loads((out / "latent.json").read_text())
    mc = report["monte_carlo"]
    assert report["data"]["num_points"] == 256 and report["posterior"] == "gaussian"
    assert mc["log_n"] == pytest.approx(math.log(256))
    # eq. 5 on the same draws: marginal KL + I reproduces the closed-form average posterior KL
    assert mc["marginal_kl"] + mc["mutual_information"] == pytest.approx(mc["avg_posterior_kl"], rel=0.1, abs=0.1)
    assert -1e-6 <= mc["mutual_information"] <= mc["log_n"] + 1e-6
    assert math.isfinite(report["density_ratio"]["marginal_kl"])
    from PIL import Image
    width, height = Image.open(out / "low_posterior.png").size
    assert (width, height) == (2 * (3 * 29 + 1) + 8, 3 * 29 + 1)  # two 3 x 3 grids of 28 px (padding 1), 8 px gap
    assert "Algorithm 2: KL[q(z)||p(z)]" in capsys.readouterr().out


class ShiftedPosteriors(nn.Module):
    """An encoder whose q(z|x) = N(x[:2] + (1, 0), 0.6^2 I): inputs near 0 give codes near the closed-form case."""
    has_encoder = True

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def posterior(self, x):
        mu = x.flatten(1)[:, :2] + torch.tensor([1.0, 0.0])
        return mu, torch.full_like(mu, 2 * math.log(0.6))


def test_appendix_e_table1_reports_how_far_its_classifiers_got(one_thread):
    """Table 1's density-ratio rows carry their classifiers' state: the mean final loss over seeds (chance is log 4),
    how many seeds converged and the mean steps trained, each equal to the per-seed details it summarises."""
    from zoo.studies.latent_analysis import appendix_e_table1

    images = torch.rand(200, 1, 2, 2) * 0.1 - 0.05
    ratio = [{"name": "loose", "layers": 2, "hidden": 16, "steps": 300, "lr": 1e-3, "seeds": 2, "window": 20,
              "tol": 10.0},  # any window "converges": both stop at the first check after two windows
             {"name": "capped", "layers": 2, "hidden": 16, "steps": 30, "lr": 1e-3, "seeds": 3}]  # no window
    values, details = appendix_e_table1(ShiftedPosteriors(), images, num_z=256, ratio=ratio)
    for name, seeds, steps, converged in (("loose", 2, 40, 2.0), ("capped", 3, 30, 0.0)):
        runs = next(c for c in details["classifiers"] if c["name"] == name)["seeds"]
        assert len(runs) == seeds and [r["steps"] for r in runs] == [steps] * seeds
        assert values[f"{name}_steps"] == steps and values[f"{name}_converged"] == converged
        assert values[f"{name}_final_loss"] == pytest.approx(sum(r["final_loss"] for r in runs) / seeds)
        assert values[name] == pytest.approx(sum(r["marginal_kl"] for r in runs) / seeds)
        assert 0.5 < values[f"{name}_final_loss"] < 1.6  # cross-entropy of two BCE terms, near chance log 4 = 1.386


class _Stop(Exception):
    """Stands in for a session's end in the middle of a classifier's training."""


def _shifted_sampler(generator, calls=None, stop_after=None):
    def sample(n):
        if calls is not None:
            calls.append(n)
            if stop_after is not None and len(calls) > stop_after:
                raise _Stop
        return torch.randn(n, 2, generator=generator) + torch.tensor([1.0, 0.0])
    return sample


def _train_small(path, *, generator_seed=1, stop_after=None, window=None, identity=None):
    from zoo.evaluation.density_ratio import ClassifierState, ratio_classifier, train_ratio_classifier
    torch.manual_seed(0)
    classifier = ratio_classifier(2, 16, 2)
    generator = torch.Generator().manual_seed(generator_seed)
    state = ClassifierState(path, identity or {"case": "small"}, generator=generator, every=25)
    losses = train_ratio_classifier(classifier, _shifted_sampler(generator, [], stop_after),
                                    lambda n: torch.randn(n, 2, generator=generator), steps=120, lr=1e-3,
                                    window=window, tol=1e-6, state=state)
    return classifier, losses, generator, state


def test_ratio_classifier_stopped_mid_training_resumes_to_the_same_weights(tmp_path, one_thread):
    """A classifier stopped at step 60 of 120 (its state saved at step 50) and rerun ends with exactly the weights,
    losses and sampler state of one that never stopped; the resume starts at the saved step 50, not at 0."""
    whole, whole_losses, whole_gen, _ = _train_small(tmp_path / "whole.pt")
    with pytest.raises(_Stop):
        _train_small(tmp_path / "stopped.pt", stop_after=60)
    resumed, resumed_losses, resumed_gen, state = _train_small(tmp_path / "stopped.pt")
    assert state.resumed_from == 50 and len(resumed_losses) == 120
    assert resumed_losses == whole_losses
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(whole_gen.get_state(), resumed_gen.get_state())
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file stays behind


def test_finished_classifier_is_not_trained_again_and_other_settings_start_afresh(tmp_path, one_thread):
    """A finished state is reused as is (no sampling, same weights); a state saved under other settings or a
    truncated file is never trusted: a warning, then training from scratch to the same result as a fresh run."""
    first, losses, _, _ = _train_small(tmp_path / "s.pt")
    again, again_losses, _, state = _train_small(tmp_path / "s.pt", stop_after=0)  # any sampling would raise
    assert state.resumed_from == 120 and again_losses == losses
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    with pytest.warns(UserWarning, match="other settings"):
        _, other, _, state = _train_small(tmp_path / "s.pt", generator_seed=2, identity={"case": "other"})
    assert state.resumed_from == 0 and other != losses and len(other) == 120
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="could not resume"):
        _, fresh, _, state = _train_small(tmp_path / "bad.pt")
    assert state.resumed_from == 0 and fresh == losses


def test_appendix_e_table1_with_saved_states_gives_the_same_numbers_and_skips_finished_classifiers(
        tmp_path, one_thread, monkeypatch):
    """Table 1 measured with classifier states equals Table 1 measured without; measured again from the same folder,
    no classifier trains (the loss function would raise) and every value is identical."""
    import zoo.evaluation.density_ratio as density_ratio
    from zoo.studies.latent_analysis import appendix_e_table1

    images = torch.rand(100, 1, 2, 2) * 0.1 - 0.05
    ratio = [{"name": "l2", "layers": 2, "hidden": 16, "steps": 60, "lr": 1e-3, "seeds": 2}]
    plain, _ = appendix_e_table1(ShiftedPosteriors(), images, num_z=128, ratio=ratio)
    saved, _ = appendix_e_table1(ShiftedPosteriors(), images, num_z=128, ratio=ratio, state_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l2-seed0.pt", "l2-seed1.pt"]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished classifier was trained again")
    monkeypatch.setattr(density_ratio, "discriminator_loss", no_training)
    again, _ = appendix_e_table1(ShiftedPosteriors(), images, num_z=128, ratio=ratio, state_dir=tmp_path)
    assert plain == saved == again
    assert plain["l2_seed_std"] > 0  # the two seeds are different classifiers, so equality above is not vacuous
