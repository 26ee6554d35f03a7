"""Shot lists: CSV and YAML import, export, round trips and error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelsmith.errors import InputError, ScreenplayError
from reelsmith.planner.shotlist import COLUMNS, parse_csv, parse_yaml, parse_yaml_shotlist
from reelsmith.planner.shotlist_export import dump_csv, dump_yaml
from reelsmith.schema.screenplay import (
    ID_PATTERN,
    Action,
    Blocking,
    CameraMove,
    Character,
    DialogueLine,
    Scene,
    Screenplay,
    Setting,
    Shot,
    ShotSize,
    TimeOfDay,
    Transition,
)

DATA = Path(__file__).parent / "data" / "shotlists"
DOCS = Path(__file__).parents[1] / "docs" / "shotlists.md"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# -- reading the samples ---------------------------------------------------------------


def test_harbour_csv_reads_scenes_shots_cast_dialogue_and_blocking():
    sp = parse_csv(read("harbour.csv"), "harbour.csv")

    assert sp.title == "The Harbour"
    assert sp.logline == "Two friends, one boat, and a storm that will not wait."
    assert [c.id for c in sp.characters] == ["mira", "bo"]
    assert sp.character("bo").description == "A small, round ship's cat"
    assert sp.character("bo").aliases == ["Bobo"]
    assert [(s.id, s.location, s.time, s.setting) for s in sp.scenes] == [
        ("harbour", "the old harbour", TimeOfDay.dusk, Setting.exterior),
        ("cabin", "the boat's cabin", TimeOfDay.night, Setting.interior),
    ]
    assert [shot.id for _, shot in sp.shots()] == ["s01-01", "s01-02", "s01-03", "s02-01"]
    first, second, third = sp.scenes[0].shots
    assert (first.duration, first.size, first.transition) == (
        4.0,
        ShotSize.wide,
        Transition.crossfade,
    )
    assert first.characters == []
    assert (second.camera, second.characters) == (CameraMove.pan_right, ["mira", "bo"])
    assert second.dialogue == [
        DialogueLine(speaker="mira", line="Morning, Bo."),
        DialogueLine(speaker="bo", line="Too early.", parenthetical="yawning"),
    ]
    assert second.blocking == [
        Blocking(character="mira", action=Action.walk_right),
        Blocking(character="bo", action=Action.follow, target="mira"),
    ]
    assert (third.size, third.camera, third.duration) == (
        ShotSize.close_up,
        CameraMove.zoom_in,
        2.5,
    )
    assert third.action == 'Mira squints at the sky: "Weather\'s turning."'
    assert third.dialogue[0].extension == "V.O."
    assert sp.scenes[1].shots[0].dialogue[0].parenthetical == "whispering"


def test_harbour_yaml_is_the_same_movie_as_harbour_csv():
    from_csv = parse_csv(read("harbour.csv"), "harbour.csv")
    from_yaml = parse_yaml(read("harbour.yaml"), "harbour.yaml")
    assert from_yaml == from_csv


def test_spreadsheet_export_with_bom_crlf_title_case_headers_and_aliases():
    sp = parse_csv((DATA / "spreadsheet.csv").read_bytes(), "episodes/spreadsheet.csv")

    assert sp.title == "spreadsheet"  # from the file name
    assert [s.id for s in sp.scenes] == ["1", "2"]
    assert [shot.id for _, shot in sp.shots()] == ["s01-01", "s01-02", "s02-01"]
    assert [shot.size for _, shot in sp.shots()] == [
        ShotSize.wide,
        ShotSize.medium,
        ShotSize.close_up,
    ]
    assert [(c.id, c.name) for c in sp.characters] == [("pip", "Pip"), ("old-rowan", "Old Rowan")]
    shot = sp.scenes[0].shots[1]
    assert shot.characters == ["pip", "old-rowan"]
    assert shot.dialogue[1] == DialogueLine(
        speaker="old-rowan", line="Five more minutes.", parenthetical="grumbling"
    )
    assert sp.scenes[0].shots[0].keyframe_prompt == "a misty forest clearing at dawn"
    assert sp.scenes[1].time is TimeOfDay.dusk


def _doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)


def test_the_documented_examples_parse_to_the_same_movie():
    (csv_text,) = _doc_blocks("csv")
    (yaml_text,) = _doc_blocks("yaml")
    from_csv = parse_csv(csv_text, "lighthouse.csv")
    from_yaml = parse_yaml(yaml_text, "lighthouse.yaml")
    assert from_csv == from_yaml
    assert from_csv.num_shots >= 3
    assert any(shot.blocking for _, shot in from_csv.shots())


# -- columns and values ------------------------------------------------------------------

HEADER = "scene,location,shot,duration,size,camera,characters,action,dialogue,blocking"


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def test_defaults_and_generated_ids():
    sp = parse_csv("scene,location,action\nA,the beach,waves\nA,,more waves\nB,a cave,drip\n")
    assert sp.title == "shots"
    assert [s.id for s in sp.scenes] == ["a", "b"]
    assert [shot.id for _, shot in sp.shots()] == ["s01-01", "s01-02", "s02-01"]
    shot = sp.scenes[0].shots[0]
    assert (shot.duration, shot.size, shot.camera, shot.transition) == (
        3.0,
        ShotSize.medium,
        CameraMove.static,
        Transition.cut,
    )
    assert sp.scenes[0].time is TimeOfDay.day and sp.scenes[0].setting is None


@pytest.mark.parametrize(
    ("spelling", "size"),
    [
        ("close-up", ShotSize.close_up),
        ("Close Up", ShotSize.close_up),
        ("closeup", ShotSize.close_up),
        ("CU", ShotSize.close_up),
        ("close_up", ShotSize.close_up),
        ("WS", ShotSize.wide),
        ("wide shot", ShotSize.wide),
        ("MS", ShotSize.medium),
        ("Medium", ShotSize.medium),
    ],
)
def test_shot_size_spellings(spelling: str, size: ShotSize):
    sp = parse_csv(f"scene,location,size,action\nA,here,{spelling},x\n")
    assert sp.scenes[0].shots[0].size is size


def test_scene_values_group_consecutive_rows_in_any_case_and_names_become_ids():
    sp = parse_csv(
        "scene,location,time,action\n"
        "Harbour at Dawn,the harbour,NIGHT,a\n"
        "harbour at dawn,,,b\n"
        "HARBOUR AT DAWN,the harbour,night,c\n"
    )
    assert [s.id for s in sp.scenes] == ["harbour-at-dawn"]
    assert len(sp.scenes[0].shots) == 3
    assert sp.scenes[0].time is TimeOfDay.night


def test_scene_fields_may_come_from_a_later_row():
    sp = parse_csv("scene,location,time,summary,action\nA,beach,,,a\nA,,dusk,The end.,b\n")
    assert (sp.scenes[0].time, sp.scenes[0].summary) == (TimeOfDay.dusk, "The end.")


def test_characters_same_name_any_case_is_one_character_and_slug_clashes_are_kept_apart():
    sp = parse_csv(
        csv_of(
            'A,here,,,,,"Zoë, Bo",a,"ZOË: hi | Zoe (aside): hello | Narrator [V.O.]: Meanwhile",',
            "A,,,,,,bo; zoe,b,,",
        )
    )
    assert [(c.id, c.name) for c in sp.characters] == [
        ("zoe", "Zoë"),
        ("bo", "Bo"),
        ("zoe-2", "Zoe"),
        ("narrator", "Narrator"),
    ]
    first, second = sp.scenes[0].shots
    assert [line.speaker for line in first.dialogue] == ["zoe", "zoe-2", "narrator"]
    assert first.dialogue[1].parenthetical == "aside"
    assert first.dialogue[2].extension == "V.O."
    assert second.characters == ["bo", "zoe-2"]


def test_escaped_separators_in_dialogue():
    sp = parse_csv(csv_of(r'A,here,,,,,,x,"BO: either\|or | MIRA (a\) b): c:\\d",'))
    first, second = sp.scenes[0].shots[0].dialogue
    assert first.line == "either|or"
    assert (second.parenthetical, second.line) == ("a) b", "c:\\d")


def test_yaml_characters_can_be_referred_to_by_id_name_or_alias_and_new_names_are_added():
    data = {
        "title": "Refs",
        "characters": [
            {"id": "hero", "name": "Mira Sorvino", "description": "tall", "aliases": ["M"]},
            "Bo",
        ],
        "shots": [
            {
                "scene": "one",
                "location": "pier",
                "characters": ["hero", "bo", "Stranger"],
                "dialogue": ["MIRA SORVINO: a", "m: b", "HERO: c", "stranger: d"],
                "blocking": ["Mira Sorvino:approach>stranger"],
            }
        ],
    }
    sp = parse_yaml_shotlist(data, "refs.yaml")
    assert [(c.id, c.name, c.description) for c in sp.characters] == [
        ("hero", "Mira Sorvino", "tall"),
        ("bo", "Bo", ""),
        ("stranger", "Stranger", ""),
    ]
    shot = sp.scenes[0].shots[0]
    assert shot.characters == ["hero", "bo", "stranger"]
    assert [line.speaker for line in shot.dialogue] == ["hero", "hero", "hero", "stranger"]
    assert shot.blocking == [Blocking(character="hero", action=Action.approach, target="stranger")]


def test_yaml_unquoted_dialogue_and_blocking_items_and_numbers_as_text():
    text = """
shots:
  - scene: 1
    location: pier
    shot: 12
    duration: 2
    characters: [Mira, Bo]
    dialogue:
      - MIRA: Hello there
      - BO (whispering): Hi
    blocking:
      - bo: approach>mira
"""
    sp = parse_yaml(text, "numbers.yaml")
    shot = sp.scenes[0].shots[0]
    assert (sp.scenes[0].id, shot.id, shot.duration) == ("1", "12", 2.0)
    assert shot.dialogue == [
        DialogueLine(speaker="mira", line="Hello there"),
        DialogueLine(speaker="bo", line="Hi", parenthetical="whispering"),
    ]
    assert shot.blocking == [Blocking(character="bo", action=Action.approach, target="mira")]


def test_csv_preamble_cast_without_ids_and_plain_comments():
    text = (
        "# Episode 3 shot list, draft\n"
        "# character,,Old Rowan,A mossy old tree spirit\n"
        "# TODO: check the lighting\n"
        "scene,location,characters,action\nA,wood,old rowan,snores\n"
    )
    sp = parse_csv(text, "ep3.csv")
    assert sp.title == "ep3"
    assert [(c.id, c.name, c.description) for c in sp.characters] == [
        ("old-rowan", "Old Rowan", "A mossy old tree spirit")
    ]
    assert sp.scenes[0].shots[0].characters == ["old-rowan"]


# -- errors ------------------------------------------------------------------------------

CSV_ERRORS = [
    ("", InputError, "shots.csv: empty file"),
    (" \n\n", InputError, "shots.csv: empty file"),
    ("\ufeff", InputError, "shots.csv: empty file"),
    ("scene,location,action\n", InputError, "shots.csv: a header but no shots"),
    ("# title: only a title\n", InputError, "shots.csv: no header row"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", InputError, "shots.csv: binary data"),
    (b"scene,action\nA,caf\xe9\n", InputError, "shots.csv: not UTF-8 text"),
    (
        "scene,shot,duration\nA,,3\n",
        InputError,
        "shots.csv: missing required column 'action' (columns: scene, shot, duration)",
    ),
    (
        "scene,action,colour\nA,x,red\n",
        InputError,
        "shots.csv: row 1: unknown column 'colour' (known: scene, location, time,",
    ),
    ("scene,action,Action\nA,x,y\n", InputError, "row 1: column 'action' appears twice"),
    (
        "scene,location,action\nA,here\n",
        InputError,
        "shots.csv: row 2 has 2 cells but the header has 3 columns",
    ),
    (
        "scene,location,action\nA,here,x,y\n",
        InputError,
        "row 2 has 4 cells but the header has 3 columns",
    ),
    ("scene,action,\nA,x,oops\n", InputError, "row 2 has a value in a column without a name"),
    ('scene,action\nA,"x"y\n', InputError, "shots.csv: line 2: not valid CSV"),
    (
        "scene,location,duration,action\nA,here,abc,x\n",
        ScreenplayError,
        "shots.csv: row 2, column 'duration': 'abc' is not a number",
    ),
    (
        "scene,location,duration,action\nA,here,45,x\n",
        ScreenplayError,
        "row 2, column 'duration': 45 seconds is outside 0.5 to 30 seconds",
    ),
    (
        "scene,location,size,action\nA,here,huge,x\n",
        ScreenplayError,
        "row 2, column 'size': 'huge' is not one of wide, medium, close-up",
    ),
    (
        "scene,location,camera,action\nA,here,dolly,x\n",
        ScreenplayError,
        "'dolly' is not one of static, pan-left, pan-right, zoom-in, zoom-out, follow",
    ),
    (
        "scene,location,time,action\nA,here,noon,x\n",
        ScreenplayError,
        "row 2, column 'time': 'noon' is not one of day, dusk, night",
    ),
    (
        "scene,location,transition,action\nA,here,wipe,x\n",
        ScreenplayError,
        "'wipe' is not one of cut, crossfade, fade",
    ),
    (
        "scene,location,characters,blocking,action\nA,here,Bo,bo:dance,x\n",
        ScreenplayError,
        "row 2, column 'blocking': 'dance' is not one of idle, walk-left,",
    ),
    (
        "scene,location,action\nA,here,x\nA,there,y\n",
        ScreenplayError,
        "row 3, column 'location': 'there' conflicts with 'here' at row 2",
    ),
    (
        "scene,location,time,action\nA,here,day,x\nA,,night,y\n",
        ScreenplayError,
        "row 3, column 'time': 'night' conflicts with 'day' at row 2",
    ),
    (
        "scene,location,action\nA,,x\n",
        ScreenplayError,
        "shots.csv: row 2, column 'location': empty; a scene needs a location",
    ),
    ("scene,location,action\n,here,x\n", ScreenplayError, "row 2, column 'scene': empty"),
    (
        "scene,location,action\nA,here,x\nB,there,y\nA,,z\n",
        ScreenplayError,
        "row 4, column 'scene': scene 'A' already ended (it began at row 2)",
    ),
    (
        "scene,location,shot,action\nA,here,1,x\nB,there,1,y\n",
        ScreenplayError,
        "row 3, column 'shot': '1' is also the id at row 2",
    ),
    (
        "scene,location,shot,action\nA,here,Shot 1,x\n",
        ScreenplayError,
        "row 2, column 'shot': 'Shot 1' is not a safe id",
    ),
    (
        "scene,location,dialogue,action\nA,here,hello there,x\n",
        ScreenplayError,
        "row 2, column 'dialogue': 'hello there' is not 'NAME (parenthetical): line'",
    ),
    (
        "scene,location,dialogue,action\nA,here,BO:   ,x\n",
        ScreenplayError,
        "column 'dialogue': 'BO:' is not 'NAME (parenthetical): line'",
    ),
    (
        "scene,location,characters,blocking,action\nA,here,Mira,bo:wave,x\n",
        ScreenplayError,
        "shots.csv: row 2: blocking[0].character: 'bo' is not on screen in this shot",
    ),
    (
        "scene,location,characters,blocking,action\nA,here,Bo,bo:approach>,x\n",
        ScreenplayError,
        "column 'blocking': 'bo:approach>' is not 'name:action>target'",
    ),
    (
        "scene,location,characters,action\nA,here,Bo; BO,x\n",
        ScreenplayError,
        "shots.csv: row 2: characters: a character is listed twice",
    ),
    (
        "# title: A\n# title: B\nscene,location,action\nA,here,x\n",
        InputError,
        "shots.csv: row 2: '# title' is given twice",
    ),
    (
        "# character: Mira Bo,Mira\nscene,location,action\nA,here,x\n",
        ScreenplayError,
        "shots.csv: row 1: id: 'Mira Bo' is not a safe id",
    ),
    (
        "scene,location,action\nA,here," + "x" * 4001 + "\n",
        ScreenplayError,
        "shots.csv: row 2: action: String should have at most 4000 characters",
    ),
]


@pytest.mark.parametrize(("text", "error", "message"), CSV_ERRORS)
def test_csv_errors_are_one_clear_line(text: str | bytes, error: type[Exception], message: str):
    with pytest.raises(error) as caught:
        parse_csv(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith("shots.csv: ")
    assert "\n" not in str(caught.value)


YAML_ERRORS = [
    ("title: [unclosed\n", "shots.yaml: not valid YAML ("),
    ("", "shots.yaml: empty file"),
    ("# nothing here\n", "shots.yaml: empty file"),
    ("- a\n- b\n", "shots.yaml: expected a mapping with a 'shots' list, got list"),
    ("title: x\n", "shots.yaml: missing required key 'shots'"),
    ("shots: {scene: a}\n", "shots.yaml: 'shots' must be a list of shots, got dict"),
    ("shots: []\n", "shots.yaml: 'shots' is empty"),
    ("shots: [hello]\n", "shots.yaml: shots[0] must be a mapping, got str"),
    ("tittle: x\nshots: []\n", "shots.yaml: unknown key 'tittle' (known: title, logline,"),
    ("scenes: []\n", "shots.yaml: has 'scenes': a full screenplay"),
    (
        "shots:\n- {scene: a, location: b, colour: red}\n",
        "shots.yaml: shots[0]: unknown column 'colour' (known: scene,",
    ),
    (
        "shots:\n- {scene: a, location: b, action: yes}\n",
        "shots[0].action: expected text, got bool",
    ),
    (
        "shots:\n- {scene: a, location: b, duration: abc}\n",
        "shots[0].duration: 'abc' is not a number",
    ),
    ("shots:\n- {scene: a, location: b, size: huge}\n", "shots[0].size: 'huge' is not one of wide"),
    ("shots:\n- {scene: a, location: b, characters: [{x: 1}]}\n", "characters[0]: expected text"),
    ("characters: Bo\nshots:\n- {scene: a, location: b}\n", "'characters' must be a list, got str"),
    (
        "characters: [{description: x}]\nshots:\n- {scene: a, location: b}\n",
        "characters[0]: a character needs a name or an id",
    ),
    (
        "characters: [{name: Bo, age: 3}]\nshots:\n- {scene: a, location: b}\n",
        "characters[0]: age: unknown field",
    ),
    (
        "characters: [{id: bo, name: Bo}, {id: bo, name: Bob}]\nshots: [{scene: a, location: b}]",
        "shots.yaml: characters[1].id: duplicate character id 'bo'",
    ),
    (
        "shots:\n- {scene: a, location: b, characters: Mira, blocking: 'bo:wave'}\n",
        "shots.yaml: shots[0]: blocking[0].character: 'bo' is not on screen",
    ),
]


@pytest.mark.parametrize(("text", "message"), YAML_ERRORS)
def test_yaml_errors_are_one_clear_line(text: str, message: str):
    with pytest.raises(InputError) as caught:
        parse_yaml(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_errors_do_not_echo_huge_values():
    with pytest.raises(ScreenplayError) as caught:
        parse_csv("scene,location,size,action\nA,here," + "z" * 5000 + ",x\n")
    assert len(str(caught.value)) < 300


# -- writing and round trips -------------------------------------------------------------


def tricky_screenplay() -> Screenplay:
    """Unicode, separators, quotes, newlines, clashing names: everything the encodings escape."""
    return Screenplay(
        title='Zoë\'s "Harbour", part 2',
        logline="Two friends,\none boat.",
        style="ink; watercolour | warm",
        characters=[
            Character(id="zoe", name="Zoë", description='Tall, red coat, says "hi"', aliases=["Z"]),
            Character(id="zoe-2", name="Zoe", reference_image="refs/zoe 2.png"),
            Character(id="mr-smith", name="Smith, John (Mr.)", description="line one\nline two"),
            Character(id="bo", name="hero"),  # a name that is another character's id
            Character(id="hero", name="李"),
            Character(id="extra", name="Extra"),  # never appears in a shot
        ],
        scenes=[
            Scene(
                id="harbour_1",
                location="the harbour, at dawn",
                time=TimeOfDay.dusk,
                setting=Setting.both,
                summary='They meet; "finally".',
                shots=[
                    Shot(
                        id="a",
                        duration=2.75,
                        size=ShotSize.close_up,
                        camera=CameraMove.follow,
                        characters=["zoe", "zoe-2", "mr-smith", "bo"],
                        action='Zoë waves, "hello!" |\nthen; turns: away',
                        blocking=[
                            Blocking(character="zoe", action=Action.wave),
                            Blocking(character="bo", action=Action.approach, target="hero"),
                            Blocking(character="mr-smith", action=Action.follow, target="zoe-2"),
                        ],
                        dialogue=[
                            DialogueLine(speaker="zoe", line="Hi | there: you\\me"),
                            DialogueLine(
                                speaker="mr-smith",
                                line="Well,\nwell.",
                                parenthetical="dry (very)",
                                extension="O.S.",
                            ),
                            DialogueLine(speaker="hero", line="好", extension="V.O.[1]"),
                            DialogueLine(speaker="zoe-2", line="(laughs)"),
                        ],
                        keyframe_prompt="two women, a pier",
                        motion_prompt="slow push",
                        transition=Transition.crossfade,
                    ),
                    Shot(id="b", duration=30.0, characters=[]),
                ],
            ),
            Scene(id="2", location="城", shots=[Shot(id="c", duration=0.5, action="#1 \\ done")]),
        ],
    )


def test_tricky_screenplay_round_trips_through_csv():
    sp = tricky_screenplay()
    assert parse_csv(dump_csv(sp), "other-name.csv") == sp


def test_tricky_screenplay_round_trips_through_yaml():
    sp = tricky_screenplay()
    assert parse_yaml(dump_yaml(sp), "other-name.yaml") == sp


def test_dump_csv_is_a_readable_table():
    text = dump_csv(parse_csv(read("harbour.csv"), "harbour.csv"))
    lines = text.splitlines()
    assert lines[0] == "# title: The Harbour"
    assert lines[3] == '# character: mira,Mira,"A tall sailor in a red coat, always early"'
    assert lines[5] == ",".join(COLUMNS)
    assert "Mira (whispering): We wait it out." in lines[-1]
    assert lines[-1].startswith("cabin,the boat's cabin,night,interior,,s02-01,5,medium,")
    assert "Mira:sit; Bo:approach>Mira" in lines[-1]
    assert text.endswith("\n") and "\r" not in text


def test_dump_yaml_is_flat_and_omits_empty_values():
    data = yaml.safe_load(dump_yaml(parse_csv(read("harbour.csv"), "harbour.csv")))
    assert list(data) == ["title", "logline", "style", "characters", "shots"]
    assert data["characters"][0] == {
        "id": "mira",
        "name": "Mira",
        "description": "A tall sailor in a red coat, always early",
    }
    assert data["shots"][1] == {
        "scene": "harbour",
        "shot": "s01-02",
        "duration": 3.0,
        "size": "medium",
        "camera": "pan-right",
        "characters": ["Mira", "Bo"],
        "action": "Mira walks along the pier, Bo trotting behind.",
        "dialogue": ["Mira: Morning, Bo.", "Bo (yawning): Too early."],
        "blocking": ["Mira:walk-right", "Bo:follow>Mira"],
        "transition": "cut",
    }


def test_a_parsed_shot_list_dumps_to_a_fixed_point():
    sp = parse_csv(read("spreadsheet.csv"), "spreadsheet.csv")
    text = dump_csv(sp)
    assert dump_csv(parse_csv(text, "x.csv")) == text
    assert parse_yaml(dump_yaml(sp)) == sp


# -- property: random valid screenplays round-trip ---------------------------------------

# Text as users write it: any letters, digits, punctuation and spaces, plus the characters the
# encodings must escape; no surrounding whitespace (cells and parts are trimmed).
_chars = st.characters(categories=["L", "M", "N", "P", "S", "Z", "Cf", "Co"]) | st.sampled_from(
    list(",;:|()[]\\>\"'#\n\t")
)
texts = st.text(_chars, max_size=30).map(str.strip)
names = texts.filter(bool)
ids = st.from_regex(ID_PATTERN, fullmatch=True)


@st.composite
def screenplays(draw: st.DrawFn) -> Screenplay:
    cast_ids = draw(st.lists(ids, max_size=4, unique=True))
    characters = [
        Character(
            id=cid,
            name=draw(names | st.sampled_from(cast_ids)),
            description=draw(texts),
            aliases=draw(st.lists(names, max_size=2)),
            reference_image=draw(st.none() | names),
        )
        for cid in cast_ids
    ]
    shot_ids = iter(draw(st.lists(ids, min_size=8, max_size=8, unique=True)))
    scenes = []
    for scene_id in draw(st.lists(ids, min_size=1, max_size=3, unique=True)):
        shots = []
        for _ in range(draw(st.integers(1, 2 if len(scenes) else 3))):
            on_screen = draw(st.lists(st.sampled_from(cast_ids), unique=True)) if cast_ids else []
            blocking = [
                Blocking(
                    character=cid,
                    action=draw(st.sampled_from(Action)),
                    target=draw(st.sampled_from([None, *(c for c in cast_ids if c != cid)])),
                )
                for cid in on_screen
                if draw(st.booleans())
            ]
            dialogue = [
                DialogueLine(
                    speaker=draw(st.sampled_from(cast_ids)),
                    line=draw(names),
                    parenthetical=draw(texts),
                    extension=draw(st.text(_chars, max_size=20).map(str.strip)),
                )
                for _ in range(draw(st.integers(0, 2)) if cast_ids else 0)
            ]
            shots.append(
                Shot(
                    id=next(shot_ids),
                    duration=draw(st.floats(0.5, 30.0)),
                    size=draw(st.sampled_from(ShotSize)),
                    camera=draw(st.sampled_from(CameraMove)),
                    characters=on_screen,
                    action=draw(texts),
                    blocking=blocking,
                    dialogue=dialogue,
                    keyframe_prompt=draw(texts),
                    motion_prompt=draw(texts),
                    transition=draw(st.sampled_from(Transition)),
                )
            )
        scenes.append(
            Scene(
                id=scene_id,
                location=draw(names),
                time=draw(st.sampled_from(TimeOfDay)),
                setting=draw(st.none() | st.sampled_from(Setting)),
                summary=draw(texts),
                shots=shots,
            )
        )
    return Screenplay(
        title=draw(names),
        logline=draw(texts),
        style=draw(texts),
        characters=characters,
        scenes=scenes,
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(screenplays())
def test_random_screenplays_round_trip_through_csv(sp: Screenplay):
    assert parse_csv(dump_csv(sp), "random.csv") == sp


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(screenplays())
def test_random_screenplays_round_trip_through_yaml(sp: Screenplay):
    assert parse_yaml(dump_yaml(sp), "random.yaml") == sp


# -- property: no input makes a raw exception escape -------------------------------------

_cells = st.sampled_from(["", "x", "#", "a:b>c", "M (p): l | B: k", "\\", '"', "\n", "3", "CU"])
_csv_texts = st.lists(
    st.lists(_cells | st.text(max_size=8), min_size=1, max_size=6), max_size=6
).map(lambda rows: "\n".join(",".join(row) for row in rows))
_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | _cells,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([*COLUMNS, "title", "shots", "characters", "id", "name"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64),
        _csv_texts,
        _csv_texts.map(lambda body: "scene,location,characters,dialogue,blocking,action\n" + body),
    )
)
def test_any_csv_input_gives_a_screenplay_or_an_input_error(text: str | bytes):
    try:
        assert isinstance(parse_csv(text), Screenplay)
    except InputError as exc:
        assert str(exc).startswith("shots.csv: ") and "\n" not in str(exc)


_yaml_shot_lists = st.fixed_dictionaries(
    {"shots": st.lists(st.dictionaries(st.sampled_from(COLUMNS), _yaml_values), max_size=3)},
    optional={"characters": st.lists(_yaml_values, max_size=3), "title": _yaml_values},
)


@settings(max_examples=300, deadline=None)
@given(_yaml_values | _yaml_shot_lists)
def test_any_yaml_data_gives_a_screenplay_or_an_input_error(data: object):
    try:
        assert isinstance(parse_yaml_shotlist(data), Screenplay)
    except InputError as exc:
        assert str(exc).startswith("shots.yaml: ") and "\n" not in str(exc)
