"""Train the built-in models on storyworld data; one config per model, reproducible from a commit.

    python -m reelsmith.world.train identity  --out OUT/identity  --data DATA
    python -m reelsmith.world.train keyframes --out OUT/keyframes --data DATA \
        --identity OUT/identity [--set train.steps=20000 --set model.token_count=4]

Configs are JSON files in `world/configs/` (`--config` picks another; `--set` overrides one
value). Each run builds (or reuses) its storyworld datasets under --data, logs its losses, and
writes a `save_pretrained` folder with float16 safetensors plus `train_log.json` (the config,
the commit, the losses and held-out numbers) to --out. The same commit, config and seed give
the same data; on a GPU the training itself is only as deterministic as its kernels.

- identity: `memory.identity.IdentityEncoder`, contrastive between character crops and
  portraits; every tenth identity is held out and its retrieval accuracy reported.
- looks: `renderer.looks.LooksReader`, each trait of a character's crop classified; its
  held-out accuracy per trait is reported on other keyframes' exact crops.
- keyframes: `renderer.KeyframePipeline` (tokenizer + condition encoder + DiT decoder) as a
  diffusion autoencoder, with each condition dropped at random for classifier-free guidance, and
  portraits of all identities mixed in. Identity conditions are the trained identity encoder's
  embeddings of the identities' portraits.
- planner, motion, shots, segmenter: their own data and loops, in `world/train_planner.py`,
  `world/train_motion.py`, `world/train_shots.py` and `world/train_segmenter.py` (the shot
  model's `CharacterSegmenter`; `--init` adds it to a motion pipeline).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.numerics import settle
from reelsmith.renderer.identity.encoder import IdentityEncoder, crop_boxes, load_identity_encoder
from reelsmith.renderer.identity.looks import LooksReader
from reelsmith.renderer.keyframes.models import deepened, with_detail
from reelsmith.renderer.keyframes.pipeline import SCHEDULER, KeyframePipeline, make_pipeline
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec, spec_indices
from reelsmith.schema.looks import Identity, all_identities
from reelsmith.world.dataset import DatasetSpec, build, read
from reelsmith.world.render import portrait

CONFIGS = Path(__file__).parent / "configs"
# a shipped weight file stays under 16 MB: a larger model is saved in shards of at most this
MAX_FILE = "15MB"
MIN_PIXELS = 60  # characters smaller than this in a frame are not identity examples


# -- data ---------------------------------------------------------------------------------


# short names of the DatasetSpec fields a dataset's folder name carries where not the default
# (not shard_size, which changes how the same items are stored, not which: `build` refuses a
# folder built with another)
FOLDER_FIELDS = {"fps": "fps", "clip_frames": "f", "max_movie_shots": "m", "long_shots": "long"}


def data_folder(folder: Path, spec: DatasetSpec) -> Path:
    """Where `build_data` keeps a dataset: one name per distinct set of items, e.g.
    clips-8000-s41-r64 (every other field the default) or clips-8000-s41-r64-f16-long0.25."""
    name = f"{spec.kind}-{spec.count}-s{spec.seed}-r{spec.resolution}"
    default = DatasetSpec(kind=spec.kind, count=spec.count)
    for field, short in FOLDER_FIELDS.items():
        if getattr(spec, field) != getattr(default, field):
            name += f"-{short}{getattr(spec, field)}"
    return folder / name


def build_data(folder: Path, spec: dict, workers: int, log) -> Path:
    """Build (or reuse) one storyworld dataset under `folder` (in `data_folder`'s name)."""
    spec = DatasetSpec(**spec)
    out = data_folder(folder, spec)
    t0 = time.time()
    build(spec, out, workers=workers)
    log(f"data {out.name} ready in {time.time() - t0:.0f}s")
    return out


def record_spec(record: dict) -> KeyframeSpec:
    """The spec of a keyframes-dataset record, every character with its full looks."""
    shot = record["shot"]
    actions = {b["character"]: b["action"] for b in shot["blocking"]}
    return KeyframeSpec(
        location=record["scene"]["location"],
        time=record["scene"]["time"],
        size=shot["size"],
        camera=shot["camera"],
        characters=tuple(
            CharacterSpec(c, Identity.from_index(record["identities"][c]).to_dict(), actions.get(c))
            for c in shot["characters"]
        ),
    )


def load_keyframes(folder: Path, slots: int) -> dict:
    """A keyframes dataset as arrays: images, spec indices, identity per slot, objects."""
    images, figures, specs, slot_ids, objects = [], [], [], [], []
    for n, item in enumerate(read(folder)):
        r = item["record"]
        spec = record_spec(r)
        ids = [r["identities"][c] for c in r["shot"]["characters"]]
        images.append(item["images"])
        figures.append(item["masks"])
        specs.append(spec_indices(spec, slots))
        slot_ids.append((ids + [-1] * slots)[:slots])
        for v in r["labels"]["frames"][0]:
            if v["pixels"] >= MIN_PIXELS:
                objects.append([n, *v["box"], Identity(**v["identity"]).index])
    return {
        "images": torch.from_numpy(np.stack(images)),
        "figures": torch.from_numpy(np.stack(figures)),  # (N, r, r) uint8: 1 + slot, 0 background
        "spec": torch.stack(specs),
        "identity": torch.tensor(slot_ids),
        "objects": torch.tensor(objects, dtype=torch.float32),
    }


def portraits(resolution: int) -> torch.Tensor:
    """The canonical portrait of every identity, in identity order: uint8 (1080, r, r, 3)."""
    return torch.from_numpy(np.stack([portrait(i, resolution) for i in all_identities()]))


def portrait_specs(slots: int) -> torch.Tensor:
    return torch.stack(
        [
            spec_indices(KeyframeSpec.portrait(CharacterSpec("c", i.to_dict())), slots)
            for i in all_identities()
        ]
    )


def pixel_weights(
    figures: torch.Tensor, character_weight: float, figure_pixels: int = 0, most: float = 4.0
) -> torch.Tensor:
    """The loss weight of every pixel of (N, r, r) figure labels (0 background, else 1 + slot).

    A figure's pixels, and one pixel around them, weigh `character_weight`; with
    `figure_pixels`, a figure of fewer pixels than that weighs 1 + (character_weight - 1) x
    figure_pixels / its pixels, at most `most` times the plain figure weight above 1."""
    out = torch.empty(figures.shape, dtype=torch.float32)
    for start in range(0, len(figures), 4096):  # bounded memory over 200,000 keyframes
        labels = figures[start : start + 4096].long()
        n = len(labels)
        scale = torch.ones(labels.shape)
        if figure_pixels:
            slots = int(labels.max()) + 1
            key = torch.arange(n)[:, None, None] * slots + labels
            area = torch.bincount(key.flatten(), minlength=n * slots)[key].float()
            scale = (figure_pixels / area).clamp(1.0, most)
        w = torch.where(labels > 0, 1 + (character_weight - 1) * scale, torch.ones(()))
        out[start : start + n] = F.max_pool2d(w[:, None], 3, 1, 1)[:, 0]
    return out


# -- shared training bits ---------------------------------------------------------------


def frame_weights(slot_identities: torch.Tensor, several: float) -> torch.Tensor | None:
    """How often each training keyframe is drawn: one of two or more characters (slot
    identities (N, S), -1 where empty) `several` times as often as one of a single character,
    so that their looks learn not to mix; None where all are drawn alike (`several` 1)."""
    if several == 1.0:
        return None
    if several <= 0:
        raise ValueError(f"train.multi_character_weight must be > 0, got {several}")
    crowded = (slot_identities >= 0).sum(1) >= 2  # (N,)
    return torch.where(crowded, several, 1.0)


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate to `lr` times its "scale" (1 where it has none)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("scale", 1.0)


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def jittered_boxes(objects: torch.Tensor, amount: float, generator) -> torch.Tensor:
    boxes = objects[:, 1:5]
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    noise = torch.rand(boxes.shape, device=boxes.device, generator=generator) - 0.5
    return boxes + noise * amount * wh


def save_half(model, folder: Path) -> None:
    """save_pretrained with float16 weights (halves the files; load casts back to float32)."""
    copy.deepcopy(model).to(torch.float16).save_pretrained(folder)


# -- identity encoder -------------------------------------------------------------------


def train_identity(cfg: dict, data: dict, held: dict, device, log) -> tuple[IdentityEncoder, dict]:
    t = cfg["train"]
    model = IdentityEncoder(**cfg["model"]).to(device)
    res = model.config.resolution
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    gallery = portraits(64).to(device)
    held_out = torch.arange(len(gallery)) % t["hold_out_every"] == 0
    objects = data["objects"].to(device)
    train_rows = objects[~held_out.to(device)[objects[:, 5].long()]]
    order = train_rows[:, 5].argsort()
    train_rows = train_rows[order]
    ids = train_rows[:, 5].long()
    counts = torch.bincount(ids, minlength=len(gallery))
    starts = torch.cumsum(counts, 0) - counts
    train_ids = (counts > 0).nonzero()[:, 0]
    images = data["images"].to(device)
    g = torch.Generator(device=device).manual_seed(t["seed"])
    losses = []
    for step in range(t["steps"]):
        set_lr(opt, lr_at(step, t["steps"], t["lr"], t["warmup"]))
        pick = train_ids[torch.randperm(len(train_ids), device=device, generator=g)[: t["batch"]]]
        offset = torch.rand(len(pick), device=device, generator=g) * counts[pick]
        rows = starts[pick] + offset.long().clamp(max=counts[pick] - 1)
        o = train_rows[rows]
        crops = crop_boxes(images[o[:, 0].long()], jittered_boxes(o, 0.2, g), res)
        port = gallery[pick]
        shift = torch.randint(-4, 5, (2,)).tolist()
        port = torch.roll(port, shifts=shift, dims=(1, 2))
        port_px = F.interpolate(to_pixels(port), (res, res), mode="area")
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            a, b = model(crops).float(), model(port_px).float()
        logits = t["scale"] * a @ b.T
        target = torch.arange(len(a), device=device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == t["steps"] - 1:
            log(f"identity step {step} loss {loss.item():.4f}")
    model.eval()
    numbers = evaluate_identity(model, held, gallery, held_out, device)
    log(f"identity held-out: {json.dumps(numbers)}")
    return model, {"losses": losses[:: max(1, len(losses) // 200)], "held_out": numbers}


@torch.no_grad()
def evaluate_identity(model, held: dict, gallery, held_out, device) -> dict:
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


# -- looks reader ------------------------------------------------------------------------


def trait_table(reader: LooksReader) -> torch.Tensor:
    """(1080, traits) each identity's value index per trait, in the reader's vocabulary."""
    looks = [identity.to_dict() for identity in all_identities()]
    return torch.stack(list(reader.labels(looks).values()), -1)


def train_looks(cfg: dict, data: dict, held: dict, device, log) -> tuple[LooksReader, dict]:
    """Every trait of a character's crop as a softmax over its values. Boxes are jittered by
    `train.jitter` of their size; `train.soft` of the crops are scaled down by a quarter and
    back up, as blurred as a figure the keyframe decoder draws."""
    t = cfg["train"]
    model = LooksReader(**cfg["model"]).to(device)
    res = model.config.resolution
    table = trait_table(model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    objects, images = data["objects"].to(device), data["images"].to(device)
    g = torch.Generator(device=device).manual_seed(t["seed"])
    losses = []
    for step in range(t["steps"]):
        set_lr(opt, lr_at(step, t["steps"], t["lr"], t["warmup"]))
        rows = torch.randint(0, len(objects), (t["batch"],), device=device, generator=g)
        o = objects[rows]
        crops = crop_boxes(images[o[:, 0].long()], jittered_boxes(o, t["jitter"], g), res)
        soft = torch.rand(len(crops), device=device, generator=g) < t["soft"]
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
        if step % 200 == 0 or step == t["steps"] - 1:
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


# -- keyframe pipeline -------------------------------------------------------------------


def train_keyframes(cfg: dict, data: dict, held: dict, embeddings, device, log, init=None):
    from diffusers import DDPMScheduler

    t = cfg["train"]
    if init:
        pipe = KeyframePipeline.from_pretrained(init, dtype=torch.float32)
        log(f"keyframes: starting from {init}")
        width = cfg["model"].get("detail_width", 0)
        if width and not getattr(pipe.transformer.config, "detail_width", 0):
            pipe.register_modules(transformer=with_detail(pipe.transformer, width))
            log(f"keyframes: a detail path of {width} channels added (starting at zero)")
        # model.layers above the init's grows it; at or below, the init keeps its own blocks
        old, layers = pipe.transformer.config.num_layers, cfg["model"].get("layers", 0)
        if layers > old:
            pipe.register_modules(transformer=deepened(pipe.transformer, layers))
            log(f"keyframes: {layers - old} blocks added to the {old} (each starting at zero)")
    else:
        pipe = make_pipeline(**cfg["model"])
    parts = torch.nn.ModuleDict(
        {
            "keyframe_encoder": pipe.keyframe_encoder,
            "condition_encoder": pipe.condition_encoder,
            "transformer": pipe.transformer,
        }
    ).to(device)
    ema = copy.deepcopy(parts).eval().requires_grad_(False)
    if t.get("freeze_encoder"):  # the tokenizer stays as it is (the planner's tokens stay valid)
        parts["keyframe_encoder"].eval().requires_grad_(False)
        log("keyframes: the keyframe encoder is frozen")
    trainable = [p for p in parts.parameters() if p.requires_grad]
    # a new detail path may learn faster than the weights it joins: train.detail_lr_scale
    detail = {id(p) for n, p in parts.named_parameters() if ".detail_" in n and p.requires_grad}
    groups = [
        {"params": [p for p in trainable if id(p) not in detail]},
        {
            "params": [p for p in trainable if id(p) in detail],
            "scale": t.get("detail_lr_scale", 1.0),
        },
    ]
    opt = torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=t["lr"], weight_decay=t["weight_decay"]
    )
    noise_sched = DDPMScheduler(
        num_train_timesteps=SCHEDULER["num_train_timesteps"],
        beta_schedule=SCHEDULER["beta_schedule"],
        prediction_type=SCHEDULER["prediction_type"],
    )
    slots = pipe.condition_encoder.config.slots
    n_scene = 4
    resolution = pipe.resolution
    if tuple(data["images"].shape[1:3]) != (resolution, resolution):
        raise InputError(
            f"the data's keyframes are {tuple(data['images'].shape[1:3])} pixels but the model's "
            f"resolution is {resolution}; set data.*.resolution to match"
        )
    images = torch.cat([data["images"], portraits(resolution)]).to(device)
    # loss weight per pixel: characters (and a pixel around them) count `character_weight`
    # times the background, so the small figures' stripes and spots get the model's attention;
    # with `figure_pixels`, a figure smaller than that counts more again (portraits: all 1)
    weights = None
    if t.get("character_weight", 1.0) != 1.0:
        weights = pixel_weights(
            data["figures"], t["character_weight"], t.get("figure_pixels", 0)
        ).half()
        weights = F.pad(weights, (0, 0, 0, 0, 0, len(images) - len(weights)), value=1.0)
        weights = weights.to(device)  # (N, r, r)
    spec = torch.cat([data["spec"], portrait_specs(slots)]).to(device)
    ident = torch.cat(
        [
            data["identity"],
            torch.cat(
                [torch.arange(1080)[:, None], -torch.ones(1080, slots - 1, dtype=torch.long)], 1
            ),
        ]
    ).to(device)
    n_frames = len(data["images"])
    embeddings = embeddings.to(device)
    g = torch.Generator(device=device).manual_seed(t["seed"])
    b = t["batch"]
    n_portrait = int(b * t["portrait_fraction"])
    added = {"resolution": None, "aspect_ratio": None}
    forward = parts["transformer"]
    if t.get("compile") and device.type == "cuda":
        forward = torch.compile(parts["transformer"])
    stop = t.get("stop_after") or t["steps"]
    losses, started = [], time.time()
    crowd = frame_weights(data["identity"], t.get("multi_character_weight", 1.0))
    if crowd is not None:
        crowd = crowd.to(device)
        log(f"keyframes: keyframes of several characters drawn {t['multi_character_weight']}x")
    for step in range(min(stop, t["steps"])):
        set_lr(opt, lr_at(step, t["steps"], t["lr"], t["warmup"]))
        frames = (
            torch.randint(0, n_frames, (b - n_portrait,), device=device, generator=g)
            if crowd is None
            else torch.multinomial(crowd, b - n_portrait, replacement=True, generator=g)
        )
        idx = torch.cat(
            [
                frames,
                torch.randint(n_frames, len(images), (n_portrait,), device=device, generator=g),
            ]
        )
        x0 = to_pixels(images[idx])
        s = spec[idx].clone()
        looks = s[:, n_scene:].view(b, slots, 6)
        u = torch.rand(b, slots, 6, device=device, generator=g)
        drop_look = (u[..., 1:5] < t["drop_look"]) | (u[..., :1] < t["drop_all_looks"])
        looks[..., 1:5] = torch.where(drop_look, 0, looks[..., 1:5])
        looks[..., 5] = torch.where(u[..., 5] < t["drop_action"], 0, looks[..., 5])
        s[:, n_scene:] = looks.flatten(1)
        ids = ident[idx]
        emb = embeddings[ids.clamp(min=0)]
        emb = F.normalize(
            emb + t["identity_noise"] * torch.randn(emb.shape, device=device, generator=g), dim=-1
        )
        r = torch.rand(b, 4, device=device, generator=g)
        keep_tokens = r[:, 0] >= t["drop_tokens"]
        keep_spec = r[:, 1] >= t["drop_spec"]
        keep_identity = (r[:, 2:3] >= t["drop_identity"]) & (
            torch.rand(b, slots, device=device, generator=g) >= t["drop_identity_slot"]
        )
        keep_identity = keep_identity & (ids >= 0)
        if t.get("drop_all", 0.0) > 0:  # everything dropped at once: the e0 branch of guidance
            keep_any = torch.rand(b, device=device, generator=g) >= t["drop_all"]
            keep_tokens, keep_spec = keep_tokens & keep_any, keep_spec & keep_any
            keep_identity = keep_identity & keep_any[:, None]
        noise = torch.randn(x0.shape, device=device, generator=g)
        steps_t = torch.randint(
            0, noise_sched.config.num_train_timesteps, (b,), device=device, generator=g
        )
        xt = noise_sched.add_noise(x0, noise, steps_t)
        v = noise_sched.get_velocity(x0, noise, steps_t)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            tokens = parts["keyframe_encoder"](x0)
            tokens = tokens + t["token_noise"] * torch.randn(
                tokens.shape, device=device, generator=g
            )
            cond = parts["condition_encoder"](tokens, emb, s, keep_tokens, keep_identity, keep_spec)
            kwargs = {"encoder_hidden_states": cond, "timestep": steps_t}
            try:
                pred = forward(xt, added_cond_kwargs=added, return_dict=False, **kwargs)[0]
            except Exception as exc:  # a compile failure: train eagerly instead
                if forward is parts["transformer"]:
                    raise
                log(f"keyframes: torch.compile failed ({type(exc).__name__}); running eagerly")
                forward = parts["transformer"]
                pred = forward(xt, added_cond_kwargs=added, return_dict=False, **kwargs)[0]
        if weights is None:
            loss = F.mse_loss(pred.float(), v)
        else:  # the weighted mean: the same scale as the plain one
            w = weights[idx][:, None]
            loss = (w * (pred.float() - v) ** 2).mean() / w.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, t["clip_grad"])
        opt.step()
        decay = min(t["ema"], (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), parts.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if step % 250 == 0 or step == t["steps"] - 1:
            recent = float(np.mean(losses[-250:]))
            log(f"keyframes step {step} loss {recent:.4f} ({time.time() - started:.0f}s)")
        if t.get("max_seconds") and time.time() - started > t["max_seconds"]:
            log(f"keyframes: stopping at step {step}, max_seconds reached")
            break
    trained = KeyframePipeline(
        keyframe_encoder=ema["keyframe_encoder"],
        condition_encoder=ema["condition_encoder"],
        transformer=ema["transformer"],
        scheduler=pipe.scheduler,
    )
    trained.set_progress_bar_config(disable=True)
    numbers = evaluate_keyframes(trained, held, embeddings, device, t.get("eval_count", 256))
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


# -- main -------------------------------------------------------------------------------


class RunLog:
    """A training run's log: each line timestamped from the start, printed as it comes and
    kept for `train.log` (`lines`), and the commit of the code it started from (`commit`:
    taken at the start, so edits made while it runs do not mark it dirty)."""

    def __init__(self) -> None:
        self.started, self.lines = time.time(), []
        self.commit = commit()

    def __call__(self, message: str) -> None:
        line = f"[{self.seconds():7.1f}s] {message}"
        print(line, flush=True)
        self.lines.append(line)

    def seconds(self) -> float:
        return time.time() - self.started

    def write(self, folder: Path) -> None:
        (folder / "train.log").write_text("\n".join(self.lines) + "\n", "utf-8")


def start_run(args: argparse.Namespace, seed: int) -> tuple[torch.device, RunLog]:
    """The device (CUDA refused where torch sees none), MKL settled (`reelsmith.numerics`),
    TF32 on, torch seeded, --out made."""
    settle()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {args.device}: torch sees no CUDA device here")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(seed)
    args.out.mkdir(parents=True, exist_ok=True)
    return device, RunLog()


def load_config(model: str, path: Path | None, overrides: list[str]) -> dict:
    """The model's JSON config with `--set KEY=JSON` overrides (a.b.c: the sections a and b
    must exist; c may be new, for the trainers' optional switches such as train.freeze_encoder)."""
    cfg = json.loads((path or CONFIGS / f"{model}.json").read_text("utf-8"))
    for item in overrides:
        key, eq, value = item.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not eq or not isinstance(node, dict) or not leaf:
            raise InputError(f"--set {item}: no config section for {key!r} (write KEY=JSON)")
        try:
            node[leaf] = json.loads(value)
        except json.JSONDecodeError as err:
            raise InputError(f"--set {item}: the value is not JSON ({err.msg})") from None
    return cfg


def commit(here: Path = Path(__file__).parent) -> str:
    """The checkout's commit, with "-dirty" when tracked files differ from it (the run's code is
    then not that commit's)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except OSError:
        return "unknown"
    return (head + "-dirty" * bool(dirty)) if head else "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a built-in reelsmith model.")
    parser.add_argument(
        "model",
        choices=("identity", "looks", "keyframes", "planner", "shots", "motion", "segmenter"),
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("/tmp/reelsmith-data"))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--identity", type=Path, help="identity encoder (keyframes, planner)")
    parser.add_argument("--tokenizer", type=Path, help="planner: keyframe pipeline folder")
    parser.add_argument(
        "--init",
        type=Path,
        help="keyframes, motion: start from this pipeline folder; segmenter: add it to this "
        "motion pipeline",
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.model == "planner":  # its own data and loop: world/train_planner.py
        from reelsmith.world.train_planner import run

        return run(args)
    if args.model == "motion":  # its own data and loops: world/train_motion.py
        from reelsmith.world.train_motion import run

        return run(args)
    if args.model == "segmenter":  # its own data and loop: world/train_segmenter.py
        from reelsmith.world.train_segmenter import run

        return run(args)
    if args.model == "shots":  # its own data and loop: world/train_shots.py
        from reelsmith.world.train_shots import run

        return run(args)
    cfg = load_config(args.model, args.config, args.set)
    device, log = start_run(args, cfg["train"]["seed"])

    slots = cfg["model"].get("slots", 4)
    train_dir = build_data(args.data, cfg["data"]["train"], args.workers, log)
    held_dir = build_data(args.data, cfg["data"]["held_out"], args.workers, log)
    data, held = load_keyframes(train_dir, slots), load_keyframes(held_dir, slots)
    log(f"loaded {len(data['images'])} train and {len(held['images'])} held-out keyframes")
    if args.model == "identity":
        model, record = train_identity(cfg, data, held, device, log)
        save_half(model, args.out)
    elif args.model == "looks":
        model, record = train_looks(cfg, data, held, device, log)
        save_half(model, args.out)
    else:
        encoder = load_identity_encoder(args.identity).to(device)
        if encoder.config.dim != cfg["model"]["identity_dim"]:
            raise InputError(
                f"the identity encoder makes {encoder.config.dim}-d embeddings but "
                f"model.identity_dim is {cfg['model']['identity_dim']}"
            )
        embeddings = encoder.embed(portraits(64).numpy())
        init = args.init or cfg["train"].get("init")
        pipe, record = train_keyframes(cfg, data, held, embeddings, device, log, init)
        pipe.keyframe_encoder.to(torch.float16)
        pipe.condition_encoder.to(torch.float16)
        pipe.transformer.to(torch.float16)
        pipe.save_pretrained(args.out, max_shard_size=MAX_FILE)
    record.update(
        config=cfg,
        commit=log.commit,
        seconds=round(log.seconds(), 1),
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    )
    (args.out / "train_log.json").write_text(json.dumps(record, indent=1), "utf-8")
    log.write(args.out)


if __name__ == "__main__":
    from reelsmith.errors import ReelsmithError

    try:
        main()
    except ReelsmithError as exc:
        raise SystemExit(f"reelsmith.world.train: error: {exc}") from None
