"""Losses: adversarial objectives, penalties, likelihoods and divergences, each a pure function."""
