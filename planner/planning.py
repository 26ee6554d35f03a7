"""Keyframe planning: one keyframe per shot of a screenplay, in story order, for a cast.

    keyframes = plan_keyframes(screenplay, cast, keyframer, planner=load_keyframe_planner())
    keyframes[0].image  # (H, W, 3) uint8, the first shot's keyframe

`cast` maps each character id of the screenplay to what memory holds of it: its identity
embedding (under `memory.identity.ENCODER`), its looks (`Identity.to_dict()`: shape, colour,
accessory, pattern) and optionally its reference portrait (which a pretrained keyframer's
IP-Adapter reads). A `CastEntry` or a tuple `(embedding, looks[, portrait])` both do.

Two paths:

- With a planner (`KeyframePlanner`): the planner reads [style][cast identities] and plans every
  shot's keyframe tokens in story order (KV cache, window of W shots); the keyframer then draws
  each keyframe from its tokens + the characters' identities + the spec. Spec rows, `slot_cast`
  and the cast order are built exactly as `world/train_planner.py` builds them for training
  (`planner_rows`; `tests/test_planning.py` checks the two agree).
- Without one (a backend no planner was trained for): scene by scene, a scene's first keyframe
  is drawn from spec + identities, every later one also from the previous keyframe of its
  scene. A keyframer with a keyframe tokenizer (the built-in one: `keyframer.pipe.encode`) gets
  that keyframe's tokens as `tokens`. `PretrainedKeyframer` has no image input besides the
  IP-Adapter's references, so there each keyframe is drawn from text + identities alone.

Seeds: every keyframe's seed derives from the run seed and its shot id (`shot_seed`); the
planner's sampling, at a temperature above 0, from the run seed (`plan_seed`, one generator
per movie); at the default 0 the plan does not depend on the seed at all. So editing one
shot leaves the other shots' seeds alone, and a movie's plan does not depend on which other
movies share its batch. Editing a shot still changes the planned tokens of the shots after it,
which read it through the planner's context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import KeyframePlanner
from reelsmith.renderer.identity.encoder import ENCODER
from reelsmith.renderer.keyframes.keyframer import IdentityReference
from reelsmith.schema.conditioning import KeyframeSpec, spec_indices
from reelsmith.schema.screenplay import Scene, Screenplay, Shot

if TYPE_CHECKING:
    from reelsmith.renderer.keyframes.keyframer import Keyframer

# The planner's sampling temperature: 0 plans each token as the mean of its most likely mixture
# component, so a seed varies the drawing, not the staging. Chosen on validation movies (seed
# 7200, which no benchmark scores): of 1.0, 0.8, 0.6, 0.4 and 0, identity rises and false
# appearances fall as the temperature falls (README.md, "Planning keyframes").
DEFAULT_TEMPERATURE = 0.0
DEFAULT_BATCH = 16  # keyframes per keyframer call
Progress = Callable[[int, int], None]  # (keyframes drawn, keyframes in all)


@dataclass(frozen=True)
class CastEntry:
    """What planning needs of one cast member.

    Attributes:
        embedding: Identity embedding (D,) under `ENCODER`; None where memory holds none (then
            the planner reads its null identity and the keyframer gets no embedding).
        looks: Known traits, e.g. {"shape": "round", "colour": "red", ...}.
        portrait: The reference portrait, uint8 (H, W, 3), for keyframers that read images.
    """

    embedding: torch.Tensor | None
    looks: Mapping[str, str] = field(default_factory=dict)
    portrait: np.ndarray | None = None


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


@dataclass
class MovieInputs:
    """One screenplay, ready to plan: per shot (T shots) and per cast member (C in the prefix)."""

    shots: list[tuple[Scene, Shot]]
    specs: list[KeyframeSpec]
    spec_rows: torch.Tensor  # (T, 4 + 6S) long, `spec_indices` rows
    slot_cast: torch.Tensor  # (T, S) long, each slot's cast index, -1 where none
    order: list[str]  # the prefix's cast, in screenplay order (at most max_cast)
    cast: torch.Tensor  # (C, D) identity embeddings, zeros where absent
    cast_mask: torch.Tensor  # (C,) bool, False where the embedding is absent (the null)
    references: dict[str, IdentityReference]  # what the keyframer reads per character
    seeds: list[int]  # per shot

    @property
    def scene_runs(self) -> list[list[int]]:
        """Shot indices of each scene, in story order."""
        runs: dict[str, list[int]] = {}
        for i, (scene, _) in enumerate(self.shots):
            runs.setdefault(scene.id, []).append(i)
        return list(runs.values())


# -- seeds ----------------------------------------------------------------------------------


def _digest_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def shot_seed(seed: int, shot_id: str) -> int:
    """A keyframe's seed: from the run seed and the shot id only."""
    return _digest_seed(f"{seed}/keyframe/{shot_id}")


def plan_seed(seed: int) -> int:
    """The seed of the planner's sampling for one movie."""
    return _digest_seed(f"{seed}/plan")


# -- inputs ---------------------------------------------------------------------------------


def planner_rows(
    screenplay: Screenplay,
    looks: Mapping[str, Mapping[str, str]],
    slots: int,
    max_cast: int,
    descriptions: Mapping[str, str] | None = None,
) -> tuple[list[KeyframeSpec], list[torch.Tensor], list[list[int]], list[str]]:
    """Per shot its spec, `spec_indices` row and slot_cast row; and the prefix's cast order.

    As training builds them (`world.train_planner.movie_rows`): the cast is the screenplay's
    characters in order, at most `max_cast`; a slot points at its character's place in it
    (-1: none, or a character past `max_cast`).
    """
    order = [c.id for c in screenplay.characters][:max_cast]
    specs, rows, slot_cast = [], [], []
    for scene, shot in screenplay.shots():
        try:
            spec = KeyframeSpec.from_shot(scene, shot, looks, descriptions)
        except ValueError as exc:
            raise InputError(f"shot '{shot.id}': {exc}") from None
        specs.append(spec)
        rows.append(spec_indices(spec, slots))
        pointers = [order.index(c) if c in order else -1 for c in shot.characters[:slots]]
        slot_cast.append(pointers + [-1] * (slots - len(pointers)))
    return specs, rows, slot_cast, order


def _cast_entries(screenplay: Screenplay, cast: Mapping, width: int | None) -> dict:
    """The cast as `CastEntry`s, checked: every screenplay character, embeddings (width,)."""
    entries = {}
    for character in screenplay.characters:
        if character.id not in cast:
            shots = [s.id for _, s in screenplay.shots() if character.id in s.characters]
            seen = f" (on screen in shot '{shots[0]}')" if shots else ""
            raise InputError(
                f"character '{character.id}'{seen} is not in the cast; cast holds {sorted(cast)}"
            )
        entry = cast[character.id]
        if not isinstance(entry, CastEntry):
            if not isinstance(entry, tuple | list) or len(entry) not in (2, 3):
                raise InputError(
                    f"cast entry of '{character.id}' must be a CastEntry or a tuple "
                    f"(embedding, looks[, portrait]), got {type(entry).__name__}"
                )
            entry = CastEntry(*entry)
        if entry.embedding is not None:
            embedding = torch.as_tensor(entry.embedding, dtype=torch.float32).detach().cpu()
            if embedding.ndim != 1 or (width is not None and embedding.shape[0] != width):
                want = f"({width},)" if width is not None else "(D,)"
                raise InputError(
                    f"identity embedding of '{character.id}' has shape "
                    f"{tuple(embedding.shape)}, expected {want}"
                )
            if not torch.isfinite(embedding).all():
                raise InputError(f"identity embedding of '{character.id}' is not finite")
            entry = CastEntry(embedding, entry.looks, entry.portrait)
        entries[character.id] = entry
    return entries


def prepare(
    screenplay: Screenplay,
    cast: Mapping,
    seed: int = 0,
    slots: int = 4,
    max_cast: int = 8,
    identity_dim: int | None = None,
    planner_identities: bool = True,
) -> MovieInputs:
    """Everything planning and drawing read of one screenplay and its cast.

    Args:
        screenplay: The movie.
        cast: Character id -> `CastEntry` or (embedding, looks[, portrait]).
        seed: The run seed.
        slots, max_cast: The planner's (see `PlannerConfig`).
        identity_dim: Expected embedding width, None to accept any.
        planner_identities: False: the planner reads every cast member as the null (an
            ablation); the keyframer still gets the embeddings.
    """
    entries = _cast_entries(screenplay, cast, identity_dim)
    looks = {cid: dict(e.looks) for cid, e in entries.items()}
    descriptions = {c.id: c.description for c in screenplay.characters}
    specs, rows, pointers, order = planner_rows(screenplay, looks, slots, max_cast, descriptions)
    width = identity_dim or next(
        (len(e.embedding) for e in entries.values() if e.embedding is not None), 1
    )
    embeddings = [entries[cid].embedding for cid in order]
    rows_of_cast = [torch.zeros(width) if e is None else e for e in embeddings]
    shots = list(screenplay.shots())
    return MovieInputs(
        shots=shots,
        specs=specs,
        spec_rows=torch.stack(rows),
        slot_cast=torch.tensor(pointers, dtype=torch.long),
        order=order,
        cast=torch.stack(rows_of_cast) if order else torch.zeros(0, width),
        cast_mask=torch.tensor(
            [e is not None and planner_identities for e in embeddings], dtype=torch.bool
        ),
        references={
            cid: IdentityReference(
                image=e.portrait,
                embeddings={} if e.embedding is None else {ENCODER: e.embedding},
            )
            for cid, e in entries.items()
        },
        seeds=[shot_seed(seed, shot.id) for _, shot in shots],
    )


def _token_codec(keyframer):
    """The keyframer's keyframe tokenizer (the built-in pipeline), or None if it has none."""
    pipe = getattr(keyframer, "pipe", None)
    if callable(getattr(pipe, "encode", None)) and hasattr(pipe, "token_shape"):
        return pipe
    return None


def check_inputs(keyframer, planner, window, temperature, batch) -> None:
    """Refuse a planner the keyframer cannot read, and bad settings, naming the bad value."""
    if batch < 1:
        raise InputError(f"batch must be at least 1, got {batch}")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    if window is not None and window < 1:
        raise InputError(f"window must be at least 1, got {window}")
    if planner is None:
        return
    codec = _token_codec(keyframer)
    if codec is None:
        raise InputError(
            f"keyframer '{getattr(keyframer, 'name', type(keyframer).__name__)}' takes no "
            "keyframe tokens, so it cannot draw a planner's plan; plan without a planner"
        )
    c = planner.config
    if tuple(codec.token_shape) != (c.token_count, c.token_dim):
        raise InputError(
            f"the planner plans {c.token_count} tokens of {c.token_dim} but the keyframer's "
            f"decoder reads {codec.token_shape[0]} of {codec.token_shape[1]}"
        )


# -- planning -------------------------------------------------------------------------------


def plan_keyframes(
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
        keyframer: Draws the keyframes (`renderer.keyframer.Keyframer`).
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
    return plan_many(
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


def plan_many(
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
    """`plan_keyframes` for several movies at once -> one list of keyframes per movie.

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
    check_inputs(keyframer, planner, window, temperature, batch)
    if planner is not None:
        c = planner.config
        slots, max_cast, width = c.slots, c.max_cast, c.identity_dim
    else:
        codec = _token_codec(keyframer)
        slots, max_cast, width = 4, 8, None if codec is None else codec.identity_dim
    movies = [
        prepare(s, cast, seed, slots, max_cast, width, planner_identities)
        for s, cast, seed in zip(screenplays, casts, seeds, strict=True)
    ]
    # 2. plan the tokens, then draw the keyframes
    if planner is None:
        return _draw_unplanned(keyframer, movies, batch, progress)
    tokens = plan_tokens(planner, movies, seeds, window, temperature)
    return _draw_planned(keyframer, movies, tokens, batch, progress)


def plan_tokens(
    planner: KeyframePlanner,
    movies: Sequence[MovieInputs],
    seeds: Sequence[int],
    window: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
) -> list[torch.Tensor]:
    """The planned tokens of each movie, (T, K, d) float32 on the CPU.

    Movies of one shot count and cast size share a `generate` call; each samples from its own
    generator, so its plan does not depend on the others.
    """
    device = next(planner.parameters()).device
    groups: dict[tuple[int, int], list[int]] = {}
    for m, movie in enumerate(movies):
        groups.setdefault((len(movie.specs), len(movie.order)), []).append(m)
    out: list[torch.Tensor | None] = [None] * len(movies)
    c = planner.config
    w = c.window if window is None else window
    for (_, cast_size), members in groups.items():
        positions = planner.positions(cast_size, w)
        if positions > c.max_positions:
            raise InputError(
                f"a window of {w} shots with a cast of {cast_size} needs {positions} positions, "
                f"more than the planner's max_positions {c.max_positions}"
            )
        plan = planner.generate(
            style=torch.zeros(len(members), dtype=torch.long, device=device),
            cast=torch.stack([movies[m].cast for m in members]).to(device),  # (B, C, D)
            cast_mask=torch.stack([movies[m].cast_mask for m in members]).to(device),
            specs=torch.stack([movies[m].spec_rows for m in members]).to(device),  # (B, T, .)
            slot_cast=torch.stack([movies[m].slot_cast for m in members]).to(device),
            temperature=temperature,
            generator=[torch.Generator().manual_seed(plan_seed(seeds[m])) for m in members],
            window=window,
        )
        for row, m in enumerate(members):
            out[m] = plan.tokens[row].float().cpu()  # (T, K, d)
    return out


# -- drawing --------------------------------------------------------------------------------


def _draw(keyframer, movies, jobs, tokens, batch, done, total, progress) -> list[np.ndarray]:
    """Draw keyframes for jobs [(movie, shot)], `batch` at a time; tokens (n, K, d) or None."""
    images = []
    for lo in range(0, len(jobs), batch):
        chunk = jobs[lo : lo + batch]
        images.extend(
            keyframer.draw(
                [movies[m].specs[i] for m, i in chunk],
                [movies[m].references for m, _ in chunk],
                [movies[m].seeds[i] for m, i in chunk],
                tokens=None if tokens is None else tokens[lo : lo + batch],
            )
        )
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return images


def _draw_planned(keyframer, movies, tokens, batch, progress) -> list[list[PlannedKeyframe]]:
    jobs = [(m, i) for m, movie in enumerate(movies) for i in range(len(movie.specs))]
    flat = torch.cat(tokens) if jobs else None  # (N, K, d), in job order
    images = _draw(keyframer, movies, jobs, flat, batch, 0, len(jobs), progress)
    out: list[list[PlannedKeyframe]] = [[] for _ in movies]
    for (m, i), image in zip(jobs, images, strict=True):
        scene, shot = movies[m].shots[i]
        out[m].append(
            PlannedKeyframe(
                shot.id, scene.id, movies[m].specs[i], tokens[m][i], image, movies[m].seeds[i]
            )
        )
    return out


def _draw_unplanned(keyframer, movies, batch, progress) -> list[list[PlannedKeyframe]]:
    """Round r draws the r-th shot of every scene, conditioned on round r - 1's keyframe of the
    same scene (its tokens, where the keyframer has a tokenizer)."""
    codec = _token_codec(keyframer)
    runs = [(m, run) for m, movie in enumerate(movies) for run in movie.scene_runs]
    images: list[dict[int, np.ndarray]] = [{} for _ in movies]
    used: list[dict[int, torch.Tensor | None]] = [{} for _ in movies]
    total, done = sum(len(movie.specs) for movie in movies), 0
    for r in range(max((len(run) for _, run in runs), default=0)):
        jobs = [(m, run[r]) for m, run in runs if len(run) > r]
        previous = [(m, run[r - 1]) for m, run in runs if len(run) > r] if r else []
        tokens = None
        if previous and codec is not None:
            before = np.stack([images[m][i] for m, i in previous])
            tokens = torch.cat(
                [codec.encode(before[lo : lo + batch]) for lo in range(0, len(before), batch)]
            )  # (n, K, d)
        drawn = _draw(keyframer, movies, jobs, tokens, batch, done, total, progress)
        done += len(jobs)
        for n, ((m, i), image) in enumerate(zip(jobs, drawn, strict=True)):
            images[m][i] = image
            used[m][i] = None if tokens is None else tokens[n]
    out: list[list[PlannedKeyframe]] = []
    for m, movie in enumerate(movies):
        first = {run[0] for run in movie.scene_runs}
        keyframes = []
        for i, (scene, shot) in enumerate(movie.shots):
            before = None if i in first else movie.shots[i - 1][1].id
            keyframes.append(
                PlannedKeyframe(
                    shot.id,
                    scene.id,
                    movie.specs[i],
                    used[m][i],
                    images[m][i],
                    movie.seeds[i],
                    previous=before,
                )
            )
        out.append(keyframes)
    return out
