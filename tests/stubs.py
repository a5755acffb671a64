"""Hand-set affine players for loss tests: known outputs, recorded inputs, so a phase loss can be recomputed by hand."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Affine(nn.Module):
    """out = W [flatten(input_1), flatten(input_2), ...] + b, reshaped to `out_shape` ((): one value per row, (B,)).

    Every call's inputs are kept in `calls` (detached), so a test can recompute the outputs and losses by hand.
    """

    def __init__(self, weight: list[list[float]], bias: list[float] | None = None, out_shape: tuple[int, ...] = ()):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))
        self.bias = nn.Parameter(torch.tensor(bias if bias is not None else [0.0] * len(weight)))
        self.out_shape = out_shape
        self.calls: list[tuple[Tensor, ...]] = []

    def forward(self, *inputs: Tensor) -> Tensor:
        self.calls.append(tuple(i.detach().clone() for i in inputs))
        h = torch.cat([i.flatten(1) for i in inputs], dim=1)  # (B, sum of input sizes)
        out = h @ self.weight.T + self.bias  # (B, outputs)
        return out.view(out.shape[0], *self.out_shape) if self.out_shape else out.squeeze(-1)


def affine(weight: list[list[float]], bias: list[float], *rows: list[float]) -> list[float]:
    """The same map on plain Python lists (one example)."""
    h = [v for row in rows for v in row]
    return [sum(w * v for w, v in zip(ws, h)) + b for ws, b in zip(weight, bias)]


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def bernoulli_nll(x01: list[float], logits: list[float]) -> float:
    """-sum_i [x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i))] = sum_i softplus(l_i) - x_i l_i."""
    return sum(softplus(l) - x * l for x, l in zip(x01, logits))


def rows(t: Tensor) -> list[list[float]]:
    """A (B, ...) tensor as B flat Python lists."""
    return t.flatten(1).tolist()


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
