"""Train the shot model's `CharacterSegmenter` (renderer/segmenter.py) on storyworld frames.

    python -m reelsmith.world.train segmenter --out OUT [--init MOTION_PIPELINE_FOLDER]
        [--device cpu] [--config world/configs/segmenter.json --set train.max_seconds=300 ...]

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
   the shot renderer then uses for layered decoding (`renderer/layered.py`). `train_log.json`
   and `train.log` beside the segmenter's weights.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.renderer.identity.segmenter import EDGE, CharacterSegmenter, instances, targets
from reelsmith.renderer.shots.motion_pipeline import load_motion_pipeline
from reelsmith.world.dataset import read
from reelsmith.world.train import (
    build_data,
    load_config,
    lr_at,
    save_half,
    set_lr,
    start_run,
    to_pixels,
)
from reelsmith.world.train_motion import save_pipeline_half

MIN_PIXELS = 12  # held-out characters smaller than this are not counted in instances_found


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


def run(args: argparse.Namespace) -> None:
    """`python -m reelsmith.world.train segmenter`: build the data, train, write OUT."""
    cfg = load_config("segmenter", args.config, args.set)
    pipe = load_motion_pipeline(args.init) if args.init is not None else None
    for name, spec in cfg["data"].items():
        size = spec.get("resolution", 64)
        if pipe is not None and size != pipe.resolution:
            raise InputError(
                f"data.{name}.resolution is {size} but the motion pipeline {args.init} draws "
                f"{pipe.resolution} x {pipe.resolution} frames"
            )
    torch.manual_seed(cfg["train"]["seed"])  # the initial weights
    try:
        model = CharacterSegmenter(**cfg["model"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"model: {exc}") from None
    device, log = start_run(args, cfg["train"]["seed"])
    t = cfg["train"]

    # 1. data
    folders = {n: build_data(args.data, cfg["data"][n], args.workers, log) for n in cfg["data"]}
    images, masks = load_frames(folders["train"])
    held_images, held_masks = load_frames(folders["held_out"])
    images, masks = images.to(device), masks.to(device)
    log(f"loaded {len(images)} train and {len(held_images)} held-out frames onto {device}")

    # 2. train
    model.to(device)
    log(f"segmenter: {sum(p.numel() for p in model.parameters()):,} weights")
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    weight = torch.ones(3, device=device)
    weight[EDGE] = t["edge_weight"]
    g = torch.Generator(device=device).manual_seed(t["seed"])
    step, losses = 0, []
    while step < t["steps"] and log.seconds() < t["max_seconds"]:
        set_lr(opt, lr_at(step, t["steps"], t["lr"], t["warmup"]))
        idx = torch.randint(len(images), (t["batch"],), generator=g, device=device)
        x, m = to_pixels(images[idx]), masks[idx].long()
        flip = torch.rand(len(idx), generator=g, device=device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        m = torch.where(flip[:, None, None], m.flip(-1), m)
        loss = F.cross_entropy(model(x), targets(m), weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())
        step += 1
        if step % t["log_every"] == 0:
            log(f"step {step}: loss {torch.stack(losses).mean().item():.4f}")
            losses = []
    held = evaluate(model, held_images, held_masks, device)
    log(f"held-out: {json.dumps(held)}")

    # 3. write: the segmenter alone, or the motion pipeline with it
    model.to("cpu")
    if pipe is None:
        save_half(model, args.out)
        where = args.out
    else:
        pipe.register_modules(segmenter=model)
        save_pipeline_half(pipe, args.out)
        where = args.out / "segmenter"
    record = {
        "steps_run": step,
        "held_out": held,
        "data": {n: str(f) for n, f in folders.items()},
        "config": cfg,
        "init": None if args.init is None else str(args.init),
        "commit": log.commit,
        "seconds": round(log.seconds(), 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    (where / "train_log.json").write_text(json.dumps(record, indent=1), "utf-8")
    log.write(where)
