"""Movie assembly: from rendered shots to the files people watch.

`assemble` writes into a run directory:

- `screenplay.json`: the screenplay assembled;
- `keyframes/<shot>.png`: each shot's keyframe, as given;
- `shots/<shot>.mp4`: each shot, H.264 at its native size (what `reelsmith eval` reads);
- `movie.mp4`: the shots in story order, transitions applied, enlarged `upscale` times by
  nearest neighbour (its `comment` tag gives the native size);
- `subtitles.vtt`: the dialogue as WebVTT cues on the movie's timeline
  (`renderer.assembly.subtitles`);
- `storyboard.png`, `storyboard.html`: the contact sheet and the self-contained page
  (`renderer.assembly.storyboard`).

Transitions (`Shot.transition`, how a shot hands over to the next one) last
`transition_seconds` (0.5 s by default), shortened to half of the shorter of the two shots
(`renderer.assembly.timeline` places them):

| transition  | in the movie                                                                 |
| ----------- | ---------------------------------------------------------------------------- |
| `cut`       | the next shot's first frame follows this shot's last one                     |
| `crossfade` | a dissolve: the shots overlap, blending linearly; the movie is that much shorter |
| `fade`      | this shot fades out to black, the next fades in from black; no overlap       |

The last shot has no next one: `fade` there fades the movie out to black, `crossfade` and
`cut` end it on the shot's last frame. The subtitles share the timeline: each dialogue line
is a cue inside its shot's own stretch, crossfades split at their middle.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reelsmith.atomic import write_bytes_atomic, write_text_atomic
from reelsmith.errors import InputError
from reelsmith.renderer.assembly.storyboard import contact_sheet, storyboard_html
from reelsmith.renderer.assembly.subtitles import subtitle_cues, to_webvtt
from reelsmith.renderer.assembly.timeline import TRANSITION_SECONDS, ShotSpan, plan_timeline
from reelsmith.renderer.assembly.video import Mp4Writer, write_mp4
from reelsmith.schema.screenplay import Screenplay


@dataclass(frozen=True)
class ShotMedia:
    """What the renderer made for one shot."""

    frames: np.ndarray  # (T, H, W, 3) uint8, T >= 1, H and W even
    keyframe: np.ndarray  # (h, w, 3) uint8, any size


@dataclass(frozen=True)
class AssemblyResult:
    run_dir: Path
    movie: Path
    subtitles: Path
    storyboard_png: Path
    storyboard_html: Path
    shots: dict[str, Path]  # shot id -> shots/<id>.mp4, story order
    keyframes: dict[str, Path]  # shot id -> keyframes/<id>.png
    timeline: list[ShotSpan]  # story order
    fps: int
    frame_count: int  # frames of movie.mp4
    size: tuple[int, int]  # native (height, width) of every shot
    upscale: int  # movie.mp4 is size * upscale

    @property
    def duration(self) -> float:
        """Seconds of movie.mp4: the shots' frames, less the crossfades' overlaps, over fps."""
        return self.frame_count / self.fps


ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


def assemble(
    run_dir: str | Path,
    screenplay: Screenplay,
    shots: Mapping[str, ShotMedia],
    fps: int,
    upscale: int = 4,
    crf: int = 18,
    transition_seconds: float = TRANSITION_SECONDS,
    callback: ProgressCallback | None = None,
) -> AssemblyResult:
    """Write a run's movie, shots, keyframes, subtitles and storyboard (see the module docstring).

    The movie lasts the sum of the shots' frame counts, less the frames each crossfade
    overlaps, over `fps`; the shots' frame counts, not `Shot.duration`, set the timing. The
    same inputs give the same bytes. Every input is checked before anything is written, and
    every file is written atomically, so bad input leaves the run directory as it was.

    Args:
        run_dir: The run directory; created if missing.
        screenplay: The movie's screenplay; its shots give the order, transitions and dialogue.
        shots: Every shot id of the screenplay (and no other) -> its frames and keyframe.
        fps: Frames per second of every shot.
        upscale: Integer nearest-neighbour enlargement of movie.mp4 and the storyboard videos'
            display; the shot files stay at their native size.
        crf: x264 quality of every mp4 (0 to 51, lower is better).
        transition_seconds: Length of a crossfade or of each half of a fade.
        callback: Called as `callback(stage, done, total)` with stage one of "keyframes",
            "shots", "movie", "subtitles", "storyboard".

    Raises:
        InputError: a shot's media is missing, extra, empty, or not uint8 RGB of one even size;
            or fps, upscale, crf or transition_seconds is out of range.
    """
    # 1. check inputs
    size = check_inputs(screenplay, shots, fps, upscale, crf, transition_seconds)
    run_dir = Path(run_dir)
    order = [shot.id for _, shot in screenplay.shots()]
    report = callback or (lambda stage, done, total: None)

    # 2. screenplay and keyframes; 3. each shot at its native size
    write_text_atomic(run_dir / "screenplay.json", screenplay.to_json())
    keyframes, shot_paths = _write_shot_files(run_dir, order, shots, fps, crf, report)

    # 4. the movie
    frame_counts = {i: len(m.frames) for i, m in shots.items()}
    timeline = plan_timeline(screenplay, frame_counts, fps, transition_seconds)
    movie_path = run_dir / "movie.mp4"
    _write_movie(movie_path, screenplay.title, shots, timeline, fps, size, upscale, crf, report)

    # 5. subtitles
    cues = subtitle_cues(screenplay, timeline, fps)
    subtitles_path = write_text_atomic(run_dir / "subtitles.vtt", to_webvtt(cues))
    report("subtitles", 1, 1)

    # 6. storyboard
    png_path, html_path = _write_storyboard(
        run_dir, screenplay, shots, keyframes, shot_paths, timeline, fps, size, upscale
    )
    report("storyboard", 1, 1)

    return AssemblyResult(
        run_dir=run_dir,
        movie=movie_path,
        subtitles=subtitles_path,
        storyboard_png=png_path,
        storyboard_html=html_path,
        shots=shot_paths,
        keyframes=keyframes,
        timeline=timeline,
        fps=fps,
        frame_count=timeline[-1].end,
        size=size,
        upscale=upscale,
    )


def _write_shot_files(
    run_dir: Path,
    order: list[str],
    shots: Mapping[str, ShotMedia],
    fps: int,
    crf: int,
    report: ProgressCallback,
) -> tuple[dict[str, Path], dict[str, Path]]:
    """keyframes/<shot>.png, then shots/<shot>.mp4 at the shot's native size, in story order
    -> (keyframe paths, shot paths) by shot id."""
    keyframes = {}
    for k, shot_id in enumerate(order):
        path = run_dir / "keyframes" / f"{shot_id}.png"
        keyframes[shot_id] = write_png(shots[shot_id].keyframe, path)
        report("keyframes", k + 1, len(order))
    shot_paths = {}
    for k, shot_id in enumerate(order):
        path = run_dir / "shots" / f"{shot_id}.mp4"
        shot_paths[shot_id] = write_mp4(path, shots[shot_id].frames, fps, crf=crf)
        report("shots", k + 1, len(order))
    return keyframes, shot_paths


def _write_movie(
    path: Path,
    title: str,
    shots: Mapping[str, ShotMedia],
    timeline: list[ShotSpan],
    fps: int,
    size: tuple[int, int],
    upscale: int,
    crf: int,
    report: ProgressCallback,
) -> None:
    """movie.mp4: the shots on the timeline, transitions applied, enlarged `upscale` times."""
    frame_count = timeline[-1].end
    metadata = {
        "title": title,
        "comment": f"reelsmith movie: {len(timeline)} shots at {fps} fps, native size "
        f"{size[1]}x{size[0]}, shown {upscale}x (nearest neighbour)",
    }
    with Mp4Writer(path, fps, size, upscale, crf, metadata) as writer:
        for k, frame in enumerate(movie_frames(timeline, shots)):
            writer.write(frame)
            if (k + 1) % fps == 0 or k + 1 == frame_count:
                report("movie", k + 1, frame_count)


def _write_storyboard(
    run_dir: Path,
    screenplay: Screenplay,
    shots: Mapping[str, ShotMedia],
    keyframes: dict[str, Path],
    shot_paths: dict[str, Path],
    timeline: list[ShotSpan],
    fps: int,
    size: tuple[int, int],
    upscale: int,
) -> tuple[Path, Path]:
    """storyboard.png, the contact sheet, and storyboard.html, the page holding the written
    keyframes and shot videos -> their paths."""
    order = list(keyframes)
    sheet = contact_sheet(screenplay, {i: shots[i].keyframe for i in order}, timeline, fps, size)
    png_path = write_png(sheet, run_dir / "storyboard.png")
    page = storyboard_html(
        screenplay,
        keyframes={i: keyframes[i].read_bytes() for i in order},
        videos={i: shot_paths[i].read_bytes() for i in order},
        timeline=timeline,
        fps=fps,
        size=size,
        upscale=upscale,
    )
    return png_path, write_text_atomic(run_dir / "storyboard.html", page)


def check_inputs(
    screenplay: Screenplay,
    shots: Mapping[str, ShotMedia],
    fps: int,
    upscale: int,
    crf: int,
    transition_seconds: float,
) -> tuple[int, int]:
    """Raise `InputError` naming the first bad value; return the shots' (height, width)."""
    for name, value, low, high in (
        ("fps", fps, 1, 240),
        ("upscale", upscale, 1, 16),
        ("crf", crf, 0, 51),
    ):
        if (
            not isinstance(value, (int, np.integer))
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise InputError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    if not 0 <= transition_seconds <= 10:
        raise InputError(f"transition_seconds must be 0 to 10, got {transition_seconds!r}")
    order = [shot.id for _, shot in screenplay.shots()]
    for shot_id in order:
        if shot_id not in shots:
            raise InputError(f"shot '{shot_id}': no frames given for this screenplay shot")
    known = set(order)
    for shot_id in shots:
        if shot_id not in known:
            raise InputError(f"shot '{shot_id}': frames given for a shot the screenplay lacks")
    size = None
    for shot_id in order:
        media = shots[shot_id]
        frames, keyframe = np.asarray(media.frames), np.asarray(media.keyframe)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(
                f"shot '{shot_id}': frames must be (T, H, W, 3) uint8, "
                f"got {frames.shape} {frames.dtype}"
            )
        if len(frames) == 0:
            raise InputError(f"shot '{shot_id}': no frames (frame count 0)")
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            raise InputError(
                f"shot '{shot_id}': H.264 needs an even frame size, got "
                f"{frames.shape[2]}x{frames.shape[1]}"
            )
        if size is not None and frames.shape[1:3] != size:
            raise InputError(
                f"shot '{shot_id}': frames are {frames.shape[2]}x{frames.shape[1]}, "
                f"the first shot's are {size[1]}x{size[0]}"
            )
        size = frames.shape[1:3]
        if (
            keyframe.ndim != 3
            or keyframe.shape[-1] != 3
            or keyframe.dtype != np.uint8
            or 0 in keyframe.shape
        ):
            raise InputError(
                f"shot '{shot_id}': keyframe must be (H, W, 3) uint8, "
                f"got {keyframe.shape} {keyframe.dtype}"
            )
    return size


def movie_frames(timeline: list[ShotSpan], shots: Mapping[str, ShotMedia]) -> Iterator[np.ndarray]:
    """The movie's frames (H, W, 3) uint8 in order, transitions applied, one shot at a time."""
    for k, span in enumerate(timeline):
        frames = _faded(np.asarray(shots[span.shot_id].frames), span)
        yield from frames[span.overlap_in : span.frames - span.overlap_out]
        if span.overlap_out:
            following = timeline[k + 1]
            incoming = _faded(np.asarray(shots[following.shot_id].frames), following)
            yield from crossfade(frames[-span.overlap_out :], incoming[: span.overlap_out])


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Blend two (k, H, W, 3) uint8 runs; frame j weighs the incoming one by (j + 1) / (k + 1)."""
    k = len(outgoing)
    weight = (np.arange(1, k + 1) / (k + 1))[:, None, None, None]  # (k, 1, 1, 1)
    mixed = outgoing * (1 - weight) + incoming * weight
    return np.rint(mixed).astype(np.uint8)


def _faded(frames: np.ndarray, span: ShotSpan) -> np.ndarray:
    """The shot's frames with its fades applied: black at the fade's far end."""
    if not (span.fade_in or span.fade_out):
        return frames
    gain = np.ones(len(frames))
    if span.fade_in:
        gain[: span.fade_in] = np.arange(span.fade_in) / span.fade_in  # 0 ... (k-1)/k
    if span.fade_out:
        gain[-span.fade_out :] = np.arange(span.fade_out - 1, -1, -1) / span.fade_out
    return np.rint(frames * gain[:, None, None, None]).astype(np.uint8)


def write_png(image: np.ndarray | Image.Image, path: Path) -> Path:
    """Save an RGB image as PNG atomically (no timestamps: same pixels, same bytes)."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.ascontiguousarray(image), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())
