"""Train the built-in shot model (`renderer.shots`: `FlowAutoencoder` + `MotionTransformer` in a
`MotionPipeline`) on storyworld clips, on a CPU in well under an hour, or on a GPU
(`--device cuda`, the default where there is one) with bigger batches.

    python -m reelsmith.training motion --out OUT --identity renderer/weights/identity \
        [--device cpu] [--preset motion-gpu] [--set train.motion.max_seconds=900 ...]
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
   encoder's embedding of the identity's canonical portrait (`motion_data.py`).
2. Stage A, flow (`motion_flow.py`): the `FlowAutoencoder` on (keyframe, frame) pairs, by
   reconstruction: L1 with the characters' pixels weighted up, a light smoothness term on the
   flow and a light push towards "visible" (warping rather than painting). Random flips.
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
   CPU), `train_log.json` and `train.log`.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from reelsmith.errors import InputError
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.pipeline_steps import SCHEDULER
from reelsmith.renderer.shots.flow_autoencoder import MOTION_CHANNELS, FlowAutoencoder
from reelsmith.renderer.shots.motion_pipeline import MotionPipeline, load_motion_pipeline
from reelsmith.renderer.shots.motion_transformer import MotionConditions, MotionTransformer
from reelsmith.training.common import (
    RunOptions,
    device_name,
    finish,
    kept,
    mean_of,
    save_pipeline_half,
    set_lr,
    start_run,
    to_pixels,
    update_ema,
)
from reelsmith.training.config import as_dict
from reelsmith.training.data import build_both, portrait_embeddings
from reelsmith.training.motion_config import MotionRunConfig, check_config, sizes_of
from reelsmith.training.motion_data import (
    Clips,
    encode_clips,
    load_clips,
    model_inputs,
    sample_windows,
    windows,
)
from reelsmith.training.motion_flow import Schedule, autocast, psnr, train_flow


def latent_statistics(latents: torch.Tensor) -> tuple[list[float], list[float]]:
    """The transformer's `latent_mean` and `latent_scale` from every train latent: the flow
    stays centred on "still", each channel's spread floored."""
    per_channel = latents.transpose(0, 2).reshape(MOTION_CHANNELS, -1)
    mean = [0.0, 0.0, float(per_channel[2].mean())]
    spread = per_channel.sub(torch.tensor(mean, device=latents.device)[:, None])
    spread = spread.square().mean(1).sqrt()
    # floors: flow 0.05 (0.4 px at scale 8), visibility 0.25 (its rare -1s stay within ~8)
    floors = (0.05, 0.05, 0.25)
    return mean, [max(floor, float(v)) for floor, v in zip(floors, spread, strict=True)]


def train_motion(
    config: MotionRunConfig, flow: FlowAutoencoder, data: Clips, held: Clips, embeddings, log, init
) -> tuple[MotionPipeline, dict]:
    """Stage B on the data's device; `flow`, `data`, `held` and `embeddings` are already there.
    `init`: a MotionTransformer to start from, with its latent mean and scale (or None)."""
    t, device, started = config.train.motion, data.frames.device, time.time()
    latents, held_latents = encode_clips(flow, data), encode_clips(flow, held)
    log(f"motion: encoded {latents.shape[0]} + {held_latents.shape[0]} clips to latents "
        f"{tuple(latents.shape[1:])} in {time.time() - started:.0f}s")  # fmt: skip
    if init is None:
        mean, scale = latent_statistics(latents)
        sizes = as_dict(config.model.motion)
        model = MotionTransformer(**sizes, latent_mean=mean, latent_scale=scale)
    else:
        model = init
        mean, scale = list(init.config.latent_mean), list(init.config.latent_scale)
        log("motion: starting from --init, with its latent mean and scale")
    model.to(device).train()
    log(f"motion: latent mean {np.round(mean, 3).tolist()} scale {np.round(scale, 3).tolist()}")
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    sched = DDPMScheduler(
        num_train_timesteps=SCHEDULER["num_train_timesteps"],
        beta_schedule=SCHEDULER["beta_schedule"],
        prediction_type=SCHEDULER["prediction_type"],
    )
    frames = model.config.frames
    firsts = (data.start == 0).nonzero()[:, 0]
    ema_params, params = list(ema.parameters()), list(model.parameters())
    g = torch.Generator(device).manual_seed(config.train.seed + 1)
    schedule, losses, step = Schedule(t), [], 0
    while not schedule.done(step):
        set_lr(opt, schedule.lr(step))
        w = sample_windows(data, latents, firsts, t, frames, g)
        x0 = model.scale_latents(w["x0"])
        with autocast(device):
            cond = model_inputs(model, w, embeddings, t, g)
        noise = torch.randn(x0.shape, generator=g, device=device)
        steps_t = torch.randint(
            0, sched.config.num_train_timesteps, (len(x0),), generator=g, device=device
        )
        with autocast(device):
            pred = model(sched.add_noise(x0, noise, steps_t), steps_t, cond)
        loss = F.mse_loss(pred.float(), sched.get_velocity(x0, noise, steps_t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        opt.step()
        update_ema(ema_params, params, step, t.ema)
        losses.append(kept(loss))
        if step % t.log_every == 0:
            recent = mean_of(losses[-t.log_every :])
            log(f"motion step {step} loss {recent:.4f} ({schedule.seconds():.0f}s)")
        step += 1
    log(f"motion: stopped after {step} steps, {schedule.seconds():.0f}s ({schedule.rate(step)})")
    losses = torch.stack(losses).tolist()
    pipe = MotionPipeline(
        flow_autoencoder=flow,
        motion_transformer=ema,
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER),
    )
    pipe.set_progress_bar_config(disable=True)
    numbers = evaluate_motion(pipe, held, held_latents, embeddings, sched, config)
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
def evaluate_motion(pipe: MotionPipeline, held: Clips, latents, embeddings, sched, config):
    """Held-out v-loss (every clip's first window and its last window, fixed noise and
    timesteps), with and without the motion condition; then each first window sampled and
    compared with the encoded truth (`sampled_first_clips`)."""
    model = pipe.motion_transformer
    frames, device = model.config.frames, latents.device
    g = torch.Generator(device).manual_seed(config.train.eval.seed)
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
        settings = replace(
            config.train.motion,
            drop_motion=drop,
            drop_looks=0.0,
            drop_identity=0.0,
            drop_identity_slot=0.0,
            identity_noise=0.0,
        )
        inputs = {**w, "slot_spec": w["slot_spec"].clone()}
        cond = model_inputs(model, inputs, embeddings, settings, g)
        pred = torch.cat([model(a, b, c) for a, b, c in _chunks(xt, steps_t, cond)])
        out[name] = float(F.mse_loss(pred, v))
    sel = firsts.nonzero()[:, 0]
    if len(sel):  # none where every held-out clip starts inside a long shot
        out.update(sampled_first_clips(pipe, held, latents, sel, embeddings, config, g))
    return out


@torch.no_grad()
def sampled_first_clips(pipe, held: Clips, latents, sel, embeddings, config, g) -> dict:
    """Held-out first windows `sel` sampled and compared with the encoded truth: flow error in
    pixels against "nothing moves", the mean flow (how much moves) of samples and truth, and
    decoded PSNR against the truth and against "repeat the keyframe"."""
    model, flow = pipe.motion_transformer, pipe.flow_autoencoder
    frames, device, steps = model.config.frames, latents.device, config.train.eval.steps
    first = torch.ones(len(sel), dtype=torch.bool, device=device)
    w = windows(held, latents, sel, first, sel * 0, frames)
    cond = model_inputs(model, w, embeddings, None, g)
    noise = torch.randn((len(sel), *model.latent_shape), generator=g, device=device)
    sample = model.unscale_latents(pipe.denoise(noise, cond, (1.0,), steps))
    truth = w["x0"]
    px = flow.config.flow_scale
    epe = (sample[:, :, :2] - truth[:, :, :2]).norm(dim=2).mean() * px
    decoded = pipe.decode_latents(w["keyframes"], sample) * 2 - 1  # (B, T, 3, r, r)
    real = to_pixels(held.frames[sel, :frames].flatten(0, 1)).view_as(decoded)
    keyframes = w["keyframes"][:, None].expand_as(decoded)
    return {
        "sampled_clips": len(sel),
        "sample_steps": steps,
        "flow_error_px": float(epe),
        "flow_error_px_nothing_moves": float(truth[:, :, :2].norm(dim=2).mean() * px),
        "mean_flow_px_samples": float(sample[:, :, :2].norm(dim=2).mean() * px),
        "mean_flow_px_truth": float(truth[:, :, :2].norm(dim=2).mean() * px),
        "psnr_samples": psnr(decoded.flatten(0, 1), real.flatten(0, 1)),
        "psnr_repeat_keyframe": psnr(keyframes.flatten(0, 1), real.flatten(0, 1)),
    }


def _chunks(xt, steps_t, cond: MotionConditions, size: int = 64):
    for lo in range(0, len(xt), size):
        part = MotionConditions(*(getattr(cond, f)[lo : lo + size] for f in cond.__annotations__))
        yield xt[lo : lo + size], steps_t[lo : lo + size], part


def run(config: MotionRunConfig, options: RunOptions) -> None:
    """`python -m reelsmith.training motion`: build the data, train both stages, write OUT."""
    init = None
    if options.init is not None:
        init = load_motion_pipeline(options.init)  # one-line error if it is not one
        config = replace(config, model=sizes_of(init, options.init))
    elif config.train.freeze_flow:
        raise InputError("train.freeze_flow needs --init (the flow autoencoder to keep)")
    encoder = load_identity_encoder(options.identity)
    check_config(config, encoder.config.dim)
    device, log = start_run(options, config.train.seed)
    where = device_name(device)
    log(f"training on {device} ({where}; {torch.get_num_threads()} CPU threads)")

    # 1. data, and the identity of every storyworld identity
    slots = config.model.motion.slots
    folders = build_both(options.data, config.data, options.workers, log)
    data, held = load_clips(folders["train"], slots), load_clips(folders["held_out"], slots)
    embeddings = portrait_embeddings(encoder, torch.cat([data.slot_identity, held.slot_identity]))
    del encoder
    data, held, embeddings = data.to(device), held.to(device), embeddings.to(device)
    log(f"loaded {len(data)} train and {len(held)} held-out clips of {data.frames.shape[1]} "
        f"frames onto {device}")  # fmt: skip
    # 2. stage A, 3. stage B
    if init is not None:
        log(f"starting from {options.init}")
    flow_init = None if init is None else init.flow_autoencoder
    motion_init = None if init is None else init.motion_transformer
    flow, flow_record = train_flow(config, data, held, device, log, flow_init)
    pipe, motion_record = train_motion(config, flow, data, held, embeddings, log, motion_init)
    # 4. write (with --init's segmenter, if it has one: it does not depend on the motion)
    if init is not None and init.segmenter is not None:
        pipe.register_modules(segmenter=init.segmenter)
    save_pipeline_half(pipe, options.out)
    record = {
        "flow": flow_record,
        "motion": motion_record,
        "data": {
            "train": {"folder": str(folders["train"]), "clips": len(data)},
            "held_out": {"folder": str(folders["held_out"]), "clips": len(held)},
        },
        "config": as_dict(config),
        "init": None if options.init is None else str(options.init),
        "commit": log.commit,
        "seconds": round(log.seconds(), 1),
        "device": where,
        "threads": torch.get_num_threads(),
    }
    finish(options.out, record, log)
