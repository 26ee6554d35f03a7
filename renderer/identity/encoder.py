"""The identity encoder: a character's portrait or crop -> a unit-length identity embedding.

This is what memory stores per character (under the encoder name `ENCODER`) and what the
keyframe decoder and the planner read as a character's identity. It is trained contrastively
(`python -m reelsmith.training identity`): a crop of a character from a keyframe and the
portrait of the same identity are pulled together, every other identity in the batch pushed
apart. Identities held out of training still separate; the shipped weights' retrieval accuracy
on them is in `renderer/weights/identity/train_log.json`.

Images are uint8 (H, W, 3) arrays of any size; they are resized to `config.resolution`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from reelsmith.renderer import shipped
from reelsmith.renderer.loading import load_model

ENCODER = "reelsmith-identity-v1"
WEIGHTS = shipped.IDENTITY


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU())


def crop_body(width: int) -> nn.Sequential:
    """The small CNN over a character's crop: (B, 3, r, r) -> (B, 4 * width) pooled features
    (the identity encoder's, and the looks reader's)."""
    w = width
    return nn.Sequential(
        _block(3, w, 1),
        _block(w, w, 2),
        _block(w, 2 * w, 1),
        _block(2 * w, 2 * w, 2),
        _block(2 * w, 4 * w, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class IdentityEncoder(ModelMixin, ConfigMixin):
    """A small CNN: (B, 3, r, r) in [-1, 1] -> (B, dim) unit vectors."""

    @register_to_config
    def __init__(self, resolution: int = 32, width: int = 48, dim: int = 64) -> None:
        super().__init__()
        self.body = crop_body(width)
        self.project = nn.Linear(4 * width, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.body(pixels)), dim=-1)

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """uint8 images (each (H, W, 3), any size) -> (N, dim) float32 embeddings on the CPU."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        pixels = torch.stack([to_pixels(image, self.config.resolution) for image in images])
        return self(pixels.to(self.device, self.dtype)).float().cpu()


def to_pixels(image: np.ndarray, resolution: int) -> torch.Tensor:
    """One uint8 (H, W, 3) image -> (3, r, r) float in [-1, 1], area-resized."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"an identity image must be uint8 (H, W, 3); got {image.dtype} {tuple(image.shape)}"
        )
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0
    if x.shape[1:] != (resolution, resolution):
        x = F.interpolate(x[None], (resolution, resolution), mode="area")[0]
    return x


def crop_boxes(frames: torch.Tensor, boxes: torch.Tensor, resolution: int) -> torch.Tensor:
    """Square crops of characters: uint8 frames (B, H, W, 3) and boxes (B, 4) as x0, y0, x1, y1
    in pixels -> (B, 3, r, r) in [-1, 1]. The square is 1.1x the box's longer side."""
    b, h, w = frames.shape[:3]
    x0, y0, x1, y1 = boxes.float().unbind(-1)
    side = torch.maximum(torch.maximum(x1 - x0, y1 - y0), torch.full_like(x0, 4.0)) * 1.1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    zero = torch.zeros_like(side)
    theta = torch.stack(
        [
            torch.stack([side / w, zero, 2 * cx / w - 1], -1),
            torch.stack([zero, side / h, 2 * cy / h - 1], -1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [b, 3, resolution, resolution], align_corners=False)
    pixels = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return F.grid_sample(pixels, grid, align_corners=False, padding_mode="border")


def load_identity_encoder(path: str | Path | None = None) -> IdentityEncoder:
    """The identity encoder from a `save_pretrained` folder; the shipped one by default."""
    return load_model(IdentityEncoder, path, WEIGHTS, "identity encoder")
