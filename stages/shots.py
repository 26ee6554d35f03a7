"""The shot stage: a shot's request to the shot renderer, and its frames."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reelsmith.numerics import derived_seed
from reelsmith.renderer.identity.encoder import ENCODER
from reelsmith.renderer.shots.protocol import ShotRenderer, ShotRequest
from reelsmith.schema.cast import CastEntry
from reelsmith.schema.screenplay import Shot


def render_seed(seed: int, shot_id: str) -> int:
    """The seed a shot is rendered with: from the run seed and the shot id only."""
    return derived_seed(seed, "shot", shot_id)


def shot_request(
    shot: Shot, keyframe: np.ndarray, cast: Mapping[str, CastEntry], *, fps: int, seed: int
) -> ShotRequest:
    """A shot's request to the renderer: its keyframe, action, camera move and the identity
    embeddings of the characters on screen. `seed` is the run seed."""
    identities = {
        cid: {ENCODER: cast[cid].embedding}
        for cid in shot.characters
        if cast[cid].embedding is not None
    }
    return ShotRequest.from_shot(
        shot, keyframe, fps=fps, seed=render_seed(seed, shot.id), identities=identities
    )


def render_shot(request: ShotRequest, renderer: ShotRenderer) -> np.ndarray:
    """The shot's frames, uint8 (request.frames, H, W, 3)."""
    return renderer.render([request])[0]
