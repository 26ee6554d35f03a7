"""Storyworld: identities, determinism, labels that agree with pixels, renderability."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.schema.looks import all_identities, cast_identities, identity_for
from reelsmith.schema.screenplay import Character, Screenplay, TimeOfDay
from reelsmith.world.figures import RGB
from reelsmith.world.render import WorldConfig, WorldRenderer, place_of, portrait
from reelsmith.world.scenery import light_for


def screenplay(prompt: str, seed: int = 0, shots: int = 6) -> Screenplay:
    return OfflineWriter().write(Brief(prompt, seed=seed, shots=shots))


def render(sp: Screenplay, **config):
    config.setdefault("max_frames", 8)
    return list(WorldRenderer(WorldConfig(**config)).render(sp))


def test_identity_space_is_large():
    assert len(all_identities()) >= 500
    assert len({i.index for i in all_identities()}) == len(all_identities())


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("a red fox", {"colour": "red", "shape": "pointed"}),
        ("a fox in a blue hat", {"colour": "blue", "accessory": "hat"}),
        ("a tall stranger", {"shape": "tall"}),
        (
            "a small striped cat with glasses",
            {"shape": "small", "pattern": "striped", "accessory": "glasses"},
        ),
        ("a grey robot wearing a crown", {"colour": "grey", "shape": "boxy", "accessory": "crown"}),
    ],
)
def test_described_looks_are_honoured(description, expected):
    identity = identity_for(Character(id="x", name="Someone", description=description))
    assert {k: getattr(identity, k) for k in expected} == expected


def test_unnamed_traits_come_from_a_stable_hash_of_the_name():
    a = identity_for(Character(id="a", name="Mira"))
    assert a == identity_for(Character(id="other-id", name="Mira"))
    names = [f"Name{k}" for k in range(40)]
    assert len({identity_for(Character(id="x", name=n)) for n in names}) > 30


def test_a_cast_never_shares_an_identity():
    def foxes(n):
        return [Character(id=f"f{k}", name=f"Fox {k}", description="a red fox") for k in range(n)]

    # named looks hold while free combinations remain: 6 accessories x 3 patterns
    identities = cast_identities(foxes(18))
    assert len(set(identities.values())) == 18
    assert all(i.colour == "red" and i.shape == "pointed" for i in identities.values())
    assert len(set(cast_identities(foxes(30)).values())) == 30


def test_every_pair_of_portraits_differs_clearly():
    portraits = np.stack(
        [portrait(i).astype(np.float32).ravel() / 255 for i in all_identities()]
    )  # (N, H*W*3)
    sq = (portraits**2).sum(1)
    dist = sq[:, None] + sq[None] - 2 * portraits @ portraits.T
    np.fill_diagonal(dist, np.inf)
    rms = np.sqrt(np.maximum(dist, 0) / portraits.shape[1])
    assert rms.min() > 0.015, rms.min()


def test_same_screenplay_same_bytes():
    sp = screenplay("Ada and Kit race through the forest at night", seed=4)
    first, second = render(sp), render(sp)
    for a, b in zip(first, second, strict=True):
        assert a.frames.tobytes() == b.frames.tobytes()
        assert a.masks.tobytes() == b.masks.tobytes()
        assert a.labels == b.labels


def test_resolutions():
    sp = screenplay("a fox on the beach", shots=2)
    for resolution in (64, 128):
        shot = render(sp, resolution=resolution)[0]
        assert shot.frames.shape[1:] == (resolution, resolution, 3)
        assert shot.masks.shape[1:] == (resolution, resolution)


def test_frames_follow_duration_and_fps():
    sp = screenplay("a fox on the beach", shots=2)
    shots = list(WorldRenderer(WorldConfig(fps=8)).render(sp))
    for truth, (_, shot) in zip(shots, sp.shots(), strict=True):
        assert len(truth.frames) == max(1, round(shot.duration * 8))


@pytest.mark.parametrize("seed", range(6))
def test_labels_agree_with_pixels(seed):
    sp = screenplay("Mira, Bo and Juno meet on a city street", seed=seed, shots=8)
    identities = cast_identities(sp.characters)
    index = {c.id: k + 1 for k, c in enumerate(sp.characters)}
    for truth in render(sp):
        time = TimeOfDay(truth.labels["time"])
        light = np.asarray(light_for(truth.labels["location"], time), np.float32)
        for t, visible in enumerate(truth.labels["frames"]):
            mask = truth.masks[t]
            present = {int(v) for v in np.unique(mask) if v}
            assert present == {index[v["id"]] for v in visible}  # never a hidden character
            for v in visible:
                x0, y0, x1, y1 = v["box"]
                assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
                pixels = truth.frames[t][mask == index[v["id"]]].astype(np.float32)
                assert len(pixels) == v["pixels"] > 0
                if len(pixels) < 60:
                    continue  # a sliver at the frame's edge is mostly outline
                body = np.asarray(RGB[identities[v["id"]].colour], np.float32) * light
                # the most common colours under the mask are the character's own
                near = np.abs(pixels - body).max(axis=1) < 110
                assert near.mean() > 0.3, (v, truth.shot_id)


def test_occluded_characters_are_not_labelled():
    sp = screenplay("Mira and Bo", shots=4)
    truth = render(sp)[0]
    masks = truth.masks.copy()
    for t, visible in enumerate(truth.labels["frames"]):
        for v in visible:
            assert (masks[t] > 0).any()
            assert v["pixels"] == int(
                (masks[t] == [c.id for c in sp.characters].index(v["id"]) + 1).sum()
            )


@settings(max_examples=40, deadline=None)
@given(
    prompt=st.one_of(
        st.text(min_size=1, max_size=80).filter(lambda s: s.strip()),
        st.sampled_from(
            [
                "two robots",
                "a red fox in the snow",
                "李小龙",
                "!!!",
                "Mira, a small mouse, and Bo in the space station",
            ]
        ),
    ),
    seed=st.integers(0, 2**31),
    shots=st.integers(1, 12),
)
def test_every_offline_screenplay_renders(prompt, seed, shots):
    sp = screenplay(prompt, seed=seed, shots=shots)
    rendered = render(sp, max_frames=2)
    assert len(rendered) == shots
    for truth, (_, shot) in zip(rendered, sp.shots(), strict=True):
        assert truth.frames.dtype == np.uint8 and truth.frames.shape[1:] == (64, 64, 3)
        on_screen = {v["id"] for frame in truth.labels["frames"] for v in frame}
        assert on_screen <= set(shot.characters)


def test_unknown_location_falls_back_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        place = place_of("the castle of glass")
    assert place == place_of("the castle of glass")
    assert "castle of glass" in caplog.text
    assert place_of("a misty forest clearing") == "forest"


def test_places_look_different_and_stay_the_same():
    def first_frame(location: str):
        sp = screenplay("Mira", shots=2)
        data = sp.model_dump()
        data["scenes"][0]["location"] = location
        data["scenes"][0]["shots"][0]["size"] = "wide"
        return render(Screenplay.model_validate(data))[0].frames[0].astype(np.float32)

    forest, beach = first_frame("forest"), first_frame("beach")
    assert np.abs(forest - beach).mean() > 20
    assert np.abs(forest - first_frame("the woods")).mean() < 1e-6
