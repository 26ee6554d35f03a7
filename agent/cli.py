"""The `reelsmith` command line.

Every user-caused failure (a `ReelsmithError` or a usage error) ends as one line on stderr
and exit code 2, with no traceback; nothing is written unless the command succeeds.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from reelsmith import __version__
from reelsmith.errors import InputError, ReelsmithError
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


def _register_subcommands() -> None:
    from reelsmith.evaluation.cli import app as eval_app
    from reelsmith.memory.cli import app as series_app
    from reelsmith.world.cli import app as world_app

    app.add_typer(series_app, name="series")
    app.add_typer(world_app, name="world")
    app.add_typer(eval_app, name="eval")


@app.command()
def portrait(
    description: str = typer.Argument(..., help='Looks, e.g. "a red fox with a crown".'),
    output: Path = typer.Option(..., "--output", "-o", help="PNG to write (atomically)."),
    name: str = typer.Option(
        "someone", "--name", help="The character's name (sets unnamed looks)."
    ),
    seed: int = typer.Option(0, "--seed", help="Same description, name and seed: same portrait."),
    scale: int = typer.Option(4, "--scale", help="Enlarge the portrait this many times."),
) -> None:
    """Draw a character's reference portrait from a description, with the built-in models."""
    import io as _io

    from PIL import Image
    from pydantic import ValidationError

    from reelsmith.agent.references import ModelReferences
    from reelsmith.atomic import write_bytes_atomic
    from reelsmith.renderer.identity.encoder import load_identity_encoder
    from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
    from reelsmith.schema.screenplay import Character, slugify

    if not description.strip():
        raise InputError("the description is empty")
    if not 1 <= scale <= 16:
        raise InputError(f"--scale must be between 1 and 16, got {scale}")
    if output.suffix.lower() != ".png":
        raise InputError(f"{output}: the portrait is written as PNG; name it .png")
    try:
        character = Character(id=slugify(name) or "someone", name=name, description=description)
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise InputError(f"{problem['loc'][0]}: {problem['msg']}") from None
    _seed_global_generators()
    cast = ModelReferences(BuiltinKeyframer(), load_identity_encoder(), seed=seed)
    reference = cast(character, None)
    image, looks = reference.portrait, reference.identity
    side = image.shape[0] * scale
    picture = Image.fromarray(image).resize((side, side), Image.NEAREST)
    buffer = _io.BytesIO()
    picture.save(buffer, format="PNG")
    write_bytes_atomic(output, buffer.getvalue())
    print(" ".join(f"{k}={v}" for k, v in looks.items()))


def _version(value: bool) -> None:
    if value:
        print(f"reelsmith {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """From an idea or a screenplay to a long, character-consistent movie."""


@app.command()
def script(
    prompt: str | None = typer.Argument(
        None, help="The idea, in a sentence or a page (a screenplay file's path reads that file)."
    ),
    source: Path | None = typer.Option(
        None, "--from", help="Import a screenplay: .fountain, .csv, .yaml/.yml or .json."
    ),
    writer: str = typer.Option(
        "offline", "--writer", "-w", help="offline | openai | transformers | vllm."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write here (atomically) instead of to stdout."
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="json | yaml | fountain | csv | shotlist; default from -o's extension, else json.",
    ),
    seed: int = typer.Option(0, "--seed", help="Same prompt and seed, same screenplay."),
    scenes: int | None = typer.Option(None, "--scenes", help="Number of scenes."),
    shots: int | None = typer.Option(None, "--shots", help="Total number of shots."),
    duration: float | None = typer.Option(None, "--duration", help="Target length, seconds."),
    style: str = typer.Option("", "--style", help="Visual style, free text."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model: server model name (openai), local folder (transformers, vllm).",
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Key for the server; better set OPENAI_API_KEY."
    ),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the server."),
    attempts: int = typer.Option(3, "--attempts", help="Repair attempts before giving up."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow a local model's own Python code to run."
    ),
) -> None:
    """Write a screenplay from a prompt, or import one from a file."""
    from reelsmith.planner import io
    from reelsmith.planner.writers import make_writer
    from reelsmith.planner.writers.base import Brief

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
    text = io.dumps(screenplay, out_format)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from reelsmith.atomic import write_text_atomic

        write_text_atomic(output, text)
    where = f"wrote {output}" if output else "screenplay"
    cast = ", ".join(c.name for c in screenplay.characters) or "nobody"
    err.print(
        f"{where}: “{screenplay.title}”, {len(screenplay.scenes)} scenes, "
        f"{screenplay.num_shots} shots, {screenplay.duration:.1f} s; cast: {cast}",
        soft_wrap=True,
    )


@app.command()
def schema(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead."),
) -> None:
    """Print the Screenplay JSON schema (what constrained decoding uses)."""
    import json

    from reelsmith.schema.screenplay import Screenplay

    text = json.dumps(Screenplay.model_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        from reelsmith.atomic import write_text_atomic

        write_text_atomic(output, text)


# -- making movies ---------------------------------------------------------------------------


@app.command()
def make(
    prompt: str | None = typer.Argument(
        None, help="The idea, in a sentence or a page (a screenplay file's path reads that file)."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Run directory: new, empty, or a run of the same inputs."
    ),
    source: Path | None = typer.Option(
        None, "--from", help="A screenplay or shot list: .fountain, .csv, .yaml/.yml or .json."
    ),
    writer: str = typer.Option(
        "offline", "--writer", "-w", help="offline | openai | transformers | vllm."
    ),
    model: str | None = typer.Option(None, "--model", help="The writer's model (see `script`)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server."),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Key for the server (held in memory only); or OPENAI_API_KEY."
    ),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the server."),
    attempts: int = typer.Option(3, "--attempts", help="Repair attempts before giving up."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow a local model's own Python code to run."
    ),
    scenes: int | None = typer.Option(None, "--scenes", help="Number of scenes."),
    shots: int | None = typer.Option(None, "--shots", help="Total number of shots."),
    duration: float | None = typer.Option(None, "--duration", help="Target length, seconds."),
    style: str = typer.Option("", "--style", help="Visual style, free text."),
    seed: int = typer.Option(0, "--seed", help="Same inputs and seed: the same movie."),
    series: str | None = typer.Option(
        None, "--series", help="Series bible the characters come from and go into."
    ),
    backend: str = typer.Option("builtin", "--backend", help="builtin | diffusers."),
    keyframe_model: str | None = typer.Option(
        None, "--keyframe-model", help="Keyframe model: a folder, or (diffusers) a Hub id."
    ),
    shot_model: str | None = typer.Option(
        None, "--shot-model", help="Shot model: a folder, or (diffusers) a Hub id."
    ),
    shot_steps: int | None = typer.Option(None, "--shot-steps", help="Denoising steps per clip."),
    keyframe_candidates: int | None = typer.Option(
        None,
        "--keyframe-candidates",
        help="Drawings per keyframe (built-in keyframer); the one whose characters look most "
        "like their references is kept. 1 is fastest.",
    ),
    plan_temperature: float | None = typer.Option(
        None,
        "--plan-temperature",
        help="The keyframe planner's sampling temperature: 0 (default) plans each shot's most "
        "likely keyframe; above 0, the staging varies with the seed.",
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Keyframe side in pixels (the keyframer's own by default)."
    ),
    fps: int = typer.Option(8, "--fps", help="Frames per second."),
    device: str = typer.Option("cpu", "--device", help="Where the models run: cpu, cuda, …"),
    concurrency: int = typer.Option(1, "--concurrency", help="Shots rendered at once."),
    approve: bool = typer.Option(
        False, "--approve", help="Stop after the screenplay; `reelsmith resume` goes on."
    ),
) -> None:
    """Make a movie from an idea or a screenplay, in a run directory that can be resumed."""
    import time

    from reelsmith.agent.run_dir import RunDir, RunInputs, RunOptions

    started = time.monotonic()
    # 1. check inputs, before anything is loaded or written
    prompt, source = _prompt_or_source(prompt, source)
    if (prompt is None) == (source is None):
        raise InputError("give either a PROMPT or --from FILE (not both)")
    source_file = None
    if source is not None:
        source_file = _check_source(
            source,
            writer=writer,
            model=model,
            base_url=base_url,
            scenes=scenes,
            shots=shots,
            duration=duration,
            style=style,
        )
    else:
        from reelsmith.planner.writers.base import Brief

        Brief(prompt, scenes=scenes, shots=shots, duration=duration, style=style, seed=seed)
    if not 1 <= fps <= 60:
        raise InputError(f"--fps must be from 1 to 60, got {fps}")
    if series is not None:
        from reelsmith.memory.store import check_series_name

        check_series_name(series)
    inputs = RunInputs(
        prompt=prompt,
        source=None if source_file is None else f"source{source_file[0]}",
        source_sha256=None if source_file is None else _sha256(source_file[1]),
        writer=writer,
        writer_model=model,
        base_url=_without_credentials(base_url),
        scenes=scenes,
        shots=shots,
        duration=duration,
        style=style,
        seed=seed,
        series=series,
        backend=backend,
        keyframe_model=_model_id(keyframe_model),
        shot_model=_model_id(shot_model),
        shot_steps=shot_steps,
        keyframe_candidates=keyframe_candidates,
        plan_temperature=plan_temperature,
        resolution=resolution,
        fps=fps,
    )
    options = RunOptions(approve, concurrency, device, timeout, attempts, trust_remote_code)
    choice = _backend_choice(inputs, options)
    choice.check()

    # 2. the run directory: a new one, or the run of these same inputs
    run = None
    if not RunDir.is_vacant(output):
        if not (output / "run.json").exists():
            raise InputError(
                f"{output}: not empty, and not a reelsmith run directory; choose another -o "
                "(a new or empty folder)"
            )
        run = RunDir.open(output)
        if not run.same_inputs(inputs):
            raise InputError(
                f"{output}: not empty, and not a run of these inputs; choose another -o, "
                f"or continue that run with `reelsmith resume {output}`"
            )
        choice = _backend_choice(run.inputs, run.options)  # the run goes on as it began
    models = _models(choice)
    if run is None:
        if not approve:
            models.load()  # a model that cannot load fails before the run directory exists
        run = RunDir.create(output, inputs, options, source_file)

    # 3. make it
    _go(run, models, (api_key, base_url), resume=False, started=started)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Shots rendered at once (the run's setting by default)."
    ),
) -> None:
    """Go on with a run: after --approve, after a crash, or after editing its screenplay.json."""
    import dataclasses
    import time

    from reelsmith.agent.run_dir import RunDir

    started = time.monotonic()
    run = RunDir.open(run_dir)
    if concurrency is not None:
        run.options = dataclasses.replace(run.options, concurrency=concurrency)
    choice = _backend_choice(run.inputs, run.options)
    choice.check()
    _go(run, _models(choice), (None, None), resume=True, started=started)


@app.command()
def status(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Where a run stands: its stage, shots rendered, and its files."""
    import json

    from reelsmith.agent.graph import describe
    from reelsmith.agent.run_dir import RunDir

    info = describe(RunDir.open(run_dir))
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


def _prompt_or_source(prompt: str | None, source: Path | None) -> tuple[str | None, Path | None]:
    """A PROMPT that names a screenplay file is read as `--from` that file; one that only looks
    like a screenplay's file name (one word with a screenplay's extension) but names no file is
    an error, rather than the idea of a movie about a file name."""
    from reelsmith.planner.io import READ_FORMATS

    text = (prompt or "").strip()
    if source is not None or Path(text).suffix.lower() not in READ_FORMATS:
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


def _check_source(source: Path, **writing) -> tuple[str, bytes]:
    """The source screenplay's (suffix, bytes), checked: readable, valid and renderable."""
    from reelsmith.agent.run_dir import check_renderable
    from reelsmith.planner.io import load_screenplay, read_text

    given = [
        f"--{name.replace('_', '-')}"
        for name, value in writing.items()
        if value not in (None, "", "offline")
    ]
    if given:
        raise InputError(
            f"{given[0]} is for writing a screenplay from a PROMPT; --from {source} brings its own"
        )
    check_renderable(load_screenplay(source), source)
    return source.suffix.lower(), read_text(source).encode("utf-8")


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _without_credentials(url: str | None) -> str | None:
    """A server URL without user:password@, query or fragment: what may carry a secret is
    never written to the run directory."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="", fragment=""))


def _model_id(model: str | None) -> str | None:
    """A local folder as an absolute path (so a resume from elsewhere finds it); a Hub id as is."""
    if model is None:
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def _backend_choice(inputs, options):
    from reelsmith.agent.backends import BackendChoice

    return BackendChoice(
        backend=inputs.backend,
        keyframe_model=inputs.keyframe_model,
        shot_model=inputs.shot_model,
        shot_steps=inputs.shot_steps,
        keyframe_candidates=inputs.keyframe_candidates,
        plan_temperature=inputs.plan_temperature,
        resolution=inputs.resolution,
        device=options.device,
        concurrency=options.concurrency,
    )


def _models(choice):
    from reelsmith.agent.backends import Models

    return Models(choice)


def _go(run, models, secrets: tuple, resume: bool, started: float) -> None:
    """Run the graph under the run's lock, with progress bars; print the outcome. `secrets`:
    (API key, server URL) as given on the command line, held in memory only."""
    import time

    with run.lock():
        from reelsmith.agent.graph import Context, Reporter, advance

        _seed_global_generators()  # torch is imported now
        with _Bars(err) if err.is_terminal else Reporter() as reporter:
            context = Context(run, models, reporter, *secrets)
            outcome = advance(run, context, resume=resume)
    if outcome.status == "approval":
        screenplay = run.read_screenplay()
        print(
            f"waiting for approval: {run.screenplay_path} ({screenplay.num_shots} shots, "
            f"{screenplay.duration:.1f} s); edit it if you like, then run: "
            f"reelsmith resume {run.path}"
        )
        return
    movie = outcome.values["movie"]
    made = (
        "made before" if outcome.status == "made" else f"made in {time.monotonic() - started:.1f} s"
    )
    print(f"movie:      {run.path / 'movie.mp4'}")
    print(f"storyboard: {run.path / 'storyboard.html'}")
    print(f"{movie['seconds']:.1f} s, {movie['shots']} shots; {made}")


class _Bars:
    """The graph's progress on stderr: a bar per stage, and one per shot while it renders."""

    LABELS = {
        "screenplay": "screenplay",
        "cast": "casting",
        "keyframes": "keyframes",
        "shots": "shots",
        "assemble": "assembly",
    }

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def stage(self, name: str, total: int | None = None, done: int = 0) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], total=total, completed=done)
        else:
            label = self.LABELS.get(name, name)
            self.tasks[name] = self.progress.add_task(label, total=total, completed=done)

    def advance(self, name: str, done: float) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], completed=done)

    def shot_started(self, shot_id: str) -> None:
        self.tasks[f"shot:{shot_id}"] = self.progress.add_task(f"  {shot_id}", total=None)

    def shot_finished(self, shot_id: str) -> None:
        task = self.tasks.pop(f"shot:{shot_id}", None)
        if task is not None:
            self.progress.remove_task(task)
            if "shots" in self.tasks:
                self.progress.advance(self.tasks["shots"])


def _seed_global_generators() -> None:
    """Every random draw of the product goes through a seeded generator; the global ones are
    seeded too (PyTorch seeds its own from the OS), so nothing can vary from run to run."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    if "torch" in sys.modules:  # imported lazily: the commands that run models call this again
        from reelsmith.numerics import settle

        settle()
        sys.modules["torch"].manual_seed(0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `reelsmith` console script."""
    _register_subcommands()
    _seed_global_generators()
    logging.basicConfig(level=logging.WARNING, format="reelsmith: %(levelname)s: %(message)s")
    logging.addLevelName(logging.WARNING, "warning")
    try:
        code = app(args=argv, prog_name="reelsmith", standalone_mode=False)
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
