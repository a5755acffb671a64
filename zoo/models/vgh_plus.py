"""VGH++ (Rosca et al. 2018, section 5.1 eq. 9, App. F, Algorithm 5): VGH whose data discriminator also treats prior
samples G(z), z ~ p(z), as fake, and whose generator also minimises R_D(G(z)) — "the green arrow between x_gen and
D" of Fig. 6. The decoder thus gets an adversarial signal on samples from early in training, like a GAN, while the
encoder still allows inference. Everything else (players, config, phases, encoder and code-discriminator losses) is
VGH's: see `zoo/models/vgh.py`, whose `phase_loss` carries the two extra terms behind `adversarial_samples`.
"""
from __future__ import annotations

from zoo.models.vgh import VGH, VGHConfig
from zoo.registry import register_model


@register_model("vgh_plus")
class VGHPlus(VGH):
    config_class = VGHConfig
    paper = "Rosca et al. 2018, section 5.1 eq. 9, App. F Algorithm 5"
    adversarial_samples = True
