"""The shot interface every image-to-video backend implements, and what backends share.

A `ShotRenderer` turns a shot's keyframe into the shot's frames: the keyframe is the first
frame, the shot's action and camera move (in words, `motion_prompt`) say what happens next, and
the characters' identity embeddings are there for a model that can keep them on screen. Two
implement it: the built-in model and `renderer.pretrained_shots.PretrainedShotRenderer` (any
diffusers image-to-video pipeline).

Long shots. A model renders at most `native_frames` frames in one go; `extend_clip_by_clip`
renders a longer shot as clips, each started from the last frame of the clip before, its
first frame(s) dropped so that no frame repeats. Every clip's request still holds the shot's
own keyframe and identities, so a model that can re-inject them keeps the characters from
drifting; the frame a clip starts from is `ShotRequest.first_frame`.

Seeds: a shot's first clip uses the shot's seed, clip k > 0 `clip_seed(seed, k)`; the noise of
a clip depends on that seed only, so a shot is the same whatever else is rendered with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import PIL.Image
import torch

from reelsmith.renderer.identity.encoder import ENCODER
from reelsmith.schema.screenplay import Action, CameraMove, Shot

if TYPE_CHECKING:
    import torch

# called with (shots done, shots in all) after each shot
Progress = Callable[[int, int], None]

CAMERA_WORDS = {
    CameraMove.static: "static camera",
    CameraMove.pan_left: "the camera pans left",
    CameraMove.pan_right: "the camera pans right",
    CameraMove.zoom_in: "the camera slowly zooms in",
    CameraMove.zoom_out: "the camera slowly zooms out",
    CameraMove.follow: "the camera follows the action",
}
ACTION_WORDS = {
    Action.idle: "stands still",
    Action.walk_left: "walks to the left",
    Action.walk_right: "walks to the right",
    Action.run: "runs",
    Action.jump: "jumps",
    Action.wave: "waves",
    Action.sit: "sits down",
    Action.approach: "walks closer",
    Action.leave: "walks away",
    Action.turn: "turns around",
    Action.talk: "talks",
    Action.follow: "follows someone",
}
# how much a shot moves, 0 (still) to 1: the liveliest character's action plus the camera's
ACTION_MOTION = {
    Action.idle: 0.1,
    Action.sit: 0.2,
    Action.talk: 0.2,
    Action.wave: 0.4,
    Action.turn: 0.4,
    Action.walk_left: 0.6,
    Action.walk_right: 0.6,
    Action.approach: 0.6,
    Action.leave: 0.6,
    Action.follow: 0.6,
    Action.jump: 0.9,
    Action.run: 1.0,
}
UNKNOWN_MOTION = 0.4  # a shot whose motion is only described in words
CAMERA_MOTION = {move: (0.0 if move is CameraMove.static else 0.2) for move in CameraMove}


@dataclass(frozen=True, eq=False)
class ShotRequest:
    """One shot (or one clip of a long shot) to render.

    Args:
        shot_id: The shot's id, for logs and errors.
        keyframe: The shot's keyframe, uint8 (H, W, 3); the output has its size.
        frames: How many frames to render.
        fps: The frame rate those frames play at.
        motion: What happens during the shot, in words (the shot's action).
        camera: The camera move (a `CameraMove` or its value, e.g. "pan-left").
        actions: Each on-screen character's action, by character id.
        identities: Each character's identity embeddings, {character id: {encoder: vector}}.
        seed: The seed of the shot's noise.
        start: The frame to start from when this clip continues a previous one (its last
            frame), uint8 with the keyframe's shape; None: start from the keyframe.
    """

    shot_id: str
    keyframe: np.ndarray
    frames: int
    fps: float
    motion: str = ""
    camera: CameraMove = CameraMove.static
    actions: Mapping[str, Action] = field(default_factory=dict)
    identities: Mapping[str, Mapping[str, np.ndarray | torch.Tensor]] = field(default_factory=dict)
    seed: int = 0
    start: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = f"shot {self.shot_id!r}"
        check_frame(self.keyframe, f"{where}: keyframe")
        if self.start is not None:
            check_frame(self.start, f"{where}: start frame")
            if self.start.shape != self.keyframe.shape:
                raise ValueError(
                    f"{where}: start frame has shape {self.start.shape}, the keyframe "
                    f"{self.keyframe.shape}"
                )
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"{where}: frames {self.frames!r} must be a positive integer")
        if not self.fps > 0:
            raise ValueError(f"{where}: fps {self.fps!r} must be positive")
        object.__setattr__(self, "camera", camera_move(self.camera))
        actions = {}
        for character, action in self.actions.items():
            try:
                actions[character] = Action(action)
            except ValueError:
                known = [a.value for a in Action]
                raise ValueError(
                    f"{where}: character {character!r} has unknown action {action!r} "
                    f"(one of {known})"
                ) from None
        object.__setattr__(self, "actions", actions)

    @property
    def first_frame(self) -> np.ndarray:
        """The frame this request starts from: `start`, else the keyframe."""
        return self.keyframe if self.start is None else self.start

    @classmethod
    def from_shot(
        cls,
        shot: Shot,
        keyframe: np.ndarray,
        *,
        fps: float,
        seed: int,
        identities: Mapping[str, Mapping[str, np.ndarray | torch.Tensor]] | None = None,
    ) -> ShotRequest:
        """The request of a screenplay shot: its duration at `fps`, action, camera, blocking."""
        return cls(
            shot_id=shot.id,
            keyframe=keyframe,
            frames=max(1, round(shot.duration * fps)),
            fps=fps,
            motion=shot.action.strip() or shot.motion_prompt.strip(),
            camera=shot.camera,
            actions={beat.character: beat.action for beat in shot.blocking},
            identities=dict(identities or {}),
            seed=seed,
        )


class ShotRenderer(Protocol):
    name: str
    native_frames: int  # the most frames one clip can have
    fps: float  # the frame rate the model renders at

    def render(
        self, requests: Sequence[ShotRequest], progress: Progress | None = None
    ) -> list[np.ndarray]:
        """One clip per request, uint8 (frames, H, W, 3) at the keyframe's size; its first
        frame is (close to) the keyframe."""
        ...


def check_frame(frame: np.ndarray, what: str) -> None:
    """Raise ValueError unless `frame` is a uint8 (H, W, 3) array."""
    ok = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
    if not ok or frame.shape[2] != 3 or min(frame.shape[:2]) < 1:
        got = f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}"
        raise ValueError(f"{what} must be uint8 (H, W, 3); got {got}")


def camera_move(move: CameraMove | str) -> CameraMove:
    """A camera move from its value, e.g. "pan-left"; ValueError naming the known ones."""
    try:
        return CameraMove(move)
    except ValueError:
        known = [m.value for m in CameraMove]
        raise ValueError(f"unknown camera move {move!r} (one of {known})") from None


def camera_words(move: CameraMove | str) -> str:
    """The camera move in words, e.g. "pan-left" -> "the camera pans left"."""
    return CAMERA_WORDS[camera_move(move)]


def motion_prompt(request: ShotRequest) -> str:
    """What a text-conditioned model is told: the shot's action, then the camera, in words.

    The action is the request's motion text, else its characters' actions ("mara walks to the
    left, ben waves"): e.g. "A fox runs across the clearing. The camera pans left."
    """
    action = request.motion.strip()
    if not action and request.actions:
        action = ", ".join(f"{who} {ACTION_WORDS[what]}" for who, what in request.actions.items())
    return " ".join(sentence(part) for part in (action, camera_words(request.camera)) if part)


def motion_level(request: ShotRequest) -> float:
    """How much the shot moves, 0 (still) to 1: its liveliest action plus its camera move."""
    level = max((ACTION_MOTION[a] for a in request.actions.values()), default=UNKNOWN_MOTION)
    return min(1.0, level + CAMERA_MOTION[request.camera])


def sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip `index` of a shot seeded `seed`: the seed itself for the first clip."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}/clip/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: any torch.Generator takes it


def extend_clip_by_clip(
    render_one: Callable[[ShotRequest], np.ndarray],
    request: ShotRequest,
    native_frames: int,
    overlap: int = 1,
) -> np.ndarray:
    """Exactly `request.frames` frames, rendered as clips of at most `native_frames`.

    The first clip is `request` cut to `native_frames` frames. Each next clip is the same
    request (keyframe, identities, motion) with `start` = the last frame of the clip before
    and seed `clip_seed(request.seed, k)`; its first `overlap` frames are dropped, as they
    repeat that frame (the first is (close to) it: the model starts from it). The last clip
    asks only for the frames still missing, plus the overlap.

    Args:
        render_one: Renders one clip: a request of at most `native_frames` frames -> uint8
            (request.frames, H, W, 3) at the first frame's size.
        request: The whole shot.
        native_frames: The most frames `render_one` renders at once.
        overlap: Frames dropped from the start of every clip after the first (1 or more).

    Returns:
        uint8 (request.frames, H, W, 3).
    """
    if native_frames < 2:
        raise ValueError(f"native_frames {native_frames} must be at least 2")
    if not 1 <= overlap < native_frames:
        raise ValueError(f"overlap {overlap} must be in [1, native_frames {native_frames})")
    clip = replace(request, frames=min(request.frames, native_frames))
    pieces: list[np.ndarray] = []
    done, index = 0, 0
    while True:  # ends: every clip after the first adds at least native - overlap >= 1 frames
        frames = render_one(clip)
        check_clip(frames, clip)
        pieces.append(frames if index == 0 else frames[overlap:])
        done += len(pieces[-1])
        if done == request.frames:
            return np.concatenate(pieces)
        index += 1
        clip = replace(
            request,
            frames=min(native_frames, request.frames - done + overlap),
            seed=clip_seed(request.seed, index),
            start=frames[-1],
        )


def check_clip(frames: np.ndarray, request: ShotRequest) -> None:
    """Raise ValueError unless `frames` is uint8 (request.frames, H, W, 3) at its frame's size."""
    expected = (request.frames, *request.first_frame.shape)
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.shape != expected:
        got = f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        raise ValueError(
            f"shot {request.shot_id!r}: a clip must be uint8 {expected}; the renderer gave {got}"
        )


def retime(frames: np.ndarray, fps: float, count: int, to_fps: float) -> np.ndarray:
    """`count` frames at `to_fps` from `frames` at `fps`, by nearest frame (dropped or repeated).

    Output frame i shows the time i / to_fps, i.e. input frame round(i * fps / to_fps), so the
    first frames match; `frames` must reach the last output's time.
    """
    index = frame_times(count, fps, to_fps)
    if index[-1] >= len(frames):
        raise ValueError(
            f"{len(frames)} frames at {fps} fps do not reach frame {count - 1} at {to_fps} fps"
        )
    return frames[index]


def frame_times(count: int, fps: float, to_fps: float) -> np.ndarray:
    """For each of `count` frames at `to_fps`, the nearest frame at `fps` (its index)."""
    return np.floor(np.arange(count) * (fps / to_fps) + 0.5).astype(np.int64)


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 (H, W, 3) frame at (height, width), bicubic; the frame itself if it fits."""
    height, width = size
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(PIL.Image.fromarray(frame).resize((width, height), PIL.Image.BICUBIC))


def check_requests(requests: Sequence[ShotRequest]) -> list[ShotRequest]:
    """The requests as a list; ValueError if there are none or one is not a `ShotRequest`."""
    requests = list(requests)
    if not requests:
        raise ValueError("no shots to render: requests is empty")
    for i, request in enumerate(requests):
        if not isinstance(request, ShotRequest):
            raise ValueError(f"requests[{i}] is a {type(request).__name__}, not a ShotRequest")
    return requests


def at_model(request: ShotRequest, size: tuple[int, int], fps: float) -> ShotRequest:
    """The request at a model's (height, width) and frame rate, over the same time span."""
    span = int(frame_times(request.frames, fps, request.fps)[-1]) + 1
    return replace(
        request,
        keyframe=resize(request.keyframe, size),
        start=None if request.start is None else resize(request.start, size),
        frames=span,
        fps=fps,
    )


def from_model(frames: np.ndarray, request: ShotRequest, at: ShotRequest) -> np.ndarray:
    """Frames drawn for `at = at_model(request, ...)` back at the request's frame count,
    frame rate and size."""
    frames = retime(frames, at.fps, request.frames, request.fps)
    size = request.keyframe.shape[:2]
    return np.stack([resize(frame, size) for frame in frames])


def identity_embeddings(request: ShotRequest) -> dict[str, torch.Tensor]:
    """The request's identity embeddings from the built-in encoder, by character id; a
    character without one is drawn from its keyframe pixels (and action) alone."""
    return {
        character: torch.as_tensor(by_encoder[ENCODER]).float()
        for character, by_encoder in request.identities.items()
        if ENCODER in by_encoder
    }
