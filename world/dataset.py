"""Storyworld datasets for the three things the built-in models learn, streamed in shards.

| kind        | one item                                                              |
| ----------- | --------------------------------------------------------------------- |
| `keyframes` | a shot's first frame + its mask, the shot spec, the cast's identities  |
| `clips`     | a shot's first `clip_frames` frames + masks, the shot spec, identities |
|             | (with `long_shots`, some shots long and cut anywhere: see `DatasetSpec`) |
| `movies`    | every keyframe of one screenplay in story order + the screenplay      |

Items come from the offline writer's screenplays for random briefs in the storyworld's
vocabulary, so the models see exactly the kind of screenplay the product writes. Item i of
shard k depends only on (seed, kind, k, i): shards are built in parallel, a killed build
resumes by keeping every shard whose checksum matches the manifest, and the same seed gives
the same bytes.

On disk: `manifest.json` (the spec, and per shard its files, item count and sha256), and per
shard `shard-00000.npz` (arrays) + `shard-00000.json` (records).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reelsmith.atomic import write_bytes_atomic, write_text_atomic
from reelsmith.errors import InputError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.schema import vocabulary
from reelsmith.schema.looks import cast_identities
from reelsmith.world.render import WorldConfig, WorldRenderer

KINDS = ("keyframes", "clips", "movies")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
LONG_SHOT_SECONDS = (5.0, 60.0)  # the range of a stretched shot's length (`long_shots`)


@dataclass(frozen=True)
class DatasetSpec:
    """What to build.

    Attributes:
        kind: keyframes | clips | movies.
        count: Number of items.
        seed: Everything random derives from it.
        resolution: Frame size in pixels.
        fps: Frames per second of clips.
        clip_frames: Frames per clip.
        shard_size: Items per shard (movies: movies per shard).
        max_movie_shots: Longest movie; lengths are drawn from 4 to this.
        long_shots: Clips: the fraction of items whose shot is stretched to a random length
            of `LONG_SHOT_SECONDS` (log-uniform) and whose clip starts at a random frame of
            it. When above 0, every item holds its shot's first frame (the keyframe) and then
            its `clip_frames` frames, and its record the index in the shot of the clip's first
            frame (`clip_start`; 0 for a shot that is not stretched). 0 (the default) builds
            exactly what it built before the field existed.
    """

    kind: str
    count: int
    seed: int = 0
    resolution: int = 64
    fps: int = 8
    clip_frames: int = 8
    shard_size: int = 512
    max_movie_shots: int = 120
    long_shots: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown dataset kind '{self.kind}'; use one of {', '.join(KINDS)}")
        if self.count < 1:
            raise InputError(f"count must be at least 1, got {self.count}")
        if self.resolution not in (32, 64, 128, 256):
            raise InputError(f"resolution must be 32, 64, 128 or 256, got {self.resolution}")
        for name in ("fps", "clip_frames", "shard_size", "max_movie_shots"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.long_shots <= 1.0:
            raise InputError(f"long_shots must be in [0, 1], got {self.long_shots}")
        if self.long_shots and self.kind != "clips":
            raise InputError(f"long_shots is for clips datasets, not {self.kind}")

    @property
    def num_shards(self) -> int:
        return -(-self.count // self.shard_size)


SYLLABLES = ("ka", "ri", "mo", "lu", "pe", "sa", "to", "vi", "na", "zo", "be", "qui", "dra", "fen")


def random_name(rng: random.Random) -> str:
    """A made-up name: trained judges must not tie looks to a short list of names."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def random_brief(rng: random.Random, shots: int, describe: str = "all") -> Brief:
    """A brief naming 1-3 characters, a place and a time of day.

    describe: "all" spells out every look of each character ("a striped pink wizard with a
    crown"); "partial" names only colour and body ("a pink wizard"), as people write, leaving
    pattern and accessory to casting. The same rng state gives the same characters either way.
    """
    if describe not in ("all", "partial"):
        raise ValueError(f"describe must be 'all' or 'partial', got {describe!r}")
    names: list[str] = []
    count = rng.randint(1, 3)
    while len(names) < count:
        name = random_name(rng)
        if name not in names:
            names.append(name)
    people = []
    for name in names:
        shape_nouns = vocabulary.SHAPES[rng.choice(list(vocabulary.SHAPES))]
        colour = rng.choice(list(vocabulary.COLOURS))
        pattern = rng.choice(list(vocabulary.PATTERNS))
        accessory = rng.choice(list(vocabulary.ACCESSORIES))
        looks = f"{pattern} {colour}"
        if accessory == "none":
            looks, wear = f"bareheaded {looks}", ""
        else:
            wear = " with glasses" if accessory == "glasses" else f" with a {accessory}"
        if describe == "partial":
            looks, wear = colour, ""
        article = "an" if looks[0] in "aeiou" else "a"
        people.append(f"{name}, {article} {looks} {rng.choice(shape_nouns[1:])}{wear},")
    place = rng.choice(list(vocabulary.LOCATIONS))
    time = rng.choice(["by day", "at dusk", "at night"])
    prompt = f"{' and '.join(people)} in the {place} {time}."
    return Brief(prompt, shots=shots, seed=rng.randrange(2**31))


def build(
    spec: DatasetSpec,
    out_dir: str | Path,
    workers: int = 1,
    on_shard: Callable[[int, int], None] | None = None,
) -> dict:
    """Build (or finish building) the dataset in `out_dir`; returns the manifest.

    Args:
        spec: What to build.
        out_dir: Folder; created if missing. A folder holding another spec is refused.
        workers: Processes rendering shards in parallel.
        on_shard: Called with (shards done, shards in all) after each shard, for progress.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _load_or_start(out, spec)
    done = {s["index"]: s for s in manifest["shards"] if _shard_ok(out, s)}
    todo = [k for k in range(spec.num_shards) if k not in done]
    if on_shard:
        on_shard(len(done), spec.num_shards)
    jobs = [(spec, k, str(out)) for k in todo]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_build_shard, jobs)
            for entry in results:
                done[entry["index"]] = entry
                _save_manifest(out, spec, done)
                if on_shard:
                    on_shard(len(done), spec.num_shards)
    else:
        for job in jobs:
            entry = _build_shard(job)
            done[entry["index"]] = entry
            _save_manifest(out, spec, done)
            if on_shard:
                on_shard(len(done), spec.num_shards)
    return _save_manifest(out, spec, done)


def read(out_dir: str | Path) -> Iterator[dict]:
    """Every item of a built dataset, checking the manifest and each shard's checksum."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    for entry in sorted(manifest["shards"], key=lambda s: s["index"]):
        yield from load_shard(out, entry)


def load_shard(out: Path, entry: dict) -> Iterator[dict]:
    """The items of one shard; a corrupted file fails with an error naming it."""
    arrays_path, records_path = out / entry["arrays"], out / entry["records"]
    for path, digest in (
        (arrays_path, entry["arrays_sha256"]),
        (records_path, entry["records_sha256"]),
    ):
        if not path.is_file():
            raise InputError(f"{path}: shard file missing")
        if _sha256(path) != digest:
            raise InputError(f"{path}: checksum mismatch, the shard is corrupted")
    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        records = json.loads(records_path.read_text("utf-8"))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"{arrays_path}: unreadable shard ({exc})") from None
    offsets = arrays.pop("offsets")
    for i, record in enumerate(records):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        item = {k: v[lo:hi] if record.get("sequence") else v[lo] for k, v in arrays.items()}
        item["record"] = record
        yield item


# -- building one shard -----------------------------------------------------------------


def _build_shard(job: tuple[DatasetSpec, int, str]) -> dict:
    spec, k, out = job
    first = k * spec.shard_size
    n = min(spec.shard_size, spec.count - first)
    renderer = _renderer(spec, spec.clip_frames if spec.kind == "clips" else 1)
    images, masks, records, offsets = [], [], [], [0]
    for i in range(first, first + n):
        rng = random.Random(f"{spec.seed}/{spec.kind}/{i}")
        if spec.kind == "movies":
            shots = min(spec.max_movie_shots, 4 + int(rng.expovariate(1 / 24)))
            screenplay = OfflineWriter().write(random_brief(rng, shots))
            identities = cast_identities(screenplay.characters)
            for truth in renderer.render(screenplay):
                images.append(truth.frames[0])
                masks.append(truth.masks[0])
            records.append(
                {
                    "item": i,
                    "sequence": True,
                    "screenplay": screenplay.model_dump(mode="json"),
                    "identities": {cid: ident.index for cid, ident in identities.items()},
                }
            )
        else:
            screenplay = OfflineWriter().write(random_brief(rng, rng.randint(2, 6)))
            identities = cast_identities(screenplay.characters)
            scenes_shots = list(screenplay.shots())
            scene, shot = scenes_shots[rng.randrange(len(scenes_shots))]
            start = 0
            if spec.long_shots:  # its own random stream: the items' other draws are unchanged
                long_rng = random.Random(f"{spec.seed}/{spec.kind}/{i}/long")
                shot, start = _long_shot(spec, shot, long_rng)
            clip_renderer = renderer if start == 0 else _renderer(spec, start + spec.clip_frames)
            truth = clip_renderer.render_shot(screenplay, scene, shot, identities)
            frames, shot_masks = truth.frames[start:], truth.masks[start:]
            if spec.kind == "clips" and len(frames) < spec.clip_frames:  # hold the last frame
                pad = spec.clip_frames - len(frames)
                frames = np.concatenate([frames, np.repeat(frames[-1:], pad, 0)])
                shot_masks = np.concatenate([shot_masks, np.repeat(shot_masks[-1:], pad, 0)])
            if spec.long_shots:  # the keyframe first
                frames = np.concatenate([truth.frames[:1], frames])
                shot_masks = np.concatenate([truth.masks[:1], shot_masks])
                labels = truth.labels["frames"]
                truth.labels["frames"] = labels[:1] + labels[start:]
            images.extend(frames)
            masks.extend(shot_masks)
            records.append(
                {
                    "item": i,
                    "sequence": spec.kind == "clips",
                    "scene": {"location": truth.labels["location"], "time": scene.time.value},
                    "shot": shot.model_dump(mode="json"),
                    "cast": {
                        c.id: c.model_dump(mode="json")
                        for c in screenplay.characters
                        if c.id in shot.characters
                    },
                    "identities": {cid: identities[cid].index for cid in shot.characters},
                    "labels": truth.labels
                    if spec.kind == "clips"
                    else {**truth.labels, "frames": truth.labels["frames"][:1]},
                    **({"clip_start": start} if spec.long_shots else {}),
                }
            )
        offsets.append(len(images))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        images=np.stack(images),
        masks=np.stack(masks),
        offsets=np.asarray(offsets, np.int64),
    )
    name = f"shard-{k:05d}"
    arrays = write_bytes_atomic(Path(out) / f"{name}.npz", buffer.getvalue())
    recs = write_text_atomic(Path(out) / f"{name}.json", json.dumps(records))
    return {
        "index": k,
        "count": n,
        "frames": len(images),
        "arrays": arrays.name,
        "arrays_sha256": _sha256(arrays),
        "records": recs.name,
        "records_sha256": _sha256(recs),
    }


def _renderer(spec: DatasetSpec, max_frames: int) -> WorldRenderer:
    return WorldRenderer(
        WorldConfig(resolution=spec.resolution, fps=spec.fps, seed=spec.seed, max_frames=max_frames)
    )


def _long_shot(spec: DatasetSpec, shot, rng: random.Random) -> tuple:
    """With probability `spec.long_shots`: (the shot stretched to a random length, a random
    first frame for its clip); else (the shot, 0)."""
    if rng.random() >= spec.long_shots:
        return shot, 0
    low, high = LONG_SHOT_SECONDS
    seconds = round(math.exp(rng.uniform(math.log(low), math.log(high))), 2)
    frames = max(1, round(seconds * spec.fps))
    start = rng.randint(0, max(0, frames - spec.clip_frames))
    # model_copy does not validate: a stretched shot may outlast the screenplay's longest
    return shot.model_copy(update={"duration": seconds}), start


# -- manifest ---------------------------------------------------------------------------


def _load_or_start(out: Path, spec: DatasetSpec) -> dict:
    if not (out / MANIFEST).exists():
        return _save_manifest(out, spec, {})
    manifest = _read_manifest(out)
    wanted = _spec_dict(spec)
    if manifest["spec"] != wanted:
        held = manifest["spec"]
        differ = ", ".join(
            f"{k} {held.get(k)} (asked: {wanted.get(k)})"
            for k in sorted(set(held) | set(wanted))
            if held.get(k) != wanted.get(k)
        )
        raise InputError(
            f"{out / MANIFEST}: this folder holds a different {held['kind']} dataset: "
            f"{differ}; use another folder"
        )
    return manifest


def _spec_dict(spec: DatasetSpec) -> dict:
    """The spec as the manifest holds it: a field added later is left out at its default, so
    manifests (and the folders they describe) built before it stay valid and byte-identical."""
    out = asdict(spec)
    if not out["long_shots"]:
        del out["long_shots"]
    return out


def _read_manifest(out: Path) -> dict:
    path = out / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
        assert manifest["format"] == FORMAT_VERSION
        assert isinstance(manifest["shards"], list) and isinstance(manifest["spec"], dict)
    except FileNotFoundError:
        raise InputError(f"{path}: no manifest; is this a dataset folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AssertionError):
        raise InputError(f"{path}: corrupted or unknown manifest") from None
    return manifest


def _save_manifest(out: Path, spec: DatasetSpec, done: dict[int, dict]) -> dict:
    shards = [done[k] for k in sorted(done)]
    manifest = {
        "format": FORMAT_VERSION,
        "spec": _spec_dict(spec),
        "complete": len(shards) == spec.num_shards,
        "items": sum(s["count"] for s in shards),
        "frames": sum(s["frames"] for s in shards),
        "shards": shards,
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _shard_ok(out: Path, entry: dict) -> bool:
    try:
        return (
            _sha256(out / entry["arrays"]) == entry["arrays_sha256"]
            and _sha256(out / entry["records"]) == entry["records_sha256"]
        )
    except (OSError, KeyError):
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
