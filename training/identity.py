"""Train the identity encoder (`renderer.identity.encoder.IdentityEncoder`) on storyworld
keyframes: a symmetric InfoNCE loss between character crops and the identities' portraits.

    python -m reelsmith.training identity --out OUT [--data DATA] [--set train.steps=100]

Every tenth identity is held out of training; the held-out numbers are how often a held-out
keyframe's crop finds its own identity's portrait, among all 1,080 and among the held-out ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reelsmith.renderer.identity.encoder import IdentityEncoder, crop_boxes
from reelsmith.training.common import (
    RunOptions,
    finish,
    lr_at,
    run_record,
    save_half,
    set_lr,
    start_run,
    to_pixels,
)
from reelsmith.training.config import Datasets, as_dict
from reelsmith.training.data import jittered_boxes, load_keyframe_sets, portraits
from reelsmith.world.dataset import DatasetSpec


@dataclass(frozen=True)
class IdentityModelConfig:
    """`IdentityEncoder`'s sizes."""

    resolution: int = 32  # crops and portraits are scaled to this square before encoding
    width: int = 48  # channels of the first conv block (doubling at each of its 3 downsamples)
    dim: int = 64  # embedding width: what memory stores per character


@dataclass(frozen=True)
class IdentityTrainConfig:
    """The contrastive training run."""

    seed: int = 0  # torch's seed: initial weights and every draw of the run
    steps: int = 3000  # optimiser steps (35 s on an H100)
    batch: int = 256  # identities per step: each crop's negatives are the other portraits
    lr: float = 0.002  # peak AdamW learning rate, after warmup, decayed by a cosine to 0
    weight_decay: float = 0.0001  # AdamW's
    warmup: int = 200  # steps of linear warmup
    scale: float = 16.0  # the InfoNCE logits' temperature: cosine similarity times this
    hold_out_every: int = 10  # identity i is held out of training where i % this == 0


@dataclass(frozen=True)
class IdentityRunConfig:
    """One identity-encoder run: its datasets, the encoder's sizes and the training."""

    data: Datasets = Datasets(
        train=DatasetSpec(kind="keyframes", count=200_000, seed=1, shard_size=2048),
        held_out=DatasetSpec(kind="keyframes", count=4096, seed=7777, shard_size=2048),
    )
    model: IdentityModelConfig = IdentityModelConfig()
    train: IdentityTrainConfig = IdentityTrainConfig()


PRESETS = {"identity": IdentityRunConfig()}  # the shipped encoder's run


def train_identity(
    config: IdentityRunConfig, data: dict, held: dict, device, log
) -> tuple[IdentityEncoder, dict]:
    """Contrast a random crop of each of `batch` random identities with its portrait."""
    t = config.train
    model = IdentityEncoder(**as_dict(config.model)).to(device)
    res = model.config.resolution
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    gallery = portraits(64).to(device)
    held_out = torch.arange(len(gallery)) % t.hold_out_every == 0
    # the training crops sorted by identity: identity i's are rows starts[i] .. + counts[i]
    objects = data["objects"].to(device)
    train_rows = objects[~held_out.to(device)[objects[:, 5].long()]]
    train_rows = train_rows[train_rows[:, 5].argsort()]
    counts = torch.bincount(train_rows[:, 5].long(), minlength=len(gallery))
    starts = torch.cumsum(counts, 0) - counts
    train_ids = (counts > 0).nonzero()[:, 0]
    images = data["images"].to(device)
    g = torch.Generator(device=device).manual_seed(t.seed)
    losses = []
    for step in range(t.steps):
        set_lr(opt, lr_at(step, t.steps, t.lr, t.warmup))
        pick = train_ids[torch.randperm(len(train_ids), device=device, generator=g)[: t.batch]]
        offset = torch.rand(len(pick), device=device, generator=g) * counts[pick]
        rows = starts[pick] + offset.long().clamp(max=counts[pick] - 1)
        o = train_rows[rows]
        crops = crop_boxes(images[o[:, 0].long()], jittered_boxes(o, 0.2, g), res)
        shift = torch.randint(-4, 5, (2,)).tolist()  # the portraits moved a little
        port = torch.roll(gallery[pick], shifts=shift, dims=(1, 2))
        port_px = F.interpolate(to_pixels(port), (res, res), mode="area")
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            a, b = model(crops).float(), model(port_px).float()
        logits = t.scale * a @ b.T
        target = torch.arange(len(a), device=device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == t.steps - 1:
            log(f"identity step {step} loss {loss.item():.4f}")
    model.eval()
    numbers = evaluate_identity(model, held, gallery, held_out, device)
    log(f"identity held-out: {json.dumps(numbers)}")
    return model, {"losses": losses[:: max(1, len(losses) // 200)], "held_out": numbers}


@torch.no_grad()
def evaluate_identity(model, held: dict, gallery, held_out, device) -> dict:
    """Top-1 retrieval of each held-out keyframe's crops (exact boxes) among the portraits."""
    res = model.config.resolution
    port = F.interpolate(to_pixels(gallery), (res, res), mode="area")
    bank = torch.cat([model(chunk) for chunk in port.split(512)])
    o = held["objects"].to(device)
    crops = crop_boxes(held["images"].to(device)[o[:, 0].long()], o[:, 1:5], res)
    query = torch.cat([model(c) for c in crops.split(512)])
    truth = o[:, 5].long()
    nearest_all = (query @ bank.T).argmax(1)
    out = {"crops": len(o)}
    for name, mask in (
        ("held_out", held_out.to(device)[truth]),
        ("trained", ~held_out.to(device)[truth]),
    ):
        out[f"{name}_crops"] = int(mask.sum())
        if mask.any():  # a tiny held-out set may hold none of one kind
            out[f"{name}_top1_of_1080"] = float((nearest_all[mask] == truth[mask]).float().mean())
    held_ix = held_out.nonzero()[:, 0].to(device)
    mask = held_out.to(device)[truth]
    if mask.any():
        sub = (query[mask] @ bank[held_ix].T).argmax(1)
        out["held_out_top1_among_held_out"] = float((held_ix[sub] == truth[mask]).float().mean())
    out["held_out_identities"] = int(held_out.sum())
    return out


def run(config: IdentityRunConfig, options: RunOptions) -> None:
    """`python -m reelsmith.training identity`: build the data, train, write OUT."""
    device, log = start_run(options, config.train.seed)
    data, held = load_keyframe_sets(options, config.data, 4, log)
    model, record = train_identity(config, data, held, device, log)
    save_half(model, options.out)
    record.update(run_record(config, log, device))
    finish(options.out, record, log)
