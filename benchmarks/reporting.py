"""What the judged benchmarks share: the frame judge's threshold option, and what a benchmark
does last, print its report as JSON and, given a path, write it there."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reelsmith.atomic import write_text_atomic


def print_report(report: dict, path: Path | None = None) -> None:
    """Print `report` as indented JSON; with `path` (the script's --json), also write it."""
    text = json.dumps(report, indent=1)
    print(text)
    if path:
        write_text_atomic(path, text)


def add_judge_threshold(parser: argparse.ArgumentParser) -> None:
    """`--judge-threshold`: read the frames at another detection threshold than the judge's."""
    parser.add_argument(
        "--judge-threshold",
        type=float,
        help="the frame judge's detection threshold (its own, FrameJudge.threshold, by "
        "default; benchmarks/judge_threshold.py reads thresholds on the truth)",
    )


def apply_judge_threshold(frame_judge, threshold: float | None) -> None:
    """Set the frame judge's threshold where `--judge-threshold` was given."""
    if threshold is not None:
        frame_judge.threshold = threshold
