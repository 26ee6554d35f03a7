"""The storyworld's places: eight locations under three times of day.

Each location is painted once per (location, time, layout seed) as a panorama wider than any
frame, in depth layers (sky, far, middle, ground, near props); the camera then looks at a
window of it. The layout seed places the props, so two shots of one scene look at the same
place, and every location has its own palette and props so two places never look alike.
"""

from __future__ import annotations

import functools
import random

import numpy as np

from reelsmith.schema.screenplay import TimeOfDay
from reelsmith.world.canvas import Canvas, rgb

PANORAMA_HALF_WIDTH = 1.8  # world units either side of 0; a wide shot sees 1.0
HEIGHT = 1.0
HORIZON = 0.42
INDOOR = {"living room", "space station"}

SKY = {
    TimeOfDay.day: (rgb(150, 200, 240), rgb(70, 140, 225)),
    TimeOfDay.dusk: (rgb(250, 160, 90), rgb(90, 60, 130)),
    TimeOfDay.night: (rgb(25, 30, 70), rgb(5, 8, 25)),
}
LIGHT = {
    TimeOfDay.day: (1.0, 1.0, 1.0),
    TimeOfDay.dusk: (0.95, 0.78, 0.7),
    TimeOfDay.night: (0.42, 0.48, 0.72),
}
INDOOR_LIGHT = {
    TimeOfDay.day: (1.0, 1.0, 1.0),
    TimeOfDay.dusk: (0.95, 0.85, 0.75),
    TimeOfDay.night: (0.7, 0.62, 0.5),
}


def light_for(location: str, time: TimeOfDay) -> tuple[float, float, float]:
    """The light that falls on characters in this place at this time."""
    table = INDOOR_LIGHT if location in INDOOR else LIGHT
    r, g, b = table[time]
    # characters keep most of their colour so that they stay recognisable at night
    return (0.5 + 0.5 * r, 0.5 + 0.5 * g, 0.5 + 0.5 * b)


@functools.lru_cache(maxsize=64)
def panorama(location: str, time: TimeOfDay, seed: int, px_per_unit: int) -> np.ndarray:
    """The painted place, (H, W, 3) float32 in [0, 1]; cached, so treat it as read-only."""
    canvas = Canvas(-PANORAMA_HALF_WIDTH, 2 * PANORAMA_HALF_WIDTH, HEIGHT, px_per_unit)
    rng = random.Random(f"{location}/{seed}")
    PAINTERS[location](canvas, rng, time)
    canvas.rgb.flags.writeable = False
    return canvas.rgb


# -- shared pieces ---------------------------------------------------------------------


def _sky(c: Canvas, time: TimeOfDay, rng: random.Random, low: float = HORIZON) -> None:
    bottom, top = SKY[time]
    c.vgradient(low, HEIGHT, bottom, top)
    if time is TimeOfDay.night:
        for _ in range(int(60 * c.width)):
            x = rng.uniform(c.x0, c.x0 + c.width)
            y = rng.uniform(low + 0.08, HEIGHT)
            c.rect(x, y, x + 0.008, y + 0.008, rgb(240, 240, 210))
        c.ellipse(0.9, 0.85, 0.06, 0.06, rgb(235, 235, 210))
    elif time is TimeOfDay.dusk:
        c.ellipse(-0.6, low + 0.04, 0.11, 0.11, rgb(255, 200, 90))
    else:
        c.ellipse(-1.1, 0.86, 0.07, 0.07, rgb(255, 240, 150))


def _spread(rng: random.Random, c: Canvas, count: int, margin: float = 0.05) -> list[float]:
    """`count` x positions spread over the panorama, jittered."""
    step = c.width / count
    return [c.x0 + step * (i + 0.5) + rng.uniform(-0.35, 0.35) * step for i in range(count)]


def _outdoor(c: Canvas, time: TimeOfDay, ground_near, ground_far) -> None:
    c.vgradient(0.0, HORIZON, ground_near, ground_far)


# -- the eight locations ---------------------------------------------------------------


def _forest(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    _sky(c, time, rng)
    for x in _spread(rng, c, 9):  # far hills
        c.ellipse(x, HORIZON, rng.uniform(0.3, 0.5), rng.uniform(0.12, 0.2), rgb(60, 110, 70))
    _outdoor(c, time, rgb(70, 125, 50), rgb(95, 150, 70))
    for x in _spread(rng, c, 11):  # trees on the middle ground
        h = rng.uniform(0.35, 0.5)
        base = HORIZON - rng.uniform(0.0, 0.06)
        c.rect(x - 0.025, base, x + 0.025, base + h * 0.55, rgb(100, 65, 35))
        c.ellipse(x, base + h * 0.7, rng.uniform(0.1, 0.14), h * 0.32, rgb(30, 100, 45))
    for x in _spread(rng, c, 7):  # bushes in front
        c.ellipse(x, 0.02, rng.uniform(0.08, 0.13), 0.05, rgb(45, 115, 40))
    c.shade(LIGHT[time])


def _beach(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    _sky(c, time, rng, low=HORIZON + 0.08)
    c.rect(c.x0, HORIZON, c.x0 + c.width, HORIZON + 0.08, rgb(40, 120, 190))  # sea
    for x in _spread(rng, c, 18):  # foam
        c.rect(x, HORIZON + 0.01, x + 0.08, HORIZON + 0.018, rgb(220, 240, 250))
    _outdoor(c, time, rgb(240, 215, 150), rgb(225, 200, 140))
    for x in _spread(rng, c, 4):  # palms
        c.rect(x - 0.015, HORIZON - 0.05, x + 0.015, HORIZON + 0.3, rgb(140, 95, 50))
        for dx in (-0.1, 0.1):
            c.triangle(
                x,
                HORIZON + 0.31,
                x + dx,
                HORIZON + 0.24,
                x + dx * 1.4,
                HORIZON + 0.29,
                rgb(50, 150, 60),
            )
    for x in _spread(rng, c, 3):  # striped umbrellas
        c.rect(x - 0.006, 0.05, x + 0.006, 0.25, rgb(90, 90, 90))
        c.triangle(x - 0.12, 0.22, x + 0.12, 0.22, x, 0.3, rgb(230, 60, 60))
    c.shade(LIGHT[time])


def _city(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    _sky(c, time, rng, low=0.3)
    window = rgb(250, 220, 120) if time is TimeOfDay.night else rgb(120, 160, 200)
    x = c.x0
    while x < c.x0 + c.width:  # buildings shoulder to shoulder
        w, h = rng.uniform(0.18, 0.32), rng.uniform(0.45, 0.85)
        tone = rng.choice([rgb(150, 80, 70), rgb(120, 120, 130), rgb(170, 150, 120)])
        c.rect(x, 0.3, x + w - 0.01, 0.3 + h, tone)
        for wx in np.arange(x + 0.03, x + w - 0.04, 0.06):
            for wy in np.arange(0.38, 0.28 + h - 0.04, 0.08):
                c.rect(wx, wy, wx + 0.03, wy + 0.04, window)
        x += w
    c.rect(c.x0, 0.22, c.x0 + c.width, 0.3, rgb(170, 170, 170))  # pavement
    c.rect(c.x0, 0.0, c.x0 + c.width, 0.22, rgb(60, 60, 65))  # road
    for x in np.arange(c.x0, c.x0 + c.width, 0.25):
        c.rect(x, 0.1, x + 0.12, 0.115, rgb(240, 240, 240))
    for x in _spread(rng, c, 5):  # lamp posts
        c.rect(x - 0.006, 0.25, x + 0.006, 0.62, rgb(40, 40, 40))
        c.ellipse(x, 0.63, 0.025, 0.018, rgb(255, 230, 150))
    c.shade(LIGHT[time])


def _desert(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    _sky(c, time, rng)
    for x in _spread(rng, c, 6):  # mesas
        w = rng.uniform(0.15, 0.3)
        c.rect(x - w, HORIZON, x + w, HORIZON + rng.uniform(0.08, 0.16), rgb(180, 100, 60))
    _outdoor(c, time, rgb(230, 170, 90), rgb(215, 160, 95))
    for x in _spread(rng, c, 8):  # dunes
        c.ellipse(x, 0.28, rng.uniform(0.25, 0.4), 0.06, rgb(240, 185, 100))
    for x in _spread(rng, c, 5):  # cacti
        h = rng.uniform(0.15, 0.25)
        c.rect(x - 0.02, 0.25, x + 0.02, 0.25 + h, rgb(50, 130, 60))
        c.rect(x - 0.06, 0.25 + h * 0.5, x - 0.02, 0.25 + h * 0.5 + 0.02, rgb(50, 130, 60))
        c.rect(x - 0.06, 0.25 + h * 0.5, x - 0.04, 0.25 + h * 0.8, rgb(50, 130, 60))
    c.shade(LIGHT[time])


def _snowfield(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    _sky(c, time, rng)
    for x in _spread(rng, c, 6):  # mountains with snow caps
        w, h = rng.uniform(0.3, 0.45), rng.uniform(0.25, 0.4)
        c.triangle(x - w, HORIZON, x + w, HORIZON, x, HORIZON + h, rgb(110, 120, 140))
        c.triangle(
            x - w * 0.3,
            HORIZON + h * 0.7,
            x + w * 0.3,
            HORIZON + h * 0.7,
            x,
            HORIZON + h,
            rgb(245, 248, 255),
        )
    _outdoor(c, time, rgb(235, 240, 250), rgb(210, 220, 235))
    for x in _spread(rng, c, 9):  # pines
        base, h = HORIZON - rng.uniform(0.0, 0.1), rng.uniform(0.15, 0.25)
        c.triangle(x - 0.06, base, x + 0.06, base, x, base + h, rgb(25, 70, 50))
    c.shade(LIGHT[time])


def _living_room(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    c.rect(c.x0, 0.3, c.x0 + c.width, HEIGHT, rgb(225, 200, 160))  # wall
    for x in np.arange(c.x0, c.x0 + c.width, 0.12):  # wallpaper stripes
        c.rect(x, 0.3, x + 0.03, HEIGHT, rgb(210, 180, 140))
    for x in _spread(rng, c, 3):  # windows showing the sky
        sky_low, _ = SKY[time]
        c.rect(x - 0.15, 0.5, x + 0.15, 0.85, rgb(240, 240, 240))
        c.rect(x - 0.13, 0.52, x + 0.13, 0.83, sky_low)
        c.rect(x - 0.005, 0.52, x + 0.005, 0.83, rgb(240, 240, 240))
    c.rect(c.x0, 0.0, c.x0 + c.width, 0.3, rgb(150, 95, 55))  # wooden floor
    for x in np.arange(c.x0, c.x0 + c.width, 0.2):
        c.rect(x, 0.0, x + 0.006, 0.3, rgb(120, 75, 40))
    for x in _spread(rng, c, 3):  # sofas
        c.rect(x - 0.22, 0.28, x + 0.22, 0.42, rgb(160, 50, 60))
        c.rect(x - 0.24, 0.28, x - 0.18, 0.46, rgb(140, 40, 50))
        c.rect(x + 0.18, 0.28, x + 0.24, 0.46, rgb(140, 40, 50))
    for x in _spread(rng, c, 2):  # lamps
        c.rect(x - 0.008, 0.3, x + 0.008, 0.62, rgb(60, 50, 40))
        c.triangle(x - 0.07, 0.6, x + 0.07, 0.6, x, 0.72, rgb(250, 230, 170))
    c.shade(INDOOR_LIGHT[time])


def _space_station(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    c.rect(c.x0, 0.25, c.x0 + c.width, HEIGHT, rgb(70, 80, 100))  # hull wall
    for x in np.arange(c.x0, c.x0 + c.width, 0.3):  # panel seams
        c.rect(x, 0.25, x + 0.01, HEIGHT, rgb(45, 50, 65))
    c.rect(c.x0, 0.9, c.x0 + c.width, 0.92, rgb(60, 230, 230))  # light strip
    for x in _spread(rng, c, 5):  # portholes onto space
        c.ellipse(x, 0.62, 0.1, 0.1, rgb(150, 160, 180))
        c.ellipse(x, 0.62, 0.08, 0.08, rgb(5, 5, 20))
        for _ in range(6):
            sx, sy = x + rng.uniform(-0.05, 0.05), 0.62 + rng.uniform(-0.05, 0.05)
            c.rect(sx, sy, sx + 0.008, sy + 0.008, rgb(240, 240, 255))
    c.rect(c.x0, 0.0, c.x0 + c.width, 0.25, rgb(110, 115, 125))  # deck
    for x in np.arange(c.x0, c.x0 + c.width, 0.15):
        c.rect(x, 0.0, x + 0.01, 0.25, rgb(85, 90, 100))
    for x in _spread(rng, c, 4):  # consoles
        c.rect(x - 0.1, 0.22, x + 0.1, 0.36, rgb(50, 55, 70))
        c.rect(x - 0.08, 0.3, x + 0.08, 0.34, rgb(240, 90, 60))
    c.shade(INDOOR_LIGHT[time])


def _harbour(c: Canvas, rng: random.Random, time: TimeOfDay) -> None:
    _sky(c, time, rng, low=0.5)
    c.rect(c.x0, 0.22, c.x0 + c.width, 0.5, rgb(30, 70, 120))  # water
    for x in _spread(rng, c, 20):
        y = rng.uniform(0.25, 0.48)
        c.rect(x, y, x + 0.05, y + 0.006, rgb(90, 140, 190))
    for x in _spread(rng, c, 4):  # boats with sails
        c.rect(x - 0.12, 0.42, x + 0.12, 0.48, rgb(120, 60, 40))
        c.rect(x - 0.005, 0.48, x + 0.005, 0.7, rgb(80, 60, 40))
        c.triangle(x + 0.01, 0.5, x + 0.01, 0.68, x + 0.12, 0.5, rgb(245, 245, 235))
    c.rect(c.x0, 0.0, c.x0 + c.width, 0.22, rgb(150, 110, 70))  # wooden pier
    for x in np.arange(c.x0, c.x0 + c.width, 0.1):
        c.rect(x, 0.0, x + 0.006, 0.22, rgb(110, 80, 50))
    for x in _spread(rng, c, 4):  # crates and bollards
        c.rect(x - 0.05, 0.15, x + 0.05, 0.25, rgb(180, 130, 60))
        c.rect(x + 0.12, 0.18, x + 0.15, 0.24, rgb(50, 50, 55))
    c.shade(LIGHT[time])


PAINTERS = {
    "forest": _forest,
    "beach": _beach,
    "city street": _city,
    "desert": _desert,
    "snowfield": _snowfield,
    "living room": _living_room,
    "space station": _space_station,
    "harbour": _harbour,
}
