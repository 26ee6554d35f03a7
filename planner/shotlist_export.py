"""Screenplay -> shot list: the writer behind `dump_csv` and `dump_yaml`.

Both write what `reelsmith.planner.shotlist` reads back equal: one row per shot, the scene
fields on each scene's first row, characters by name where the name reads back as the same
character (else by id), the dialogue and blocking mini-syntax escaped.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import yaml

from reelsmith.planner.shotlist import COLUMNS, META_KEYS
from reelsmith.planner.shotlist_rows import Cast
from reelsmith.schema.screenplay import Blocking, DialogueLine, Screenplay

_JOIN = {"characters": "; ", "dialogue": " | ", "blocking": "; "}


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
    cast = Cast(screenplay.characters)
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


def _escape(text: str, chars: str) -> str:
    return "".join("\\" + ch if ch == "\\" or ch in chars else ch for ch in text)


def _plain(name: str) -> bool:
    """Whether a name can stand in a cell as it is."""
    return bool(name) and name == name.strip() and not any(ch in "\\|:[]()>;," for ch in name)
