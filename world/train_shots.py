"""Train the built-in shot renderer (renderer/shot_pipeline.py) on storyworld clips.

    python -m reelsmith.world.train shots --identity memory/weights/identity --out OUT \
        [--config world/configs/shots.json --set train.max_seconds=420 --workers 15]

1. Data: two `clips` datasets (train and held out, different seeds) holding `clip_frames`
   frames per shot (32 at 8 fps: the whole of most storyworld shots, which last 2 to 5 s; a
   shorter shot is padded with its last frame, and windows stay off those frames). With
   `long_shots` a fraction of the shots is stretched to 5-60 s and cut at a random frame
   (`world.dataset.DatasetSpec`), so clips deep into long shots, whose motion is slow, are
   learnt too. Per item: the frames, the shot's keyframe (frame 0), the index in the shot of
   the first frame held, the shot's length in frames, its camera move and per slot (the
   shot's characters in order) the action and the storyworld identity.
2. Training clips: a random window of T = `max_frames` + 1 of a shot's frames held. Its first
   frame is the start frame; the shot's frame 0 is the keyframe. A window starts at the first
   frame held with probability `first_clip_fraction` (for most shots: the shot's first clip,
   start = keyframe), else at any frame from which a whole window fits (clips that continue a
   shot). The start frame gets a little Gaussian noise (`start_noise`): a continuing clip
   starts from a drawn frame, not a true one, and the differences to draw are taken from
   that noisy frame, so the model learns to clean it up. Identity conditions are the identity
   encoder's embeddings of the identities' canonical portraits (as for the keyframe model),
   with noise, each dropped at random; the motion (camera and actions) is dropped at random
   for classifier-free guidance.
3. Loss: v-prediction MSE of the frames' differences from the start frame (times the model's
   `residual_scale`), bf16 autocast on CUDA, optional torch.compile (eager when it fails),
   AdamW with warmup and a cosine decay that ends at `steps` or at `max_seconds`, whichever
   comes first, and an EMA copy that is saved.
4. Evaluation: every `eval_every` steps the held-out v-loss on a fixed batch; at the end, clips
   drawn from held-out ground truth (first clips and clips that continue a shot) against the
   true frames: pixel MSE next to a "repeat the start frame" baseline, and the motion and
   flicker of drawn and true clips (the judges' numbers come from `reelsmith eval`).
5. Output: `save_pretrained` in float16 (`load_shot_pipeline` loads float32), `train_log.json`
   and `train.log`, as for the other models of `world/train.py`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.evaluation.metrics import MOTION_THRESHOLD
from reelsmith.memory.identity import load_identity_encoder
from reelsmith.planner.screenplay import Action
from reelsmith.renderer.shot_model import ACTIONS, CAMERAS, phase_features
from reelsmith.renderer.shot_pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    SCHEDULER,
    ShotPipeline,
    make_pipeline,
)
from reelsmith.world.dataset import MANIFEST, read
from reelsmith.world.train import (
    build_data,
    load_config,
    lr_at,
    portraits,
    set_lr,
    start_run,
    to_pixels,
)

TRAIN_KEYS = {
    "seed",
    "steps",
    "batch",
    "lr",
    "weight_decay",
    "warmup",
    "clip_grad",
    "ema",
    "max_seconds",
    "compile",
    "first_clip_fraction",
    "start_noise",
    "drop_motion",
    "drop_identity",
    "drop_identity_slot",
    "identity_noise",
    "log_every",
    "eval_every",
    "eval_count",
}


# -- data ---------------------------------------------------------------------------------


def load_clips(folder: Path, slots: int) -> dict[str, torch.Tensor]:
    """A clips dataset as tensors: frames (N, C, r, r, 3) and keyframes (N, r, r, 3) uint8,
    and per item `clip_start` (the index in its shot of frame 0), `real` (frames that are the
    shot's own, not padding), `shot_frames`, `camera` and per slot `actions` and `identity`
    (storyworld identity index, -1 where no character)."""
    manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    spec = manifest["spec"]
    n, c, r = manifest["items"], spec["clip_frames"], spec["resolution"]
    keyed = bool(spec.get("long_shots"))  # each item's keyframe comes before its clip
    frames = np.empty((n, c, r, r, 3), np.uint8)  # filled in place: one copy in memory
    keyframes = np.empty((n, r, r, 3), np.uint8)
    rows: dict[str, list] = {k: [] for k in ("start", "real", "length", "camera", "acts", "ids")}
    for k, item in enumerate(read(folder)):
        record = item["record"]
        frames[k] = item["images"][1:] if keyed else item["images"]
        keyframes[k] = item["images"][0]
        shot = record["shot"]
        length = max(1, round(shot["duration"] * spec["fps"]))  # as storyworld stages it
        start = record.get("clip_start", 0)
        acts = {b["character"]: b["action"] for b in shot["blocking"]}
        cast = shot["characters"][:slots]
        pad = slots - len(cast)
        rows["start"].append(start)
        rows["real"].append(max(1, min(c, length - start)))
        rows["length"].append(length)
        rows["camera"].append(CAMERAS.index(shot["camera"]))
        rows["acts"].append(
            [ACTIONS.index(acts.get(cid, Action.idle.value)) for cid in cast] + [0] * pad
        )
        rows["ids"].append([record["identities"][cid] for cid in cast] + [-1] * pad)
    return {
        "frames": torch.from_numpy(frames),
        "keyframes": torch.from_numpy(keyframes),
        "clip_start": torch.tensor(rows["start"]),
        "real": torch.tensor(rows["real"]),
        "shot_frames": torch.tensor(rows["length"]),
        "camera": torch.tensor(rows["camera"]),
        "actions": torch.tensor(rows["acts"], dtype=torch.long).view(n, slots),
        "identity": torch.tensor(rows["ids"], dtype=torch.long).view(n, slots),
    }


def clip_batch(data: dict, items: torch.Tensor, starts: torch.Tensor, length: int) -> dict:
    """Clips of `length` frames from frame `starts` of `items` (both (B,) long): pixels in
    [-1, 1] of the keyframe (B, 3, r, r), start frame (B, 3, r, r) and the frames after it
    (B, length - 1, 3, r, r), and the phase features of those frames."""
    index = starts[:, None] + torch.arange(length, device=starts.device)  # (B, T)
    video = data["frames"][items[:, None], index]  # (B, T, r, r, 3) uint8
    pixels = video.permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0  # (B, T, 3, r, r)
    offsets = data["clip_start"][items] + starts  # the start frames' indices in their shots
    return {
        "keyframe": to_pixels(data["keyframes"][items]),
        "start": pixels[:, 0],
        "frames": pixels[:, 1:],
        "phase": phase_features(offsets, data["shot_frames"][items], length - 1),
    }


def random_starts(data: dict, items, length: int, first_fraction: float, g) -> torch.Tensor:
    """A window start per item (in its stored frames): 0 with probability `first_fraction`,
    else uniform over the windows of the shot's own frames (a shot shorter than a clip: 0,
    with padding after)."""
    last = (data["real"][items] - length).clamp(min=0)  # (B,)
    u = torch.rand(len(items), device=items.device, generator=g)
    starts = (u * (last + 1)).long().clamp(max=last)
    first = torch.rand(len(items), device=items.device, generator=g) < first_fraction
    return torch.where(first, 0, starts)


# -- training -----------------------------------------------------------------------------


def condition_inputs(data: dict, items, embeddings, t: dict, g, train: bool = True) -> dict:
    """The condition encoder's inputs for `items`; with `train`, noised and dropped."""
    ids = data["identity"][items]  # (B, S)
    b, s = ids.shape
    device = ids.device
    emb = embeddings[ids.clamp(min=0)]  # (B, S, D)
    present = ids >= 0
    keep_identity, keep_motion = present, torch.ones(b, dtype=torch.bool, device=device)
    if train:
        noise = torch.randn(emb.shape, device=device, generator=g)
        emb = F.normalize(emb + t["identity_noise"] * noise, dim=-1)
        r = torch.rand(b, 2, device=device, generator=g)
        keep_slot = torch.rand(b, s, device=device, generator=g) >= t["drop_identity_slot"]
        keep_identity = present & (r[:, :1] >= t["drop_identity"]) & keep_slot
        keep_motion = r[:, 1] >= t["drop_motion"]
    return {
        "identities": emb,
        "actions": data["actions"][items],
        "camera": data["camera"][items],
        "present": present,
        "keep_identity": keep_identity,
        "keep_motion": keep_motion,
    }


def train_shots(cfg: dict, data: dict, held: dict, embeddings, device, log):
    """Train on clips of `data`; -> the trained pipeline (the EMA copy) and its record."""
    from diffusers import DDPMScheduler

    t = cfg["train"]
    pipe = make_pipeline(**cfg["model"])
    parts = torch.nn.ModuleDict(
        {"condition_encoder": pipe.condition_encoder, "transformer": pipe.transformer}
    ).to(device)
    ema = copy.deepcopy(parts).eval().requires_grad_(False)
    params = list(parts.parameters())
    groups = [  # no weight decay on biases, norms, tables and the learned null vectors
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": t["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=t["lr"], betas=(0.9, 0.99))
    noise_sched = DDPMScheduler(
        num_train_timesteps=SCHEDULER["num_train_timesteps"],
        beta_schedule=SCHEDULER["beta_schedule"],
        prediction_type=SCHEDULER["prediction_type"],
    )
    length = pipe.native_frames
    forward = parts["transformer"]
    if t["compile"] and device.type == "cuda":
        forward = torch.compile(parts["transformer"])
    g = torch.Generator(device=device).manual_seed(t["seed"])
    n_items, b, steps, max_seconds = len(data["real"]), t["batch"], t["steps"], t["max_seconds"]
    weights = sum(p.numel() for p in params)
    log(f"shots: {weights:,} weights, clips of {length} frames, {n_items} train shots")
    fixed = held_out_batch(held, length, min(t["eval_count"], len(held["real"])), t["seed"])
    losses, evals, running, started = [], [], torch.zeros((), device=device), time.time()

    scale = pipe.transformer.config.residual_scale

    def model_loss(model, batch: dict, conditions: dict, noise, steps_t) -> torch.Tensor:
        x0 = (batch["frames"] - batch["start"][:, None]) * scale  # (B, T - 1, 3, r, r)
        xt = noise_sched.add_noise(x0, noise, steps_t)
        v = noise_sched.get_velocity(x0, noise, steps_t)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            cond = model["condition_encoder"](**conditions)
            args = (xt, batch["start"], batch["keyframe"], steps_t, cond, batch["phase"])
            pred = model["transformer"](*args) if model is not parts else forward(*args)
        return F.mse_loss(pred.float(), v)

    @torch.no_grad()
    def evaluate(step: int) -> None:
        loss = model_loss(ema, *fixed_inputs(fixed, held, embeddings, t, device)).item()
        evals.append({"step": step, "seconds": round(time.time() - started, 1), "loss": loss})
        log(f"shots step {step} held-out loss {loss:.4f}")

    for step in range(steps):
        # the schedule runs to `steps` or to `max_seconds`, whichever is nearer
        elapsed = time.time() - started
        at = max(step, int(steps * elapsed / max_seconds)) if max_seconds else step
        set_lr(opt, lr_at(min(at, steps), steps, t["lr"], t["warmup"]))
        items = torch.randint(0, n_items, (b,), device=device, generator=g)
        starts = random_starts(data, items, length, t["first_clip_fraction"], g)
        batch = clip_batch(data, items, starts, length)
        sigma = t["start_noise"] * torch.rand(b, 1, 1, 1, device=device, generator=g)
        start = batch["start"] + sigma * torch.randn(
            batch["start"].shape, device=device, generator=g
        )
        batch["start"] = start  # the differences are taken from the noisy start frame
        conditions = condition_inputs(data, items, embeddings, t, g)
        noise = torch.randn(batch["frames"].shape, device=device, generator=g)
        steps_t = torch.randint(
            0, noise_sched.config.num_train_timesteps, (b,), device=device, generator=g
        )
        try:
            loss = model_loss(parts, batch, conditions, noise, steps_t)
        except Exception as exc:  # a compile failure: train eagerly instead
            if forward is parts["transformer"]:
                raise
            log(f"shots: torch.compile failed ({type(exc).__name__}: {exc}); running eagerly")
            forward = parts["transformer"]
            loss = model_loss(parts, batch, conditions, noise, steps_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t["clip_grad"])
        opt.step()
        decay = min(t["ema"], (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), parts.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        running += loss.detach()
        done = step + 1 == steps or bool(max_seconds and time.time() - started > max_seconds)
        if (step + 1) % t["log_every"] == 0 or done:
            mean = float(running) / ((step % t["log_every"]) + 1)
            losses.append({"step": step, "loss": mean})
            running.zero_()
            log(f"shots step {step} loss {mean:.4f} ({time.time() - started:.0f}s)")
        if (step + 1) % t["eval_every"] == 0 and not done:
            evaluate(step)
        if done:
            if step + 1 < steps:
                log(f"shots: stopping at step {step}, max_seconds reached")
            break
    seconds = time.time() - started
    evaluate(step)
    trained = ShotPipeline(
        condition_encoder=ema["condition_encoder"],
        transformer=ema["transformer"],
        scheduler=pipe.scheduler,
    )
    trained.set_progress_bar_config(disable=True)
    numbers = evaluate_shots(trained, held, embeddings, fixed, device)
    log(f"shots held-out: {json.dumps(numbers)}")
    return trained, {
        "losses": losses,
        "evals": evals,
        "steps_run": step + 1,
        "train_seconds": round(seconds, 1),
        "clips_per_second": round((step + 1) * b / seconds, 1),
        "weights": weights,
        "held_out": numbers,
    }


# -- evaluation ---------------------------------------------------------------------------


def held_out_batch(held: dict, length: int, n: int, seed: int) -> dict:
    """The fixed held-out clips: the first n shots, the even ones from their first frame held
    (for most: the shot's first clip), the odd ones from their last window (clips that
    continue a shot); fixed noise and steps."""
    g = torch.Generator().manual_seed(seed)
    items = torch.arange(n)
    stored = held["frames"].shape[1]
    last = (held["real"][:n].cpu() - length).clamp(min=0, max=stored - length)
    starts = torch.where(items % 2 == 0, 0, last)
    r = held["frames"].shape[2]
    return {
        "items": items,
        "starts": starts,
        "noise": torch.randn((n, length - 1, 3, r, r), generator=g),
        "steps": torch.randint(0, SCHEDULER["num_train_timesteps"], (n,), generator=g),
    }


def fixed_inputs(fixed: dict, held: dict, embeddings, t: dict, device) -> tuple:
    """`model_loss`'s arguments for the fixed held-out batch (no noise, nothing dropped)."""
    items, starts = fixed["items"].to(device), fixed["starts"].to(device)
    batch = clip_batch(held, items, starts, fixed["noise"].shape[1] + 1)
    conditions = condition_inputs(held, items, embeddings, t, None, train=False)
    return batch, conditions, fixed["noise"].to(device), fixed["steps"].to(device)


def motion_numbers(video: torch.Tensor) -> dict[str, float]:
    """(B, T, 3, r, r) in [-1, 1] -> the judges' motion and flicker formulas
    (evaluation/metrics.py), averaged over clips."""
    f = (video.float() + 1) / 2
    diffs = (f[:, 1:] - f[:, :-1]).abs()  # (B, T - 1, 3, r, r)
    largest = diffs.amax(2).flatten(2)  # (B, T - 1, r * r)
    # one clip at a time: torch.quantile takes at most 2**24 values
    motion = torch.stack([clip.quantile(0.95, dim=1).mean() for clip in largest])  # (B,)
    return {
        "moving": float((motion > MOTION_THRESHOLD).float().mean()),
        "flicker": float(1 - diffs.mean()),
    }


@torch.no_grad()
def evaluate_shots(pipe: ShotPipeline, held: dict, embeddings, fixed: dict, device) -> dict:
    """Clips drawn (DEFAULT_STEPS steps, DEFAULT_GUIDANCE) from the fixed held-out clips' true
    keyframe and start frame, against their true frames."""
    items, starts = fixed["items"].to(device), fixed["starts"].to(device)
    length = fixed["noise"].shape[1] + 1
    batch = clip_batch(held, items, starts, length)
    conditions = condition_inputs(held, items, embeddings, {}, None, train=False)
    cameras = [CAMERAS[c] for c in conditions["camera"].tolist()]
    drawn = []
    for k in range(0, len(items), 64):
        part = slice(k, k + 64)
        slots = {
            "identities": conditions["identities"][part],
            "actions": conditions["actions"][part],
            "present": conditions["present"][part],
            "has_identity": conditions["keep_identity"][part],
        }
        cond, coef = pipe.encode_conditions(cameras[part], slots, DEFAULT_GUIDANCE)
        residual = pipe.denoise(
            fixed["noise"][part].to(device),
            batch["start"][part],
            batch["keyframe"][part],
            cond,
            batch["phase"][part],
            coef,
            DEFAULT_STEPS,
        )
        scale = pipe.transformer.config.residual_scale
        drawn.append((batch["start"][part, None] + residual / scale).clamp(-1, 1))
    drawn = torch.cat(drawn)
    truth, start = batch["frames"], batch["start"][:, None]
    first = (held["clip_start"][items] + starts) == 0  # the shots' first clips
    out = {"n": len(items), "steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE}
    for name, rows in (("all", first | ~first), ("first_clips", first), ("continuing", ~first)):
        if not rows.any():
            continue
        mse = F.mse_loss(drawn[rows], truth[rows]).item()
        repeat = F.mse_loss(start[rows].expand_as(truth[rows]), truth[rows]).item()
        out[f"{name}_mse"] = mse
        out[f"{name}_psnr"] = 10 * math.log10(4 / max(mse, 1e-12))
        out[f"{name}_repeat_start_mse"] = repeat
    for name, frames in (("drawn", drawn), ("true", truth)):
        for key, value in motion_numbers(torch.cat([start, frames], 1)).items():
            out[f"{name}_{key}"] = value
    return out


# -- main -------------------------------------------------------------------------------


def check_config(cfg: dict, identity_dim: int) -> None:
    """Raise InputError naming what is wrong with a shots config."""
    for section in ("data", "model", "train"):
        if not isinstance(cfg.get(section), dict):
            raise InputError(f"the config has no {section!r} section")
    missing = TRAIN_KEYS - set(cfg["train"])
    unknown = set(cfg["train"]) - TRAIN_KEYS
    if missing or unknown:
        raise InputError(
            f"train: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
            if missing and unknown
            else f"train: {'missing' if missing else 'unknown'} keys {sorted(missing or unknown)}"
        )
    try:
        pipe = make_pipeline(**cfg["model"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad shots model config: {exc}") from None
    if pipe.identity_dim != identity_dim:
        raise InputError(
            f"the identity encoder makes {identity_dim}-d embeddings but model.identity_dim "
            f"is {pipe.identity_dim}"
        )
    if set(cfg["data"]) != {"train", "held_out"}:
        raise InputError(f"data must hold 'train' and 'held_out', got {sorted(cfg['data'])}")
    for name, spec in cfg["data"].items():
        if spec.get("kind") != "clips":
            raise InputError(f"data.{name}.kind must be 'clips', got {spec.get('kind')!r}")
        resolution, fps = spec.get("resolution", 64), spec.get("fps", 8)
        if resolution != pipe.resolution or fps != pipe.fps:
            raise InputError(
                f"data.{name} is {resolution} px at {fps} fps but the model renders "
                f"{pipe.resolution} px at {pipe.fps:g} fps"
            )
        if spec.get("clip_frames", 8) < pipe.native_frames:
            raise InputError(
                f"data.{name}.clip_frames {spec.get('clip_frames', 8)} is shorter than the "
                f"model's clips ({pipe.native_frames} frames: model.max_frames + 1)"
            )
    for name in ("steps", "batch", "log_every", "eval_every", "eval_count"):
        value = cfg["train"][name]
        if not isinstance(value, int) or value < 1:
            raise InputError(f"train.{name} must be an integer >= 1, got {value!r}")


def run(args: argparse.Namespace) -> None:
    """`python -m reelsmith.world.train shots`: build the data, train, write OUT."""
    cfg = load_config("shots", args.config, args.set)
    encoder = load_identity_encoder(args.identity)
    check_config(cfg, encoder.config.dim)
    device, log = start_run(args, cfg["train"]["seed"])
    encoder = encoder.to(device)

    # 1. data, and every identity's embedding
    slots = cfg["model"].get("slots", 4)
    folders = {n: build_data(args.data, cfg["data"][n], args.workers, log) for n in cfg["data"]}
    loaded = {}
    for name, folder in folders.items():
        t0 = time.time()
        loaded[name] = {k: v.to(device) for k, v in load_clips(folder, slots).items()}
        frames = loaded[name]["frames"]
        log(
            f"{folder.name}: {len(frames)} shots of {frames.shape[1]} frames loaded in "
            f"{time.time() - t0:.0f}s"
        )
    embeddings = encoder.embed(portraits(64).numpy()).to(device)
    del encoder
    # 2. train and evaluate
    pipe, record = train_shots(cfg, loaded["train"], loaded["held_out"], embeddings, device, log)
    # 3. write
    pipe.condition_encoder.to(torch.float16)
    pipe.transformer.to(torch.float16)
    pipe.save_pretrained(args.out)
    record.update(
        data={n: {"folder": f.name, "shots": len(loaded[n]["real"])} for n, f in folders.items()},
        identity=str(args.identity or "shipped"),
        config=cfg,
        commit=log.commit,
        seconds=round(log.seconds(), 1),
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    )
    (args.out / "train_log.json").write_text(json.dumps(record, indent=1), "utf-8")
    log.write(args.out)
