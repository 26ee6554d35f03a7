"""Train the built-in shot model (renderer/motion.py, renderer/motion_pipeline.py) on storyworld
clips, on a CPU in well under an hour, or on a GPU (`--device cuda`, the default where there is
one) with bigger batches.

    python -m reelsmith.world.train motion --out OUT --identity renderer/weights/identity \
        [--device cpu] [--config world/configs/motion.json --set train.motion.max_seconds=900 ...]
        [--init PIPELINE_FOLDER [--set train.freeze_flow=true]]

Everything lives on the training device from the start: the clips are loaded once as tensors
and moved there whole, batches are indexed out of them there, and the random numbers come from
a generator on that device (on the CPU the same draws in the same order as before devices were
supported, so a CPU run gives the same numbers for the same seed). On CUDA the transformer's
forward runs under bf16 autocast (the flow autoencoder stays in float32, TF32 matmuls).

1. Data: two `clips` datasets (train and held out, different seeds). Per clip: its shot's
   keyframe (first frame), its frames with their index in the shot and the shot's length
   (with `long_shots`, some clips start anywhere in a shot of up to 60 s), the camera move, and
   per character slot its looks and action (`spec_indices`) and its identity: the identity
   encoder's embedding of the identity's canonical portrait.
2. Stage A, flow: the `FlowAutoencoder` on (keyframe, frame) pairs, by reconstruction: L1 with
   the characters' pixels weighted up, a light smoothness term on the flow and a light push
   towards "visible" (warping rather than painting). Random horizontal flips.
3. Stage B, motion: every clip's frames encoded once to motion latents relative to its
   keyframe; their per-channel mean and spread become the transformer's `latent_mean` and
   `latent_scale`. The `MotionTransformer` learns v-prediction on windows of T frames: a
   shot's first T frames without context, or T frames anywhere after the clip's first with
   the latent of the frame before as context. Conditions are dropped at random (camera and
   actions together, for guidance; identities, per slot; looks). EMA weights are kept.
4. Each stage stops at its `steps` or `max_seconds`, whichever comes first; its learning rate
   decays (cosine) over whichever it will reach first. Held-out numbers per stage:
   reconstruction PSNR of warp + decode against "repeat the keyframe" (stage A); the v-loss
   with and without the motion condition, and for sampled first clips the flow error and
   motion against the encoded ground truth and against "nothing moves" (stage B).
5. `--init FOLDER` continues a saved `MotionPipeline` (so a long run can span several sessions
   of a lent GPU): its two models' sizes replace the config's `model`, both stages start from
   its weights, and the transformer keeps its `latent_mean` / `latent_scale`. With
   `train.freeze_flow` the flow autoencoder is kept as it is (stage A is skipped), so the
   latents the transformer learned stay what they were. Its `segmenter`, if it has one, is
   written unchanged with the new models.
6. Output: a `MotionPipeline.save_pretrained` folder in float16 (loaded as float32, on the
   CPU), `train_log.json` and `train.log`, as for the other models of `world/train.py`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.shots.motion import (
    MOTION_CHANNELS,
    FlowAutoencoder,
    MotionConditions,
    MotionTransformer,
    phase_features,
)
from reelsmith.renderer.shots.motion_pipeline import SCHEDULER, MotionPipeline, load_motion_pipeline
from reelsmith.schema.conditioning import spec_indices
from reelsmith.schema.looks import all_identities
from reelsmith.world.dataset import read
from reelsmith.world.render import portrait
from reelsmith.world.train import build_data, load_config, record_spec, set_lr, start_run, to_pixels

ENCODE_BATCH = 512  # frame pairs per flow-encoder call
TRAIN_KEYS = {
    "flow": {
        "steps", "batch", "lr", "weight_decay", "warmup", "max_seconds", "smoothness",
        "visibility", "character_weight", "flip", "log_every",
    },
    "motion": {
        "steps", "batch", "lr", "weight_decay", "warmup", "clip_grad", "ema", "max_seconds",
        "first_clip_fraction", "drop_motion", "drop_identity", "drop_identity_slot",
        "drop_looks", "identity_noise", "log_every",
    },
    "eval": {"pairs_per_clip", "steps", "seed"},
}  # fmt: skip


# -- data ---------------------------------------------------------------------------------


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


def check_config(cfg: dict, identity_dim: int) -> None:
    """Raise InputError naming the first thing in `cfg` that cannot be trained."""
    for section in ("data", "model", "train"):
        if not isinstance(cfg.get(section), dict):
            raise InputError(f"the config needs a '{section}' object")
    try:
        flow = FlowAutoencoder(**cfg["model"]["flow"])
        motion = MotionTransformer(**cfg["model"]["motion"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"bad motion model config: {exc}") from None
    for key in ("resolution", "latent_size"):
        if flow.config[key] != motion.config[key]:
            raise InputError(
                f"model.flow.{key} is {flow.config[key]} but model.motion.{key} is "
                f"{motion.config[key]}"
            )
    if motion.config.identity_dim != identity_dim:
        raise InputError(
            f"the identity encoder makes {identity_dim}-d embeddings but "
            f"model.motion.identity_dim is {motion.config.identity_dim}"
        )
    for name in ("train", "held_out"):
        spec = cfg["data"].get(name)
        if not isinstance(spec, dict) or spec.get("kind") != "clips":
            raise InputError(f"data.{name} must be a clips dataset")
        if spec.get("resolution", 64) != flow.config.resolution:
            raise InputError(
                f"data.{name}.resolution is {spec.get('resolution', 64)} but the model's is "
                f"{flow.config.resolution}"
            )
        if spec.get("clip_frames", 8) < motion.config.frames + 1:
            raise InputError(
                f"data.{name}.clip_frames must be at least model.motion.frames + 1 = "
                f"{motion.config.frames + 1} (a window after a context frame)"
            )
    for section, keys in TRAIN_KEYS.items():
        given = cfg["train"].get(section)
        if not isinstance(given, dict):
            raise InputError(f"the config needs a 'train.{section}' object")
        if set(given) != keys:
            wrong = sorted(set(given) - keys) or sorted(keys - set(given))
            raise InputError(f"train.{section}: unknown or missing keys {wrong}")
        for key in ("steps", "batch", "log_every", "pairs_per_clip"):
            if key in given and (not isinstance(given[key], int) or given[key] < 1):
                raise InputError(f"train.{section}.{key} must be an integer >= 1")


def public_config(model, *leave_out: str) -> dict:
    """A model's constructor arguments from its diffusers config (not the bookkeeping)."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in model.config.items()
        if not k.startswith("_") and k not in leave_out
    }


def identity_table(encoder, used: torch.Tensor) -> torch.Tensor:
    """(identities, D): the identity encoder's embedding of each used identity's canonical
    portrait (zeros for the others, never read)."""
    table = torch.zeros(len(all_identities()), encoder.config.dim)
    ids = used[used >= 0].unique()
    every = all_identities()
    table[ids] = encoder.embed([portrait(every[int(i)], 64) for i in ids])
    return table


# -- shared bits --------------------------------------------------------------------------


class Schedule:
    """Warmup, then a cosine decay over `steps` or `max_seconds`, whichever comes first."""

    def __init__(self, t: dict) -> None:
        self.t, self.started = t, time.time()

    def progress(self, step: int) -> float:
        done = step / self.t["steps"]
        if self.t["max_seconds"]:
            done = max(done, (time.time() - self.started) / self.t["max_seconds"])
        return done

    def lr(self, step: int) -> float:
        if step < self.t["warmup"]:
            return self.t["lr"] * (step + 1) / self.t["warmup"]
        return self.t["lr"] * 0.5 * (1 + math.cos(math.pi * min(1.0, self.progress(step))))

    def done(self, step: int) -> bool:
        return step >= self.t["steps"] or self.progress(step) >= 1.0

    def seconds(self) -> float:
        return time.time() - self.started


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR of images in [-1, 1] (range 2), over the pixels of `mask` (B, H, W) when given."""
    err = (a.clamp(-1, 1) - b).square().mean(1)  # (B, H, W)
    mse = err.mean() if mask is None else (err * mask).sum() / mask.sum().clamp(min=1)
    return float(10 * torch.log10(4 / mse.clamp(min=1e-10)))


# -- stage A: the flow autoencoder --------------------------------------------------------


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU (its numbers stay float32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", torch.bfloat16)
    return nullcontext()


def kept(loss: torch.Tensor) -> torch.Tensor:
    """A step's loss to keep for the log, holding nothing else: a mean-reduced `F.mse_loss`
    is a view into its squared-error buffer's storage, so `detach()` alone would keep one
    batch-sized buffer alive per step (a leak that ran a 32 x 32 latent run out of memory)."""
    return loss.detach().clone()


def mean_of(losses: list[torch.Tensor]) -> float:
    """The mean of per-step loss tensors, read back once (no device sync per step)."""
    return float(torch.stack(losses).mean())


def train_flow(
    cfg: dict, data: Clips, held: Clips, device: torch.device, log, init=None
) -> tuple[FlowAutoencoder, dict]:
    """Stage A on `device`; `data` and `held` are already there. `init`: a FlowAutoencoder
    to start from (kept as it is with `train.freeze_flow`)."""
    t = cfg["train"]["flow"]
    if init is not None and cfg["train"].get("freeze_flow"):
        model = init.to(device).eval()
        numbers = evaluate_flow(model, held, cfg["train"]["eval"]["pairs_per_clip"])
        log(f"flow: kept from --init (train.freeze_flow); held-out: {json.dumps(numbers)}")
        return model, {"losses": [], "steps_run": 0, "frozen": True, **numbers}
    model = (FlowAutoencoder(**cfg["model"]["flow"]) if init is None else init).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    g = torch.Generator(device).manual_seed(cfg["train"]["seed"])
    n, f = data.frames.shape[:2]
    schedule, losses, step = Schedule(t), [], 0
    while not schedule.done(step):
        set_lr(opt, schedule.lr(step))
        idx = torch.randint(0, n, (t["batch"],), generator=g, device=device)
        pos = torch.randint(0, f, (t["batch"],), generator=g, device=device)
        keyframe, frame = to_pixels(data.keyframes[idx]), to_pixels(data.frames[idx, pos])
        weight = 1 + t["character_weight"] * data.characters[idx, pos].float()  # (B, r, r)
        if t["flip"]:
            flip = torch.rand(t["batch"], generator=g, device=device) < 0.5
            keyframe = torch.where(flip[:, None, None, None], keyframe.flip(-1), keyframe)
            frame = torch.where(flip[:, None, None, None], frame.flip(-1), frame)
            weight = torch.where(flip[:, None, None], weight.flip(-1), weight)
        decoded, latent = model(keyframe, frame)
        rec = ((decoded - frame).abs().mean(1) * weight).sum() / weight.sum()
        flow = latent[:, :2]
        smooth = (flow.diff(dim=-1).abs().mean() + flow.diff(dim=-2).abs().mean()) / 2
        hidden = 1 - torch.sigmoid(model.config.visibility_bound * latent[:, 2])
        loss = rec + t["smoothness"] * smooth + t["visibility"] * hidden.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(kept(rec))
        if step % t["log_every"] == 0:
            recent = mean_of(losses[-t["log_every"] :])
            log(f"flow step {step} L1 {recent:.4f} ({schedule.seconds():.0f}s)")
        step += 1
    log(f"flow: stopped after {step} steps, {schedule.seconds():.0f}s ({_rate(step, schedule)})")
    losses = torch.stack(losses).tolist()
    model.eval()
    numbers = evaluate_flow(model, held, cfg["train"]["eval"]["pairs_per_clip"])
    log(f"flow held-out: {json.dumps(numbers)}")
    return model, {"losses": losses[:: max(1, len(losses) // 200)], "steps_run": step, **numbers}


@torch.no_grad()
def evaluate_flow(model: FlowAutoencoder, held: Clips, per_clip: int) -> dict:
    """Warp + decode against the truth, and "repeat the keyframe", on fixed held-out pairs:
    `per_clip` frames spread over each clip (its last among them)."""
    f, device = held.frames.shape[1], held.frames.device
    positions = torch.linspace(f - 1, 0, per_clip + 1)[:-1].round().long().flip(0).to(device)
    idx = torch.arange(len(held), device=device).repeat_interleave(len(positions))
    pos = positions.repeat(len(held))
    keyframe, frame = to_pixels(held.keyframes[idx]), to_pixels(held.frames[idx, pos])
    decoded, warped, visible, latents = [], [], [], []
    for k, fr in zip(keyframe.split(ENCODE_BATCH), frame.split(ENCODE_BATCH), strict=True):
        latent = model.encode(k, fr)
        parts = model.decode_parts(k, latent)
        for out, part in zip((decoded, warped, visible), parts, strict=True):
            out.append(part)
        latents.append(latent)
    decoded, warped, latent = torch.cat(decoded), torch.cat(warped), torch.cat(latents)
    visible = torch.cat(visible)
    chars = held.characters[idx, pos]
    return {
        "pairs": len(idx),
        "psnr": psnr(decoded, frame),
        "psnr_warp_only": psnr(warped, frame),
        "psnr_repeat_keyframe": psnr(keyframe, frame),
        "psnr_characters": psnr(decoded, frame, chars),
        "psnr_characters_repeat_keyframe": psnr(keyframe, frame, chars),
        "mean_flow_px": float(latent[:, :2].norm(dim=1).mean() * model.config.flow_scale),
        "mean_visibility": float(visible.mean()),
    }


# -- stage B: the motion transformer ------------------------------------------------------


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
    clips: Clips, latents: torch.Tensor, firsts: torch.Tensor, b: int, t: dict, frames: int, g
) -> dict:
    """b random training windows; `firsts` indexes the clips that start their shot."""
    device = latents.device
    idx = torch.randint(0, len(clips), (b,), generator=g, device=device)
    first = torch.rand(b, generator=g, device=device) < t["first_clip_fraction"]
    pick = torch.randint(0, len(firsts), (b,), generator=g, device=device)
    idx = torch.where(first, firsts[pick], idx)
    last = latents.shape[1] - frames  # the latest window start that fits in the clip
    offset = torch.where(first, 0, torch.randint(1, last + 1, (b,), generator=g, device=device))
    return windows(clips, latents, idx, first, offset, frames)


def model_inputs(model, w: dict, embeddings, t: dict | None, g) -> dict:
    """Conditions of windows `w`; with `t` (training settings) some are dropped at random."""
    b, s = w["slot_spec"].shape[:2]
    spec, camera = w["slot_spec"], w["camera"]
    ids = w["slot_identity"]
    emb = embeddings[ids.clamp(min=0)]
    have = ids >= 0
    if t is not None:
        device = spec.device
        drop_motion = torch.rand(b, generator=g, device=device) < t["drop_motion"]
        camera = torch.where(drop_motion, 0, camera)
        spec[..., -1] = torch.where(drop_motion[:, None], 0, spec[..., -1])
        drop_looks = torch.rand(b, s, generator=g, device=device) < t["drop_looks"]
        spec[..., 1:-1] = torch.where(drop_looks[..., None], 0, spec[..., 1:-1])
        keep = torch.rand(b, 1, generator=g, device=device) >= t["drop_identity"]
        keep = keep & (torch.rand(b, s, generator=g, device=device) >= t["drop_identity_slot"])
        have = have & keep
        noise = torch.randn(emb.shape, generator=g, device=device) * t["identity_noise"]
        emb = F.normalize(emb + noise, dim=-1)
    return model.conditions(
        w["keyframes"], camera, emb, have, spec, w["context"], w["has_context"], w["phase"]
    )


def train_motion(
    cfg: dict, flow: FlowAutoencoder, data: Clips, held: Clips, embeddings, device, log, init=None
) -> tuple[MotionPipeline, dict]:
    """Stage B on `device`; `flow`, `data`, `held` and `embeddings` are already there.
    `init`: a MotionTransformer to start from, with its latent mean and scale."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    t = cfg["train"]["motion"]
    started = time.time()
    latents, held_latents = encode_clips(flow, data), encode_clips(flow, held)
    log(f"motion: encoded {latents.shape[0]} + {held_latents.shape[0]} clips to latents "
        f"{tuple(latents.shape[1:])} in {time.time() - started:.0f}s")  # fmt: skip
    if init is None:
        per_channel = latents.transpose(0, 2).reshape(MOTION_CHANNELS, -1)
        mean = [0.0, 0.0, float(per_channel[2].mean())]  # flow stays centred on "still"
        spread = per_channel.sub(torch.tensor(mean, device=device)[:, None])
        spread = spread.square().mean(1).sqrt()
        # floors: flow 0.05 (0.4 px at scale 8), visibility 0.25 (its rare -1s stay within ~8)
        floors = (0.05, 0.05, 0.25)
        scale = [max(floor, float(v)) for floor, v in zip(floors, spread, strict=True)]
        model = MotionTransformer(**cfg["model"]["motion"], latent_mean=mean, latent_scale=scale)
    else:
        model = init
        mean, scale = list(init.config.latent_mean), list(init.config.latent_scale)
        log("motion: starting from --init, with its latent mean and scale")
    model.to(device).train()
    log(f"motion: latent mean {np.round(mean, 3).tolist()} scale {np.round(scale, 3).tolist()}")
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    noise_sched = DDPMScheduler(
        num_train_timesteps=SCHEDULER["num_train_timesteps"],
        beta_schedule=SCHEDULER["beta_schedule"],
        prediction_type=SCHEDULER["prediction_type"],
    )
    frames = model.config.frames
    firsts = (data.start == 0).nonzero()[:, 0]
    ema_params, params = list(ema.parameters()), list(model.parameters())
    g = torch.Generator(device).manual_seed(cfg["train"]["seed"] + 1)
    schedule, losses, step = Schedule(t), [], 0
    while not schedule.done(step):
        set_lr(opt, schedule.lr(step))
        w = sample_windows(data, latents, firsts, t["batch"], t, frames, g)
        x0 = model.scale_latents(w["x0"])
        with autocast(device):
            cond = model_inputs(model, w, embeddings, t, g)
        noise = torch.randn(x0.shape, generator=g, device=device)
        steps_t = torch.randint(
            0, noise_sched.config.num_train_timesteps, (len(x0),), generator=g, device=device
        )
        with autocast(device):
            pred = model(noise_sched.add_noise(x0, noise, steps_t), steps_t, cond)
        loss = F.mse_loss(pred.float(), noise_sched.get_velocity(x0, noise, steps_t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip_grad"])
        opt.step()
        decay = min(t["ema"], (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        losses.append(kept(loss))
        if step % t["log_every"] == 0:
            recent = mean_of(losses[-t["log_every"] :])
            log(f"motion step {step} loss {recent:.4f} ({schedule.seconds():.0f}s)")
        step += 1
    log(f"motion: stopped after {step} steps, {schedule.seconds():.0f}s ({_rate(step, schedule)})")
    losses = torch.stack(losses).tolist()
    pipe = MotionPipeline(
        flow_autoencoder=flow,
        motion_transformer=ema,
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER),
    )
    pipe.set_progress_bar_config(disable=True)
    numbers = evaluate_motion(pipe, held, held_latents, embeddings, noise_sched, cfg["train"])
    log(f"motion held-out: {json.dumps(numbers)}")
    record = {
        "losses": losses[:: max(1, len(losses) // 200)],
        "steps_run": step,
        "latent_mean": mean,
        "latent_scale": scale,
        **numbers,
    }
    return pipe, record


@torch.no_grad()
def evaluate_motion(pipe: MotionPipeline, held: Clips, latents, embeddings, sched, t) -> dict:
    """Held-out v-loss (every clip's first window and its last window, fixed noise and
    timesteps), with and without the motion condition; then each first window sampled and
    compared with the encoded truth: flow error in pixels against "nothing moves", the mean
    flow (how much moves) of samples and truth, and decoded PSNR against the truth and
    against "repeat the keyframe"."""
    model, flow = pipe.motion_transformer, pipe.flow_autoencoder
    frames = model.config.frames
    device = latents.device
    g = torch.Generator(device).manual_seed(t["eval"]["seed"])
    n = len(held)
    firsts = held.start == 0
    idx = torch.arange(n, device=device).repeat(2)
    first = torch.cat([firsts, torch.zeros(n, dtype=torch.bool, device=device)])
    offset = torch.where(first, 0, latents.shape[1] - frames)
    w = windows(held, latents, idx, first, offset, frames)
    x0 = model.scale_latents(w["x0"])
    noise = torch.randn(x0.shape, generator=g, device=device)
    steps_t = torch.randint(
        0, sched.config.num_train_timesteps, (len(x0),), generator=g, device=device
    )
    xt, v = sched.add_noise(x0, noise, steps_t), sched.get_velocity(x0, noise, steps_t)
    out = {"windows": len(idx)}
    for name, drop in (("v_loss", 0.0), ("v_loss_without_motion", 1.0)):
        settings = {"drop_motion": drop, "drop_looks": 0.0, "drop_identity": 0.0,
                    "drop_identity_slot": 0.0, "identity_noise": 0.0}  # fmt: skip
        cond = model_inputs(model, {**w, "slot_spec": w["slot_spec"].clone()}, embeddings,
                            settings, g)  # fmt: skip
        pred = torch.cat([model(a, b, c) for a, b, c in _chunks(xt, steps_t, cond)])
        out[name] = float(F.mse_loss(pred, v))
    # sampled first clips
    sel = firsts.nonzero()[:, 0]
    if len(sel) == 0:  # every held-out clip starts inside a long shot
        return out
    first = torch.ones(len(sel), dtype=torch.bool, device=device)
    w = windows(held, latents, sel, first, sel * 0, frames)
    cond = model_inputs(model, w, embeddings, None, g)
    noise = torch.randn((len(sel), *model.latent_shape), generator=g, device=device)
    sample = model.unscale_latents(pipe.denoise(noise, cond, (1.0,), t["eval"]["steps"]))
    truth = w["x0"]
    px = flow.config.flow_scale
    epe = (sample[:, :, :2] - truth[:, :, :2]).norm(dim=2).mean() * px
    decoded = pipe.decode_latents(w["keyframes"], sample) * 2 - 1  # (B, T, 3, r, r)
    real = to_pixels(held.frames[sel, :frames].flatten(0, 1)).view_as(decoded)
    keyframes = w["keyframes"][:, None].expand_as(decoded)
    out.update(
        sampled_clips=len(sel),
        sample_steps=t["eval"]["steps"],
        flow_error_px=float(epe),
        flow_error_px_nothing_moves=float(truth[:, :, :2].norm(dim=2).mean() * px),
        mean_flow_px_samples=float(sample[:, :, :2].norm(dim=2).mean() * px),
        mean_flow_px_truth=float(truth[:, :, :2].norm(dim=2).mean() * px),
        psnr_samples=psnr(decoded.flatten(0, 1), real.flatten(0, 1)),
        psnr_repeat_keyframe=psnr(keyframes.flatten(0, 1), real.flatten(0, 1)),
    )
    return out


def _rate(steps: int, schedule: Schedule) -> str:
    return f"{steps / max(schedule.seconds(), 1e-9):.1f} steps/s"


def _chunks(xt, steps_t, cond: MotionConditions, size: int = 64):
    for lo in range(0, len(xt), size):
        part = MotionConditions(*(getattr(cond, f)[lo : lo + size] for f in cond.__annotations__))
        yield xt[lo : lo + size], steps_t[lo : lo + size], part


# -- main ---------------------------------------------------------------------------------


def save_pipeline_half(pipe: MotionPipeline, folder: Path) -> None:
    """`save_pretrained` with every model component in float16 on disk (the pipeline is
    moved to the CPU and halved; `load_motion_pipeline` casts back to float32)."""
    pipe.to("cpu")
    for name in ("flow_autoencoder", "motion_transformer", "segmenter"):
        model = getattr(pipe, name, None)
        if model is not None:
            model.half()
    pipe.save_pretrained(folder)


def run(args: argparse.Namespace) -> None:
    """`python -m reelsmith.world.train motion`: build the data, train both stages, write OUT."""
    try:
        cfg = load_config("motion", args.config, args.set)
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the motion config: {type(exc).__name__}: {exc}") from None
    init = None
    if args.init is not None:
        init = load_motion_pipeline(args.init)  # one-line error if it is not one
        cfg["model"] = {
            "flow": public_config(init.flow_autoencoder),
            "motion": public_config(init.motion_transformer, "latent_mean", "latent_scale"),
        }
    elif cfg["train"].get("freeze_flow"):
        raise InputError("train.freeze_flow needs --init (the flow autoencoder to keep)")
    encoder = load_identity_encoder(args.identity)
    check_config(cfg, encoder.config.dim)
    device, log = start_run(args, cfg["train"]["seed"])

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"training on {device} ({where}; {torch.get_num_threads()} CPU threads)")

    # 1. data, and the identity of every storyworld identity
    slots = cfg["model"]["motion"].get("slots", 4)
    folders = {n: build_data(args.data, cfg["data"][n], args.workers, log) for n in cfg["data"]}
    data, held = load_clips(folders["train"], slots), load_clips(folders["held_out"], slots)
    embeddings = identity_table(encoder, torch.cat([data.slot_identity, held.slot_identity]))
    del encoder
    data, held, embeddings = data.to(device), held.to(device), embeddings.to(device)
    log(f"loaded {len(data)} train and {len(held)} held-out clips of {data.frames.shape[1]} "
        f"frames onto {device}")  # fmt: skip
    # 2. stage A, 3. stage B
    if init is not None:
        log(f"starting from {args.init}")
    flow_init = None if init is None else init.flow_autoencoder
    motion_init = None if init is None else init.motion_transformer
    flow, flow_record = train_flow(cfg, data, held, device, log, flow_init)
    pipe, motion_record = train_motion(cfg, flow, data, held, embeddings, device, log, motion_init)
    # 4. write (with --init's segmenter, if it has one: it does not depend on the motion)
    if init is not None and init.segmenter is not None:
        pipe.register_modules(segmenter=init.segmenter)
    save_pipeline_half(pipe, args.out)
    record = {
        "flow": flow_record,
        "motion": motion_record,
        "data": {
            "train": {"folder": str(folders["train"]), "clips": len(data)},
            "held_out": {"folder": str(folders["held_out"]), "clips": len(held)},
        },
        "config": cfg,
        "init": None if args.init is None else str(args.init),
        "commit": log.commit,
        "seconds": round(log.seconds(), 1),
        "device": where,
        "threads": torch.get_num_threads(),
    }
    (args.out / "train_log.json").write_text(json.dumps(record, indent=1), "utf-8")
    log.write(args.out)
