"""Numbers that do not change from one process to the next.

Intel MKL (PyTorch's BLAS and vector maths on x86) sets itself up on its first call, and that
first call is threaded: seen here, with two threads, about one process in four computed the
first `torch.sin` of a float64 table (a model's position table, built when the model is built)
a last bit differently from every later call, so the same seed could give a keyframe a few
values apart. One small MKL call made before any model is built settles it: call `settle()`
first; every built-in loader and the CLI do.
"""

from __future__ import annotations

import functools


@functools.cache
def settle() -> None:
    """Make MKL's one-time set-up happen now, on a throwaway call (idempotent, microseconds)."""
    import torch

    with torch.no_grad():
        torch.mm(torch.ones(8, 8), torch.ones(8, 8))
        torch.sin(torch.ones(8, dtype=torch.float64))
