"""Discriminator heads over several inputs: `heads.joint_discriminator`, the (x, z) joint head of Rosca et al. (2018)
App. K Table 6, used by VEEGAN and AdversarialVB.

Table 6: "The input of this network is a vector concatenation of data and code features, each obtained by passing the
data and codes through the same discriminator and code architectures used for the other models (excluding the
classification layer)", followed by Convolution 3x3 s1 [512, 1024], Convolution 2x2 s1 [512, 1024], Linear adv 2.
Our reading (docs/models.md):
- data features: the family's image discriminator (`rosca_mnist` Table 4 or `dcgan`) without its head, i.e. its last
  (C, 4, 4) feature map; code features: the 3 x 1000 LeakyReLU code discriminator MLP without its logit layer.
- "vector concatenation" then 2-D convolutions: the code feature vector is tiled over the 4 x 4 grid and concatenated
  with the data map along channels, (C + 1000, 4, 4). The two valid convolutions then reduce 4x4 -> 2x2 -> 1x1, the
  only reading in which a 3x3 and a 2x2 kernel end exactly on one position before the Linear.
- "[512, 1024]" is the swept number of maps (`joint_width`), the same for both convolutions.
- the 3x3 convolution is followed by the discriminators' norm and LeakyReLU 0.2; the 2x2 one by LeakyReLU only, with
  a bias (its 1x1 output feeds the logit; the WGAN `dcgan.py` discriminator has no norm on its last convolution).
- No batch norm anywhere in the head (its data-feature network included), although App. K used "batch normalization
  for all our experiments": the head is a density-ratio estimator, whose logit must be a function of one (x, z) pair
  (Mescheder Prop. 1: T*(x, z) = log q(z|x) - log p(z)). With train-mode batch norm a logit depends on the batch it
  was scored in, so a classifier that scores its two classes as separate batches separates them by batch statistics
  alone: loss 0.025, below the Bayes limit 0.907, and an AdversarialVB KL estimate of 5.96 against a true 1.25.
  The default is per-example layer norm ("layer", GroupNorm(1, C)), Gulrajani et al.'s replacement for batch norm in
  critics; "batch" is refused (docs/models.md, "Table 6 joint head").
- "Linear adv 2" is one logit (a two-way softmax is equivalent, as for Table 4).
"""
from __future__ import annotations

from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from zoo.nn.layers import FeatureDiscriminator, check_norm, conv_block
from zoo.nn.mlp import MLPDiscriminator
from zoo.registry import BACKBONES, register_backbone

#: image discriminator families whose features are a flattened (C, 4, 4) map, which the Table 6 convolutions need
SPATIAL_FAMILIES = ("rosca_mnist", "dcgan")
MAP = 4
#: per-example norms only: a density-ratio logit must not depend on the other examples of its batch (see above)
HEAD_NORMS = ("layer", "none")


class JointDiscriminator(FeatureDiscriminator):
    """D(x, z): image features and code features joined by the Table 6 head; `forward(x, z)` -> (B,) logits.

    Args:
        data: an image discriminator (`FeatureDiscriminator`) whose `features` is a flattened (C, 4, 4) map; its
            classification head is removed.
        code: a code discriminator MLP; its logit layer is removed.
        joint_width: maps of the two head convolutions (Table 6: 512 or 1024).
        norm: normalisation after the first head convolution (none after the second); one of `HEAD_NORMS`.
    """

    def __init__(self, data: FeatureDiscriminator, code: MLPDiscriminator, joint_width: int, norm: str):
        super().__init__(joint_width)
        check_head_norm(norm)
        if data.feature_dim % (MAP * MAP):
            raise ValueError(f"heads.joint_discriminator: the data discriminator's features ({data.feature_dim}) are "
                             f"not a flattened (C, {MAP}, {MAP}) map; use a family in {SPATIAL_FAMILIES}")
        del data.head, code.head  # "excluding the classification layer": unused parameters would get no gradient
        self.data, self.code = data, code
        self.data_maps = data.feature_dim // (MAP * MAP)
        self.joint = nn.Sequential(
            *conv_block(self.data_maps + code.feature_dim, joint_width, 3, 1, 0, norm, nn.LeakyReLU(0.2)),  # 2x2
            *conv_block(joint_width, joint_width, 2, 1, 0, "none", nn.LeakyReLU(0.2)),  # 1x1, no norm: see above
            nn.Flatten(),
        )

    def features(self, x: Tensor, z: Tensor) -> Tensor:
        fx = rearrange(self.data.features(x), "b (c h w) -> b c h w", h=MAP, w=MAP)  # (B, C, 4, 4)
        fz = repeat(self.code.features(z), "b c -> b c h w", h=MAP, w=MAP)  # the code tiled over the grid
        return self.joint(torch.cat([fx, fz], dim=1))  # (B, joint_width)


def check_head_norm(norm: str) -> str:
    """`norm` if a density-ratio head may use it, else a ValueError that says why batch norm is refused."""
    if check_norm(norm) not in HEAD_NORMS:
        raise ValueError(f"heads.joint_discriminator: norm {norm!r} makes a logit depend on the other examples of its "
                         f"batch, so the head could tell its two classes apart by batch statistics instead of "
                         f"estimating a density ratio; use one of {', '.join(map(repr, HEAD_NORMS))} (disc_norm in "
                         f"the model config; docs/models.md, Table 6 joint head)")
    return norm


@register_backbone("heads.joint_discriminator")
def joint_discriminator(latent_dim: int, channels: int, image_size: int, family: str = "rosca_mnist", width: int = 64,
                        norm: str = "layer", joint_width: int = 512, code_hidden: int = 1000,
                        code_layers: int = 3) -> nn.Module:
    """Rosca et al. Table 6 joint head over a `family` image discriminator and the code discriminator MLP,
    (B, C, H, W), (B, latent_dim) -> (B,) logits."""
    if family not in SPATIAL_FAMILIES:
        raise ValueError(f"heads.joint_discriminator: family {family!r} has no 4x4 feature map for the Table 6 "
                         f"convolutions; choose one of {', '.join(SPATIAL_FAMILIES)}")
    check_head_norm(norm)
    data = BACKBONES.get(f"{family}.discriminator")(channels=channels, image_size=image_size, width=width, norm=norm)
    code = BACKBONES.get("mlp.code_discriminator")(latent_dim, hidden=code_hidden, layers=code_layers)
    return JointDiscriminator(data, code, joint_width, norm)


def joint_discriminator_for(c: Any) -> nn.Module:
    """The joint head a model config asks for: fields latent_dim, channels, image_size, backbone (the family), width
    and disc_width (data-feature width, default width), disc_norm, joint_width, code_disc_hidden, code_disc_layers."""
    return joint_discriminator(c.latent_dim, c.channels, c.image_size, family=c.backbone, width=c.disc_width or c.width,
                               norm=c.disc_norm, joint_width=c.joint_width, code_hidden=c.code_disc_hidden,
                               code_layers=c.code_disc_layers)
