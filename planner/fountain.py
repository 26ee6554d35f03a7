"""Fountain <-> Screenplay: read and write screenplays in the plain-text standard.

`parse(text, source)` reads Fountain (https://fountain.io/syntax) into a `Screenplay`;
`dumps(screenplay)` writes one. `parse(dumps(s)) == s` for every valid Screenplay. The
lexical rules live in `fountain_syntax`, the writer in `fountain_export`; this module maps
Fountain onto the schema.

Reading (Fountain -> Screenplay):

- Title page: `Title:` -> title (lines joined); `Logline:` (else `Synopsis:`, else `Notes:`)
  -> logline; `Style:` -> style; Credit, Author, Draft date … have no place in the schema.
  Without a title the source file's stem names the movie, else the first scene's location.
- Scenes: one per scene heading. INT. / EXT. / EST. / INT./EXT. / I/E -> `Setting`; a forced
  `.HEADING` has none. The last ` - ` part naming a time is the time of day (DAY, MORNING,
  AFTERNOON -> day; DUSK, EVENING, SUNSET, DAWN -> dusk; NIGHT, MIDNIGHT -> night;
  CONTINUOUS, LATER, SAME -> the previous scene's; none -> day); the rest, lowercased, is
  the location: "EXT. FOREST CLEARING - NIGHT" -> "forest clearing", night, exterior. Ids
  are `scene-01` … by position, or `scene-12a` from a scene number `#12A#`. Synopses
  (`= …`) under a heading are the scene's summary. Action or dialogue before the first
  heading opens a scene at a storyworld place its text names ("the snowy woods" ->
  "forest"), else at the first heading's place, else at "unspecified".
- Shots: each action paragraph starts a shot; dialogue joins the current shot or starts
  one; a transition ends the shot and sets its `transition` (DISSOLVE -> crossfade, FADE ->
  fade, others -> cut). A heading with nothing under it is one establishing shot. Ids are
  `s<scene>-<shot>` by position (`s01-01`). The rest is estimated from the text:
  - duration: words of action and dialogue / 2.5 + 0.5 s per line, 2 s if empty, 0.5-30 s;
  - characters: those named in the action, then the speakers who are not off screen
    (V.O., O.S., O.C.). A name is a cue name or alias as whole words in any case, longest
    first ("Mr. Steel" is not also "Steel"; but WILL is also in "she will");
  - size: a CLOSE ON / WIDE SHOT / ESTABLISHING direction, else wide for a scene's first
    shot, close-up for dialogue with one person on screen, medium otherwise;
  - camera: PAN LEFT/RIGHT, ZOOM IN/OUT, PUSH IN, PULL BACK, TRACKING …, else static;
  - keyframe prompt "<location>, <time>. <action>"; motion prompt the action; no blocking.
- Characters: one per distinct cue (case-insensitive, extensions dropped), in order of
  first cue. The name is the cue in title case ("MR. STEEL" -> "Mr. Steel"), or as written
  when forced (`@McCLANE`); ids come from `unique_slug`, so STEEL and MR. STEEL stay two
  people. Someone who never speaks is in the cast only if a note declares them. A
  character's introduction gives its description: the first action that writes the cue
  as a word, in its capitals, then a comma (after an optional parenthetical), then a phrase
  starting with a lowercase letter: "MIRA (8), a small yellow mouse with a scarf, searches
  the trees." -> "a small yellow mouse with a scarf" (up to the next , . ; : ! ? or dash).
- Dialogue: each parenthetical starts a `DialogueLine`; extensions -> `extension` (CONT'D
  dropped); lyrics (`~`) get the parenthetical "singing" unless they have one; dual
  dialogue (`^`) is two speakers in one shot. Centered text is action. Notes, boneyard,
  sections, page breaks and emphasis are dropped (an escaped `\\*` stays a `*`).

Writing (Screenplay -> Fountain): a title page; per scene its heading (INT. / EXT. /
INT./EXT. from the setting, a forced `.` without one; the location upper-cased, then DAY,
DUSK or NIGHT; `#12a#` for an id `scene-12a`) and its summary as a synopsis; per shot
its action, its dialogue under one cue per character (the upper-cased name, forced with `@`
when that would not read back, numbered when two characters share a name) and DISSOLVE TO:
or FADE OUT. (a cut is the default and is not written). Text is escaped to read back as
itself.

What Fountain has no place for (ids, durations, sizes, camera moves, blocking, prompts,
character descriptions …) goes into notes `[[reelsmith <kind>: {json}]]` of kind
screenplay, character, scene or shot, only where the text alone reads back differently:
`dumps` parses its own text and notes each difference. A shot note also marks where a shot
without action begins. Notes set fields after everything else is read and never change how
the rest is read, so a screenplay parsed from plain Fountain is written back as plain
Fountain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from reelsmith.errors import InputError, ScreenplayError
from reelsmith.planner import fountain_export as export
from reelsmith.planner import fountain_syntax as syntax
from reelsmith.schema import vocabulary
from reelsmith.schema.screenplay import (
    MAX_SHOT_SECONDS,
    MIN_SHOT_SECONDS,
    CameraMove,
    Character,
    Screenplay,
    Setting,
    ShotSize,
    TimeOfDay,
    Transition,
    describe_errors,
    unique_slug,
)

__all__ = ["dumps", "parse"]

WORDS_PER_SECOND = 2.5  # reading pace of action and dialogue
SECONDS_PER_LINE = 0.5  # the beat between two lines of dialogue
EMPTY_SHOT_SECONDS = 2.0  # a shot with neither action nor dialogue (establishing)
MAX_PROMPT_CHARS = 2000

SETTINGS = {"INT": Setting.interior, "EXT": Setting.exterior, "EST": Setting.exterior}
TIMES = {
    **dict.fromkeys(("DAY", "DAYTIME", "MORNING", "AFTERNOON", "NOON", "MIDDAY"), TimeOfDay.day),
    **dict.fromkeys(("DUSK", "EVENING", "SUNSET", "DAWN", "SUNRISE", "TWILIGHT"), TimeOfDay.dusk),
    **dict.fromkeys(("NIGHT", "NIGHTTIME", "MIDNIGHT"), TimeOfDay.night),
}
# a character's introduction: its cue in capitals, a comma, a description (group 1)
INTRODUCTION = (
    r"(?<![\w@]){}(?![\w])(?:\s*\([^()\n]{{0,40}}\))?\s*,\s+"
    r"([a-z][^,.;:!?\u2014]{{0,300}}?)\s*(?:[,.;:!?\u2014]|\n\n|\s--|\s-\s|$)"
)
SAME_TIME = frozenset({"CONTINUOUS", "LATER", "SAME", "SIMULTANEOUS"})
OFF_SCREEN = frozenset({"VO", "OS", "OC", "OFF", "OFFSCREEN", "OFFCAMERA", "VOICEOVER"})
NOT_EXTENSIONS = frozenset({"CONTD", "CONT", "CONTINUED", "CONTINUING", "MORE"})
SIZE_WORDS = (  # directions are written in capitals
    (ShotSize.close_up, r"\bCLOSE(?:-| )?(?:UP|ON)\b|\bECU\b|\bINSERT\b"),
    (ShotSize.wide, r"\bWIDE (?:SHOT|ON|ANGLE)\b|\bESTABLISHING\b|\bAERIAL\b"),
)
CAMERA_WORDS = (
    (CameraMove.pan_left, r"(?i:\bpan(?:s|ning)?\s+(?:to\s+the\s+)?left\b)"),
    (CameraMove.pan_right, r"(?i:\bpan(?:s|ning)?\s+(?:to\s+the\s+)?right\b|\bcamera\s+pans\b)"),
    (CameraMove.pan_right, r"\bPAN(?:S|NING)? (?:ACROSS|OVER|TO|WITH)\b"),
    (CameraMove.zoom_out, r"(?i:\bzoom(?:s|ing)?\s+out\b)|\bPULL(?:S|ING)? (?:BACK|OUT)\b"),
    (CameraMove.zoom_in, r"(?i:\bzoom(?:s|ing)?\s+in\b|\bcamera\s+zooms\b)|\bPUSH(?:ES|ING)? IN\b"),
    (CameraMove.follow, r"(?i:\bcamera\s+follows\b|\btracking\s+shot\b)|\bTRACK(?:ING| WITH)\b"),
)


def parse(text: str, source: str = "screenplay.fountain") -> Screenplay:
    """Read a Fountain screenplay.

    Args:
        text: The Fountain text.
        source: Where the text came from; it starts every error message and, without a
            title page, names the movie.

    Returns:
        A valid Screenplay (see the module docstring for the mapping).

    Raises:
        InputError: binary data, an unclosed note or boneyard, a malformed reelsmith note,
            or nothing to make a scene of; one line naming `source`.
        ScreenplayError: the result breaks the schema (e.g. a 5000-character paragraph).
    """
    # 1. text -> title page and elements
    title_page, elements = syntax.read(text, source)
    # 2. elements -> drafts of scenes and shots, in story order
    declared = [e for e in elements if isinstance(e, syntax.Note) and e.kind == "character"]
    reader = _Reader(_Cast(declared, source))
    for element in elements:
        reader.add(element)
    if not reader.scenes:
        raise InputError(
            f"{source}: no scene heading found (a scene starts with a line like "
            "'INT. KITCHEN - DAY')"
        )
    # 3. drafts -> Screenplay: estimate what Fountain does not say, then apply the notes
    return Screenplay.from_data(reader.finish(title_page, source), source)


def dumps(screenplay: Screenplay) -> str:
    """Write a screenplay as Fountain.

    Args:
        screenplay: Any valid Screenplay.

    Returns:
        Fountain text, with reelsmith notes only where the text alone would read back
        differently; `parse` of it equals `screenplay`.
    """
    cues = export.choose_cues(screenplay.characters)
    # 1. the cast goes into notes only when the cues alone would not give it back
    notes = export.Notes()
    plain = parse(export.write(screenplay, cues, notes))
    notes.cast = plain.characters != screenplay.characters
    # 2. so does every field of a scene or shot that the text alone reads differently
    notes.fill(parse(export.write(screenplay, cues, notes)), screenplay)
    return export.write(screenplay, cues, notes)


# -- reading -----------------------------------------------------------------------------


class _Cast:
    """The characters: declared by notes first, then one per new cue."""

    def __init__(self, notes: list[syntax.Note], source: str):
        self.characters: list[dict] = []
        self.cues: dict[str, str] = {}  # character id -> its first cue as written, if no note
        self._ids: dict[str, str] = {}  # cue key -> character id
        self._taken: set[str] = set()
        for note in notes:
            data = dict(note.data)
            cue = data.pop("cue", None)
            try:
                character = Character.model_validate(data)
            except ValidationError as exc:
                problems = "; ".join(describe_errors(exc))
                raise ScreenplayError(f"{source}: reelsmith character note: {problems}") from None
            if cue is not None and not isinstance(cue, str):
                raise InputError(f"{source}: reelsmith character note: cue must be text")
            self._taken.add(character.id)
            self._ids.setdefault(syntax.cue_key(cue or character.name), character.id)
            self.characters.append(character.model_dump())

    def speaker(self, dialogue: syntax.Dialogue) -> str:
        key = syntax.cue_key(dialogue.cue)
        if key not in self._ids:
            name = dialogue.cue if dialogue.forced else syntax.display_name(dialogue.cue)
            self._ids[key] = unique_slug(name, self._taken, "character")
            self.characters.append({"id": self._ids[key], "name": name})
            self.cues[self._ids[key]] = dialogue.cue
        return self._ids[key]

    def introduce(self, actions: list[str]) -> None:
        """Describe each character of a cue (not of a note) by its introduction in `actions`,
        the action paragraphs in story order."""
        text = "\n\n".join(actions)
        for character in self.characters:
            cue = self.cues.get(character["id"])
            if cue and (found := re.search(INTRODUCTION.format(re.escape(cue)), text)):
                character["description"] = _flat(found[1])


@dataclass
class _ShotDraft:
    action: str = ""
    dialogue: list[dict] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)  # on screen, in order
    transition: Transition = Transition.cut
    note: dict = field(default_factory=dict)
    used: bool = False  # holds action or dialogue


@dataclass
class _SceneDraft:
    heading: syntax.Heading | None  # None: the text before the first heading
    summary: list[str] = field(default_factory=list)
    shots: list[_ShotDraft] = field(default_factory=list)
    note: dict = field(default_factory=dict)


class _Reader:
    """Walks the elements in story order, collecting drafts of scenes and shots."""

    def __init__(self, cast: _Cast):
        self.cast = cast
        self.scenes: list[_SceneDraft] = []
        self.shot: _ShotDraft | None = None  # the shot that dialogue joins
        self.note: dict = {}

    def add(self, element: syntax.Element) -> None:
        match element:
            case syntax.Heading():
                self.scenes.append(_SceneDraft(element))
                self.shot = None
            case syntax.Synopsis(text=text) if self.scenes:
                self.scenes[-1].summary.append(text)
            case syntax.Action(text=text):
                shot = self.shot if self.shot and not self.shot.used else self._new_shot()
                shot.action, shot.used = text, True
            case syntax.Dialogue():
                self._say(self.shot or self._new_shot(), element)
            case syntax.Transition(text=text):
                self._transition(text)
            case syntax.Note(kind="screenplay", data=data):
                self.note.update(data)
            case syntax.Note(kind="scene", data=data):
                self._scene().note.update(data)
            case syntax.Note(kind="shot", data=data):
                self._new_shot().note.update(data)

    def _scene(self) -> _SceneDraft:
        if not self.scenes:
            self.scenes.append(_SceneDraft(None))
        return self.scenes[-1]

    def _new_shot(self) -> _ShotDraft:
        self.shot = _ShotDraft()
        self._scene().shots.append(self.shot)
        return self.shot

    def _say(self, shot: _ShotDraft, dialogue: syntax.Dialogue) -> None:
        shot.used = True
        speaker = self.cast.speaker(dialogue)
        kept = [e for e in dialogue.extensions if _letters(e) not in NOT_EXTENSIONS]
        extension = " ".join(kept)
        if not OFF_SCREEN.intersection(_letters(e) for e in re.split(r"\s+|/", extension)):
            shot.speakers.append(speaker)
        for speech in dialogue.speeches:
            shot.dialogue.append(
                {
                    "speaker": speaker,
                    "line": speech.line,
                    "parenthetical": speech.parenthetical or ("singing" if speech.lyric else ""),
                    "extension": extension,
                }
            )

    def _transition(self, text: str) -> None:
        if text.upper().startswith("FADE IN"):  # an opening: the shot before it fades out
            target = next((s.shots[-1] for s in reversed(self.scenes) if s.shots), None)
        elif self.scenes:
            scene = self.scenes[-1]
            target = scene.shots[-1] if scene.shots else self._new_shot()
        else:
            target = None  # nothing to hand over from
        if target:
            target.transition = _transition_kind(text)
        self.shot = None

    def finish(self, title_page: dict[str, str], source: str) -> dict:
        """The screenplay as data for `Screenplay.from_data`, notes applied."""
        self.cast.introduce([shot.action for scene in self.scenes for shot in scene.shots])
        names = _Names(self.cast.characters)
        headed = [s.heading for s in self.scenes if s.heading]
        opening = _place(headed[0], TimeOfDay.day) if headed else None
        scenes, scene_ids, time = [], set(), TimeOfDay.day
        for index, draft in enumerate(self.scenes, 1):
            if draft.heading:
                location, time, setting = _place(draft.heading, time)
            else:  # before the first heading: a place the text names, else the heading's
                named = vocabulary.first(
                    " ".join(s.action for s in draft.shots), vocabulary.LOCATIONS
                )
                location, time, setting = opening or ("unspecified", TimeOfDay.day, None)
                location, setting = (named, None) if named else (location, setting)
            number = draft.heading.number if draft.heading else None
            shots = []
            for j, shot in enumerate(draft.shots or [_ShotDraft()], 1):
                inferred = _shot(shot, f"s{index:02d}-{j:02d}", j == 1, location, time, names)
                shots.append(_noted(inferred, shot.note, "shot", source))
            scene = {
                "id": unique_slug(f"scene-{number or f'{index:02d}'}", scene_ids, "scene"),
                "location": location,
                "time": time,
                "setting": setting,
                "summary": " ".join(draft.summary),
            }
            scenes.append(_noted(scene, draft.note, "scene", source) | {"shots": shots})
        page = title_page.get
        screenplay = {
            "title": page("title") or _untitled(source, scenes[0]["location"]),
            "logline": page("logline") or page("synopsis") or page("notes") or "",
            "style": page("style") or "",
        }
        screenplay = _noted(screenplay, self.note, "screenplay", source)
        return screenplay | {"characters": self.cast.characters, "scenes": scenes}


class _Names:
    """Finds the cast in action text: whole words, any case, longest name first."""

    def __init__(self, cast: list[dict]):
        named = [(_flat(n), c["id"]) for c in cast for n in [c["name"], *c.get("aliases", [])]]
        named = sorted((pair for pair in named if pair[0]), key=lambda pair: -len(pair[0]))
        self.patterns = [(re.compile(rf"(?<!\w){re.escape(n)}(?!\w)", re.I), i) for n, i in named]
        self.names = {c["id"]: c["name"] for c in cast}

    def find(self, text: str) -> list[str]:
        found: list[tuple[int, str]] = []
        for pattern, character_id in self.patterns:
            found += [(match.start(), character_id) for match in pattern.finditer(text)]
            text = pattern.sub(
                lambda match: "\0" * len(match[0]), text
            )  # "Mr. Steel" hides "Steel"
        return list(dict.fromkeys(character_id for _, character_id in sorted(found)))


def _shot(
    draft: _ShotDraft, shot_id: str, first: bool, location: str, time: TimeOfDay, names: _Names
) -> dict:
    """A shot estimated from its text alone."""
    on_screen = list(dict.fromkeys([*names.find(draft.action), *draft.speakers]))
    words = len(draft.action.split()) + sum(len(d["line"].split()) for d in draft.dialogue)
    seconds = words / WORDS_PER_SECOND + SECONDS_PER_LINE * len(draft.dialogue)
    duration = min(max(seconds or EMPTY_SHOT_SECONDS, MIN_SHOT_SECONDS), MAX_SHOT_SECONDS)
    size = next((size for size, pattern in SIZE_WORDS if re.search(pattern, draft.action)), None)
    if size is None:
        establishing = first and (draft.action or not draft.dialogue)
        alone = draft.dialogue and len(on_screen) <= 1
        size = ShotSize.wide if establishing else ShotSize.close_up if alone else ShotSize.medium
    camera = next((c for c, pattern in CAMERA_WORDS if re.search(pattern, draft.action)), None)
    who = " and ".join(names.names[c] for c in on_screen)
    picture = draft.action or (f"{who} talking" if who and draft.dialogue else "")
    keyframe = f"{location}, {time.value}" + (f". {picture}" if picture else "")
    return {
        "id": shot_id,
        "duration": round(duration, 1),
        "size": size,
        "camera": camera or CameraMove.static,
        "characters": on_screen,
        "action": draft.action,
        "dialogue": draft.dialogue,
        "keyframe_prompt": keyframe[:MAX_PROMPT_CHARS],
        "motion_prompt": picture[:MAX_PROMPT_CHARS],
        "transition": draft.transition,
    }


def _place(heading: syntax.Heading, previous: TimeOfDay) -> tuple[str, TimeOfDay, Setting | None]:
    """(location, time, setting) of a heading: 'FOREST - NIGHT' -> ('forest', night)."""
    parts = re.split(r"(?:^|\s+)[-–—]+(?:\s+|$)", heading.text)
    time = TimeOfDay.day
    for k in range(len(parts) - 1, 0, -1):
        words = re.findall(r"[A-Z]+", parts[k].upper())
        found = next((TIMES[w] for w in words if w in TIMES), None)
        if found is None and SAME_TIME.intersection(words):
            found = previous
        if found is not None:
            time, parts = found, parts[:k] + parts[k + 1 :]
            break
    location = " - ".join(p for p in parts if p).lower() or "unspecified"
    if heading.setting is None:
        return location, time, None
    return location, time, SETTINGS.get(heading.setting, Setting.both)


def _transition_kind(text: str) -> Transition:
    words = _letters(text)
    if "DISSOLVE" in words or "CROSSFADE" in words:
        return Transition.crossfade
    return Transition.fade if "FADE" in words else Transition.cut


def _noted(inferred: dict, note: dict, kind: str, source: str) -> dict:
    unknown = sorted(set(note) - set(export.NOTE_FIELDS[kind]))
    if unknown:
        raise InputError(f"{source}: a reelsmith {kind} note cannot set {', '.join(unknown)}")
    return inferred | note


def _untitled(source: str, location: str) -> str:
    stem = re.sub(r"[\s_-]+", " ", Path(source).stem).strip()
    if stem and stem.lower() != "screenplay":
        return syntax.display_name(stem)[:200]
    return syntax.display_name(location)[:200] if location != "unspecified" else "Untitled"


def _letters(text: str) -> str:
    return re.sub(r"[^A-Z]", "", text.upper())


def _flat(text: str) -> str:
    return " ".join(text.split())
