"""The `reelsmith` command line: a thin layer over the Python API (`agent.api`).

Every user-caused failure (a `ReelsmithError` or a usage error) ends as one line on stderr
and exit code 2, with no traceback; nothing is written unless the command succeeds. The
commands that run models load them (and torch, diffusers, langgraph) lazily, so that
`reelsmith --help` and `reelsmith script` start at once.
"""

from __future__ import annotations

import importlib
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from reelsmith import __version__
from reelsmith.agent.cli_options import (
    ApiKey,
    Attempts,
    BaseUrl,
    Duration,
    Model,
    Prompt,
    Scenes,
    Seed,
    Shots,
    Source,
    Style,
    Timeout,
    TrustRemoteCode,
    Writer,
)
from reelsmith.agent.config import RunConfig
from reelsmith.atomic import write_text_atomic
from reelsmith.errors import InputError, ReelsmithError
from reelsmith.planner import io
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers import make_writer
from reelsmith.schema.screenplay import Screenplay
from reelsmith.settings import Settings

app = typer.Typer(
    name="reelsmith",
    help="From an idea or a screenplay to a long, character-consistent movie.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False)

# Subcommand groups registered by module name and imported only when invoked: the series
# bible's brings torch, which `reelsmith --help` and `script` need not load; storyworld's and
# the judges' stand beside the runtime, which never imports them.
SUBCOMMANDS = {
    "series": ("reelsmith.memory.cli", "Series bibles: the characters that live across episodes."),
    "world": ("reelsmith.world.cli", "Storyworld: ground truth, datasets and cast sheets."),
    "eval": ("reelsmith.evaluation.cli", "Score movies with the judges."),
}

# -- screenplays ----------------------------------------------------------------------------


@app.command()
def script(
    prompt: Prompt = None,
    source: Source = None,
    writer: Writer = "offline",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (atomically), not stdout.")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="json | yaml | fountain | csv | shotlist; default from -o's extension, else json.",
        ),
    ] = None,
    seed: Seed = 0,
    scenes: Scenes = None,
    shots: Shots = None,
    duration: Duration = None,
    style: Style = "",
    model: Model = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = 120.0,
    attempts: Attempts = 3,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Write a screenplay from a prompt, or import one from a file."""
    # 1. check inputs before any work
    prompt, source = _prompt_or_source(prompt, source)
    if (prompt is None) == (source is None):
        raise InputError("give either a PROMPT or --from FILE (not both)")
    out_format = fmt or (io.format_for(output) if output else "json")
    if out_format not in io.WRITE_FORMATS:
        raise InputError(f"unknown format '{out_format}'; use one of {', '.join(io.WRITE_FORMATS)}")
    # 2. write or import
    if source is not None:
        screenplay = io.load_screenplay(source)
    else:
        brief = Brief(prompt, scenes=scenes, shots=shots, duration=duration, style=style, seed=seed)
        settings = Settings.from_env()
        script_writer = make_writer(
            writer,
            model=model or settings.openai_model,
            base_url=base_url or settings.openai_base_url,
            api_key=api_key or settings.openai_api_key,
            timeout=timeout,
            max_attempts=attempts,
            trust_remote_code=trust_remote_code,
        )
        with err.status(f"writing the screenplay ({writer} writer)…", spinner="dots"):
            screenplay = script_writer.write(brief)
    # 3. output
    _write_or_print(io.dumps(screenplay, out_format), output)
    where = f"wrote {output}" if output else "screenplay"
    cast = ", ".join(c.name for c in screenplay.characters) or "nobody"
    err.print(
        f"{where}: “{screenplay.title}”, {len(screenplay.scenes)} scenes, "
        f"{screenplay.num_shots} shots, {screenplay.duration:.1f} s; cast: {cast}",
        soft_wrap=True,
    )


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead.")
    ] = None,
) -> None:
    """Print the Screenplay JSON schema (what constrained decoding uses)."""
    _write_or_print(json.dumps(Screenplay.model_json_schema(), indent=2) + "\n", output)


@app.command()
def portrait(
    description: Annotated[str, typer.Argument(help='Looks, e.g. "a red fox with a crown".')],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write (atomically).")],
    name: Annotated[
        str, typer.Option("--name", help="The character's name (sets unnamed looks).")
    ] = "someone",
    seed: Seed = 0,
    scale: Annotated[int, typer.Option("--scale", help="Enlarge it this many times.")] = 4,
) -> None:
    """Draw a character's reference portrait from a description, with the built-in models."""
    from reelsmith.agent import api  # lazily: the models' stack

    looks = api.draw_portrait(description, output, name=name, seed=seed, scale=scale)
    print(" ".join(f"{k}={v}" for k, v in looks.items()))


# -- making movies ---------------------------------------------------------------------------


@app.command()
def make(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Run directory: new, empty, or a run of the same inputs."
        ),
    ],
    prompt: Prompt = None,
    source: Source = None,
    writer: Writer = "offline",
    model: Model = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = 120.0,
    attempts: Attempts = 3,
    trust_remote_code: TrustRemoteCode = False,
    scenes: Scenes = None,
    shots: Shots = None,
    duration: Duration = None,
    style: Style = "",
    seed: Seed = 0,
    series: Annotated[
        str | None, typer.Option("--series", help="Series bible the characters live in.")
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="builtin | diffusers.")] = "builtin",
    keyframe_model: Annotated[
        str | None, typer.Option("--keyframe-model", help="A folder, or (diffusers) a Hub id.")
    ] = None,
    shot_model: Annotated[
        str | None, typer.Option("--shot-model", help="A folder, or (diffusers) a Hub id.")
    ] = None,
    shot_steps: Annotated[
        int | None, typer.Option("--shot-steps", help="Denoising steps per clip.")
    ] = None,
    keyframe_candidates: Annotated[
        int | None,
        typer.Option(
            "--keyframe-candidates",
            help="Drawings per keyframe (built-in keyframer); the one whose characters look "
            "most like their references is kept. 1 is fastest.",
        ),
    ] = None,
    plan_temperature: Annotated[
        float | None,
        typer.Option(
            "--plan-temperature",
            help="The keyframe planner's sampling temperature: 0 (default) plans each shot's "
            "most likely keyframe; above 0, the staging varies with the seed.",
        ),
    ] = None,
    resolution: Annotated[
        int | None, typer.Option("--resolution", help="Keyframe side in pixels.")
    ] = None,
    fps: Annotated[int, typer.Option("--fps", help="Frames per second.")] = 8,
    device: Annotated[str, typer.Option("--device", help="Where models run: cpu, cuda…")] = "cpu",
    concurrency: Annotated[int, typer.Option("--concurrency", help="Shots rendered at once.")] = 1,
    approve: Annotated[
        bool, typer.Option("--approve", help="Stop after the screenplay; `resume` goes on.")
    ] = False,
) -> None:
    """Make a movie from an idea or a screenplay, in a run directory that can be resumed."""
    given = dict(locals())  # the options, before anything else is named here
    started = time.monotonic()
    settings = {k: v for k, v in given.items() if k not in ("output", "prompt", "source")}
    settings["writer_model"], api_key = settings.pop("model"), settings.pop("api_key")
    prompt, source = _prompt_or_source(prompt, source)
    config, source_file = RunConfig.of(prompt, source, **settings)  # before anything loads
    from reelsmith.agent import api  # lazily: the models' stack

    secrets = (api_key, base_url)
    movie = api.make_run(config, output, source_file, secrets, _reporter(), started)
    _print_outcome(movie)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Shots rendered at once.")
    ] = None,
) -> None:
    """Go on with a run: after --approve, after a crash, or after editing its screenplay.json."""
    from reelsmith.agent import api  # lazily: the models' stack

    movie = api.resume(run_dir, concurrency=concurrency, reporter=_reporter())
    _print_outcome(movie)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Where a run stands: its stage, shots rendered, and its files."""
    from reelsmith.agent import api  # lazily: the graph's stack

    info = api.status(run_dir)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    print(f"run:    {info['run']} ({info['pass']})")
    print(f"stage:  {info['stage']}")
    if info["shots"] is not None:
        print(f"shots:  {info['shots_done']}/{info['shots']} rendered")
    if info["movie"]:
        print(f"movie:  {info['movie']['seconds']:.1f} s, {info['movie']['shots']} shots")
    if info["screenplay_edited"]:
        print(f"edited: screenplay.json differs; `reelsmith resume {info['run']}` makes the edit")
    for name, path in info["paths"].items():
        print(f"{name + ':':<18}{path}")


# -- what the commands share -----------------------------------------------------------------


def _prompt_or_source(prompt: str | None, source: Path | None) -> tuple[str | None, Path | None]:
    """A PROMPT that names a screenplay file is read as `--from` that file; one that only looks
    like a screenplay's file name (one word with a screenplay's extension) but names no file is
    an error, rather than the idea of a movie about a file name."""
    text = (prompt or "").strip()
    if source is not None or Path(text).suffix.lower() not in io.READ_FORMATS:
        return prompt, source
    path = Path(text).expanduser()
    if path.exists():  # a folder is read too: reading says what is wrong with it
        if path.is_file():
            err.print(f"reading the screenplay {path} (as --from {path})", soft_wrap=True)
        return None, path
    if not any(c.isspace() for c in text):
        raise InputError(
            f"{text}: no such file; a PROMPT is an idea in words, and a screenplay file is "
            "read with --from FILE"
        )
    return prompt, source


def _write_or_print(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(output, text)


def _reporter():
    """Progress bars on a terminal; quiet otherwise."""
    from reelsmith.agent.context import Reporter  # lazily: the graph's stack
    from reelsmith.agent.progress import Bars

    return Bars(err) if err.is_terminal else Reporter()


def _print_outcome(movie) -> None:
    if movie.status == "approval":
        path = movie.run / "screenplay.json"
        screenplay = io.load_screenplay(path)
        print(
            f"waiting for approval: {path} ({screenplay.num_shots} shots, "
            f"{screenplay.duration:.1f} s); edit it if you like, then run: "
            f"reelsmith resume {movie.run}"
        )
        return
    made = "made before" if movie.status == "made" else f"made in {movie.elapsed:.1f} s"
    print(f"movie:      {movie.path}")
    print(f"storyboard: {movie.storyboard}")
    print(f"{movie.seconds:.1f} s, {movie.shots} shots; {made}")


def _version(value: bool) -> None:
    if value:
        print(f"reelsmith {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """From an idea or a screenplay to a long, character-consistent movie."""


def _register_subcommands(args: list[str]) -> None:
    """The subcommand groups: the one invoked is imported; the others are only listed."""
    for name, (module, help_text) in SUBCOMMANDS.items():
        if args[:1] == [name]:
            app.add_typer(importlib.import_module(module).app, name=name)
        else:
            app.command(name, help=help_text, add_help_option=False)(lambda: None)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `reelsmith` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    _register_subcommands(args)
    random.seed(0)  # the global generators, as every run seeds them (`numerics`)
    np.random.seed(0)
    logging.basicConfig(level=logging.WARNING, format="reelsmith: %(levelname)s: %(message)s")
    logging.addLevelName(logging.WARNING, "warning")
    try:
        code = app(args=args, prog_name="reelsmith", standalone_mode=False)
    except ReelsmithError as exc:
        _fail(str(exc))
    except typer.TyperException as exc:  # usage errors: bad option, missing argument …
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            sys.exit(0)
        _fail(exc.format_message())
    except (typer.Abort, KeyboardInterrupt):
        print("reelsmith: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str) -> None:
    line = " ".join(message.split())
    print(f"reelsmith: error: {line}", file=sys.stderr)
    sys.exit(2)
