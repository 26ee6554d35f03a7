"""Numbers that do not change from one process to the next: MKL settled, seeds derived.

Intel MKL (PyTorch's BLAS and vector maths on x86) sets itself up on its first call, and that
first call is threaded: seen here, with two threads, about one process in four computed the
first `torch.sin` of a float64 table (a model's position table, built when the model is built)
a last bit differently from every later call, so the same seed could give a keyframe a few
values apart. One small MKL call made before any model is built settles it: call `settle()`
first; every built-in loader does, and so does `seed_global_generators`, which every run calls.
"""

from __future__ import annotations

import functools
import hashlib
import random

import numpy as np
import torch


@functools.cache
def settle() -> None:
    """Make MKL's one-time set-up happen now, on a throwaway call (idempotent, microseconds)."""
    with torch.no_grad():
        torch.mm(torch.ones(8, 8), torch.ones(8, 8))
        torch.sin(torch.ones(8, dtype=torch.float64))


def derived_seed(*parts: object) -> int:
    """A 32-bit seed from the run seed and what it seeds, e.g. `derived_seed(seed, "shot", id)`:
    the first 4 bytes (little-endian) of the sha256 of the parts joined by "/"."""
    text = "/".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def seed_global_generators() -> None:
    """Seed the global generators too (PyTorch seeds its own from the OS): every random draw
    of the product goes through a seeded generator of its own, so nothing can vary from run
    to run even where a library draws from a global one."""
    random.seed(0)
    np.random.seed(0)
    settle()
    torch.manual_seed(0)
