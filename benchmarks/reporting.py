"""What a benchmark does last: print its report as JSON and, given a path, write it there."""

from __future__ import annotations

import json
from pathlib import Path

from reelsmith.atomic import write_text_atomic


def print_report(report: dict, path: Path | None = None) -> None:
    """Print `report` as indented JSON; with `path` (the script's --json), also write it."""
    text = json.dumps(report, indent=1)
    print(text)
    if path:
        write_text_atomic(path, text)
