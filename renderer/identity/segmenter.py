"""`CharacterSegmenter`: which pixels of a keyframe are which character.

The shot model moves each character of a keyframe as one rigid layer (`renderer/layered.py`),
so it needs the keyframe split into characters and background. A small U-Net classifies every
pixel as background, character, or a character's edge where it touches another character; the
connected regions of "character" are the characters (`instances`), and the edges between two
of them go to the nearer one. Trained on storyworld frames and their instance masks
(`python -m reelsmith.training segmenter`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

BACKGROUND, CHARACTER, EDGE = 0, 1, 2  # the classes, in the order of the logits
CLASSES = 3


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(min(8, c_out // 4), c_out), nn.SiLU()
    )


class CharacterSegmenter(ModelMixin, ConfigMixin):
    """Image (B, 3, r, r) in [-1, 1] -> per-pixel class logits (B, 3, r, r).

    A U-Net of `depth` halvings (width w, 2w, 4w, ...), two convolutions a scale, with skips.
    """

    @register_to_config
    def __init__(self, width: int = 24, depth: int = 3) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        chans = [width << k for k in range(depth + 1)]
        self.stem = nn.Sequential(conv_block(3, chans[0]), conv_block(chans[0], chans[0]))
        c = chans
        self.down = nn.ModuleList(  # r / 2^(k+1), width c[k+1]
            nn.Sequential(conv_block(c[k], c[k + 1], 2), conv_block(c[k + 1], c[k + 1]))
            for k in range(depth)
        )
        self.up = nn.ModuleList(  # back up, each with the skip of its scale
            nn.Sequential(conv_block(c[k + 1] + c[k], c[k]), conv_block(c[k], c[k]))
            for k in reversed(range(depth))
        )
        self.head = nn.Conv2d(chans[0], CLASSES, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size, step = images.shape[-1], 1 << self.config.depth
        if size % step:
            raise ValueError(f"images of {size} pixels: the segmenter needs a multiple of {step}")
        x = self.stem(images)
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for up in self.up:
            x = up(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], 1))
        return self.head(x)  # (B, 3, r, r)

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, r, r) in [-1, 1] -> instance labels (B, r, r) int64: 0 background,
        1..n the characters (`instances` of the predicted classes)."""
        return instances(self(images.to(self.dtype)).argmax(1))


def targets(masks: torch.Tensor) -> torch.Tensor:
    """Instance masks (B, r, r) (0 background, k > 0 instance k) -> classes (B, r, r) int64:
    a character pixel is an EDGE when a pixel of another character touches it (8 neighbours)."""
    m = masks.long()
    fg = m > 0
    # the largest and smallest nonzero label among the 3 x 3 neighbours
    big = F.max_pool2d(m[:, None].float(), 3, 1, 1)[:, 0]
    small = -F.max_pool2d(-torch.where(fg, m, m.amax() + 1)[:, None].float(), 3, 1, 1)[:, 0]
    touching = fg & ((big > m) | (small < m))
    classes = torch.full_like(m, BACKGROUND)
    classes[fg] = CHARACTER
    classes[touching] = EDGE
    return classes


def instances(classes: torch.Tensor, max_iterations: int = 256) -> torch.Tensor:
    """Per-pixel classes (B, r, r) -> instance labels (B, r, r) int64 numbered 1..n per image.

    The 8-connected regions of CHARACTER pixels are the instances; EDGE pixels then join the
    instance next to them (a few dilations), the rest stay background.
    """
    b, h, w = classes.shape
    inner = classes == CHARACTER
    # 1. connected components: every pixel takes the largest index in its region
    index = torch.arange(1, h * w + 1, device=classes.device, dtype=torch.float32).view(1, h, w)
    labels = torch.where(inner, index.expand(b, h, w), torch.zeros(()))
    for _ in range(max_iterations):
        grown = torch.where(inner, F.max_pool2d(labels[:, None], 3, 1, 1)[:, 0], labels)
        if torch.equal(grown, labels):
            break
        labels = grown
    # 2. edge pixels join a neighbouring instance
    edge = classes == EDGE
    for _ in range(3):
        todo = edge & (labels == 0)
        if not todo.any():
            break
        labels = torch.where(todo, F.max_pool2d(labels[:, None], 3, 1, 1)[:, 0], labels)
    # 3. number the instances 1..n in each image (in order of their largest pixel index)
    out = torch.zeros((b, h, w), dtype=torch.long, device=classes.device)
    for i in range(b):
        values, inverse = torch.unique(labels[i], return_inverse=True)
        out[i] = inverse if values[0] == 0 else inverse + 1
    return out
