"""Ground truth from a Screenplay: every shot's frames with per-frame labels.

`WorldRenderer(config).render(screenplay)` yields one `ShotTruth` per shot in story order:
frames (T, H, W, 3) uint8, an instance mask (T, H, W) uint8 whose value k > 0 is the k-th
cast member (1-based, cast order), and labels (location, time of day, shot size, camera move,
and per frame each visible character's id, identity, box and action). Frames are drawn at
`supersample` times the resolution and averaged down, so edges are anti-aliased.

Words the world can't place are never fatal: an unknown location falls back to a stable
choice from its text, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from reelsmith.schema import vocabulary
from reelsmith.schema.looks import Identity, cast_identities
from reelsmith.schema.screenplay import Scene, Screenplay, Shot, TimeOfDay
from reelsmith.world.figures import HEADROOM, SPRITE_WIDTH, Pose, figure_height, sprite
from reelsmith.world.scenery import HEIGHT, PANORAMA_HALF_WIDTH, light_for, panorama
from reelsmith.world.staging import VIEW, ZOOM, Track, View, stage

log = logging.getLogger(__name__)
LOCATIONS = tuple(vocabulary.LOCATIONS)


@dataclass(frozen=True)
class WorldConfig:
    """How ground truth is drawn.

    Attributes:
        resolution: Frame width and height in pixels (square frames; 64 and 128 tested).
        fps: Frames per second of a shot.
        supersample: Drawing scale before averaging down (anti-aliasing).
        seed: Seed of the world's layout (where props stand) and of staging.
        max_frames: Keep only the first frames of each shot, at most this many (None: all).
    """

    resolution: int = 64
    fps: int = 8
    supersample: int = 2
    seed: int = 0
    max_frames: int | None = None


@dataclass
class ShotTruth:
    scene_id: str
    shot_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) uint8, k = cast index + 1
    labels: dict = field(default_factory=dict)


def place_of(location: str) -> str:
    """The world location a free-text location names; a stable fallback with a warning."""
    found = vocabulary.first(location, vocabulary.LOCATIONS)
    if found is not None:
        return found
    digest = hashlib.sha256(location.strip().lower().encode("utf-8")).digest()
    fallback = LOCATIONS[digest[0] % len(LOCATIONS)]
    log.warning("storyworld has no place like %r; drawing it as %s", location, fallback)
    return fallback


class WorldRenderer:
    """Draws a screenplay's ground truth. Deterministic: same screenplay and config, same bytes."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        self.ss_res = self.config.resolution * self.config.supersample
        # the panorama has one pixel per output pixel in the tightest view (a zoomed-in
        # close-up); the supersampled frame samples it more finely, which keeps the
        # background soft in close-ups, the way a lens would
        tightest = VIEW[min(VIEW, key=VIEW.get)] * (1 - ZOOM)
        self.px_per_unit = int(math.ceil(self.config.resolution / tightest))

    def render(self, screenplay: Screenplay) -> Iterator[ShotTruth]:
        identities = cast_identities(screenplay.characters)
        for scene, shot in screenplay.shots():
            yield self.render_shot(screenplay, scene, shot, identities)

    def render_shot(
        self,
        screenplay: Screenplay,
        scene: Scene,
        shot: Shot,
        identities: dict[str, Identity] | None = None,
    ) -> ShotTruth:
        identities = identities or cast_identities(screenplay.characters)
        cast_index = {c.id: k + 1 for k, c in enumerate(screenplay.characters)}
        cfg = self.config
        shot_frames = max(1, round(shot.duration * cfg.fps))
        # the shot is staged whole; max_frames keeps its first frames
        num_frames = min(shot_frames, cfg.max_frames or shot_frames)
        rng = random.Random(f"{cfg.seed}/{screenplay.title}/{shot.id}")
        location = place_of(scene.location)
        heights = {cid: figure_height(identities[cid]) for cid in shot.characters}
        tracks, view = stage(shot, shot_frames, rng, heights)
        pano = panorama(location, scene.time, cfg.seed, self.px_per_unit)
        light = np.asarray(light_for(location, scene.time), np.float32)

        frames = np.empty((num_frames, cfg.resolution, cfg.resolution, 3), np.uint8)
        masks = np.empty((num_frames, cfg.resolution, cfg.resolution), np.uint8)
        per_frame = []
        for t in range(num_frames):
            frames[t], masks[t] = self._frame(pano, view, t, tracks, identities, cast_index, light)
            per_frame.append(self._frame_labels(masks[t], tracks, identities, cast_index))
        labels = {
            "scene": scene.id,
            "shot": shot.id,
            "location": location,
            "time": scene.time.value,
            "size": shot.size.value,
            "camera": shot.camera.value,
            "fps": cfg.fps,
            "resolution": cfg.resolution,
            "actions": {tr.character: tr.action.value for tr in tracks},
            "frames": per_frame,
        }
        return ShotTruth(scene.id, shot.id, frames, masks, labels)

    # -- drawing -----------------------------------------------------------------------

    def _frame(self, pano, view: View, t, tracks, identities, cast_index, light):
        n, ss = self.ss_res, self.config.supersample
        size, cx, cy = float(view.size[t]), float(view.cx[t]), float(view.cy[t])
        px = n / size  # screen pixels per world unit
        # 1. background: sample the panorama under each screen pixel
        offsets = (np.arange(n, dtype=np.float32) + 0.5) / px - size / 2
        cols = ((cx + offsets + PANORAMA_HALF_WIDTH) * self.px_per_unit).astype(np.int32)
        rows = ((HEIGHT - (cy - offsets)) * self.px_per_unit).astype(np.int32)
        np.clip(cols, 0, pano.shape[1] - 1, out=cols)
        np.clip(rows, 0, pano.shape[0] - 1, out=rows)
        image = pano.take(rows, axis=0).take(cols, axis=1)  # (n, n, 3)
        label = np.zeros((n, n), np.uint8)
        # 2. characters, back to front
        for track in sorted(tracks, key=lambda tr: -tr.z):
            fx, fy, scale = track.feet(t)
            identity = identities[track.character]
            unit_px = max(2, int(round(scale * px)))
            rgba = sprite(identity, track.poses[t], unit_px)
            left = int(round((fx - cx + size / 2) * px - SPRITE_WIDTH / 2 * unit_px))
            top = int(round((cy + size / 2 - fy) * px - (1 + HEADROOM) * unit_px))
            self._paste(image, label, rgba, left, top, light, cast_index[track.character])
        # 3. average the supersampled image down; a pixel belongs to whoever covers most of it
        return _to_uint8(_box_mean(image, ss)), _majority(label, ss)

    @staticmethod
    def _paste(image, label, rgba, left, top, light, value) -> None:
        h, w = rgba.shape[:2]
        n = image.shape[0]
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + h, n), min(left + w, n)
        if r0 >= r1 or c0 >= c1:
            return
        patch = rgba[r0 - top : r1 - top, c0 - left : c1 - left]  # (h', w', 4)
        alpha = patch[..., 3:4]
        region = image[r0:r1, c0:c1]
        region *= 1 - alpha
        region += patch[..., :3] * light * alpha
        label[r0:r1, c0:c1][patch[..., 3] > 0.5] = value

    @staticmethod
    def _frame_labels(mask, tracks: list[Track], identities, cast_index) -> list[dict]:
        visible = []
        for track in tracks:
            k = cast_index[track.character]
            ys, xs = np.nonzero(mask == k)
            if len(xs) == 0:
                continue  # fully occluded or out of frame: not on screen
            visible.append(
                {
                    "id": track.character,
                    "identity": identities[track.character].to_dict(),
                    "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                    "pixels": int(len(xs)),
                    "action": track.action.value,
                }
            )
        return visible


def _box_mean(image: np.ndarray, ss: int) -> np.ndarray:
    """Average ss x ss blocks: (n*ss, n*ss, C) -> (n, n, C); sums of strided views are fast."""
    total = sum(image[i::ss, j::ss] for i in range(ss) for j in range(ss))
    return total * (1.0 / (ss * ss))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def _majority(label: np.ndarray, ss: int) -> np.ndarray:
    """Each output pixel belongs to the character covering at least half of its block."""
    if ss == 1:
        return label.copy()
    n = label.shape[0] // ss
    out = np.zeros((n, n), np.uint8)
    for value in np.unique(label)[1:] if label.any() else ():
        hits = label == value
        count = sum(hits[i::ss, j::ss].astype(np.uint8) for i in range(ss) for j in range(ss))
        out[count * 2 >= ss * ss] = value
    return out


def portrait(identity: Identity, resolution: int = 64, supersample: int = 2) -> np.ndarray:
    """A character's canonical reference portrait: front-facing, neutral grey, (H, W, 3) uint8."""
    n = resolution * supersample
    unit_px = int(n / (1 + HEADROOM) * 0.95)
    rgba = sprite(identity, Pose(facing=0), unit_px)
    image = np.full((n, n, 3), 0.55, np.float32)
    label = np.zeros((n, n), np.uint8)
    left = (n - rgba.shape[1]) // 2
    top = n - rgba.shape[0]
    WorldRenderer._paste(image, label, rgba, left, top, np.ones(3, np.float32), 1)
    return _to_uint8(_box_mean(image, supersample))


__all__ = ["ShotTruth", "TimeOfDay", "WorldConfig", "WorldRenderer", "place_of", "portrait"]
