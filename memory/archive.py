"""A whole series bible as one file: a tar with a manifest, the records and the blobs.

`manifest.json` holds the format, the schema version, the series name, every table's rows and
every blob's sha256. Import checks all of it before writing anything, builds the series in a
temporary folder, and only then moves it into place; a different series of the same name is
never overwritten unless asked.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from reelsmith.atomic import write_bytes_atomic
from reelsmith.errors import InputError
from reelsmith.memory.names import check_series_name
from reelsmith.memory.store import SCHEMA_VERSION, SeriesStore

FORMAT = "reelsmith-series"
BLOB_NAME = re.compile(r"[0-9a-f]{64}\.(png|safetensors)")
# the columns an archive's rows may have (series_id is the importing series')
COLUMNS = {
    "episodes": {"id", "name", "screenplay", "created"},
    "characters": {"id", "key", "name", "description", "identity", "pinned", "created"},
    "aliases": {"character_id", "folded", "alias"},
    "images": {"id", "character_id", "kind", "blob", "episode_id", "created"},
    "embeddings": {"character_id", "encoder", "blob"},
    "locations": {"id", "key", "description", "blob"},
}
TABLES = ("episodes", "characters", "aliases", "images", "embeddings", "locations")


def export_series(store: SeriesStore, path: str | Path) -> Path:
    """Write the series to one archive file, atomically."""
    records = _records(store)
    blobs = sorted(
        {
            b
            for table in ("images", "embeddings", "locations")
            for row in records[table]
            for b in [row.get("blob")]
            if b
        }
    )
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "series": store.name,
        "records": records,
        "blobs": {name: hashlib.sha256(store.get_blob(name)).hexdigest() for name in blobs},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "manifest.json", json.dumps(manifest, sort_keys=True).encode())
        for name in blobs:
            _add(tar, f"blobs/{name}", store.get_blob(name))
    return write_bytes_atomic(path, buffer.getvalue())


def import_series(path: str | Path, home: str | Path, overwrite: bool = False) -> Path:
    """Read an archive into `home/<series name>`; returns the series folder."""
    manifest, blobs = _read(Path(path))
    name = manifest["series"]
    target = Path(home) / name
    if target.exists():
        same = False
        if (target / "bible.sqlite").is_file():
            with SeriesStore.open(target, name) as existing:
                same = _records(existing) == manifest["records"]
        if same:
            return target
        if not overwrite:
            raise InputError(
                f"{target} already exists and holds something else than this series; "
                "pass --overwrite to replace it"
            )
    Path(home).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=home))
    try:
        with SeriesStore.open(staging, name) as store:
            for blob, data in blobs.items():
                store.put_blob(data, blob.rsplit(".", 1)[1])
            _insert(store, manifest["records"])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = target.with_name(f".{name}.old")
    if target.exists():
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    try:
        staging.rename(target)
    except OSError:
        if backup.exists():
            backup.rename(target)  # put back what was there
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if backup.is_dir():
        shutil.rmtree(backup)
    elif backup.exists():
        backup.unlink()
    return target


def _records(store: SeriesStore) -> dict[str, list[dict]]:
    db, sid = store.db, store.series_id
    where = {
        "episodes": ("SELECT * FROM episodes WHERE series_id=? ORDER BY id", (sid,)),
        "characters": ("SELECT * FROM characters WHERE series_id=? ORDER BY id", (sid,)),
        "aliases": (
            "SELECT a.* FROM aliases a JOIN characters c ON c.id=a.character_id "
            "WHERE c.series_id=? ORDER BY a.character_id, a.folded",
            (sid,),
        ),
        "images": (
            "SELECT i.* FROM images i JOIN characters c ON c.id=i.character_id "
            "WHERE c.series_id=? ORDER BY i.id",
            (sid,),
        ),
        "embeddings": (
            "SELECT e.* FROM embeddings e JOIN characters c ON c.id=e.character_id "
            "WHERE c.series_id=? ORDER BY e.character_id, e.encoder",
            (sid,),
        ),
        "locations": ("SELECT * FROM locations WHERE series_id=? ORDER BY id", (sid,)),
    }
    out = {}
    for table, (sql, args) in where.items():
        cursor = db.execute(sql, args)
        columns = [d[0] for d in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor]
        for row in rows:
            row.pop("series_id", None)
        out[table] = rows
    return out


def _insert(store: SeriesStore, records: dict[str, list[dict]]) -> None:
    db = store.db
    db.execute("BEGIN IMMEDIATE")
    try:
        for table in TABLES:
            for row in records.get(table, []):
                if table in ("episodes", "characters", "locations"):
                    row = {**row, "series_id": store.series_id}
                columns = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))
    except (sqlite3.DatabaseError, TypeError) as exc:
        db.execute("ROLLBACK")
        raise InputError(f"the archive's records do not fit the series bible ({exc})") from None
    db.execute("COMMIT")


def _read(path: Path) -> tuple[dict, dict[str, bytes]]:
    try:
        with tarfile.open(path, mode="r") as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a series archive ({exc})") from None
    try:
        manifest = json.loads(files["manifest.json"])
        assert manifest["format"] == FORMAT
        version = int(manifest["schema_version"])
        records, sums = manifest["records"], manifest["blobs"]
        assert isinstance(records, dict) and isinstance(sums, dict)
    except (KeyError, ValueError, TypeError, AssertionError):
        raise InputError(f"{path}: not a series archive (no valid manifest)") from None
    if version != SCHEMA_VERSION:
        raise InputError(f"{path}: schema version {version}; this reelsmith reads {SCHEMA_VERSION}")
    if not isinstance(manifest.get("series"), str):
        raise InputError(f"{path}: not a series archive (no series name)")
    check_series_name(manifest["series"])
    _check_records(path, records, sums)
    blobs = {}
    for name, digest in sums.items():
        data = files.get(f"blobs/{name}")
        if data is None:
            raise InputError(f"{path}: blob {name} is missing from the archive")
        if hashlib.sha256(data).hexdigest() != digest or not name.startswith(digest):
            raise InputError(f"{path}: blob {name} fails its checksum")
        blobs[name] = data
    return manifest, blobs


def _check_records(path: Path, records: dict, sums: dict) -> None:
    """Every table a list of rows with known columns; every blob named, listed and hashed."""
    for name in sums:
        if not isinstance(name, str) or not BLOB_NAME.fullmatch(name):
            raise InputError(f"{path}: bad blob name {name!r} in the archive")
    for table, rows in records.items():
        if table not in COLUMNS or not isinstance(rows, list):
            raise InputError(f"{path}: unknown or malformed table '{table}' in the archive")
        for row in rows:
            if not isinstance(row, dict) or not set(row) <= COLUMNS[table]:
                raise InputError(f"{path}: malformed row in table '{table}'")
            blob = row.get("blob")
            if blob is not None and blob not in sums:
                raise InputError(f"{path}: a row of '{table}' points at a blob not in it")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))
