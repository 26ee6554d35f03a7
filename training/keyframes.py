"""Train the keyframe pipeline (`renderer.keyframes.KeyframePipeline`: tokenizer + condition
encoder + DiT decoder) on storyworld keyframes, as a diffusion autoencoder.

    python -m reelsmith.training keyframes --out OUT --identity IDENTITY [--data DATA]
    python -m reelsmith.training keyframes --preset keyframes-continue --init STAGE1 \
        --identity IDENTITY --out STAGE2 [--set train.freeze_encoder=true ...]

1. Data: a keyframes dataset with every identity's canonical portrait mixed in (a tenth of each
   batch); identity conditions are the trained identity encoder's embeddings of the portraits.
2. Each step: the keyframe is encoded to its tokens (plus a little noise), each condition
   (tokens, spec, identities, single looks and actions, optionally everything) dropped at
   random for classifier-free guidance, and the decoder learns v-prediction of the keyframe
   from them; an EMA copy of all three models is what is saved.
3. `--init FOLDER` continues a saved pipeline: `model.detail_width` adds a detail path,
   `model.layers` above its own grows its transformer (both starting where it was), and
   `train.freeze_encoder` keeps its tokenizer (so the planner's tokens stay valid).
4. Held out: the pixel error of encode -> decode on held-out keyframes.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from reelsmith.errors import InputError
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.keyframes.models import deepened, with_detail
from reelsmith.renderer.keyframes.pipeline import KeyframePipeline, make_pipeline
from reelsmith.renderer.pipeline_steps import SCHEDULER
from reelsmith.schema.conditioning import SCENE_FIELDS
from reelsmith.training.common import (
    RunOptions,
    finish,
    lr_at,
    run_record,
    set_lr,
    start_run,
    to_pixels,
    update_ema,
)
from reelsmith.training.config import Datasets, as_dict
from reelsmith.training.data import load_keyframe_sets, portraits
from reelsmith.training.keyframes_data import TrainingSet, training_set
from reelsmith.world.dataset import DatasetSpec

# a shipped weight file stays under 16 MB: a larger model is saved in shards of at most this
MAX_FILE = "15MB"
SCENE = len(SCENE_FIELDS)  # a spec row's scene fields, before its slots (`spec_indices`)


@dataclass(frozen=True)
class KeyframesModelConfig:
    """`make_pipeline`'s sizes; with `--init`, only `detail_width` and `layers` count."""

    resolution: int = 64  # keyframe side in pixels (the data's resolution must match)
    token_count: int = 2  # K tokens per keyframe: what the planner predicts
    token_dim: int = 32  # d, the width of one token
    identity_dim: int = 64  # the identity encoder's embedding width
    slots: int = 4  # character slots of a spec (`spec_indices`)
    layers: int = 6  # DiT blocks; with --init, more than the init's grows it (`deepened`)
    heads: int = 4  # attention heads per block
    head_dim: int = 64  # width of one head
    patch_size: int = 4  # pixels per patch side: a 64-pixel keyframe is 16 x 16 patches
    encoder_width: int = 64  # channels of the tokenizer's first conv block
    condition_width: int = 128  # width of the condition encoder's output sequence
    detail_width: int = 0  # >0: a convolutional detail path on the output (`with_detail`)


@dataclass(frozen=True)
class KeyframesTrainConfig:
    """The diffusion-autoencoder run; the drop_* probabilities train classifier-free guidance."""

    seed: int = 0  # torch's seed: initial weights and every draw of the run
    steps: int = 20_000  # the cosine schedule's length
    batch: int = 256  # keyframes and portraits per step
    lr: float = 0.0003  # peak AdamW learning rate, after warmup, decayed by a cosine to 0
    weight_decay: float = 0.01  # AdamW's
    warmup: int = 500  # steps of linear warmup
    clip_grad: float = 1.0  # gradient norm clip
    ema: float = 0.999  # most decay of the saved EMA copy
    max_seconds: float = 0.0  # >0: stop when the run has trained this long (0: no limit)
    stop_after: int = 0  # >0: stop after this many steps, the schedule still over `steps`
    portrait_fraction: float = 0.1  # share of each batch that is identities' portraits
    drop_tokens: float = 0.3  # P(a keyframe's tokens are dropped): drawing without tokens
    drop_spec: float = 0.1  # P(the whole spec is dropped)
    drop_identity: float = 0.1  # P(every identity of a keyframe is dropped)
    drop_identity_slot: float = 0.1  # P(one slot's identity is dropped)
    drop_look: float = 0.15  # P(one trait of one slot is dropped)
    drop_all_looks: float = 0.25  # P(all of one slot's looks are dropped)
    drop_action: float = 0.2  # P(one slot's action is dropped)
    drop_all: float = 0.0  # P(everything is dropped at once: the e0 branch of guidance)
    identity_noise: float = 0.05  # Gaussian noise on the identity embeddings (renormalised)
    token_noise: float = 0.1  # Gaussian noise on the tokens: the planner's are not exact
    character_weight: float = 1.0  # loss weight of the characters' pixels (and one around)
    figure_pixels: int = 0  # >0: figures smaller than this weigh up to 4x more again
    multi_character_weight: float = 1.0  # keyframes of 2+ characters drawn this many times
    freeze_encoder: bool = False  # keep the tokenizer as it is (with --init)
    detail_lr_scale: float = 1.0  # the detail path's learning rate, times `lr`
    compile: bool = False  # torch.compile the transformer (CUDA only; eager if it fails)
    eval_count: int = 256  # held-out keyframes decoded for the held-out numbers
    init: str | None = None  # a pipeline folder to continue (--init wins over it)
    note: str = ""  # free text kept with the run's config (read by nothing)


@dataclass(frozen=True)
class KeyframesRunConfig:
    """One keyframe-pipeline run: its datasets, the pipeline's sizes and the training."""

    data: Datasets = Datasets(
        train=DatasetSpec(kind="keyframes", count=200_000, seed=1, shard_size=2048),
        held_out=DatasetSpec(kind="keyframes", count=4096, seed=7777, shard_size=2048),
    )
    model: KeyframesModelConfig = KeyframesModelConfig()
    train: KeyframesTrainConfig = KeyframesTrainConfig()


PRESETS = {
    # stage 1 of the shipped pipeline (it stopped at step 8780 of a 20,000-step schedule)
    "keyframes": KeyframesRunConfig(train=KeyframesTrainConfig(stop_after=8780)),
    # stages 2-4: --init the previous stage, the schedule restarted, the transformer compiled
    "keyframes-continue": KeyframesRunConfig(
        train=KeyframesTrainConfig(warmup=200, max_seconds=1150.0, compile=True)
    ),
}


class Denoiser:
    """The transformer's forward, compiled where asked (on CUDA); a compile failure logs once
    and trains eagerly from then on."""

    def __init__(self, transformer, compiled: bool, log) -> None:
        self.transformer, self.log = transformer, log
        self.forward = torch.compile(transformer) if compiled else transformer

    def __call__(self, xt, cond, steps_t) -> torch.Tensor:
        kwargs = {"encoder_hidden_states": cond, "timestep": steps_t, "return_dict": False}
        added = {"resolution": None, "aspect_ratio": None}
        try:
            return self.forward(xt, added_cond_kwargs=added, **kwargs)[0]
        except Exception as exc:  # a compile failure: train eagerly instead
            if self.forward is self.transformer:
                raise
            self.log(f"keyframes: torch.compile failed ({type(exc).__name__}); running eagerly")
            self.forward = self.transformer
            return self.forward(xt, added_cond_kwargs=added, **kwargs)[0]


def starting_pipeline(model: KeyframesModelConfig, init, log) -> KeyframePipeline:
    """A fresh pipeline of `model`'s sizes, or `init`'s, with a detail path or blocks added."""
    if not init:
        return make_pipeline(**as_dict(model))
    pipe = KeyframePipeline.from_pretrained(init, dtype=torch.float32)
    log(f"keyframes: starting from {init}")
    width = model.detail_width
    if width and not getattr(pipe.transformer.config, "detail_width", 0):
        pipe.register_modules(transformer=with_detail(pipe.transformer, width))
        log(f"keyframes: a detail path of {width} channels added (starting at zero)")
    # model.layers above the init's grows it; at or below, the init keeps its own blocks
    old, layers = pipe.transformer.config.num_layers, model.layers
    if layers > old:
        pipe.register_modules(transformer=deepened(pipe.transformer, layers))
        log(f"keyframes: {layers - old} blocks added to the {old} (each starting at zero)")
    return pipe


def optimizer(parts: torch.nn.ModuleDict, train: KeyframesTrainConfig, log):
    """AdamW over the trainable weights (a new detail path at `detail_lr_scale`) -> (opt, them)."""
    if train.freeze_encoder:  # the tokenizer stays as it is (the planner's tokens stay valid)
        parts["keyframe_encoder"].eval().requires_grad_(False)
        log("keyframes: the keyframe encoder is frozen")
    trainable = [p for p in parts.parameters() if p.requires_grad]
    # a new detail path may learn faster than the weights it joins: train.detail_lr_scale
    detail = {id(p) for n, p in parts.named_parameters() if ".detail_" in n and p.requires_grad}
    groups = [
        {"params": [p for p in trainable if id(p) not in detail]},
        {"params": [p for p in trainable if id(p) in detail], "scale": train.detail_lr_scale},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay), trainable


def dropped_conditions(spec, ids, embeddings, t: KeyframesTrainConfig, g):
    """A batch's spec rows and identity embeddings with conditions dropped at random ->
    (spec, embeddings, keep_tokens (B,), keep_spec (B,), keep_identity (B, S))."""
    b, slots, device = len(spec), ids.shape[1], spec.device
    s = spec.clone()
    looks = s[:, SCENE:].view(b, slots, 6)  # present, 4 traits, action
    u = torch.rand(b, slots, 6, device=device, generator=g)
    drop_look = (u[..., 1:5] < t.drop_look) | (u[..., :1] < t.drop_all_looks)
    looks[..., 1:5] = torch.where(drop_look, 0, looks[..., 1:5])
    looks[..., 5] = torch.where(u[..., 5] < t.drop_action, 0, looks[..., 5])
    s[:, SCENE:] = looks.flatten(1)
    emb = embeddings[ids.clamp(min=0)]  # (B, S, D)
    noise = torch.randn(emb.shape, device=device, generator=g)
    emb = F.normalize(emb + t.identity_noise * noise, dim=-1)
    r = torch.rand(b, 4, device=device, generator=g)
    keep_tokens = r[:, 0] >= t.drop_tokens
    keep_spec = r[:, 1] >= t.drop_spec
    keep_slot = torch.rand(b, slots, device=device, generator=g) >= t.drop_identity_slot
    keep_identity = (r[:, 2:3] >= t.drop_identity) & keep_slot & (ids >= 0)
    if t.drop_all > 0:  # everything dropped at once: the e0 branch of guidance
        keep_any = torch.rand(b, device=device, generator=g) >= t.drop_all
        keep_tokens, keep_spec = keep_tokens & keep_any, keep_spec & keep_any
        keep_identity = keep_identity & keep_any[:, None]
    return s, emb, keep_tokens, keep_spec, keep_identity


def step_loss(parts, denoiser, batches: TrainingSet, idx, embeddings, sched, t, g):
    """The (weighted) v-prediction loss of the keyframes and portraits `idx`."""
    x0 = to_pixels(batches.images[idx])  # (B, 3, r, r)
    device = x0.device
    spec, emb, keep_tokens, keep_spec, keep_identity = dropped_conditions(
        batches.spec[idx], batches.identity[idx], embeddings, t, g
    )
    noise = torch.randn(x0.shape, device=device, generator=g)
    steps_t = torch.randint(
        0, sched.config.num_train_timesteps, (len(x0),), device=device, generator=g
    )
    xt = sched.add_noise(x0, noise, steps_t)
    v = sched.get_velocity(x0, noise, steps_t)
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        tokens = parts["keyframe_encoder"](x0)
        tokens = tokens + t.token_noise * torch.randn(tokens.shape, device=device, generator=g)
        cond = parts["condition_encoder"](tokens, emb, spec, keep_tokens, keep_identity, keep_spec)
        pred = denoiser(xt, cond, steps_t)
    if batches.weights is None:
        return F.mse_loss(pred.float(), v)
    w = batches.weights[idx][:, None]  # the weighted mean: the same scale as the plain one
    return (w * (pred.float() - v) ** 2).mean() / w.mean()


def train_keyframes(config: KeyframesRunConfig, data, held, embeddings, device, log, init=None):
    """Train from scratch or from `init`; -> the EMA pipeline and the run's record."""
    t = config.train
    pipe = starting_pipeline(config.model, init, log)
    parts = torch.nn.ModuleDict(
        {
            "keyframe_encoder": pipe.keyframe_encoder,
            "condition_encoder": pipe.condition_encoder,
            "transformer": pipe.transformer,
        }
    ).to(device)
    ema = copy.deepcopy(parts).eval().requires_grad_(False)
    opt, trainable = optimizer(parts, t, log)
    sched = DDPMScheduler(
        num_train_timesteps=SCHEDULER["num_train_timesteps"],
        beta_schedule=SCHEDULER["beta_schedule"],
        prediction_type=SCHEDULER["prediction_type"],
    )
    slots = pipe.condition_encoder.config.slots
    batches = training_set(data, pipe.resolution, slots, t, device, log)
    embeddings = embeddings.to(device)
    g = torch.Generator(device=device).manual_seed(t.seed)
    n_portrait = int(t.batch * t.portrait_fraction)
    denoiser = Denoiser(parts["transformer"], t.compile and device.type == "cuda", log)
    ema_params, params = list(ema.parameters()), list(parts.parameters())
    losses, started = [], time.time()
    for step in range(min(t.stop_after or t.steps, t.steps)):
        set_lr(opt, lr_at(step, t.steps, t.lr, t.warmup))
        idx = batches.draw(t.batch, n_portrait, g)
        loss = step_loss(parts, denoiser, batches, idx, embeddings, sched, t, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, t.clip_grad)
        opt.step()
        update_ema(ema_params, params, step, t.ema)
        losses.append(loss.item())
        if step % 250 == 0 or step == t.steps - 1:
            recent = float(np.mean(losses[-250:]))
            log(f"keyframes step {step} loss {recent:.4f} ({time.time() - started:.0f}s)")
        if t.max_seconds and time.time() - started > t.max_seconds:
            log(f"keyframes: stopping at step {step}, max_seconds reached")
            break
    trained = KeyframePipeline(
        keyframe_encoder=ema["keyframe_encoder"],
        condition_encoder=ema["condition_encoder"],
        transformer=ema["transformer"],
        scheduler=pipe.scheduler,
    )
    trained.set_progress_bar_config(disable=True)
    numbers = evaluate_keyframes(trained, held, embeddings, device, t.eval_count)
    log(f"keyframes held-out: {json.dumps(numbers)}")
    return trained, {
        "losses": losses[:: max(1, len(losses) // 400)],
        "steps_run": len(losses),
        "held_out": numbers,
    }


@torch.no_grad()
def evaluate_keyframes(
    pipe: KeyframePipeline, held: dict, embeddings, device, n: int = 256
) -> dict:
    """Pixel error of encode -> decode on held-out keyframes (the judges' numbers are in
    `benchmarks/keyframes_quality.py`; no product model is trained or selected on them).
    At most the first `n` held-out keyframes are decoded."""
    n = min(n, len(held["images"]))
    images = held["images"][:n]
    tokens = pipe.encode(images.to(device))
    slots = pipe.condition_encoder.config.slots
    spec = held["spec"][:n].to(device)
    ids = held["identity"][:n].to(device)
    keep = torch.ones(n, dtype=torch.bool, device=device)
    cond = pipe.condition_encoder(
        tokens.to(device), embeddings[ids.clamp(min=0)], spec, keep, ids >= 0, keep
    )
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((n, 3, pipe.resolution, pipe.resolution), generator=g, device=device)
    x = pipe.denoise(x, cond, num_inference_steps=16)
    truth = to_pixels(images.to(device))
    mse = F.mse_loss(x.clamp(-1, 1), truth).item()
    return {
        "reconstruction_mse": mse,
        "reconstruction_psnr": 10 * math.log10(4 / mse),
        "n": n,
        "slots": slots,
    }


def run(config: KeyframesRunConfig, options: RunOptions) -> None:
    """`python -m reelsmith.training keyframes`: build the data, train, write OUT."""
    device, log = start_run(options, config.train.seed)
    data, held = load_keyframe_sets(options, config.data, config.model.slots, log)
    encoder = load_identity_encoder(options.identity).to(device)
    if encoder.config.dim != config.model.identity_dim:
        raise InputError(
            f"the identity encoder makes {encoder.config.dim}-d embeddings but "
            f"model.identity_dim is {config.model.identity_dim}"
        )
    embeddings = encoder.embed(portraits(64).numpy())
    pipe, record = train_keyframes(
        config, data, held, embeddings, device, log, options.init or config.train.init
    )
    for part in (pipe.keyframe_encoder, pipe.condition_encoder, pipe.transformer):
        part.to(torch.float16)
    pipe.save_pretrained(options.out, max_shard_size=MAX_FILE)
    record.update(run_record(config, log, device))
    finish(options.out, record, log)
