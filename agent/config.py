"""A run's configuration, declared once: what decides the movie (`RunInputs`, with the
`ModelChoice` inside it) and how the run goes (`RunOptions`), checked together (`RunConfig`).

The command line and the Python API build a `RunConfig` with `RunConfig.of` and nothing else;
`run.json` records it (`RunConfig.to_record`), flat as it always was.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from reelsmith.errors import InputError
from reelsmith.memory.names import check_series_name
from reelsmith.planner.brief import Brief
from reelsmith.planner.io import load_screenplay, read_text
from reelsmith.renderer.shipped import MOTION as SHOT_WEIGHTS
from reelsmith.schema.conditioning import KeyframeSpec

BACKENDS = ("builtin", "diffusers")
MAX_PLAN_TEMPERATURE = 2.0  # a bound on the planner's sampling noise, twice what it learned
EXAMPLE_SHOT_MODEL = "stabilityai/stable-video-diffusion-img2vid-xt"


def shipped_shot_model() -> Path | None:
    """The folder of the shipped built-in shot model, or None where it is not shipped."""
    return SHOT_WEIGHTS if (SHOT_WEIGHTS / "model_index.json").is_file() else None


@dataclass(frozen=True)
class ModelChoice:
    """Which models make the movie (part of the inputs: they decide its bytes).

    Attributes:
        backend: "builtin" (the shipped models, or built-in model folders) or "diffusers"
            (a diffusers image-to-video pipeline for shots, and optionally a text-to-image one
            for keyframes).
        keyframe_model: A keyframe model: a folder (builtin), a Hub id or folder (diffusers).
        shot_model: A shot model: a folder (builtin), a Hub id or folder (diffusers).
        shot_steps: Denoising steps per clip; the shot model's default when None.
        keyframe_candidates: Drawings per keyframe by the built-in keyframer, of which the
            identity check keeps the one whose characters look most like their references;
            `DEFAULT_CANDIDATES` when None.
        plan_temperature: The keyframe planner's sampling temperature (0: each shot's most
            likely keyframe; higher: staging that varies with the seed);
            `planner.planning.DEFAULT_TEMPERATURE` when None.
        resolution: Keyframe (and shot) side in pixels; the keyframer's own when None.
    """

    backend: str = "builtin"
    keyframe_model: str | None = None
    shot_model: str | None = None
    shot_steps: int | None = None
    keyframe_candidates: int | None = None
    plan_temperature: float | None = None
    resolution: int | None = None

    @property
    def builtin_keyframer(self) -> bool:
        return self.backend == "builtin" or self.keyframe_model is None

    @property
    def shipped_keyframer(self) -> bool:
        """The shipped built-in keyframer draws, the only one that reads the shipped planner's
        tokens (not a pretrained one, nor a built-in one from another folder)."""
        return self.builtin_keyframer and not (self.backend == "builtin" and self.keyframe_model)

    def check(self) -> None:
        """Refuse a choice that cannot work, before anything is loaded or written."""
        self.check_values()
        self.check_folders()

    def check_values(self) -> None:
        """Refuse settings out of range, naming the bad value."""
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend '{self.backend}'; use one of {', '.join(BACKENDS)}")
        if self.shot_steps is not None and not 1 <= self.shot_steps <= 1000:
            raise InputError(f"--shot-steps must be from 1 to 1000, got {self.shot_steps}")
        self._check_keyframes()
        if self.resolution is not None and not (16 <= self.resolution <= 4096):
            raise InputError(f"--resolution must be from 16 to 4096, got {self.resolution}")
        if self.resolution is not None and self.resolution % 2:
            raise InputError(f"--resolution must be even (H.264), got {self.resolution}")

    def _check_keyframes(self) -> None:
        if self.keyframe_candidates is not None:
            if not 1 <= self.keyframe_candidates <= 16:
                raise InputError(
                    f"--keyframe-candidates must be from 1 to 16, got {self.keyframe_candidates}"
                )
            if self.keyframe_candidates > 1 and not self.builtin_keyframer:
                raise InputError(
                    "--keyframe-candidates: only the built-in keyframer draws candidates; "
                    "leave it out with --keyframe-model"
                )
        if self.plan_temperature is not None:
            if not 0 <= self.plan_temperature <= MAX_PLAN_TEMPERATURE:
                raise InputError(
                    f"--plan-temperature must be from 0 to {MAX_PLAN_TEMPERATURE:g}, got "
                    f"{self.plan_temperature:g}"
                )
            if not self.shipped_keyframer:
                raise InputError(
                    f"--plan-temperature: keyframes from --keyframe-model {self.keyframe_model} "
                    "are drawn without the shipped planner, so there is no plan to sample; "
                    "leave one of them out"
                )

    def check_folders(self) -> None:
        """Refuse model folders that are not there, and a backend with no shot model."""
        for option, model in (
            ("--keyframe-model", self.keyframe_model),
            ("--shot-model", self.shot_model),
        ):
            if model is not None and self.backend == "builtin" and not Path(model).is_dir():
                raise InputError(f"{option} {model}: no such folder (a built-in model folder)")
            local = model is not None and model.startswith(("/", ".", "~"))
            if local and not Path(model).expanduser().is_dir():
                raise InputError(f"{option} {model}: no such folder")
        if self.backend == "diffusers" and not self.shot_model:
            raise InputError(
                "--backend diffusers renders shots with a diffusers image-to-video pipeline: "
                f"name it with --shot-model (a Hub id or folder, e.g. {EXAMPLE_SHOT_MODEL})"
            )
        if self.backend == "builtin" and self.shot_model is None and not shipped_shot_model():
            raise InputError(
                f"no built-in shot model is shipped yet (none at {SHOT_WEIGHTS}); render shots "
                "with a diffusers image-to-video pipeline: --backend diffusers --shot-model "
                f"MODEL (a Hub id or folder, e.g. {EXAMPLE_SHOT_MODEL})"
            )


@dataclass(frozen=True)
class RunInputs:
    """What decides the movie: the same inputs make the same movie, byte for byte.

    Attributes:
        prompt: The idea, when the screenplay is written.
        source: The imported screenplay's file name inside the run directory (`source.<ext>`).
        source_sha256: Its digest.
        writer, writer_model, base_url: The script writer (`reelsmith script`'s options).
        scenes, shots, duration, style: The brief given to the writer.
        seed: The run seed; every other seed derives from it and a shot or character id.
        series: The series bible characters come from and go into; None: the run's own.
        models: The models and how they draw (`ModelChoice`).
        fps: Frames per second of the shots and the movie.
    """

    prompt: str | None = None
    source: str | None = None
    source_sha256: str | None = None
    writer: str = "offline"
    writer_model: str | None = None
    base_url: str | None = None
    scenes: int | None = None
    shots: int | None = None
    duration: float | None = None
    style: str = ""
    seed: int = 0
    series: str | None = None
    models: ModelChoice = field(default_factory=ModelChoice)
    fps: int = 8

    @property
    def brief(self) -> Brief | None:
        """What the writer is asked for; None where the screenplay is imported."""
        if self.prompt is None:
            return None
        return Brief(
            self.prompt,
            scenes=self.scenes,
            shots=self.shots,
            duration=self.duration,
            style=self.style,
            seed=self.seed,
        )

    def check(self) -> None:
        """Refuse inputs that cannot make a movie (the models aside), naming the bad value."""
        if (self.prompt is None) == (self.source is None):
            raise InputError("a run is made from a PROMPT or a --from FILE, exactly one of them")
        self.brief  # noqa: B018  (a bad brief raises)
        if not 1 <= self.fps <= 60:
            raise InputError(f"--fps must be from 1 to 60, got {self.fps}")
        if self.series is not None:
            check_series_name(self.series)


@dataclass(frozen=True)
class RunOptions:
    """How the run goes, not what it makes.

    Attributes:
        approve: Stop after the screenplay until `reelsmith resume`.
        concurrency: Shots rendered at once, each by its own copy of the shot model.
        device: Where the models run, e.g. "cpu" or "cuda".
        timeout, attempts, trust_remote_code: The script writer's (`reelsmith script`'s).
    """

    approve: bool = False
    concurrency: int = 1
    device: str = "cpu"
    timeout: float = 120.0
    attempts: int = 3
    trust_remote_code: bool = False

    def check(self) -> None:
        """Refuse options that cannot work, naming the bad value."""
        self.check_concurrency()
        self.check_device()

    def check_concurrency(self) -> None:
        if not 1 <= self.concurrency <= 64:
            raise InputError(f"--concurrency must be from 1 to 64, got {self.concurrency}")

    def check_device(self) -> None:
        if self.device != "cpu":
            import torch  # lazily: only a device other than the CPU needs it checked

            try:
                device = torch.device(self.device)
            except RuntimeError:
                raise InputError(f"--device {self.device!r} is not a torch device") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise InputError(f"--device {self.device}: no CUDA device here")


_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelChoice))
_INPUT_FIELDS = tuple(f.name for f in dataclasses.fields(RunInputs) if f.name != "models")
_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(RunOptions))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is made with, parsed once and checked before anything loads."""

    inputs: RunInputs
    options: RunOptions = field(default_factory=RunOptions)

    @classmethod
    def of(
        cls, prompt: str | None = None, source: str | Path | None = None, **settings
    ) -> tuple[RunConfig, tuple[str, bytes] | None]:
        """A checked configuration from a PROMPT or a screenplay file, and settings named as
        `RunInputs`, `ModelChoice` and `RunOptions` fields (e.g. `shots=6, backend="builtin",
        device="cuda"`). Returns it with the source file's (suffix, bytes), None for a prompt.

        Raises:
            InputError: Neither or both of prompt and source, an unknown setting, a bad value,
                or a source that is not a readable, renderable screenplay.
        """
        unknown = sorted(set(settings) - {*_MODEL_FIELDS, *_INPUT_FIELDS, *_OPTION_FIELDS})
        if unknown or "source_sha256" in settings:
            raise InputError(f"unknown setting '{(unknown or ['source_sha256'])[0]}'")
        if (prompt is None) == (source is None):
            raise InputError("give either a PROMPT or --from FILE (not both)")
        source_file = None
        if source is not None:
            source_file = _read_source(Path(source), settings)
        pick = lambda names: {k: v for k, v in settings.items() if k in names}  # noqa: E731
        models = ModelChoice(**pick(_MODEL_FIELDS))
        models = dataclasses.replace(
            models,
            keyframe_model=_model_id(models.keyframe_model),
            shot_model=_model_id(models.shot_model),
        )
        inputs = RunInputs(
            **{**pick(_INPUT_FIELDS), "models": models},
            prompt=prompt,
            source=None if source_file is None else f"source{source_file[0]}",
            source_sha256=None if source_file is None else _sha256(source_file[1]),
        )
        inputs = dataclasses.replace(inputs, base_url=without_credentials(inputs.base_url))
        config = cls(inputs, RunOptions(**pick(_OPTION_FIELDS)))
        config.check()
        return config, source_file

    def check(self) -> None:
        """Refuse a configuration that cannot work, before anything is loaded or written."""
        self.inputs.check()
        self.inputs.models.check_values()
        self.options.check_concurrency()
        self.inputs.models.check_folders()
        self.options.check_device()

    def to_record(self) -> dict:
        """run.json's "inputs" and "options": the inputs flat, the model choice among them."""
        flat = {}
        for name, value in dataclasses.asdict(self.inputs).items():
            flat.update(value if name == "models" else {name: value})
        return {"inputs": flat, "options": dataclasses.asdict(self.options)}

    @classmethod
    def from_record(cls, record: dict) -> RunConfig:
        """The configuration run.json records (`TypeError` or `KeyError` where it is bad)."""
        flat = dict(record["inputs"])
        models = ModelChoice(**{k: flat.pop(k) for k in _MODEL_FIELDS if k in flat})
        return cls(RunInputs(**flat, models=models), RunOptions(**record["options"]))


def check_renderable(screenplay, source: str | Path) -> None:
    """`InputError` naming the file and shot unless every place, time, size and camera move of
    the screenplay is in the vocabulary the keyframer draws."""
    for scene, shot in screenplay.shots():
        try:
            KeyframeSpec.from_shot(scene, shot, {})
        except ValueError as exc:
            raise InputError(f"{source}: shot '{shot.id}': {exc}") from None


def _read_source(source: Path, settings: dict) -> tuple[str, bytes]:
    """The source screenplay's (suffix, bytes), checked: readable, valid and renderable, and
    given without the options that are for writing one."""
    writing = ("writer", "writer_model", "base_url", "scenes", "shots", "duration", "style")
    given = [
        f"--{'model' if name == 'writer_model' else name.replace('_', '-')}"
        for name in writing
        if settings.get(name) not in (None, "", "offline")
    ]
    if given:
        raise InputError(
            f"{given[0]} is for writing a screenplay from a PROMPT; --from {source} brings its own"
        )
    check_renderable(load_screenplay(source), source)
    return source.suffix.lower(), read_text(source).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def without_credentials(url: str | None) -> str | None:
    """A server URL without user:password@, query or fragment: what may carry a secret is
    never written to the run directory."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="", fragment=""))


def _model_id(model: str | None) -> str | None:
    """A local folder as an absolute path (so a resume from elsewhere finds it); a Hub id as is."""
    if model is None:
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model
