"""Train the judges on storyworld ground truth; reproducible from a commit.

    python -m reelsmith.evaluation.train_judges --out evaluation/weights --data /tmp/judge-data

Builds storyworld clip datasets (frames across whole shots at 4 fps, motion at 8 fps; train
and held-out seeds), trains the frame judge, the identity embedder and the clip encoder,
reports held-out numbers, and writes
`frame.safetensors`, `identity.safetensors`, `clip.safetensors` and `train_log.json` to --out.
Runs on a GPU in minutes; on a CPU too, slowly (use --scale 0.05 for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.evaluation.judges import (
    CAMERAS,
    GRID,
    LOCATIONS,
    SIZES,
    TIMES,
    TRAITS,
    ClipEncoder,
    FrameJudge,
    IdentityEmbedder,
    crops,
    save_judge,
    to_input,
)
from reelsmith.numerics import settle
from reelsmith.schema.looks import Identity
from reelsmith.schema.screenplay import Action
from reelsmith.world.dataset import DatasetSpec, build, read

ACTIONS = tuple(a.value for a in Action)
MIN_PIXELS = 24  # smaller slivers at the frame's edge are neither positives nor negatives


# -- data ---------------------------------------------------------------------------------


def load_clips(folder: Path) -> dict:
    """Stack a clips dataset into arrays plus per-frame detection targets."""
    frames, metas = [], []
    for item in read(folder):
        frames.append(item["images"])
        metas.append(item["record"])
    frames = np.stack(frames)  # (N, T, 64, 64, 3)
    n, t = frames.shape[:2]
    scene = np.array(
        [
            [
                LOCATIONS.index(m["scene"]["location"]),
                TIMES.index(m["scene"]["time"]),
                SIZES.index(m["shot"]["size"]),
                CAMERAS.index(m["shot"]["camera"]),
                ACTIONS.index(m["shot"]["blocking"][0]["action"]) if m["shot"]["blocking"] else 0,
            ]
            for m in metas
        ]
    )  # (N, 5)
    objects = []  # (clip, frame, cx, cy, w, h, shape, colour, accessory, pattern, identity, px)
    for i, m in enumerate(metas):
        for k, visible in enumerate(m["labels"]["frames"][:t]):
            for v in visible:
                x0, y0, x1, y1 = v["box"]
                ident = Identity(**v["identity"])
                traits = [TRAITS[name].index(v["identity"][name]) for name in TRAITS]
                objects.append(
                    [
                        i,
                        k,
                        (x0 + x1) / 2,
                        (y0 + y1) / 2,
                        x1 - x0,
                        y1 - y0,
                        *traits,
                        ident.index,
                        v["pixels"],
                    ]
                )
    return {"frames": frames, "scene": scene, "objects": np.asarray(objects, np.float32)}


def dense_targets(objects: torch.Tensor, slots: torch.Tensor, batch: int) -> dict:
    """Heatmap, ignore mask, centre cells and their targets for a batch of frames.

    objects (M, 12) rows of `load_clips`'s objects, slots (M,) the frame of each in the batch.
    """
    device = objects.device
    heat = torch.zeros(batch, GRID, GRID, device=device)
    ignore = torch.zeros(batch, GRID, GRID, dtype=torch.bool, device=device)
    cx, cy = objects[:, 2] / 4, objects[:, 3] / 4  # grid units
    r = cy.long().clamp(0, GRID - 1)
    c = cx.long().clamp(0, GRID - 1)
    small = objects[:, -1] < MIN_PIXELS
    ignore[slots[small], r[small], c[small]] = True
    keep = ~small
    slots, r, c, cx, cy, objects = slots[keep], r[keep], c[keep], cx[keep], cy[keep], objects[keep]
    centres = torch.arange(GRID, device=device) + 0.5
    g = torch.exp(
        -(
            (centres[None, None, :] - cx[:, None, None]) ** 2
            + (centres[None, :, None] - cy[:, None, None]) ** 2
        )
        / (2 * 0.8**2)
    )
    heat.index_reduce_(0, slots, g, "amax")  # (M, G, G) -> (B, G, G)
    heat[slots, r, c] = 1.0
    return {
        "heat": heat,
        "ignore": ignore,
        "slots": slots,
        "rows": r,
        "cols": c,
        "sizes": objects[:, 4:6] / 64,
        "traits": objects[:, 6:10].long(),
    }


def cosine_lr(opt: torch.optim.Optimizer, peak: float, step: int, steps: int) -> None:
    """Set the learning rate on a cosine decay from `peak` to 0 over `steps`."""
    for group in opt.param_groups:
        group["lr"] = peak * 0.5 * (1 + math.cos(math.pi * step / steps))


def focal_loss(logits, target, ignore) -> torch.Tensor:
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0)
    pos_loss = -((1 - p) ** 2 * p.log())[pos].sum()
    neg_w = (1 - target) ** 4 * (~pos) * (~ignore)
    neg_loss = -(neg_w * p**2 * (1 - p).log()).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1)


# -- training ---------------------------------------------------------------------------


def objects_of(objects: np.ndarray, starts: np.ndarray, frame_ids: np.ndarray):
    """Rows of `objects` (sorted by frame id) for each frame id, and the slot of each row."""
    rows, slots = [], []
    for slot, fid in enumerate(frame_ids):
        lo, hi = starts[fid], starts[fid + 1]
        rows.append(np.arange(lo, hi))
        slots.append(np.full(hi - lo, slot))
    return np.concatenate(rows), np.concatenate(slots)


def train_frame_judge(data, steps, device, log, batch: int = 256) -> FrameJudge:
    model = FrameJudge().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    frames = torch.from_numpy(data["frames"]).to(device)  # (N, T, 64, 64, 3) uint8
    scene = torch.from_numpy(data["scene"]).to(device)
    n, t = frames.shape[:2]
    objects_np = data["objects"]
    frame_of = (objects_np[:, 0] * t + objects_np[:, 1]).astype(np.int64)
    order = np.argsort(frame_of, kind="stable")
    objects_np, frame_of = objects_np[order], frame_of[order]
    starts = np.searchsorted(frame_of, np.arange(n * t + 1))
    objects = torch.from_numpy(objects_np).to(device)
    rng = np.random.default_rng(0)
    for step in range(steps):
        cosine_lr(opt, 2e-3, step, steps)
        frame_ids = rng.integers(0, n * t, batch)
        rows, slots = objects_of(objects_np, starts, frame_ids)
        ids = torch.from_numpy(frame_ids).to(device)
        x = to_input(frames.flatten(0, 1)[ids])
        targets = dense_targets(
            objects[torch.from_numpy(rows).to(device)], torch.from_numpy(slots).to(device), batch
        )
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            dense, glob = model(x)
        heat, size, traits = FrameJudge.split_dense(dense.float())
        loss_heat = focal_loss(heat, targets["heat"], targets["ignore"])
        s, r, c = targets["slots"], targets["rows"], targets["cols"]
        loss = loss_heat + 2.0 * F.l1_loss(size[s, :, r, c], targets["sizes"])
        for k, logits in enumerate(traits):
            loss = loss + F.cross_entropy(logits[s, :, r, c], targets["traits"][:, k])
        for k, logits in enumerate(FrameJudge.split_global(glob.float())):
            loss = loss + F.cross_entropy(logits, scene[ids // t, k])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"frame step {step} loss {loss.item():.4f} heat {loss_heat.item():.4f}")
    return model.eval()


def train_identity(data, steps, device, log, batch: int = 512) -> IdentityEmbedder:
    model = IdentityEmbedder().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    objects = torch.from_numpy(data["objects"][data["objects"][:, -1] >= 60]).to(device)
    frames = torch.from_numpy(data["frames"]).to(device)
    generator = torch.Generator(device=device).manual_seed(1)
    for step in range(steps):
        cosine_lr(opt, 2e-3, step, steps)
        o = objects[torch.randint(0, len(objects), (batch,), device=device, generator=generator)]
        wh = o[:, [4, 5, 4, 5]]
        jitter = (torch.rand(batch, 4, device=device, generator=generator) - 0.5) * 0.2 * wh
        boxes = (
            torch.stack(
                [
                    o[:, 2] - o[:, 4] / 2,
                    o[:, 3] - o[:, 5] / 2,
                    o[:, 2] + o[:, 4] / 2,
                    o[:, 3] + o[:, 5] / 2,
                ],
                -1,
            )
            + jitter
        )
        x = crops(frames[o[:, 0].long(), o[:, 1].long()], boxes)
        loss = F.cross_entropy(model.logits(model(x)), o[:, 10].long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"identity step {step} loss {loss.item():.4f}")
    return model.eval()


def train_clip(data, steps, device, log, clip_len: int = 8) -> ClipEncoder:
    model = ClipEncoder().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    frames = torch.from_numpy(data["frames"]).to(device)
    scene = torch.from_numpy(data["scene"]).to(device)
    n, t = frames.shape[:2]
    sizes = [len(LOCATIONS), len(TIMES), len(SIZES), len(CAMERAS), len(ACTIONS)]
    rng = np.random.default_rng(2)
    for step in range(steps):
        cosine_lr(opt, 1e-3, step, steps)
        i = torch.from_numpy(rng.integers(0, n, 128)).to(device)
        start = int(rng.integers(0, t - clip_len + 1))
        x = to_input(frames[i, start : start + clip_len])  # (B, T, 3, 64, 64)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model.head(model(x)).float()
        loss = sum(F.cross_entropy(z, scene[i, k]) for k, z in enumerate(out.split(sizes, dim=1)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"clip step {step} loss {loss.item():.4f}")
    return model.eval()


# -- held-out numbers -------------------------------------------------------------------


@torch.no_grad()
def evaluate(models, data, clip_data, device) -> dict:
    from reelsmith.evaluation.judges import judge_frames

    frame_model = models["frame"].to(device)
    frames = torch.from_numpy(data["frames"])
    n, t = frames.shape[:2]
    flat = frames.flatten(0, 1)
    verdicts = judge_frames(frame_model, flat)
    scene = data["scene"]
    out = {}
    for k, name in enumerate(("location", "time", "size")):
        pred = [getattr(v, name) for v in verdicts]
        truth = [(LOCATIONS, TIMES, SIZES)[k][scene[j // t, k]] for j in range(n * t)]
        out[f"{name}_accuracy"] = float(np.mean([a == b for a, b in zip(pred, truth, strict=True)]))
    truth_ids: dict = {}
    for o in data["objects"]:
        if o[-1] >= MIN_PIXELS:
            truth_ids.setdefault(int(o[0]) * t + int(o[1]), set()).add(int(o[10]))
    hits = total = false = found = 0
    for j, verdict in enumerate(verdicts):
        want = truth_ids.get(j, set())
        got = {d.identity.index for d in verdict.detections}
        hits += len(want & got)
        total += len(want)
        false += len(got - want)
        found += len(got)
    out["frame_identity_recall"] = hits / max(total, 1)
    out["frame_false_rate"] = false / max(found, 1)
    # identity embedder: nearest identity (class centre) of held-out crops
    embedder = models["identity"].to(device)
    objects = torch.from_numpy(data["objects"][data["objects"][:, -1] >= 60][:4000])
    boxes = torch.stack(
        [
            objects[:, 2] - objects[:, 4] / 2,
            objects[:, 3] - objects[:, 5] / 2,
            objects[:, 2] + objects[:, 4] / 2,
            objects[:, 3] + objects[:, 5] / 2,
        ],
        -1,
    )
    x = crops(frames[objects[:, 0].long(), objects[:, 1].long()], boxes).to(device)
    predicted = embedder.logits(embedder(x)).argmax(1).cpu()
    out["identity_embedder_accuracy"] = float((predicted == objects[:, 10].long()).float().mean())
    # clip encoder: its training head on held-out clips
    encoder = models["clip"].to(device)
    clips = to_input(torch.from_numpy(clip_data["frames"][:512, :8]).to(device))
    heads = (
        encoder.head(encoder(clips))
        .float()
        .cpu()
        .split([len(LOCATIONS), len(TIMES), len(SIZES), len(CAMERAS), len(ACTIONS)], dim=1)
    )
    truth = torch.from_numpy(clip_data["scene"][:512])
    for k, name in enumerate(("location", "time", "size", "camera", "action")):
        out[f"clip_{name}_accuracy"] = float((heads[k].argmax(1) == truth[:, k]).float().mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the reelsmith judges.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("/tmp/judge-data"))
    parser.add_argument("--clips", type=int, default=16000)
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply steps and data.")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    settle()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    started = time.time()

    def log(message: str) -> None:
        line = f"[{time.time() - started:7.1f}s] {message}"
        print(line, flush=True)
        lines.append(line)

    count = max(64, int(args.clips * args.scale))
    # frames at 4 fps cover whole shots (zoom ends, exits) for the frame and identity judges;
    # clips at the native 8 fps teach the clip encoder motion at the speed it will see
    specs = {
        name: DatasetSpec("clips", n, seed=seed, fps=fps, clip_frames=16, shard_size=500)
        for name, n, seed, fps in (
            ("frames-train", count, 1, 4),
            ("frames-held", max(32, count // 10), 2, 4),
            ("clips-train", count, 3, 8),
            ("clips-held", max(32, count // 10), 4, 8),
        )
    }
    for name, spec in specs.items():
        build(spec, args.data / name, workers=args.workers)
    data = {name: load_clips(args.data / name) for name in specs}
    log(f"data: {len(data['frames-train']['frames'])} clips of frames and of motion each")
    # CUDA only after the worker processes are done: forking a CUDA process is unsafe
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps = max(20, int(3000 * args.scale))
    models = {
        "frame": train_frame_judge(data["frames-train"], steps, device, log),
        "identity": train_identity(data["frames-train"], steps, device, log),
        "clip": train_clip(data["clips-train"], steps, device, log),
    }
    numbers = evaluate(models, data["frames-held"], data["clips-held"], device)
    log(f"held-out: {json.dumps(numbers)}")
    for name, model in models.items():
        save_judge(model.cpu(), name, args.out)
    (args.out / "train_log.json").write_text(
        json.dumps(
            {
                "log": lines,
                "held_out": numbers,
                "args": vars(args) | {"out": str(args.out), "data": str(args.data)},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
