"""How well the keyframe models keep identity, place, time and shot size, by the judges.

    python benchmarks/keyframes_quality.py [--count 512] [--seed 9000] [--device cuda]
        [--steps N] [--scheduler [CLASS:]KEY=VALUE,...] [--reconstruction-guidance G ...]

On held-out storyworld keyframes (a seed no model was trained on), through the product's path:

1. casting: each character's reference portrait is drawn from its looks alone (no tokens, no
   identities); the frame judge must recognise the described identity in it;
2. each portrait's identity embedding is computed by the identity encoder;
3. reconstruction: keyframe -> tokens -> decoded with tokens + identities + spec;
4. no tokens: decoded from spec + identities alone.

Identity accuracy is over (keyframe, character) pairs where the character covers at least
`MIN_PIXELS` pixels of the ground-truth keyframe: the judge must find that identity in the
decoded keyframe. Location / time / shot size: the judge's reading of the decoded keyframe
against the truth. The judge's own accuracy on the ground truth is printed alongside, and each
identity accuracy is also given over the pairs the judge finds in the ground truth
(`identity_accuracy_where_judge_sees_truth`): what the decoder loses, without what the judge
cannot see in the first place. `--portraits truth` embeds the storyworld's own portraits
instead of the cast ones: reconstruction without casting's misses.
"""

from __future__ import annotations

import argparse
import operator
import sys
import tempfile
import time
from dataclasses import astuple, fields
from pathlib import Path

import numpy as np
import torch
from reporting import add_judge_threshold, apply_judge_threshold, print_report

from reelsmith.evaluation.judges import judge_frames, load_judge
from reelsmith.renderer.identity.check import IdentityCheck, draw_best
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.keyframes.pipeline import (
    DEFAULT_STEPS,
    PORTRAIT_GUIDANCE,
    load_keyframe_pipeline,
    parse_guidance,
)
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.looks import Identity
from reelsmith.training.data import record_spec
from reelsmith.world.dataset import DatasetSpec, build, read
from reelsmith.world.render import portrait as render_portrait

MIN_PIXELS = 60


def load_items(folder: Path) -> list[dict]:
    items = []
    for item in read(folder):
        r = item["record"]
        spec = record_spec(r)
        ids = {c: Identity.from_index(r["identities"][c]) for c in r["shot"]["characters"]}
        visible = {v["id"] for v in r["labels"]["frames"][0] if v["pixels"] >= MIN_PIXELS}
        items.append(
            {
                "image": item["images"],
                "spec": spec,
                "identities": ids,
                "visible": visible,
                "labels": r["labels"],
            }
        )
    return items


def batched(pipe, specs, tokens, identities, seeds, guidance, steps, batch):
    out = []
    for lo in range(0, len(specs), batch):
        hi = lo + batch
        gens = [torch.Generator(pipe.device).manual_seed(s) for s in seeds[lo:hi]]
        out.append(
            pipe(
                specs[lo:hi],
                tokens=None if tokens is None else tokens[lo:hi],
                identities=None if identities is None else identities[lo:hi],
                guidance=guidance,
                num_inference_steps=steps,
                generator=gens,
            ).images
        )
    return np.concatenate(out)


def draw_kept(check, identities, candidates, pipe, specs, tokens, seeds, guidance, args):
    """Each keyframe drawn `candidates` times, the identity check keeping one (`draw_best`)
    -> (the kept drawings, all of them (candidates, B, H, W, 3))."""
    n = candidates
    kept, drawings = draw_best(
        check,
        lambda flat: batched(
            pipe,
            specs * n,
            None if tokens is None else tokens.repeat(n, 1, 1),
            identities * n,
            flat,
            parse_guidance(guidance),
            args.steps,
            args.batch,
        ),
        seeds,
        [[row[c.id] for c in spec.characters] for spec, row in zip(specs, identities, strict=True)],
        n,
        [[dict(c.looks) for c in spec.characters] for spec in specs],
    )
    return kept, drawings


def candidate_numbers(judge, drawings: np.ndarray, items: list[dict], seen: set) -> dict:
    """Every candidate (`drawings`, candidate-major) judged once -> the first candidate alone
    (what one drawing gets) and the judge's own choice among them (what a perfect check would
    keep: an upper bound for any check, not a path of the product)."""
    verdicts = [judge_frames(judge, torch.from_numpy(d)) for d in drawings]
    return {
        "one_candidate": score_verdicts(verdicts[0], items, seen),
        "judges_choice": score_verdicts(best_verdicts(verdicts, items), items, seen),
    }


def best_verdicts(verdicts: list[list], items: list[dict]) -> list:
    """Per keyframe, the verdict of the candidate in which the judge finds the most of its
    visible characters less its false detections; the earlier candidate on a tie."""
    chosen = []
    for i, item in enumerate(items):
        want = {item["identities"][c] for c in item["visible"]}
        cast = set(item["identities"].values())
        merits = []
        for candidate in verdicts:
            got = {d.identity for d in candidate[i].detections}
            merits.append(len(want & got) - len(got - cast))
        chosen.append(verdicts[merits.index(max(merits))][i])
    return chosen


def score(judge, frames: np.ndarray, items: list[dict], seen: set | None = None) -> dict:
    """The judge's reading of `frames` against the truth of `items` (`score_verdicts`)."""
    return score_verdicts(judge_frames(judge, torch.from_numpy(frames)), items, seen)


def score_verdicts(verdicts, items: list[dict], seen: set | None = None) -> dict:
    """Frame verdicts scored against the truth of `items`. With `seen` (the (keyframe,
    character) pairs the judge finds in the ground truth, `found_pairs`), identity accuracy is
    also given over those pairs alone: the decoder's misses without the judge's."""
    hits = total = false = near = found = 0
    place = time_ = size = 0
    traits = [f.name for f in fields(Identity)]
    misses = dict.fromkeys(("not_found", *traits), 0)
    for verdict, item in zip(verdicts, items, strict=True):
        want = {item["identities"][c] for c in item["visible"]}
        cast = set(item["identities"].values())
        got = {d.identity for d in verdict.detections}
        hits += len(want & got)
        for missed in want - got:  # which looks the closest detection got wrong
            want_looks = astuple(missed)
            closest = max(
                (astuple(d) for d in got),
                key=lambda looks: sum(map(operator.eq, looks, want_looks)),
                default=None,
            )
            if closest is None:
                misses["not_found"] += 1
                continue
            for name, a, b in zip(traits, closest, want_looks, strict=True):
                misses[name] += a != b
        total += len(want)
        false += len(got - cast)
        near += sum(  # false detections one trait away from a character of the shot
            any(sum(map(operator.ne, astuple(d), astuple(c))) == 1 for c in cast)
            for d in got - cast
        )
        found += len(got)
        place += verdict.location == item["labels"]["location"]
        time_ += verdict.time == item["labels"]["time"]
        size += verdict.size == item["labels"]["size"]
    n = len(items)
    return {
        "identity_accuracy": hits / max(total, 1),
        "identity_pairs": total,
        "false_detections": false / max(found, 1),
        "false_detection_count": false,
        "false_one_trait_off": near / max(false, 1),
        "location_accuracy": place / n,
        "time_accuracy": time_ / n,
        "size_accuracy": size / n,
        "misses": misses,
        **(
            {
                "identity_accuracy_where_judge_sees_truth": len(found_pairs(verdicts, items) & seen)
                / max(len(seen), 1),
                "pairs_judge_sees_in_truth": len(seen),
            }
            if seen is not None
            else {}
        ),
    }


def found_pairs(verdicts, items: list[dict]) -> set[tuple[int, str]]:
    """The (keyframe index, character id) pairs of visible characters the judge finds."""
    return {
        (i, c)
        for i, (verdict, item) in enumerate(zip(verdicts, items, strict=True))
        for c in item["visible"]
        if item["identities"][c] in {d.identity for d in verdict.detections}
    }


def write_pairs(path: Path, items: list[dict], found: dict[str, set]) -> None:
    """One CSV row per scored pair: where the judge finds it (1) or not (0), per drawing."""
    import csv
    import io

    from reelsmith.atomic import write_text_atomic

    rows = [["keyframe", "character", "pixels", "characters", *found]]
    for i, item in enumerate(items):
        pixels = {v["id"]: v["pixels"] for v in item["labels"]["frames"][0]}
        for c in sorted(item["visible"]):
            row = [i, c, pixels[c], len(item["identities"])]
            rows.append(row + [int((i, c) in pairs) for pairs in found.values()])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def scheduler_from(shipped, text: str):
    """ "[CLASS:]KEY=VALUE,..." -> a diffusers scheduler built from `shipped`'s config with
    those values (JSON, else strings) and, if named, another diffusers scheduler class."""
    import json

    import diffusers

    if ":" in text:
        name, pairs = text.split(":", 1)
    else:
        name, pairs = ("", text) if "=" in text else (text, "")
    cls = getattr(diffusers, name.strip(), None) if name.strip() else type(shipped)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise ValueError(f"{name.strip()!r} is not a diffusers scheduler (KEY=VALUE for a setting)")
    overrides = {}
    for part in filter(None, pairs.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"scheduler setting {part!r} should be KEY=VALUE")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return cls.from_config(shipped.config, **overrides)


def add_check(parser: argparse.ArgumentParser) -> None:
    """`--check`: what keeps one of `--candidates` drawings (with this script's and the planner
    benchmark's `--candidates`)."""
    parser.add_argument(
        "--check",
        choices=("looks", "identity"),
        default="identity",
        help="what the check keeps a drawing by: its figures' identity embeddings (the "
        "product's check) or, where the spec names them, their looks (the looks reader)",
    )


def load_check(args: argparse.Namespace, encoder) -> IdentityCheck | None:
    """The check `--check` names, or None where one drawing is made (`--candidates` 1)."""
    if args.candidates <= 1:
        return None
    return IdentityCheck.load(args.device, encoder=encoder, looks=args.check == "looks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", type=Path, help="keyframe pipeline folder (shipped)")
    parser.add_argument("--identity", type=Path, help="identity encoder folder (shipped)")
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--seed", type=int, default=9000)
    parser.add_argument("--data", type=Path, help="dataset folder (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--reconstruction-guidance", action="append", default=None, help="e.g. tokens=1.5"
    )
    parser.add_argument(
        "--no-token-guidance", action="append", default=None, help="e.g. spec=2,identity=2"
    )
    parser.add_argument(
        "--portrait-guidance", default="", help="e.g. spec=3 (default: casting's, spec=3)"
    )
    parser.add_argument(
        "--scheduler",
        default="",
        help="the sampler: [CLASS:]KEY=VALUE,... over the shipped scheduler's config, e.g. "
        "thresholding=true or UniPCMultistepScheduler:solver_order=3",
    )
    parser.add_argument(
        "--skip-no-tokens", action="store_true", help="only portraits + reconstruction"
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=1,
        help="draw each keyframe this many times and keep the drawing whose figures match the "
        "characters' identity embeddings best (`renderer.identity_check`, the product's check)",
    )
    add_check(parser)
    add_judge_threshold(parser)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--samples",
        type=Path,
        help="write 64 of each kind of image, and up to 64 keyframes where reconstruction loses "
        "a character the judge finds in the truth (.npz)",
    )
    parser.add_argument(
        "--pairs",
        type=Path,
        help="write every scored (keyframe, character) pair as CSV: its pixels, the shot's "
        "character count, and whether the judge finds it in the truth and in each drawing",
    )
    parser.add_argument(
        "--portraits",
        choices=("cast", "truth"),
        default="cast",
        help="identities from the decoder's cast portraits (the product's path) or from the "
        "storyworld's own portraits",
    )
    args = parser.parse_args()
    started = time.time()
    pipe = load_keyframe_pipeline(args.pipeline, args.device)
    if args.scheduler:
        pipe.scheduler = scheduler_from(pipe.scheduler, args.scheduler)
    encoder = load_identity_encoder(args.identity).to(args.device)
    check = load_check(args, encoder)
    judge = load_judge("frame").to(args.device)
    apply_judge_threshold(judge, args.judge_threshold)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp) / "held-out"
        build(DatasetSpec("keyframes", args.count, seed=args.seed, shard_size=512), folder, 4)
        items = load_items(folder)
    specs = [item["spec"] for item in items]
    truth = np.stack([item["image"] for item in items])
    seeds = list(range(len(items)))
    report: dict = {
        "count": len(items),
        "steps": args.steps,
        "portrait_source": args.portraits,
        "judge_threshold": judge.threshold,
    }
    on_truth = judge_frames(judge, torch.from_numpy(truth))
    report["judge_on_truth"] = score_verdicts(on_truth, items)
    seen = found_pairs(on_truth, items)

    # 1. casting: a portrait per character, from its looks alone
    cast = [(i, c) for i, item in enumerate(items) for c in item["spec"].characters]
    portrait_specs = [KeyframeSpec.portrait(c) for _, c in cast]
    portraits = batched(
        pipe,
        portrait_specs,
        None,
        None,
        list(range(len(cast))),
        parse_guidance(args.portrait_guidance) or PORTRAIT_GUIDANCE,  # casting's, by default
        args.steps,
        args.batch,
    )
    verdicts = judge_frames(judge, torch.from_numpy(portraits))
    right = 0
    for verdict, (i, c) in zip(verdicts, cast, strict=True):
        best = max(verdict.detections, key=lambda d: d.score, default=None)
        right += best is not None and best.identity == items[i]["identities"][c.id]
    report["portraits"] = {"count": len(cast), "identity_accuracy": right / len(cast)}

    # 2. identity embeddings of the cast portraits, as memory would store them (or, with
    # --portraits truth, of the storyworld's own portraits: casting without its misses)
    if args.portraits == "truth":
        embeddings = encoder.embed([render_portrait(items[i]["identities"][c.id]) for i, c in cast])
    else:
        embeddings = encoder.embed(list(portraits))
    identities: list[dict] = [{} for _ in items]
    for emb, (i, c) in zip(embeddings, cast, strict=True):
        identities[i][c.id] = emb

    # 3. reconstruction (the first setting is the one reported as "reconstruction")
    tokens = pipe.encode(truth)
    report["reconstruction_by_guidance"] = {}
    for n, text in enumerate(args.reconstruction_guidance or [""]):
        drawn, drawings = draw_kept(
            check, identities, args.candidates, pipe, specs, tokens, seeds, text, args
        )
        verdicts = judge_frames(judge, torch.from_numpy(drawn))
        numbers = score_verdicts(verdicts, items, seen)
        numbers["mse"] = float(
            np.mean((drawn.astype(np.float32) - truth.astype(np.float32)) ** 2) / 255**2
        )
        report["reconstruction_by_guidance"][text or "default"] = numbers
        if args.candidates > 1:
            numbers.update(candidate_numbers(judge, drawings, items, seen))
        if n == 0:
            decoded, report["reconstruction"] = drawn, numbers
            found = {"truth": seen, "reconstruction": found_pairs(verdicts, items)}

    # 4. no tokens: spec + identities alone
    report["no_tokens"] = {}
    for text in [] if args.skip_no_tokens else args.no_token_guidance or [""]:
        drawn, drawings = draw_kept(
            check, identities, args.candidates, pipe, specs, None, seeds, text, args
        )
        verdicts = judge_frames(judge, torch.from_numpy(drawn))
        numbers = report["no_tokens"][text or "default"] = score_verdicts(verdicts, items, seen)
        if args.candidates > 1:
            numbers.update(candidate_numbers(judge, drawings, items, seen))
        found.setdefault("no_tokens", found_pairs(verdicts, items))
    report["seconds"] = round(time.time() - started, 1)
    print_report(report, args.json)
    if args.pairs:
        write_pairs(args.pairs, items, found)
    if args.samples:
        missed = sorted({i for i, _ in found["truth"] - found["reconstruction"]})[:64]
        np.savez_compressed(
            args.samples,
            truth=truth[:64],
            decoded=decoded[:64],
            missed=np.array(missed, dtype=np.int64),  # keyframes the decoder loses someone in
            missed_truth=truth[missed],
            missed_decoded=decoded[missed],
            **({} if args.skip_no_tokens else {"drawn": drawn[:64]}),
            portraits=portraits[:64],
        )


if __name__ == "__main__":
    sys.exit(main())
