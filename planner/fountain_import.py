"""Fountain elements -> Screenplay: the reader behind `reelsmith.planner.fountain.parse`.

`Reader` walks the elements `fountain_syntax.read` gives in story order, collecting drafts of
scenes and shots with the characters (`Cast`); `Reader.finish` estimates what Fountain does not
say (durations, sizes, camera moves, who is on screen, prompts) and applies the reelsmith notes.
The mapping is documented in `reelsmith.planner.fountain`.
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
    Setting,
    ShotSize,
    TimeOfDay,
    Transition,
    describe_errors,
    unique_slug,
)

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


class Cast:
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
class ShotDraft:
    action: str = ""
    dialogue: list[dict] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)  # on screen, in order
    transition: Transition = Transition.cut
    note: dict = field(default_factory=dict)
    used: bool = False  # holds action or dialogue


@dataclass
class SceneDraft:
    heading: syntax.Heading | None  # None: the text before the first heading
    summary: list[str] = field(default_factory=list)
    shots: list[ShotDraft] = field(default_factory=list)
    note: dict = field(default_factory=dict)


class Reader:
    """Walks the elements in story order, collecting drafts of scenes and shots."""

    def __init__(self, cast: Cast):
        self.cast = cast
        self.scenes: list[SceneDraft] = []
        self.shot: ShotDraft | None = None  # the shot that dialogue joins
        self.note: dict = {}

    def add(self, element: syntax.Element) -> None:
        match element:
            case syntax.Heading():
                self.scenes.append(SceneDraft(element))
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

    def _scene(self) -> SceneDraft:
        if not self.scenes:
            self.scenes.append(SceneDraft(None))
        return self.scenes[-1]

    def _new_shot(self) -> ShotDraft:
        self.shot = ShotDraft()
        self._scene().shots.append(self.shot)
        return self.shot

    def _say(self, shot: ShotDraft, dialogue: syntax.Dialogue) -> None:
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
        names = Names(self.cast.characters)
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
            for j, shot in enumerate(draft.shots or [ShotDraft()], 1):
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


class Names:
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
    draft: ShotDraft, shot_id: str, first: bool, location: str, time: TimeOfDay, names: Names
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
