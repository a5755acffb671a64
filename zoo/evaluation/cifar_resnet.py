"""`is_cifar`: the Inception Score computed with a CIFAR-10 classifier instead of ImageNet's Inception (Rosca et al.
2018 App. I and Fig. 7, right, which used a VGG-style network with 5.5 % error; we use the CIFAR-10 ResNets of He et
al. 2016 section 4.2 with the weights of akamaster/pytorch_resnet_cifar10, resnet56 = 6.61 % published error).

Architecture (He et al. 2016, CIFAR-10): 3x3 conv 16 -> three stages of n basic blocks with 16, 32, 64 maps (stride 2
at the start of stages 2 and 3) -> global average pool -> linear 10; depth 6n + 2 (20, 32, 44, 56). Option-A
shortcuts: identity, or where the shape changes, the input subsampled by 2 and zero-padded with planes // 4 maps on
each side. Inputs: [0, 1] RGB normalised with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), 32x32.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.evaluation.core import (EvaluationError, MetricResult, define_metric, load_state_dict_file,
                                 resolve_weights, to_rgb, weights_record)
from zoo.evaluation.functional import accuracy, inception_score
from zoo.evaluation.sampling import EvalContext

CLASSIFIER_ENV = "ZOO_CIFAR_CLASSIFIER"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
N_SAMPLES, N_SPLITS = 50_000, 10


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an option-A (parameter-free) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else 0

    def shortcut(self, x: Tensor) -> Tensor:
        if not self.pad:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))  # (B, C, H/2, W/2) -> (B, C + 2 pad, ...)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-10 ResNet of depth 6 * blocks + 2; forward takes uint8 images and returns (B, 10) logits."""

    def __init__(self, blocks: int = 9):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes, stages = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for i in range(blocks):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, 10)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = to_rgb(images).float() / 255  # (B, 3, H, W) in [0, 1]
        if x.shape[-2:] != (32, 32):  # the classifier only knows 32x32 CIFAR images
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, 8, 8)
        return self.linear(x.mean(dim=(2, 3)))  # (B, 10)


def load_cifar_resnet(path: str | Path) -> CifarResNet:
    """A CIFAR-10 ResNet from a `{'state_dict': ...}` file with `module.`-prefixed keys (or plain keys); the depth is
    read from the file."""
    state = load_state_dict_file(Path(path), "CIFAR-10 classifier")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"layer1\.(\d+)\.", k))}
    if not blocks:
        raise EvaluationError(f"{path}: no layer1.<i>.* keys; expected the state dict of a CIFAR-10 ResNet "
                              f"(resnet20/32/44/56)")
    net = CifarResNet(max(blocks) + 1)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise EvaluationError(f"{path}: does not fit a CIFAR-10 ResNet with {max(blocks) + 1} blocks per stage: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net.eval()


@dataclass
class IsCifarOptions:
    cifar_classifier: str | None = None  # the ResNet .th file; default ZOO_CIFAR_CLASSIFIER
    splits: int = N_SPLITS


def _classifier(ctx: EvalContext, weights: str | None) -> tuple[CifarResNet, dict[str, str]]:
    path = resolve_weights(weights, CLASSIFIER_ENV,
                           "the CIFAR-10 ResNet weights (e.g. resnet56-4bfd9763.th of "
                           "akamaster/pytorch_resnet_cifar10)",
                           "--cifar-classifier")
    key = ("cifar_resnet", str(path))
    if key not in ctx.cache:
        net = load_cifar_resnet(path)
        depth = 6 * len(net.layer1) + 2
        ctx.cache[key] = (net.to(ctx.device), {**weights_record(path), "backbone": f"cifar10-resnet{depth}"})
    return ctx.cache[key]


@define_metric("is_cifar", "Inception Score with a CIFAR-10 ResNet classifier (Rosca App. I)", higher_is_better=True,
               options=IsCifarOptions, spread="split std", accuracy=True)
def is_cifar_metric(ctx: EvalContext, opts: IsCifarOptions) -> list[MetricResult]:
    """IS over 10 splits from the classifier's logits; on labelled real data also its accuracy (`is_cifar.accuracy`).
    """
    shape = ctx.image_shape()
    if tuple(shape) != (3, 32, 32):  # the classifier's scores mean nothing on other data (MNIST "accuracy")
        raise EvaluationError(f"is_cifar scores CIFAR-10-like images of shape (3, 32, 32); {ctx.source} "
                              f"({ctx.data.name}) has images of shape {tuple(shape)}. Use it on CIFAR-10 models and "
                              f"data only; for other data use is, fid or modes")
    net, record = _classifier(ctx, opts.cifar_classifier)
    splits = opts.splits
    labelled = ctx.model is None and getattr(ctx.dataset(ctx.sample_split), "targets", None) is not None

    def logits_and_labels(images: Tensor, labels: Tensor | None) -> Tensor:
        logits = net(images).double()
        extra = labels.double()[:, None] if (labelled and labels is not None) else torch.zeros_like(logits[:, :1])
        return torch.cat([logits, extra], dim=1)

    out, n = ctx.map_samples(logits_and_labels, ctx.n(N_SAMPLES), desc="is_cifar")
    logits = out[:, :10]
    mean, std, _ = inception_score(logits, splits)
    protocol = ctx.protocol(n_samples=n, splits=splits, **record)
    results = [MetricResult("is_cifar", mean, std, protocol)]
    if labelled:
        results.append(MetricResult("is_cifar.accuracy", accuracy(logits, out[:, 10].long()), None, protocol))
    return results
