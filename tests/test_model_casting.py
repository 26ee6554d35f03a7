"""Casting with the shipped models: portraits drawn from descriptions, embedded, remembered."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelsmith.memory.casting import cast
from reelsmith.memory.store import SeriesStore
from reelsmith.renderer.identity.encoder import ENCODER, load_identity_encoder
from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
from reelsmith.renderer.keyframes.keyframer import IdentityReference
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.looks import Identity, all_identities
from reelsmith.schema.screenplay import Screenplay
from reelsmith.stages.cast import ModelReferences
from reelsmith.world.render import portrait


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(2)
    return BuiltinKeyframer(steps=8), load_identity_encoder()


def screenplay() -> Screenplay:
    return Screenplay.model_validate(
        {
            "title": "Two",
            "logline": "Two friends meet.",
            "characters": [
                {"id": "mara", "name": "Mara", "description": "a red fox with a crown"},
                {"id": "ode", "name": "Ode", "description": "a blue striped robot"},
            ],
            "scenes": [
                {
                    "id": "scene-01",
                    "location": "forest",
                    "time": "day",
                    "setting": "exterior",
                    "shots": [
                        {
                            "id": "s01-01",
                            "duration": 3,
                            "size": "wide",
                            "camera": "static",
                            "characters": ["mara", "ode"],
                            "action": "Mara waves at Ode.",
                            "keyframe_prompt": "wide shot, a fox and a robot in a forest",
                            "motion_prompt": "Mara waves.",
                        }
                    ],
                }
            ],
        }
    )


def test_casting_draws_described_looks_and_remembers_them(tmp_path, models):
    keyframer, encoder = models
    store = SeriesStore.open(tmp_path / "series", "two")
    members = cast(screenplay(), store, ModelReferences.for_store(store, keyframer, encoder, 7))
    bank = encoder.embed(np.stack([portrait(i, 64) for i in all_identities()]))
    for member in members.values():
        looks = Identity(**member.identity)
        picture = store.get_image(member.portrait_blob)
        embedding = store.get_tensor(member.embeddings[ENCODER])
        assert picture.shape == (64, 64, 3)
        assert torch.allclose(embedding, encoder.embed(picture)[0], atol=1e-5)
        # the drawn portrait reads as the looks it was cast with
        assert int((bank @ embedding).argmax()) == looks.index
    assert members["mara"].identity["colour"] == "red"
    assert members["mara"].identity["accessory"] == "crown"
    assert members["ode"].identity["shape"] == "boxy"


def test_casting_is_deterministic(tmp_path, models):
    keyframer, encoder = models
    portraits = []
    for k in range(2):
        store = SeriesStore.open(tmp_path / f"s{k}", "two")
        members = cast(screenplay(), store, ModelReferences(keyframer, encoder, seed=3))
        portraits.append(store.get_image(members["mara"].portrait_blob))
    assert np.array_equal(portraits[0], portraits[1])


def test_builtin_keyframer_needs_each_characters_embedding(models):
    keyframer, _ = models
    spec = KeyframeSpec.from_shot(*next(screenplay().shots()), looks={})
    with pytest.raises(ValueError, match="'ode'"):
        keyframer.draw(
            [spec], [{"mara": IdentityReference(embeddings={ENCODER: torch.zeros(64)})}], [0]
        )
    with pytest.raises(ValueError, match="seeds"):
        keyframer.draw([spec], [{}], [0, 1])
