"""The keyframe interface every backend implements, and the built-in backend.

A `Keyframer` draws keyframes from specs and the characters' identities, and casts a new
character's reference portrait from its description. Two implement it:

- `BuiltinKeyframer`: the trained `KeyframePipeline` (identity = `IdentityEncoder` embeddings,
  optional planner tokens);
- `renderer.pretrained.PretrainedKeyframer`: any diffusers text-to-image pipeline, with
  IP-Adapter fed the characters' reference images (or their cached image embeddings).

Seeds: `draw` and `portrait` take a seed per keyframe; each keyframe's noise comes from its own
seed on the CPU, so it is the same whatever else is in the batch and whichever device draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec


@dataclass
class IdentityReference:
    """What memory holds of one character: its reference image and embeddings by encoder."""

    image: np.ndarray | None = None  # uint8 (H, W, 3)
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)


class Keyframer(Protocol):
    name: str
    resolution: int

    def draw(
        self,
        specs: Sequence[KeyframeSpec],
        identities: Sequence[Mapping[str, IdentityReference]],
        seeds: Sequence[int],
        tokens: torch.Tensor | None = None,
    ) -> np.ndarray:
        """One keyframe per spec, uint8 (B, H, W, 3)."""
        ...

    def portrait(self, character: CharacterSpec, seed: int) -> np.ndarray:
        """A new character's reference portrait from its looks/description, uint8 (H, W, 3)."""
        ...
