"""The Screenplay schema: validation with field paths, JSON/YAML round trips, the schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from reelsmith.errors import ScreenplayError
from reelsmith.schema.screenplay import (
    MAX_SHOTS,
    Action,
    Screenplay,
    ShotSize,
    slugify,
    unique_slug,
)


def make(**changes) -> dict:
    """A small valid screenplay as plain data, with top-level fields replaced."""
    data = {
        "title": "The Lantern",
        "characters": [
            {"id": "mira", "name": "Mira", "description": "a small yellow mouse with a scarf"},
            {"id": "bo", "name": "Bo", "description": "a tall blue robot"},
        ],
        "scenes": [
            {
                "id": "scene-01",
                "location": "forest",
                "time": "night",
                "shots": [
                    {
                        "id": "s01-01",
                        "duration": 3,
                        "size": "wide",
                        "camera": "pan-left",
                        "characters": ["mira", "bo"],
                        "action": "Mira approaches Bo.",
                        "blocking": [{"character": "mira", "action": "approach", "target": "bo"}],
                        "dialogue": [{"speaker": "mira", "line": "Bo! Wait!"}],
                    }
                ],
            }
        ],
    }
    data.update(changes)
    return data


def shot(data: dict, i: int = 0, j: int = 0) -> dict:
    return data["scenes"][i]["shots"][j]


def error_of(data: dict) -> str:
    with pytest.raises(ScreenplayError) as info:
        Screenplay.from_data(data, "x.json")
    return str(info.value)


def test_valid_screenplay_parses_with_enums():
    screenplay = Screenplay.from_data(make())
    first = screenplay.scenes[0].shots[0]
    assert first.size is ShotSize.wide
    assert first.blocking[0].action is Action.approach
    assert screenplay.num_shots == 1 and screenplay.duration == 3.0


def test_unknown_character_in_shot_names_the_path():
    data = make()
    shot(data)["characters"].append("zed")
    message = error_of(data)
    assert "scenes[0].shots[0].characters[2]: unknown character id 'zed'" in message
    assert message.startswith("x.json: ")


def test_unknown_speaker_and_blocking_target():
    data = make()
    shot(data)["dialogue"][0]["speaker"] = "ghost"
    shot(data)["blocking"][0]["target"] = "nobody"
    message = error_of(data)
    assert "scenes[0].shots[0].dialogue[0].speaker: unknown character id 'ghost'" in message
    assert "scenes[0].shots[0].blocking[0].target: unknown character id 'nobody'" in message


def test_blocking_character_must_be_on_screen():
    data = make()
    shot(data)["characters"] = ["bo"]
    assert "blocking[0].character: 'mira' is not on screen" in error_of(data)


def test_duplicate_ids_are_rejected():
    data = make()
    data["characters"].append({"id": "bo", "name": "Other Bo"})
    data["scenes"].append(json.loads(json.dumps(data["scenes"][0])))
    message = error_of(data)
    assert "characters[2].id: duplicate character id 'bo'" in message
    assert "scenes[1].id: duplicate scene id 'scene-01'" in message
    assert "scenes[1].shots[0].id: duplicate shot id 's01-01'" in message


@pytest.mark.parametrize("bad_id", ["../etc", "Mira", "a b", "", "-x", "x" * 65, "é"])
def test_ids_must_be_safe_file_names(bad_id):
    data = make()
    data["characters"][0]["id"] = bad_id
    message = error_of(data)
    assert "characters[0].id" in message
    assert "not a safe id" in message


def test_empty_scene_and_no_scenes():
    data = make()
    data["scenes"][0]["shots"] = []
    assert "scenes[0].shots: scene 'scene-01' has no shots" in error_of(data)
    assert "scenes: a screenplay needs at least one scene" in error_of(make(scenes=[]))


@pytest.mark.parametrize("seconds", [0.4, 0, -1, 30.5, 1e9])
def test_duration_limits(seconds):
    data = make()
    shot(data)["duration"] = seconds
    assert "scenes[0].shots[0].duration" in error_of(data)


@pytest.mark.parametrize("seconds", [0.5, 30])
def test_duration_bounds_are_inclusive(seconds):
    data = make()
    shot(data)["duration"] = seconds
    assert Screenplay.from_data(data).duration == seconds


def test_more_than_max_shots():
    data = make()
    one = shot(data)
    data["scenes"][0]["shots"] = [dict(one, id=f"s{k}") for k in range(MAX_SHOTS + 1)]
    assert f"more than the limit of {MAX_SHOTS}" in error_of(data)
    data["scenes"][0]["shots"].pop()
    assert Screenplay.from_data(data).num_shots == MAX_SHOTS


def test_unknown_enum_value_lists_choices():
    data = make()
    shot(data)["camera"] = "dolly"
    message = error_of(data)
    assert "scenes[0].shots[0].camera: 'dolly' is not one of" in message
    assert "'pan-left'" in message


def test_unknown_field_is_rejected_not_dropped():
    data = make()
    shot(data)["lens"] = "35mm"
    assert "scenes[0].shots[0].lens: unknown field" in error_of(data)


def test_json_and_yaml_round_trip():
    screenplay = Screenplay.from_data(make())
    assert Screenplay.from_json(screenplay.to_json()) == screenplay
    assert Screenplay.from_yaml(screenplay.to_yaml()) == screenplay


def test_bad_json_and_yaml_are_clear():
    with pytest.raises(ScreenplayError, match="x.json: not valid JSON"):
        Screenplay.from_json("{", "x.json")
    with pytest.raises(ScreenplayError, match="x.yaml: not valid YAML"):
        Screenplay.from_yaml("a: [", "x.yaml")
    with pytest.raises(ScreenplayError, match="expected a mapping at the top level, got list"):
        Screenplay.from_json("[]", "x.json")


def test_json_schema_accepts_valid_and_rejects_invalid():
    schema = Screenplay.model_json_schema()
    valid = Screenplay.from_data(make()).model_dump(mode="json")
    jsonschema.validate(valid, schema)
    bad = make()
    shot(bad)["size"] = "huge"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad_id = make()
    bad_id["characters"][0]["id"] = "Not Safe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_id, schema)


def test_slugs_are_safe_and_distinct():
    pattern = Screenplay.model_json_schema()["$defs"]["Character"]["properties"]["id"]["pattern"]
    import re

    for name in ["Mr. Steel", "Zoë", "李", "???", "a" * 300, "  Bo  ", "ÉCOLE-42"]:
        assert re.match(pattern, slugify(name)), name
    assert slugify("Mr. Steel") == "mr-steel"
    assert slugify("李") != slugify("王")
    taken: set[str] = set()
    assert [unique_slug(n, taken) for n in ["Bo", "bo", "BO"]] == ["bo", "bo-2", "bo-3"]
