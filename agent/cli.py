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
    from reelsmith.memory.identity import load_identity_encoder
    from reelsmith.planner.screenplay import Character, slugify
    from reelsmith.renderer.keyframer import BuiltinKeyframer

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
    prompt: str | None = typer.Argument(None, help="The idea, in a sentence or a page."),
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

    from reelsmith.planner.screenplay import Screenplay

    text = json.dumps(Screenplay.model_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        from reelsmith.atomic import write_text_atomic

        write_text_atomic(output, text)


def _seed_global_generators() -> None:
    """Every random draw of the product goes through a seeded generator; the global ones are
    seeded too (PyTorch seeds its own from the OS), so nothing can vary from run to run."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    if "torch" in sys.modules:  # imported lazily: the commands that run models call this again
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
