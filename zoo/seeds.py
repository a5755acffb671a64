"""One way to derive seeds: a 63-bit integer from a tuple of names and numbers (sha256 of "a:b:c"), so every stream
of randomness (a model's initialisation, a dataset split's draw, an evaluation stream's batch) has its own seed,
reproducible from the recipe's seed and independent of the others. (The trainer's per-step seeds are arithmetic,
`zoo.training.trainer.step_seed`, kept as they are so runs resume exactly.)"""
from __future__ import annotations

import hashlib

MASK_63 = (1 << 63) - 1


def derive_seed(*parts: object) -> int:
    """sha256 of the parts joined by ':' (ints as ints), first 8 bytes, 63 bits: e.g. derive_seed("init", 0)."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & MASK_63
