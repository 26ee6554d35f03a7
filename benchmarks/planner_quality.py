"""How well planned keyframes keep identity, place and shot size over a movie, by the judges.

    python benchmarks/planner_quality.py --planner DIR [--count 8] [--long 1] [--seed 9100]

On held-out storyworld screenplays (a seed no model was trained on): `--count` movies of the
`movies` dataset (offline writer, 4 to `--max-shots` shots) and `--long` screenplays of
`--long-shots` shots written and rendered the same way (`random_brief` + the offline writer +
the world renderer, which draws the ground truth the judges are checked on).

Through the product's path: every movie is cast by `ModelReferences` (portrait drawn by the
built-in keyframer from the looks, embedded by the shipped identity encoder; a new series per
movie), then `stages.keyframes.make_keyframes_many` plans and draws its keyframes. Settings,
same seeds:

- `planner`: the planner reads the cast's identity embeddings, the decoder draws from planned
  tokens + identities + spec;
- `memory_off`: no character memory: no identity embeddings anywhere (the planner reads every
  cast member as its null, the decoder draws without identities) and the spec holds only the
  looks the screenplay's descriptions name (`named_traits`), not those casting chose;
- `planner_identities_off`: the planner reads nulls, the decoder still gets identities;
- `identities_off`: no identity embeddings anywhere (the planner reads nulls, the decoder draws
  without identities), but the spec still holds every look casting chose: what the embeddings
  add beyond the looks memory keeps as words;
- `no_planner`: no planner: each keyframe from spec + identities + the tokens of the previous
  keyframe of its scene (`make_keyframes(planner=None)`);
- `named_looks`: memory's identity tokens only: the planner and the decoder read the cast's
  identity embeddings, but the spec holds only the looks the screenplay's descriptions name,
  as in `memory_off`. With `memory_off` beside it, what the identity tokens carry where the
  screenplay's words are all the keyframe models read of a character.

`--describe partial` writes every held-out screenplay from briefs that name only each character's
colour and body ("a pink wizard", `random_brief(describe="partial")`), as people write them, all
drawn by the world renderer like the long ones: casting then chooses the pattern and accessory
once and memory keeps them, which `memory_off` cannot.

Scores (`keyframes_quality.score`): identity accuracy over (shot, character) pairs where the
character covers at least `MIN_PIXELS` pixels of the ground-truth keyframe (the judge must find
the looks the cast gave it, which is what `cast.json` holds); location / time / shot-size
accuracy against the screenplay; false appearances = detections whose looks are none of the
shot's characters' / all detections. Long movies also: identity accuracy over the first and
the last tenth of their shots, and last / first.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from keyframes_quality import MIN_PIXELS, add_check, load_check, scheduler_from, score
from reporting import add_judge_threshold, apply_judge_threshold, print_report

from reelsmith.evaluation.judges import load_judge
from reelsmith.planner.keyframe_planner import load_keyframe_planner
from reelsmith.planner.planning import DEFAULT_TEMPERATURE
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.renderer.identity.encoder import ENCODER, load_identity_encoder
from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
from reelsmith.renderer.keyframes.pipeline import (
    DEFAULT_STEPS,
    load_keyframe_pipeline,
    parse_guidance,
)
from reelsmith.schema.cast import CastEntry
from reelsmith.schema.looks import Identity, cast_identities, named_traits
from reelsmith.schema.screenplay import Screenplay
from reelsmith.stages.cast import ModelReferences
from reelsmith.stages.keyframes import make_keyframes_many
from reelsmith.world.dataset import DatasetSpec, build, random_brief, read
from reelsmith.world.render import WorldConfig, WorldRenderer, place_of

SETTINGS = (
    "planner",
    "memory_off",
    "planner_identities_off",
    "identities_off",
    "no_planner",
    "named_looks",
)


class WithoutIdentities:
    """The built-in keyframer drawing from spec (+ tokens) alone, ignoring identities."""

    def __init__(self, keyframer: BuiltinKeyframer) -> None:
        self.keyframer, self.pipe, self.name = keyframer, keyframer.pipe, keyframer.name

    @property
    def resolution(self) -> int:
        return self.keyframer.resolution

    @property
    def tokenizer(self):
        return self.keyframer.tokenizer

    def draw(self, specs, identities, seeds, tokens=None) -> np.ndarray:
        return self.pipe(
            list(specs),
            tokens=tokens,
            identities=None,
            num_inference_steps=self.keyframer.steps,
            guidance=self.keyframer.guidance,
            generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds],
        ).images


# -- data -----------------------------------------------------------------------------------


def movie_truth(screenplay: Screenplay, frames: np.ndarray, masks: np.ndarray) -> dict:
    """One movie: its screenplay, ground-truth keyframes (T, H, W, 3) and per shot what is
    visible (mask value k + 1 is cast member k) and the labels."""
    shots = []
    for (scene, shot), mask in zip(screenplay.shots(), masks, strict=True):
        counts = np.bincount(mask.ravel(), minlength=len(screenplay.characters) + 1)
        visible = {
            c.id
            for k, c in enumerate(screenplay.characters)
            if c.id in shot.characters and counts[k + 1] >= MIN_PIXELS
        }
        labels = {"location": place_of(scene.location), "time": scene.time.value}
        shots.append({"visible": visible, "labels": {**labels, "size": shot.size.value}})
    return {"screenplay": screenplay, "truth": frames, "shots": shots}


def load_movies(count: int, seed: int, max_shots: int, folder: Path) -> list[dict]:
    spec = DatasetSpec("movies", count, seed=seed, shard_size=64, max_movie_shots=max_shots)
    build(spec, folder, workers=1)
    return [
        movie_truth(
            Screenplay.model_validate(item["record"]["screenplay"]), item["images"], item["masks"]
        )
        for item in read(folder)
    ]


def written_movies(
    count: int, shots: tuple[int, int], seed: int, tag: str, describe: str = "all"
) -> list[dict]:
    """`count` offline-writer screenplays of `shots` (low, high) shots, drawn by the world."""
    renderer = WorldRenderer(WorldConfig(resolution=64, seed=seed, max_frames=1))
    out = []
    for i in range(count):
        rng = random.Random(f"{seed}/{tag}/{i}")
        n = shots[0] if shots[0] == shots[1] else rng.randint(*shots)
        screenplay = OfflineWriter().write(random_brief(rng, n, describe))
        truths = list(renderer.render(screenplay))
        frames = np.stack([t.frames[0] for t in truths])
        masks = np.stack([t.masks[0] for t in truths])
        out.append(movie_truth(screenplay, frames, masks))
    return out


# -- casting and scoring --------------------------------------------------------------------


def cast_movie(screenplay: Screenplay, keyframer, encoder, seed: int) -> dict[str, CastEntry]:
    """The product's casting: a new series per movie, portraits drawn from looks."""
    references = ModelReferences(keyframer, encoder, seed=seed)
    cast = {}
    for character in screenplay.characters:
        ref = references(character, None)
        cast[character.id] = CastEntry(ref.embeddings[ENCODER], ref.identity, ref.portrait)
    return cast


def items_of(movie: dict, cast: dict[str, CastEntry], rows: range | None = None) -> list[dict]:
    """`score` items: per shot the shot's characters' cast looks, who is visible, labels."""
    items = []
    for i, (_, shot) in enumerate(movie["screenplay"].shots()):
        if rows is not None and i not in rows:
            continue
        looks = {c: Identity(**cast[c].looks) for c in shot.characters}
        items.append({"identities": looks, **movie["shots"][i]})
    return items


def scored(judge, movies, casts, frames, rows=None) -> dict:
    """Score keyframes (one (T, H, W, 3) array per movie) over all shots, or `rows(T)`."""
    items, picked = [], []
    for movie, cast, images in zip(movies, casts, frames, strict=True):
        keep = None if rows is None else rows(len(images))
        items += items_of(movie, cast, keep)
        picked.append(images if keep is None else images[keep.start : keep.stop])
    numbers = score(judge, np.concatenate(picked), items)
    numbers.pop("misses")
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in numbers.items()}


def first_tenth(n: int) -> range:
    return range(0, max(1, n // 10))


def last_tenth(n: int) -> range:
    return range(n - max(1, n // 10), n)


def draw(setting, screenplays, cast, blind, keyframer, planner, **kwargs) -> list[np.ndarray]:
    """One setting's keyframes: a (T, H, W, 3) array per movie."""
    if setting == "memory_off":
        out = make_keyframes_many(
            screenplays, blind, WithoutIdentities(keyframer), planner, **kwargs
        )
    elif setting == "named_looks":
        named = [
            {c: CastEntry(e.embedding, b[c].looks, e.portrait) for c, e in cs.items()}
            for cs, b in zip(cast, blind, strict=True)
        ]
        out = make_keyframes_many(screenplays, named, keyframer, planner, **kwargs)
    else:
        out = make_keyframes_many(
            screenplays,
            cast,
            WithoutIdentities(keyframer) if setting == "identities_off" else keyframer,
            None if setting == "no_planner" else planner,
            planner_identities=setting not in ("planner_identities_off", "identities_off"),
            **kwargs,
        )
    return [np.stack([k.image for k in keyframes]) for keyframes in out]


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planner", type=Path, help="planner folder (default: the shipped one)")
    parser.add_argument("--pipeline", type=Path, help="keyframe pipeline folder (shipped)")
    parser.add_argument("--count", type=int, default=8, help="movies of the movies dataset")
    parser.add_argument("--max-shots", type=int, default=32, help="their longest")
    parser.add_argument("--long", type=int, default=1, help="long screenplays")
    parser.add_argument("--long-shots", type=int, default=100)
    parser.add_argument("--seed", type=int, default=9100)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="decoder steps")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    parser.add_argument("--batch", type=int, default=32, help="keyframes per decoder call")
    parser.add_argument("--guidance", default="", help="keyframe decoder's, e.g. spec=3,tokens=2")
    parser.add_argument(
        "--scheduler", default="", help="keyframe decoder's sampler: [CLASS:]KEY=VALUE,..."
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=1,
        help="drawings per keyframe, the identity check keeping one (memory_off and identities_off "
        "draw once: without identities there is nothing to check against)",
    )
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    add_judge_threshold(parser)
    add_check(parser)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--describe", choices=("all", "partial"), default="all", help="what descriptions name"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = [s for s in args.settings.split(",") if s]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; use {list(SETTINGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()

    # 1. models
    needs_planner = set(settings) - {"no_planner"}
    planner = load_keyframe_planner(args.planner, args.device) if needs_planner else None
    guidance = parse_guidance(args.guidance) or None
    pipe = load_keyframe_pipeline(args.pipeline, device=args.device)
    if args.scheduler:
        pipe.scheduler = scheduler_from(pipe.scheduler, args.scheduler)
    encoder = load_identity_encoder().to(args.device)
    check = load_check(args, encoder)
    keyframer = BuiltinKeyframer(
        pipe,
        steps=args.steps,
        guidance=guidance,
        candidates=args.candidates,
        check=check,
        device=args.device,
    )
    judge = load_judge("frame").to(args.device)
    apply_judge_threshold(judge, args.judge_threshold)

    # 2. held-out screenplays and their ground truth
    if args.describe == "all":
        with tempfile.TemporaryDirectory() as tmp:
            sets = {"movies": load_movies(args.count, args.seed, args.max_shots, Path(tmp) / "m")}
    else:
        shots = (4, args.max_shots)
        sets = {"movies": written_movies(args.count, shots, args.seed, "movies", args.describe)}
    if args.long:
        shots = (args.long_shots, args.long_shots)
        sets["long"] = written_movies(args.long, shots, args.seed, "long", args.describe)
    worlds = {  # the looks the world drew each movie's ground truth with
        name: [cast_identities(m["screenplay"].characters) for m in movies]
        for name, movies in sets.items()
    }
    report: dict = {
        "planner": str(args.planner or "shipped"),
        "pipeline": str(args.pipeline or "shipped"),
        "scheduler": args.scheduler or "shipped",
        "seed": args.seed,
        "steps": args.steps,
        "temperature": args.temperature,
        "guidance": keyframer.guidance,
        "describe": args.describe,
        "sets": {
            k: {"movies": len(v), "shots": sum(len(m["truth"]) for m in v)} for k, v in sets.items()
        },
    }
    print(json.dumps(report["sets"]), flush=True)

    # 3. casting through the product's path; memory off knows only what descriptions name
    casts, blind = {}, {}
    for name, movies in sets.items():
        casts[name] = [
            cast_movie(m["screenplay"], keyframer, encoder, args.seed + i)
            for i, m in enumerate(movies)
        ]
        blind[name] = [
            {c.id: CastEntry(None, named_traits(c.description)) for c in m["screenplay"].characters}
            for m in movies
        ]
    matches = [  # the looks casting gave against those the world drew the truth with
        Identity(**cast[c.id].looks) == world[c.id]
        for n in sets
        for m, cast, world in zip(sets[n], casts[n], worlds[n], strict=True)
        for c in m["screenplay"].characters
    ]
    report["cast_looks_match_truth"] = round(sum(matches) / len(matches), 4)
    truth_casts = {
        name: [
            {c: CastEntry(None, w.to_dict()) for c, w in world.items()} for world in worlds[name]
        ]
        for name in sets
    }
    report["judge_on_truth"] = {
        name: scored(judge, movies, truth_casts[name], [m["truth"] for m in movies])
        for name, movies in sets.items()
    }
    print("judge on truth: " + json.dumps(report["judge_on_truth"]), flush=True)

    # 4. plan and draw under each setting, same seeds
    report["settings"] = {}
    for setting in settings:
        t0 = time.time()
        row = {}
        for name, movies in sets.items():
            screenplays = [m["screenplay"] for m in movies]
            seeds = [args.seed + i for i in range(len(movies))]
            kwargs = {"seeds": seeds, "temperature": args.temperature, "batch": args.batch}
            frames = draw(
                setting, screenplays, casts[name], blind[name], keyframer, planner, **kwargs
            )
            row[name] = scored(judge, movies, casts[name], frames)
            if name == "long":
                first = scored(judge, movies, casts[name], frames, first_tenth)
                last = scored(judge, movies, casts[name], frames, last_tenth)
                a, b = first["identity_accuracy"], last["identity_accuracy"]
                row[name].update(
                    identity_first_tenth=a,
                    identity_last_tenth=b,
                    last_over_first=round(b / a, 3) if a else None,
                )
        row["seconds"] = round(time.time() - t0, 1)
        report["settings"][setting] = row
        print(f"{setting}: " + json.dumps(row), flush=True)
    report["seconds"] = round(time.time() - started, 1)
    print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
