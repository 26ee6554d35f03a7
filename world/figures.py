"""Drawing one character: an identity in a pose, as an RGBA sprite.

A figure is one unit tall (plus headroom for hats and crowns) and drawn with a dark outline,
so it stands out from any place. The pose carries what changes from frame to frame: which way
it faces (its eyes look that way), a waving arm, an open mouth, how far it has sat down.
Sprites are cached by (identity, pose, size), so a shot redraws nothing it has drawn before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from reelsmith.schema.looks import Identity
from reelsmith.world.canvas import Canvas, rgb

# Body colours, chosen far apart from each other and from the muted scenery.
RGB: dict[str, tuple[int, int, int]] = {
    "red": (222, 38, 38),
    "orange": (250, 140, 20),
    "yellow": (250, 222, 40),
    "green": (40, 180, 60),
    "teal": (20, 190, 180),
    "blue": (40, 80, 235),
    "purple": (145, 55, 210),
    "pink": (255, 125, 200),
    "brown": (130, 78, 36),
    "white": (245, 245, 245),
    "black": (28, 28, 32),
    "grey": (135, 135, 140),
}


HEADROOM = 0.3  # above the body, for hats and crowns
SPRITE_WIDTH = 1.1
OUTLINE = rgb(20, 18, 24)
EYE_WHITE = rgb(250, 250, 250)
PUPIL = rgb(15, 15, 20)
ACCESSORY_COLOURS = {
    "hat": rgb(35, 30, 45),
    "scarf": rgb(250, 240, 210),
    "glasses": rgb(15, 15, 20),
    "crown": rgb(255, 205, 40),
    "backpack": rgb(150, 95, 50),
}
# relative body heights: "small" figures are smaller, "tall" ones taller
HEIGHT = {"round": 0.8, "boxy": 0.85, "pointed": 0.85, "tall": 1.0, "small": 0.55}
WIDTH = {"round": 0.36, "boxy": 0.3, "pointed": 0.3, "tall": 0.2, "small": 0.22}


@dataclass(frozen=True)
class Pose:
    """How a figure stands in one frame (quantised, so sprites cache well)."""

    facing: int = 1  # +1 right, -1 left, 0 towards the camera
    arm: int = 0  # 0 down, 1 half raised, 2 raised high (a wave alternates 1 and 2)
    mouth: bool = False
    sit: int = 0  # 0 standing … 2 seated


def figure_height(identity: Identity) -> float:
    """Body height in units (a tall figure is 1.0)."""
    return HEIGHT[identity.shape]


@functools.lru_cache(maxsize=4096)
def sprite(identity: Identity, pose: Pose, px_per_unit: int) -> np.ndarray:
    """The figure as RGBA float32 (H, W, 4); x=0 is its centre, y=0 its feet. Read-only."""
    c = Canvas(-SPRITE_WIDTH / 2, SPRITE_WIDTH, 1.0 + HEADROOM, px_per_unit, channels=4)
    body = RGB[identity.colour]
    colour = (*(v / 255 for v in body), 1.0)
    h = HEIGHT[identity.shape] * (1 - 0.18 * pose.sit)
    w = WIDTH[identity.shape] * (1 + 0.1 * pose.sit)
    backpack = identity.accessory == "backpack"
    if backpack:  # behind the body, on the side facing away
        side = -pose.facing if pose.facing else 1
        _backpack(c, side * (w + 0.06), h, w)  # sticks out beside every body shape
    _arm(c, identity, pose, h, w, colour)
    _body(c, identity.shape, h, w, 0.035, (*OUTLINE, 1.0))
    _body(c, identity.shape, h, w, 0.0, colour)
    _pattern(c, identity, h, w, body)
    _face(c, identity, pose, h, w)
    _accessory(c, identity.accessory, h, w, pose)
    c.rgb.flags.writeable = False
    return c.rgb


def _body(c: Canvas, shape: str, h: float, w: float, grow: float, colour) -> None:
    g = grow
    if shape in ("round", "small"):
        c.ellipse(0, h * 0.5, w + g, h * 0.5 + g, colour)
        if shape == "small":  # a tuft on top
            c.triangle(-0.04 - g, h * 0.95, 0.04 + g, h * 0.95, 0, h + 0.1 + g, colour)
    elif shape == "boxy":
        c.rect(-w - g, -g + 0.02, w + g, h + g, colour)
        c.rect(-0.015 - g, h, 0.015 + g, h + 0.1 + g, colour)  # antenna
    elif shape == "pointed":
        c.ellipse(0, h * 0.42, w + g, h * 0.42 + g, colour)
        c.ellipse(0, h * 0.72, w * 0.8 + g, h * 0.22 + g, colour)
        for side in (-1, 1):  # ears
            c.triangle(
                side * (w * 0.75 + g),
                h * 0.8,
                side * (w * 0.15 - g),
                h * 0.88,
                side * w * 0.6,
                h + 0.12 + g,
                colour,
            )
    else:  # tall
        c.ellipse(0, h * 0.5, w + g, h * 0.5 + g, colour)
        c.ellipse(0, h * 0.82, w * 1.05 + g, w * 1.05 + g, colour)


def _pattern(c: Canvas, identity: Identity, h: float, w: float, body) -> None:
    if identity.pattern == "plain":
        return
    darker = tuple(v / 255 * 0.55 for v in body) + (1.0,)
    lighter = tuple(min(1.0, v / 255 * 0.5 + 0.5) for v in body) + (1.0,)
    mark = lighter if sum(body) < 0.4 * 3 * 255 else darker  # always visible on the body
    inside = _inside_fn(identity.shape, h, w)
    if identity.pattern == "striped":

        def stripes(x, y):
            return inside(x, y) & ((y / h * 6) % 1.0 < 0.42) & (y < h * 0.72)

        c.fill(stripes, (-w, w, 0, h), mark)
    else:  # spotted

        def spots(x, y):
            row = np.floor(y / (h * 0.2))
            # alternate rows are offset by half a spot, so spots never line up like straps
            u = (x / (w * 0.55) + 0.5 * (row % 2)) % 1.0 - 0.5
            v = (y / (h * 0.2)) % 1.0 - 0.5
            return inside(x, y) & (u * u + v * v < 0.13) & (y < h * 0.72)

        c.fill(spots, (-w, w, 0, h), mark)


def _inside_fn(shape: str, h: float, w: float):
    if shape == "boxy":
        return lambda x, y: (np.abs(x) < w * 0.85) & (y > 0.05) & (y < h * 0.95)
    return lambda x, y: ((x / (w * 0.85)) ** 2 + ((y - h * 0.45) / (h * 0.42)) ** 2) < 1


def _face(c: Canvas, identity: Identity, pose: Pose, h: float, w: float) -> None:
    eye_y = h * (0.8 if identity.shape == "tall" else 0.68)
    r = 0.055 if identity.shape != "small" else 0.06
    look = 0.35 * w * pose.facing
    if identity.accessory == "glasses":
        dark_body = sum(RGB[identity.colour]) < 0.4 * 3 * 255
        frame = (*(rgb(235, 235, 235) if dark_body else ACCESSORY_COLOURS["glasses"]), 1.0)
        c.rect(-w * 1.08, eye_y - 0.03, w * 1.08, eye_y + 0.03, frame)
    for side in (-1, 1):
        ex = side * w * 0.38 + look
        c.ellipse(ex, eye_y, r, r * 1.15, (*EYE_WHITE, 1.0))
        c.ellipse(ex + 0.025 * pose.facing, eye_y, r * 0.5, r * 0.6, (*PUPIL, 1.0))
    if identity.accessory == "glasses":  # thick rims on a band: readable from afar
        for side in (-1, 1):
            ex = side * w * 0.38 + look
            c.fill(
                lambda x, y, ex=ex: np.abs(np.hypot(x - ex, y - eye_y) - r * 1.55) < 0.032,
                (ex - r * 2.2, ex + r * 2.2, eye_y - r * 2.2, eye_y + r * 2.2),
                frame,
            )
    mouth_y = eye_y - 0.16 * h
    height = 0.05 if pose.mouth else 0.012
    c.ellipse(look * 0.8, mouth_y, 0.06, height, (*PUPIL, 1.0))


def _arm(c: Canvas, identity: Identity, pose: Pose, h: float, w: float, colour) -> None:
    if pose.arm == 0:
        return
    side = pose.facing or 1
    x0, y0 = side * w * 0.8, h * 0.5
    x1, y1 = (side * (w + 0.22), h * 0.75) if pose.arm == 1 else (side * (w + 0.08), h + 0.1)
    for grow, paint in ((0.03, (*OUTLINE, 1.0)), (0.0, colour)):
        c.fill(
            lambda x, y, g=grow: _segment_distance(x, y, x0, y0, x1, y1) < 0.045 + g,
            (min(x0, x1) - 0.1, max(x0, x1) + 0.1, min(y0, y1) - 0.1, max(y0, y1) + 0.1),
            paint,
        )


def _backpack(c: Canvas, x: float, h: float, w: float) -> None:
    colour = (*ACCESSORY_COLOURS["backpack"], 1.0)
    c.rect(x - 0.12, h * 0.25, x + 0.12, h * 0.65, (*OUTLINE, 1.0))
    c.rect(x - 0.1, h * 0.27, x + 0.1, h * 0.63, colour)


def _accessory(c: Canvas, accessory: str, h: float, w: float, pose: Pose) -> None:
    top = h
    if accessory == "backpack":  # straps across the front, so it shows from any side
        for x in (-w * 0.45, w * 0.45):
            c.rect(x - 0.035, h * 0.22, x + 0.035, h * 0.62, (*OUTLINE, 1.0))
            c.rect(x - 0.02, h * 0.23, x + 0.02, h * 0.61, (*ACCESSORY_COLOURS["backpack"], 1.0))
    elif accessory == "hat":
        colour = (*ACCESSORY_COLOURS["hat"], 1.0)
        c.rect(-0.24, top - 0.03, 0.24, top + 0.02, colour)  # brim
        c.rect(-0.14, top, 0.14, top + 0.2, colour)
        c.rect(-0.14, top + 0.03, 0.14, top + 0.06, rgb(220, 40, 40) + (1.0,))  # band
    elif accessory == "crown":
        colour = (*ACCESSORY_COLOURS["crown"], 1.0)
        c.rect(-0.16, top - 0.02, 0.16, top + 0.07, colour)
        for x in (-0.13, 0.0, 0.13):
            c.triangle(x - 0.05, top + 0.06, x + 0.05, top + 0.06, x, top + 0.19, colour)
    elif accessory == "scarf":
        y = h * 0.52
        c.rect(-w * 1.05, y - 0.05, w * 1.05, y + 0.05, (*OUTLINE, 1.0))
        c.rect(-w, y - 0.035, w, y + 0.035, (*ACCESSORY_COLOURS["scarf"], 1.0))
        tail = -(pose.facing or 1) * w * 0.6
        c.rect(tail - 0.04, y - 0.2, tail + 0.04, y, (*ACCESSORY_COLOURS["scarf"], 1.0))


def _segment_distance(x, y, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))
