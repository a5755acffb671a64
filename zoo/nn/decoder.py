"""The explicit decoder p(x|z): a generator network with raw outputs and the likelihood head they parameterise
(`zoo.losses.likelihoods.VisibleDistribution`). Shared by the VAE family and AdversarialVB."""
from __future__ import annotations

from torch import Tensor, nn

from zoo.losses.likelihoods import VisibleDistribution
from zoo.registry import BACKBONES


class Decoder(nn.Module):
    """Generator network `net` with raw outputs + the visible distribution `likelihood` those outputs parameterise.

    Images are in [-1, 1] outside, pixel intensities in [0, 1] inside the likelihood.
    """

    def __init__(self, net: nn.Module, likelihood: VisibleDistribution):
        super().__init__()
        self.net, self.likelihood = net, likelihood

    @classmethod
    def from_backbone(cls, backbone: str, *, latent_dim: int, channels: int, image_size: int, width: int,
                      likelihood: str, init_scale: float, learn_scale: bool) -> Decoder:
        """The `backbone` family's generator without output activation, under a `likelihood` head (with
        `outputs_per_channel` maps per image channel: 256 logits for the Categorical, else 1)."""
        head = VisibleDistribution(likelihood, channels, init_scale, learn_scale)
        net = BACKBONES.get(f"{backbone}.generator")(latent_dim=latent_dim, channels=channels * head.outputs_per_channel,
                                                     image_size=image_size, width=width, output_activation=None)
        return cls(net, head)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (B, C, H, W) raw outputs

    def mean(self, z: Tensor) -> Tensor:
        """Mean of p(x|z) in [-1, 1]."""
        return self.likelihood.mean(self.net(z)) * 2 - 1

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per example (nats) of images x in [-1, 1]."""
        return self.likelihood.log_prob((x + 1) / 2, self.net(z))
