"""Casting: resolve every character of a screenplay against the series bible.

A character already in the series (matched by id, or by name or alias, case- and
accent-insensitively) keeps its identity, references and embeddings. A new one is created,
and its reference portrait and embeddings come from a callback, so memory never imports the
renderer. A character whose screenplay entry (or the `pins` argument) names an image is pinned
to that image: the callback embeds the user's picture instead of drawing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reelsmith.errors import InputError
from reelsmith.memory.store import SeriesStore, load_image_file
from reelsmith.schema.screenplay import Character, Scene, Screenplay, slugify


@dataclass
class Reference:
    """What the callback makes for a new character.

    Attributes:
        portrait: The reference portrait, (H, W, 3) uint8.
        embeddings: Identity embeddings keyed by the encoder that made them.
        identity: Storyworld identity attributes, where the built-in world is used.
    """

    portrait: np.ndarray
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    identity: dict | None = None


# (character, the user's pinned image or None) -> Reference
MakeReference = Callable[[Character, np.ndarray | None], Reference]


@dataclass
class CastMember:
    screenplay_id: str
    character_id: int
    name: str
    identity: dict | None
    portrait_blob: str | None
    embeddings: dict[str, str]
    new: bool


def cast(
    screenplay: Screenplay,
    store: SeriesStore,
    make_reference: MakeReference,
    pins: dict[str, str | Path] | None = None,
    episode: str | None = None,
    make_location: Callable[[Scene], np.ndarray] | None = None,
) -> dict[str, CastMember]:
    """Resolve the screenplay's characters in `store`, creating the new ones.

    Locations are remembered the same way: a place seen before keeps its reference keyframe;
    a new one gets one from `make_location` (if given). The episode, its new characters and
    its new places are written in one transaction: a failure leaves the series as it was.
    """
    # 1. check every pinned image before anything is written
    images = _pinned_images(screenplay, pins)
    # 2. who is new: make their references (outside the write lock; blobs are idempotent)
    references = _new_references(screenplay, store, images, make_reference, pins or {})
    places = _new_places(screenplay, store, make_location)
    # 3. one transaction; characters are looked up again inside it, so that two episodes
    #    casting the same new character at once end up sharing it
    members = {}
    with store.transaction():
        store.add_episode(episode or screenplay.title, screenplay.to_json())
        claimed: set[int] = set()
        for character in screenplay.characters:
            names = [character.name, *character.aliases]
            cid = store.find_character(character.id, names, claimed)
            new = cid is None
            if new:
                reference, portrait, embeddings = references.get(character.id) or (
                    _stored_reference(store, character, images, make_reference)
                )
                cid = store.add_character(
                    character.id,
                    character.name,
                    character.description,
                    character.aliases,
                    reference.identity,
                    portrait,
                    embeddings,
                    pinned=character.id in images,
                )
            else:
                for alias in names:
                    store.add_alias(cid, alias)
            claimed.add(cid)
            members[character.id] = _member(store, character.id, cid, new)
        for key, (description, blob) in places.items():
            store.set_location(key, description, blob)
    return members


def _pinned_images(
    screenplay: Screenplay, pins: dict[str, str | Path] | None
) -> dict[str, np.ndarray]:
    """Every pinned image (by `pins`, else the screenplay's `reference_image`), loaded."""
    pins = dict(pins or {})
    known_ids = {c.id for c in screenplay.characters}
    for key in pins:
        if key not in known_ids:
            raise InputError(f"pinned image for '{key}', who is not in the screenplay's cast")
    return {
        c.id: load_image_file(pins.get(c.id) or c.reference_image)
        for c in screenplay.characters
        if pins.get(c.id) or c.reference_image
    }


def _new_references(
    screenplay: Screenplay,
    store: SeriesStore,
    images: dict[str, np.ndarray],
    make_reference: MakeReference,
    pins: dict[str, str | Path],
) -> dict[str, tuple[Reference, str, dict[str, str]]]:
    """The characters not in the series yet -> their references, stored; a character already
    cast cannot be pinned to a new image."""
    claimed: set[int] = set()
    references = {}
    for character in screenplay.characters:
        cid = store.find_character(character.id, [character.name, *character.aliases], claimed)
        if cid is not None:
            claimed.add(cid)
            if character.id in pins:
                raise InputError(
                    f"'{character.id}' is already cast in series '{store.name}'; "
                    "forget it first to pin a new image"
                )
        else:
            references[character.id] = _stored_reference(store, character, images, make_reference)
    return references


def _new_places(
    screenplay: Screenplay,
    store: SeriesStore,
    make_location: Callable[[Scene], np.ndarray] | None,
) -> dict[str, tuple[str, str | None]]:
    """The places not in the series yet (or without a keyframe) -> (description, blob)."""
    places = {}
    for scene in screenplay.scenes:
        key = slugify(scene.location, "place")
        known = store.location(key)
        if key not in places and (known is None or known["blob"] is None):
            places[key] = (
                scene.location,
                store.put_image(make_location(scene)) if make_location else None,
            )
    return places


def _member(store: SeriesStore, screenplay_id: str, cid: int, new: bool) -> CastMember:
    """A cast member as the series now holds it."""
    record = store.character(cid)
    portrait = next((i["blob"] for i in record["images"] if i["kind"] != "frame"), None)
    return CastMember(
        screenplay_id,
        cid,
        record["name"],
        record["identity"],
        portrait,
        record["embeddings"],
        new,
    )


def _stored_reference(store, character, images, make_reference):
    """A new character's reference, its portrait and embeddings stored as blobs (before the
    rows that point at them) -> (reference, portrait blob, embedding blobs). Also made inside
    the transaction for a character that another process forgot between our two looks."""
    reference = make_reference(character, images.get(character.id))
    return (
        reference,
        store.put_image(reference.portrait),
        {enc: store.put_tensor(t) for enc, t in reference.embeddings.items()},
    )
