"""What memory holds of one cast member, as planning, drawing and rendering read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class CastEntry:
    """One cast member.

    Attributes:
        embedding: Identity embedding (D,) under the identity encoder memory stores it for;
            None where memory holds none (then the planner reads its null identity and the
            keyframer gets no embedding).
        looks: Known traits, e.g. {"shape": "round", "colour": "red", ...}.
        portrait: The reference portrait, uint8 (H, W, 3), for keyframers that read images.
    """

    embedding: torch.Tensor | None
    looks: Mapping[str, str] = field(default_factory=dict)
    portrait: np.ndarray | None = None
