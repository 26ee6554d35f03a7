"""Staging a shot: where every character stands and what the camera sees, frame by frame.

Positions are in world units on the ground plane: x along the panorama, depth z from 0 (at
the front) to 1 (at the back). Each character's action becomes a path over the shot's
normalised time u in [0, 1]; approaching and following characters move relative to their
target's path. The camera frames the shot's characters at the shot's size and then moves:
pans slide the view, zooms scale it, a follow shot keeps the lead in the middle.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from reelsmith.schema.screenplay import TARGETED_ACTIONS, Action, CameraMove, Shot, ShotSize
from reelsmith.world.figures import Pose
from reelsmith.world.scenery import HEIGHT, PANORAMA_HALF_WIDTH

VIEW = {ShotSize.wide: 1.0, ShotSize.medium: 0.66, ShotSize.close_up: 0.46}  # view height
ZOOM = 0.25  # a zoom changes the view's size by this fraction over the shot
FIGURE_SCALE = 0.42  # a tall figure at the front is this tall, in world units
GROUND_FRONT, GROUND_BACK = 0.04, 0.2  # feet height at depth 0 and at depth 1
DEPTH_SHRINK = 0.3  # a figure at the back is this much smaller
SPEED = {Action.walk_left: 0.45, Action.walk_right: 0.45, Action.run: 0.9, Action.leave: 0.8}
X_LIMIT = PANORAMA_HALF_WIDTH - 0.2
HAT_ROOM = 0.22  # a hat or crown rises this far above a body of height 1


@dataclass
class Track:
    """One character's path through a shot, sampled at every frame."""

    character: str
    action: Action
    x: np.ndarray  # (T,) ground position
    z: float  # depth, fixed for the shot
    lift: np.ndarray  # (T,) height above the ground (jumps)
    poses: list[Pose]

    def feet(self, t: int) -> tuple[float, float, float]:
        """World (x, y) of the feet and the figure's scale at frame t."""
        y = GROUND_FRONT + (GROUND_BACK - GROUND_FRONT) * self.z + self.lift[t]
        return float(self.x[t]), y, FIGURE_SCALE * (1 - DEPTH_SHRINK * self.z)


@dataclass
class View:
    """The camera's square window on the panorama at each frame: centre and height."""

    cx: np.ndarray  # (T,)
    cy: np.ndarray  # (T,)
    size: np.ndarray  # (T,)


def stage(
    shot: Shot, num_frames: int, rng: random.Random, heights: dict[str, float] | None = None
) -> tuple[list[Track], View]:
    """Tracks for the shot's characters and the camera that frames them.

    `heights` gives each character's body height (1.0 for a tall figure), so that a
    close-up frames a small figure as well as a tall one.
    """
    u = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)  # (T,)
    actions = {b.character: (b.action, b.target) for b in shot.blocking}
    ids = list(shot.characters)
    # close-ups keep the characters close together, so that every one of them is in view
    spacing = 0.17 if shot.size is ShotSize.close_up else 0.32
    starts = {
        cid: (i - (len(ids) - 1) / 2) * spacing + rng.uniform(-0.05, 0.05)
        for i, cid in enumerate(ids)
    }
    depths = {
        cid: (0.0 if i % 2 == 0 else 0.55) + rng.uniform(0, 0.15) for i, cid in enumerate(ids)
    }
    tracks: dict[str, Track] = {}
    # targets first, so that approachers and followers can move relative to them
    order = sorted(
        ids, key=lambda cid: actions.get(cid, (Action.idle, None))[0] in TARGETED_ACTIONS
    )
    for cid in order:
        action, target = actions.get(cid, (Action.idle, None))
        if target not in tracks:
            target = None
        others = [starts[o] for o in ids if o != cid]
        tracks[cid] = _track(
            cid, action, starts[cid], depths[cid], u, rng, tracks.get(target), others
        )
    ordered = [tracks[cid] for cid in ids]
    heights = {cid: (heights or {}).get(cid, 1.0) for cid in ids}
    return ordered, _camera(shot, ordered, u, heights)


def _track(cid, action, x0, z, u, rng, target: Track | None, others: list[float]) -> Track:
    n = len(u)
    x = np.full(n, x0, np.float32)
    lift = np.zeros(n, np.float32)
    facing = 0
    arm = [0] * n
    mouth = [False] * n
    sit = [0] * n
    step = np.abs(np.sin(u * math.pi * 6)) * 0.015  # a little bob while moving
    if action in (Action.walk_left, Action.walk_right, Action.run):
        direction = -1 if action is Action.walk_left else 1
        if action is Action.run:
            direction = rng.choice([-1, 1])
        x = x0 + direction * SPEED[action] * u
        lift = step * (2 if action is Action.run else 1)
        facing = direction
    elif action is Action.leave:
        direction = 1 if x0 >= 0 else -1
        x = x0 + direction * SPEED[action] * u**1.5
        lift, facing = step, direction
    elif action is Action.jump:
        lift = 0.22 * np.abs(np.sin(u * math.pi * 2)).astype(np.float32)
    elif action is Action.wave:
        arm = [1 + (int(k * 2 / max(n, 1) * 4) % 2) for k in range(n)]
    elif action is Action.sit:
        sit = [min(2, int(3 * k / max(n * 0.5, 1))) for k in range(n)]
    elif action is Action.talk:
        mouth = [(k // 2) % 2 == 0 for k in range(n)]
        facing = _towards(x0, others)
    elif action is Action.idle:  # breathing, and a glance around now and then
        k = np.arange(n, dtype=np.float32)
        lift = 0.02 * (0.5 - 0.5 * np.cos(2 * math.pi * k / 10))
        start = rng.choice([-1, 0, 1])
        glances = [[start, 0, -start or 1, 0][(i // 6) % 4] for i in range(n)]
        poses = [Pose(facing=f) for f in glances]
        return Track(cid, action, np.asarray(x, np.float32), z, lift.astype(np.float32), poses)
    elif action is Action.turn:
        first = rng.choice([-1, 1])
        facings = [first if k < n / 2 else -first for k in range(n)]
        poses = [Pose(facing=f) for f in facings]
        return Track(cid, action, np.asarray(x, np.float32), z, lift, poses)
    elif action in TARGETED_ACTIONS:
        goal_x = target.x if target is not None else np.full(n, x0 + 0.6, np.float32)
        side = 1.0 if x0 <= goal_x[0] else -1.0
        gap = 0.3 if action is Action.approach else 0.38
        end = goal_x - side * gap  # stop beside (approach) or behind (follow) the target
        x = x0 + (end - x0) * np.minimum(1.0, u * 1.3)
        lift, facing = step, int(side)
    x = np.clip(np.asarray(x, np.float32), -X_LIMIT, X_LIMIT)
    poses = [Pose(facing=facing, arm=arm[k], mouth=mouth[k], sit=sit[k]) for k in range(n)]
    return Track(cid, action, x, z, np.asarray(lift, np.float32), poses)


def _towards(x0: float, others: list[float]) -> int:
    if not others:
        return 0
    nearest = min(others, key=lambda o: abs(o - x0))
    return 1 if nearest > x0 else -1


def _camera(shot: Shot, tracks: list[Track], u: np.ndarray, heights: dict[str, float]) -> View:
    size0 = VIEW[shot.size]

    def middle(track: Track) -> float:  # world height of the middle of a figure's body
        _, feet_y, scale = track.feet(0)
        return feet_y + scale * heights[track.character] * 0.55

    def top(track: Track) -> float:  # world height of the top of its hat or crown
        _, feet_y, scale = track.feet(0)
        return feet_y + scale * (heights[track.character] + HAT_ROOM)

    if not tracks:
        cx0, body_y = 0.0, 0.3
    elif shot.size is ShotSize.close_up:
        cx0 = float(np.mean([t.x[0] for t in tracks]))
        body_y = max(middle(t) for t in tracks)
    else:
        cx0 = float(np.mean([t.x[0] for t in tracks]))
        body_y = float(np.mean([middle(t) for t in tracks]))
    n = len(u)
    size = np.full(n, size0, np.float32)
    cx = np.full(n, cx0, np.float32)
    if shot.camera is CameraMove.pan_left:
        cx = cx0 - 0.3 * size0 * (u - 0.5)
    elif shot.camera is CameraMove.pan_right:
        cx = cx0 + 0.3 * size0 * (u - 0.5)
    elif shot.camera is CameraMove.zoom_in:
        size = size0 * (1.0 - ZOOM * u)
    elif shot.camera is CameraMove.zoom_out:
        size = size0 * (1.0 - ZOOM + ZOOM * u)
    elif shot.camera is CameraMove.follow and tracks:
        cx = tracks[0].x.copy()
    half = size / 2
    cx = np.clip(cx, -PANORAMA_HALF_WIDTH + half, PANORAMA_HALF_WIDTH - half)
    cy = np.full(n, body_y, np.float32)
    if tracks:  # tight views keep heads and hats in frame and give up feet instead
        highest = max(top(t) for t in tracks)
        cy = np.maximum(cy, highest + 0.03 - half)
    cy = np.clip(cy, half, HEIGHT - half)
    return View(cx.astype(np.float32), cy.astype(np.float32), size.astype(np.float32))
