"""Writing ground truth to disk: a render folder, cast sheets and contact sheets.

A render folder holds:

| path                     | what                                                          |
| ------------------------ | ------------------------------------------------------------- |
| `screenplay.json`        | the screenplay rendered                                       |
| `shots/<shot>.mp4`       | each shot, H.264 at the native resolution and frame rate      |
| `truth/<shot>.npz`       | exact frames (T, H, W, 3) and instance masks (T, H, W), uint8 |
| `truth/<shot>.json`      | the shot's labels (see `world.render`)                        |
| `truth.mp4`              | the whole movie, enlarged for viewing                         |
| `characters/<id>.png`    | each character's reference portrait                           |
| `cast.json`              | each character's storyworld identity                          |

`screenplay.json`, `shots/<shot>.mp4`, `characters/<id>.png` and `cast.json` are the
run-directory layout that `reelsmith eval run` scores; a movie run writes the same.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reelsmith.atomic import write_bytes_atomic, write_text_atomic
from reelsmith.renderer.assembly.video import write_mp4
from reelsmith.schema.looks import cast_identities
from reelsmith.schema.screenplay import Screenplay
from reelsmith.world.render import WorldConfig, WorldRenderer, portrait

VIEW_SCALE = 4  # enlargement of the whole-movie preview


def write_truth(
    screenplay: Screenplay,
    out_dir: str | Path,
    config: WorldConfig | None = None,
    on_shot: Callable[[str], None] | None = None,
) -> Path:
    """Render every shot of `screenplay` into `out_dir` (see the module docstring)."""
    out = Path(out_dir)
    renderer = WorldRenderer(config)
    cfg = renderer.config
    write_text_atomic(out / "screenplay.json", screenplay.to_json())
    identities = cast_identities(screenplay.characters)
    for character in screenplay.characters:
        image = Image.fromarray(portrait(identities[character.id], cfg.resolution))
        save_png(image, out / "characters" / f"{character.id}.png")
    cast = {cid: identity.to_dict() for cid, identity in identities.items()}
    write_text_atomic(out / "cast.json", json.dumps(cast, indent=1))
    movie = []
    for truth in renderer.render(screenplay):
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frames=truth.frames, masks=truth.masks)
        write_bytes_atomic(out / "truth" / f"{truth.shot_id}.npz", buffer.getvalue())
        write_text_atomic(out / "truth" / f"{truth.shot_id}.json", json.dumps(truth.labels))
        write_mp4(out / "shots" / f"{truth.shot_id}.mp4", truth.frames, cfg.fps)
        movie.append(truth.frames)
        if on_shot:
            on_shot(truth.shot_id)
    write_mp4(out / "truth.mp4", np.concatenate(movie), cfg.fps, upscale=VIEW_SCALE)
    return out


def cast_sheet(screenplay: Screenplay, resolution: int = 128) -> Image.Image:
    """The cast's reference portraits side by side, each with its name underneath."""
    identities = cast_identities(screenplay.characters)
    caption = 18
    sheet = Image.new(
        "RGB", (resolution * max(1, len(identities)), resolution + caption), (250, 250, 250)
    )
    draw = ImageDraw.Draw(sheet)
    for k, character in enumerate(screenplay.characters):
        tile = Image.fromarray(portrait(identities[character.id], resolution))
        sheet.paste(tile, (k * resolution, 0))
        draw.text((k * resolution + 4, resolution + 3), character.name[:20], fill=(20, 20, 20))
    return sheet


def contact_sheet(frames: list[np.ndarray], columns: int = 6, scale: int = 2) -> Image.Image:
    """Frames (each (H, W, 3) uint8) in a grid, enlarged `scale` times."""
    h, w = frames[0].shape[:2]
    rows = -(-len(frames) // columns)
    sheet = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for k, frame in enumerate(frames):
        r, c = divmod(k, columns)
        sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = frame
    image = Image.fromarray(sheet)
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def save_png(image: Image.Image, path: str | Path) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())
