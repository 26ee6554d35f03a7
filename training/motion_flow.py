"""Stage A of the shot model's training: the `FlowAutoencoder` on (keyframe, frame) pairs, by
reconstruction; and the time-or-steps schedule both stages run on."""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext

import torch

from reelsmith.renderer.shots.flow_autoencoder import FlowAutoencoder
from reelsmith.training.common import kept, mean_of, set_lr, to_pixels
from reelsmith.training.config import as_dict
from reelsmith.training.motion_config import FlowStageConfig, MotionRunConfig, MotionStageConfig
from reelsmith.training.motion_data import ENCODE_BATCH, Clips


class Schedule:
    """Warmup, then a cosine decay over `steps` or `max_seconds`, whichever comes first."""

    def __init__(self, t: FlowStageConfig | MotionStageConfig) -> None:
        self.t, self.started = t, time.time()

    def progress(self, step: int) -> float:
        done = step / self.t.steps
        if self.t.max_seconds:
            done = max(done, (time.time() - self.started) / self.t.max_seconds)
        return done

    def lr(self, step: int) -> float:
        if step < self.t.warmup:
            return self.t.lr * (step + 1) / self.t.warmup
        return self.t.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, self.progress(step))))

    def done(self, step: int) -> bool:
        return step >= self.t.steps or self.progress(step) >= 1.0

    def seconds(self) -> float:
        return time.time() - self.started

    def rate(self, steps: int) -> str:
        return f"{steps / max(self.seconds(), 1e-9):.1f} steps/s"


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU (its numbers stay float32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", torch.bfloat16)
    return nullcontext()


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR of images in [-1, 1] (range 2), over the pixels of `mask` (B, H, W) when given."""
    err = (a.clamp(-1, 1) - b).square().mean(1)  # (B, H, W)
    mse = err.mean() if mask is None else (err * mask).sum() / mask.sum().clamp(min=1)
    return float(10 * torch.log10(4 / mse.clamp(min=1e-10)))


def train_flow(
    config: MotionRunConfig, data: Clips, held: Clips, device: torch.device, log, init=None
) -> tuple[FlowAutoencoder, dict]:
    """Stage A on `device`; `data` and `held` are already there. `init`: a FlowAutoencoder
    to start from (kept as it is with `train.freeze_flow`)."""
    t, pairs_per_clip = config.train.flow, config.train.eval.pairs_per_clip
    if init is not None and config.train.freeze_flow:
        model = init.to(device).eval()
        numbers = evaluate_flow(model, held, pairs_per_clip)
        log(f"flow: kept from --init (train.freeze_flow); held-out: {json.dumps(numbers)}")
        return model, {"losses": [], "steps_run": 0, "frozen": True, **numbers}
    model = FlowAutoencoder(**as_dict(config.model.flow)) if init is None else init
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    g = torch.Generator(device).manual_seed(config.train.seed)
    n, f = data.frames.shape[:2]
    schedule, losses, step = Schedule(t), [], 0
    while not schedule.done(step):
        set_lr(opt, schedule.lr(step))
        idx = torch.randint(0, n, (t.batch,), generator=g, device=device)
        pos = torch.randint(0, f, (t.batch,), generator=g, device=device)
        keyframe, frame = to_pixels(data.keyframes[idx]), to_pixels(data.frames[idx, pos])
        weight = 1 + t.character_weight * data.characters[idx, pos].float()  # (B, r, r)
        if t.flip:
            flip = torch.rand(t.batch, generator=g, device=device) < 0.5
            keyframe = torch.where(flip[:, None, None, None], keyframe.flip(-1), keyframe)
            frame = torch.where(flip[:, None, None, None], frame.flip(-1), frame)
            weight = torch.where(flip[:, None, None], weight.flip(-1), weight)
        decoded, latent = model(keyframe, frame)
        rec = ((decoded - frame).abs().mean(1) * weight).sum() / weight.sum()
        flow = latent[:, :2]
        smooth = (flow.diff(dim=-1).abs().mean() + flow.diff(dim=-2).abs().mean()) / 2
        hidden = 1 - torch.sigmoid(model.config.visibility_bound * latent[:, 2])
        loss = rec + t.smoothness * smooth + t.visibility * hidden.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(kept(rec))
        if step % t.log_every == 0:
            recent = mean_of(losses[-t.log_every :])
            log(f"flow step {step} L1 {recent:.4f} ({schedule.seconds():.0f}s)")
        step += 1
    log(f"flow: stopped after {step} steps, {schedule.seconds():.0f}s ({schedule.rate(step)})")
    losses = torch.stack(losses).tolist()
    model.eval()
    numbers = evaluate_flow(model, held, pairs_per_clip)
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
