"""How well the shot renderer animates a keyframe: identity, motion and realism, by the judges.

    python benchmarks/shots_quality.py [--count 2] [--shots 4] [--seed 9200] [--motion DIR]
        [--device cuda] [--long 1] [--long-seconds 60] [--json PATH]

On held-out storyworld screenplays (a seed no model was trained on: the motion model trains on
clips of seeds 41 and 7741), written and drawn the way the datasets are (`random_brief` + the
offline writer + the world renderer, 64 x 64 at 8 fps, every frame of every shot):

1. each shot is rendered by the shot renderer (the shipped `BuiltinShotRenderer` by default;
   `--motion DIR` for another `save_pretrained` folder) from its GROUND-TRUTH keyframe, with
   each character's identity embedding as training saw it (the shipped identity encoder on the
   identity's canonical portrait), its camera move and blocking;
2. the sets of shots are scored side by side with `evaluation.metrics.score_movie` (per
   movie, then the shot-weighted mean over movies): the ground truth itself, ours, and
   "repeat the keyframe" (every frame = the keyframe); "autoencoded": every true frame
   encoded against its keyframe and decoded by the shot model's own flow autoencoder, the
   best any motion latents it samples could do (its ceiling); and where the pipeline has a
   segmenter, "ours_unlayered": our very motion latents decoded by warping the keyframe as
   one image instead of moving each character as a rigid layer (the layering's ablation).
   The reference portraits passed to it are the canonical portraits, so
   `identity_consistency_cross` is against them;
3. `identity_accuracy_frames`: over every (frame, character listed in the shot) pair, the
   fraction where the frame judge finds the character's identity in that frame (stricter
   than `identity_accuracy`, which needs 20% of a shot's frames);
4. `frechet_clip_distance`: pooled over all shots of all movies, ours and the baseline
   against the ground truth (`metrics.clip_embeddings` + `metrics.frechet_distance`);
5. the long-shot test: `--long` shots (the first shot with characters of each of the first
   movies) stretched to `--long-seconds` and rendered whole. The motion renderer extends a
   long shot itself, clip by clip, each clip warping the shot's own keyframe with the last
   motion latent as context (`BuiltinShotRenderer.render`; it takes no start frame, so
   `renderer.shots.extend_clip_by_clip` is not its path). Score: frame identity accuracy over
   the last 10 s against the first 10 s (last / first; target >= 0.95), for the truth, ours
   and the baseline. Twice: as scripted (characters may walk out of the frame, in the truth
   too, so the ratio mixes exits with drift) and in place (`long_shot_in_place`: everyone
   talks where they stand under a static camera, so only drift lowers it).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from reporting import add_judge_threshold, apply_judge_threshold, print_report

from reelsmith.evaluation.judges import judge_frames
from reelsmith.evaluation.metrics import (
    KEYS,
    Judges,
    clip_embeddings,
    frechet_distance,
    score_movie,
    to_64,
)
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.renderer.identity.encoder import ENCODER, load_identity_encoder
from reelsmith.renderer.shots.builtin import BuiltinShotRenderer
from reelsmith.renderer.shots.motion_pipeline import DEFAULT_GUIDANCE, DEFAULT_STEPS
from reelsmith.renderer.shots.protocol import ShotRequest
from reelsmith.schema.looks import Identity, cast_identities
from reelsmith.schema.screenplay import Action, Blocking, CameraMove, Screenplay
from reelsmith.training.common import to_pixels
from reelsmith.world.dataset import random_brief
from reelsmith.world.render import WorldConfig, WorldRenderer, portrait

FPS = 8
RESOLUTION = 64
SETS = ("truth", "ours", "repeat_keyframe", "autoencoded")
TARGET_LONG_RATIO = 0.95


# -- held-out data --------------------------------------------------------------------------


def held_out_movies(count: int, shots: int, seed: int) -> list[dict]:
    """`count` screenplays of `shots` shots and every frame of their ground truth."""
    renderer = WorldRenderer(WorldConfig(resolution=RESOLUTION, fps=FPS, seed=seed))
    movies = []
    for i in range(count):
        rng = random.Random(f"{seed}/shots/{i}")
        screenplay = OfflineWriter().write(random_brief(rng, shots))
        truth = [t.frames for t in renderer.render(screenplay)]  # per shot (T, r, r, 3)
        movies.append({"screenplay": screenplay, "truth": truth})
    return movies


def identity_requests(screenplay: Screenplay, encoder) -> tuple[dict, dict]:
    """Per character: {ENCODER: embedding} of its canonical portrait, and the portrait."""
    identities = cast_identities(screenplay.characters)
    portraits = {cid: portrait(ident, RESOLUTION) for cid, ident in identities.items()}
    embeddings = encoder.embed(list(portraits.values()))
    by_character = {cid: {ENCODER: e} for cid, e in zip(portraits, embeddings, strict=True)}
    return by_character, portraits


def requests_of(screenplay: Screenplay, truth: list[np.ndarray], identities, seed: int) -> list:
    """One `ShotRequest` per shot, from its ground-truth keyframe, as long as its truth."""
    requests = []
    for k, ((_, shot), frames) in enumerate(zip(screenplay.shots(), truth, strict=True)):
        request = ShotRequest.from_shot(
            shot, frames[0], fps=FPS, seed=seed + k, identities=identities
        )
        if request.frames != len(frames):
            raise ValueError(
                f"shot {shot.id}: {request.frames} frames asked, truth has {len(frames)}"
            )
        requests.append(request)
    return requests


# -- scoring --------------------------------------------------------------------------------


def frame_identity(judge, frames: np.ndarray, expected: list[Identity]) -> tuple[int, int]:
    """(hits, pairs) over every (frame, expected identity) pair: the judge finds it there."""
    if not expected:
        return 0, 0
    verdicts = judge_frames(judge, to_64(frames))
    hits = sum(
        ident in {d.identity for d in verdict.detections}
        for verdict in verdicts
        for ident in expected
    )
    return hits, len(verdicts) * len(expected)


def expected_identities(screenplay: Screenplay) -> list[list[Identity]]:
    identities = cast_identities(screenplay.characters)
    return [[identities[c] for c in shot.characters] for _, shot in screenplay.shots()]


def score_set(judges: Judges, movies: list[dict], shots: list[list[np.ndarray]], portraits) -> dict:
    """`score_movie` per movie, then the shot-weighted mean of each metric over movies; and
    the frame identity accuracy over all frames of all shots."""
    rows, weights, hits, pairs = [], [], 0, 0
    for movie, frames, refs in zip(movies, shots, portraits, strict=True):
        rows.append(score_movie(judges, movie["screenplay"], frames, references=refs))
        weights.append(len(frames))
        for video, expected in zip(frames, expected_identities(movie["screenplay"]), strict=True):
            h, n = frame_identity(judges.frame, video, expected)
            hits, pairs = hits + h, pairs + n
    out = {}
    for key in KEYS:
        given = [
            (row[key], w) for row, w in zip(rows, weights, strict=True) if row[key] is not None
        ]
        total = sum(w for _, w in given)
        out[key] = round(sum(v * w for v, w in given) / total, 4) if total else None
    out["identity_accuracy_frames"] = round(hits / pairs, 4) if pairs else None
    out["identity_frame_pairs"] = pairs
    out["shots"] = sum(weights)
    return out


def fcd(judges: Judges, shots: list[np.ndarray], truth: list[np.ndarray]) -> float:
    ours = clip_embeddings(judges.clip, [to_64(f) for f in shots])
    real = clip_embeddings(judges.clip, [to_64(f) for f in truth])
    return round(frechet_distance(ours, real), 4)


@torch.no_grad()
def autoencoded(pipe, video: np.ndarray, device: str) -> np.ndarray:
    """Every frame of a (T, r, r, 3) uint8 shot through the shot model's flow autoencoder:
    encoded against the shot's first frame (its keyframe) and decoded as the pipeline decodes
    (layered where it has a segmenter)."""
    x = to_pixels(torch.from_numpy(np.ascontiguousarray(video)).to(device))
    latents = pipe.flow_autoencoder.encode(x[:1].expand_as(x), x)
    decoded = pipe.decode_latents(x[:1], latents[None])[0]  # (T, 3, r, r) in [0, 1]
    return (decoded * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


# -- the long-shot test ---------------------------------------------------------------------


def long_shot(movie: dict, seconds: float, seed: int, in_place: bool = False) -> tuple | None:
    """(screenplay, the first shot with characters stretched to `seconds`, its truth).

    in_place: every character talks where it stands and the camera is static, so that nobody
    leaves the frame and the last 10 s show the same characters as the first (a conversation).
    """
    screenplay = movie["screenplay"]
    for scene, shot in screenplay.shots():
        if shot.characters:
            # model_copy does not validate: a stretched shot may outlast the writer's longest
            update: dict = {"duration": seconds}
            if in_place:
                blocking = [Blocking(character=c, action=Action.talk) for c in shot.characters]
                update.update(blocking=blocking, camera=CameraMove.static)
            stretched = shot.model_copy(update=update)
            renderer = WorldRenderer(WorldConfig(resolution=RESOLUTION, fps=FPS, seed=seed))
            truth = renderer.render_shot(screenplay, scene, stretched).frames
            return screenplay, stretched, truth
    return None


def long_shot_test(
    judge, renderer, movies, identities, count: int, seconds: float, seed: int, in_place: bool
):
    window = 10 * FPS  # frames in 10 s
    report = {"seconds": seconds, "shots": 0, "target_last_over_first": TARGET_LONG_RATIO}
    counts = {name: {"first": [0, 0], "last": [0, 0]} for name in SETS}
    started = time.time()
    for movie, ids in zip(movies[:count], identities[:count], strict=True):
        found = long_shot(movie, seconds, seed, in_place)
        if found is None:
            continue
        screenplay, shot, truth = found
        request = ShotRequest.from_shot(shot, truth[0], fps=FPS, seed=seed, identities=ids)
        (ours,) = renderer.render([request])
        expected = [cast_identities(screenplay.characters)[c] for c in shot.characters]
        videos = {
            "truth": truth,
            "ours": ours,
            "repeat_keyframe": np.repeat(truth[:1], len(truth), 0),
        }
        for name, video in videos.items():
            for part, frames in (("first", video[:window]), ("last", video[-window:])):
                h, n = frame_identity(judge, frames, expected)
                counts[name][part][0] += h
                counts[name][part][1] += n
        report["shots"] += 1
    for name, parts in counts.items():
        first, last = (h / n if n else None for h, n in (parts["first"], parts["last"]))
        report[name] = {
            "identity_first_10s": None if first is None else round(first, 4),
            "identity_last_10s": None if last is None else round(last, 4),
            "last_over_first": round(last / first, 4) if first else None,
        }
    ratio = report["ours"]["last_over_first"]
    report["ours_meets_target"] = ratio is not None and ratio >= TARGET_LONG_RATIO
    report["render_seconds"] = round(time.time() - started, 1)
    return report


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--motion", type=Path, help="motion pipeline folder (default: shipped)")
    parser.add_argument("--count", type=int, default=2, help="held-out screenplays")
    parser.add_argument("--shots", type=int, default=4, help="shots per screenplay")
    parser.add_argument("--seed", type=int, default=9200)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="denoising steps")
    parser.add_argument("--batch", type=int, default=8, help="clips per pipeline call")
    parser.add_argument(
        "--guidance", type=float, default=DEFAULT_GUIDANCE, help="over the motion condition"
    )
    parser.add_argument("--long", type=int, default=1, help="long shots (0: skip the test)")
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_judge_threshold(parser)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()

    # 1. models and held-out data
    renderer = BuiltinShotRenderer.from_pretrained(
        args.motion,
        args.device,
        steps=args.steps,
        guidance_scale=args.guidance,
        batch_size=args.batch,
    )
    encoder = load_identity_encoder()
    judges = Judges.load()
    apply_judge_threshold(judges.frame, args.judge_threshold)
    movies = held_out_movies(args.count, args.shots, args.seed)
    cast = [identity_requests(m["screenplay"], encoder) for m in movies]
    identities, portraits = [ids for ids, _ in cast], [refs for _, refs in cast]
    report: dict = {
        "motion": str(args.motion or "shipped"),
        "device": args.device,
        "seed": args.seed,
        "steps": args.steps,
        "guidance": args.guidance,
        "movies": len(movies),
        "shots": sum(len(m["truth"]) for m in movies),
        "video_seconds": round(sum(len(f) for m in movies for f in m["truth"]) / FPS, 1),
    }
    print(json.dumps(report), flush=True)

    # 2. render every shot from its ground-truth keyframe; the baseline repeats it
    t0 = time.time()
    requests = [
        requests_of(m["screenplay"], m["truth"], ids, args.seed + 1000 * i)
        for i, (m, ids) in enumerate(zip(movies, identities, strict=True))
    ]
    flat = [r for movie in requests for r in movie]
    drawn = iter(renderer.render(flat))
    shots = {
        "truth": [m["truth"] for m in movies],
        "ours": [[next(drawn) for _ in movie] for movie in requests],
        "repeat_keyframe": [[np.repeat(f[:1], len(f), 0) for f in m["truth"]] for m in movies],
        "autoencoded": [
            [autoencoded(renderer.pipe, f, args.device) for f in m["truth"]] for m in movies
        ],
    }
    report["render_seconds"] = round(time.time() - t0, 1)
    if renderer.pipe.segmenter is not None:  # the same latents, the keyframe warped whole
        renderer.layered = False
        drawn = iter(renderer.render(flat))
        shots["ours_unlayered"] = [[next(drawn) for _ in movie] for movie in requests]
        renderer.layered = True

    # 3. scores side by side; Fréchet clip distance pooled over all shots
    truth = [f for movie in shots["truth"] for f in movie]
    report["scores"] = {}
    for name in shots:
        row = score_set(judges, movies, shots[name], portraits)
        if name != "truth":
            row["frechet_clip_distance"] = fcd(judges, [f for m in shots[name] for f in m], truth)
        report["scores"][name] = row
        print(f"{name}: " + json.dumps(row), flush=True)

    # 4. the long-shot test
    if args.long:
        for name, in_place in (("long_shot", False), ("long_shot_in_place", True)):
            report[name] = long_shot_test(
                judges.frame,
                renderer,
                movies,
                identities,
                args.long,
                args.long_seconds,
                args.seed,
                in_place,
            )
            print(f"{name}: " + json.dumps(report[name]), flush=True)
    report["seconds"] = round(time.time() - started, 1)
    print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
