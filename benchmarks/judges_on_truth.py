"""The judges' own check: metrics on ground truth of held-out screenplays.

    python benchmarks/judges_on_truth.py --movies 20 --shots 12

Screenplays come from the offline writer with prompts and seeds that no judge saw in
training (training data uses the dataset builder's random briefs); the ground truth is
rendered at 64x64, 8 fps. Prints the mean of each metric over the movies, and the worst movie.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from reporting import add_judge_threshold, apply_judge_threshold

from reelsmith.evaluation.metrics import KEYS, Judges, score_movie
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.schema.looks import cast_identities
from reelsmith.world.render import WorldConfig, WorldRenderer, portrait

PROMPTS = [
    "Mira, Bo and Juno meet in the city at dusk",
    "two robots and a fox search the beach",
    "Ada, a green striped frog with a hat, and Kit explore the snowfield at night",
    "a wizard and two penguins in the space station",
    "Otto and Remy wait in the living room",
    "Nova, a purple cat with glasses, sails from the harbour",
    "Tess and a tall knight cross the desert",
    "three owls in the forest at night",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=16)
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--weights", default=None, help="Folder of judge weights.")
    parser.add_argument("--first-seed", type=int, default=1000, help="Seed of the first movie.")
    add_judge_threshold(parser)
    args = parser.parse_args()
    judges = Judges.load(args.weights)
    apply_judge_threshold(judges.frame, args.judge_threshold)
    results, start = [], time.perf_counter()
    for k in range(args.movies):
        seed = args.first_seed + k
        screenplay = OfflineWriter().write(
            Brief(PROMPTS[k % len(PROMPTS)], shots=args.shots, seed=seed)
        )
        frames = [t.frames for t in WorldRenderer(WorldConfig(seed=seed)).render(screenplay)]
        identities = cast_identities(screenplay.characters)
        references = {c.id: portrait(identities[c.id]) for c in screenplay.characters}
        results.append(score_movie(judges, screenplay, frames, references))
    mean = {key: float(np.mean([r[key] for r in results if r[key] is not None])) for key in KEYS}
    worst = min(results, key=lambda r: r["identity_accuracy"])
    print(
        f"{args.movies} held-out movies x {args.shots} shots, {time.perf_counter() - start:.0f} s"
    )
    print("mean:", json.dumps({k: round(v, 4) for k, v in mean.items()}))
    print(
        "worst identity_accuracy movie:",
        json.dumps({k: round(worst[k], 4) for k in KEYS if worst[k] is not None}),
    )


if __name__ == "__main__":
    main()
