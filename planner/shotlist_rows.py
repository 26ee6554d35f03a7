"""Shot-list rows -> a Screenplay: the half of `reelsmith.planner.shotlist` that reads values.

Consecutive rows with the same scene form one scene; every new character name becomes a
character; cells are read as enums (with common spellings: 'CU', 'close up'), numbers, and the
character, dialogue and blocking mini-syntax (a backslash escapes a separator). Every problem
raises `ScreenplayError` naming the source, the row and the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reelsmith.errors import ScreenplayError
from reelsmith.schema.screenplay import (
    ID_PATTERN,
    MAX_SHOT_SECONDS,
    MIN_SHOT_SECONDS,
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
    describe_errors,
    unique_slug,
)

# fmt: off
# Common spellings accepted besides each enum's own values, after `_norm`.
ALIASES: dict[type[Enum], dict[str, str]] = {
    ShotSize: {
        "ws": "wide", "ls": "wide", "wide shot": "wide", "long shot": "wide",
        "establishing": "wide", "ms": "medium", "mid": "medium", "mid shot": "medium",
        "medium shot": "medium", "cu": "close-up", "closeup": "close-up", "close": "close-up",
    },
    CameraMove: {"still": "static", "locked": "static", "tracking": "follow", "track": "follow"},
    Transition: {"dissolve": "crossfade", "cross fade": "crossfade", "fade out": "fade"},
    Setting: {
        "int": "interior", "ext": "exterior", "int/ext": "interior/exterior",
        "ext/int": "interior/exterior", "i/e": "interior/exterior",
    },
}
# fmt: on
_SCENE_FIELDS = [("location", None), ("time", TimeOfDay), ("setting", Setting), ("summary", None)]
# In character, dialogue and blocking cells a backslash escapes one of these characters.
_UNESCAPE = re.compile(r"\\([\\|:\[\]()>;,])")
# A dialogue entry: 'NAME [EXTENSION] (parenthetical): line'.
_CUE = re.compile(
    r"(?P<who>[^:\[\]()]+?)\s*(?:\[(?P<extension>(?:\\.|[^\\\]])*)\]\s*)?"
    r"(?:\((?P<parenthetical>(?:\\.|[^\\)])*)\)\s*)?:(?P<line>.*)",
    re.DOTALL,
)
E = TypeVar("E", bound=Enum)
M = TypeVar("M", bound=BaseModel)


@dataclass
class Row:
    """One shot's raw values (CSV cells or YAML values) and where they came from."""

    source: str
    where: str  # 'row 4' in a CSV, 'shots[3]' in YAML
    values: dict[str, Any]
    yaml: bool = False

    def at(self, column: str | None = None) -> str:
        if column is None:
            return f"{self.source}: {self.where}"
        if self.yaml:
            return f"{self.source}: {self.where}.{column}"
        return f"{self.source}: {self.where}, column {column!r}"

    def text(self, column: str) -> str:
        return text_value(self.values.get(column), self.at(column))

    def items(self, column: str, separators: str) -> list[str]:
        """A text split on unescaped separators, or a YAML list's items.

        In dialogue and blocking, a YAML item that is a one-key mapping (`- MIRA: Hello`,
        `- bo: wave`) is read as 'key: value', which is what the unquoted YAML meant.
        """
        value = self.values.get(column)
        if not isinstance(value, list):
            return _split(self.text(column), separators)
        items = []
        for i, item in enumerate(value):
            at = f"{self.at(column)}[{i}]"
            if isinstance(item, dict) and len(item) == 1 and column != "characters":
                item = ": ".join(text_value(part, at) for part in next(iter(item.items())))
            items.append(text_value(item, at))
        return [item for item in items if item]


class Cast:
    """Finds characters by id, name or alias; `resolve` makes a character of a new name."""

    def __init__(self, declared: list[Character]) -> None:
        self.characters = list(declared)
        self._declared = {c.id for c in declared}
        self._taken = set(self._declared)
        self._names: dict[str, str] = {}  # `_key(name or alias)` -> id; names win over aliases
        for c in declared:
            self._names.setdefault(_key(c.name), c.id)
        for c in declared:
            for alias in c.aliases:
                self._names.setdefault(_key(alias), c.id)

    def find(self, ref: str) -> str | None:
        """A declared id, else a name or alias (any case), else a declared id in any case."""
        if ref in self._declared:
            return ref
        if (cid := self._names.get(_key(ref))) is not None:
            return cid
        return ref.lower() if ref.lower() in self._declared else None

    def resolve(self, ref: str, at: str) -> str:
        if (cid := self.find(ref)) is not None:
            return cid
        cid = unique_slug(ref, self._taken, "character")
        self.characters.append(validated(Character, at, id=cid, name=ref))
        self._names[_key(ref)] = cid
        return cid


def build_screenplay(
    source: str, meta: dict[str, str], declared: list[Character], rows: list[Row]
) -> Screenplay:
    # 1. consecutive rows with the same scene value (in any case) form a scene
    groups: list[tuple[str, list[Row]]] = []
    started: dict[str, Row] = {}
    for row in rows:
        if not (name := row.text("scene")):
            raise ScreenplayError(f"{row.at('scene')}: empty; every shot needs a scene")
        if groups and groups[-1][0].casefold() == name.casefold():
            groups[-1][1].append(row)
        elif first := started.get(name.casefold()):
            raise ScreenplayError(
                f"{row.at('scene')}: scene {short(name)!r} already ended (it began at "
                f"{first.where}); keep a scene's rows together"
            )
        else:
            started[name.casefold()] = row
            groups.append((name, [row]))
    # 2. scenes of shots; `labels` maps schema paths to rows for the cross-field errors
    cast, scenes, scene_ids, shot_rows, labels = Cast(declared), [], set(), {}, {}
    for i, (name, group) in enumerate(groups):
        is_id = re.fullmatch(ID_PATTERN, name) and name not in scene_ids
        scene_id = name if is_id else unique_slug(name, scene_ids, "scene")
        scene_ids.add(scene_id)
        shots = []
        for j, row in enumerate(group):
            shots.append(shot := _shot(row, f"s{i + 1:02d}-{j + 1:02d}", cast))
            if first := shot_rows.get(shot.id):
                raise ScreenplayError(f"{row.at('shot')}: {shot.id!r} is also the id at {first}")
            shot_rows[shot.id] = labels[f"scenes[{i}].shots[{j}]"] = row.where
        fields = _scene_fields(group)
        scenes.append(validated(Scene, group[0].at(), id=scene_id, shots=shots, **fields))
    # 3. the screenplay, whose checks (blocking on screen, ...) name the row
    title = meta.get("title") or Path(source).stem.strip()[:200] or "Untitled"
    extra = {key: meta[key] for key in ("logline", "style") if meta.get(key)}
    try:
        return Screenplay(title=title, **extra, characters=cast.characters, scenes=scenes)
    except ValidationError as exc:
        # 'scenes[0].shots[2].blocking[0]...' -> 'row 4: blocking[0]...'
        path = re.compile(r"(scenes\[\d+\]\.shots\[\d+\])\.?")
        problems = path.sub(lambda m: f"{labels[m[1]]}: ", "; ".join(describe_errors(exc)))
        raise ScreenplayError(f"{source}: {problems}") from None


def _scene_fields(group: list[Row]) -> dict[str, Any]:
    """Location, time, setting and summary: from the first row that gives each."""
    fields: dict[str, Any] = {}
    given_at: dict[str, Row] = {}
    for row in group:
        for column, enum in _SCENE_FIELDS:
            if not (raw := row.text(column)):
                continue
            value = _choice(enum, raw, row.at(column)) if enum else raw
            if column not in fields:
                fields[column], given_at[column] = value, row
            elif fields[column] != value:
                first = fields[column].value if enum else fields[column]
                first = f"{short(first)!r} at {given_at[column].where}"
                raise ScreenplayError(f"{row.at(column)}: {short(raw)!r} conflicts with {first}")
    if "location" not in fields:
        raise ScreenplayError(f"{group[0].at('location')}: empty; a scene needs a location")
    return fields


def _shot(row: Row, default_id: str, cast: Cast) -> Shot:
    fields: dict[str, Any] = {"id": row.text("shot") or default_id}
    if not re.fullmatch(ID_PATTERN, fields["id"]):
        bad = short(fields["id"])
        raise ScreenplayError(f"{row.at('shot')}: {bad!r} is not a safe id (a-z, 0-9, '-', '_')")
    if raw := row.text("duration"):
        fields["duration"] = _duration(raw, row.at("duration"))
    for column, enum in [("size", ShotSize), ("camera", CameraMove), ("transition", Transition)]:
        if raw := row.text(column):
            fields[column] = _choice(enum, raw, row.at(column))
    for column in ("action", "keyframe_prompt", "motion_prompt"):
        fields[column] = row.text(column)
    at = row.at("characters")
    fields["characters"] = [cast.resolve(_unescape(r), at) for r in row.items("characters", ";,")]
    at = row.at("dialogue")
    fields["dialogue"] = [_dialogue(e, at, cast) for e in row.items("dialogue", "|")]
    at = row.at("blocking")
    fields["blocking"] = [_blocking(e, at, cast) for e in row.items("blocking", ";,")]
    return validated(Shot, row.at(), **fields)


def _dialogue(entry: str, at: str, cast: Cast) -> DialogueLine:
    """'MIRA [V.O.] (whispering): Hello' -> a DialogueLine."""
    match = _CUE.fullmatch(entry)
    if match is None or not match["line"].strip():
        raise ScreenplayError(f"{at}: {short(entry)!r} is not 'NAME (parenthetical): line'")
    speaker = cast.resolve(_unescape(match["who"].strip()), at)
    parts = {k: _unescape((match[k] or "").strip()) for k in ("line", "parenthetical", "extension")}
    return validated(DialogueLine, at, speaker=speaker, **parts)


def _blocking(entry: str, at: str, cast: Cast) -> Blocking:
    """'bo:approach>mira' -> a Blocking; 'bo' alone is idle."""
    left, arrow, target = entry.partition(">")
    who, _, action = left.partition(":")
    who, action, target = (_unescape(part.strip()) for part in (who, action, target))
    if not who or (arrow and not target):
        raise ScreenplayError(f"{at}: {short(entry)!r} is not 'name:action>target'")
    return Blocking(
        character=cast.resolve(who, at),
        action=_choice(Action, action, at) if action else Action.idle,
        target=cast.resolve(target, at) if target else None,
    )


# -- values -------------------------------------------------------------------------------


def text_value(value: Any, at: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ScreenplayError(f"{at}: expected text, got {type(value).__name__}: {short(repr(value))}")


def _choice(enum: type[E], raw: str, at: str) -> E:
    """An enum member from its value or a common spelling ('CU', 'close up')."""
    names = {_norm(m.value): m.value for m in enum} | ALIASES.get(enum, {})
    if (value := names.get(_norm(raw))) is not None:
        return enum(value)
    raise ScreenplayError(f"{at}: {short(raw)!r} is not one of {', '.join(m.value for m in enum)}")


def _duration(raw: str, at: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise ScreenplayError(f"{at}: {short(raw)!r} is not a number") from None
    if not MIN_SHOT_SECONDS <= seconds <= MAX_SHOT_SECONDS:
        limits = f"{MIN_SHOT_SECONDS:g} to {MAX_SHOT_SECONDS:g}"
        raise ScreenplayError(f"{at}: {short(raw)} seconds is outside {limits} seconds")
    return seconds


def validated(cls: type[M], at: str, **fields: Any) -> M:
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise ScreenplayError(f"{at}: " + "; ".join(describe_errors(exc))) from None


def _split(text: str, separators: str) -> list[str]:
    """Split on unescaped separators; trim the parts and drop empty ones (escapes kept)."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] in separators:
            parts.append(text[start:i])
            start = i + 1
        i += 2 if text[i] == "\\" else 1
    return [part.strip() for part in [*parts, text[start:]] if part.strip()]


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def _norm(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", text.casefold().replace(".", "")).strip()


def _key(name: str) -> str:
    return " ".join(name.casefold().split())


def short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
