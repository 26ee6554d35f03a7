"""A tiny vector canvas over numpy: shapes painted into a float RGB image in world units.

World units: y goes up from 0 (bottom) to `height`; x is centred on 0. Every primitive
touches only the pixels of its bounding box, so painting a scene costs little more than its
area. Edges are hard; the renderer supersamples and averages to anti-alias them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Colour = tuple[float, float, float]


class Canvas:
    """A float32 image (H, W, C) with values in [0, 1], addressed in world units.

    Args:
        x0: World x of the left edge.
        width: World width covered.
        height: World height covered (y from 0 to height).
        px_per_unit: Resolution.
        channels: 3 for RGB, 4 for RGBA (sprites; paint colours then carry alpha).
    """

    def __init__(
        self, x0: float, width: float, height: float, px_per_unit: float, channels: int = 3
    ) -> None:
        self.x0, self.width, self.height, self.scale = x0, width, height, px_per_unit
        self.w = max(1, round(width * px_per_unit))
        self.h = max(1, round(height * px_per_unit))
        self.rgb = np.zeros((self.h, self.w, channels), np.float32)  # (H, W, C)

    # -- coordinates --------------------------------------------------------------------

    def _box(self, x_min: float, x_max: float, y_min: float, y_max: float):
        """Pixel slices and pixel-centre world coordinates of a world-space box."""
        c0 = max(0, int(np.floor((x_min - self.x0) * self.scale)))
        c1 = min(self.w, int(np.ceil((x_max - self.x0) * self.scale)))
        r0 = max(0, int(np.floor((self.height - y_max) * self.scale)))
        r1 = min(self.h, int(np.ceil((self.height - y_min) * self.scale)))
        if c0 >= c1 or r0 >= r1:
            return None
        xs = self.x0 + (np.arange(c0, c1, dtype=np.float32) + 0.5) / self.scale  # (w,)
        ys = self.height - (np.arange(r0, r1, dtype=np.float32) + 0.5) / self.scale  # (h,)
        return slice(r0, r1), slice(c0, c1), xs[None, :], ys[:, None]

    def fill(self, mask_fn: Callable, box: tuple[float, float, float, float], colour) -> None:
        """Paint `colour` where `mask_fn(x, y)` is true inside `box` (x0, x1, y0, y1)."""
        hit = self._box(*box)
        if hit is None:
            return
        rows, cols, x, y = hit
        mask = mask_fn(x, y)
        region = self.rgb[rows, cols]
        region[np.broadcast_to(mask, region.shape[:2])] = colour

    # -- primitives ---------------------------------------------------------------------

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour) -> None:
        hit = self._box(x0, x1, y0, y1)
        if hit is not None:
            self.rgb[hit[0], hit[1]] = colour

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, colour) -> None:
        self.fill(
            lambda x, y: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0,
            (cx - rx, cx + rx, cy - ry, cy + ry),
            colour,
        )

    def triangle(self, ax, ay, bx, by, cx, cy, colour) -> None:
        def inside(x, y):
            d1 = (x - bx) * (ay - by) - (ax - bx) * (y - by)
            d2 = (x - cx) * (by - cy) - (bx - cx) * (y - cy)
            d3 = (x - ax) * (cy - ay) - (cx - ax) * (y - ay)
            neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
            pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
            return ~(neg & pos)

        self.fill(
            inside, (min(ax, bx, cx), max(ax, bx, cx), min(ay, by, cy), max(ay, by, cy)), colour
        )

    def vgradient(self, y0: float, y1: float, bottom, top) -> None:
        """A full-width band from y0 to y1 fading from `bottom` to `top` colour."""
        hit = self._box(self.x0, self.x0 + self.width, y0, y1)
        if hit is None:
            return
        rows, cols, _, y = hit
        t = np.clip((y - y0) / max(y1 - y0, 1e-6), 0, 1)[..., None]  # (h, 1, 1)
        band = (1 - t) * np.asarray(bottom, np.float32) + t * np.asarray(top, np.float32)
        self.rgb[rows, cols] = band

    def shade(self, factor) -> None:
        """Multiply the whole image by an RGB light factor."""
        self.rgb[..., :3] *= np.asarray(factor, np.float32)
        np.clip(self.rgb, 0, 1, out=self.rgb)


def rgb(r: int, g: int, b: int) -> Colour:
    return (r / 255.0, g / 255.0, b / 255.0)
