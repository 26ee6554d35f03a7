"""The models a run uses, chosen by `--backend`, loaded once and only when needed.

| backend     | keyframes                                          | shots                         |
| ----------- | -------------------------------------------------- | ----------------------------- |
| `builtin`   | the shipped keyframer (or a `KeyframePipeline`     | the shipped shot model (or a  |
|             | folder given as `--keyframe-model`), with the      | `MotionPipeline` or           |
|             | shipped keyframe planner where there is one        | `ShotPipeline` folder given   |
|             |                                                    | as `--shot-model`)            |
| `diffusers` | a diffusers text-to-image pipeline (`--keyframe-   | a diffusers image-to-video    |
|             | model`, a Hub id or folder), else the built-in     | pipeline (`--shot-model`,     |
|             | keyframer                                          | required)                     |

Characters are always cast by the keyframer (their portraits) and the built-in identity
encoder (their embeddings). Each model is described for the cache keys without loading it
(`keyframer_id`, `planner_id`, `shot_renderer_id`): a resumed run whose keyframes and shots
are all made never loads a model.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reelsmith.errors import InputError
from reelsmith.renderer.shots.builtin import BuiltinShotRenderer
from reelsmith.renderer.shots.motion_pipeline import WEIGHTS as SHOT_WEIGHTS
from reelsmith.renderer.shots.motion_pipeline import load_motion_pipeline

logger = logging.getLogger("reelsmith")

BACKENDS = ("builtin", "diffusers")
MAX_PLAN_TEMPERATURE = 2.0  # a bound on the planner's sampling noise, twice what it learned
EXAMPLE_SHOT_MODEL = "stabilityai/stable-video-diffusion-img2vid-xt"


def shipped_shot_model() -> Path | None:
    """The folder of the shipped built-in shot model, or None where it is not shipped."""
    return SHOT_WEIGHTS if (SHOT_WEIGHTS / "model_index.json").is_file() else None


def load_builtin_shot_renderer(folder: str | Path, device: str, **settings):
    """The `BuiltinShotRenderer` over the `MotionPipeline` saved in `folder`."""
    try:
        class_name = json.loads((Path(folder) / "model_index.json").read_text())["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        class_name = None
    if class_name != "MotionPipeline":
        raise InputError(f"{folder}: not a built-in shot model (a MotionPipeline folder)")
    return BuiltinShotRenderer(load_motion_pipeline(folder, device), **settings)


@dataclass(frozen=True)
class BackendChoice:
    """Which models make the movie.

    Attributes:
        backend: "builtin" or "diffusers" (see the module docstring).
        keyframe_model: A keyframe model: a folder (builtin), a Hub id or folder (diffusers).
        shot_model: A shot model: a folder (builtin), a Hub id or folder (diffusers).
        shot_steps: Denoising steps per clip; the shot model's default when None.
        keyframe_candidates: Drawings per keyframe by the built-in keyframer, of which the
            identity check keeps the one whose characters look most like their references
            (`renderer.identity_check`); `DEFAULT_CANDIDATES` when None.
        plan_temperature: The keyframe planner's sampling temperature (0: each shot's most
            likely keyframe; higher: staging that varies with the seed);
            `planner.planning.DEFAULT_TEMPERATURE` when None.
        resolution: Keyframe (and shot) side in pixels; the keyframer's own when None.
        device: Where the models run, e.g. "cpu" or "cuda".
        concurrency: Shots rendered at once, each by its own copy of the shot model.
    """

    backend: str = "builtin"
    keyframe_model: str | None = None
    shot_model: str | None = None
    shot_steps: int | None = None
    keyframe_candidates: int | None = None
    plan_temperature: float | None = None
    resolution: int | None = None
    device: str = "cpu"
    concurrency: int = 1

    def check(self) -> None:
        """Refuse a choice that cannot work, before anything is loaded or written."""
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend '{self.backend}'; use one of {', '.join(BACKENDS)}")
        if self.shot_steps is not None and not 1 <= self.shot_steps <= 1000:
            raise InputError(f"--shot-steps must be from 1 to 1000, got {self.shot_steps}")
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
        if self.resolution is not None and not (16 <= self.resolution <= 4096):
            raise InputError(f"--resolution must be from 16 to 4096, got {self.resolution}")
        if self.resolution is not None and self.resolution % 2:
            raise InputError(f"--resolution must be even (H.264), got {self.resolution}")
        if not 1 <= self.concurrency <= 64:
            raise InputError(f"--concurrency must be from 1 to 64, got {self.concurrency}")
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
            where = SHOT_WEIGHTS
            raise InputError(
                f"no built-in shot model is shipped yet (none at {where}); render shots with a "
                "diffusers image-to-video pipeline: --backend diffusers --shot-model MODEL "
                f"(a Hub id or folder, e.g. {EXAMPLE_SHOT_MODEL})"
            )
        if self.device != "cpu":
            import torch

            try:
                device = torch.device(self.device)
            except RuntimeError:
                raise InputError(f"--device {self.device!r} is not a torch device") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise InputError(f"--device {self.device}: no CUDA device here")

    @property
    def builtin_keyframer(self) -> bool:
        return self.backend == "builtin" or self.keyframe_model is None

    @property
    def shipped_keyframer(self) -> bool:
        """The shipped built-in keyframer draws, the only one that reads the shipped planner's
        tokens (not a pretrained one, nor a built-in one from another folder)."""
        return self.builtin_keyframer and not (self.backend == "builtin" and self.keyframe_model)


class Models:
    """The run's models, each loaded on first use (thread-safe), and their descriptions.

    Args:
        choice: Which models.
    """

    def __init__(self, choice: BackendChoice) -> None:
        self.choice = choice
        self.keyframe_batch = 16  # keyframes per keyframer call; halved on out-of-memory
        # re-entrant: a loader may need another model (the keyframer's check: the encoder)
        self._lock = threading.RLock()
        self._loaded: dict[str, object] = {}
        self._renderers: queue.Queue = queue.Queue()
        self._renderer_count = 0
        self._warned = False  # about the missing planner, once

    # -- descriptions for the cache keys (nothing loaded) ----------------------------------

    @property
    def keyframer_id(self) -> dict:
        from reelsmith.agent.cache import model_fingerprint, versions

        c = self.choice
        if c.builtin_keyframer:
            from reelsmith.renderer.keyframes.pipeline import DEFAULT_STEPS, WEIGHTS

            folder = c.keyframe_model if c.backend == "builtin" and c.keyframe_model else WEIGHTS
            model = {
                "kind": "builtin",
                "weights": model_fingerprint(folder),
                "steps": DEFAULT_STEPS,
                "candidates": self.keyframe_candidates,
            }
        else:
            model = {"kind": "diffusers", "model": model_fingerprint(c.keyframe_model)}
        return {**model, "resolution": c.resolution, "device": c.device, **versions()}

    @property
    def keyframe_candidates(self) -> int:
        from reelsmith.renderer.keyframes.builtin import DEFAULT_CANDIDATES

        c = self.choice.keyframe_candidates
        return DEFAULT_CANDIDATES if c is None else c

    @property
    def planner_id(self) -> dict | None:
        """The keyframe planner's description, or None where keyframes are drawn without one."""
        from reelsmith.agent.cache import model_fingerprint

        folder = self._planner_folder()
        if folder is None:
            return None
        return {"weights": model_fingerprint(folder), "temperature": self.plan_temperature}

    @property
    def plan_temperature(self) -> float:
        from reelsmith.planner.planning import DEFAULT_TEMPERATURE

        t = self.choice.plan_temperature
        return DEFAULT_TEMPERATURE if t is None else float(t) + 0.0  # -0.0 is 0.0

    @property
    def shot_renderer_id(self) -> dict:
        from reelsmith.agent.cache import model_fingerprint, versions

        c = self.choice
        if c.backend == "builtin":
            folder = c.shot_model or shipped_shot_model()
            model = {"kind": "builtin", "weights": model_fingerprint(folder)}
        else:
            model = {"kind": "diffusers", "model": model_fingerprint(c.shot_model)}
        return {**model, "steps": c.shot_steps, "device": c.device, **versions()}

    def _planner_folder(self) -> Path | None:
        """The shipped planner's folder, where it is shipped and the keyframer can read it."""
        from reelsmith.planner.keyframe_planner import CONFIG_NAME, WEIGHTS, WEIGHTS_NAME

        c = self.choice
        if not c.shipped_keyframer:
            return None
        if not all((WEIGHTS / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME)):
            if not self._warned:
                self._warned = True
                logger.warning(
                    "no keyframe planner is shipped yet (%s); keyframes are drawn scene by "
                    "scene, each from the one before it",
                    WEIGHTS,
                )
            return None
        return WEIGHTS

    # -- the models ------------------------------------------------------------------------

    def _get(self, name: str, load):
        with self._lock:
            if name not in self._loaded:
                with quiet_loading():
                    self._loaded[name] = load()
            return self._loaded[name]

    @property
    def keyframer(self):
        return self._get("keyframer", self._load_keyframer)

    @property
    def encoder(self):
        from reelsmith.renderer.identity.encoder import load_identity_encoder

        return self._get("encoder", load_identity_encoder)

    @property
    def planner(self):
        """The keyframe planner, or None (see `planner_id`)."""
        folder = self._planner_folder()
        if folder is None:
            return None
        from reelsmith.planner.keyframe_planner import load_keyframe_planner

        return self._get("planner", lambda: load_keyframe_planner(folder, self.choice.device))

    def _load_keyframer(self):
        c = self.choice
        if c.builtin_keyframer:
            from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
            from reelsmith.renderer.keyframes.pipeline import load_keyframe_pipeline

            folder = c.keyframe_model if c.backend == "builtin" else None
            check = None
            if self.keyframe_candidates > 1:  # it embeds figures with the run's encoder
                from reelsmith.renderer.identity.check import IdentityCheck

                check = IdentityCheck.load(c.device, encoder=self.encoder)
            keyframer = BuiltinKeyframer(
                load_keyframe_pipeline(folder, c.device),
                candidates=self.keyframe_candidates,
                check=check,
                device=c.device,
            )
            if c.resolution is not None and c.resolution != keyframer.resolution:
                raise InputError(
                    f"--resolution {c.resolution}: the built-in keyframer draws "
                    f"{keyframer.resolution}x{keyframer.resolution} keyframes; other sizes need "
                    "--backend diffusers --keyframe-model MODEL"
                )
            return keyframer
        from reelsmith.renderer.keyframes.pretrained import PretrainedKeyframer

        try:
            return PretrainedKeyframer.from_pretrained(
                c.keyframe_model, device=c.device, resolution=c.resolution
            )
        except ValueError as exc:
            raise InputError(f"--keyframe-model {c.keyframe_model}: {exc}") from None

    def _load_shot_renderer(self):
        c = self.choice
        steps = {} if c.shot_steps is None else {"steps": c.shot_steps}
        if c.backend == "builtin":
            folder = c.shot_model or shipped_shot_model()
            return load_builtin_shot_renderer(folder, c.device, **steps)
        from reelsmith.renderer.shots.pretrained import PretrainedShotRenderer

        try:
            return PretrainedShotRenderer.from_pretrained(c.shot_model, device=c.device, **steps)
        except ValueError as exc:
            raise InputError(f"--shot-model {c.shot_model}: {exc}") from None

    @contextmanager
    def shot_renderer(self) -> Iterator:
        """Borrow a shot renderer: one per shot rendered at once (a pipeline holds per-call
        state, so two threads never share one), at most `concurrency` of them loaded."""
        with self._lock:
            grow = self._renderers.empty() and self._renderer_count < self.choice.concurrency
            if grow:
                self._renderer_count += 1
        if grow:
            try:
                with quiet_loading():
                    renderer = self._load_shot_renderer()
            except BaseException:
                with self._lock:
                    self._renderer_count -= 1
                raise
        else:
            renderer = self._renderers.get()
        try:
            yield renderer
        finally:
            self._renderers.put(renderer)

    def load(self, shots: bool = True) -> None:
        """Load the keyframer, encoder, planner and (with `shots`) one shot renderer now, so that
        a model that cannot load fails before any work."""
        self.keyframer, self.encoder, self.planner  # noqa: B018  (loads them)
        if shots:
            with self.shot_renderer():
                pass

    def shrink_batches(self) -> None:
        """After running out of memory: halve the batches, free the accelerator's cache."""
        import torch

        self.keyframe_batch = max(1, self.keyframe_batch // 2)
        for renderer in list(self._renderers.queue):
            if hasattr(renderer, "batch_size"):
                renderer.batch_size = max(1, renderer.batch_size // 2)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def make_script_writer(inputs, options, api_key: str | None = None, base_url: str | None = None):
    """The screenplay writer of a run (`reelsmith script`'s choice). The API key and server
    URL given on the command line (held in memory only) come first, then run.json's URL (kept
    without credentials), then the environment."""
    from reelsmith.planner.writers import make_writer
    from reelsmith.settings import Settings

    settings = Settings.from_env()
    return make_writer(
        inputs.writer,
        model=inputs.writer_model or settings.openai_model,
        base_url=base_url or inputs.base_url or settings.openai_base_url,
        api_key=api_key or settings.openai_api_key,
        timeout=options.timeout,
        max_attempts=options.attempts,
        trust_remote_code=options.trust_remote_code,
    )


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading pipeline components" bars or weight-loading chatter while models load."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    shown = diffusers_logging.is_progress_bar_enabled()
    bars = transformers_logging.is_progress_bar_enabled()
    verbosity = transformers_logging.get_verbosity()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()
        if shown:
            diffusers_logging.enable_progress_bar()
