"""`reelsmith eval …`: score a run directory, or the ground truth of a screenplay.

A run directory holds `screenplay.json`, one `shots/<shot id>.mp4` per shot (the frames that
are scored) and, where the run has them, `characters/<character id>.png` (reference portraits)
and `cast.json` (each character's storyworld identity as cast). That is what
`reelsmith world render` writes, and what a movie run writes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Score movies with the judges.", no_args_is_help=True)
err = Console(stderr=True, highlight=False)


def load_run(run_dir: Path):
    """The screenplay, frames per shot, reference portraits and cast of a run directory."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from reelsmith.errors import InputError
    from reelsmith.planner.io import load_screenplay
    from reelsmith.renderer.assembly.video import read_mp4

    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    screenplay = load_screenplay(run_dir / "screenplay.json")
    frames = []
    for _, shot in screenplay.shots():
        path = run_dir / "shots" / f"{shot.id}.mp4"
        if not path.is_file():
            raise InputError(f"{path}: shot video missing")
        frames.append(read_mp4(path)[0])
    identities = None
    cast_path = run_dir / "cast.json"
    if cast_path.is_file():
        from reelsmith.schema.looks import Identity

        try:
            cast = json.loads(cast_path.read_text("utf-8"))
            identities = {c.id: Identity(**cast[c.id]) for c in screenplay.characters}
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InputError(
                f"{cast_path}: not a cast of storyworld identities for every character"
            ) from None
    references = {}
    for character in screenplay.characters:
        path = run_dir / "characters" / f"{character.id}.png"
        if path.is_file():
            try:
                references[character.id] = np.asarray(Image.open(path).convert("RGB"))
            except (UnidentifiedImageError, OSError):
                raise InputError(f"{path}: not an image") from None
    return screenplay, frames, references, identities


def report(result: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    from reelsmith.evaluation.metrics import KEYS

    table = Table(title="reelsmith eval")
    table.add_column("metric")
    for name in ("all", *result["by_position"]):
        table.add_column(name, justify="right")
    for key in (*KEYS, "frechet_clip_distance"):
        if key not in result:
            continue
        row = [result[key], *(part.get(key) for part in result["by_position"].values())]
        table.add_row(key, *("-" if v is None else f"{v:.3f}" for v in row))
    Console().print(table)


@app.command()
def run(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Score a run directory against its screenplay and the screenplay's ground truth."""
    from reelsmith.evaluation.metrics import Judges, score_movie
    from reelsmith.world.render import WorldRenderer

    screenplay, frames, references, identities = load_run(run_dir)
    with err.status("rendering ground truth and judging…"):
        truth = [t.frames for t in WorldRenderer().render(screenplay)]
        result = score_movie(Judges.load(), screenplay, frames, references, truth, identities)
    report(result, as_json)


@app.command()
def truth(
    screenplay_path: Path = typer.Argument(..., metavar="SCREENPLAY", help="A screenplay file."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    seed: int = typer.Option(0, "--seed", help="World seed of the ground truth."),
) -> None:
    """Render a screenplay's ground truth and score it: the judges' own check."""
    from reelsmith.evaluation.metrics import Judges, score_movie
    from reelsmith.planner.io import load_screenplay
    from reelsmith.world.export import write_truth
    from reelsmith.world.render import WorldConfig

    screenplay = load_screenplay(screenplay_path)
    with tempfile.TemporaryDirectory() as tmp, err.status("rendering and judging…"):
        write_truth(screenplay, tmp, WorldConfig(seed=seed))
        _, frames, references, identities = load_run(Path(tmp))
        result = score_movie(Judges.load(), screenplay, frames, references, frames, identities)
    report(result, as_json)
