"""Storyworld data for training: datasets built (or reused) under --data, keyframes datasets read
into arrays, the identities' portraits and the identity encoder's embeddings of them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from reelsmith.renderer.identity.encoder import IdentityEncoder
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec
from reelsmith.schema.encoding import spec_indices
from reelsmith.schema.looks import Identity, all_identities
from reelsmith.training.common import RunOptions
from reelsmith.training.config import Datasets
from reelsmith.world.dataset import DatasetSpec, build, read
from reelsmith.world.render import portrait

MIN_PIXELS = 60  # characters smaller than this in a frame are not identity examples

# short names of the DatasetSpec fields a dataset's folder name carries where not the default
# (not shard_size, which changes how the same items are stored, not which: `build` refuses a
# folder built with another)
FOLDER_FIELDS = {"fps": "fps", "clip_frames": "f", "max_movie_shots": "m", "long_shots": "long"}
DATA_NAMES = ("train", "held_out")  # the two datasets of every run (`Datasets`)


def data_folder(folder: Path, spec: DatasetSpec) -> Path:
    """Where `build_data` keeps a dataset: one name per distinct set of items, e.g.
    clips-8000-s41-r64 (every other field the default) or clips-8000-s41-r64-f16-long0.25."""
    name = f"{spec.kind}-{spec.count}-s{spec.seed}-r{spec.resolution}"
    default = DatasetSpec(kind=spec.kind, count=spec.count)
    for field, short in FOLDER_FIELDS.items():
        if getattr(spec, field) != getattr(default, field):
            name += f"-{short}{getattr(spec, field)}"
    return folder / name


def build_data(folder: Path, spec: DatasetSpec, workers: int, log) -> Path:
    """Build (or reuse) one storyworld dataset under `folder` (in `data_folder`'s name)."""
    out = data_folder(folder, spec)
    t0 = time.time()
    build(spec, out, workers=workers)
    log(f"data {out.name} ready in {time.time() - t0:.0f}s")
    return out


def build_both(folder: Path, data: Datasets, workers: int, log) -> dict[str, Path]:
    """The run's train and held-out datasets built (or reused): {"train": ..., "held_out": ...}."""
    return {name: build_data(folder, getattr(data, name), workers, log) for name in DATA_NAMES}


# -- keyframes datasets -------------------------------------------------------------------


def record_spec(record: dict) -> KeyframeSpec:
    """The spec of a keyframes-dataset record, every character with its full looks."""
    shot = record["shot"]
    actions = {b["character"]: b["action"] for b in shot["blocking"]}
    return KeyframeSpec(
        location=record["scene"]["location"],
        time=record["scene"]["time"],
        size=shot["size"],
        camera=shot["camera"],
        characters=tuple(
            CharacterSpec(c, Identity.from_index(record["identities"][c]).to_dict(), actions.get(c))
            for c in shot["characters"]
        ),
    )


def load_keyframes(folder: Path, slots: int) -> dict:
    """A keyframes dataset as arrays: images, spec indices, identity per slot, objects."""
    images, figures, specs, slot_ids, objects = [], [], [], [], []
    for n, item in enumerate(read(folder)):
        r = item["record"]
        spec = record_spec(r)
        ids = [r["identities"][c] for c in r["shot"]["characters"]]
        images.append(item["images"])
        figures.append(item["masks"])
        specs.append(spec_indices(spec, slots))
        slot_ids.append((ids + [-1] * slots)[:slots])
        for v in r["labels"]["frames"][0]:
            if v["pixels"] >= MIN_PIXELS:
                objects.append([n, *v["box"], Identity(**v["identity"]).index])
    return {
        "images": torch.from_numpy(np.stack(images)),
        "figures": torch.from_numpy(np.stack(figures)),  # (N, r, r) uint8: 1 + slot, 0 background
        "spec": torch.stack(specs),
        "identity": torch.tensor(slot_ids),
        "objects": torch.tensor(objects, dtype=torch.float32),  # (O, 6): item, box, identity
    }


def load_keyframe_sets(options: RunOptions, data: Datasets, slots: int, log) -> tuple[dict, dict]:
    """The run's keyframes datasets built (or reused) under `options.data` and loaded."""
    folders = build_both(options.data, data, options.workers, log)
    train, held = (load_keyframes(folders[name], slots) for name in DATA_NAMES)
    log(f"loaded {len(train['images'])} train and {len(held['images'])} held-out keyframes")
    return train, held


def jittered_boxes(objects: torch.Tensor, amount: float, generator) -> torch.Tensor:
    """The boxes of `objects` rows (item, x0, y0, x1, y1, identity), each corner moved by up
    to `amount` / 2 of the box's size."""
    boxes = objects[:, 1:5]
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    noise = torch.rand(boxes.shape, device=boxes.device, generator=generator) - 0.5
    return boxes + noise * amount * wh


# -- portraits ----------------------------------------------------------------------------


def portraits(resolution: int) -> torch.Tensor:
    """The canonical portrait of every identity, in identity order: uint8 (1080, r, r, 3)."""
    return torch.from_numpy(np.stack([portrait(i, resolution) for i in all_identities()]))


def portrait_specs(slots: int) -> torch.Tensor:
    """The spec indices of every identity's portrait, in identity order: (1080, 4 + 6 slots)."""
    return torch.stack(
        [
            spec_indices(KeyframeSpec.portrait(CharacterSpec("c", i.to_dict())), slots)
            for i in all_identities()
        ]
    )


@torch.no_grad()
def portrait_embeddings(encoder: IdentityEncoder, used: torch.Tensor) -> torch.Tensor:
    """(1080, D): row i the encoder's embedding of identity i's canonical 64-pixel portrait
    where i is in `used` (identity indices, -1 for none), else zeros (never read)."""
    table = torch.zeros(len(all_identities()), encoder.config.dim)
    ids = used[used >= 0].unique().tolist()
    if ids:
        table[ids] = encoder.embed(np.stack([portrait(Identity.from_index(i), 64) for i in ids]))
    return table
