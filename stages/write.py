"""The write stage: a movie's screenplay, imported from a file or written from a brief."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reelsmith.planner.brief import Brief
from reelsmith.planner.io import load_screenplay
from reelsmith.planner.writers.base import ScriptWriter
from reelsmith.schema.screenplay import Screenplay


@dataclass(frozen=True)
class ScreenplaySource:
    """Where a movie's screenplay comes from: a file to import, or else a brief for a writer.

    Attributes:
        path: A screenplay or shot list (Fountain, CSV, YAML, JSON) to import.
        brief: What a script writer is asked for, where there is no `path`.
    """

    path: Path | None = None
    brief: Brief | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.brief is None):
            raise ValueError("a screenplay source is a path or a brief, exactly one of them")


def write_screenplay(source: ScreenplaySource, writer: Callable[[], ScriptWriter]) -> Screenplay:
    """The screenplay of `source`: the file imported, or the brief written by `writer()` (made
    only when a brief needs it). LLM writers repair their own invalid answers against the
    schema, a bounded number of times.
    """
    if source.path is not None:
        return load_screenplay(source.path)
    return writer().write(source.brief)
