"""The offline writer: valid, deterministic, drawn from the prompt, in storyworld vocabulary."""

from __future__ import annotations

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelsmith.errors import InputError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.schema import vocabulary
from reelsmith.schema.screenplay import Screenplay

SCHEMA = Screenplay.model_json_schema()


def write(prompt: str, **options) -> Screenplay:
    return OfflineWriter().write(Brief(prompt, **options))


def check_renderable(screenplay: Screenplay) -> None:
    """Everything the offline writer emits is storyworld vocabulary."""
    jsonschema.validate(screenplay.model_dump(mode="json"), SCHEMA)
    assert len(screenplay.scenes) >= 1
    for character in screenplay.characters:
        assert vocabulary.first(character.description, vocabulary.SHAPES), character
    for scene, shot in screenplay.shots():
        assert scene.location in vocabulary.LOCATIONS
        assert 1 <= len(shot.characters) <= 3
        lead = shot.blocking[0]
        # the action text says what the blocking says, so the world can read either
        assert vocabulary.first(shot.action, vocabulary.ACTION_WORDS) == lead.action, shot.action


prompts = st.one_of(
    st.text(min_size=1, max_size=200).filter(lambda s: s.strip()),
    st.text(alphabet=st.characters(categories=["P", "S", "Zs"]), min_size=1).filter(
        lambda s: s.strip()
    ),
    st.from_regex(r"[A-Z][a-z]{2,8}( and [A-Z][a-z]{2,8})?( meet)?[.!?]?", fullmatch=True),
    st.sampled_from(["fox", "A", "!!!", "李小龙在城市里", "🦊🤖", "Zoë et Chloé au café"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=prompts, seed=st.integers(min_value=0, max_value=2**31))
def test_any_prompt_gives_a_valid_deterministic_screenplay(prompt, seed):
    first = write(prompt, seed=seed)
    assert first.to_json() == write(prompt, seed=seed).to_json()
    assert len(first.scenes) >= 2
    check_renderable(first)


def test_ten_kilobyte_prompt():
    prompt = ("Mira, a small yellow mouse with a scarf, crosses the desert. " * 200)[:10_240]
    screenplay = write(prompt, seed=3)
    check_renderable(screenplay)
    assert [c.name for c in screenplay.characters] == ["Mira"]
    assert len(screenplay.logline) <= 300


def test_seeds_vary_the_screenplay():
    texts = {write("two robots in the city", seed=s).to_json() for s in range(5)}
    assert len(texts) == 5


def test_cast_comes_from_the_prompt_with_adjectives_kept():
    screenplay = write("A red fox and two rusty robots search the desert at night")
    cast = {c.name: c.description for c in screenplay.characters}
    assert cast == {
        "Red Fox": "a red fox",
        "Rusty Robot 1": "a rusty robot",
        "Rusty Robot 2": "a rusty robot",
    }
    assert screenplay.scenes[0].location == "desert"
    assert {scene.time.value for scene in screenplay.scenes} == {"night"}


def test_named_characters_and_appositives():
    screenplay = write("Mira, a small mouse with a hat, meets Captain Bo in the harbour.")
    cast = {c.name: c.description for c in screenplay.characters}
    assert cast["Mira"] == "a small mouse with a hat"
    assert "Captain Bo" in cast and cast["Captain Bo"]  # an invented look, never empty
    assert len({c.id for c in screenplay.characters}) == 2


def test_similar_names_stay_distinct():
    screenplay = write("STEEL and Mr. Steel argue on a city street")
    names = [c.name for c in screenplay.characters]
    assert names == ["STEEL", "Mr. Steel"]
    assert len({c.id for c in screenplay.characters}) == 2


def test_variety_of_sizes_moves_actions_and_dialogue():
    screenplay = write("Ada and Kit race through the forest", shots=16, seed=1)
    shots = [shot for _, shot in screenplay.shots()]
    assert len({s.size for s in shots}) >= 2
    assert len({s.camera for s in shots}) >= 2
    assert len({s.blocking[0].action for s in shots}) >= 4
    assert any(s.dialogue for s in shots)
    assert shots[-1].transition.value == "fade"


@pytest.mark.parametrize(
    ("options", "scenes", "shots"),
    [
        ({"scenes": 3}, 3, 12),
        ({"shots": 7}, 2, 7),
        ({"scenes": 5, "shots": 5}, 5, 5),
        ({"shots": 1}, 1, 1),
        ({"shots": 250}, 62, 250),
    ],
)
def test_scene_and_shot_counts(options, scenes, shots):
    screenplay = write("a picnic on the beach", **options)
    assert (len(screenplay.scenes), screenplay.num_shots) == (scenes, shots)


def test_target_duration():
    screenplay = write("a long walk", duration=95)
    assert screenplay.duration == pytest.approx(95, abs=0.5)
    screenplay = write("a long walk", duration=60, shots=4)
    assert screenplay.num_shots == 4
    assert screenplay.duration == pytest.approx(60, abs=0.1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"duration": 600, "shots": 3}, "needs 200.00 s shots"),
        ({"scenes": 4, "shots": 2}, "2 shots cannot fill 4 scenes"),
        ({"scenes": 0}, "scenes must be between 1 and 200"),
    ],
)
def test_impossible_options_are_clear(options, message):
    with pytest.raises(InputError, match=message):
        write("anything", **options)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt(prompt):
    with pytest.raises(InputError, match="the prompt is empty"):
        write(prompt)
