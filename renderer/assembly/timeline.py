"""The movie's timeline: where each shot sits, in movie frames, with its transitions.

A transition (`Shot.transition`, how a shot hands over to the next one) lasts
`transition_seconds`, shortened to half of the shorter of the two shots: a crossfade overlaps
the two shots, a fade darkens this shot's end and the next one's start (see
`renderer.assembly.movie` for how the movie shows them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reelsmith.schema.screenplay import Screenplay, Transition

TRANSITION_SECONDS = 0.5


@dataclass(frozen=True)
class ShotSpan:
    """Where one shot sits on the movie's timeline, in movie frames."""

    shot_id: str
    start: int  # the first movie frame showing this shot
    frames: int  # the shot's own frame count
    overlap_in: int = 0  # frames crossfaded with the previous shot
    overlap_out: int = 0  # frames crossfaded with the next shot
    fade_in: int = 0  # frames fading in from black
    fade_out: int = 0  # frames fading out to black

    @property
    def end(self) -> int:
        """One past the last movie frame showing this shot."""
        return self.start + self.frames

    @property
    def own(self) -> tuple[float, float]:
        """The frames where this shot is the main picture: crossfades split at their middle."""
        return self.start + self.overlap_in / 2, self.end - self.overlap_out / 2


def plan_timeline(
    screenplay: Screenplay,
    frame_counts: Mapping[str, int],
    fps: int,
    transition_seconds: float = TRANSITION_SECONDS,
) -> list[ShotSpan]:
    """Each shot's place on the movie's timeline, with its transitions in frames."""
    order = [shot for _, shot in screenplay.shots()]
    wanted = round(transition_seconds * fps)
    spans: list[ShotSpan] = []
    start = overlap_in = fade_in = 0
    for k, shot in enumerate(order):
        frames = frame_counts[shot.id]
        following = order[k + 1] if k + 1 < len(order) else None
        overlap_out = fade_out = 0
        if following is None:
            if shot.transition is Transition.fade:
                fade_out = min(wanted, frames // 2)
        else:
            # half of the shorter shot at most, so a shot's two transitions never meet
            length = min(wanted, frames // 2, frame_counts[following.id] // 2)
            if shot.transition is Transition.crossfade:
                overlap_out = length
            elif shot.transition is Transition.fade:
                fade_out = length
        spans.append(ShotSpan(shot.id, start, frames, overlap_in, overlap_out, fade_in, fade_out))
        start += frames - overlap_out
        overlap_in, fade_in = overlap_out, fade_out
    return spans
