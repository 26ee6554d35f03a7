"""Layered decoding: each character of a keyframe moves as one rigid layer.

The flow autoencoder's motion latent is a coarse flow field (4 x 4 pixels a cell at 64 x 64),
upsampled smoothly. Where a character moves against a still background the true flow jumps
at the character's outline, and a smooth field cannot: the character stretches, its edges
smear into the background, and sampled flows bend it further. Layered decoding keeps the
latent as the description of *where things go* and draws each frame from layers instead:

1. the background: the keyframe with its characters painted out (`inpaint`), moved by the
   flow and blended with the autoencoder's fill as before;
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

from reelsmith.renderer.motion import FlowAutoencoder

MIN_HITS = 3  # a character is drawn when at least this many frame pixels come from it
MIN_FIT = 8  # the camera's zoom is fitted when at least this many background pixels show
SCALE_RANGE = (0.8, 1.25)  # per frame, the zoom against the keyframe is at most this
DEFAULT_WOBBLE = 0.5  # pixels


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
    c = images.shape[1]
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


def zoom(sources: torch.Tensor, hits: torch.Tensor) -> float:
    """The scale a of the similarity transform that carries keyframe pixels s to the frame
    pixels q showing them, by least squares over `hits` (the background's pixels: the camera's
    zoom, which every character shares), within `SCALE_RANGE`; 1 with under `MIN_FIT` hits.

    Args:
        sources: (2, H, W) keyframe coordinates of every frame pixel (`FlowAutoencoder.sources`).
        hits: (H, W) bool.
    """
    ys, xs = torch.nonzero(hits, as_tuple=True)
    if len(ys) < MIN_FIT:
        return 1.0
    q = torch.stack([xs, ys]).to(sources.dtype)  # (2, n)
    s = sources[:, ys, xs]
    dq, ds = q - q.mean(1, keepdim=True), s - s.mean(1, keepdim=True)
    spread = (ds**2).sum()
    return float(((dq * ds).sum() / spread).clamp(*SCALE_RANGE)) if spread > 0 else 1.0


def translation(
    sources: torch.Tensor, hits: torch.Tensor, centre: torch.Tensor, a: float
) -> torch.Tensor:
    """The translation d (2,) of q = centre + a (s - centre) + d that carries a character's
    keyframe pixels s to the frame pixels q that show them (`hits`): the median over them,
    robust to the pixels a smooth flow smears across the character's outline."""
    ys, xs = torch.nonzero(hits, as_tuple=True)
    q = torch.stack([xs, ys]).to(sources.dtype)  # (2, n)
    s = sources[:, ys, xs]
    return (q - centre[:, None] - a * (s - centre[:, None])).median(1).values


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
    sources = flow.sources(latents.to(keyframes.dtype), r)  # (N, 2, r, r)
    nearest = sources.round().long()
    inside = ((nearest >= 0) & (nearest < r)).all(1)  # (N, r, r)
    nearest = nearest.clamp(0, r - 1)
    frame_idx = torch.arange(n, device=labels.device)[:, None, None]
    fg = labels > 0
    # a character's core: its pixels away from the background (the flow is most its own there)
    core = torch.where(F.max_pool2d((~fg)[:, None].float(), 3, 1, 1)[:, 0] > 0, 0, labels)

    def at_sources(label_map: torch.Tensor) -> torch.Tensor:  # (N, r, r): label under each source
        found = label_map[frame_idx, nearest[:, 1], nearest[:, 0]]
        return torch.where(inside, found, torch.zeros_like(found))

    from_label, from_core = at_sources(labels), at_sources(core)

    # 1. the background: characters painted out (and a pixel around them), moved and filled
    holes = F.max_pool2d(fg[:, None].float(), 3, 1, 1) > 0  # (N, 1, r, r)
    warped, visible = flow.warp(inpaint(keyframes, holes), latents.to(keyframes.dtype))
    frames = flow.blend(keyframes, warped, visible)

    # 2. the characters, back to front (a lower bottom edge is nearer the camera)
    ys, xs = torch.meshgrid(*(torch.arange(r, device=labels.device),) * 2, indexing="ij")
    grid = torch.stack([xs, ys]).to(keyframes.dtype)  # (2, r, r)
    for i in range(n):
        a = zoom(sources[i], inside[i] & (from_label[i] == 0))
        ids = [int(k) for k in labels[i].unique() if k > 0]
        bottoms = {k: int(ys[labels[i] == k].max()) for k in ids}
        for k in sorted(ids, key=lambda k: (bottoms[k], k)):
            hits = from_core[i] == k
            if int(hits.sum()) < MIN_HITS:
                hits = from_label[i] == k
            if int(hits.sum()) < MIN_HITS:
                continue  # moved out of frame (or hidden): not drawn
            mask = labels[i] == k
            centre = grid[:, mask].mean(1)  # (2,)
            d = translation(sources[i], hits, centre, a)
            # every frame pixel's keyframe pixel under the inverse transform (+ the wobble)
            src = centre[:, None, None] + (grid - centre[:, None, None] - d[:, None, None]) / a
            if wobble > 0:
                src = src + (sources[i] - src).clamp(-wobble, wobble)
            src = src.round().long()
            ok = ((src >= 0) & (src < r)).all(0)
            src = src.clamp(0, r - 1)
            show = ok & mask[src[1], src[0]]
            frames[i][:, show] = keyframes[i][:, src[1][show], src[0][show]]
    return frames
