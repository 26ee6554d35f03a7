"""Shot lists: a movie as a flat table of shots, read from CSV and YAML (`shotlist_export`
writes them, `shotlist_rows` reads the values of the rows).

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
from typing import Any

import yaml

from reelsmith.errors import InputError, ScreenplayError
from reelsmith.planner.shotlist_rows import Row, build_screenplay, short, text_value, validated
from reelsmith.schema.screenplay import Character, Screenplay, unique_slug

__all__ = ["COLUMNS", "parse_csv", "parse_yaml", "parse_yaml_shotlist"]

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
# fmt: on


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
        rows.append(Row(source, f"row {n}", values))
    return build_screenplay(source, meta, _declare(cast), rows)


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
        rows.append(Row(source, f"shots[{i}]", values, yaml=True))
    meta = {key: text_value(top.get(key), f"{source}: {key}") for key in META_KEYS}
    return build_screenplay(source, meta, _declare(entries), rows)


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
        characters.append(validated(Character, at, **fields))
    return characters


def _columns(names: Any, known: tuple[str, ...], kind: str, at: str) -> list[str]:
    """Normalised column (or key) names; unknown or repeated names are errors."""
    columns = [re.sub(r"[\s-]+", "_", str(name).strip().lower()) for name in names]
    columns = [COLUMN_ALIASES.get(column, column) for column in columns]
    for name, column in zip(names, columns, strict=True):
        if column and column not in known:
            known_list = ", ".join(known)
            raise InputError(f"{at}: unknown {kind} {short(str(name))!r} (known: {known_list})")
        if column and columns.count(column) > 1:
            raise InputError(f"{at}: {kind} {column!r} appears twice")
    return columns


def _mapping(data: dict[Any, Any], known: tuple[str, ...], kind: str, at: str) -> dict[str, Any]:
    return dict(zip(_columns(data, known, kind, at), data.values(), strict=True))


# -- the text -------------------------------------------------------------------------------


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
