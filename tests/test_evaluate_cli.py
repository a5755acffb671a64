"""tools/evaluate.py and tools/train_mnist_classifier.py end to end: a trained checkpoint and real-data references
evaluated, tables, JSON and registry rows; the shared CIFAR-10 ResNet and the stacked-MNIST mode count."""
from __future__ import annotations

import json
import os
import re
import sys

import pytest

import procs
from conftest import LAUNCH_TWO, REPO, SHARED, subprocess_env
from zoo.catalog import Catalog, checkpoint_sha256
from zoo.training.checkpoint import checkpoint_dirs

EVALUATE, TRAIN = str(REPO / "tools" / "evaluate.py"), str(REPO / "tools" / "train.py")
ALEXNET = SHARED / "weights" / "lpips" / "alexnet_features.pth"
RESNET56 = SHARED / "weights" / "cifar10_resnet" / "resnet56-4bfd9763.th"


def tool(args, data, timeout=600):
    # one thread per process: the suite's processes share two cores, and oversubscribed threads slow torch ~10x
    env = subprocess_env(ZOO_DATA=str(data), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return procs.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_train_registers_and_evaluate_records_a_checkpoint_and_a_data_reference(tmp_path, shared_data):
    run, registry, out = tmp_path / "vae", os.environ["ZOO_CATALOG"], tmp_path / "all.json"
    res = tool([TRAIN, "recipes/tiny_vae.yaml", "--out", str(run), "train.max_steps=4", "train.checkpoint_every=0",
                "train.sample_every=0", "train.progress=false", "train.tensorboard=false"], shared_data)
    assert res.returncode == 0, res.stderr
    (ckpt,) = checkpoint_dirs(run)
    with Catalog(registry) as catalog:  # tools/train.py recorded the run and its checkpoint
        (row,) = catalog.rows()
        assert (row.model, row.dataset, row.step, row.path) == ("vae", "mnist", 4, str(ckpt.resolve()))
        assert row.sha256 == checkpoint_sha256(ckpt) and row.git_commit

    res = tool([EVALUATE, str(run), "data:mnist:test", "--data-option", "limit=512", "--metric", "msssim,lpips,elbo",
                "--n-samples", "16",
                "--n-real", "16", "--iw-samples", "3", "--batch-size", "8", "--lpips-weights", str(ALEXNET),
                "--json", str(out), "--no-progress"], shared_data)
    assert res.returncode == 0, res.stderr
    assert "lpips skipped for data:mnist:test" in res.stderr and "elbo skipped for data:mnist:test" in res.stderr
    table = [line.split("|") for line in res.stdout.strip().splitlines()[2:]]
    assert [(s.strip(), m.strip()) for s, m, *_ in table] == [
        (str(ckpt.resolve()), "msssim"), (str(ckpt.resolve()), "msssim.reference"), (str(ckpt.resolve()), "lpips"),
        (str(ckpt.resolve()), "elbo"), ("data:mnist:test", "msssim")]
    results = json.loads(out.read_text())
    by = {(r["source"], r["metric"]): r for r in results}
    reference = by[(str(ckpt.resolve()), "msssim.reference")]
    # the recipe's test split (limit 512) and the data source with the same option: the same 16 images
    assert reference["value"] == pytest.approx(by[("data:mnist:test", "msssim")]["value"], rel=1e-12)
    assert by[(str(ckpt.resolve()), "elbo")]["protocol"]["iw_samples"] == 3
    assert set(json.loads((ckpt / "eval.json").read_text())) == {"msssim", "msssim.reference", "lpips", "elbo"}
    with Catalog(registry) as catalog:
        rows = {r.run: r for r in catalog.rows()}
        assert set(rows["vae"].results) == {"msssim", "msssim.reference", "lpips", "elbo"}
        assert rows["data:mnist:test"].model == "data" and set(rows["data:mnist:test"].results) == {"msssim"}
        assert rows["vae"].results["lpips"]["value"] == pytest.approx(by[(str(ckpt.resolve()), "lpips")]["value"])

    res = tool([EVALUATE, str(run), "--metric", "is,nope"], shared_data)
    assert res.returncode == 2 and "unknown metric 'nope'" in res.stderr and "wcritic" in res.stderr


@pytest.mark.skipif(not RESNET56.exists(), reason=f"{RESNET56} is absent")
def test_is_cifar_of_the_shared_stand_in_test_images_is_high_and_reports_accuracy(tmp_path, shared_data):
    out = tmp_path / "cifar.json"
    res = tool([EVALUATE, "data:cifar10_folder:test", "--metric", "is_cifar", "--n-samples", "1000",
                "--batch-size", "250", "--cifar-classifier", str(RESNET56), "--json", str(out), "--no-progress"],
               shared_data)
    assert res.returncode == 0, res.stderr
    assert re.search(r"data:cifar10_folder:test \| is_cifar\.accuracy \| 0\.\d+", res.stdout)
    results = {r["metric"]: r for r in json.loads(out.read_text())}
    # 10 classes bound the score by 10; resnet56 has 6.61 % error on the official test set, the lossy JPEG stand-in
    # costs it about 10 points of accuracy (83 % on 2,000 images)
    assert results["is_cifar"]["value"] > 7.5 and results["is_cifar.accuracy"]["value"] > 0.75
    assert results["is_cifar"]["protocol"]["backbone"] == "cifar10-resnet56"
    assert results["is_cifar"]["protocol"]["n_samples"] == 1000 and results["is_cifar"]["protocol"]["splits"] == 10


def test_missing_inception_weights_fail_only_that_metric_and_suggest_is_cifar(tmp_path, shared_data):
    """`--metric is,msssim` without the Inception file: msssim is computed and recorded, `is` is reported once with
    its fix and the CIFAR-10 alternative, and the status says something was not computed."""
    out = tmp_path / "partial.json"
    res = tool([EVALUATE, "data:cifar10_folder:test", "--metric", "is,msssim", "--n-samples", "40", "--n-real", "40",
                "--batch-size", "20", "--inception-weights", str(tmp_path / "absent.pth"), "--json", str(out),
                "--no-progress", "--no-registry"], shared_data)
    assert res.returncode == 2, res.stderr
    assert [r["metric"] for r in json.loads(out.read_text())] == ["msssim"]  # a data source: no reference row
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: not computed: is on data:cifar10_folder:test: ")
    assert "absent.pth" in errors[0] and "--metric is_cifar" in errors[0] and "Traceback" not in res.stderr


@pytest.fixture(scope="session")
def mnist_classifier(tmp_path_factory):
    from conftest import SHARED as shared
    data = shared / "data"
    if not (data / "MNIST" / "raw").is_dir():
        pytest.skip("the shared MNIST is absent")
    path = tmp_path_factory.mktemp("classifier") / "mnist.safetensors"
    res = tool([str(REPO / "tools" / "train_mnist_classifier.py"), "steps=400", "width=8", "batch_size=32",
                "--out", str(path), "--no-progress"], data)
    assert res.returncode == 0, res.stderr
    return path, float(re.search(r"test accuracy (\d\.\d+)", res.stdout).group(1))


def test_mnist_classifier_trains_from_its_recipe(mnist_classifier):
    from zoo.evaluation.mnist_classifier import load_mnist_classifier
    path, accuracy = mnist_classifier
    assert accuracy >= 0.94  # 400 steps at width 8; the full recipe reaches ~0.99
    _, meta = load_mnist_classifier(path)
    assert meta["width"] == "8" and float(meta["test_accuracy"]) == pytest.approx(accuracy, abs=1e-4)


def test_modes_of_stacked_mnist_test_images_cover_the_modes(mnist_classifier, tmp_path, shared_data):
    path, accuracy = mnist_classifier
    out = tmp_path / "modes.json"
    res = tool([EVALUATE, "data:stacked_mnist:test", "--metric", "modes", "--n-samples", "2000", "--batch-size", "500",
                "--mnist-classifier", str(path), "--json", str(out), "--no-progress"], shared_data)
    assert res.returncode == 0, res.stderr
    results = {r["metric"]: r for r in json.loads(out.read_text())}
    # 2,000 uniform draws over 1,000 modes visit 1000 (1 - (1 - 1/1000)^2000) = 865 of them on average, and their
    # histogram's KL to uniform is ~0.28 nats by chance alone
    assert results["modes"]["value"] >= 830 and results["modes.kl"]["value"] < 0.35
    assert results["modes.accuracy"]["value"] == pytest.approx(accuracy**3, abs=0.05)  # three digits right
    assert results["modes"]["protocol"]["n_samples"] == 2000


def _tiny_vae_checkpoint(tmp_path):
    from conftest import RandomImages, tiny_recipe
    from zoo import Trainer, build_model
    recipe = tiny_recipe("vae", ["train.max_steps=2"])
    Trainer(build_model(recipe), recipe, tmp_path / "vae", dataset=RandomImages(64, (1, 28, 28))).train()
    return checkpoint_dirs(tmp_path / "vae")[-1]


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path, shared_data):
    ckpt = _tiny_vae_checkpoint(tmp_path)
    common = [str(ckpt), "--metric", "msssim,elbo", "--n-samples", "40", "--n-real", "40", "--batch-size", "8",
              "--iw-samples", "4", "--no-progress", "--no-registry"]
    single = tool([EVALUATE, *common, "--json", str(tmp_path / "one.json")], shared_data)
    assert single.returncode == 0, single.stderr
    double = tool([*LAUNCH_TWO, EVALUATE, *common, "--json", str(tmp_path / "two.json")], shared_data)
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("msssim.reference") == 1  # one table, from the main process
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert [(r["metric"], r["value"]) for r in one] == [(r["metric"], pytest.approx(r["value"], rel=1e-9))
                                                        for r in two]


@pytest.mark.slow
def test_two_process_wcritic_follows_the_one_process_protocol(tmp_path, shared_data):
    """The critic's batch is split over processes and its gradients averaged: the sharded critic sees other images in
    another order, so the estimate is not bit-equal, but it must agree with one process's as a retrained critic would."""
    ckpt = _tiny_vae_checkpoint(tmp_path)
    common = [str(ckpt), "--metric", "wcritic", "--n-real", "400", "--batch-size", "50", "--critic-steps", "200",
              "--critic-batch-size", "16", "--critic-width", "16", "--critic-lr", "1e-3", "--no-progress",
              "--no-registry"]
    single = tool([EVALUATE, *common, "--json", str(tmp_path / "one.json")], shared_data)
    assert single.returncode == 0, single.stderr
    double = tool([*LAUNCH_TWO, EVALUATE, *common, "--json", str(tmp_path / "two.json")], shared_data)
    assert double.returncode == 0, double.stderr[-3000:]
    (one,), (two,) = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert (one["protocol"]["processes"], two["protocol"]["processes"]) == (1, 2)
    assert one["protocol"]["critic_batch_size"] == two["protocol"]["critic_batch_size"] == 16
    assert one["value"] < -20 and two["value"] < -20  # a 2-step VAE's samples are far from MNIST
    # critics trained from different seeds on one process already spread over -43 .. -54 here
    assert two["value"] == pytest.approx(one["value"], rel=0.4)


@pytest.mark.slow
def test_cli_inception_metrics_equal_torch_fidelity_calculate_metrics(tmp_path, shared_data, monkeypatch):
    """The whole TF-Inception path against torch-fidelity's own pipeline on the same 8-bit images."""
    import torch
    import torch_fidelity
    from zoo.evaluation.inception import random_inception_weights
    from zoo.evaluation import EvalContext
    from zoo.factory import load_checkpoint

    ckpt = _tiny_vae_checkpoint(tmp_path)
    weights = random_inception_weights(tmp_path / "inception.pth")
    out = tmp_path / "is.json"
    res = tool([EVALUATE, str(ckpt), "--metric", "is,fid,kid", "--n-samples", "20", "--n-real", "20", "--splits", "2",
                "--batch-size", "10", "--inception-weights", str(weights), "--json", str(out), "--no-progress"],
               shared_data)
    assert res.returncode == 0, res.stderr
    ours = {r["metric"]: r["value"] for r in json.loads(out.read_text())}

    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    ckpt_model = load_checkpoint(ckpt)
    ctx = EvalContext(ckpt_model.model, ckpt_model.recipe.data, batch_size=10)  # the same streams as the tool
    samples, _ = ctx.map_samples(lambda x, y: x, 20)
    real = ctx.map_real(lambda x, y: x, n=20)

    class Images(torch.utils.data.Dataset):
        def __init__(self, images):
            self.images = images.expand(-1, 3, -1, -1)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i]

    ref = torch_fidelity.calculate_metrics(input1=Images(samples), input2=Images(real), cuda=False, isc=True,
                                           fid=True, kid=True, isc_splits=2, kid_subset_size=20,
                                           samples_shuffle=False, feature_extractor_weights_path=str(weights),
                                           cache=False, verbose=False, batch_size=10, save_cpu_ram=True)
    assert ours["is"] == pytest.approx(ref["inception_score_mean"], rel=1e-5)
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert ours["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4, abs=1e-7)


def test_evaluate_without_metric_computes_the_recipes_eval_metrics(tmp_path, shared_data, monkeypatch, capsys,
                                                                   one_thread):
    """`zoo evaluate RUN` with no --metric computes what the run's recipe lists in eval.metrics: the same numbers and
    protocol as naming them; an empty list (or a data: source) is one error line that says to pass --metric."""
    from conftest import tiny_recipe
    from zoo import Trainer, build_model
    from zoo.commands import evaluate
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    for name, metrics in (("listed", "[reconstruction]"), ("empty", "[]")):
        recipe = tiny_recipe("vae", ["train.max_steps=2", f"eval.metrics={metrics}"])
        Trainer(build_model(recipe), recipe, tmp_path / name).train()
    common = ["--n-real", "64", "--no-registry", "--no-progress"]
    assert evaluate.main([str(tmp_path / "listed"), *common, "--json", str(tmp_path / "default.json")]) == 0
    assert evaluate.main([str(tmp_path / "listed"), "--metric", "reconstruction", *common,
                          "--json", str(tmp_path / "named.json")]) == 0
    default, named = (json.loads((tmp_path / f).read_text()) for f in ("default.json", "named.json"))
    assert [r["metric"] for r in default] == ["reconstruction"]
    assert [(r["value"], r["protocol"]) for r in default] == [(r["value"], r["protocol"]) for r in named]
    for source, why in ((str(tmp_path / "empty"), "its recipe's eval.metrics is empty"),
                        ("data:mnist:test", "a data: source has no recipe")):
        capsys.readouterr()
        assert evaluate.main([source, *common]) == 2
        assert f"no --metric given and {why}; pass --metric" in capsys.readouterr().err
