"""Train the shot model's `CharacterSegmenter` (`renderer.identity.segmenter`) on storyworld
frames.

    python -m reelsmith.training segmenter --out OUT [--init MOTION_PIPELINE_FOLDER]
        [--device cpu] [--set train.max_seconds=300 ...]

1. Data: two `clips` datasets (train and held out, different seeds); every frame of every clip
   with its instance mask, so characters are seen walking, jumping, sitting, under pans and
   zooms, cut by the frame's edge and in front of one another. Targets per pixel: background,
   character, or a character's edge where another character touches it (`segmenter.targets`).
2. Training: cross-entropy with the edge class weighted up (`train.edge_weight`), random
   horizontal flips, AdamW with warmup and cosine decay, until `steps` or `max_seconds`.
3. Held-out numbers: pixel accuracy, the characters' intersection over union, and the share of
   true characters (of at least `MIN_PIXELS` pixels) that one predicted instance covers with an
   IoU of at least 0.5 (`instances_found`).
4. Output: the segmenter's `save_pretrained` folder in float16 in OUT; with `--init`, OUT is
   instead a copy of that motion pipeline with the segmenter added (in OUT/segmenter), which
   the shot renderer then uses for layered decoding (`renderer/shots/layered.py`).
   `train_log.json` and `train.log` beside the segmenter's weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.renderer.identity.segmenter import EDGE, CharacterSegmenter, instances, targets
from reelsmith.renderer.shots.motion_pipeline import load_motion_pipeline
from reelsmith.training.common import (
    RunOptions,
    device_name,
    finish,
    kept,
    lr_at,
    save_half,
    save_pipeline_half,
    set_lr,
    start_run,
    to_pixels,
)
from reelsmith.training.config import Datasets, as_dict
from reelsmith.training.data import build_both
from reelsmith.world.dataset import DatasetSpec, read

MIN_PIXELS = 12  # held-out characters smaller than this are not counted in instances_found


@dataclass(frozen=True)
class SegmenterModelConfig:
    """`CharacterSegmenter`'s sizes (a small U-Net; the defaults are its constructor's)."""

    width: int = 24  # channels at full resolution, doubling at each level down
    depth: int = 3  # levels of downsampling


@dataclass(frozen=True)
class SegmenterTrainConfig:
    """The segmentation run."""

    seed: int = 0  # torch's seed: initial weights and every draw of the run
    steps: int = 20_000  # most steps (the cosine's length)
    batch: int = 128  # frames per step
    lr: float = 0.002  # peak AdamW learning rate, after warmup
    weight_decay: float = 0.01  # AdamW's
    warmup: int = 100  # steps of linear warmup
    edge_weight: float = 4.0  # loss weight of the edge class (where two characters touch)
    max_seconds: float = 270.0  # the run (data included) stops at this many seconds
    log_every: int = 1000  # steps between log lines


@dataclass(frozen=True)
class SegmenterRunConfig:
    """One segmenter run: its clips datasets, the segmenter's sizes and the training."""

    data: Datasets = Datasets(
        train=DatasetSpec(kind="clips", count=8000, seed=61, clip_frames=8, shard_size=250),
        held_out=DatasetSpec(kind="clips", count=256, seed=7761, clip_frames=8, shard_size=128),
    )
    model: SegmenterModelConfig = SegmenterModelConfig(width=16)  # the shipped segmenter
    train: SegmenterTrainConfig = SegmenterTrainConfig()


PRESETS = {"segmenter": SegmenterRunConfig()}  # the shipped segmenter's run, on one H200


def load_frames(folder) -> tuple[torch.Tensor, torch.Tensor]:
    """Every frame of a clips dataset: uint8 (N, r, r, 3) and instance masks (N, r, r)."""
    images, masks = [], []
    for item in read(folder):
        images.append(item["images"])
        masks.append(item["masks"])
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(masks))


@torch.no_grad()
def evaluate(model: CharacterSegmenter, images, masks, device, batch: int = 256) -> dict:
    """Held-out pixel accuracy, character IoU and instances found (module docstring, 3)."""
    model.eval()
    correct = pixels = inter = union = found = total = 0
    for i in range(0, len(images), batch):
        x = to_pixels(images[i : i + batch].to(device))
        m = masks[i : i + batch].to(device).long()
        classes = model(x).argmax(1)
        correct += int((classes == targets(m)).sum())
        pixels += m.numel()
        pred_fg, true_fg = classes > 0, m > 0
        inter += int((pred_fg & true_fg).sum())
        union += int((pred_fg | true_fg).sum())
        labels = instances(classes)
        for j in range(len(m)):
            for k in m[j].unique():
                true = m[j] == k
                if k == 0 or int(true.sum()) < MIN_PIXELS:
                    continue
                total += 1
                best = labels[j][true].mode().values
                if best > 0:
                    pred = labels[j] == best
                    iou = (pred & true).sum() / (pred | true).sum()
                    found += int(iou >= 0.5)
    model.train()
    return {
        "pixel_accuracy": round(correct / pixels, 5),
        "character_iou": round(inter / max(union, 1), 5),
        "instances_found": round(found / max(total, 1), 5),
        "instances": total,
    }


def train_segmenter(model, t: SegmenterTrainConfig, images, masks, device, log) -> int:
    """Train `model` on the frames until `t.steps` or the run's `t.max_seconds`; -> steps run."""
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    weight = torch.ones(3, device=device)
    weight[EDGE] = t.edge_weight
    g = torch.Generator(device=device).manual_seed(t.seed)
    step, losses = 0, []
    while step < t.steps and log.seconds() < t.max_seconds:
        set_lr(opt, lr_at(step, t.steps, t.lr, t.warmup))
        idx = torch.randint(len(images), (t.batch,), generator=g, device=device)
        x, m = to_pixels(images[idx]), masks[idx].long()
        flip = torch.rand(len(idx), generator=g, device=device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        m = torch.where(flip[:, None, None], m.flip(-1), m)
        loss = F.cross_entropy(model(x), targets(m), weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(kept(loss))
        step += 1
        if step % t.log_every == 0:
            log(f"step {step}: loss {torch.stack(losses).mean().item():.4f}")
            losses = []
    return step


def run(config: SegmenterRunConfig, options: RunOptions) -> None:
    """`python -m reelsmith.training segmenter`: build the data, train, write OUT."""
    pipe = load_motion_pipeline(options.init) if options.init is not None else None
    for name in ("train", "held_out"):
        size = getattr(config.data, name).resolution
        if pipe is not None and size != pipe.resolution:
            raise InputError(
                f"data.{name}.resolution is {size} but the motion pipeline {options.init} draws "
                f"{pipe.resolution} x {pipe.resolution} frames"
            )
    torch.manual_seed(config.train.seed)  # the initial weights
    try:
        model = CharacterSegmenter(**as_dict(config.model))
    except (TypeError, ValueError) as exc:
        raise InputError(f"model: {exc}") from None
    device, log = start_run(options, config.train.seed)

    # 1. data
    folders = build_both(options.data, config.data, options.workers, log)
    images, masks = load_frames(folders["train"])
    held_images, held_masks = load_frames(folders["held_out"])
    images, masks = images.to(device), masks.to(device)
    log(f"loaded {len(images)} train and {len(held_images)} held-out frames onto {device}")

    # 2. train
    model.to(device)
    log(f"segmenter: {sum(p.numel() for p in model.parameters()):,} weights")
    step = train_segmenter(model, config.train, images, masks, device, log)
    held = evaluate(model, held_images, held_masks, device)
    log(f"held-out: {json.dumps(held)}")

    # 3. write: the segmenter alone, or the motion pipeline with it
    model.to("cpu")
    if pipe is None:
        save_half(model, options.out)
        where = options.out
    else:
        pipe.register_modules(segmenter=model)
        save_pipeline_half(pipe, options.out)
        where = options.out / "segmenter"
    record = {
        "steps_run": step,
        "held_out": held,
        "data": {n: str(f) for n, f in folders.items()},
        "config": as_dict(config),
        "init": None if options.init is None else str(options.init),
        "commit": log.commit,
        "seconds": round(log.seconds(), 1),
        "device": device_name(device),
    }
    finish(where, record, log)
