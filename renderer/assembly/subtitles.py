"""Subtitles: the dialogue as WebVTT cues on the movie's timeline, and a WebVTT checker.

Each dialogue line is a cue inside its shot's own stretch of the timeline, crossfades split at
their middle.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import numpy as np

from reelsmith.renderer.assembly.timeline import ShotSpan
from reelsmith.schema.screenplay import Screenplay, Shot


@dataclass(frozen=True)
class Cue:
    """One WebVTT cue; times in milliseconds on the movie's timeline."""

    identifier: str
    start: int
    end: int
    text: str  # WebVTT cue text: escaped, with a <v Speaker> span


def subtitle_cues(screenplay: Screenplay, timeline: list[ShotSpan], fps: int) -> list[Cue]:
    """The dialogue as cues, each line inside the part of its shot that is not crossfaded.

    A shot's lines share its time in proportion to their length (plus a constant, so short
    lines stay readable). A shot too short to give each line a millisecond gets one cue.
    """
    spans = {span.shot_id: span for span in timeline}
    cues: list[Cue] = []
    for _, shot in screenplay.shots():
        if not shot.dialogue:
            continue
        span = spans[shot.id]
        # milliseconds rounded down, so no cue outlasts the movie; `own` is in half frames
        start = (2 * span.start + span.overlap_in) * 500 // fps
        end = (2 * span.end - span.overlap_out) * 500 // fps
        texts = [_cue_text(screenplay, shot, k) for k in range(len(shot.dialogue))]
        if end - start < len(texts):
            cues.append(Cue(f"{shot.id}/1", start, end, "\n".join(texts)))
            continue
        # a millisecond each, the rest in proportion to the lines' lengths
        spare = end - start - len(texts)
        weights = np.cumsum([0] + [len(line.line) + 20 for line in shot.dialogue])
        bounds = [start + k + int(spare * w // weights[-1]) for k, w in enumerate(weights)]
        for k, text in enumerate(texts):
            cues.append(Cue(f"{shot.id}/{k + 1}", bounds[k], bounds[k + 1], text))
    return cues


def _cue_text(screenplay: Screenplay, shot: Shot, k: int) -> str:
    line = shot.dialogue[k]
    name = screenplay.character(line.speaker).name
    text = " ".join(line.line.split())
    if line.parenthetical:
        text = f"({' '.join(line.parenthetical.split())}) {text}"
    return f"<v {_escape(' '.join(name.split()))}>{_escape(text)}</v>"


def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # & < > only


def to_webvtt(cues: list[Cue]) -> str:
    """A WebVTT file of `cues`."""
    blocks = ["WEBVTT"]
    for cue in cues:
        blocks.append(
            f"{cue.identifier}\n{_timestamp(cue.start)} --> {_timestamp(cue.end)}\n{cue.text}"
        )
    return "\n\n".join(blocks) + "\n"


def _timestamp(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


_TIMING = re.compile(
    r"^(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3}) --> (?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
    r"(?: [^\n]*)?$"
)


def validate_webvtt(text: str, duration: float | None = None) -> list[tuple[float, float, str]]:
    """Check a WebVTT file: header, cue timing syntax, order and bounds; return its cues.

    Cues must start in order, not overlap, last a positive time and, with `duration`
    (seconds), end inside it; cue text must not hold a bare '&' or '<' outside tags, or '-->'.

    Returns:
        (start seconds, end seconds, cue text) for each cue.

    Raises:
        ValueError: naming the line number of the first problem.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    blocks = re.split(r"\n{2,}", text.replace("\r\n", "\n").replace("\r", "\n").strip("\n"))
    if not re.fullmatch(r"WEBVTT(?:[ \t][^\n]*)?(?:\n[^\n]*)*", blocks[0]) or "-->" in blocks[0]:
        raise ValueError("line 1: a WebVTT file starts with 'WEBVTT'")
    cues: list[tuple[float, float, str]] = []
    line_number = blocks[0].count("\n") + 3
    previous_end = 0.0
    for block in blocks[1:]:
        lines = block.split("\n")
        if lines[0].startswith(("NOTE", "STYLE", "REGION")) and "-->" not in lines[0]:
            line_number += len(lines) + 1
            continue
        if "-->" not in lines[0]:
            lines, line_number = lines[1:], line_number + 1  # the cue's identifier
        match = _TIMING.match(lines[0]) if lines else None
        if match is None:
            raise ValueError(f"line {line_number}: not a cue timing line: {lines[:1]}")
        g = [int(x) if x else 0 for x in match.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        payload = "\n".join(lines[1:])
        if end <= start:
            raise ValueError(f"line {line_number}: the cue ends at or before its start")
        if start < previous_end:
            raise ValueError(f"line {line_number}: the cue starts before the previous one ends")
        if duration is not None and end > duration + 1e-6:
            raise ValueError(f"line {line_number}: the cue ends after the movie ({duration:.3f} s)")
        bare = re.sub(r"</?[a-z][^<>\n]*>|&(?:amp|lt|gt|nbsp|lrm|rlm);", "", payload)
        if not payload or "-->" in payload or "<" in bare or "&" in bare:
            raise ValueError(f"line {line_number}: empty or unescaped cue text: {payload!r}")
        cues.append((start, end, payload))
        previous_end = end
        line_number += block.count("\n") + 2
    return cues
