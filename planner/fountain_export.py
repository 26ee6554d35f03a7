"""Screenplay -> Fountain: the writer behind `reelsmith.planner.fountain.dumps`.

`write` renders a screenplay with one cue per character (`choose_cues`) and the reelsmith
notes in `Notes`; `dumps` fills those notes by parsing the plain text and noting every field
that reads back differently. The mapping is documented in `reelsmith.planner.fountain`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from reelsmith.planner import fountain_syntax as syntax
from reelsmith.schema.screenplay import Character, Scene, Screenplay, Setting, Shot, Transition

HEADING_PREFIXES = {Setting.interior: "INT.", Setting.exterior: "EXT.", Setting.both: "INT./EXT."}
TRANSITION_LINES = {Transition.crossfade: "DISSOLVE TO:", Transition.fade: "FADE OUT."}
NOTE_FIELDS = {  # what a reelsmith note of each kind may set
    "screenplay": ("title", "logline", "style"),
    "scene": ("id", "location", "time", "setting", "summary"),
    "shot": tuple(Shot.model_fields),
}
_NOTE_UNSAFE = re.compile(r"[\[\]\x7f-\x9f\ufffd\ud800-\udfff]")  # in a note's JSON strings


@dataclass
class Notes:
    """What `dumps` writes into reelsmith notes."""

    cast: bool = False
    screenplay: dict = field(default_factory=dict)
    scenes: dict[int, dict] = field(default_factory=dict)
    shots: dict[tuple[int, int], dict] = field(default_factory=dict)

    def fill(self, guess: Screenplay, wanted: Screenplay) -> None:
        """Note every field where `guess` (read from the text alone) differs from `wanted`."""
        self.screenplay = _changed(guess, wanted, NOTE_FIELDS["screenplay"])
        for i, (guess_scene, scene) in enumerate(zip(guess.scenes, wanted.scenes, strict=True)):
            self.scenes[i] = _changed(guess_scene, scene, NOTE_FIELDS["scene"])
            for j, pair in enumerate(zip(guess_scene.shots, scene.shots, strict=True)):
                self.shots[i, j] = _changed(*pair, NOTE_FIELDS["shot"])


def _changed(guess: BaseModel, wanted: BaseModel, fields: tuple[str, ...]) -> dict:
    changed = {name for name in fields if getattr(guess, name) != getattr(wanted, name)}
    return wanted.model_dump(mode="json", include=changed) if changed else {}


def choose_cues(characters: list[Character]) -> dict[str, tuple[str, str]]:
    """Character id -> (cue line, the name `parse` reads from it), one cue per character."""
    cues: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    for character in characters:
        name = (
            _flat(re.sub(r"[()^\x00-\x1f\x7f-\x9f]", "", character.name))[:100].strip()
            or character.id
        )
        base = name.upper() if syntax.display_name(name.upper()) == name else name
        read, n = base, 1
        while syntax.cue_key(read) in taken:  # two characters of one name: 'GUARD', 'GUARD 2'
            n += 1
            read = f"{base} {n}"
        taken.add(syntax.cue_key(read))
        line = escape(read)
        plain = all(_reads_as_cue(cue_line, read) for cue_line in (line, line + " (V.O.)"))
        cues[character.id] = (line if plain else "@" + line, read)
    return cues


def escape(line: str) -> str:
    """One line of text, escaped so that it reads back as itself and as nothing else.

    Emphasis characters, backslashes and double brackets are escaped anywhere; '(' and '~'
    at the start of the line (a parenthetical, a lyric) are escaped too. Control characters,
    which the reader drops, are dropped.
    """
    line = syntax.CONTROL.sub("", line)
    line = line.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")
    line = re.sub(r"\[(?=\[)", r"\\[", line)
    line = re.sub(r"\](?=\])", r"\\]", line)
    stripped = line.lstrip()
    if stripped[:1] in ("(", "~"):
        line = line[: len(line) - len(stripped)] + "\\" + stripped
    return line


def _reads_as_cue(line: str, name: str) -> bool:
    match syntax.classify([line, "..."]):
        case [syntax.Dialogue(cue=cue, forced=False, dual=False)]:
            return cue == name
    return False


def write(screenplay: Screenplay, cues: dict[str, tuple[str, str]], notes: Notes) -> str:
    """The Fountain text of `screenplay`, with `cues` from `choose_cues` and these notes."""
    blocks = [f"Title: {escape(_flat(screenplay.title))}"]
    for key, value in (("Logline", screenplay.logline), ("Style", screenplay.style)):
        if value.strip():
            blocks[0] += f"\n{key}: {escape(_flat(value))}"
    if notes.screenplay:
        blocks.append(_note("screenplay", notes.screenplay))
    if notes.cast and screenplay.characters:
        blocks.append("\n".join(_character_note(c, cues[c.id][1]) for c in screenplay.characters))
    for i, scene in enumerate(screenplay.scenes):
        blocks.append(_heading(scene, i))
        if notes.scenes.get(i):
            blocks.append(_note("scene", notes.scenes[i]))
        if scene.summary.strip():
            blocks.append("= " + escape(_flat(scene.summary)))
        after_bare_note = False
        for j, shot in enumerate(scene.shots):
            note = notes.shots.get((i, j))
            action = [line for line in shot.action.split("\n") if line.strip()]
            if note or not _starts_itself(scene, j, bool(action), after_bare_note):
                blocks.append(_note("shot", note or {}))
            blocks += _shot_blocks(shot, action, cues)
            after_bare_note = not (action or shot.dialogue) and shot.transition is Transition.cut
    return "\n\n".join(blocks) + "\n"


def _starts_itself(scene: Scene, j: int, has_action: bool, after_bare_note: bool) -> bool:
    """Whether the reader starts shot `j` without a shot note to mark it."""
    shot = scene.shots[j]
    if has_action:  # an action starts a shot, unless a bare shot note before it is waiting
        return not after_bare_note
    if j > 0:  # dialogue would join the shot before
        return False
    # the first shot: dialogue starts it; a heading with nothing under it is one shot
    return bool(shot.dialogue) or len(scene.shots) == 1 or shot.transition is not Transition.cut


def _heading(scene: Scene, index: int) -> str:
    place = escape(_flat(scene.location).upper())
    prefix = HEADING_PREFIXES.get(scene.setting)
    heading = f"{prefix} {place}" if prefix else "." + place.lstrip(".")
    heading += f" - {scene.time.value.upper()}"
    number = scene.id.removeprefix("scene-")  # written back as a scene number if not by position
    if scene.id != f"scene-{index + 1:02d}" and re.fullmatch(r"scene-[\w.-]+", scene.id):
        heading += f" #{number}#"
    return heading


def _shot_blocks(shot: Shot, action: list[str], cues: dict[str, tuple[str, str]]) -> list[str]:
    blocks = []
    if action:
        lines = [escape(line) for line in action]
        if syntax.classify(lines) != [syntax.Action(syntax.paragraph(action))]:
            lines[0] = "!" + lines[0]  # it would read as something else
        blocks.append("\n".join(lines))
    previous = None
    for line in shot.dialogue:
        cue = cues[line.speaker][0]
        extension = re.sub(r"[()]", "", _flat(line.extension))
        cue += f" ({escape(extension)})" if extension else ""
        said = [f"({escape(_flat(line.parenthetical))})"] if line.parenthetical.strip() else []
        spoken = [escape(part.strip()) or "  " for part in line.line.split("\n")]
        if cue == previous and said:  # a parenthetical starts a new line under the same cue
            blocks[-1] += "\n" + "\n".join(said + spoken)
        else:
            blocks.append("\n".join([cue, *said, *spoken]))
        previous = cue
    if shot.transition in TRANSITION_LINES:
        blocks.append(TRANSITION_LINES[shot.transition])
    return blocks


def _character_note(character: Character, read: str) -> str:
    data = character.model_dump(mode="json", exclude_defaults=True)
    if syntax.cue_key(read) != syntax.cue_key(character.name):
        data["cue"] = read
    return _note("character", data)


def _note(kind: str, data: dict) -> str:
    """`[[reelsmith <kind>: {json}]]` on one line, with no ']]' or '[[' inside."""

    def escape_unsafe(string: re.Match) -> str:
        return _NOTE_UNSAFE.sub(lambda char: f"\\u{ord(char[0]):04x}", string[0])

    payload = re.sub(r'"(?:[^"\\]|\\.)*"', escape_unsafe, json.dumps(data, ensure_ascii=False))
    return f"[[reelsmith {kind}: {payload}]]"


def _flat(text: str) -> str:
    return " ".join(text.split())
