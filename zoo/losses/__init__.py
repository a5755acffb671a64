"""Losses: adversarial objectives, penalties, likelihoods and divergences, each a pure function."""
from zoo.losses.likelihoods import cyclic_shift, near_delta_gaussian

__all__ = ["cyclic_shift", "near_delta_gaussian"]
