"""End to end: held-out screenplays -> movies with the built-in models -> the judges' scores.

    python benchmarks/end_to_end.py [--count 4] [--min-shots 6] [--max-shots 8] [--seed 9100]
                                    [--settings full,memory_off,context_off,chained]
                                    [--device cuda] [--out DIR]

Screenplays: `--count` held-out storyworld screenplays (`world.dataset.random_brief` + the
offline writer; `--describe partial`: descriptions name only colour and body, as people write
them, and casting chooses the pattern and accessory that memory then keeps; drawn from the
random stream "<seed>/end-to-end/<i>", which no dataset any model was trained on uses; 9100 is
no training seed either), each with its ground truth drawn by the world renderer (64x64, 8 fps).
Movie i is made with run seed `seed + i`.

Movies are made by the product's components, node by node as `agent/graph.py` runs them: cast
(the series bible, `memory.casting.cast`, with `stages.cast.ModelReferences` drawing each
portrait and the identity encoder embedding it; a new series per movie) -> plan keyframes
(`planner.planning.make_keyframes` with the shipped planner) -> render every shot
(`stages.shots.shot_request`, the shipped shot model) -> frames per shot. The models are the
agent's own (`agent.models.Models`). Why not through the graph itself: two of the ablations
are no backend setting. Memory off needs a cast with no embeddings and only the looks the text
names, which the cast node and the run directory (a portrait and an embedding per character)
have no place for; the chained baseline renders shot i + 1 from shot i's frames, while the
graph fans every shot out at once from its own keyframe. Running all four settings through
one direct path keeps the difference between them the ablation only; the full setting makes
the same frames as `reelsmith make` on the same screenplay and seed, byte for byte
(`tests/test_end_to_end.py` checks it against the real graph).

Settings, same screenplays, same seeds:

- `full`: the product: memory (cast looks + identity embeddings everywhere), the planner with
  its window of earlier shots, every shot rendered from its planned keyframe;
- `memory_off`: no character memory: no identity embeddings anywhere (not the planner, not the
  keyframe decoder, not the shot model) and a cast that holds only the looks the screenplay's
  descriptions name (`world.identity.named_traits`), not those casting chose;
- `context_off`: the planner sees no earlier shots (a KV window of 1 shot: only the current
  one, after the pinned cast);
- `chained`: the temporal-autoregressive paradigm: the first shot's keyframe planned as in
  `full`, every later shot rendered from the last frame of the shot before it, given as the
  shot's keyframe (the built-in shot model takes no other start frame); memory is still
  passed to the shot model.

Scores: `evaluation.metrics.score_movie` per movie (identities expected as the full cast cast
them, which is what a run's cast.json holds; reference portraits the full cast's, for every
setting, as a yardstick), averaged over movies; `ground truth` is the world renderer's own
movie judged the same way (its dynamic degree is the reference: the target is >= 0.7x). The
plot: identity accuracy by position in the movie, per tenth (a shot falls in the tenth its
middle is in), pooled over the (shot, character) pairs of all movies, one line per setting.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from planner_quality import WithoutIdentities
from reporting import add_judge_threshold, apply_judge_threshold

from reelsmith.agent.config import ModelChoice, RunInputs
from reelsmith.agent.models import Models
from reelsmith.evaluation.metrics import KEYS, Judges, score_movie, score_shot, to_64
from reelsmith.memory import casting
from reelsmith.memory.store import SeriesStore
from reelsmith.planner.planning import DEFAULT_TEMPERATURE
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.renderer.identity.encoder import ENCODER
from reelsmith.renderer.shots.protocol import ShotRequest
from reelsmith.schema.cast import CastEntry
from reelsmith.schema.looks import Identity, cast_identities, named_traits
from reelsmith.schema.screenplay import Screenplay
from reelsmith.stages.cast import ModelReferences
from reelsmith.stages.keyframes import make_keyframes
from reelsmith.stages.shots import shot_request
from reelsmith.world.dataset import random_brief
from reelsmith.world.render import WorldConfig, WorldRenderer

FPS = RunInputs().fps  # the agent's frame rate (8), also the ground truth's
TENTHS = 10
# the issue's acceptance numbers for the full system: metric -> (at least / at most, value)
ACCEPTANCE = {
    "identity_accuracy": (">=", 0.85),
    "location_accuracy": (">=", 0.90),
    "dynamic_degree_vs_truth": (">=", 0.70),
    "copy_paste_rate": ("<=", 0.05),
}


@dataclass(frozen=True)
class Setting:
    """One way of making the movies (see the module docstring).

    Attributes:
        title: The row's name in the table and the plot.
        memory: Cast looks and identity embeddings; False: only the looks the text names.
        window: Shots in the planner's KV cache; None: the planner's own (as the agent runs).
        chained: Every shot after the first rendered from the last frame of the one before.
    """

    title: str
    memory: bool = True
    window: int | None = None
    chained: bool = False


SETTINGS = {
    "full": Setting("full system"),
    "memory_off": Setting("memory off", memory=False),
    "context_off": Setting("planner context off", window=1),
    "chained": Setting("chained baseline", chained=True),
}


@dataclass
class Movie:
    """What a setting made of one screenplay, shot by shot, in story order."""

    keyframes: list[np.ndarray]  # the keyframe each shot was rendered from, (H, W, 3) uint8
    requests: list[ShotRequest]  # what the shot renderer received
    frames: list[np.ndarray]  # each shot's frames, (T, H, W, 3) uint8


# -- 1. held-out screenplays and their ground truth -----------------------------------------


def held_out(
    count: int, seed: int, min_shots: int, max_shots: int, describe: str = "all"
) -> list[Screenplay]:
    """`count` offline-writer screenplays of `min_shots` to `max_shots` shots; `describe` as
    `random_brief`'s (what the characters' descriptions name)."""
    screenplays = []
    for i in range(count):
        rng = random.Random(f"{seed}/end-to-end/{i}")
        brief = random_brief(rng, rng.randint(min_shots, max_shots), describe)
        screenplays.append(OfflineWriter().write(brief))
    return screenplays


def ground_truth(screenplay: Screenplay) -> list[np.ndarray]:
    """The world renderer's frames of every shot, as `reelsmith eval run` draws them."""
    return [t.frames for t in WorldRenderer(WorldConfig(fps=FPS)).render(screenplay)]


# -- 2. the product's path: cast -> plan keyframes -> render shots -------------------------


def cast_movie(screenplay: Screenplay, models: Models, seed: int) -> dict[str, CastEntry]:
    """The cast node's casting (`agent.graph.cast_characters`): a new series bible, every
    character cast by `ModelReferences`, read back as the run's copy would be."""
    with tempfile.TemporaryDirectory() as folder, SeriesStore.open(Path(folder), "run") as store:
        make = ModelReferences.for_store(store, models.keyframer, models.encoder, seed)
        members = casting.cast(screenplay, store, make, episode=screenplay.title)
        entries = {}
        for character in screenplay.characters:
            member = members[character.id]
            portrait = store.get_image(member.portrait_blob)
            blob = member.embeddings.get(ENCODER)
            embedding = store.get_tensor(blob) if blob else models.encoder.embed(portrait)[0]
            entries[character.id] = CastEntry(
                embedding.detach().to("cpu", torch.float32), member.identity or {}, portrait
            )
    return entries


def blind_cast(screenplay: Screenplay) -> dict[str, CastEntry]:
    """Memory off: no embedding, no portrait, only the looks the description names."""
    return {c.id: CastEntry(None, named_traits(c.description)) for c in screenplay.characters}


def make_movie(
    setting: Setting,
    screenplay: Screenplay,
    cast: dict[str, CastEntry],
    models: Models,
    seed: int,
    temperature: float = DEFAULT_TEMPERATURE,
) -> Movie:
    """One movie under `setting`; `cast` is the full cast (memory off builds its own);
    `temperature` is the planner's (the product's default unless a study sets it)."""
    # Step 1: keyframes, as the plan node draws them
    keyframer = models.keyframer
    if not setting.memory:
        cast, keyframer = blind_cast(screenplay), WithoutIdentities(keyframer)
    planned = make_keyframes(
        screenplay,
        cast,
        keyframer,
        models.planner,
        seed=seed,
        window=setting.window,
        temperature=temperature,
        batch=models.keyframe_batch,
    )
    # Step 2: shots, one render call each, as the render node makes them. The render node
    # reads its keyframe back from the cache, a C-contiguous array; the shot model's numbers
    # depend on the layout (a strided keyframe gives frames 1/255 off), so the same here.
    keyframes, requests, frames = [], [], []
    with models.shot_renderer() as renderer:
        for (_, shot), keyframe in zip(screenplay.shots(), planned, strict=True):
            start = frames[-1][-1] if setting.chained and frames else keyframe.image
            start = np.ascontiguousarray(start)
            request = shot_request(shot, start, cast, fps=FPS, seed=seed)
            keyframes.append(start)
            requests.append(request)
            frames.append(renderer.render([request])[0])
    return Movie(keyframes, requests, frames)


# -- 3. scores ------------------------------------------------------------------------------


def judge(
    judges: Judges,
    screenplay: Screenplay,
    frames: list[np.ndarray],
    cast: dict[str, CastEntry],
    truth: list[np.ndarray] | None,
) -> dict:
    """`score_movie`, plus identity hits per tenth of the movie: {tenth: [found, pairs]}."""
    identities = {cid: Identity(**entry.looks) for cid, entry in cast.items()}
    references = {cid: entry.portrait for cid, entry in cast.items()}
    result = score_movie(judges, screenplay, frames, references, truth, identities)
    tenths: dict[int, list[int]] = {}
    shots = list(screenplay.shots())
    for i, ((scene, shot), video) in enumerate(zip(shots, frames, strict=True)):
        found = score_shot(judges, screenplay, scene, shot, to_64(video), identities)
        hits = sum(ident in found.seen for ident in found.expected.values())
        row = tenths.setdefault(int(TENTHS * (i + 0.5) / len(shots)), [0, 0])
        row[0] += hits
        row[1] += len(found.expected)
    result["tenths"] = tenths
    return result


def summarise(results: list[dict]) -> dict:
    """Means over movies of every metric (None where no movie has it), per position too, and
    identity accuracy per tenth pooled over all (shot, character) pairs."""

    def mean(rows: list[dict], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(float(np.mean(values)), 4) if values else None

    keys = (*KEYS, "frechet_clip_distance")
    out = {key: mean(results, key) for key in keys}
    out["by_position"] = {
        part: {key: mean([r["by_position"][part] for r in results], key) for key in KEYS}
        for part in results[0]["by_position"]
    }
    by_tenth = []
    for k in range(TENTHS):
        found = sum(r["tenths"].get(k, [0, 0])[0] for r in results)
        pairs = sum(r["tenths"].get(k, [0, 0])[1] for r in results)
        by_tenth.append(round(found / pairs, 4) if pairs else None)
    out["identity_by_tenth"] = by_tenth
    return out


def acceptance(full: dict, memory_off: dict | None, truth: dict) -> dict:
    """The issue's targets, checked on the full system's numbers (no tuning to them)."""
    values = {
        "identity_accuracy": full["identity_accuracy"],
        "location_accuracy": full["location_accuracy"],
        "dynamic_degree_vs_truth": (
            round(full["dynamic_degree"] / truth["dynamic_degree"], 4)
            if truth["dynamic_degree"]
            else None
        ),
        "copy_paste_rate": full["copy_paste_rate"],
    }
    out = {}
    for key, (how, target) in ACCEPTANCE.items():
        value = values[key]
        ok = value is not None and (value >= target if how == ">=" else value <= target)
        out[key] = {"value": value, "target": f"{how} {target}", "met": ok}
    if memory_off is not None:
        on, off = full["identity_accuracy"], memory_off["identity_accuracy"]
        out["memory_beats_memory_off"] = {"value": [on, off], "target": "on > off", "met": on > off}
    return out


# -- 4. the report: Markdown table, JSON, plot ----------------------------------------------

COLUMNS = (  # (heading, metric key)
    ("identity acc.", "identity_accuracy"),
    ("location acc.", "location_accuracy"),
    ("dynamic degree", "dynamic_degree"),
    ("copy-paste", "copy_paste_rate"),
    ("false appear.", "false_appearances"),
    ("FCD vs GT", "frechet_clip_distance"),
    ("id. consistency", "identity_consistency_self"),
)


def markdown(report: dict) -> str:
    """The table of every setting and ground truth, and the acceptance checks."""

    def cell(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    truth_dd = report["ground_truth"]["dynamic_degree"]
    rows = [("ground truth", report["ground_truth"], None)]
    rows += [(SETTINGS[n].title, s, s.get("seconds")) for n, s in report["settings"].items()]
    head = [h for h, _ in COLUMNS] + ["dyn. / GT", "identity first / middle / last tenth", "s"]
    lines = [
        f"End to end: {report['count']} held-out screenplays, {report['shots']} shots, seed "
        f"{report['seed']}, device {report['device']}, planner temperature "
        f"{report['planner_temperature']:g}, frame judge's threshold "
        f"{report['judge_threshold']}. The screenplay's text names every look "
        f"of {report['text_names_every_look']:.0%} of the characters (what memory off knows).",
        "",
        "| setting | " + " | ".join(head) + " |",
        "| --- |" + " ---: |" * len(head),
    ]
    for title, s, seconds in rows:
        ratio = s["dynamic_degree"] / truth_dd if truth_dd else None
        parts = "/".join(cell(s["by_position"][p]["identity_accuracy"]) for p in s["by_position"])
        cells = [cell(s[key]) for _, key in COLUMNS]
        cells += [cell(ratio), parts, "-" if seconds is None else f"{seconds:.0f}"]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if report.get("acceptance"):
        lines += ["", "Acceptance (full system):", ""]
        for key, check in report["acceptance"].items():
            mark = "met" if check["met"] else "NOT met"
            lines.append(f"- {key}: {check['value']} (target {check['target']}): {mark}")
    return "\n".join(lines) + "\n"


PALETTE = [(30, 30, 30), (31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def plot(curves: dict[str, list[float | None]], path: Path) -> None:
    """Identity accuracy per tenth of the movie, one line per setting, drawn with PIL."""
    width, height, left, right, top, bottom = 720, 420, 60, 190, 30, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    x0, x1, y0, y1 = left, width - right, height - bottom, top

    def xy(k: float, v: float) -> tuple[float, float]:
        return x0 + (k + 0.5) / TENTHS * (x1 - x0), y0 - v * (y0 - y1)

    # Step 1: axes, grid and labels
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = xy(0, v)[1]
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        draw.text((x0 - 8, y), f"{v:.2f}", fill="black", font=font, anchor="rm")
    for k in range(TENTHS):
        x = xy(k, 0)[0]
        draw.text((x, y0 + 8), f"{k + 1}", fill="black", font=font, anchor="mt")
    draw.rectangle([x0, y1, x1, y0], outline="black")
    draw.text(((x0 + x1) / 2, height - 12), "tenth of the movie", fill="black", font=font,
              anchor="ms")  # fmt: skip
    draw.text((x0, 12), "identity accuracy by position", fill="black", font=font, anchor="lm")
    # Step 2: one line per setting (skipping tenths that hold no shot), each thinner than the
    # one before so that equal lines show as bands, and the legend
    for n, (name, values) in enumerate(curves.items()):
        colour, width = PALETTE[n % len(PALETTE)], 2 + 2 * (len(curves) - 1 - n)
        points = [xy(k, v) for k, v in enumerate(values) if v is not None]
        if len(points) > 1:
            draw.line(points, fill=colour, width=width, joint="curve")
        for x, y in points:
            r = width / 2 + 2
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        ly = y1 + 10 + 18 * n
        draw.line([(x1 + 15, ly), (x1 + 40, ly)], fill=colour, width=3)
        draw.text((x1 + 46, ly), name, fill="black", font=font, anchor="lm")
    image.save(path)


def write_report(report: dict, out: Path) -> None:
    """end_to_end.md, end_to_end.json and identity_by_position.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "end_to_end.md").write_text(markdown(report), "utf-8")
    (out / "end_to_end.json").write_text(json.dumps(report, indent=1) + "\n", "utf-8")
    curves = {"ground truth": report["ground_truth"]["identity_by_tenth"]}
    curves |= {SETTINGS[n].title: s["identity_by_tenth"] for n, s in report["settings"].items()}
    plot(curves, out / "identity_by_position.png")


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=4, help="held-out screenplays")
    parser.add_argument("--min-shots", type=int, default=6)
    parser.add_argument("--max-shots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=9100)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--device", default="cpu", help="where the product's models run")
    parser.add_argument(
        "--describe",
        choices=("all", "partial"),
        default="all",
        help="descriptions name every look, or colour and body only (casting picks the rest)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help="the planner's sampling temperature (default: the product's)",
    )
    parser.add_argument("--out", type=Path, help="folder for the .md, .json and .png")
    add_judge_threshold(parser)
    args = parser.parse_args(argv)
    names = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; use {list(SETTINGS)}")
    if args.count < 1 or not 1 <= args.min_shots <= args.max_shots:
        parser.error(f"need --count >= 1 and 1 <= --min-shots <= --max-shots, got {vars(args)}")
    torch.manual_seed(0)
    started = time.time()

    # 1. held-out screenplays, their ground truth, the models
    screenplays = held_out(args.count, args.seed, args.min_shots, args.max_shots, args.describe)
    truths = [ground_truth(s) for s in screenplays]
    models = Models(ModelChoice(), device=args.device)
    judges = Judges.load()
    apply_judge_threshold(judges.frame, args.judge_threshold)

    # 2. the cast, as the cast node makes it (memory off drops it in `make_movie`)
    seeds = [args.seed + i for i in range(len(screenplays))]
    casts = [cast_movie(s, models, seed) for s, seed in zip(screenplays, seeds, strict=True)]
    matches = [
        Identity(**cast[c.id].looks) == world[c.id]
        for s, cast in zip(screenplays, casts, strict=True)
        for world in [cast_identities(s.characters)]
        for c in s.characters
    ]
    named = [  # the looks memory off knows (those the text names) against the cast's
        named_traits(c.description) == cast[c.id].looks
        for s, cast in zip(screenplays, casts, strict=True)
        for c in s.characters
    ]
    report: dict = {
        "count": len(screenplays),
        "shots": sum(s.num_shots for s in screenplays),
        "seed": args.seed,
        "device": args.device,
        "judge_threshold": judges.frame.threshold,
        "planner_temperature": args.temperature,
        "describe": args.describe,
        "cast_looks_match_truth": round(sum(matches) / len(matches), 4),
        "text_names_every_look": round(sum(named) / len(named), 4),
    }
    print(
        f"{report['count']} screenplays, {report['shots']} shots; cast looks = the world's "
        f"for {report['cast_looks_match_truth']:.0%} of characters; the text names every look "
        f"of {report['text_names_every_look']:.0%}",
        flush=True,
    )
    report["ground_truth"] = summarise(
        [judge(judges, s, t, c, None) for s, t, c in zip(screenplays, truths, casts, strict=True)]
    )

    # 3. every setting on the same screenplays and seeds, judged
    report["settings"] = {}
    for name in names:
        t0 = time.time()
        results = []
        for screenplay, truth, cast, seed in zip(screenplays, truths, casts, seeds, strict=True):
            movie = make_movie(SETTINGS[name], screenplay, cast, models, seed, args.temperature)
            results.append(judge(judges, screenplay, movie.frames, cast, truth))
        report["settings"][name] = {**summarise(results), "seconds": round(time.time() - t0, 1)}
        print(f"{name}: {json.dumps(report['settings'][name])}", flush=True)

    # 4. the report
    if "full" in names:
        report["acceptance"] = acceptance(
            report["settings"]["full"],
            report["settings"].get("memory_off"),
            report["ground_truth"],
        )
    report["seconds"] = round(time.time() - started, 1)
    print(markdown(report))
    if args.out:
        write_report(report, args.out)
        print(f"wrote {args.out / 'end_to_end.md'}, end_to_end.json, identity_by_position.png")
    return report


if __name__ == "__main__":
    main()
