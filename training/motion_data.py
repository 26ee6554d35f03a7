"""The shot model's training data: storyworld clips as arrays on the training device, their
motion latents, and windows of them with their conditions (some dropped at random)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.renderer.shots.flow_autoencoder import FlowAutoencoder
from reelsmith.renderer.shots.motion_transformer import phase_features
from reelsmith.schema.encoding import spec_indices
from reelsmith.training.common import to_pixels
from reelsmith.training.data import record_spec
from reelsmith.training.motion_config import MotionStageConfig
from reelsmith.world.dataset import read

ENCODE_BATCH = 512  # frame pairs per flow-encoder call


@dataclass
class Clips:
    """Storyworld clips as arrays; clip i's frame j is frame start[i] + j of its shot."""

    keyframes: torch.Tensor  # (N, r, r, 3) uint8: each shot's first frame
    frames: torch.Tensor  # (N, F, r, r, 3) uint8
    characters: torch.Tensor  # (N, F, r, r) bool: a character covers the pixel (or did at 0)
    start: torch.Tensor  # (N,) long
    shot_frames: torch.Tensor  # (N,) long: frames in the whole shot
    camera: torch.Tensor  # (N,) long: 1 + index in CAMERAS
    slot_spec: torch.Tensor  # (N, S, 6) long: present, 4 looks, action
    slot_identity: torch.Tensor  # (N, S) long: identity index, -1 for none

    def __len__(self) -> int:
        return len(self.keyframes)

    def to(self, device: torch.device) -> Clips:
        """Every array moved to `device` (once, before training: batches are indexed there)."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def load_clips(folder: Path, slots: int) -> Clips:
    """A clips dataset as `Clips`. An item of a `long_shots` dataset holds its shot's
    keyframe first (its record says `clip_start`); otherwise the clip starts at the keyframe."""
    cols: dict[str, list] = {f.name: [] for f in fields(Clips)}
    for item in read(folder):
        r = item["record"]
        images, masks = item["images"], item["masks"] > 0
        long = "clip_start" in r
        frames, frame_masks = (images[1:], masks[1:]) if long else (images, masks)
        spec = spec_indices(record_spec(r), slots)
        ids = [r["identities"][c] for c in r["shot"]["characters"]][:slots]
        cols["keyframes"].append(images[0])
        cols["frames"].append(frames)
        cols["characters"].append(frame_masks | masks[0])
        cols["start"].append(r.get("clip_start", 0))
        cols["shot_frames"].append(max(1, round(r["shot"]["duration"] * r["labels"]["fps"])))
        cols["camera"].append(int(spec[3]))
        cols["slot_spec"].append(spec[4:].view(slots, -1))
        cols["slot_identity"].append(torch.tensor(ids + [-1] * (slots - len(ids))))
    stack = {
        "keyframes": lambda v: torch.from_numpy(np.stack(v)),
        "frames": lambda v: torch.from_numpy(np.stack(v)),
        "characters": lambda v: torch.from_numpy(np.stack(v)),
        "slot_spec": torch.stack,
        "slot_identity": torch.stack,
    }
    return Clips(**{k: stack.get(k, torch.tensor)(v) for k, v in cols.items()})


@torch.no_grad()
def encode_clips(model: FlowAutoencoder, clips: Clips) -> torch.Tensor:
    """Every frame's motion latent relative to its keyframe: (N, F, 3, g, g)."""
    n, f = clips.frames.shape[:2]
    out = []
    for chunk in torch.arange(n * f, device=clips.frames.device).split(ENCODE_BATCH):
        i, j = chunk // f, chunk % f
        out.append(model.encode(to_pixels(clips.keyframes[i]), to_pixels(clips.frames[i, j])))
    return torch.cat(out).view(n, f, *out[0].shape[1:])


def windows(clips: Clips, latents: torch.Tensor, idx, first, offset, frames: int) -> dict:
    """The training inputs of windows: clip idx, frames offset .. offset + frames - 1 of the
    clip (0 for a first clip), with the frame before as context unless `first`."""
    span = offset[:, None] + torch.arange(frames, device=offset.device)  # (B, T)
    return {
        "x0": latents[idx[:, None], span],  # (B, T, 3, g, g)
        "context": latents[idx, (offset - 1).clamp(min=0)],
        "has_context": ~first,
        "phase": phase_features(clips.start[idx] + offset, clips.shot_frames[idx], frames),
        "keyframes": to_pixels(clips.keyframes[idx]),
        "camera": clips.camera[idx],
        "slot_spec": clips.slot_spec[idx].clone(),
        "slot_identity": clips.slot_identity[idx],
    }


def sample_windows(
    clips: Clips, latents: torch.Tensor, firsts: torch.Tensor, t: MotionStageConfig, frames, g
) -> dict:
    """`t.batch` random training windows; `firsts` indexes the clips that start their shot."""
    device, b = latents.device, t.batch
    idx = torch.randint(0, len(clips), (b,), generator=g, device=device)
    first = torch.rand(b, generator=g, device=device) < t.first_clip_fraction
    pick = torch.randint(0, len(firsts), (b,), generator=g, device=device)
    idx = torch.where(first, firsts[pick], idx)
    last = latents.shape[1] - frames  # the latest window start that fits in the clip
    offset = torch.where(first, 0, torch.randint(1, last + 1, (b,), generator=g, device=device))
    return windows(clips, latents, idx, first, offset, frames)


def model_inputs(model, w: dict, embeddings, t: MotionStageConfig | None, g):
    """Conditions of windows `w`; with `t` (training settings) some are dropped at random."""
    b, s = w["slot_spec"].shape[:2]
    spec, camera = w["slot_spec"], w["camera"]
    ids = w["slot_identity"]
    emb = embeddings[ids.clamp(min=0)]
    have = ids >= 0
    if t is not None:
        device = spec.device
        drop_motion = torch.rand(b, generator=g, device=device) < t.drop_motion
        camera = torch.where(drop_motion, 0, camera)
        spec[..., -1] = torch.where(drop_motion[:, None], 0, spec[..., -1])
        drop_looks = torch.rand(b, s, generator=g, device=device) < t.drop_looks
        spec[..., 1:-1] = torch.where(drop_looks[..., None], 0, spec[..., 1:-1])
        keep = torch.rand(b, 1, generator=g, device=device) >= t.drop_identity
        keep = keep & (torch.rand(b, s, generator=g, device=device) >= t.drop_identity_slot)
        have = have & keep
        noise = torch.randn(emb.shape, generator=g, device=device) * t.identity_noise
        emb = F.normalize(emb + noise, dim=-1)
    return model.conditions(
        w["keyframes"], camera, emb, have, spec, w["context"], w["has_context"], w["phase"]
    )
