"""Storyworld references for casting: a character's portrait and identity embedding.

`storyworld_reference` is the `make_reference` callback of `memory.cast` for the built-in
world: the portrait is the identity's canonical portrait, and the `storyworld-id-v1`
embedding is the identity's traits as concatenated one-hot vectors (26 numbers), so equal
identities have equal embeddings.
"""

from __future__ import annotations

import numpy as np
import torch

from reelsmith.memory.casting import Reference
from reelsmith.schema.looks import TRAITS, Identity, identity_for
from reelsmith.schema.screenplay import Character
from reelsmith.world.render import portrait

ENCODER = "storyworld-id-v1"


def identity_embedding(identity: Identity) -> torch.Tensor:
    parts = []
    for trait, values in TRAITS.items():
        one_hot = torch.zeros(len(values))
        one_hot[values.index(getattr(identity, trait))] = 1.0
        parts.append(one_hot)
    return torch.cat(parts)


def storyworld_reference(
    character: Character, image: np.ndarray | None, taken: set[Identity] | None = None
) -> Reference:
    """The reference of a new character; a pinned image becomes its portrait as given."""
    identity = identity_for(character, taken)
    picture = image if image is not None else portrait(identity, 64)
    return Reference(
        portrait=picture,
        embeddings={ENCODER: identity_embedding(identity)},
        identity=identity.to_dict(),
    )


class StoryworldReferences:
    """A `make_reference` callback that never gives two characters of a series one identity.

    Start it with the identities the series already holds (`for_store`); each new character
    gets an identity none of them has.
    """

    def __init__(self, taken: list[dict] | None = None) -> None:
        self.taken = {Identity(**d) for d in taken or []}

    @classmethod
    def for_store(cls, store) -> StoryworldReferences:
        return cls([c["identity"] for c in store.characters() if c["identity"]])

    def __call__(self, character: Character, image: np.ndarray | None) -> Reference:
        reference = storyworld_reference(character, image, self.taken)
        self.taken.add(Identity(**reference.identity))
        return reference
