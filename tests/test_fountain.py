"""Fountain import/export: every Fountain feature, the schema mapping, errors, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelsmith.errors import InputError, ScreenplayError
from reelsmith.planner.fountain import dumps, parse
from reelsmith.schema.screenplay import (
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

DATA = Path(__file__).parent / "data" / "fountain"
SCRIPTS = sorted(path.name for path in DATA.glob("*.fountain"))


def read(name: str) -> Screenplay:
    return parse((DATA / name).read_text(encoding="utf-8"), name)


def one_scene(body: str, heading: str = "INT. KITCHEN - DAY") -> Scene:
    screenplay = parse(f"Title: Test\n\n{heading}\n\n{body}\n", "test.fountain")
    assert len(screenplay.scenes) == 1
    return screenplay.scenes[0]


def names(screenplay: Screenplay, ids: list[str]) -> list[str]:
    return [screenplay.character(i).name for i in ids]


# -- title page ----------------------------------------------------------------------------


def test_title_page_with_multi_line_values():
    screenplay = read("lighthouse.fountain")
    assert screenplay.title == "THE LAST LIGHTHOUSE A Short Film"  # emphasis gone, lines joined
    assert screenplay.logline.startswith("A retired keeper and a runaway robot")
    # Credit, Author, Draft date and a multi-line Contact are read and not mistaken for action
    assert screenplay.scenes[0].location == "lighthouse cliff"
    assert "ada@example.com" not in dumps(screenplay)


def test_notes_key_feeds_the_logline():
    text = "Title: Tides\nNotes:\n    Two sisters\n    and one boat.\n\nEXT. SEA - DAY\n\nWaves.\n"
    screenplay = parse(text)
    assert (screenplay.title, screenplay.logline) == ("Tides", "Two sisters and one boat.")


def test_without_title_page_the_title_comes_from_the_file_or_first_heading():
    assert read("cold_open.fountain").title == "Cold Open"
    assert parse("EXT. MOON BASE - NIGHT\n\nDust.\n").title == "Moon Base"


# -- scene headings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "location", "time", "setting"),
    [
        ("EXT. FOREST CLEARING - NIGHT", "forest clearing", TimeOfDay.night, Setting.exterior),
        ("INT. KITCHEN - MORNING", "kitchen", TimeOfDay.day, Setting.interior),
        ("int. kitchen - afternoon", "kitchen", TimeOfDay.day, Setting.interior),
        ("INT./EXT. CAR - SUNSET", "car", TimeOfDay.dusk, Setting.both),
        ("INT/EXT CAR - EVENING", "car", TimeOfDay.dusk, Setting.both),
        ("I/E CAR - MIDNIGHT", "car", TimeOfDay.night, Setting.both),
        ("EST. CITY SKYLINE - DAWN", "city skyline", TimeOfDay.dusk, Setting.exterior),
        ("EXT. BEACH - DUSK", "beach", TimeOfDay.dusk, Setting.exterior),
        (".FLASHBACK - NIGHT", "flashback", TimeOfDay.night, None),
        ("INT. HOUSE - KITCHEN - NIGHT", "house - kitchen", TimeOfDay.night, Setting.interior),
        ("EXT. BEACH - TEA TIME", "beach - tea time", TimeOfDay.day, Setting.exterior),
        ("EXT. BEACH", "beach", TimeOfDay.day, Setting.exterior),
        ("EXT.\t HARBOUR \t-   NIGHT  ", "harbour", TimeOfDay.night, Setting.exterior),
        ("INT. LAB - NIGHT #7B#", "lab", TimeOfDay.night, Setting.interior),
    ],
)
def test_scene_heading(heading, location, time, setting):
    scene = one_scene("Something happens.", heading)
    assert (scene.location, scene.time, scene.setting) == (location, time, setting)


def test_scene_ids_by_position_or_scene_number():
    text = "INT. A - DAY #1#\n\nA.\n\nINT. B - DAY\n\nB.\n\nINT. C - DAY #12A#\n\nC.\n"
    assert [s.id for s in parse(text).scenes] == ["scene-1", "scene-02", "scene-12a"]


def test_continuous_keeps_the_previous_time_of_day():
    text = "EXT. ROAD - NIGHT\n\nRain.\n\nINT. CAR - CONTINUOUS\n\nWipers.\n"
    assert [s.time for s in parse(text).scenes] == [TimeOfDay.night, TimeOfDay.night]


def test_forced_action_is_not_a_heading():
    scene = one_scene("!INT. AND EXT. ARE ABBREVIATIONS.")
    assert scene.shots[0].action == "INT. AND EXT. ARE ABBREVIATIONS."


def test_action_before_the_first_heading_opens_a_scene():
    screenplay = read("cold_open.fountain")
    opening = screenplay.scenes[0]
    assert opening.location == "forest"  # "the snowy woods" names a storyworld place
    assert opening.shots[0].action.startswith("A red fox runs")
    assert [s.location for s in screenplay.scenes[1:3]] == ["den", "den"]


def test_a_heading_with_nothing_under_it_is_one_establishing_shot():
    scene = read("cold_open.fountain").scenes[2]  # INT. DEN - CONTINUOUS, then CUT TO:
    assert len(scene.shots) == 1
    assert (scene.shots[0].action, scene.shots[0].size) == ("", ShotSize.wide)


# -- action, shots -----------------------------------------------------------------------


def test_action_paragraphs_start_shots_and_dialogue_joins_them():
    scene = one_scene("Mira enters.\n\nMIRA\nHello?\n\nBOB\nHi.\n\nBob waves.\n\nMIRA\nBye.")
    assert [shot.action for shot in scene.shots] == ["Mira enters.", "Bob waves."]
    assert [len(shot.dialogue) for shot in scene.shots] == [2, 1]
    assert [shot.id for shot in scene.shots] == ["s01-01", "s01-02"]


def test_dialogue_right_after_a_heading_starts_a_shot():
    scene = one_scene("MIRA\nHello?")
    assert len(scene.shots) == 1 and scene.shots[0].dialogue[0].line == "Hello?"


def test_shot_characters_come_from_action_names_and_on_screen_speakers():
    screenplay = read("messy.fountain")
    harbour = screenplay.scenes[1].shots[0]
    # "Brick and Steel run ..." then McCLANE (V.O.) is off screen and MR. STEEL speaks
    assert names(screenplay, harbour.characters) == ["Brick", "Steel", "Mr. Steel"]
    scene = one_scene("Mr. Steel nods at brick.\n\nSTEEL\nHey.\n\nMR. STEEL\nHo.\n\nBRICK\nHm.")
    # the longer name wins: "Mr. Steel" does not also put Steel on screen
    assert scene.shots[0].characters == ["mr-steel", "brick", "steel"]


def test_durations_are_estimated_and_clamped():
    scene = one_scene("Short.\n\n" + "word " * 200)
    assert scene.shots[0].duration == 0.5
    assert scene.shots[1].duration == 30.0
    talk = one_scene("MIRA\nOne two three four five.").shots[0]
    assert talk.duration == pytest.approx(5 / 2.5 + 0.5)


def test_shot_size_and_camera_heuristics():
    scene = one_scene(
        "The room.\n\nCLOSE ON the key.\n\nMIRA\nMine.\n\nMira and Bob argue.\n\nMIRA\nNo.\n\n"
        "BOB\nYes.\n\nThe camera pans left to the window.\n\nPUSH IN on the lock."
    )
    sizes = [shot.size for shot in scene.shots]
    assert sizes == [ShotSize.wide, ShotSize.close_up, ShotSize.medium] + [ShotSize.medium] * 2
    cameras = [shot.camera for shot in scene.shots]
    assert cameras[:3] == [CameraMove.static] * 3
    assert cameras[3:] == [CameraMove.pan_left, CameraMove.zoom_in]


def test_prompts_derive_from_the_action():
    shot = one_scene("Mira opens the door.", "EXT. BEACH - NIGHT").shots[0]
    assert shot.keyframe_prompt == "beach, night. Mira opens the door."
    assert shot.motion_prompt == "Mira opens the door."


# -- characters and dialogue -------------------------------------------------------------


def test_characters_are_distinct_and_stable_across_scenes():
    screenplay = read("messy.fountain")
    cast = {c.id: c.name for c in screenplay.characters}
    assert cast == {
        "brick": "Brick",
        "steel": "Steel",
        "mcclane": "McCLANE",
        "mr-steel": "Mr. Steel",
    }
    speakers = [line.speaker for _, shot in screenplay.shots() for line in shot.dialogue]
    assert speakers.count("brick") == 2  # BRICK (CONT'D) in scene 1 and BRICK in scene 3


def test_a_characters_introduction_in_the_action_is_its_description():
    screenplay = parse(
        "EXT. FOREST - NIGHT\n\nMira looks up. MIRA (8), a small yellow mouse\nwith a scarf, "
        "searches the trees.\n\nMIRA\nWhere?\n\nBO, a tall blue robot - rusty - walks in."
        "\n\nBO\nThere.\n\nEXT. BEACH - DAY\n\nMIRA, a pirate now, runs.\n\nMIRA\nCome!\n\n"
        "ADA\nWait.\n\nADA, BO and MIRA sit.\n\nZED\nHm.\n\nZEDDY, a cat, naps.\n"
    )
    described = {c.id: c.description for c in screenplay.characters}
    # the first introduction counts, across line breaks, up to , . or a dash; a list of names
    # (a capital after the comma), a name in lowercase or another word are not introductions
    assert described == {
        "mira": "a small yellow mouse with a scarf",
        "bo": "a tall blue robot",
        "ada": "",
        "zed": "",
    }
    # a character note says what the character is, whatever the action says
    noted = parse(
        '[[reelsmith character: {"id": "mira", "name": "Mira", "description": "a grey owl"}]]'
        "\n\nEXT. FOREST - NIGHT\n\nMIRA, a small yellow mouse, waits.\n\nMIRA\nHi.\n"
    )
    assert [c.description for c in noted.characters] == ["a grey owl"]
    # and a screenplay whose description is not its introduction still reads back as itself
    plain = parse("EXT. FOREST - NIGHT\n\nMIRA, a small yellow mouse, waits.\n\nMIRA\nHi.\n")
    changed = plain.model_copy(
        update={"characters": [plain.characters[0].model_copy(update={"description": ""})]}
    )
    assert parse(dumps(changed)) == changed and parse(dumps(plain)) == plain
    assert "[[reelsmith character" not in dumps(plain)


@pytest.mark.parametrize(
    ("cue", "name", "character_id"),
    [
        ("O'BRIEN", "O'Brien", "o-brien"),
        ("BRICK'S DAD", "Brick's Dad", "brick-s-dad"),
        ("DR. ADA LOVELACE", "Dr. Ada Lovelace", "dr-ada-lovelace"),
        ("JEAN-LUC", "Jean-Luc", "jean-luc"),
        ("R2-D2", "R2-D2", "r2-d2"),
        ("ZOË (O.S.)", "Zoë", "zoe"),
        ("@mira the 3rd", "mira the 3rd", "mira-the-3rd"),
    ],
)
def test_cue_names_are_displayed_in_title_case_unless_forced(cue, name, character_id):
    screenplay = parse(f"INT. A - DAY\n\n{cue}\nHello.\n")
    assert [(c.id, c.name) for c in screenplay.characters] == [(character_id, name)]


def test_extensions_parentheticals_and_off_screen_speakers():
    screenplay = read("lighthouse.fountain")
    first, second = screenplay.scenes[0].shots
    assert first.dialogue == []
    said = [(d.speaker, d.parenthetical, d.extension) for d in second.dialogue]
    assert said == [("mira", "calling out", ""), ("robot", "", "O.S."), ("mira", "", "")]
    robot_off_screen = one_scene("ROBOT (O.S.)\nNobody here.\n\nMIRA (V.O.)\nHm.").shots[0]
    assert robot_off_screen.characters == []  # named in no action, and not on screen


def test_contd_is_dropped_and_forced_cues_keep_their_spelling():
    screenplay = read("messy.fountain")
    brick_line, _ = screenplay.scenes[0].shots[0].dialogue
    assert (brick_line.speaker, brick_line.parenthetical, brick_line.extension) == (
        "brick",
        "muttering",
        "",
    )
    yippee = screenplay.scenes[1].shots[0].dialogue[0]
    assert (screenplay.character(yippee.speaker).name, yippee.extension) == ("McCLANE", "V.O.")


def test_each_parenthetical_starts_a_dialogue_line():
    shot = one_scene("MIRA\n(whispering)\nHello.\nAnyone?\n(louder)\nANYONE?\n(beat)").shots[0]
    lines = [(d.parenthetical, d.line) for d in shot.dialogue]
    assert lines == [("whispering", "Hello.\nAnyone?"), ("louder", "ANYONE? (beat)")]


def test_dual_dialogue_puts_both_speakers_in_one_shot():
    shot = read("lighthouse.fountain").scenes[1].shots[0]
    assert [d.speaker for d in shot.dialogue] == ["mira", "robot"]
    assert shot.dialogue[1].parenthetical == "nervous"
    assert set(shot.characters) == {"mira", "robot"}


def test_lyrics_are_sung_dialogue():
    song = read("lighthouse.fountain").scenes[1].shots[1].dialogue[0]
    assert song.line == "The lamp goes round and round,\nthe ships come safely home."
    assert song.parenthetical == "singing"


# -- transitions, centered text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "transition"),
    [
        ("CUT TO:", Transition.cut),
        ("SMASH CUT TO:", Transition.cut),
        ("DISSOLVE TO:", Transition.crossfade),
        ("FADE OUT.", Transition.fade),
        ("FADE TO BLACK.", Transition.fade),
        ("> Fade slowly away", Transition.fade),
        (">  DISSOLVE", Transition.crossfade),
    ],
)
def test_transitions_set_the_last_shot_before_them(line, transition):
    scene = one_scene(f"Mira sits.\n\nMira stands.\n\n{line}\n\nMIRA\nAfter.")
    assert [shot.transition for shot in scene.shots] == [Transition.cut, transition, Transition.cut]
    assert scene.shots[2].dialogue[0].line == "After."  # a transition ends the shot


def test_centered_text_is_action_not_a_transition():
    scene = one_scene("Mira sits.\n\n> THE END <")
    assert [shot.action for shot in scene.shots] == ["Mira sits.", "THE END"]
    assert all(shot.transition is Transition.cut for shot in scene.shots)


# -- what is dropped -----------------------------------------------------------------------


def test_notes_are_removed_even_inside_dialogue_and_across_lines():
    screenplay = read("messy.fountain")
    office = screenplay.scenes[0].shots[0]
    assert office.action == "Rain streaks the window. BRICK sorts the mail .\nHe hums."
    assert office.dialogue[0].line == "I hate Mondays.\nAnd Tuesdays.\n\nAnd all of August."


def test_boneyard_is_removed_across_lines():
    screenplay = read("messy.fountain")
    assert "nowhere" not in [scene.location for scene in screenplay.scenes]
    scene = one_scene("Mira /* cut this\n\nINT. GONE - DAY\n*/ smiles.")
    assert scene.shots[0].action == "Mira smiles."


def test_sections_synopses_and_page_breaks():
    screenplay = read("lighthouse.fountain")
    assert [scene.summary for scene in screenplay.scenes] == [
        "Mira meets the robot.",
        "The storm hits; they keep the lamp alive.",
        "",
    ]
    actions = [shot.action for _, shot in screenplay.shots()]
    assert not any("ACT" in action or "===" in action for action in actions)
    assert len(screenplay.scenes) == 3


def test_emphasis_is_stripped_and_escapes_stay_literal():
    screenplay = read("messy.fountain")
    steel_line = screenplay.scenes[0].shots[0].dialogue[1].line
    assert steel_line == "Who's counting? Five * three is fifteen."
    assert screenplay.scenes[1].shots[0].action == "Brick and Steel run along the pier_side . Fast."
    scene = one_scene(r"***Both*** **bold** *it* _under_ \*not\* \_this\_ snake_case")
    assert scene.shots[0].action == "Both bold it under *not* _this_ snake_case"


def test_tabs_odd_spacing_and_line_endings_are_tolerated():
    screenplay = read("messy.fountain")  # half CRLF, half LF, tabs, a heading without blank line
    assert screenplay.title == "Rust and Salt"
    assert [(s.location, s.time) for s in screenplay.scenes] == [
        ("harbour office", TimeOfDay.dusk),
        ("harbour", TimeOfDay.night),
        ("brick's car", TimeOfDay.night),
    ]
    assert screenplay.scenes[0].shots[1].action == "LOUD THUNDER."  # forced action
    bom = parse("\ufeffTitle: X\r\n\r\nINT. A - DAY\r\n\r\nGo.\r\n")
    assert (bom.title, bom.scenes[0].shots[0].action) == ("X", "Go.")


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("INT. A - DAY\n\n\x00\x01\x02 data", "not a Fountain screenplay (binary data)"),
        (bytes(range(256)).decode("latin-1") * 4, "not a Fountain screenplay (binary data)"),
        ("", "no scene heading found"),
        ("   \n\n\t\n", "no scene heading found"),
        ("Title: Only a title page\nAuthor: Me\n", "no scene heading found"),
        ("FADE IN:\n\n/* everything is boneyard */\n", "no scene heading found"),
        ("INT. A - DAY\n\nGo.\n\n/* never closed\n", "line 5: '/*' is never closed"),
        ("INT. A - DAY\n\nGo [[ never closed.\n", "line 3: '[[' is never closed"),
        ("INT. A - DAY\n\n[[reelsmith shot: {size: 1}]]\n", "reelsmith note is not JSON"),
        ("INT. A - DAY\n\n[[reelsmith take: {}]]\n", "with kind one of"),
        ('INT. A - DAY\n\n[[reelsmith shot: {"lens": 35}]]\n', "shot note cannot set lens"),
    ],
)
def test_bad_input_is_one_clear_line(text, problem):
    with pytest.raises(InputError) as caught:
        parse(text, "x.fountain")
    message = str(caught.value)
    assert message.startswith("x.fountain: ") and problem in message
    assert "\n" not in message


def test_schema_violations_name_the_field():
    with pytest.raises(ScreenplayError, match=r"x.fountain: scenes\[0\].location"):
        parse("INT. " + "A" * 400 + " - DAY\n\nGo.\n", "x.fountain")
    with pytest.raises(ScreenplayError, match=r"scenes\[0\].shots\[0\].size: 'huge'"):
        parse('INT. A - DAY\n\n[[reelsmith shot: {"size": "huge"}]]\n', "x.fountain")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            list("aZ .!@#=>~^<*_()[]/\\\t\n:")
            + ["INT. ", "EXT ", "BOB", "\n\n", "  \n", "CUT TO:", "[[", "]]", "/*", "*/"]
            + ["Title: ", "(V.O.)", "#1#", " - NIGHT", "===", "[[reelsmith shot: {}]]"]
        ),
        max_size=60,
    ).map("".join)
)
def test_any_text_gives_a_screenplay_or_an_input_error(text):
    try:
        screenplay = parse(text, "fuzz.fountain")
    except InputError as error:
        assert str(error).startswith("fuzz.fountain: ")
        return
    assert parse(dumps(screenplay)) == screenplay


# -- writing and round trips ----------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_parse_dumps_parse_round_trip(name):
    screenplay = read(name)
    text = dumps(screenplay)
    assert parse(text) == screenplay
    assert dumps(parse(text)) == text
    # a screenplay read from plain Fountain is written back as plain Fountain
    assert "[[reelsmith" not in text


def test_dumps_writes_readable_fountain():
    text = dumps(read("lighthouse.fountain"))
    assert text.startswith("Title: THE LAST LIGHTHOUSE A Short Film\nLogline: A retired")
    for expected in (
        "\n\nEXT. LIGHTHOUSE CLIFF - DUSK #1#\n\n= Mira meets the robot.\n\n",
        "\n\nMIRA\n(calling out)\nWho's there?\n\nROBOT (O.S.)\nNobody. Just the wind.\n\n",
        "\n\nMIRA\n(singing)\nThe lamp goes round and round,\nthe ships come safely home.\n",
        "\n\nDISSOLVE TO:\n\nEXT. SEA - DUSK #3#\n\n",
        "\n\nTHE END\n\nFADE OUT.\n",
    ):
        assert expected in text
    assert "CUT TO:" not in text  # a cut is the default


def built_screenplay() -> Screenplay:
    """A screenplay made in code, with everything Fountain has no place for."""
    cast = [
        Character(id="mira", name="Mira", description="a tall woman in a yellow raincoat"),
        Character(id="john", name="McCLANE", aliases=["John"]),
        Character(id="guard-a", name="Guard"),
        Character(id="guard-b", name="Guard"),
        Character(id="ghost", name="Ghost", reference_image="refs/ghost.png"),  # never speaks
    ]
    kitchen = Scene(
        id="kitchen",
        location="Mira's Kitchen",
        time=TimeOfDay.night,
        setting=Setting.interior,
        summary="Mira hears a noise.",
        shots=[
            Shot(
                id="k1",
                duration=4.0,
                size=ShotSize.wide,
                camera=CameraMove.pan_right,
                characters=["mira", "ghost"],
                action="Mira washes a cup. Behind her, the Ghost drifts past.",
                blocking=[Blocking(character="mira", action=Action.idle)],
                keyframe_prompt="a dark kitchen, a woman at the sink",
                transition=Transition.crossfade,
            ),
            Shot(
                id="k2",
                characters=["mira"],
                dialogue=[
                    DialogueLine(speaker="mira", line="Who's there?", parenthetical="whispering"),
                    DialogueLine(speaker="john", line="Only me.", extension="V.O."),
                ],
            ),
            Shot(id="k3", duration=1.5, transition=Transition.fade),
        ],
    )
    gate = Scene(
        id="scene-02",
        location="gate",
        time=TimeOfDay.dusk,
        setting=None,
        shots=[
            Shot(
                id="g1",
                characters=["guard-a", "guard-b"],
                dialogue=[
                    DialogueLine(speaker="guard-a", line="Halt!"),
                    DialogueLine(speaker="guard-b", line="(beat) ~Who goes there?"),
                ],
            )
        ],
    )
    return Screenplay(
        title="Night *Shift*",
        logline="A ghost story.",
        style="ink",
        characters=cast,
        scenes=[kitchen, gate],
    )


def test_a_screenplay_built_in_code_survives_dumps_and_parse():
    screenplay = built_screenplay()
    text = dumps(screenplay)
    back = parse(text)
    assert back == screenplay
    # what a reader of the Fountain sees
    assert "\n\nINT. MIRA'S KITCHEN - NIGHT\n\n" in text
    assert "\n\n.GATE - DUSK\n\n" in text  # no setting: a forced heading
    assert "\n\nMIRA\n(whispering)\nWho's there?\n\n@McCLANE (V.O.)\nOnly me.\n\n" in text
    assert "\n\nGUARD\nHalt!\n\nGUARD 2\n" in text  # two Guards, two cues
    assert "\n\nDISSOLVE TO:\n\n" in text and "\n\nFADE OUT.\n\n" in text
    assert "Title: Night \\*Shift\\*\n" in text


def test_information_fountain_lacks_lives_in_reelsmith_notes():
    text = dumps(built_screenplay())
    assert '"description": "a tall woman in a yellow raincoat"' in text
    assert '"reference_image": "refs/ghost.png"' in text
    assert '"camera": "pan-right"' in text
    assert '"blocking": [{"character": "mira", "action": "idle", "target": null}]' in text
    # notes hold only what the text would not give back: the fade shot's transition is text
    assert '"transition"' not in text


def test_the_code_built_round_trip_keeps_what_matters_without_notes():
    """Even with every reelsmith note deleted by hand, the story survives."""
    screenplay = built_screenplay()
    text = "\n".join(
        line for line in dumps(screenplay).splitlines() if not line.startswith("[[reelsmith")
    )
    back = parse(text)
    assert [len(scene.shots) for scene in back.scenes] == [2, 1]  # empty k3 merges into k2
    assert [scene.location for scene in back.scenes] == ["mira's kitchen", "gate"]
    kitchen_lines = [
        (d.line, d.parenthetical, d.extension) for d in back.scenes[0].shots[1].dialogue
    ]
    assert kitchen_lines == [("Who's there?", "whispering", ""), ("Only me.", "", "V.O.")]
    assert names(back, back.scenes[0].shots[1].characters) == ["Mira"]
    assert back.scenes[0].shots[0].transition is Transition.crossfade


TEXT = st.text(
    alphabet=st.sampled_from(list("abcXYZ 019.,!?'-:*_\\()[]~@#=>^<\n\t") + ["é", "ß", "李"]),
    max_size=30,
)
IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)


@st.composite
def screenplays(draw: st.DrawFn) -> Screenplay:
    character_ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    cast = [
        Character(id=i, name=draw(TEXT.filter(str.strip)), description=draw(TEXT))
        for i in character_ids
    ]
    shot_ids = iter(draw(st.lists(IDS, min_size=12, max_size=12, unique=True)))
    scenes = []
    for scene_id in draw(st.lists(IDS, min_size=1, max_size=3, unique=True)):
        shots = []
        for _ in range(draw(st.integers(1, 4))):
            lines = [
                DialogueLine(
                    speaker=draw(st.sampled_from(character_ids)),
                    line=draw(TEXT.filter(bool)),
                    parenthetical=draw(TEXT),
                    extension=draw(st.sampled_from(["", "V.O.", "O.S.", "CONT'D", "on phone"])),
                )
                for _ in range(draw(st.integers(0, 3)))
            ]
            shots.append(
                Shot(
                    id=next(shot_ids),
                    duration=draw(st.floats(0.5, 30)),
                    size=draw(st.sampled_from(ShotSize)),
                    camera=draw(st.sampled_from(CameraMove)),
                    characters=draw(st.lists(st.sampled_from(character_ids), unique=True)),
                    action=draw(TEXT),
                    dialogue=lines,
                    keyframe_prompt=draw(TEXT),
                    transition=draw(st.sampled_from(Transition)),
                )
            )
        scenes.append(
            Scene(
                id=scene_id,
                location=draw(TEXT.filter(str.strip)),
                time=draw(st.sampled_from(TimeOfDay)),
                setting=draw(st.sampled_from([None, *Setting])),
                summary=draw(TEXT),
                shots=shots,
            )
        )
    title = draw(TEXT.filter(str.strip))
    return Screenplay(title=title, logline=draw(TEXT), characters=cast, scenes=scenes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(screenplays())
def test_any_screenplay_round_trips(screenplay):
    assert parse(dumps(screenplay)) == screenplay
