"""The Python API: make a movie, go on with one, say where one stands.

    import reelsmith

    movie = reelsmith.make("a fox and a robot cross the desert at dusk", output="movie", shots=6)
    movie.path           # movie/movie.mp4
    reelsmith.resume("movie")                       # after --approve, a crash, or an edit
    reelsmith.status("movie")["stage"]              # "done"

The command line (`reelsmith make`, `resume`, `status`, `portrait`) calls these (`make_run` for
`make`, once it has checked its options). Settings are named as the fields of `RunInputs`,
`ModelChoice` and `RunOptions` (`agent.config`); bad input raises `reelsmith.errors.InputError`
naming the bad value, before anything is loaded or written.
"""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pydantic import ValidationError

from reelsmith.agent.config import RunConfig
from reelsmith.agent.context import Context, Reporter
from reelsmith.agent.driver import advance, describe
from reelsmith.agent.models import Models
from reelsmith.agent.run_dir import RunDir
from reelsmith.atomic import write_bytes_atomic
from reelsmith.errors import InputError
from reelsmith.numerics import seed_global_generators
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
from reelsmith.schema.screenplay import Character, slugify
from reelsmith.stages.cast import ModelReferences


@dataclass
class Movie:
    """Where a run stands after `make` or `resume`.

    Attributes:
        status: "done" (made now), "made" (made before, nothing changed) or "approval"
            (waiting for the screenplay's approval: edit it if you like, then `resume`).
        run: The run directory.
        seconds: Length of movie.mp4 (None while waiting for approval).
        shots: Number of shots (None while waiting for approval).
        elapsed: Seconds this call took.
    """

    status: str
    run: Path
    seconds: float | None = None
    shots: int | None = None
    elapsed: float = 0.0

    @property
    def path(self) -> Path:
        """movie.mp4 of the run."""
        return self.run / "movie.mp4"

    @property
    def storyboard(self) -> Path:
        return self.run / "storyboard.html"


def make(
    prompt: str | None = None,
    *,
    output: str | Path,
    source: str | Path | None = None,
    api_key: str | None = None,
    reporter: Reporter | None = None,
    **settings,
) -> Movie:
    """Make a movie from an idea (`prompt`) or a screenplay file (`source`) in `output`.

    Args:
        prompt: The idea, in a sentence or a page.
        output: The run directory: new, empty, or a run of the same inputs (which goes on).
        source: A screenplay or shot list (.fountain, .csv, .yaml/.yml, .json) instead.
        api_key: The script writer's server key, held in memory only (else the environment).
        reporter: Where progress goes (`agent.context.Reporter`); quiet by default.
        **settings: `RunInputs`, `ModelChoice` and `RunOptions` fields, e.g. `shots=6`,
            `seed=3`, `backend="diffusers"`, `shot_model="..."`, `device="cuda"`. A
            `base_url` with credentials is used as given and recorded without them.

    Raises:
        InputError: Bad input, or an output folder that holds something else.
    """
    started = time.monotonic()
    config, source_file = RunConfig.of(prompt, source, **settings)  # checked before any work
    secrets = (api_key, settings.get("base_url"))
    return make_run(config, output, source_file, secrets, reporter, started)


def make_run(
    config: RunConfig,
    output: str | Path,
    source_file: tuple[str, bytes] | None = None,
    secrets: tuple[str | None, str | None] = (None, None),
    reporter: Reporter | None = None,
    started: float | None = None,
) -> Movie:
    """`make` from a checked `RunConfig` (`RunConfig.of`): what the command line calls.

    Args:
        config: The run's configuration.
        output: The run directory: new, empty, or a run of the same inputs (which goes on).
        source_file: The imported screenplay's (suffix, bytes), as `RunConfig.of` read it.
        secrets: The writer's API key and server URL as given, held in memory only.
        reporter: Where progress goes; quiet by default.
        started: When the command started (`time.monotonic()`), for `Movie.elapsed`.
    """
    started = time.monotonic() if started is None else started
    output = Path(output)
    # 1. the run directory: a new one, or the run of these same inputs
    run = None
    if not RunDir.is_vacant(output):
        if not (output / "run.json").exists():
            raise InputError(
                f"{output}: not empty, and not a reelsmith run directory; choose another -o "
                "(a new or empty folder)"
            )
        run = RunDir.open(output)
        if not run.same_inputs(config.inputs):
            raise InputError(
                f"{output}: not empty, and not a run of these inputs; choose another -o, "
                f"or continue that run with `reelsmith resume {output}`"
            )
        config = run.config  # the run goes on as it began
    models = _models(config)
    if run is None:
        if not config.options.approve:
            models.load()  # a model that cannot load fails before the run directory exists
        run = RunDir.create(output, config, source_file)
    # 2. make it
    return _go(run, models, secrets, reporter, resume=False, started=started)


def resume(
    run_dir: str | Path, *, concurrency: int | None = None, reporter: Reporter | None = None
) -> Movie:
    """Go on with a run: after `approve`, after a crash, or after editing its screenplay.json.

    Args:
        run_dir: The run directory.
        concurrency: Shots rendered at once (the run's setting by default).
        reporter: Where progress goes; quiet by default.
    """
    started = time.monotonic()
    run = RunDir.open(Path(run_dir))
    if concurrency is not None:
        run.options = dataclasses.replace(run.options, concurrency=concurrency)
    run.config.check()
    return _go(run, _models(run.config), (None, None), reporter, resume=True, started=started)


def status(run_dir: str | Path) -> dict:
    """Where a run stands, read without changing anything: its stage, shots rendered of all,
    whether screenplay.json was edited, and its files."""
    return describe(RunDir.open(Path(run_dir)))


def _models(config: RunConfig) -> Models:
    return Models(config.inputs.models, config.options.device, config.options.concurrency)


def _go(run, models, secrets, reporter, resume: bool, started: float) -> Movie:
    """Run the graph under the run's lock. `secrets`: (API key, server URL) as given, held in
    memory only."""
    with run.lock():
        seed_global_generators()
        with reporter or Reporter() as shown:
            outcome = advance(run, Context(run, models, shown, *secrets), resume=resume)
    elapsed = time.monotonic() - started
    if outcome.status == "approval":
        return Movie("approval", run.path, elapsed=elapsed)
    movie = outcome.values["movie"]
    return Movie(outcome.status, run.path, movie["seconds"], movie["shots"], elapsed)


def draw_portrait(
    description: str, output: str | Path, *, name: str = "someone", seed: int = 0, scale: int = 4
) -> dict[str, str]:
    """Draw a character's reference portrait from a description with the built-in models, as
    casting does, into the PNG `output` (enlarged `scale` times); return the looks it got."""
    output = Path(output)
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
    seed_global_generators()
    cast = ModelReferences(BuiltinKeyframer(), load_identity_encoder(), seed=seed)
    reference = cast(character, None)
    side = reference.portrait.shape[0] * scale
    picture = Image.fromarray(reference.portrait).resize((side, side), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_bytes_atomic(output, buffer.getvalue())
    return reference.identity
