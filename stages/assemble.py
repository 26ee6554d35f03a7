"""The assemble stage: the movie, its shots, subtitles and storyboard in the run directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from reelsmith.renderer.assembly.movie import AssemblyResult, ShotMedia, assemble
from reelsmith.schema.screenplay import Screenplay

MOVIE_SIDE = 256  # movie.mp4 is enlarged (nearest neighbour) to about this many pixels
STEPS = ("keyframes", "shots", "movie", "subtitles", "storyboard")
Progress = Callable[[float, int], None]  # (steps done, of len(STEPS))


def assemble_movie(
    run_path: Path,
    screenplay: Screenplay,
    media: Mapping[str, ShotMedia],
    fps: int,
    progress: Progress | None = None,
) -> AssemblyResult:
    """Write movie.mp4, shots/*.mp4, keyframes/*.png, subtitles.vtt and the storyboard.

    Args:
        run_path: The run directory.
        screenplay: The movie; its shots give the order, transitions and dialogue.
        media: Every shot id -> its frames and keyframe.
        fps: Frames per second of every shot.
        progress: Called with (steps done, fractional; len(STEPS)) as assembly goes.
    """
    side = max(next(iter(media.values())).frames.shape[1:3])
    report = progress or (lambda done, total: None)
    return assemble(
        run_path,
        screenplay,
        media,
        fps=fps,
        upscale=max(1, min(16, MOVIE_SIDE // side)),
        callback=lambda step, done, total: report(STEPS.index(step) + done / total, len(STEPS)),
    )
