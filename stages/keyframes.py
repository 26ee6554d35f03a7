"""The keyframe stages: plan keyframes (the planner's tokens), then draw keyframes (the keyframer).

    keyframes = make_keyframes(screenplay, cast, keyframer, planner=load_keyframe_planner())
    keyframes[0].image  # (H, W, 3) uint8, the first shot's keyframe

Two paths:

- With a planner (`KeyframePlanner`): `plan_keyframe_tokens` plans every shot's keyframe tokens in
  story order (`planner.planning`), and `draw_keyframes` draws each keyframe from its tokens +
  the characters' identities + the spec.
- Without one (a backend no planner was trained for): scene by scene, a scene's first keyframe
  is drawn from spec + identities, every later one also from the previous keyframe of its
  scene. A keyframer with a keyframe tokenizer (`Keyframer.tokenizer`, the built-in one's)
  gets that keyframe's tokens as `tokens`. `PretrainedKeyframer` has no tokenizer, so there
  each keyframe is drawn from text + identities alone.

Every keyframe's seed derives from the run seed and its shot id (`planning.shot_seed`), so a
keyframe is the same whatever else is drawn in its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import KeyframePlanner
from reelsmith.planner.planning import (
    DEFAULT_TEMPERATURE,
    MovieInputs,
    check_inputs,
    plan_tokens,
    prepare,
)
from reelsmith.renderer.identity.encoder import ENCODER
from reelsmith.renderer.keyframes.keyframer import IdentityReference, Keyframer
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.screenplay import Screenplay

DEFAULT_BATCH = 16  # keyframes per keyframer call
Progress = Callable[[int, int], None]  # (keyframes drawn, keyframes in all)


@dataclass
class PlannedKeyframe:
    """One shot's keyframe.

    Attributes:
        shot_id, scene_id: Which shot.
        spec: What the keyframer was asked to draw.
        tokens: (K, d) the keyframe tokens it was drawn from: the planned ones, or without a
            planner the tokens of the previous keyframe of its scene; None where none.
        image: The keyframe, uint8 (H, W, 3).
        seed: The keyframe's seed (`shot_seed`).
        previous: Without a planner: the shot whose keyframe conditioned this one, if any.
    """

    shot_id: str
    scene_id: str
    spec: KeyframeSpec
    tokens: torch.Tensor | None
    image: np.ndarray
    seed: int
    previous: str | None = None


def make_keyframes(
    screenplay: Screenplay,
    cast: Mapping,
    keyframer: Keyframer,
    planner: KeyframePlanner | None = None,
    seed: int = 0,
    window: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    planner_identities: bool = True,
) -> list[PlannedKeyframe]:
    """Plan and draw one keyframe per shot of `screenplay`, in story order.

    Args:
        screenplay: The movie.
        cast: Character id -> `CastEntry` or (embedding, looks[, portrait]), for every
            character of the screenplay.
        keyframer: Draws the keyframes.
        planner: Plans the keyframe tokens; None draws without (see the module docstring).
        seed: The run seed.
        window: Shots in the planner's KV cache (the planner's config by default).
        temperature: Scales the planner's sampling std; 0 takes the most likely mean.
        batch: Keyframes per keyframer call.
        progress: Called with (keyframes drawn, keyframes in all) after each call.
        planner_identities: False: the planner reads the cast as nulls (an ablation).

    Returns:
        One `PlannedKeyframe` per shot, in story order.

    Raises:
        InputError: A character missing from the cast, an embedding of the wrong width, a
            planner the keyframer cannot read, or a bad setting.
    """
    return make_keyframes_many(
        [screenplay],
        [cast],
        keyframer,
        planner,
        seeds=[seed],
        window=window,
        temperature=temperature,
        batch=batch,
        progress=progress,
        planner_identities=planner_identities,
    )[0]


def make_keyframes_many(
    screenplays: Sequence[Screenplay],
    casts: Sequence[Mapping],
    keyframer: Keyframer,
    planner: KeyframePlanner | None = None,
    seeds: int | Sequence[int] = 0,
    window: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    planner_identities: bool = True,
) -> list[list[PlannedKeyframe]]:
    """`make_keyframes` for several movies at once -> one list of keyframes per movie.

    Movies with as many shots and cast members are planned in one `generate` call; keyframes
    of all movies are drawn together, `batch` at a time. `seeds`: one run seed per movie, or
    one for all.
    """
    # 1. check inputs
    if len(casts) != len(screenplays):
        raise InputError(f"{len(casts)} casts given for {len(screenplays)} screenplays")
    seeds = [seeds] * len(screenplays) if isinstance(seeds, int) else list(seeds)
    if len(seeds) != len(screenplays):
        raise InputError(f"{len(seeds)} seeds given for {len(screenplays)} screenplays")
    if batch < 1:
        raise InputError(f"batch must be at least 1, got {batch}")
    check_inputs(window, temperature)
    check_keyframer(keyframer, planner)
    if planner is not None:
        c = planner.config
        slots, max_cast, width = c.slots, c.max_cast, c.identity_dim
    else:
        tokenizer = keyframer.tokenizer
        slots, max_cast, width = 4, 8, None if tokenizer is None else tokenizer.identity_dim
    movies = [
        prepare(s, cast, seed, slots, max_cast, width, planner_identities)
        for s, cast, seed in zip(screenplays, casts, seeds, strict=True)
    ]
    # 2. plan the tokens, then draw the keyframes
    tokens = plan_keyframe_tokens(movies, planner, seeds, window, temperature)
    return draw_keyframes(movies, tokens, keyframer, batch, progress)


def check_keyframer(keyframer: Keyframer, planner: KeyframePlanner | None) -> None:
    """Refuse a planner the keyframer cannot read, naming what does not fit."""
    if planner is None:
        return
    tokenizer = keyframer.tokenizer
    if tokenizer is None:
        raise InputError(
            f"keyframer '{keyframer.name}' takes no keyframe tokens, so it cannot draw a "
            "planner's plan; plan without a planner"
        )
    c = planner.config
    if tuple(tokenizer.token_shape) != (c.token_count, c.token_dim):
        raise InputError(
            f"the planner plans {c.token_count} tokens of {c.token_dim} but the keyframer's "
            f"decoder reads {tokenizer.token_shape[0]} of {tokenizer.token_shape[1]}"
        )


# -- the stages -----------------------------------------------------------------------------


def plan_keyframe_tokens(
    movies: Sequence[MovieInputs],
    planner: KeyframePlanner | None,
    seeds: Sequence[int],
    window: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
) -> list[torch.Tensor] | None:
    """The plan stage: each movie's planned tokens (T, K, d), or None without a planner."""
    if planner is None:
        return None
    return plan_tokens(planner, movies, seeds, window, temperature)


def draw_keyframes(
    movies: Sequence[MovieInputs],
    tokens: Sequence[torch.Tensor] | None,
    keyframer: Keyframer,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> list[list[PlannedKeyframe]]:
    """The draw stage: every movie's keyframes, from its plan (`tokens`, one (T, K, d) tensor
    per movie) or, with None, scene by scene without one."""
    references = [_references(movie) for movie in movies]
    if tokens is None:
        return _draw_unplanned(keyframer, movies, references, batch, progress)
    return _draw_planned(keyframer, movies, references, tokens, batch, progress)


def _references(movie: MovieInputs) -> dict[str, IdentityReference]:
    """What the keyframer reads of each character: its portrait and identity embedding."""
    return {
        cid: IdentityReference(
            image=e.portrait,
            embeddings={} if e.embedding is None else {ENCODER: e.embedding},
        )
        for cid, e in movie.entries.items()
    }


def _draw(
    keyframer, movies, references, jobs, tokens, batch, done, total, progress
) -> list[np.ndarray]:
    """Draw keyframes for jobs [(movie, shot)], `batch` at a time; tokens (n, K, d) or None."""
    images = []
    for lo in range(0, len(jobs), batch):
        chunk = jobs[lo : lo + batch]
        images.extend(
            keyframer.draw(
                [movies[m].specs[i] for m, i in chunk],
                [references[m] for m, _ in chunk],
                [movies[m].seeds[i] for m, i in chunk],
                tokens=None if tokens is None else tokens[lo : lo + batch],
            )
        )
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return images


def _draw_planned(
    keyframer, movies, references, tokens, batch, progress
) -> list[list[PlannedKeyframe]]:
    jobs = [(m, i) for m, movie in enumerate(movies) for i in range(len(movie.specs))]
    flat = torch.cat(tokens) if jobs else None  # (N, K, d), in job order
    images = _draw(keyframer, movies, references, jobs, flat, batch, 0, len(jobs), progress)
    out: list[list[PlannedKeyframe]] = [[] for _ in movies]
    for (m, i), image in zip(jobs, images, strict=True):
        scene, shot = movies[m].shots[i]
        out[m].append(
            PlannedKeyframe(
                shot.id, scene.id, movies[m].specs[i], tokens[m][i], image, movies[m].seeds[i]
            )
        )
    return out


def _draw_unplanned(keyframer, movies, references, batch, progress) -> list[list[PlannedKeyframe]]:
    """Round r draws the r-th shot of every scene, conditioned on round r - 1's keyframe of the
    same scene (its tokens, where the keyframer has a tokenizer)."""
    tokenizer = keyframer.tokenizer
    runs = [(m, run) for m, movie in enumerate(movies) for run in movie.scene_runs]
    images: list[dict[int, np.ndarray]] = [{} for _ in movies]
    used: list[dict[int, torch.Tensor | None]] = [{} for _ in movies]
    total, done = sum(len(movie.specs) for movie in movies), 0
    for r in range(max((len(run) for _, run in runs), default=0)):
        jobs = [(m, run[r]) for m, run in runs if len(run) > r]
        previous = [(m, run[r - 1]) for m, run in runs if len(run) > r] if r else []
        tokens = None
        if previous and tokenizer is not None:
            before = np.stack([images[m][i] for m, i in previous])
            tokens = torch.cat(
                [tokenizer.encode(before[lo : lo + batch]) for lo in range(0, len(before), batch)]
            )  # (n, K, d)
        drawn = _draw(keyframer, movies, references, jobs, tokens, batch, done, total, progress)
        done += len(jobs)
        for n, ((m, i), image) in enumerate(zip(jobs, drawn, strict=True)):
            images[m][i] = image
            used[m][i] = None if tokens is None else tokens[n]
    return [_unplanned_keyframes(movie, images[m], used[m]) for m, movie in enumerate(movies)]


def _unplanned_keyframes(movie: MovieInputs, images, used) -> list[PlannedKeyframe]:
    first = {run[0] for run in movie.scene_runs}
    keyframes = []
    for i, (scene, shot) in enumerate(movie.shots):
        before = None if i in first else movie.shots[i - 1][1].id
        keyframes.append(
            PlannedKeyframe(
                shot.id, scene.id, movie.specs[i], used[i], images[i], movie.seeds[i], before
            )
        )
    return keyframes
