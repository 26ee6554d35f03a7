"""The series bible on disk: SQLite records and content-addressed blobs.

A series lives in one folder:

    <folder>/bible.sqlite        records (WAL, foreign keys on, a schema version)
    <folder>/blobs/ab/abcd….png  content-addressed blobs: PNG images, safetensors tensors

A blob's name is the sha256 of its bytes; it is written atomically before any row points at
it, and its checksum is verified whenever it is read. Every write is one transaction, and
SQLite's WAL with a busy timeout lets several processes (two episodes rendering) write one
series at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import load, save

from reelsmith.atomic import write_bytes_atomic
from reelsmith.errors import InputError
from reelsmith.memory.names import check_series_name, fold

SCHEMA_VERSION = 1
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE series (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
    CREATE TABLE episodes (
        id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL REFERENCES series(id),
        name TEXT NOT NULL, screenplay TEXT NOT NULL, created REAL NOT NULL);
    CREATE TABLE characters (
        id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL REFERENCES series(id),
        key TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
        identity TEXT, pinned INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
        UNIQUE (series_id, key));
    CREATE TABLE aliases (
        character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
        folded TEXT NOT NULL, alias TEXT NOT NULL, PRIMARY KEY (character_id, folded));
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('portrait', 'user', 'frame')),
        blob TEXT NOT NULL, episode_id INTEGER REFERENCES episodes(id), created REAL NOT NULL);
    CREATE TABLE embeddings (
        character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
        encoder TEXT NOT NULL, blob TEXT NOT NULL, PRIMARY KEY (character_id, encoder));
    CREATE TABLE locations (
        id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL REFERENCES series(id),
        key TEXT NOT NULL, description TEXT NOT NULL, blob TEXT, UNIQUE (series_id, key));
    """,
}


class SeriesStore:
    """One series bible folder. Open with `SeriesStore.open(folder, name)`."""

    def __init__(self, folder: Path, db: sqlite3.Connection, series_id: int, name: str) -> None:
        self.folder, self.db, self.series_id, self.name = folder, db, series_id, name

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: str | Path, name: str, create: bool = True) -> SeriesStore:
        check_series_name(name)
        folder = Path(folder)
        path = folder / "bible.sqlite"
        if not path.exists() and not create:
            raise InputError(f"{folder}: no series bible here")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            _migrate(db, path)
            with _transaction(db):
                row = db.execute("SELECT id, name FROM series").fetchone()
                if row is None:
                    cur = db.execute(
                        "INSERT INTO series (name, created) VALUES (?, ?)", (name, time.time())
                    )
                    row = (cur.lastrowid, name)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path}: not a usable series bible ({exc})") from None
        if row[1] != name:
            raise InputError(f"{folder} holds the series '{row[1]}', not '{name}'")
        return cls(folder, db, row[0], name)

    def transaction(self):
        """Group several writes into one transaction: `with store.transaction(): …`."""
        return _transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SeriesStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- blobs --------------------------------------------------------------------------

    def put_blob(self, data: bytes, suffix: str) -> str:
        """Store bytes; returns the blob's name ('<sha256>.<suffix>')."""
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest}.{suffix}"
        path = self.blob_path(name)
        if not path.exists():
            write_bytes_atomic(path, data)
        return name

    def get_blob(self, name: str) -> bytes:
        """A blob's bytes, verified against its name."""
        path = self.blob_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: blob missing from the series bible") from None
        if hashlib.sha256(data).hexdigest() != name.split(".")[0]:
            raise InputError(f"{path}: blob corrupted (checksum mismatch)")
        return data

    def blob_path(self, name: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}\.(png|safetensors)", name):
            raise InputError(f"bad blob name {name!r} in the series bible")
        return self.folder / "blobs" / name[:2] / name

    def put_image(self, image: np.ndarray | Image.Image) -> str:
        picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="PNG")
        return self.put_blob(buffer.getvalue(), "png")

    def get_image(self, name: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(self.get_blob(name))).convert("RGB"))

    def put_tensor(self, tensor: torch.Tensor) -> str:
        return self.put_blob(save({"tensor": tensor.detach().cpu().contiguous()}), "safetensors")

    def get_tensor(self, name: str) -> torch.Tensor:
        return load(self.get_blob(name))["tensor"]

    # -- records ------------------------------------------------------------------------

    def add_episode(self, name: str, screenplay_json: str) -> int:
        with _transaction(self.db):
            cur = self.db.execute(
                "INSERT INTO episodes (series_id, name, screenplay, created) VALUES (?,?,?,?)",
                (self.series_id, name, screenplay_json, time.time()),
            )
            return cur.lastrowid

    def find_character(
        self, key: str, names: list[str], exclude: frozenset[int] | set[int] = frozenset()
    ) -> int | None:
        """A stored character matching the id `key`, or any of `names` (name or alias),
        other than those in `exclude`."""
        row = self.db.execute(
            "SELECT id FROM characters WHERE series_id=? AND key=?", (self.series_id, key)
        ).fetchone()
        if row and row[0] not in exclude:
            return row[0]
        for name in names:  # a character's own name is one of its aliases
            for (cid,) in self.db.execute(
                "SELECT c.id FROM characters c JOIN aliases a ON a.character_id = c.id "
                "WHERE c.series_id=? AND a.folded=? ORDER BY c.id",
                (self.series_id, fold(name)),
            ):
                if cid not in exclude:
                    return cid
        return None

    def add_character(
        self,
        key: str,
        name: str,
        description: str,
        aliases: list[str],
        identity: dict | None,
        portrait_blob: str | None,
        embeddings: dict[str, str],
        pinned: bool = False,
    ) -> int:
        """Insert a character with its portrait and embeddings in one transaction."""
        now = time.time()
        with _transaction(self.db):
            cur = self.db.execute(
                "INSERT INTO characters (series_id, key, name, description, identity, pinned, "
                "created) VALUES (?,?,?,?,?,?,?)",
                (
                    self.series_id,
                    key,
                    name,
                    description,
                    json.dumps(identity) if identity else None,
                    int(pinned),
                    now,
                ),
            )
            cid = cur.lastrowid
            for alias in dict.fromkeys([name, *aliases]):  # in order: the name first
                if fold(alias):
                    self.db.execute(
                        "INSERT OR IGNORE INTO aliases VALUES (?,?,?)", (cid, fold(alias), alias)
                    )
            if portrait_blob:
                self.db.execute(
                    "INSERT INTO images (character_id, kind, blob, created) VALUES (?,?,?,?)",
                    (cid, "user" if pinned else "portrait", portrait_blob, now),
                )
            for encoder, blob in embeddings.items():
                self.db.execute("INSERT INTO embeddings VALUES (?,?,?)", (cid, encoder, blob))
        return cid

    def add_alias(self, cid: int, alias: str) -> None:
        if not fold(alias):
            return
        with _transaction(self.db):
            self.db.execute(
                "INSERT OR IGNORE INTO aliases VALUES (?,?,?)", (cid, fold(alias), alias)
            )

    def add_frame(self, cid: int, image_blob: str, episode_id: int | None) -> None:
        with _transaction(self.db):
            self.db.execute(
                "INSERT INTO images (character_id, kind, blob, episode_id, created) "
                "VALUES (?,?,?,?,?)",
                (cid, "frame", image_blob, episode_id, time.time()),
            )

    def character(self, cid: int) -> dict:
        """A stored character with its references and embeddings (blob names)."""
        row = self.db.execute(
            "SELECT key, name, description, identity, pinned FROM characters WHERE id=?", (cid,)
        ).fetchone()
        if row is None:
            raise KeyError(cid)
        return {
            "id": cid,
            "key": row[0],
            "name": row[1],
            "description": row[2],
            "identity": json.loads(row[3]) if row[3] else None,
            "pinned": bool(row[4]),
            "aliases": sorted(
                a
                for (a,) in self.db.execute(
                    "SELECT alias FROM aliases WHERE character_id=?", (cid,)
                )
            ),
            "images": [
                {"kind": k, "blob": b}
                for k, b in self.db.execute(
                    "SELECT kind, blob FROM images WHERE character_id=? ORDER BY id", (cid,)
                )
            ],
            "embeddings": dict(
                self.db.execute("SELECT encoder, blob FROM embeddings WHERE character_id=?", (cid,))
            ),
        }

    def characters(self) -> list[dict]:
        return [
            self.character(cid)
            for (cid,) in self.db.execute(
                "SELECT id FROM characters WHERE series_id=? ORDER BY id", (self.series_id,)
            )
        ]

    def episodes(self) -> list[dict]:
        return [
            {"id": i, "name": n, "created": c}
            for i, n, c in self.db.execute(
                "SELECT id, name, created FROM episodes WHERE series_id=? ORDER BY id",
                (self.series_id,),
            )
        ]

    def forget(self, key_or_name: str) -> None:
        """Remove a character (its rows; blobs stay, they may be shared)."""
        cid = self.find_character(key_or_name, [key_or_name])
        if cid is None:
            raise InputError(f"series '{self.name}' has no character '{key_or_name}'")
        with _transaction(self.db):
            self.db.execute("DELETE FROM characters WHERE id=?", (cid,))

    def set_location(self, key: str, description: str, blob: str | None) -> None:
        with _transaction(self.db):
            self.db.execute(
                "INSERT INTO locations (series_id, key, description, blob) VALUES (?,?,?,?) "
                "ON CONFLICT (series_id, key) DO UPDATE SET blob=COALESCE(excluded.blob, blob)",
                (self.series_id, key, description, blob),
            )

    def location(self, key: str) -> dict | None:
        row = self.db.execute(
            "SELECT description, blob FROM locations WHERE series_id=? AND key=?",
            (self.series_id, key),
        ).fetchone()
        return None if row is None else {"key": key, "description": row[0], "blob": row[1]}

    def integrity(self) -> list[str]:
        """Problems found: SQLite's integrity check, and rows whose blob is missing or bad."""
        problems = [r for (r,) in self.db.execute("PRAGMA integrity_check") if r != "ok"]
        blobs = [
            b
            for (b,) in self.db.execute(
                "SELECT blob FROM images UNION SELECT blob FROM embeddings "
                "UNION SELECT blob FROM locations WHERE blob IS NOT NULL"
            )
        ]
        for blob in blobs:
            try:
                self.get_blob(blob)
            except InputError as exc:
                problems.append(str(exc))
        return problems


def load_image_file(path: str | Path) -> np.ndarray:
    """A user's reference image; a clear error if it is not an image."""
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise InputError(f"{path}: not an image") from None


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction; inside another, it joins that one."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    with _transaction(db):
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise InputError(
                f"{path}: schema version {version} is newer than this reelsmith "
                f"({SCHEMA_VERSION}); upgrade reelsmith"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    db.execute(statement)
        if row is None:
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        else:
            db.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION,))
