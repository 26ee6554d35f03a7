"""The Screenplay: the one schema every writer produces and every renderer reads.

Film vocabulary that every backend understands (time of day, shot size, camera move,
transition, character action) is an enum; descriptions are always free text as well.
Validation rejects what cannot be rendered and names the field path of each problem, e.g.
``scenes[1].shots[0].characters[2]: unknown character id 'bob'``.

`Screenplay.model_json_schema()` is the schema that constrained decoding uses.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator
from enum import Enum
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reelsmith.errors import ScreenplayError

MAX_SHOTS = 2000
MIN_SHOT_SECONDS = 0.5
MAX_SHOT_SECONDS = 30.0
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

Id = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        description="Stable id, also a file name: lowercase letters, digits, '-' and '_', "
        "starting with a letter or digit, at most 64 characters.",
    ),
]


class TimeOfDay(str, Enum):
    day = "day"
    dusk = "dusk"
    night = "night"


class Setting(str, Enum):
    """Where the camera is: the INT./EXT. of a scene heading."""

    interior = "interior"
    exterior = "exterior"
    both = "interior/exterior"


class ShotSize(str, Enum):
    wide = "wide"
    medium = "medium"
    close_up = "close-up"


class CameraMove(str, Enum):
    static = "static"
    pan_left = "pan-left"
    pan_right = "pan-right"
    zoom_in = "zoom-in"
    zoom_out = "zoom-out"
    follow = "follow"


class Transition(str, Enum):
    """How a shot hands over to the next one."""

    cut = "cut"
    crossfade = "crossfade"
    fade = "fade"


class Action(str, Enum):
    """What one character does during a shot."""

    idle = "idle"
    walk_left = "walk-left"
    walk_right = "walk-right"
    run = "run"
    jump = "jump"
    wave = "wave"
    sit = "sit"
    approach = "approach"
    leave = "leave"
    turn = "turn"
    talk = "talk"
    follow = "follow"


TARGETED_ACTIONS = frozenset({Action.approach, Action.follow})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_assignment=False)


class Character(_Model):
    """Someone (or something) that appears in the movie."""

    id: Id
    name: str = Field(min_length=1, max_length=120, description="Display name.")
    description: str = Field(
        default="", max_length=2000, description="Free-text looks and personality."
    )
    aliases: list[str] = Field(
        default_factory=list, description="Other names the character goes by."
    )
    reference_image: str | None = Field(
        default=None, description="Path of a reference portrait supplied by the user."
    )


class DialogueLine(_Model):
    speaker: Id = Field(description="Id of the speaking character.")
    line: str = Field(min_length=1, max_length=2000)
    parenthetical: str = Field(default="", max_length=200, description="e.g. 'whispering'.")
    extension: str = Field(
        default="", max_length=40, description="e.g. 'V.O.', 'O.S.', 'ON THE PHONE'."
    )


class Blocking(_Model):
    """One character's action in a shot."""

    character: Id
    action: Action = Action.idle
    target: Id | None = Field(
        default=None, description="The character approached or followed, if any."
    )


class Shot(_Model):
    id: Id
    duration: float = Field(
        default=3.0,
        ge=MIN_SHOT_SECONDS,
        le=MAX_SHOT_SECONDS,
        description=f"Seconds, {MIN_SHOT_SECONDS} to {MAX_SHOT_SECONDS}.",
    )
    size: ShotSize = ShotSize.medium
    camera: CameraMove = CameraMove.static
    characters: list[Id] = Field(
        default_factory=list, description="Ids of the characters on screen."
    )
    action: str = Field(default="", max_length=4000, description="What happens, free text.")
    blocking: list[Blocking] = Field(
        default_factory=list, description="Each on-screen character's action."
    )
    dialogue: list[DialogueLine] = Field(default_factory=list)
    keyframe_prompt: str = Field(
        default="", max_length=2000, description="What the shot's keyframe shows."
    )
    motion_prompt: str = Field(
        default="", max_length=2000, description="How things move during the shot."
    )
    transition: Transition = Field(
        default=Transition.cut, description="How this shot hands over to the next."
    )


class Scene(_Model):
    id: Id
    location: str = Field(min_length=1, max_length=300, description="Where, free text.")
    time: TimeOfDay = TimeOfDay.day
    setting: Setting | None = None
    summary: str = Field(default="", max_length=4000)
    shots: list[Shot] = Field(description="At least one shot.")


class Screenplay(_Model):
    """A movie as scenes of shots, with its cast."""

    title: str = Field(min_length=1, max_length=200)
    logline: str = Field(default="", max_length=2000)
    style: str = Field(default="", max_length=2000, description="Visual style, free text.")
    characters: list[Character] = Field(default_factory=list)
    scenes: list[Scene] = Field(description="At least one scene.")

    @model_validator(mode="after")
    def _check_renderable(self) -> Screenplay:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """Cross-field problems (ids, references, counts), each as 'path: message'."""
        problems: list[str] = []
        known = _check_unique([c.id for c in self.characters], "characters", "character", problems)
        _check_unique([s.id for s in self.scenes], "scenes", "scene", problems)
        if not self.scenes:
            problems.append("scenes: a screenplay needs at least one scene")
        shot_ids: dict[str, str] = {}
        total = 0
        for i, scene in enumerate(self.scenes):
            where = f"scenes[{i}]"
            if not scene.shots:
                problems.append(f"{where}.shots: scene '{scene.id}' has no shots")
            for j, shot in enumerate(scene.shots):
                at = f"{where}.shots[{j}]"
                total += 1
                if shot.id in shot_ids:
                    problems.append(
                        f"{at}.id: duplicate shot id '{shot.id}' (first at {shot_ids[shot.id]})"
                    )
                else:
                    shot_ids[shot.id] = at
                _check_shot(shot, at, known, problems)
        if total > MAX_SHOTS:
            problems.append(f"scenes: {total} shots, more than the limit of {MAX_SHOTS}")
        return problems

    # -- convenience -----------------------------------------------------------------

    def shots(self) -> Iterator[tuple[Scene, Shot]]:
        """Every shot in story order, with its scene."""
        for scene in self.scenes:
            for shot in scene.shots:
                yield scene, shot

    @property
    def num_shots(self) -> int:
        return sum(len(scene.shots) for scene in self.scenes)

    @property
    def duration(self) -> float:
        """Total running time in seconds."""
        return sum(shot.duration for _, shot in self.shots())

    def character(self, character_id: str) -> Character:
        for character in self.characters:
            if character.id == character_id:
                return character
        raise KeyError(character_id)

    # -- serialisation ----------------------------------------------------------------

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent, exclude_defaults=False) + "\n"

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def from_json(cls, text: str, source: str = "screenplay") -> Screenplay:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScreenplayError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_data(data, source)

    @classmethod
    def from_yaml(cls, text: str, source: str = "screenplay") -> Screenplay:
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as exc:
            reason = " ".join(str(exc).split())
            raise ScreenplayError(f"{source}: not valid YAML ({reason})") from None
        return cls.from_data(data, source)

    @classmethod
    def from_data(cls, data: object, source: str = "screenplay") -> Screenplay:
        """Validate parsed JSON/YAML data; raise `ScreenplayError` naming every bad field."""
        if not isinstance(data, dict):
            raise ScreenplayError(
                f"{source}: expected a mapping at the top level, got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ScreenplayError(f"{source}: " + "; ".join(describe_errors(exc))) from None


def describe_errors(exc: ValidationError) -> list[str]:
    """Turn a pydantic ValidationError into 'path: message' strings."""
    out = []
    for error in exc.errors(include_url=False):
        path = _format_loc(error["loc"])
        message = error["msg"]
        if message.startswith("Value error, "):
            # cross-field problems already carry their own paths
            out.extend(message.removeprefix("Value error, ").split("; "))
            continue
        if error["type"] == "string_pattern_mismatch":
            message = f"{error['input']!r} is not a safe id (lowercase a-z, 0-9, '-', '_')"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "enum":
            message = f"{error['input']!r} is not one of {error['ctx']['expected']}"
        out.append(f"{path}: {message}" if path else message)
    return out


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _check_unique(ids: list[str], field: str, kind: str, problems: list[str]) -> set[str]:
    seen: set[str] = set()
    for i, item in enumerate(ids):
        if item in seen:
            problems.append(f"{field}[{i}].id: duplicate {kind} id '{item}'")
        seen.add(item)
    return seen


def _check_shot(shot: Shot, at: str, known: set[str], problems: list[str]) -> None:
    def check(ref: str | None, path: str) -> None:
        if ref is not None and ref not in known:
            hint = ", ".join(sorted(known)) or "none"
            problems.append(f"{path}: unknown character id '{ref}' (cast: {hint})")

    for k, ref in enumerate(shot.characters):
        check(ref, f"{at}.characters[{k}]")
    if len(set(shot.characters)) != len(shot.characters):
        problems.append(f"{at}.characters: a character is listed twice")
    for k, line in enumerate(shot.dialogue):
        check(line.speaker, f"{at}.dialogue[{k}].speaker")
    for k, beat in enumerate(shot.blocking):
        check(beat.character, f"{at}.blocking[{k}].character")
        check(beat.target, f"{at}.blocking[{k}].target")
        if beat.character in known and beat.character not in shot.characters:
            problems.append(
                f"{at}.blocking[{k}].character: '{beat.character}' is not on screen in this shot"
            )
        if beat.target is not None and beat.target == beat.character:
            problems.append(f"{at}.blocking[{k}].target: a character cannot target itself")


def slugify(text: str, fallback: str = "x") -> str:
    """A safe id from any text: 'Mr. Steel' -> 'mr-steel', 'Zoë' -> 'zoe'.

    Text with no letters or digits (e.g. '???', '李') becomes `fallback` plus a short stable
    hash of the text, so different names still get different ids.
    """
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-_")[:48].strip("-_")
    if not slug:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        slug = f"{fallback}-{digest}"
    return slug


def unique_slug(text: str, taken: set[str], fallback: str = "x") -> str:
    """`slugify(text)`, with '-2', '-3' … appended until it is not in `taken`; adds it."""
    base = slugify(text, fallback)
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug
