"""The registered metrics end to end through `EvalContext`: feature paths, weights files, closed forms on designed
sources, the shared reference images and weights, and sharding."""
from __future__ import annotations

import hashlib
import math
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SHARED, RandomImages
from zoo.config import DataConfig
from zoo.data import TensorImages
from zoo.evaluation import EvalContext, WeightsNotFoundError, lpips_distance
from zoo.evaluation import inception
from zoo.evaluation.inception import random_inception_weights  # noqa: F401 - test_evaluate_cli imports it here
from zoo.registry import METRICS

ALEXNET = SHARED / "weights" / "lpips" / "alexnet_features.pth"
LPIPS_IMAGES = SHARED / "testdata" / "lpips"


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"shared file {path} is absent (set ZOO_SHARED)")


@pytest.fixture
def one_thread():
    """The heavier tests run torch on one thread: the suite shares two cores with other processes, and oversubscribed
    intra-op threads slow these networks down about tenfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(metric: str, ctx: EvalContext) -> dict:
    return {r.metric: r for r in METRICS.get(metric)(ctx)}


def data_source(images: torch.Tensor, **kwargs) -> EvalContext:
    """A data source whose test split is `images` (uint8), as `data:...:test`."""
    return EvalContext(None, DataConfig(name="tensor"), source="data:tensor:test",
                       datasets={"test": TensorImages(images)}, **kwargs)


class ImageSource(nn.Module):
    """A stand-in model: samples from a given function, reconstructs with another (identity by default)."""

    has_encoder = True

    def __init__(self, draw, reconstruct=None):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # .to() and .eval() have something to act on
        self.draw, self._reconstruct = draw, reconstruct or (lambda x: x)

    def sample(self, n, *, generator=None):
        return self.draw(n, generator)

    def reconstruct(self, x):
        return self._reconstruct(x)


# ------------------------------------------------------------------------------------------------------ Inception
class OneHotByBrightness(nn.Module):
    """A stand-in for the Inception extractor: class = pixel (0, 0, 0) // 20, confident logits over 1008 classes."""

    def __init__(self, confident: bool = True):
        super().__init__()
        self.confident = confident

    def forward(self, images):
        assert images.dtype == torch.uint8 and images.shape[1] == 3  # what torch-fidelity's extractor demands
        classes = images[:, 0, 0, 0].long() // 20
        logits = nn.functional.one_hot(classes, 1008).float() * 1000.0 * self.confident
        return logits, torch.zeros(len(images), 2048)


@pytest.mark.parametrize("confident, expected", [(True, 6.0), (False, 1.0)])
def test_is_metric_closed_forms_through_the_feature_path(tmp_path, monkeypatch, confident, expected):
    weights = tmp_path / "fake-inception.pth"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(inception, "build_extractor", lambda path: OneHotByBrightness(confident))
    images = (20 * (torch.arange(60) % 6)).to(torch.uint8).view(60, 1, 1, 1).expand(60, 1, 8, 8).contiguous()
    ctx = data_source(images, batch_size=16, options={"inception_weights": str(weights), "splits": 1})
    result = run("is", ctx)["is"]
    assert result.value == pytest.approx(expected, rel=1e-9)  # 6 classes evenly: IS = 6; uniform predictions: 1
    assert result.protocol["n_samples"] == 60 and result.protocol["splits"] == 1
    assert result.protocol["weights_sha256"] == hashlib.sha256(b"weights").hexdigest()


def test_torch_fidelity_inception_path_with_a_local_weights_file(tmp_path, one_thread):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    weights = random_inception_weights(tmp_path / "inception.pth")
    samples, real = RandomImages(2, (3, 16, 16), seed=1), RandomImages(2, (1, 16, 16), seed=2)  # grey reference
    ctx = EvalContext(None, DataConfig(name="tensor"), source="data:tensor:train", sample_split="train",
                      datasets={"train": samples, "test": real},
                      options={"inception_weights": str(weights), "splits": 1})
    results = {**run("is", ctx), **run("fid", ctx), **run("kid", ctx)}
    assert results["is"].protocol["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert results["fid"].protocol["reference_split"] == "test" and results["kid"].protocol["kid_subset_size"] == 2

    # the network that ran is torch-fidelity's extractor holding exactly the file's weights ...
    (extractor, _), = [v for k, v in ctx.cache.items() if k[0] == "inception"]
    assert isinstance(extractor, FeatureExtractorInceptionV3) and extractor.features_list == ["logits_unbiased", "2048"]
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in extractor.state_dict().items())
    # ... its features carry information, and the numbers are torch-fidelity's functions of them
    logits, pool, _ = inception.inception_features(ctx, "samples", str(weights))
    _, real_pool, _ = inception.inception_features(ctx, "real", str(weights))
    assert logits.shape == (2, 1008) and pool.shape == real_pool.shape == (2, 2048) and logits.std() > 0.1
    ref_is = isc_features_to_metric(logits, splits=1, shuffle=False)["inception_score_mean"]
    assert results["is"].value == pytest.approx(ref_is, rel=1e-9) and results["is"].value > 1.0
    # two samples a side: FID = |mu_1 - mu_2|^2 + |u|^2 + |v|^2 - 2 |u . v| with u, v the halved differences
    u, v = ((f[0] - f[1]).double() / math.sqrt(2) for f in (pool, real_pool))
    closed = (pool.double().mean(0) - real_pool.double().mean(0)).square().sum() + u @ u + v @ v - 2 * (u @ v).abs()
    assert results["fid"].value == pytest.approx(closed.item(), rel=1e-4) and results["fid"].value > 0
    ref_kid = kid_features_to_metric(pool.double(), real_pool.double(), kid_subsets=100, kid_subset_size=2,
                                     verbose=False)["kernel_inception_distance_mean"]
    assert results["kid"].value == pytest.approx(ref_kid, rel=1e-9)


def test_missing_inception_weights_name_the_file_and_how_to_supply_it(tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.delenv(inception.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsNotFoundError) as err:
        inception.inception_weights(None)
    message = str(err.value)
    assert inception.INCEPTION_FILE in message and "--inception-weights PATH" in message
    assert "ZOO_INCEPTION_WEIGHTS=PATH" in message and "no network" in message
    monkeypatch.setenv(inception.INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        inception.inception_weights(None)


# ----------------------------------------------------------------------------------------------------------- LPIPS
def _png(name):
    from PIL import Image
    array = np.asarray(Image.open(LPIPS_IMAGES / name).convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, 64, 64) in [-1, 1]


@needs(ALEXNET)
@needs(LPIPS_IMAGES)
def test_lpips_of_the_reference_images_and_of_identical_images():
    ref, p0, p1 = (_png(f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    d = lpips_distance(torch.cat([ref, ref, ref]), torch.cat([p0, p1, ref]), weights=ALEXNET)
    # the lpips project's published distances of its example images (test_network.py): (0.722, 0.138)
    assert d[0].item() == pytest.approx(0.722, abs=5e-4) and d[1].item() == pytest.approx(0.138, abs=5e-4)
    assert d[2].item() == 0.0


@needs(ALEXNET)
@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")  # lpips calls torchvision's old API
@pytest.mark.parametrize("side", [32, 64])
def test_lpips_distance_equals_the_lpips_package_on_the_same_pairs(side):
    """One AlexNet pass over both batches, max-pooling in channels-last (the zoo), gives the package's values."""
    import lpips
    from zoo.evaluation.perceptual import build_lpips

    g = torch.Generator().manual_seed(side)
    x, y = (torch.rand(6, 3, side, side, generator=g) * 2 - 1 for _ in range(2))
    net, _ = build_lpips(ALEXNET)
    reference = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    reference.load_state_dict(net.state_dict())
    with torch.no_grad():
        expected = reference.eval()(x, y).flatten()
        # the pooling swap changes no number: the same convolutions see the same inputs
        assert all(torch.equal(a, b) for a, b in zip(net.net(x), reference.net(x)))
    assert torch.allclose(lpips_distance(x, y, weights=ALEXNET), expected, rtol=1e-5, atol=1e-7)
    assert expected.min() > 0.01  # distinct images: the comparison is not of zeros


@needs(ALEXNET)
def test_lpips_distance_makes_one_backbone_pass_and_moves_no_network_per_call():
    from zoo.evaluation.perceptual import _network
    net, _ = _network(ALEXNET)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lpips_distance(x, x.flip(0), weights=ALEXNET)  # on the CPU already
    with mock.patch.object(net, "to", wraps=net.to) as moves, mock.patch.object(net.net, "forward",
                                                                                wraps=net.net.forward) as passes:
        for _ in range(3):
            lpips_distance(x, x.flip(0), weights=ALEXNET)
    assert moves.call_count == 0 and passes.call_count == 3
    assert [tuple(a.shape) for a in passes.call_args.args] == [(8, 3, 32, 32)]  # both batches at once


@needs(ALEXNET)
def test_lpips_backbone_is_torchvision_alexnet_with_the_file_loaded():
    import torchvision
    from zoo.evaluation.perceptual import build_lpips

    net, record = build_lpips(ALEXNET)
    alexnet = torchvision.models.alexnet(weights=None)
    state = torch.load(ALEXNET, weights_only=True)
    alexnet.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    features = net.net(x)
    with torch.no_grad():
        for cut, ours in zip((2, 5, 8, 10, 12), features):  # the relu outputs lpips reads
            assert torch.allclose(alexnet.features[:cut](x), ours, atol=1e-5)
    assert record["backbone_weights_sha256"] == hashlib.sha256(ALEXNET.read_bytes()).hexdigest()


@needs(ALEXNET)
def test_lpips_metric_is_zero_for_perfect_reconstructions_and_positive_for_blurred_ones():
    images = RandomImages(12, (1, 28, 28), seed=3)  # 28 px: below AlexNet's minimum, upsampled to 32
    blur = lambda x: nn.functional.avg_pool2d(x, 3, 1, 1)  # noqa: E731
    perfect = EvalContext(ImageSource(None), DataConfig(name="tensor"), datasets={"test": images}, batch_size=5,
                          options={"lpips_weights": str(ALEXNET)})
    blurred = EvalContext(ImageSource(None, blur), DataConfig(name="tensor"), datasets={"test": images},
                          options={"lpips_weights": str(ALEXNET)})
    assert run("lpips", perfect)["lpips"].value == 0.0
    result = run("lpips", blurred)["lpips"]
    assert result.value > 0.05 and result.protocol["n_real"] == 12 and result.protocol["backbone"] == "lpips alex v0.1"
    with pytest.raises(Exception, match="real data"):
        run("lpips", data_source(images.images))


# --------------------------------------------------------------------------------------------------------- MS-SSIM
def test_msssim_diversity_is_zero_for_identical_pairs_and_high_for_noise():
    same = torch.full((10, 3, 32, 32), 77, dtype=torch.uint8)
    assert run("msssim", data_source(same, n_samples=10))["msssim"].value == 0.0
    noise = RandomImages(10, (3, 32, 32), seed=4).images
    # independent noise: every cs term near 0, mapped to 1/2 by small3 (diversity ~ 1/2); clamped by tf5 (~ 1)
    small = run("msssim", data_source(noise, n_samples=10))["msssim"]
    assert 0.4 < small.value < 0.6 and small.protocol["msssim_protocol"] == "small3"
    assert small.protocol["clamp_rate"] == 0.0 and small.protocol["scales"] == 3 and small.spread == "per-pair std"
    tf5 = run("msssim", data_source(noise, n_samples=10, options={"msssim_protocol": "tf5"}))["msssim"]
    assert tf5.value > 0.9 and tf5.protocol["scales"] == 5
    assert tf5.protocol["clamp_rate"] == tf5.protocol["negative_term_rate"] > 0  # relu: a negative term is a clamp

    collapsed = ImageSource(lambda n, g: torch.zeros(n, 3, 32, 32))  # every sample the same grey image
    ctx = EvalContext(collapsed, DataConfig(name="tensor"), datasets={"test": TensorImages(noise)}, n_samples=8)
    results = run("msssim", ctx)
    assert results["msssim"].value == 0.0 and results["msssim.reference"].value > 0.4
    assert results["msssim"].protocol["pairs"] == 4
    assert results["msssim.reference"].protocol["reference_split"] == "test"


def test_msssim_pairs_are_scored_in_chunks_with_the_same_values(monkeypatch):
    from zoo.evaluation import msssim
    from zoo.evaluation.functional import ms_ssim
    images = RandomImages(22, (3, 28, 28), seed=5).images  # 11 pairs
    p = msssim.PROTOCOLS["small3"]
    kw = dict(max_val=255.0, window=p.window, sigma=p.sigma, weights=p.weights, normalize=p.normalize)
    whole = 1 - ms_ssim(images[:11].double(), images[11:].double(), **kw)
    monkeypatch.setattr(msssim, "PAIRS_PER_CHUNK", 4)  # chunks of 4, 4, 3 pairs
    assert torch.equal(msssim.pair_diversity(images)[0], whole)
    odd = 1 - ms_ssim(images[:10].double(), images[10:20].double(), **kw)
    assert torch.equal(msssim.pair_diversity(images[:21])[0], odd)  # i with i + 10; the odd image out is dropped


# ---------------------------------------------------------------------------------------------------------- critic
def _blobs(n, generator, brightness):
    """n smooth 1x16x16 images in [-1, 1]: a brightness level per image plus a little pixel noise."""
    level = torch.rand(n, 1, 1, 1, generator=generator) * 0.5 + brightness
    return (level + 0.1 * torch.randn(n, 1, 16, 16, generator=generator)).clamp(-1, 1)


def test_independent_critic_is_near_zero_for_one_distribution_and_negative_for_two(one_thread):
    real = TensorImages(((_blobs(512, torch.Generator().manual_seed(0), -0.5) + 1) * 127.5).round().to(torch.uint8))
    options = {"critic_steps": 60, "critic_width": 8, "critic_batch_size": 64, "critic_lr": 1e-3}
    values = {}
    for name, brightness in (("same", -0.5), ("shifted", 0.2)):
        model = ImageSource(lambda n, g, b=brightness: _blobs(n, g, b))
        ctx = EvalContext(model, DataConfig(name="tensor"), datasets={"test": real}, options=options, seed=1)
        values[name] = run("wcritic", ctx)["wcritic"]
    same, shifted = values["same"], values["shifted"]
    assert shifted.value < -0.5 and shifted.value < -10 * shifted.std  # clearly negative
    assert abs(same.value) < 4 * same.std + 0.02 and abs(same.value) < 0.1 * abs(shifted.value)  # near 0
    protocol = same.protocol
    assert protocol["critic_backbone"] == "dcgan.discriminator" and protocol["n_train"] == protocol["n_test"] == 256
    assert protocol["critic_steps"] == 60 and protocol["gp_weight"] == 10.0


# ------------------------------------------------------------------------------------------------------------ ELBO
def test_elbo_metric_on_a_vae_tightens_with_k(one_thread):
    from zoo.factory import create_model
    model = create_model("vae", channels=1, image_size=28, latent_dim=4, width=8)
    images = RandomImages(24, (1, 28, 28), seed=5)
    values = {}
    for k in (1, 30):
        ctx = EvalContext(model, DataConfig(name="tensor"), datasets={"test": images}, batch_size=8,
                          options={"iw_samples": k})
        values[k] = run("elbo", ctx)["elbo"]
    assert values[1].value < values[30].value and values[30].protocol["iw_samples"] == 30
    with torch.no_grad():  # L_1 is an unbiased estimate of the ELBO the VAE trains on
        x = images.images.float() / 127.5 - 1
        elbo = torch.stack([model.elbo(x) for _ in range(20)]).mean().item()
    assert values[1].value == pytest.approx(elbo, abs=0.01 * abs(elbo))
    not_a_likelihood = EvalContext(ImageSource(None), DataConfig(name="tensor"), datasets={"test": images})
    with pytest.raises(Exception, match="explicit likelihood"):
        run("elbo", not_a_likelihood)



def test_elbo_does_not_depend_on_the_batch_size_and_refuses_n_samples(one_thread):
    """Issue 21 (round 2), item 7: each image's posterior draws are seeded by (seed, its dataset index), so batches
    of 7 and of 50 give the same per-image bounds; --n-samples (samples, which elbo never draws) is an error."""
    from zoo.evaluation.core import EvaluationError
    from zoo.evaluation.likelihood import importance_weighted_log_likelihood
    from zoo.evaluation.sampling import stream_seed
    from zoo.factory import create_model
    model = create_model("vae", channels=1, image_size=28, latent_dim=4, width=8).eval()
    images = RandomImages(30, (1, 28, 28), seed=6)

    def elbo(batch_size, **kwargs):
        ctx = EvalContext(model, DataConfig(name="tensor"), datasets={"test": images}, batch_size=batch_size,
                          options={"iw_samples": 5}, seed=3, **kwargs)
        return run("elbo", ctx)["elbo"]

    small, large = elbo(7), elbo(50)
    assert small.value == pytest.approx(large.value, abs=1e-6) and small.std == pytest.approx(large.std, abs=1e-6)
    assert small.protocol == large.protocol and "batch_size" not in small.protocol
    subset = elbo(4, n_real=10)  # the first 10 images of the same order: their bounds are the ones computed above
    ctx = EvalContext(model, DataConfig(name="tensor"), datasets={"test": images}, seed=3)
    seeds = [stream_seed("elbo", 3, int(i)) for i in ctx.indices("test", 10)]
    direct = importance_weighted_log_likelihood(model, images.images[ctx.indices("test", 10)].float() / 127.5 - 1, 5,
                                                seeds=seeds)
    assert subset.value == pytest.approx(direct.mean().item(), abs=1e-6)
    with pytest.raises(EvaluationError, match="--n-samples does not apply to elbo.*--n-real N.*--iw-samples K"):
        elbo(7, n_samples=16)
    assert elbo(7, n_samples=16, n_real=30).value == pytest.approx(small.value, abs=1e-6)  # --n-samples for others


# -------------------------------------------------------------------------------------------------------- sharding
class FakeProcess:
    def __init__(self, rank, world):
        self.process_index, self.num_processes, self.device = rank, world, torch.device("cpu")


def test_sharded_streams_equal_the_single_process_ones(monkeypatch):
    model = ImageSource(lambda n, g: torch.rand(n, 1, 4, 4, generator=g) * 2 - 1)
    images = RandomImages(37, (1, 4, 4), seed=6)
    kwargs = dict(datasets={"test": images}, batch_size=5, seed=3)
    single = EvalContext(model, DataConfig(name="tensor"), **kwargs)
    whole_samples, n = single.map_samples(lambda x, y: x, 23)
    whole_real = single.map_real(lambda x, y: x.float() + torch.rand(len(x), 1, 1, 1))  # per-batch seeded draws
    assert n == 23 and torch.equal(single.map_samples(lambda x, y: x, 11)[0], whole_samples[:11])  # prefixes
    shards = {}
    import accelerate.utils
    for rank in (0, 1):
        ctx = EvalContext(model, DataConfig(name="tensor"), accelerator=FakeProcess(rank, 2), **kwargs)
        # without a process group, "gathering" returns this process's share; the two shares together are the whole
        monkeypatch.setattr(accelerate.utils, "gather_object", lambda objects: objects)
        shards[rank] = (ctx._sharded(5, lambda b: (ctx.sample_batch(b, 23), None), lambda x, y: x, "s"),
                        ctx.map_real(lambda x, y: x.float() + torch.rand(len(x), 1, 1, 1)))
    for which, whole in ((0, whole_samples), (1, whole_real)):
        batches = whole.split(5)
        assert torch.equal(shards[0][which], torch.cat(batches[0::2]))
        assert torch.equal(shards[1][which], torch.cat(batches[1::2]))


def test_metric_options_are_typed_per_metric():
    """A misspelt option or a wrong type fails before any work, naming the option and the allowed ones."""
    from zoo.evaluation import EvaluationError
    from zoo.evaluation.core import check_options

    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(EvaluationError, match=r"unknown metric option 'spilts' \(did you mean 'splits'\?\)"):
        run("is", data_source(images, options={"spilts": 2}))
    with pytest.raises(EvaluationError, match=r"is option\.splits: got 'ten' \(str\), expected int.*"
                                              r"the options of is are inception_weights, splits"):
        run("is", data_source(images, options={"splits": "ten"}))
    with pytest.raises(EvaluationError, match=r"'critic_steps' for is, fid; their options: inception_weights, splits"):
        check_options([METRICS.get("is"), METRICS.get("fid")], {"critic_steps": 10, "splits": None})
    check_options([METRICS.get("is"), METRICS.get("wcritic")], {"critic_steps": 10, "splits": 2})  # both known
    spec = METRICS.get("wcritic")
    opts = spec.parse_options({"critic_steps": 7, "critic_lr": 1, "splits": 3, "critic_width": None})
    assert (opts.critic_steps, opts.critic_lr, opts.critic_width) == (7, 1.0, 64)  # int lr -> float, None -> default
    assert isinstance(opts.critic_lr, float)


def test_kid_draws_its_subsets_with_torch_fidelitys_default_seed():
    """Subsets smaller than the sets: equal features give torch-fidelity's number (its default seed), not a seed of
    the zoo's own, and another seed gives another number."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    from zoo.evaluation.inception import kernel_inception_distance
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 8, generator=g), torch.randn(50, 8, generator=g) + 0.3
    ref = kid_features_to_metric(a.double(), b.double(), kid_subsets=20, kid_subset_size=10, verbose=False)
    mean, std = kernel_inception_distance(a, b, subsets=20, subset_size=10)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-12)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-12)
    assert kernel_inception_distance(a, b, subsets=20, subset_size=10, seed=0)[0] != pytest.approx(mean, rel=1e-9)

