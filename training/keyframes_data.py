"""What the keyframe pipeline's training draws from: the keyframes with every identity's
portrait mixed in, each pixel's loss weight, and how often each keyframe is drawn."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.training.data import portrait_specs, portraits


def pixel_weights(
    figures: torch.Tensor, character_weight: float, figure_pixels: int = 0, most: float = 4.0
) -> torch.Tensor:
    """The loss weight of every pixel of (N, r, r) figure labels (0 background, else 1 + slot).

    A figure's pixels, and one pixel around them, weigh `character_weight`; with
    `figure_pixels`, a figure of fewer pixels than that weighs 1 + (character_weight - 1) x
    figure_pixels / its pixels, at most `most` times the plain figure weight above 1."""
    out = torch.empty(figures.shape, dtype=torch.float32)
    for start in range(0, len(figures), 4096):  # bounded memory over 200,000 keyframes
        labels = figures[start : start + 4096].long()
        n = len(labels)
        scale = torch.ones(labels.shape)
        if figure_pixels:
            slots = int(labels.max()) + 1
            key = torch.arange(n)[:, None, None] * slots + labels
            area = torch.bincount(key.flatten(), minlength=n * slots)[key].float()
            scale = (figure_pixels / area).clamp(1.0, most)
        w = torch.where(labels > 0, 1 + (character_weight - 1) * scale, torch.ones(()))
        out[start : start + n] = F.max_pool2d(w[:, None], 3, 1, 1)[:, 0]
    return out


def frame_weights(slot_identities: torch.Tensor, several: float) -> torch.Tensor | None:
    """How often each training keyframe is drawn: one of two or more characters (slot
    identities (N, S), -1 where empty) `several` times as often as one of a single character,
    so that their looks learn not to mix; None where all are drawn alike (`several` 1)."""
    if several == 1.0:
        return None
    if several <= 0:
        raise ValueError(f"train.multi_character_weight must be > 0, got {several}")
    crowded = (slot_identities >= 0).sum(1) >= 2  # (N,)
    return torch.where(crowded, several, 1.0)


@dataclass
class TrainingSet:
    """The keyframes and portraits a run draws from, on the training device: rows 0 .. frames - 1
    are the dataset's keyframes, the 1,080 after them every identity's portrait."""

    images: torch.Tensor  # (N + 1080, r, r, 3) uint8
    spec: torch.Tensor  # (N + 1080, 4 + 6S) long, `spec_indices` rows
    identity: torch.Tensor  # (N + 1080, S) long: each slot's identity, -1 where empty
    weights: torch.Tensor | None  # (N + 1080, r, r) float16 per-pixel loss weights; None: all 1
    crowd: torch.Tensor | None  # (N,) how often each keyframe is drawn; None: uniformly
    frames: int  # N

    def draw(self, batch: int, portraits: int, generator: torch.Generator) -> torch.Tensor:
        """(batch,) row indices: batch - portraits keyframes, then `portraits` portraits."""
        device = self.images.device
        frames = (
            torch.randint(0, self.frames, (batch - portraits,), device=device, generator=generator)
            if self.crowd is None
            else torch.multinomial(self.crowd, batch - portraits, True, generator=generator)
        )
        drawn = torch.randint(
            self.frames, len(self.images), (portraits,), device=device, generator=generator
        )
        return torch.cat([frames, drawn])


def training_set(
    data: dict, resolution: int, slots: int, train, device: torch.device, log
) -> TrainingSet:
    """The keyframes of `data` (`load_keyframes`) and every portrait, with the loss weights of
    `train.character_weight` / `figure_pixels` and the draws of `multi_character_weight`."""
    if tuple(data["images"].shape[1:3]) != (resolution, resolution):
        raise InputError(
            f"the data's keyframes are {tuple(data['images'].shape[1:3])} pixels but the model's "
            f"resolution is {resolution}; set data.*.resolution to match"
        )
    images = torch.cat([data["images"], portraits(resolution)]).to(device)
    # loss weight per pixel: characters (and a pixel around them) count `character_weight`
    # times the background, so the small figures' stripes and spots get the model's attention;
    # with `figure_pixels`, a figure smaller than that counts more again (portraits: all 1)
    weights = None
    if train.character_weight != 1.0:
        weights = pixel_weights(data["figures"], train.character_weight, train.figure_pixels)
        weights = F.pad(weights.half(), (0, 0, 0, 0, 0, len(images) - len(weights)), value=1.0)
        weights = weights.to(device)  # (N, r, r)
    spec = torch.cat([data["spec"], portrait_specs(slots)]).to(device)
    alone = torch.cat(  # a portrait: its identity in the first slot, the others empty
        [torch.arange(1080)[:, None], -torch.ones(1080, slots - 1, dtype=torch.long)], 1
    )
    identity = torch.cat([data["identity"], alone]).to(device)
    crowd = frame_weights(data["identity"], train.multi_character_weight)
    if crowd is not None:
        crowd = crowd.to(device)
        log(f"keyframes: keyframes of several characters drawn {train.multi_character_weight}x")
    return TrainingSet(images, spec, identity, weights, crowd, len(data["images"]))
