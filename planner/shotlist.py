"""Shot lists: a movie as a flat table of shots, read from and written to CSV and YAML.

A shot list is what a production keeps in a spreadsheet: one row per shot, the scene named
on every row; consecutive rows with the same scene form one scene. Characters are written by
name (or id) and every new name becomes a character. A CSV may start with ``#`` rows giving
the title, logline, style and cast; a YAML shot list gives them as top-level keys. Columns
and encodings are documented in ``docs/shotlists.md``.

Every problem raises `InputError` (not a readable shot list) or `ScreenplayError` (a bad
value) with one line naming the source, the row and the column, e.g.
``shots.csv: row 4, column 'duration': 'abc' is not a number``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from reelsmith.errors import InputError, ScreenplayError
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

__all__ = ["COLUMNS", "dump_csv", "dump_yaml", "parse_csv", "parse_yaml", "parse_yaml_shotlist"]

# fmt: off
COLUMNS = (
    "scene", "location", "time", "setting", "summary", "shot", "duration", "size", "camera",
    "characters", "action", "dialogue", "blocking", "keyframe_prompt", "motion_prompt",
    "transition",
)
REQUIRED_COLUMNS = ("scene", "action")
META_KEYS = ("title", "logline", "style")
# Spreadsheet names of columns, after `_columns` normalised them.
COLUMN_ALIASES = {
    "shot_size": "size", "camera_move": "camera", "time_of_day": "time", "cast": "characters",
    "int/ext": "setting", "shot_id": "shot", "scene_summary": "summary", "seconds": "duration",
}
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
_JOIN = {"characters": "; ", "dialogue": " | ", "blocking": "; "}
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


# -- reading ------------------------------------------------------------------------------


def parse_csv(text: str | bytes, source: str = "shots.csv") -> Screenplay:
    """Read a CSV shot list.

    Args:
        text: The file's contents (str, or UTF-8 bytes); a leading BOM is accepted.
        source: The file name used in error messages; its stem is the default title.

    Raises:
        InputError: Not a CSV shot list (empty, binary, bad header, ragged rows).
        ScreenplayError: A value is invalid; the message names the row and the column.
    """
    # 1. the non-blank records, numbered as a spreadsheet numbers its rows
    reader = csv.reader(io.StringIO(_decode(text, source), newline=""), strict=True)
    try:
        records = [(n, cells) for n, cells in enumerate(reader, 1) if "".join(cells).strip()]
    except csv.Error as exc:
        raise InputError(f"{source}: line {reader.line_num}: not valid CSV ({exc})") from None
    # 2. the preamble: '#' rows above the header
    meta: dict[str, str] = {}
    cast: list[tuple[str, dict[str, Any]]] = []
    while records and records[0][1][0].strip().startswith("#"):
        n, cells = records.pop(0)
        _read_preamble(cells, f"{source}: row {n}", meta, cast)
    if not records:
        raise InputError(f"{source}: no header row (columns: {', '.join(COLUMNS)})")
    # 3. the header, then one shot per row
    n, header = records.pop(0)
    columns = _columns(header, COLUMNS, "column", f"{source}: row {n}")
    for column in REQUIRED_COLUMNS:
        if column not in columns:
            found = ", ".join(c for c in columns if c)
            raise InputError(f"{source}: missing required column {column!r} (columns: {found})")
    if not records:
        raise InputError(f"{source}: a header but no shots")
    rows = []
    for n, cells in records:
        if len(cells) != len(columns):
            counts = f"{len(cells)} cells but the header has {len(columns)} columns"
            raise InputError(f"{source}: row {n} has {counts}")
        if any(cell.strip() and not c for c, cell in zip(columns, cells, strict=True)):
            raise InputError(f"{source}: row {n} has a value in a column without a name")
        values = {c: cell for c, cell in zip(columns, cells, strict=True) if c}
        rows.append(_Row(source, f"row {n}", values))
    return _build(source, meta, _declare(cast), rows)


def parse_yaml(text: str | bytes, source: str = "shots.yaml") -> Screenplay:
    """Read a YAML shot list from text (see `parse_yaml_shotlist`)."""
    try:
        data = yaml.safe_load(_decode(text, source))
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise InputError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None
    return parse_yaml_shotlist(data, source)


def parse_yaml_shotlist(data: Any, source: str = "shots.yaml") -> Screenplay:
    """Read an already parsed YAML shot list.

    Args:
        data: A mapping with optional `title`, `logline`, `style` and `characters` (names, or
            mappings of id/name/description/aliases/reference_image) and a required flat
            `shots` list whose items are mappings keyed by the CSV column names.
        source: The file name used in error messages; its stem is the default title.

    Raises:
        InputError: The data does not have the shape of a shot list.
        ScreenplayError: A value is invalid; the message names the item and the key.
    """
    if data is None:
        raise InputError(f"{source}: empty file")
    if not isinstance(data, dict):
        raise InputError(
            f"{source}: expected a mapping with a 'shots' list, got {type(data).__name__}"
        )
    if "scenes" in data:
        raise InputError(f"{source}: has 'scenes': a full screenplay, not a flat shot list")
    top = _mapping(data, (*META_KEYS, "characters", "shots"), "key", source)
    shots, cast = top.get("shots"), top.get("characters") or []
    if "shots" not in top:
        raise InputError(f"{source}: missing required key 'shots' (a list of shots)")
    if not isinstance(shots, list):
        raise InputError(f"{source}: 'shots' must be a list of shots, got {type(shots).__name__}")
    if not shots:
        raise InputError(f"{source}: 'shots' is empty")
    if not isinstance(cast, list):
        raise InputError(f"{source}: 'characters' must be a list, got {type(cast).__name__}")
    entries = []
    for i, item in enumerate(cast):
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict):
            raise InputError(f"{source}: characters[{i}] must be a name or a mapping")
        entries.append((f"{source}: characters[{i}]", {str(k): v for k, v in item.items()}))
    rows = []
    for i, item in enumerate(shots):
        if not isinstance(item, dict):
            raise InputError(f"{source}: shots[{i}] must be a mapping, got {type(item).__name__}")
        values = _mapping(item, COLUMNS, "column", f"{source}: shots[{i}]")
        rows.append(_Row(source, f"shots[{i}]", values, yaml=True))
    meta = {key: _text(top.get(key), f"{source}: {key}") for key in META_KEYS}
    return _build(source, meta, _declare(entries), rows)


# -- from rows to a screenplay ------------------------------------------------------------


@dataclass
class _Row:
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
        return _text(self.values.get(column), self.at(column))

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
                item = ": ".join(_text(part, at) for part in next(iter(item.items())))
            items.append(_text(item, at))
        return [item for item in items if item]


class _Cast:
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
        self.characters.append(_model(Character, at, id=cid, name=ref))
        self._names[_key(ref)] = cid
        return cid


def _build(
    source: str, meta: dict[str, str], declared: list[Character], rows: list[_Row]
) -> Screenplay:
    # 1. consecutive rows with the same scene value (in any case) form a scene
    groups: list[tuple[str, list[_Row]]] = []
    started: dict[str, _Row] = {}
    for row in rows:
        if not (name := row.text("scene")):
            raise ScreenplayError(f"{row.at('scene')}: empty; every shot needs a scene")
        if groups and groups[-1][0].casefold() == name.casefold():
            groups[-1][1].append(row)
        elif first := started.get(name.casefold()):
            raise ScreenplayError(
                f"{row.at('scene')}: scene {_short(name)!r} already ended (it began at "
                f"{first.where}); keep a scene's rows together"
            )
        else:
            started[name.casefold()] = row
            groups.append((name, [row]))
    # 2. scenes of shots; `labels` maps schema paths to rows for the cross-field errors
    cast, scenes, scene_ids, shot_rows, labels = _Cast(declared), [], set(), {}, {}
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
        scenes.append(_model(Scene, group[0].at(), id=scene_id, shots=shots, **fields))
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


def _scene_fields(group: list[_Row]) -> dict[str, Any]:
    """Location, time, setting and summary: from the first row that gives each."""
    fields: dict[str, Any] = {}
    given_at: dict[str, _Row] = {}
    for row in group:
        for column, enum in _SCENE_FIELDS:
            if not (raw := row.text(column)):
                continue
            value = _choice(enum, raw, row.at(column)) if enum else raw
            if column not in fields:
                fields[column], given_at[column] = value, row
            elif fields[column] != value:
                first = fields[column].value if enum else fields[column]
                first = f"{_short(first)!r} at {given_at[column].where}"
                raise ScreenplayError(f"{row.at(column)}: {_short(raw)!r} conflicts with {first}")
    if "location" not in fields:
        raise ScreenplayError(f"{group[0].at('location')}: empty; a scene needs a location")
    return fields


def _shot(row: _Row, default_id: str, cast: _Cast) -> Shot:
    fields: dict[str, Any] = {"id": row.text("shot") or default_id}
    if not re.fullmatch(ID_PATTERN, fields["id"]):
        bad = _short(fields["id"])
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
    return _model(Shot, row.at(), **fields)


def _dialogue(entry: str, at: str, cast: _Cast) -> DialogueLine:
    """'MIRA [V.O.] (whispering): Hello' -> a DialogueLine."""
    match = _CUE.fullmatch(entry)
    if match is None or not match["line"].strip():
        raise ScreenplayError(f"{at}: {_short(entry)!r} is not 'NAME (parenthetical): line'")
    speaker = cast.resolve(_unescape(match["who"].strip()), at)
    parts = {k: _unescape((match[k] or "").strip()) for k in ("line", "parenthetical", "extension")}
    return _model(DialogueLine, at, speaker=speaker, **parts)


def _blocking(entry: str, at: str, cast: _Cast) -> Blocking:
    """'bo:approach>mira' -> a Blocking; 'bo' alone is idle."""
    left, arrow, target = entry.partition(">")
    who, _, action = left.partition(":")
    who, action, target = (_unescape(part.strip()) for part in (who, action, target))
    if not who or (arrow and not target):
        raise ScreenplayError(f"{at}: {_short(entry)!r} is not 'name:action>target'")
    return Blocking(
        character=cast.resolve(who, at),
        action=_choice(Action, action, at) if action else Action.idle,
        target=cast.resolve(target, at) if target else None,
    )


# -- the CSV preamble, the declared cast, column names ------------------------------------


def _read_preamble(cells: list[str], at: str, meta: dict[str, str], cast: list[Any]) -> None:
    """One '#' row: '# title: ...', '# character: id,name,...' or else a comment."""
    key, _, first = cells[0].strip().lstrip("#").partition(":")
    key = key.strip().lower()
    if key in META_KEYS:
        if key in meta:
            raise InputError(f"{at}: '# {key}' is given twice")
        # an unquoted '# title: A, B' arrives as the cells 'A' and ' B': join them back
        parts = [first, *cells[1:]]
        while parts and not parts[-1].strip():
            parts.pop()
        meta[key] = ",".join(parts).strip()
    elif key == "character":
        values = [v.strip() for v in ([first] if first.strip() else []) + cells[1:]]
        cid, name, description, image, *aliases = values + [""] * 4
        fields = {"id": cid, "name": name or cid, "description": description}
        aliases = [alias for alias in aliases if alias]
        cast.append((at, fields | {"reference_image": image or None, "aliases": aliases}))


def _declare(entries: list[tuple[str, dict[str, Any]]]) -> list[Character]:
    """The declared cast; a character without an id gets one made from its name."""
    taken = {fields["id"] for _, fields in entries if isinstance(fields.get("id"), str)}
    characters = []
    for at, fields in entries:
        if not fields.get("id"):
            if not isinstance(name := fields.get("name"), str) or not name.strip():
                raise ScreenplayError(f"{at}: a character needs a name or an id")
            fields = {**fields, "id": unique_slug(name, taken, "character")}
        characters.append(_model(Character, at, **fields))
    return characters


def _columns(names: Any, known: tuple[str, ...], kind: str, at: str) -> list[str]:
    """Normalised column (or key) names; unknown or repeated names are errors."""
    columns = [re.sub(r"[\s-]+", "_", str(name).strip().lower()) for name in names]
    columns = [COLUMN_ALIASES.get(column, column) for column in columns]
    for name, column in zip(names, columns, strict=True):
        if column and column not in known:
            known_list = ", ".join(known)
            raise InputError(f"{at}: unknown {kind} {_short(str(name))!r} (known: {known_list})")
        if column and columns.count(column) > 1:
            raise InputError(f"{at}: {kind} {column!r} appears twice")
    return columns


def _mapping(data: dict[Any, Any], known: tuple[str, ...], kind: str, at: str) -> dict[str, Any]:
    return dict(zip(_columns(data, known, kind, at), data.values(), strict=True))


# -- writing ------------------------------------------------------------------------------


def dump_csv(screenplay: Screenplay) -> str:
    """Write a screenplay as a CSV shot list that `parse_csv` reads back equal.

    The title, logline, style and cast go in '#' rows above the header.
    """
    rows = [[f"# {key}: {value}"] for key in META_KEYS if (value := getattr(screenplay, key))]
    for c in screenplay.characters:
        cells = [f"# character: {c.id}", c.name, c.description, c.reference_image or ""]
        cells += c.aliases
        while not cells[-1]:
            cells.pop()
        rows.append(cells)
    rows.append(list(COLUMNS))
    rows += [[_cell(c, row.get(c, "")) for c in COLUMNS] for row in _table(screenplay)]
    out = io.StringIO()
    for cells in rows:
        # '\r\n' makes the writer quote cells holding a lone '\r'; rows then end in '\n'
        line = io.StringIO()
        csv.writer(line, lineterminator="\r\n").writerow(cells)
        out.write(line.getvalue()[:-2] + "\n")
    return out.getvalue()


def dump_yaml(screenplay: Screenplay) -> str:
    """Write a screenplay as a YAML shot list that `parse_yaml` reads back equal."""
    data: dict[str, Any] = {key: v for key in META_KEYS if (v := getattr(screenplay, key))}
    if screenplay.characters:
        data["characters"] = [
            {"id": c.id, "name": c.name} | c.model_dump(mode="json", exclude_defaults=True)
            for c in screenplay.characters
        ]
    data["shots"] = [
        {c: row[c] for c in COLUMNS if row.get(c) not in (None, "", [])}
        for row in _table(screenplay)
    ]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _table(screenplay: Screenplay) -> list[dict[str, Any]]:
    """The rows of a shot list; scene fields only on each scene's first row."""
    cast = _Cast(screenplay.characters)
    # by name where the name reads back as the same character, else by id
    ref = {
        c.id: c.name if _plain(c.name) and cast.find(c.name) == c.id else c.id
        for c in screenplay.characters
    }
    rows = []
    for scene in screenplay.scenes:
        for j, shot in enumerate(scene.shots):
            row: dict[str, Any] = {"scene": scene.id}
            if j == 0:
                setting = scene.setting.value if scene.setting else ""
                row |= {"location": scene.location, "time": scene.time.value}
                row |= {"setting": setting, "summary": scene.summary}
            row |= shot.model_dump(mode="json", exclude={"characters", "dialogue", "blocking"})
            row["shot"] = row.pop("id")
            row["characters"] = [ref[cid] for cid in shot.characters]
            row["dialogue"] = [_cue(line, ref) for line in shot.dialogue]
            row["blocking"] = [_beat(beat, ref) for beat in shot.blocking]
            rows.append(row)
    return rows


def _cue(line: DialogueLine, ref: dict[str, str]) -> str:
    ext = f" [{_escape(line.extension, ']|')}]" if line.extension else ""
    paren = f" ({_escape(line.parenthetical, ')|')})" if line.parenthetical else ""
    return f"{ref[line.speaker]}{ext}{paren}: {_escape(line.line, '|')}"


def _beat(beat: Blocking, ref: dict[str, str]) -> str:
    target = f">{ref[beat.target]}" if beat.target else ""
    return f"{ref[beat.character]}:{beat.action.value}{target}"


def _cell(column: str, value: Any) -> str:
    if column in _JOIN:
        return _JOIN[column].join(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# -- values -------------------------------------------------------------------------------


def _decode(text: str | bytes, source: str) -> str:
    if isinstance(text, bytes) and b"\x00" not in text:
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{source}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if isinstance(text, bytes) or re.search(r"[\x00-\x08\x0e-\x1f]", text):
        raise InputError(f"{source}: binary data (control characters), not a text shot list")
    if not (text := text.removeprefix("\ufeff")).strip():
        raise InputError(f"{source}: empty file")
    return text


def _text(value: Any, at: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ScreenplayError(f"{at}: expected text, got {type(value).__name__}: {_short(repr(value))}")


def _choice(enum: type[E], raw: str, at: str) -> E:
    """An enum member from its value or a common spelling ('CU', 'close up')."""
    names = {_norm(m.value): m.value for m in enum} | ALIASES.get(enum, {})
    if (value := names.get(_norm(raw))) is not None:
        return enum(value)
    raise ScreenplayError(f"{at}: {_short(raw)!r} is not one of {', '.join(m.value for m in enum)}")


def _duration(raw: str, at: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise ScreenplayError(f"{at}: {_short(raw)!r} is not a number") from None
    if not MIN_SHOT_SECONDS <= seconds <= MAX_SHOT_SECONDS:
        limits = f"{MIN_SHOT_SECONDS:g} to {MAX_SHOT_SECONDS:g}"
        raise ScreenplayError(f"{at}: {_short(raw)} seconds is outside {limits} seconds")
    return seconds


def _model(cls: type[M], at: str, **fields: Any) -> M:
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


def _escape(text: str, chars: str) -> str:
    return "".join("\\" + ch if ch == "\\" or ch in chars else ch for ch in text)


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def _plain(name: str) -> bool:
    """Whether a name can stand in a cell as it is."""
    return bool(name) and name == name.strip() and not any(ch in "\\|:[]()>;," for ch in name)


def _norm(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", text.casefold().replace(".", "")).strip()


def _key(name: str) -> str:
    return " ".join(name.casefold().split())


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
