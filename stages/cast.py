"""The cast stage: every character of a screenplay resolved in the series bible, and the new
ones cast with the learned models.

A new character's reference portrait is drawn by the keyframer from its looks (the ones its
description names; the rest chosen for it, so that no two characters of a series look alike,
`schema.looks.identity_for`), and its identity embedding is computed from that portrait by the
identity encoder. A pinned image is kept as given and embedded the same way. Storyworld is
never drawn here: the looks are only words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from reelsmith.memory.casting import Reference, cast
from reelsmith.memory.store import SeriesStore
from reelsmith.numerics import derived_seed
from reelsmith.renderer.identity.encoder import ENCODER, IdentityEncoder
from reelsmith.renderer.keyframes.keyframer import Keyframer
from reelsmith.schema.cast import CastEntry
from reelsmith.schema.conditioning import CharacterSpec
from reelsmith.schema.looks import Identity, identity_for
from reelsmith.schema.screenplay import Character, Screenplay

Progress = Callable[[int, int], None]  # (characters cast, characters to cast)


def cast_characters(
    screenplay: Screenplay,
    store: SeriesStore,
    keyframer: Keyframer,
    encoder: IdentityEncoder,
    wanted: Sequence[str],
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, CastEntry]:
    """Resolve (or cast) every character of `screenplay` in `store`; return the `wanted` ones.

    Args:
        screenplay: The movie whose characters are cast.
        store: The series bible: characters it knows keep their identity, the rest are added.
        keyframer: Draws a new character's portrait.
        encoder: Embeds each portrait (memory keeps the embedding under `ENCODER`).
        wanted: The character ids to return, in order.
        seed: The run seed; a portrait's seed derives from it and the character's id.
        progress: Called with (characters done, len(wanted)) after each.

    Returns:
        Character id -> its embedding, looks and portrait, for every id in `wanted`.
    """
    make = ModelReferences.for_store(store, keyframer, encoder, seed)
    members = cast(screenplay, store, make, episode=screenplay.title)
    entries = {}
    for done, character_id in enumerate(wanted, 1):
        member = members[character_id]
        portrait = store.get_image(member.portrait_blob)
        blob = member.embeddings.get(ENCODER)
        embedding = store.get_tensor(blob) if blob else encoder.embed(portrait)[0]
        entries[character_id] = CastEntry(embedding, member.identity or {}, portrait)
        if progress is not None:
            progress(done, len(wanted))
    return entries


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
        return derived_seed(self.seed, "portrait", character_id)
