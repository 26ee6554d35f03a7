"""Draw the pictures in the README: a storyworld contact sheet, a sample clip, a cast sheet;
with `--run DIR` (a finished `reelsmith make` run: the README's main job), its storyboard and
a strip of eight frames of its first shot.

python docs/make_images.py [--run movie]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.renderer.assembly.video import read_mp4
from reelsmith.schema.screenplay import Screenplay
from reelsmith.world.export import cast_sheet, contact_sheet, save_png
from reelsmith.world.render import WorldConfig, WorldRenderer

OUT = Path(__file__).parent / "images"
PROMPTS = [
    "Mira, a small yellow mouse with a scarf, and Bo, a tall blue robot, cross the desert",
    "two foxes on the beach at dusk",
    "Ada and Kit race down a city street at night",
    "a penguin with a crown in the snowfield",
    "Otto, a brown striped bear, and Remy in the living room",
    "Nova, a teal cat with glasses, aboard the space station",
    "a red robot at the harbour at dusk",
    "Juno and Pip in the forest",
]


def run_images(run: Path) -> None:
    """storyboard.png and frames.png (eight frames of the first shot, side by side) of a run."""
    screenplay = Screenplay.model_validate_json((run / "screenplay.json").read_text("utf-8"))
    first = next(shot for _, shot in screenplay.shots())
    frames, _ = read_mp4(run / "shots" / f"{first.id}.mp4")
    picks = np.linspace(0, len(frames) - 1, 8).round().astype(int)
    strip = Image.fromarray(np.concatenate([frames[i] for i in picks], 1))
    strip.resize((strip.width * 2, strip.height * 2), Image.NEAREST).save(OUT / "frames.png")
    shutil.copyfile(run / "storyboard.png", OUT / "storyboard.png")
    print(f"wrote {OUT}: storyboard.png, frames.png (shot {first.id}, {len(frames)} frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a finished run: its storyboard and frames")
    args = parser.parse_args()
    if args.run is not None:
        return run_images(args.run)
    renderer = WorldRenderer(WorldConfig(resolution=64))
    frames = []
    for seed, prompt in enumerate(PROMPTS):
        screenplay = OfflineWriter().write(Brief(prompt, shots=4, seed=seed))
        frames += [s.frames[len(s.frames) // 2] for s in renderer.render(screenplay)]
    save_png(contact_sheet(frames, columns=8, scale=2), OUT / "storyworld.png")

    screenplay = OfflineWriter().write(Brief(PROMPTS[0], shots=4, seed=2))
    save_png(cast_sheet(screenplay, 96), OUT / "cast.png")
    clip = np.concatenate(
        [s.frames for s in WorldRenderer(WorldConfig(resolution=128)).render(screenplay)]
    )
    images = [Image.fromarray(f) for f in clip]
    images[0].save(
        OUT / "clip.gif",
        save_all=True,
        append_images=images[1:],
        duration=125,
        loop=0,
        optimize=True,
    )
    print(f"wrote {OUT}: storyworld.png, cast.png, clip.gif ({len(images)} frames)")


if __name__ == "__main__":
    main()
