"""`modes`: mode coverage on stacked MNIST (stacked_mnist): each channel of a sample is classified by the project's
MNIST classifier, the three digits give one of 1,000 modes (100 d_R + 10 d_G + d_B, as `ColorMNIST.targets`), and
we report how many modes the samples visit (`modes`) and the KL of the mode histogram to the uniform distribution
(`modes.kl`, nats) (Metz et al. 2017; Srivastava et al. 2017 (VEEGAN), whose protocol draws 26,000 samples). On
labelled real data the fraction of images whose predicted mode is their true mode is reported too
(`modes.accuracy`), which bounds how far the classifier can be trusted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from zoo.evaluation.core import MetricNotApplicable, MetricResult, define_metric, resolve_weights, weights_record
from zoo.evaluation.functional import mode_statistics
from zoo.evaluation.mnist_classifier import load_mnist_classifier
from zoo.evaluation.sampling import EvalContext

CLASSIFIER_ENV = "ZOO_MNIST_CLASSIFIER"
DEFAULT_CLASSIFIER = Path("runs") / "classifiers" / "mnist_classifier.safetensors"  # `zoo train_mnist_classifier`
N_SAMPLES, N_MODES = 26_000, 1000


def classify_modes(net: torch.nn.Module, images: Tensor) -> Tensor:
    """(B, 3, H, W) uint8 stacked digits -> (B,) mode indices 100 d_R + 10 d_G + d_B."""
    digits = torch.stack([net(images[:, c:c + 1]).argmax(dim=1) for c in range(3)], dim=1)  # (B, 3)
    return (digits * torch.tensor([100, 10, 1], device=digits.device)).sum(dim=1)  # no integer matmul on CUDA


@dataclass
class ModesOptions:
    mnist_classifier: str | None = None  # safetensors of `zoo train_mnist_classifier`; default ZOO_MNIST_CLASSIFIER


@define_metric("modes", "stacked-MNIST modes covered (of 1000) and KL of the mode histogram to uniform",
               higher_is_better=True, options=ModesOptions, kl=False, accuracy=True)
def modes_metric(ctx: EvalContext, opts: ModesOptions) -> list[MetricResult]:
    if ctx.data.name != "stacked_mnist":
        raise MetricNotApplicable(f"modes is defined on stacked_mnist (three digits, 1000 modes), not "
                                  f"{ctx.data.name!r}")
    path = resolve_weights(opts.mnist_classifier, CLASSIFIER_ENV, "the MNIST classifier (train it with "
                           "zoo train_mnist_classifier)", "--mnist-classifier",
                           lambda: str(DEFAULT_CLASSIFIER) if DEFAULT_CLASSIFIER.is_file() else None)
    net, meta = load_mnist_classifier(path)
    net = net.to(ctx.device)
    labelled = ctx.model is None

    def modes(images: Tensor, labels: Tensor | None) -> Tensor:
        predicted = classify_modes(net, images)
        truth = labels if (labelled and labels is not None) else torch.full_like(predicted, -1)
        return torch.stack([predicted, truth], dim=1)  # (B, 2)

    out, n = ctx.map_samples(modes, ctx.n(N_SAMPLES), desc="modes")
    covered, kl = mode_statistics(out[:, 0], N_MODES)
    protocol = ctx.protocol(n_samples=n, n_modes=N_MODES, backbone="zoo mnist classifier",
                            classifier_test_accuracy=meta.get("test_accuracy"), **weights_record(path))
    results = [MetricResult("modes", float(covered), None, protocol), MetricResult("modes.kl", kl, None, protocol)]
    if labelled and (out[:, 1] >= 0).all():
        results.append(MetricResult("modes.accuracy", (out[:, 0] == out[:, 1]).double().mean().item(), None, protocol))
    return results
