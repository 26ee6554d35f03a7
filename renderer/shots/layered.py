"""Layered decoding: each character of a keyframe moves as one rigid layer.

The flow autoencoder's motion latent is a coarse flow field (4 x 4 pixels a cell at 64 x 64),
upsampled smoothly. Where a character moves against a still background the true flow jumps
at the character's outline, and a smooth field cannot: the character stretches, its edges
smear into the background, and sampled flows bend it further. Layered decoding keeps the
latent as the description of *where things go* and draws each frame from layers instead:

1. the background: the keyframe with its characters painted out (`inpaint`), moved by the
   flow of the background alone (within `NEAR` pixels of where a character is or was, the
   smooth flow carries the character's motion too and would drag the background along, so
   there it is painted in from the flow around) and blended with the autoencoder's fill;
2. each character (an instance of `CharacterSegmenter.segment`) is pasted back to front with
   one similarity transform per frame, nearest pixel, so its stripes, spots and outline stay
   exactly the keyframe's: its scale is the camera's zoom (fitted over the background's
   pixels, which a walk does not distort), its translation the median move of the frame
   pixels the flow takes from its mask; `wobble` lets each pixel follow the flow's own
   deviation from the rigid transform by up to that many pixels (a breath, a step).

A character the flow moves wholly out of frame is not drawn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reelsmith.renderer.shots.flow_autoencoder import FlowAutoencoder

MIN_HITS = 3  # a character is drawn when at least this many frame pixels come from it
MIN_FIT = 8  # the camera's zoom is fitted when at least this many background pixels show
SCALE_RANGE = (0.8, 1.25)  # per frame, the zoom against the keyframe is at most this
DEFAULT_WOBBLE = 0.5  # pixels
NEAR = 4  # pixels around a character (one latent cell) where the background's flow is painted in


def inpaint(images: torch.Tensor, holes: torch.Tensor, iterations: int = 64) -> torch.Tensor:
    """Fill holes from the pixels around them, rows first (storyworld's places are bands).

    Args:
        images: (B, C, H, W).
        holes: (B, 1, H, W) bool: the pixels to fill.

    Returns:
        (B, C, H, W): known pixels unchanged; each hole the mean of its known neighbours in a
        1 x 5 window (three passes in four, first) or a 3 x 3 one, ring by ring inwards.
    """
    known = (~holes).to(images.dtype)
    x = images * known
    wide = torch.ones(1, 1, 1, 5, dtype=images.dtype, device=images.device)
    square = torch.ones(1, 1, 3, 3, dtype=images.dtype, device=images.device)
    for i in range(iterations):
        if bool(known.min() > 0):
            break
        k = square if i % 4 == 3 else wide
        pad = (k.shape[-1] // 2,) * 2 + (k.shape[-2] // 2,) * 2
        count = F.conv2d(F.pad(known, pad, mode="replicate"), k)  # (B, 1, H, W)
        total = F.conv2d(F.pad(x, pad, mode="replicate").flatten(0, 1)[:, None], k)
        new = (count > 0) & (known == 0)
        x = torch.where(new, total.view_as(x) / count.clamp(min=1e-6), x)
        known = torch.where(new, torch.ones_like(known), known)
    return x


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of values (..., 2, P) over the pixels P where weights (..., P) are 1."""
    return (values * weights[..., None, :]).sum(-1) / weights.sum(-1).clamp(min=1)[..., None]


def zoom(sources: torch.Tensor, grid: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Per frame, the scale a of the similarity transform that carries keyframe pixels s to
    the frame pixels q showing them, by least squares over the background's pixels (the
    camera's zoom, which every character shares), within `SCALE_RANGE`; 1 where under
    `MIN_FIT` background pixels show.

    Args:
        sources: (N, 2, P) keyframe coordinates of every frame pixel (its own coordinates
            plus `FlowAutoencoder.flow_at`).
        grid: (2, P) every frame pixel's own coordinates.
        background: (N, P) bool: the frame pixels that show the keyframe's background.

    Returns:
        (N,) scales.
    """
    w = background.to(sources.dtype)
    dq = grid[None] - masked_mean(grid[None].expand_as(sources), w)[..., None]  # (N, 2, P)
    ds = sources - masked_mean(sources, w)[..., None]
    spread = (w[:, None] * ds**2).sum((1, 2))
    fit = (w[:, None] * dq * ds).sum((1, 2)) / spread.clamp(min=1e-12)
    ok = (w.sum(1) >= MIN_FIT) & (spread > 0)
    return torch.where(ok, fit.clamp(*SCALE_RANGE), torch.ones_like(fit))


def decode_layered(
    flow: FlowAutoencoder,
    keyframes: torch.Tensor,
    latents: torch.Tensor,
    labels: torch.Tensor,
    wobble: float = DEFAULT_WOBBLE,
) -> torch.Tensor:
    """Frames from keyframes, motion latents and the keyframes' character instances.

    Args:
        flow: The flow autoencoder (its warp, visibility and fill).
        keyframes: (N, 3, r, r) in [-1, 1], one per frame.
        latents: (N, 3, g, g) motion latents.
        labels: (N, r, r) int64 instance labels of each frame's keyframe (0: background).
        wobble: How far (pixels) a character's pixel may follow the flow off its rigid
            transform; 0 moves characters strictly rigidly.

    Returns:
        (N, 3, r, r) frames, unclamped.
    """
    n, _, r, _ = keyframes.shape
    if labels.shape != (n, r, r):
        raise ValueError(f"labels of shape {tuple(labels.shape)} should be {(n, r, r)}")
    device, dtype = labels.device, keyframes.dtype
    ys, xs = torch.meshgrid(*(torch.arange(r, device=device),) * 2, indexing="ij")
    grid = torch.stack([xs, ys]).float().flatten(1)  # (2, P)
    # coordinates in float32 whatever the models run in (bfloat16 cannot tell pixel 63 from 64)
    moved = flow.flow_at(latents.float(), r)  # (N, 2, r, r) the flat warp's own flow
    sources = moved.flatten(2) + grid  # (N, 2, P) keyframe (x, y) of each frame pixel
    ks = torch.arange(1, int(labels.max()) + 1, device=device)  # (K,)
    # 2. the characters first: the background (step 1) needs to know where they will be
    show, flat, bottom = character_layers(sources, grid, labels, ks, wobble, dtype)
    # 1. the background
    frames = background_layer(flow, keyframes, latents, moved, labels > 0, show)
    if len(ks) == 0:
        return frames.view_as(keyframes)
    # back to front: where characters overlap the nearest one (then the higher label) wins
    rank = torch.where(show, (bottom * (len(ks) + 1) + ks)[..., None], -1)  # (N, K, P)
    front = rank.argmax(1, keepdim=True)  # (N, 1, P)
    pick = flat.gather(1, front)[:, 0]  # (N, P) keyframe pixel of the front character
    pasted = keyframes.flatten(2).gather(2, pick[:, None].expand(n, 3, r * r))
    frames = torch.where(show.any(1)[:, None], pasted, frames)
    return frames.view_as(keyframes)


def character_layers(
    sources: torch.Tensor,
    grid: torch.Tensor,
    labels: torch.Tensor,
    ks: torch.Tensor,
    wobble: float,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every character k = 1..K of every frame at once, each moved by one similarity transform.

    Args:
        sources: (N, 2, P) keyframe coordinates of every frame pixel under the flat warp.
        grid: (2, P) every frame pixel's own coordinates.
        labels: (N, r, r) instance labels of each frame's keyframe (0: background).
        ks: (K,) the labels 1..K.
        wobble: How far (pixels) a character's pixel may follow the flow off its transform.
        dtype: The keyframes' dtype.

    Returns:
        show (N, K, P) bool: the frame pixels each character covers; flat (N, K, P): the
        keyframe pixel (flat index) each shows; bottom (N, K): each character's lowest
        keyframe row (nearer the camera), -1 for one not in the keyframe.
    """
    n, r = labels.shape[0], labels.shape[-1]
    p = r * r
    nearest = sources.round().long()
    inside = ((nearest >= 0) & (nearest < r)).all(1)  # (N, P)
    at = nearest[:, 1].clamp(0, r - 1) * r + nearest[:, 0].clamp(0, r - 1)  # (N, P) flat index
    fg = labels > 0
    # a character's core: its pixels away from the background (the flow is most its own there)
    core = torch.where(F.max_pool2d((~fg)[:, None].to(dtype), 3, 1, 1)[:, 0] > 0, 0, labels)
    from_label = torch.where(inside, labels.flatten(1).gather(1, at), 0)  # (N, P)
    from_core = torch.where(inside, core.flatten(1).gather(1, at), 0)
    mask = labels.flatten(1)[:, None] == ks[:, None]  # (N, K, P)
    centre = masked_mean(grid[None, None].expand(n, len(ks), 2, p), mask.float())  # (N, K, 2)
    bottom = torch.where(mask, grid[1], -1).amax(-1)  # (N, K) lowest row: nearer the camera
    hits = from_core[:, None] == ks[:, None]  # (N, K, P)
    few = hits.sum(-1, keepdim=True) < MIN_HITS
    hits = torch.where(few, from_label[:, None] == ks[:, None], hits)
    drawn = hits.sum(-1) >= MIN_HITS  # (N, K): else moved out of frame (or hidden)
    a = zoom(sources, grid, inside & (from_label == 0))[:, None, None, None]  # (N, 1, 1, 1)
    # translation: the median over hits of q - c - a (s - c) (robust to the smear at edges)
    c = centre[..., None]  # (N, K, 2, 1)
    moves = grid - c - a * (sources[:, None] - c)  # (N, K, 2, P)
    d = torch.where(hits[:, :, None], moves, torch.nan).nanmedian(-1).values[..., None]
    # every frame pixel's keyframe pixel under each character's inverse transform (+ wobble)
    src = c + (grid - c - d) / a  # (N, K, 2, P)
    if wobble > 0:
        src = src + (sources[:, None] - src).clamp(-wobble, wobble)
    src = src.round().long()
    ok = ((src >= 0) & (src < r)).all(2)  # (N, K, P)
    flat = src[:, :, 1].clamp(0, r - 1) * r + src[:, :, 0].clamp(0, r - 1)
    show = ok & mask.gather(2, flat) & drawn[..., None]
    return show, flat, bottom


def background_layer(
    flow: FlowAutoencoder,
    keyframes: torch.Tensor,
    latents: torch.Tensor,
    moved: torch.Tensor,
    fg: torch.Tensor,
    show: torch.Tensor,
) -> torch.Tensor:
    """The background of every frame (N, 3, P): the keyframe with its characters (`fg`
    (N, r, r)) painted out, moved by the flow of the background alone. Around where the
    characters are (`show` (N, K, P)) and were, the smooth flow `moved` (N, 2, r, r) carries
    their motion too and would drag the background with them: there it is painted in from
    around."""
    n, r, dtype = len(keyframes), keyframes.shape[-1], keyframes.dtype
    holes = F.max_pool2d(fg[:, None].to(dtype), 3, 1, 1) > 0  # (N, 1, r, r)
    near = (show.any(1).view(n, 1, r, r) | fg[:, None]).float()
    near = F.max_pool2d(near, 2 * NEAR + 1, 1, NEAR) > 0  # (N, 1, r, r)
    flows = inpaint(moved, near)  # (N, 2, r, r) pixels; where nothing is near: the flat flow
    warped, visible = flow.warp(inpaint(keyframes, holes), latents.to(dtype), flows.to(dtype))
    visible = torch.where(near, 1.0, visible)  # the painted-in background is there to show
    return flow.blend(keyframes, warped, visible).flatten(2)  # (N, 3, P)
