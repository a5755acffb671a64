"""Protocols that make numbers comparable: the small-image MS-SSIM protocol against pytorch-msssim, the separable
blur, samples independent of the batch size, cached reference statistics, metric options from the command line and
metrics that refuse data they cannot score."""
from __future__ import annotations

import importlib

import pytest
import torch

from conftest import SHARED, RandomImages, tiny_recipe
from zoo.config import DataConfig
from zoo.data import TensorImages
from zoo.evaluation import EvalContext, EvaluationError, msssim
from zoo.evaluation.functional import (combine_ms_ssim_terms, gaussian_blur_valid, gaussian_window,
                                       gaussian_window_1d, ms_ssim, ms_ssim_terms)
from zoo.registry import METRICS

SMALL = msssim.PROTOCOLS["small3"]


def run(metric: str, ctx: EvalContext) -> dict:
    return {r.metric: r for r in METRICS.get(metric)(ctx)}


# ------------------------------------------------------------------------------------------------------- MS-SSIM
@pytest.mark.parametrize("side, window, sigma", [(32, 11, 1.5), (64, 11, 1.5), (28, 7, 1.5), (9, 4, 0.55)])
def test_two_1d_passes_equal_the_2d_gaussian_window(side, window, sigma):
    x = torch.rand(3, 2, side, side, generator=torch.Generator().manual_seed(side), dtype=torch.float64) * 255
    kernel = gaussian_window(window, sigma)[None, None]
    full = torch.nn.functional.conv2d(x.reshape(6, 1, side, side), kernel).reshape(3, 2, side - window + 1, -1)
    assert (gaussian_blur_valid(x, window, sigma) - full).abs().max().item() < 1e-12  # values up to 255
    assert torch.allclose(gaussian_window(window, sigma).sum(), torch.tensor(1.0, dtype=torch.float64))


def _pytorch_msssim_terms(x, y, weights, window, sigma):
    """cs_1 .. cs_{M-1}, ssim_M per image from pytorch-msssim's own per-scale function (channel means averaged)."""
    ref = importlib.import_module("pytorch_msssim.ssim")
    win = gaussian_window_1d(window, sigma).view(1, 1, 1, window).repeat(x.shape[1], 1, 1, 1)
    terms = []
    for level in range(len(weights)):
        ssim, cs = ref._ssim(x, y, data_range=255.0, win=win, size_average=False)  # (B, C) each
        terms.append((ssim if level == len(weights) - 1 else cs).mean(dim=1))
        x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    return torch.stack(terms, dim=1)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (3, 32, 32)])
def test_small_image_protocol_terms_equal_pytorch_msssim(shape):
    """pytorch-msssim's per-scale function is the reference (its ms_ssim asserts side > (window - 1) * 16 whatever
    the number of scales, so it refuses 28-32 px images outright)."""
    g = torch.Generator().manual_seed(sum(shape))
    base = torch.rand(8, *shape, generator=g, dtype=torch.float64) * 255
    x, y = base[:4], (0.6 * base[:4] + 0.4 * base[4:]).round()  # correlated pairs: terms of both signs
    ours = ms_ssim_terms(x, y, 255.0, SMALL.window, SMALL.sigma, scales=3, shrink=SMALL.shrink)
    assert torch.allclose(ours, _pytorch_msssim_terms(x, y, SMALL.weights, SMALL.window, SMALL.sigma), atol=1e-12)
    if shape[0] == 1:  # one channel: pytorch-msssim's combination (relu per term, weighted product) is ours
        relu = _pytorch_msssim_terms(x, y, SMALL.weights, SMALL.window, SMALL.sigma).relu()
        expected = relu.pow(torch.tensor(SMALL.weights, dtype=torch.float64)).prod(1)
        assert torch.allclose(ms_ssim(x, y, window=7, weights=SMALL.weights, normalize="relu"), expected, atol=1e-12)
    # small3 maps each term to (t + 1) / 2 (torchmetrics' "simple"): prod ((t + 1) / 2)^w, never clamped
    mapped = ms_ssim(x, y, window=SMALL.window, sigma=SMALL.sigma, weights=SMALL.weights, normalize="simple")
    assert torch.allclose(mapped, ((ours + 1) / 2).pow(torch.tensor(SMALL.weights, dtype=torch.float64)).prod(1))
    assert sum(SMALL.weights) == pytest.approx(1.0) and SMALL.weights[1] / SMALL.weights[0] == pytest.approx(
        0.2856 / 0.0448)


def test_clamp_rate_of_random_mnist_test_pairs_under_both_protocols(shared_data):
    """The issue's finding (about half of random MNIST test pairs clamped by five scales) and the fix (none)."""
    from zoo.data import load_dataset
    images = load_dataset("mnist", "test", shared_data).as_uint8_tensor()
    images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:1000]]
    d5, clamped5, negative5 = msssim.pair_diversity(images, msssim.PROTOCOLS["tf5"])
    d3, clamped3, negative3 = msssim.pair_diversity(images, SMALL)
    assert 0.40 < clamped5.double().mean() < 0.62 and torch.equal(clamped5, negative5)
    assert (d5[clamped5] == 1).all()  # every clamped pair scores diversity exactly 1
    assert clamped3.sum() == 0 and negative3.double().mean() < 0.3 and (d3 < 1).all()
    assert 0.30 < d3.mean() < 0.45  # the MNIST test split's own small3 diversity (0.38 on 1,000 pairs)
    assert msssim.protocol_for(28).name == msssim.protocol_for(32).name == "small3"
    assert msssim.protocol_for(64).name == "tf5"  # Rosca et al.'s CelebA protocol, unchanged
    with pytest.raises(EvaluationError, match="unknown protocol 'x'; choose one of auto, tf5, small3"):
        msssim.protocol_for(28, "x")


def test_tf5_is_the_rosca_protocol_at_64px():
    p = msssim.PROTOCOLS["tf5"]
    assert (p.weights, p.window, p.sigma, p.shrink, p.normalize) == ((0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 11,
                                                                     1.5, True, "relu")
    x = RandomImages(4, (3, 64, 64), seed=3).images.double()
    terms = ms_ssim_terms(x[:2], x[2:], scales=5)
    assert torch.equal(ms_ssim(x[:2], x[2:]), combine_ms_ssim_terms(terms, p.weights, "relu"))


# ------------------------------------------------------------------------------------------------------- samples
def _tiny_model(name: str = "dcgan"):
    from zoo import build_model
    torch.manual_seed(0)
    return build_model(tiny_recipe(name))


@pytest.mark.parametrize("name", ["dcgan", "vae"])
def test_samples_do_not_depend_on_the_batch_size(name):
    model = _tiny_model(name)
    keep = lambda images, labels: images  # noqa: E731
    streams = {}
    for batch_size in (7, 50):
        ctx = EvalContext(model, DataConfig(name="tensor"), batch_size=batch_size, seed=3)
        streams[batch_size], n = ctx.map_samples(keep, 60)
        assert n == 60 and "batch_size" not in ctx.protocol()
    assert torch.equal(streams[7], streams[50]) and streams[7].float().std() > 0
    other = EvalContext(model, DataConfig(name="tensor"), batch_size=7, seed=4).map_samples(keep, 60)[0]
    assert not torch.equal(other, streams[7])  # ... but on the seed


def test_a_model_that_bypasses_the_prior_records_its_batch_size():
    class Own(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def sample(self, n, *, generator=None):
            return torch.rand(n, 1, 8, 8, generator=generator) * 2 - 1

    ctx = EvalContext(Own(), DataConfig(name="tensor"), batch_size=5)
    ctx.map_samples(lambda images, labels: images, 10)
    assert ctx.protocol()["batch_size"] == 5


# ------------------------------------------------------------------------------------------ cached references
def test_reference_statistics_are_computed_once_per_split_and_protocol(tmp_path, monkeypatch):
    from zoo.evaluation import sampling
    real = RandomImages(40, (1, 28, 28), seed=1)

    def context(**kw):
        return EvalContext(_tiny_model("vae"), DataConfig(name="tensor"), datasets={"test": real}, n_samples=20,
                           cache_dir=tmp_path / "cache", **kw)

    first = context()
    ref = run("msssim", first)["msssim.reference"]
    assert first.reference_computations == 1 and len(list((tmp_path / "cache").glob("msssim-*.pt"))) == 1
    second = context()  # a second checkpoint of the same call: from memory
    assert run("msssim", second)["msssim.reference"].value == ref.value and second.reference_computations == 0
    monkeypatch.setattr(sampling, "_REFERENCES", {})  # a later call: from the disk cache
    third = context()
    assert run("msssim", third)["msssim.reference"].value == ref.value and third.reference_computations == 0
    changed = context(options={"msssim_protocol": "tf5"})  # another protocol: computed again, its own file
    assert run("msssim", changed)["msssim.reference"].value != ref.value and changed.reference_computations == 1
    assert len(list((tmp_path / "cache").glob("msssim-*.pt"))) == 2
    other_data = EvalContext(_tiny_model("vae"), DataConfig(name="tensor"), n_samples=20, cache_dir=tmp_path / "cache",
                             datasets={"test": RandomImages(40, (1, 28, 28), seed=2)})
    run("msssim", other_data)
    assert other_data.reference_computations == 1  # other images under the same names: not taken from the cache


ALEXNET = SHARED / "weights" / "lpips" / "alexnet_features.pth"


class _Reconstructs(torch.nn.Module):
    has_encoder = True

    def __init__(self, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def reconstruct(self, x):
        return torch.nn.functional.avg_pool2d(x, self.kernel, 1, self.kernel // 2)


@pytest.mark.skipif(not ALEXNET.exists(), reason=f"shared file {ALEXNET} is absent (set ZOO_SHARED)")
def test_lpips_real_features_are_cached_and_the_distance_is_the_lpips_package(tmp_path, monkeypatch):
    from zoo.evaluation import lpips_distance, sampling
    from zoo.evaluation.core import quantize
    real = RandomImages(12, (3, 28, 28), seed=5)

    def context(kernel, **kw):
        return EvalContext(_Reconstructs(kernel), DataConfig(name="tensor"), datasets={"test": real}, batch_size=5,
                           cache_dir=tmp_path / "cache", options={"lpips_weights": str(ALEXNET)}, **kw)

    def package(kernel):  # lpips_distance on both images of every pair (= the package's forward: test_evaluation)
        x = real.images.float() / 127.5 - 1
        return lpips_distance(x, quantize(_Reconstructs(kernel).reconstruct(x)).float() / 127.5 - 1, ALEXNET)

    first = context(3)
    value = run("lpips", first)["lpips"].value
    assert value == pytest.approx(package(3).double().mean().item(), abs=1e-6)
    assert first.reference_computations == 1 and len(list((tmp_path / "cache").glob("lpips-features-*.pt"))) == 1
    second = context(5)  # another checkpoint of the same call: the real side from memory
    assert run("lpips", second)["lpips"].value == pytest.approx(package(5).double().mean().item(), abs=1e-6)
    assert second.reference_computations == 0
    monkeypatch.setattr(sampling, "_REFERENCES", {})  # a later call: from the disk cache, the same number
    third = context(3)
    assert run("lpips", third)["lpips"].value == value and third.reference_computations == 0
    fewer = context(3, n_real=7)  # another subset of the split: its own reference
    run("lpips", fewer)
    assert fewer.reference_computations == 1


# ------------------------------------------------------------------------------------------ options and refusals
def test_every_metric_option_is_a_command_line_flag():
    from zoo.commands import evaluate as tool
    args = tool.parse_args(["run", "--metric", "marginal_kl", "--smoothing-std", "0.1", "--latent-split", "test",
                            "--msssim-protocol", "tf5", "--critic-steps", "7"])
    options = {k: getattr(args, k) for k in args.options}
    assert options["smoothing_std"] == 0.1 and options["latent_split"] == "test" and options["critic_steps"] == 7
    assert options["msssim_protocol"] == "tf5" and options["splits"] is None
    from zoo.evaluation.core import metric_options
    assert set(args.options) == set(metric_options()) >= {"smoothing_std", "latent_split", "iw_samples", "splits"}


def test_is_cifar_refuses_images_that_are_not_cifar_shaped():
    ctx = EvalContext(None, DataConfig(name="tensor"), source="data:tensor:test",
                      datasets={"test": RandomImages(4, (1, 28, 28))}, options={"cifar_classifier": "unused"})
    with pytest.raises(EvaluationError, match=r"is_cifar scores CIFAR-10-like images of shape \(3, 32, 32\); "
                                              r"data:tensor:test \(tensor\) has images of shape \(1, 28, 28\)"):
        run("is_cifar", ctx)


# ------------------------------------------------------------------------------------------- critic: as it ran
def test_a_critic_stopped_at_step_180_of_200_is_recorded_as_180_steps_with_its_curve(monkeypatch, tmp_path):
    """A SIGTERM during critic training stops it after the step in progress; the result then says 180 steps (of 200
    requested) and stopped_early, its protocol id differs from the full protocol's, and the registry marks it."""
    import os
    import signal

    from zoo.catalog import Catalog, protocol_id
    from zoo.evaluation import wcritic

    real = TensorImages((torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8))
    class Noise(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def sample(self, n, *, generator=None):
            return torch.rand(n, 1, 16, 16, generator=generator) * 2 - 1

    model = Noise()
    phase_loss = wcritic.IndependentCritic.phase_loss

    def interrupted(self, phase, batch, step):
        if step == 179:  # during step 180 (steps count from 0): the trainer finishes it and stops
            os.kill(os.getpid(), signal.SIGTERM)
        return phase_loss(self, phase, batch, step)

    monkeypatch.setattr(wcritic.IndependentCritic, "phase_loss", interrupted)
    options = {"critic_steps": 200, "critic_width": 8, "critic_batch_size": 8}
    ctx = EvalContext(model, DataConfig(name="tensor"), datasets={"test": real}, options=options, batch_size=32)
    (result,) = METRICS.get("wcritic")(ctx)
    assert result.protocol["critic_steps"] == 180 and result.protocol["critic_steps_requested"] == 200
    assert result.protocol["stopped_early"] is True and result.spread == "standard error"
    curve = result.metadata["critic_curve"]
    assert curve["columns"] == ["step", "wasserstein_batch", "gp"] and [r[0] for r in curve["rows"]] == list(
        range(0, 180, 2))  # every 200 // 100 = 2 steps, up to the last step run
    full = {**result.protocol, "critic_steps": 200}
    del full["stopped_early"], full["critic_steps_requested"]
    assert protocol_id(result.protocol) != protocol_id(full)
    with Catalog(tmp_path / "r.sqlite") as catalog:
        cid = catalog.register_checkpoint(catalog.register_run("/r", model="dcgan", dataset="tensor"), 1, "/r/c")
        catalog.add_result(cid, "wcritic", result.value, result.std, result.protocol, spread=result.spread,
                           metadata=result.metadata, code_commit="abc", zoo_version="0.1.0")
        (stored,) = catalog.results()
        assert stored.complete is False and stored.metadata["critic_curve"]["rows"][-1][0] == 178
        assert (stored.code_commit, stored.zoo_version) == ("abc", "0.1.0")
