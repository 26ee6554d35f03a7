"""The graph's state: only small things (digests, content keys, shot ids), checkpointed after
every step; images, frames and models live in the run directory and in `Context`."""

from __future__ import annotations

from typing import Annotated, TypedDict


def _merge(old: dict, new: dict) -> dict:
    return {**(old or {}), **new}


class MovieState(TypedDict, total=False):
    approve: bool  # stop for the user's approval after the screenplay
    screenplay: str  # digest of the screenplay this pass makes (`run_dir.screenplay_digest`)
    cast: str  # digest of cast.json
    keyframes: dict[str, str]  # shot id -> keyframe key
    shots: dict[str, str]  # shot id -> the key its frames must have
    rendered: Annotated[dict[str, str], _merge]  # shot id -> key, as render tasks finish
    movie: dict  # seconds, frames, shots of movie.mp4, once assembled


class ShotTask(TypedDict):
    shot_id: str
    key: str  # the key its frames must have
    keyframe: str  # its keyframe's key
    screenplay: str  # the pinned screenplay's digest
