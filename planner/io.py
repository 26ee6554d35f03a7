"""Read and write screenplays in every supported format, chosen by file extension.

| extension            | format                                               |
| -------------------- | ---------------------------------------------------- |
| `.json`              | the Screenplay as JSON                               |
| `.yaml`, `.yml`      | the Screenplay as YAML, or a YAML shot list (a top-level `shots:` list) |
| `.fountain`, `.spmd` | Fountain, the plain-text screenplay format           |
| `.csv`               | a CSV shot list                                      |
"""

from __future__ import annotations

from pathlib import Path

import yaml

from reelsmith.errors import InputError, ScreenplayError
from reelsmith.planner import fountain, shotlist, shotlist_export
from reelsmith.schema.screenplay import Screenplay

READ_FORMATS = {
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".fountain": "fountain",
    ".spmd": "fountain",
    ".csv": "csv",
}
WRITE_FORMATS = ("json", "yaml", "fountain", "csv", "shotlist")
MAX_FILE_BYTES = 50 * 1024 * 1024


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; a clear `InputError` if it can't be read as text."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if b"\x00" in data:
        raise InputError(f"{path}: binary data, not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None


def load_screenplay(path: str | Path) -> Screenplay:
    """Read a screenplay from a file, choosing the format by its extension."""
    path = Path(path)
    kind = READ_FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(READ_FORMATS)
        shown = path.suffix or "(none)"
        raise InputError(f"{path}: unknown extension {shown}; use one of {known}")
    text = read_text(path)
    source = str(path)
    if kind == "json":
        return Screenplay.from_json(text, source)
    if kind == "fountain":
        return fountain.parse(text, source)
    if kind == "csv":
        return shotlist.parse_csv(text, source)
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        reason = " ".join(str(exc).split())
        raise ScreenplayError(f"{source}: not valid YAML ({reason})") from None
    if isinstance(data, dict) and "scenes" in data:
        return Screenplay.from_data(data, source)
    if isinstance(data, dict) and "shots" in data:
        return shotlist.parse_yaml_shotlist(data, source)
    raise ScreenplayError(
        f"{source}: a YAML screenplay needs a top-level 'scenes' list, "
        "or a shot list a top-level 'shots' list"
    )


def dumps(screenplay: Screenplay, fmt: str) -> str:
    """The screenplay as text in `fmt` (one of `WRITE_FORMATS`)."""
    if fmt == "json":
        return screenplay.to_json()
    if fmt == "yaml":
        return screenplay.to_yaml()
    if fmt == "fountain":
        return fountain.dumps(screenplay)
    if fmt == "csv":
        return shotlist_export.dump_csv(screenplay)
    if fmt == "shotlist":
        return shotlist_export.dump_yaml(screenplay)
    raise InputError(f"unknown format '{fmt}'; use one of {', '.join(WRITE_FORMATS)}")


def format_for(path: str | Path) -> str:
    """The output format a file name implies: 'movie.fountain' -> 'fountain'."""
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".fountain", ".csv"):
        return READ_FORMATS[suffix]
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".spmd":
        return "fountain"
    raise InputError(
        f"{path}: cannot tell the format from the extension {suffix or '(none)'}; "
        "pass --format json|yaml|fountain|csv|shotlist"
    )
