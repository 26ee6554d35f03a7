"""Scoring a movie: identity, adherence, motion and realism, by the judges.

Definitions (N shots; a shot's frames are resized to 64x64; "the judge" is `FrameJudge` at
its own detection threshold, `FrameJudge.threshold`; a character's expected identity is its
storyworld identity, `world.identity.cast_identities(screenplay.characters)`):

- **Expected identity**: each character's storyworld identity as the run cast it (`cast.json`
  in the run directory), else `cast_identities(screenplay.characters)`.
- **Seen**: identity X is *seen* in a shot when the judge detects X in at least
  `SEEN_FRACTION` (20%) of the shot's frames (at least one frame).
- `identity_accuracy`: over every (shot, character listed in `shot.characters`) pair, the
  fraction whose character's identity is seen in that shot.
- `false_appearances`: over every (shot, identity seen in it) pair, the fraction whose
  identity belongs to no character listed in that shot.
- `identity_consistency_self`: for each character, one embedding per shot in which it is seen
  (the mean `IdentityEmbedder` embedding of its detected crops, normalised); the mean cosine
  similarity over all pairs of those shot embeddings; averaged over characters seen in at
  least two shots.
- `identity_consistency_cross`: the mean cosine similarity between each of those shot
  embeddings and the embedding of the character's reference portrait
  (`characters/<id>.png`, cropped at the judge's detection, or whole); averaged over
  characters.
- `location_accuracy`, `time_accuracy`, `shot_size_accuracy`: the fraction of shots whose
  majority frame verdict equals the scripted value (the location as the storyworld place the
  scene's text names, `world.render.place_of`).
- `flicker`: VBench's temporal-flickering score, 1 - mean |f[t+1] - f[t]| / 255 over the
  pixels of consecutive frames, averaged over frame pairs in a shot, then over shots (1.0 is
  perfectly steady; frozen frames also score 1.0, which is why it is never read alone).
- `dynamic_degree`: the fraction of shots with real motion: a shot moves when the mean over
  consecutive frame pairs of the 95th percentile of the per-pixel largest channel difference
  exceeds `MOTION_THRESHOLD` (20/255).
- `copy_paste_rate`: (frozen shots + near-duplicate consecutive shots) / (N + N - 1). A shot is
  frozen when every frame is within `DUPLICATE_MAE` (0.5/255 mean absolute difference) of its
  first; two consecutive shots are near-duplicates when their first frames are.
- `frechet_clip_distance`: the Fréchet distance between Gaussians fitted to `ClipEncoder`
  embeddings of 8-frame windows (stride 4; shorter shots padded with their last frame) of the
  run's shots and of the same screenplay's ground truth; covariances get 1e-6 I.
- `by_position`: every per-shot metric again over the first, middle and last tenth of the shots
  (at least one shot each; the middle tenth is centred on shot N/2).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.evaluation.judges import (
    ClipEncoder,
    FrameJudge,
    IdentityEmbedder,
    crops,
    judge_frames,
    load_judge,
    to_input,
)
from reelsmith.schema.looks import Identity, cast_identities
from reelsmith.schema.screenplay import Screenplay
from reelsmith.world.render import place_of

SEEN_FRACTION = 0.2
MOTION_THRESHOLD = 20 / 255
DUPLICATE_MAE = 0.5 / 255
CLIP_LEN, CLIP_STRIDE = 8, 4
KEYS = (
    "identity_accuracy",
    "false_appearances",
    "identity_consistency_self",
    "identity_consistency_cross",
    "location_accuracy",
    "time_accuracy",
    "shot_size_accuracy",
    "flicker",
    "dynamic_degree",
    "copy_paste_rate",
)


@dataclass
class Judges:
    frame: FrameJudge
    identity: IdentityEmbedder
    clip: ClipEncoder

    @classmethod
    def load(cls, folder: str | None = None) -> Judges:
        """The shipped judges, or those in `folder`."""
        where = {} if folder is None else {"folder": Path(folder)}
        return cls(*(load_judge(name, **where) for name in ("frame", "identity", "clip")))


@dataclass
class ShotScore:
    """What the judges found in one shot."""

    expected: dict[str, Identity]  # character id -> identity, for the shot's characters
    seen: set[Identity]
    embeddings: dict[str, torch.Tensor]  # character id -> unit embedding, where seen
    location_ok: bool
    time_ok: bool
    size_ok: bool
    flicker: float
    moving: bool
    frozen: bool


def to_64(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) at any size -> uint8 (T, 64, 64, 3)."""
    video = torch.from_numpy(np.array(frames, dtype=np.uint8))  # a writable copy
    if video.shape[1:3] == (64, 64):
        return video
    x = video.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(64, 64), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@torch.no_grad()
def score_shot(
    judges: Judges,
    screenplay: Screenplay,
    scene,
    shot,
    frames: torch.Tensor,
    identities: dict[str, Identity],
) -> ShotScore:
    verdicts = judge_frames(judges.frame, frames)
    t = len(frames)
    counts: Counter = Counter()
    boxes: dict[Identity, list[tuple[int, tuple]]] = {}
    for k, verdict in enumerate(verdicts):
        for ident in {d.identity for d in verdict.detections}:
            counts[ident] += 1
        for d in verdict.detections:
            boxes.setdefault(d.identity, []).append((k, d.box))
    need = max(1, math.ceil(SEEN_FRACTION * t))
    seen = {ident for ident, n in counts.items() if n >= need}
    expected = {cid: identities[cid] for cid in shot.characters}
    embeddings = {}
    for cid, ident in expected.items():
        if ident in seen:
            found = boxes[ident]
            x = crops(frames[[k for k, _ in found]], torch.tensor([b for _, b in found]))
            embeddings[cid] = F.normalize(judges.identity(x).mean(0), dim=0)

    def majority(name: str) -> str:
        return Counter(getattr(v, name) for v in verdicts).most_common(1)[0][0]

    f = frames.float() / 255
    diffs = (f[1:] - f[:-1]).abs() if t > 1 else torch.zeros(1, 64, 64, 3)
    motion = diffs.amax(-1).flatten(1).quantile(0.95, dim=1).mean() if t > 1 else 0.0
    return ShotScore(
        expected=expected,
        seen=seen,
        embeddings=embeddings,
        location_ok=majority("location") == place_of(scene.location),
        time_ok=majority("time") == scene.time.value,
        size_ok=majority("size") == shot.size.value,
        flicker=float(1 - diffs.mean()),
        moving=float(motion) > MOTION_THRESHOLD,
        frozen=bool(((f - f[:1]).abs().flatten(1).mean(1) < DUPLICATE_MAE).all()),
    )


def aggregate(
    scores: list[ShotScore], first_frames: list[torch.Tensor], references: dict[str, torch.Tensor]
) -> dict:
    """The metrics over a list of shots (see the module docstring)."""
    pairs = [(s, cid) for s in scores for cid in s.expected]
    found = [cid for s in scores for cid, ident in s.expected.items() if ident in s.seen]
    seen_pairs = [(s, ident) for s in scores for ident in s.seen]
    false = [1 for s, ident in seen_pairs if ident not in set(s.expected.values())]
    per_char: dict[str, list[torch.Tensor]] = {}
    for s in scores:
        for cid, e in s.embeddings.items():
            per_char.setdefault(cid, []).append(e)
    selfs, crosses = [], []
    for cid, embs in per_char.items():
        stack = torch.stack(embs)
        if len(embs) >= 2:
            sim = stack @ stack.T
            n = len(embs)
            selfs.append(float((sim.sum() - n) / (n * (n - 1))))
        if cid in references:
            crosses.append(float((stack @ references[cid]).mean()))
    dup = sum(
        float((a.float() - b.float()).abs().mean() / 255) < DUPLICATE_MAE
        for a, b in zip(first_frames, first_frames[1:], strict=False)
    )
    n = len(scores)
    return {
        "identity_accuracy": len(found) / len(pairs) if pairs else 1.0,
        "false_appearances": len(false) / len(seen_pairs) if seen_pairs else 0.0,
        "identity_consistency_self": float(np.mean(selfs)) if selfs else None,
        "identity_consistency_cross": float(np.mean(crosses)) if crosses else None,
        "location_accuracy": np.mean([s.location_ok for s in scores]).item(),
        "time_accuracy": np.mean([s.time_ok for s in scores]).item(),
        "shot_size_accuracy": np.mean([s.size_ok for s in scores]).item(),
        "flicker": np.mean([s.flicker for s in scores]).item(),
        "dynamic_degree": np.mean([s.moving for s in scores]).item(),
        "copy_paste_rate": (sum(s.frozen for s in scores) + dup) / (2 * n - 1),
        "shots": n,
    }


def positions(n: int) -> dict[str, range]:
    """The first, middle and last tenth of n shots (at least one shot each)."""
    k = max(1, round(n / 10))
    mid = max(0, n // 2 - k // 2)
    return {"first": range(0, k), "middle": range(mid, min(n, mid + k)), "last": range(n - k, n)}


@torch.no_grad()
def clip_embeddings(encoder: ClipEncoder, shots: list[torch.Tensor]) -> torch.Tensor:
    windows = []
    for frames in shots:
        if len(frames) < CLIP_LEN:
            frames = torch.cat([frames, frames[-1:].expand(CLIP_LEN - len(frames), -1, -1, -1)])
        for start in range(0, len(frames) - CLIP_LEN + 1, CLIP_STRIDE):
            windows.append(frames[start : start + CLIP_LEN])
    x = to_input(torch.stack(windows))  # (W, T, 3, 64, 64)
    return torch.cat([encoder(chunk) for chunk in x.split(64)]).double()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to embeddings a (n, d) and b (m, d)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    eye = torch.eye(a.shape[1], dtype=a.dtype) * 1e-6
    cov_a = torch.cov(a.T) + eye if len(a) > 1 else eye
    cov_b = torch.cov(b.T) + eye if len(b) > 1 else eye
    # tr(sqrt(cov_a cov_b)) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a)
    va, qa = torch.linalg.eigh(cov_a)
    root_a = qa @ torch.diag(va.clamp(min=0).sqrt()) @ qa.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle
    return float(value.clamp(min=0))


@torch.no_grad()
def reference_embeddings(judges: Judges, images: dict[str, np.ndarray]) -> dict:
    """Each reference portrait's embedding, cropped at the judge's best detection."""
    out = {}
    for cid, image in images.items():
        frame = to_64(image[None])
        verdict = judge_frames(judges.frame, frame)[0]
        if verdict.detections:
            best = max(verdict.detections, key=lambda d: d.score)
            box = torch.tensor([best.box])
        else:
            box = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
        out[cid] = F.normalize(judges.identity(crops(frame, box))[0], dim=0)
    return out


def score_movie(
    judges: Judges,
    screenplay: Screenplay,
    shot_frames: list[np.ndarray],
    references: dict[str, np.ndarray] | None = None,
    truth_frames: list[np.ndarray] | None = None,
    identities: dict[str, Identity] | None = None,
) -> dict:
    """All metrics of a movie given its frames per shot, in story order.

    `identities` are the characters' storyworld identities as the run cast them (its
    `cast.json`); by default, the screenplay's own casting.
    """
    identities = identities or cast_identities(screenplay.characters)
    videos = [to_64(f) for f in shot_frames]
    scores = [
        score_shot(judges, screenplay, scene, shot, video, identities)
        for (scene, shot), video in zip(screenplay.shots(), videos, strict=True)
    ]
    refs = reference_embeddings(judges, references or {})
    firsts = [v[0] for v in videos]
    result = aggregate(scores, firsts, refs)
    result["by_position"] = {
        name: aggregate([scores[i] for i in span], [firsts[i] for i in span], refs)
        for name, span in positions(len(scores)).items()
    }
    if truth_frames is not None:
        ours = clip_embeddings(judges.clip, videos)
        truth = clip_embeddings(judges.clip, [to_64(f) for f in truth_frames])
        result["frechet_clip_distance"] = frechet_distance(ours, truth)
    return result
