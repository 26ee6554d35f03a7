"""The keyframe interface every backend implements.

A `Keyframer` draws keyframes from specs and the characters' identities, and casts a new
character's reference portrait from its description. Two implement it:

- `renderer.keyframes.builtin.BuiltinKeyframer`: the trained `KeyframePipeline` (identity =
  `IdentityEncoder` embeddings; it reads the keyframe planner's tokens through its tokenizer);
- `renderer.keyframes.pretrained.PretrainedKeyframer`: any diffusers text-to-image pipeline,
  with IP-Adapter fed the characters' reference images (or their cached image embeddings); it
  has no tokenizer, so it draws from text and references alone.

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


class KeyframeTokenizer(Protocol):
    """What turns keyframes into the continuous tokens a keyframe planner plans."""

    token_shape: tuple[int, int]  # (K, d): K tokens of width d per keyframe
    identity_dim: int  # width of the identity embeddings the decoder reads

    def encode(self, images: np.ndarray) -> torch.Tensor:
        """Keyframes uint8 (B, H, W, 3) -> tokens (B, K, d)."""
        ...


class Keyframer(Protocol):
    """Draws keyframes and portraits.

    Attributes:
        name: The backend's name in logs and errors.
        resolution: The side of the square keyframes it draws, in pixels.
        tokenizer: The keyframe tokenizer whose tokens `draw` reads, or None where it reads
            none (then there is no plan for it to draw, and `draw` takes no `tokens`).
    """

    name: str
    resolution: int
    tokenizer: KeyframeTokenizer | None

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
