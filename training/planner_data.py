"""The keyframe planner's training data: storyworld movies as flat per-shot arrays, the shipped
tokenizer's tokens of every shot (cached beside the dataset), and clips of consecutive shots."""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from reelsmith.atomic import write_bytes_atomic
from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import PlannerConfig
from reelsmith.renderer.keyframes.pipeline import KeyframePipeline
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.encoding import spec_indices
from reelsmith.schema.looks import Identity
from reelsmith.schema.screenplay import Screenplay
from reelsmith.world.dataset import MANIFEST, read

ENCODE_BATCH = 4096  # keyframes per tokenizer call


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
