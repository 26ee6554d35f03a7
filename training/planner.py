"""Train the keyframe planner (`planner.keyframe_planner.KeyframePlanner`) on storyworld movies.

    python -m reelsmith.training planner --out OUT [--tokenizer renderer/weights/keyframes] \
        [--identity renderer/weights/identity] [--set train.max_seconds=600 ...]

1. Data (`planner_data.py`): two `movies` datasets (train and held out, different seeds). Per
   shot the planner reads `spec_indices` of `KeyframeSpec.from_shot` (every character with its
   full looks) and, per slot, the cast index of its character (`slot_cast`); per movie the
   cast's identity embeddings, the identity encoder's embeddings of their canonical portraits,
   in screenplay order. The targets are the keyframe tokenizer's tokens of each shot's first
   frame, encoded once and cached in the dataset's folder, keyed by a hash of its weights.
2. Training: clips of at most `window` consecutive shots (what the generation cache holds),
   padded with `shot_mask`; AdamW with warmup and a cosine decay that ends at `steps` or at
   `max_seconds`, whichever comes first; bf16 autocast on CUDA; an optional EMA copy.
3. Evaluation: the held-out NLL (nats per token dimension, the training loss's unit) over every
   held-out movie cut into consecutive clips of `window` shots, each `eval_every` steps and at
   the end; at the end also without identities and for a Gaussian fitted to the train tokens.
   With `keep_best`, the evaluated weights with the lowest held-out NLL are the ones saved.
4. Output: `save_pretrained` in float16 (`KeyframePlanner.from_pretrained` loads float32),
   `train_log.json` and `train.log`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field

import torch

from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import KeyframePlanner, PlannerConfig
from reelsmith.renderer.identity.encoder import IdentityEncoder, load_identity_encoder
from reelsmith.renderer.keyframes.pipeline import WEIGHTS as KEYFRAME_WEIGHTS
from reelsmith.renderer.keyframes.pipeline import KeyframePipeline, load_keyframe_pipeline
from reelsmith.training.common import (
    RunOptions,
    finish,
    lr_at,
    run_record,
    save_half,
    set_lr,
    start_run,
    update_ema,
)
from reelsmith.training.config import Datasets
from reelsmith.training.data import build_both, portrait_embeddings
from reelsmith.training.planner_data import (
    ClipSampler,
    Movies,
    clips,
    eval_batches,
    load_movies,
    tokenizer_digest,
)
from reelsmith.world.dataset import DatasetSpec


@dataclass(frozen=True)
class PlannerTrainConfig:
    """The planner's run: AdamW on random clips, held-out NLL every `eval_every` steps."""

    seed: int = 0  # torch's seed (initial weights) and the clip sampler's
    steps: int = 20_000  # most steps; the cosine ends at steps or max_seconds, the nearer
    batch: int = 64  # clips per step
    lr: float = 0.001  # peak AdamW learning rate, after warmup
    weight_decay: float = 0.05  # AdamW's, on matrices only (not biases, norms, null vectors)
    warmup: int = 300  # steps of linear warmup
    clip_grad: float = 1.0  # gradient norm clip
    ema: float = 0.999  # most decay of the EMA copy that is evaluated and saved (0: no copy)
    max_seconds: float = 420.0  # most seconds of training (0: no limit)
    log_every: int = 200  # steps between loss lines
    eval_every: int = 500  # steps between held-out evaluations
    eval_batch: int = 256  # clips per held-out batch
    keep_best: bool = True  # save the evaluated weights of the lowest held-out NLL


@dataclass(frozen=True)
class PlannerRunConfig:
    """One planner run: its movies datasets, the planner's sizes and the training."""

    data: Datasets = Datasets(
        train=DatasetSpec(kind="movies", count=8000, seed=11, shard_size=128, max_movie_shots=64),
        held_out=DatasetSpec(
            kind="movies", count=200, seed=7777, shard_size=64, max_movie_shots=64
        ),
    )
    # the planner's sizes (`PlannerConfig`, its own defaults where a config leaves one out)
    model: PlannerConfig = field(
        default_factory=lambda: PlannerConfig(token_mask_prob=0.25, max_positions=256)
    )
    train: PlannerTrainConfig = PlannerTrainConfig()


PRESETS = {"planner": PlannerRunConfig()}  # the shipped planner's run, on one H100


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


class Evaluations:
    """The held-out NLL of the kept weights at each evaluation, and (with `keep_best`) a copy of
    the weights that scored lowest."""

    def __init__(self, kept: KeyframePlanner, held: Movies, table, t: PlannerTrainConfig, log):
        self.kept, self.held, self.table, self.t, self.log = kept, held, table, t, log
        self.evals, self.started = [], time.time()
        self.best: dict = {"nll": math.inf}

    def __call__(self, step: int) -> None:
        nll = held_out_nll(self.kept, self.held, self.table, self.t.eval_batch)
        seconds = round(time.time() - self.started, 1)
        self.evals.append({"step": step, "seconds": seconds, "nll": nll})
        self.log(f"planner step {step} held-out nll {nll:.4f}")
        if self.t.keep_best and nll < self.best["nll"]:
            self.best.update(nll=nll, step=step, state=copy.deepcopy(self.kept.state_dict()))

    def keep_best(self, last_step: int) -> int:
        """Load the best weights into the kept model where they are not the last; -> their step."""
        best = self.best
        if "state" in best and best["step"] != last_step:  # the held-out set picks them
            self.kept.load_state_dict(best["state"])
            self.log(f"planner: keeping step {best['step']} (held-out nll {best['nll']:.4f})")
            self.evals.append({"step": best["step"], "nll": best["nll"], "kept": True})
        return best.get("step", last_step)


# -- training -----------------------------------------------------------------------------


def optimizer(model: KeyframePlanner, t: PlannerTrainConfig):
    """AdamW without weight decay on biases, norms and the learned null / mask vectors."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": t.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(0.9, 0.95)), params


def train_planner(
    config: PlannerRunConfig, data: Movies, held: Movies, table: torch.Tensor, device, log
) -> tuple[KeyframePlanner, dict]:
    """Train on clips of `data`; -> the trained planner (the EMA copy if on) and its record."""
    t = config.train
    model = KeyframePlanner(config.model).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if t.ema else None
    kept = ema if ema is not None else model  # what is evaluated and returned
    ema_params, model_params = list(kept.parameters()), list(model.parameters())
    opt, params = optimizer(model, t)
    sample = ClipSampler(data, table, t.batch, model.config.window, t.seed)
    losses, running = [], torch.zeros((), device=device)
    log(f"planner: {sum(p.numel() for p in params):,} weights, window {model.config.window}")
    evaluate = Evaluations(kept, held, table, t, log)
    started = evaluate.started
    for step in range(t.steps):
        # the schedule runs to `steps` or to `max_seconds`, whichever is nearer
        elapsed = time.time() - started
        at = max(step, int(t.steps * elapsed / t.max_seconds)) if t.max_seconds else step
        set_lr(opt, lr_at(min(at, t.steps), t.steps, t.lr, t.warmup))
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = model(**sample())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.clip_grad)
        opt.step()
        if ema is not None:
            update_ema(ema_params, model_params, step, t.ema)
        running += loss.detach()
        done = step + 1 == t.steps or (t.max_seconds and time.time() - started > t.max_seconds)
        if (step + 1) % t.log_every == 0 or done:
            mean = float(running) / ((step % t.log_every) + 1)
            losses.append({"step": step, "loss": mean})
            running.zero_()
            log(f"planner step {step} loss {mean:.4f} ({time.time() - started:.0f}s)")
        if (step + 1) % t.eval_every == 0 and not done:
            evaluate(step)
        if done:
            if step + 1 < t.steps:
                log(f"planner: stopping at step {step}, max_seconds reached")
            break
    seconds = time.time() - started
    kept.eval()
    evaluate(step)
    kept_step = evaluate.keep_best(step)
    numbers = {
        "nll": evaluate.evals[-1]["nll"],
        "nll_without_identities": held_out_nll(kept, held, table, t.eval_batch, identities=False),
        "gaussian_baseline_nll": gaussian_nll(data, held),
        "movies": len(held.lengths),
        "shots": int(held.lengths.sum()),
    }
    log(f"planner held-out: {json.dumps(numbers)}")
    return kept, {
        "losses": losses,
        "evals": evaluate.evals,
        "steps_run": step + 1,
        "kept_step": kept_step,
        "train_seconds": round(seconds, 1),
        "clips_per_second": round((step + 1) * t.batch / seconds, 1),
        "weights": sum(p.numel() for p in params),
        "held_out": numbers,
    }


# -- main -------------------------------------------------------------------------------


def check_config(config: PlannerRunConfig, pipe: KeyframePipeline, encoder: IdentityEncoder):
    """Raise InputError where the planner config does not fit the tokenizer, the identity
    encoder or the data."""
    model = config.model
    try:
        KeyframePlanner(model)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad planner model config: {exc}") from None
    k, d = pipe.token_shape
    if (model.token_count, model.token_dim) != (k, d):
        raise InputError(
            f"the tokenizer makes {k} tokens of {d} but model.token_count, model.token_dim are "
            f"{model.token_count}, {model.token_dim}"
        )
    if model.identity_dim != encoder.config.dim:
        raise InputError(
            f"the identity encoder makes {encoder.config.dim}-d embeddings but "
            f"model.identity_dim is {model.identity_dim}"
        )
    positions = 1 + model.max_cast + model.window * (1 + k)
    if positions > model.max_positions:
        raise InputError(
            f"a window of {model.window} shots with a cast of {model.max_cast} needs "
            f"{positions} positions but model.max_positions is {model.max_positions}"
        )
    for name in ("train", "held_out"):
        spec = getattr(config.data, name)
        if spec.kind != "movies" or spec.resolution != pipe.resolution:
            raise InputError(
                f"data.{name} must be movies at the tokenizer's resolution {pipe.resolution}, "
                f"got {spec.kind} at {spec.resolution}"
            )
    for name in ("steps", "batch", "log_every", "eval_every", "eval_batch"):
        if getattr(config.train, name) < 1:
            raise InputError(f"train.{name} must be at least 1, got {getattr(config.train, name)}")


def run(config: PlannerRunConfig, options: RunOptions) -> None:
    """`python -m reelsmith.training planner`: build the data, train, write OUT."""
    device, log = start_run(options, config.train.seed)

    # 1. models that make the inputs and targets, checked against the config
    tokenizer = options.tokenizer or KEYFRAME_WEIGHTS
    pipe = load_keyframe_pipeline(tokenizer, device=options.device)
    encoder = load_identity_encoder(options.identity).to(device)
    check_config(config, pipe, encoder)
    digest = tokenizer_digest(tokenizer)
    log(f"tokenizer {tokenizer} ({digest[:16]}), identity encoder {options.identity or 'shipped'}")
    # 2. data
    folders = build_both(options.data, config.data, options.workers, log)
    loaded = {n: load_movies(folders[n], config.model, pipe, digest, log) for n in folders}
    data, held = loaded["train"][0], loaded["held_out"][0]
    table = portrait_embeddings(encoder, torch.cat([data.cast.flatten(), held.cast.flatten()]))
    del pipe, encoder
    # 3. train and evaluate
    model, record = train_planner(
        config, data.to(device), held.to(device), table.to(device), device, log
    )
    # 4. write
    save_half(model.cpu(), options.out)
    record.update(
        data={n: info for n, (_, info) in loaded.items()},
        tokenizer={"path": str(tokenizer), "sha256": digest},
        **run_record(config, log, device),
    )
    finish(options.out, record, log)
