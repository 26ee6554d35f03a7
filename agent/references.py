"""Casting with the learned models: the `make_reference` callback of `memory.cast`.

A new character's reference portrait is drawn by the keyframer from its looks (the ones its
description names; the rest chosen for it, so that no two characters of a series look alike),
and its identity embedding is computed from that portrait by the identity encoder. A pinned
image is kept as given and embedded the same way. Storyworld is never drawn here: the looks
are only words.
"""

from __future__ import annotations

import hashlib

import numpy as np

from reelsmith.memory.casting import Reference
from reelsmith.renderer.identity.encoder import ENCODER, IdentityEncoder
from reelsmith.renderer.keyframes.keyframer import Keyframer
from reelsmith.schema.conditioning import CharacterSpec
from reelsmith.schema.looks import Identity, identity_for
from reelsmith.schema.screenplay import Character


class ModelReferences:
    """`make_reference` for `memory.cast`, drawing portraits with a keyframer.

    Args:
        keyframer: Draws the portrait (`Keyframer.portrait`).
        encoder: The identity encoder whose embedding memory stores under `ENCODER`.
        taken: Looks already used in the series (`Identity.to_dict()` rows).
        seed: The run's seed; a portrait's seed derives from it and the character's id.
    """

    def __init__(
        self,
        keyframer: Keyframer,
        encoder: IdentityEncoder,
        taken: list[dict] | None = None,
        seed: int = 0,
    ) -> None:
        self.keyframer = keyframer
        self.encoder = encoder
        self.taken = {Identity(**d) for d in taken or []}
        self.seed = seed

    @classmethod
    def for_store(cls, store, keyframer, encoder, seed: int = 0) -> ModelReferences:
        taken = [c["identity"] for c in store.characters() if c["identity"]]
        return cls(keyframer, encoder, taken, seed)

    def __call__(self, character: Character, image: np.ndarray | None) -> Reference:
        identity = identity_for(character, self.taken)
        self.taken.add(identity)
        if image is None:
            spec = CharacterSpec(character.id, identity.to_dict(), None, character.description)
            image = self.keyframer.portrait(spec, self.portrait_seed(character.id))
        return Reference(
            portrait=image,
            embeddings={ENCODER: self.encoder.embed(image)[0]},
            identity=identity.to_dict(),
        )

    def portrait_seed(self, character_id: str) -> int:
        digest = hashlib.sha256(f"{self.seed}/portrait/{character_id}".encode()).digest()
        return int.from_bytes(digest[:4], "little")
