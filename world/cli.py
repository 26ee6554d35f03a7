"""`reelsmith world …`: render ground truth, build datasets, draw a cast."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(help="Storyworld: ground truth, datasets and cast sheets.", no_args_is_help=True)
err = Console(stderr=True, highlight=False)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@app.command()
def render(
    screenplay: Path = typer.Argument(..., help="A screenplay: .json, .yaml, .fountain, .csv."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write into."),
    resolution: int = typer.Option(64, "--resolution", help="Frame size: 64 or 128."),
    fps: int = typer.Option(8, "--fps", help="Frames per second."),
    seed: int = typer.Option(0, "--seed", help="World layout and staging seed."),
) -> None:
    """Render a screenplay's ground truth: frames, labels (JSON) and mp4s."""
    from reelsmith.errors import InputError
    from reelsmith.planner.io import load_screenplay
    from reelsmith.world.export import write_truth
    from reelsmith.world.render import WorldConfig

    if resolution not in (32, 64, 128, 256) or not 1 <= fps <= 60:
        raise InputError(f"resolution must be 32/64/128/256 and fps 1-60, got {resolution}, {fps}")
    sp = load_screenplay(screenplay)
    config = WorldConfig(resolution=resolution, fps=fps, seed=seed)
    with _progress() as progress:
        task = progress.add_task("rendering shots", total=sp.num_shots)
        write_truth(sp, output, config, on_shot=lambda _: progress.advance(task))
    err.print(
        f"wrote {output}: {sp.num_shots} shots, {sp.duration:.1f} s at {fps} fps; "
        f"preview {output / 'truth.mp4'}"
    )


@app.command()
def dataset(
    kind: str = typer.Argument(..., help="keyframes | clips | movies."),
    output: Path = typer.Option(..., "--output", "-o", help="Dataset folder."),
    count: int = typer.Option(1000, "--count", help="Number of items."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    resolution: int = typer.Option(64, "--resolution", help="Frame size."),
    clip_frames: int = typer.Option(8, "--clip-frames", help="Frames per clip (clips)."),
    shard_size: int = typer.Option(512, "--shard-size", help="Items per shard."),
    workers: int = typer.Option(2, "--workers", help="Processes."),
) -> None:
    """Build a dataset in shards; re-running resumes where a build stopped."""
    from reelsmith.world.dataset import DatasetSpec, build

    spec = DatasetSpec(
        kind,
        count,
        seed=seed,
        resolution=resolution,
        clip_frames=clip_frames,
        shard_size=shard_size,
    )
    with _progress() as progress:
        task = progress.add_task(f"building {kind}", total=spec.num_shards)
        manifest = build(
            spec,
            output,
            workers=workers,
            on_shard=lambda done, _: progress.update(task, completed=done),
        )
    err.print(
        f"wrote {output}: {manifest['items']} {kind}, {manifest['frames']} frames "
        f"in {len(manifest['shards'])} shards"
    )


@app.command()
def cast(
    screenplay: Path = typer.Argument(..., help="A screenplay file."),
    output: Path = typer.Option(..., "--output", "-o", help="PNG to write."),
    resolution: int = typer.Option(128, "--resolution", help="Portrait size."),
) -> None:
    """Draw the cast's reference portraits on one sheet."""
    from reelsmith.errors import InputError
    from reelsmith.planner.io import load_screenplay
    from reelsmith.world.export import cast_sheet, save_png

    if resolution not in (32, 64, 128, 256):
        raise InputError(f"resolution must be 32, 64, 128 or 256, got {resolution}")
    sp = load_screenplay(screenplay)
    save_png(cast_sheet(sp, resolution), output)
    err.print(f"wrote {output}: {len(sp.characters)} characters")
