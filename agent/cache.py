"""Content keys: what a keyframe or a shot depends on, hashed, so nothing is made twice.

A key is the sha256 of a canonical JSON document of everything the output depends on. Outputs
are stored under their key in the run directory (`cache/keyframes/<key>.png`,
`cache/shots/<key>.npy`), so a resumed run finds what a killed one finished, an edit changes
the keys of exactly what it touches, and undoing an edit finds the old outputs again.

| output   | its key covers                                                                  |
| -------- | ------------------------------------------------------------------------------- |
| keyframe | the keyframe spec (place, time, size, camera, characters with looks, action and |
|          | description, prompt), each character's identity embedding and portrait, the     |
|          | keyframer and planner (weights, settings, versions), the keyframe's seed, the   |
|          | resolution                                                                      |
| shot     | the keyframe image, frames, fps, motion text, camera move, actions, each        |
|          | character's identity embedding, the shot's seed, the shot renderer (weights,    |
|          | settings, versions)                                                             |

A keyframe's key leaves out the keyframes around it (the planner's context, or the previous
keyframe of its scene without a planner): an edit re-draws the edited shot's keyframe only, and
the shots after it keep theirs, although a fresh run of the edited screenplay would plan them
again in the light of the edit.

Seeds derive from the run seed and the shot id (`stages.shots.render_seed`; keyframes use
`planning.shot_seed`), never from a shot's position, so an edit leaves other shots' seeds alone.

Each shot also has an index file, `index/<shot>.json`: the keys its keyframe and frames have
now. The index is what `reelsmith status` reads; the stored outputs are found by key alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import diffusers
import numpy as np
import torch
from PIL import Image

from reelsmith import __version__
from reelsmith.atomic import write_bytes_atomic, write_text_atomic
from reelsmith.renderer.assembly.movie import write_png
from reelsmith.renderer.shots.protocol import ShotRequest
from reelsmith.schema.conditioning import KeyframeSpec

CACHE_VERSION = 1  # bump when a key's contents change meaning
HASHED_FILE_BYTES = 256 * 2**20  # larger weight files are fingerprinted by size and mtime


# -- digests -------------------------------------------------------------------------------


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_digest(array: np.ndarray | torch.Tensor) -> str:
    """sha256 of an array's dtype, shape and values (a tensor is read as float32 on the CPU)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu", torch.float32).numpy()
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return digest(header + array.tobytes())


def content_key(kind: str, parts: Mapping) -> str:
    """The key of an output of `kind`: sha256 of canonical JSON of `parts` (sorted keys)."""
    document = {"kind": kind, "cache": CACHE_VERSION, **parts}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=_plain)
    return digest(text.encode())


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return array_digest(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(f"cannot key a {type(value).__name__}")


# -- models --------------------------------------------------------------------------------


@cache
def folder_fingerprint(folder: str) -> str:
    """sha256 over a model folder's files: names, sizes, and contents (size and mtime only
    for files over `HASHED_FILE_BYTES`). Training logs and hidden files are left out."""
    root = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.name.startswith("train") and path.suffix in (".json", ".log"):
            continue
        stat = path.stat()
        h.update(f"{rel}\0{stat.st_size}\0".encode())
        if stat.st_size <= HASHED_FILE_BYTES:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(2**20), b""):
                    h.update(block)
        else:
            h.update(str(stat.st_mtime_ns).encode())
    return h.hexdigest()


def model_fingerprint(model: str | Path) -> str:
    """What identifies a model's weights: a local folder's contents, else the Hub id as given
    (a new upload under the same Hub id is not noticed: pin a local folder for that)."""
    path = Path(os.path.expanduser(str(model)))
    if path.is_dir():
        return folder_fingerprint(str(path.resolve()))
    return f"hub:{model}"


def versions() -> dict[str, str]:
    """The versions whose numerics an output depends on."""
    return {
        "reelsmith": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }


# -- keys ----------------------------------------------------------------------------------


def identity_digest(embedding: torch.Tensor | None, portrait: np.ndarray | None) -> dict:
    return {
        "embedding": None if embedding is None else array_digest(embedding),
        "portrait": None if portrait is None else array_digest(portrait),
    }


def keyframe_key(
    spec: KeyframeSpec,
    identities: Mapping[str, dict],
    seed: int,
    keyframer: Mapping,
    planner: Mapping | None,
    resolution: int,
) -> str:
    """The key of one keyframe (see the module docstring).

    Args:
        spec: What the keyframer is asked to draw.
        identities: `identity_digest` of each character of the spec, by id.
        seed: The keyframe's own seed.
        keyframer, planner: Their descriptions (`backends.Models.keyframer_id`, `planner_id`).
        resolution: The keyframe's side in pixels.
    """
    return content_key(
        "keyframe",
        {
            "spec": spec,
            "identities": {c.id: identities.get(c.id) for c in spec.characters},
            "seed": seed,
            "keyframer": keyframer,
            "planner": planner,
            "resolution": resolution,
        },
    )


def shot_key(request: ShotRequest, renderer: Mapping) -> str:
    """The key of one shot's frames: everything of its request, and the renderer."""
    return content_key(
        "shot",
        {
            "keyframe": array_digest(request.keyframe),
            "start": None if request.start is None else array_digest(request.start),
            "size": list(request.keyframe.shape),
            "frames": request.frames,
            "fps": request.fps,
            "motion": request.motion,
            "camera": request.camera.value,
            "actions": {who: what.value for who, what in sorted(request.actions.items())},
            "identities": {
                who: {enc: array_digest(t) for enc, t in sorted(by_encoder.items())}
                for who, by_encoder in sorted(request.identities.items())
            },
            "seed": request.seed,
            "renderer": renderer,
        },
    )


# -- storage -------------------------------------------------------------------------------


class Cache:
    """Keyframes and shot frames stored by key in a run directory, and the per-shot index."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir)

    # keyframes: cache/keyframes/<key>.png, and <key>.npy for the tokens it was drawn from
    def keyframe_path(self, key: str) -> Path:
        return self.root / "cache" / "keyframes" / f"{key}.png"

    def has_keyframe(self, key: str) -> bool:
        return self.keyframe_path(key).is_file()

    def put_keyframe(self, key: str, image: np.ndarray, tokens: torch.Tensor | None) -> None:
        if tokens is not None:  # first, so that a keyframe on disk always has its tokens
            array = tokens.detach().to("cpu", torch.float32).numpy()
            write_bytes_atomic(self.keyframe_path(key).with_suffix(".npy"), _npy(array))
        write_png(image, self.keyframe_path(key))

    def keyframe(self, key: str) -> np.ndarray:
        with Image.open(self.keyframe_path(key)) as image:
            return np.asarray(image.convert("RGB"))

    # shots: cache/shots/<key>.npy, (T, H, W, 3) uint8 as rendered (lossless)
    def shot_path(self, key: str) -> Path:
        return self.root / "cache" / "shots" / f"{key}.npy"

    def has_shot(self, key: str) -> bool:
        return self.shot_path(key).is_file()

    def put_shot(self, key: str, frames: np.ndarray) -> None:
        write_bytes_atomic(self.shot_path(key), _npy(np.ascontiguousarray(frames)))

    def shot(self, key: str) -> np.ndarray:
        """The frames, memory-mapped: a long movie is assembled without holding it all."""
        return np.load(self.shot_path(key), mmap_mode="r")

    # the index: index/<shot>.json
    def index_path(self, shot_id: str) -> Path:
        return self.root / "index" / f"{shot_id}.json"

    def index(self, shot_id: str) -> dict:
        try:
            return json.loads(self.index_path(shot_id).read_text("utf-8"))
        except (OSError, ValueError):
            return {}

    def set_index(self, shot_id: str, **keys: str | None) -> None:
        """Record a shot's current keys; a file is only rewritten when they change."""
        entry = {"shot": shot_id, "keyframe": None, "frames": None}
        entry.update(self.index(shot_id))
        updated = {**entry, **keys}
        if updated != entry or not self.index_path(shot_id).is_file():
            write_text_atomic(self.index_path(shot_id), json.dumps(updated, indent=1) + "\n")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
