"""Keyframe planning: the keyframe tokens of every shot of a screenplay, in story order.

    movie = prepare(screenplay, cast, seed)
    tokens = plan_tokens(load_keyframe_planner(), [movie], [seed])[0]  # (T, K, d)

`cast` maps each character id of the screenplay to what memory holds of it (`CastEntry`): its
identity embedding, its looks (`Identity.to_dict()`: shape, colour, accessory, pattern) and
optionally its reference portrait. A `CastEntry` or a tuple `(embedding, looks[, portrait])`
both do.

The planner (`KeyframePlanner`) reads [style][cast identities] and plans every shot's keyframe
tokens in story order (KV cache, window of W shots). Spec rows, `slot_cast` and the cast order
are built exactly as training builds them (`planner_rows`; `tests/test_planning.py` checks the
two agree). Drawing the keyframes from the tokens is the keyframer's (`stages.keyframes`).

Seeds: every keyframe's seed derives from the run seed and its shot id (`shot_seed`); the
planner's sampling, at a temperature above 0, from the run seed (`plan_seed`, one generator
per movie); at the default 0 the plan does not depend on the seed at all. So editing one
shot leaves the other shots' seeds alone, and a movie's plan does not depend on which other
movies share its batch. Editing a shot still changes the planned tokens of the shots after it,
which read it through the planner's context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from reelsmith.errors import InputError
from reelsmith.numerics import derived_seed
from reelsmith.planner.keyframe_planner import KeyframePlanner
from reelsmith.schema.cast import CastEntry
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.encoding import spec_indices
from reelsmith.schema.screenplay import Scene, Screenplay, Shot

# The planner's sampling temperature: 0 plans each token as the mean of its most likely mixture
# component, so a seed varies the drawing, not the staging. Chosen on validation movies (seed
# 7200, which no benchmark scores): of 1.0, 0.8, 0.6, 0.4 and 0, identity rises and false
# appearances fall as the temperature falls (README.md, "Planning keyframes").
DEFAULT_TEMPERATURE = 0.0


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
    entries: dict[str, CastEntry]  # every character of the screenplay, checked
    seeds: list[int]  # per shot

    @property
    def scene_runs(self) -> list[list[int]]:
        """Shot indices of each scene, in story order."""
        runs: dict[str, list[int]] = {}
        for i, (scene, _) in enumerate(self.shots):
            runs.setdefault(scene.id, []).append(i)
        return list(runs.values())


# -- seeds ----------------------------------------------------------------------------------


def shot_seed(seed: int, shot_id: str) -> int:
    """A keyframe's seed: from the run seed and the shot id only."""
    return derived_seed(seed, "keyframe", shot_id)


def plan_seed(seed: int) -> int:
    """The seed of the planner's sampling for one movie."""
    return derived_seed(seed, "plan")


# -- inputs ---------------------------------------------------------------------------------


def planner_rows(
    screenplay: Screenplay,
    looks: Mapping[str, Mapping[str, str]],
    slots: int,
    max_cast: int,
    descriptions: Mapping[str, str] | None = None,
) -> tuple[list[KeyframeSpec], list[torch.Tensor], list[list[int]], list[str]]:
    """Per shot its spec, `spec_indices` row and slot_cast row; and the prefix's cast order.

    As training builds them (`training.planner_data.movie_rows`): the cast is the screenplay's
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
        entries=entries,
        seeds=[shot_seed(seed, shot.id) for _, shot in shots],
    )


def check_inputs(window: int | None, temperature: float) -> None:
    """Refuse bad planning settings, naming the bad value."""
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    if window is not None and window < 1:
        raise InputError(f"window must be at least 1, got {window}")


# -- planning -------------------------------------------------------------------------------


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
    check_inputs(window, temperature)
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
