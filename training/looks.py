"""Train the looks reader (`renderer.identity.looks.LooksReader`) on storyworld keyframes:
every trait of a character's crop classified against the identity's true looks.

    python -m reelsmith.training looks --out OUT [--data DATA] [--device cpu]

Its held-out numbers are the share of other keyframes' exact crops read right, per trait and
in all four at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reelsmith.renderer.identity.encoder import crop_boxes
from reelsmith.renderer.identity.looks import LooksReader
from reelsmith.schema.looks import all_identities
from reelsmith.training.common import (
    RunOptions,
    finish,
    lr_at,
    run_record,
    save_half,
    set_lr,
    start_run,
)
from reelsmith.training.config import Datasets, as_dict
from reelsmith.training.data import jittered_boxes, load_keyframe_sets
from reelsmith.world.dataset import DatasetSpec


@dataclass(frozen=True)
class LooksModelConfig:
    """`LooksReader`'s sizes (the identity encoder's body with a softmax per trait)."""

    resolution: int = 32  # crops are scaled to this square before reading
    width: int = 48  # channels of the first conv block


@dataclass(frozen=True)
class LooksTrainConfig:
    """The classification run."""

    seed: int = 0  # torch's seed: initial weights and every draw of the run
    steps: int = 1500  # optimiser steps (15 minutes on a 2-core CPU)
    batch: int = 256  # crops per step, drawn uniformly from every character of the data
    lr: float = 0.002  # peak AdamW learning rate, after warmup, decayed by a cosine to 0
    weight_decay: float = 0.0001  # AdamW's
    warmup: int = 100  # steps of linear warmup
    jitter: float = 0.2  # boxes are moved by up to this share of their size
    soft: float = 0.5  # this share of crops is scaled to 3/4 and back: as blurred as drawn


@dataclass(frozen=True)
class LooksRunConfig:
    """One looks-reader run: its datasets, the reader's sizes and the training."""

    data: Datasets = Datasets(
        train=DatasetSpec(kind="keyframes", count=40_960, seed=5, shard_size=4096),
        held_out=DatasetSpec(kind="keyframes", count=4096, seed=7777, shard_size=2048),
    )
    model: LooksModelConfig = LooksModelConfig()
    train: LooksTrainConfig = LooksTrainConfig()


PRESETS = {"looks": LooksRunConfig()}  # the shipped reader's run


def trait_table(reader: LooksReader) -> torch.Tensor:
    """(1080, traits) each identity's value index per trait, in the reader's vocabulary."""
    looks = [identity.to_dict() for identity in all_identities()]
    return torch.stack(list(reader.labels(looks).values()), -1)


def train_looks(
    config: LooksRunConfig, data: dict, held: dict, device, log
) -> tuple[LooksReader, dict]:
    """Every trait of a character's crop as a softmax over its values. Boxes are jittered by
    `train.jitter` of their size; `train.soft` of the crops are scaled down by a quarter and
    back up, as blurred as a figure the keyframe decoder draws."""
    t = config.train
    model = LooksReader(**as_dict(config.model)).to(device)
    res = model.config.resolution
    table = trait_table(model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    objects, images = data["objects"].to(device), data["images"].to(device)
    g = torch.Generator(device=device).manual_seed(t.seed)
    losses = []
    for step in range(t.steps):
        set_lr(opt, lr_at(step, t.steps, t.lr, t.warmup))
        rows = torch.randint(0, len(objects), (t.batch,), device=device, generator=g)
        o = objects[rows]
        crops = crop_boxes(images[o[:, 0].long()], jittered_boxes(o, t.jitter, g), res)
        soft = torch.rand(len(crops), device=device, generator=g) < t.soft
        small = F.interpolate(crops, scale_factor=0.75, mode="bilinear", antialias=True)
        crops = torch.where(
            soft[:, None, None, None], F.interpolate(small, size=res, mode="bilinear"), crops
        )
        labels = table[o[:, 5].long()]
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(crops)
        loss = sum(F.cross_entropy(x.float(), labels[:, k]) for k, x in enumerate(logits.values()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == t.steps - 1:
            log(f"looks step {step} loss {loss.item():.4f}")
    model.eval()
    numbers = evaluate_looks(model, held, table, device)
    log(f"looks held-out: {json.dumps(numbers)}")
    return model, {"losses": losses[:: max(1, len(losses) // 200)], "held_out": numbers}


@torch.no_grad()
def evaluate_looks(model: LooksReader, held: dict, table: torch.Tensor, device) -> dict:
    """Per trait, the share of held-out crops (exact boxes) read right, and of all four."""
    o = held["objects"].to(device)
    crops = crop_boxes(
        held["images"].to(device)[o[:, 0].long()], o[:, 1:5], model.config.resolution
    )
    logits = [model(chunk) for chunk in crops.split(512)]
    labels = table[o[:, 5].long()]
    right = torch.stack(
        [
            torch.cat([x[name] for x in logits]).argmax(-1) == labels[:, k]
            for k, name in enumerate(model.traits)
        ],
        -1,
    )
    out = {"crops": len(o), "all_traits": float(right.all(-1).float().mean())}
    out.update({name: float(right[:, k].float().mean()) for k, name in enumerate(model.traits)})
    return out


def run(config: LooksRunConfig, options: RunOptions) -> None:
    """`python -m reelsmith.training looks`: build the data, train, write OUT."""
    device, log = start_run(options, config.train.seed)
    data, held = load_keyframe_sets(options, config.data, 4, log)
    model, record = train_looks(config, data, held, device, log)
    save_half(model, options.out)
    record.update(run_record(config, log, device))
    finish(options.out, record, log)
