"""The run directory: everything of one movie, in one folder.

    RUN_DIR/
      run.json              format version, reelsmith version, the inputs and options
      source.<ext>          the screenplay given with --from, as given (imports read it)
      screenplay.json       the screenplay made from (edit it, then `reelsmith resume`)
      checkpoints.sqlite    the graph's checkpoints (LangGraph SqliteSaver)
      series/               the run's own series bible, when no --series is given
      characters/<id>.png   each character's reference portrait
      characters/<id>.safetensors   its identity embedding
      cast.json             each character's looks as cast (what `reelsmith eval run` reads)
      cache/keyframes/      keyframes by content key (PNG, planner tokens as .npy)
      cache/shots/          shot frames by content key (.npy, lossless)
      index/<shot>.json     each shot's current keys (`agent.cache`)
      keyframes/<shot>.png  shots/<shot>.mp4  movie.mp4  subtitles.vtt  storyboard.png/.html
      run.log               what happened, when

A run directory is created whole (in a temporary folder, then renamed into place), every file
in it is written atomically, and one process at a time works in it (an advisory lock on
`.lock`, released by the system however the process ends). `run.json` carries a format
version: a run directory of another format is refused, never changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load, save

from reelsmith import __version__
from reelsmith.agent.config import RunConfig, RunInputs, RunOptions, check_renderable
from reelsmith.atomic import write_bytes_atomic, write_text_atomic
from reelsmith.errors import InputError
from reelsmith.memory.names import check_series_name
from reelsmith.planner.io import load_screenplay
from reelsmith.renderer.assembly.movie import write_png
from reelsmith.schema.cast import CastEntry
from reelsmith.settings import Settings

RUN_FORMAT = 1
RUN_FILE = "run.json"
LOCK_FILE = ".lock"


def screenplay_digest(screenplay) -> str:
    """sha256 of the screenplay's canonical JSON: a change of layout only is no edit."""
    return hashlib.sha256(screenplay.to_json(indent=None).encode()).hexdigest()


class RunDir:
    """One run directory (see the module docstring). Use `create` or `open`."""

    def __init__(self, path: Path, record: dict) -> None:
        self.path = path
        self.record = record
        self.config = RunConfig.from_record(record)

    @property
    def inputs(self) -> RunInputs:
        return self.config.inputs

    @property
    def options(self) -> RunOptions:
        return self.config.options

    @options.setter
    def options(self, options: RunOptions) -> None:
        """Change how the run goes on (e.g. `resume --concurrency`), in memory only."""
        self.config = dataclasses.replace(self.config, options=options)

    # -- creating and opening ------------------------------------------------------------

    @staticmethod
    def is_vacant(path: Path) -> bool:
        """True where a new run directory may go: nothing there, or an empty folder."""
        if not path.exists():
            return True
        if not path.is_dir():
            raise InputError(f"{path}: exists and is not a folder; choose another -o")
        return not any(path.iterdir())

    @classmethod
    def create(
        cls, path: Path, config: RunConfig, source: tuple[str, bytes] | None = None
    ) -> RunDir:
        """Make a run directory at `path` (missing or an empty folder), all at once.

        Args:
            path: Where.
            config: What `run.json` records.
            source: (suffix, bytes) of an imported screenplay, kept as `source<suffix>`.
        """
        path = path.absolute()
        record = {
            "format": RUN_FORMAT,
            "reelsmith": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "thread": "pass-1",
            **config.to_record(),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        except OSError as exc:
            raise InputError(f"{path}: cannot create ({exc.strerror or exc})") from None
        try:
            umask = os.umask(0o022)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)
            if source is not None:
                (staging / f"source{source[0]}").write_bytes(source[1])
            write_text_atomic(staging / RUN_FILE, json.dumps(record, indent=1) + "\n")
            os.rename(staging, path)  # atomic; replaces an empty folder
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise InputError(f"{path}: cannot create ({exc.strerror or exc})") from None
        return cls(path, record)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """The run directory at `path`; `InputError` if it is none, or of another format."""
        path = path.absolute()
        if not path.is_dir():
            raise InputError(f"{path}: no such run directory")
        file = path / RUN_FILE
        if not file.is_file():
            raise InputError(f"{path}: not a reelsmith run directory (no {RUN_FILE})")
        try:
            record = json.loads(file.read_text("utf-8"))
            made_by = record.get("reelsmith", "?")
            run_format = record["format"]
        except (OSError, ValueError, AttributeError, KeyError):
            raise InputError(f"{file}: not a reelsmith run file") from None
        if run_format != RUN_FORMAT:
            raise InputError(
                f"{path}: made by reelsmith {made_by} (run format {run_format}); reelsmith "
                f"{__version__} reads run format {RUN_FORMAT} only: make the movie again in a "
                "new run directory"
            )
        try:
            return cls(path, record)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{file}: not a reelsmith run file (bad inputs or options)") from None

    def same_inputs(self, inputs: RunInputs) -> bool:
        return self.inputs == inputs

    # -- the graph's thread --------------------------------------------------------------

    @property
    def thread(self) -> str:
        """The checkpoint thread of the current pass (`pass-N`)."""
        return self.record["thread"]

    def next_thread(self) -> str:
        """Start the next pass (after an edit): a fresh thread, recorded in run.json."""
        number = int(self.thread.removeprefix("pass-")) + 1
        self.record = {**self.record, "thread": f"pass-{number}"}
        write_text_atomic(self.path / RUN_FILE, json.dumps(self.record, indent=1) + "\n")
        return self.thread

    # -- one process at a time -----------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock; `InputError` if another process holds it."""
        handle = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115  (held for the block)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                raise InputError(
                    f"{self.path}: another reelsmith (pid {holder}) is working on this run"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            self._clean_partial_writes()
            yield
        finally:
            handle.close()  # releases the lock

    def _clean_partial_writes(self) -> None:
        """Remove what a killed process was writing: atomic writes' temporary files
        (`.<name>.<random>.tmp`, and `.<name>.<random>.mp4` of the mp4 writer)."""
        for pattern in (".*.tmp", ".*.mp4"):
            for leftover in self.path.rglob(pattern):
                if leftover.is_file():
                    leftover.unlink(missing_ok=True)

    # -- files ---------------------------------------------------------------------------

    @property
    def screenplay_path(self) -> Path:
        return self.path / "screenplay.json"

    @property
    def movie_path(self) -> Path:
        return self.path / "movie.mp4"

    @property
    def checkpoints_path(self) -> Path:
        return self.path / "checkpoints.sqlite"

    def read_screenplay(self):
        """The screenplay in screenplay.json, checked: valid, and renderable (every place,
        size and look in the vocabulary the keyframer reads); `InputError` naming the field."""
        if not self.screenplay_path.is_file():
            raise InputError(f"{self.screenplay_path}: missing; the run has no screenplay")
        screenplay = load_screenplay(self.screenplay_path)
        check_renderable(screenplay, self.screenplay_path)
        return screenplay

    # -- the cast: characters/<id>.png, characters/<id>.safetensors, cast.json --------------

    def cast_looks(self) -> dict:
        """cast.json: each cast character's looks, by id ({} before casting)."""
        path = self.path / "cast.json"
        try:
            return json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise InputError(f"{path}: not readable JSON") from None

    def save_cast_looks(self, looks: dict) -> None:
        text = json.dumps(looks, indent=1, sort_keys=True) + "\n"
        write_text_atomic(self.path / "cast.json", text)

    def has_character(self, character_id: str, looks: dict) -> bool:
        folder = self.path / "characters"
        return (
            character_id in looks
            and (folder / f"{character_id}.png").is_file()
            and (folder / f"{character_id}.safetensors").is_file()
        )

    def save_character(self, character_id: str, portrait, embedding) -> None:
        """Keep a character's reference portrait (PNG) and identity embedding (safetensors)."""
        folder = self.path / "characters"
        tensor = embedding.detach().to("cpu", torch.float32).contiguous()
        write_bytes_atomic(folder / f"{character_id}.safetensors", save({"embedding": tensor}))
        write_png(portrait, folder / f"{character_id}.png")

    def load_cast(self, screenplay) -> dict:
        """The run's copy of its cast: character id -> `CastEntry` (embedding, looks, portrait)
        for every character of `screenplay`."""
        looks, folder, cast = self.cast_looks(), self.path / "characters", {}
        for character in screenplay.characters:
            if not self.has_character(character.id, looks):
                raise InputError(f"{self.path}: '{character.id}' is not cast; resume the run")
            with Image.open(folder / f"{character.id}.png") as image:
                portrait = np.asarray(image.convert("RGB"))
            embedding = load((folder / f"{character.id}.safetensors").read_bytes())["embedding"]
            cast[character.id] = CastEntry(embedding, looks[character.id], portrait)
        return cast

    def series_folder(self) -> tuple[Path, str]:
        """(folder, name) of the series bible: `--series NAME`'s, or the run's own."""
        if self.inputs.series is None:
            return self.path / "series", "run"
        name = check_series_name(self.inputs.series)
        return Settings.from_env().home / "series" / name, name

    def log(self, message: str) -> None:
        """Append a line to run.log."""
        with open(self.path / "run.log", "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
