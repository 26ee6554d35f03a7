"""The models a run uses, chosen by its `ModelChoice`, loaded once and only when needed.

| backend     | keyframes                                          | shots                         |
| ----------- | -------------------------------------------------- | ----------------------------- |
| `builtin`   | the shipped keyframer (or a `KeyframePipeline`     | the shipped shot model (or a  |
|             | folder given as `--keyframe-model`), with the      | `MotionPipeline` folder given |
|             | shipped keyframe planner where there is one        | as `--shot-model`)            |
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
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from reelsmith.agent.cache import model_fingerprint, versions
from reelsmith.agent.config import ModelChoice, shipped_shot_model
from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import CONFIG_NAME, WEIGHTS_NAME, load_keyframe_planner
from reelsmith.planner.keyframe_planner import WEIGHTS as PLANNER_WEIGHTS
from reelsmith.planner.planning import DEFAULT_TEMPERATURE
from reelsmith.planner.writers import make_writer
from reelsmith.renderer.identity.check import IdentityCheck
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.keyframes.builtin import DEFAULT_CANDIDATES, BuiltinKeyframer
from reelsmith.renderer.keyframes.pipeline import DEFAULT_STEPS, load_keyframe_pipeline
from reelsmith.renderer.keyframes.pipeline import WEIGHTS as KEYFRAME_WEIGHTS
from reelsmith.renderer.shots.builtin import BuiltinShotRenderer
from reelsmith.renderer.shots.motion_pipeline import load_motion_pipeline
from reelsmith.settings import Settings

logger = logging.getLogger("reelsmith")


def load_builtin_shot_renderer(folder: str | Path, device: str, **settings):
    """The `BuiltinShotRenderer` over the `MotionPipeline` saved in `folder`."""
    try:
        class_name = json.loads((Path(folder) / "model_index.json").read_text())["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        class_name = None
    if class_name != "MotionPipeline":
        raise InputError(f"{folder}: not a built-in shot model (a MotionPipeline folder)")
    try:
        pipe = load_motion_pipeline(folder, device)
    except (OSError, ValueError) as exc:  # e.g. a model_index.json naming modules not here
        raise InputError(f"{folder}: cannot load the shot model ({exc})") from None
    return BuiltinShotRenderer(pipe, **settings)


class Models:
    """The run's models, each loaded on first use (thread-safe), and their descriptions.

    Args:
        choice: Which models.
        device: Where they run, e.g. "cpu" or "cuda".
        concurrency: Shots rendered at once, each by its own copy of the shot model.
    """

    def __init__(self, choice: ModelChoice, device: str = "cpu", concurrency: int = 1) -> None:
        self.choice = choice
        self.device, self.concurrency = device, concurrency
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

        c = self.choice
        if c.builtin_keyframer:
            folder = (
                c.keyframe_model
                if c.backend == "builtin" and c.keyframe_model
                else KEYFRAME_WEIGHTS
            )
            model = {
                "kind": "builtin",
                "weights": model_fingerprint(folder),
                "steps": DEFAULT_STEPS,
                "candidates": self.keyframe_candidates,
            }
        else:
            model = {"kind": "diffusers", "model": model_fingerprint(c.keyframe_model)}
        return {**model, "resolution": c.resolution, "device": self.device, **versions()}

    @property
    def keyframe_candidates(self) -> int:

        c = self.choice.keyframe_candidates
        return DEFAULT_CANDIDATES if c is None else c

    @property
    def planner_id(self) -> dict | None:
        """The keyframe planner's description, or None where keyframes are drawn without one."""

        folder = self._planner_folder()
        if folder is None:
            return None
        return {"weights": model_fingerprint(folder), "temperature": self.plan_temperature}

    @property
    def plan_temperature(self) -> float:

        t = self.choice.plan_temperature
        return DEFAULT_TEMPERATURE if t is None else float(t) + 0.0  # -0.0 is 0.0

    @property
    def shot_renderer_id(self) -> dict:

        c = self.choice
        if c.backend == "builtin":
            folder = c.shot_model or shipped_shot_model()
            model = {"kind": "builtin", "weights": model_fingerprint(folder)}
        else:
            model = {"kind": "diffusers", "model": model_fingerprint(c.shot_model)}
        return {**model, "steps": c.shot_steps, "device": self.device, **versions()}

    def _planner_folder(self) -> Path | None:
        """The shipped planner's folder, where it is shipped and the keyframer can read it."""

        c = self.choice
        if not c.shipped_keyframer:
            return None
        if not all((PLANNER_WEIGHTS / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME)):
            if not self._warned:
                self._warned = True
                logger.warning(
                    "no keyframe planner is shipped yet (%s); keyframes are drawn scene by "
                    "scene, each from the one before it",
                    PLANNER_WEIGHTS,
                )
            return None
        return PLANNER_WEIGHTS

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

        return self._get("encoder", load_identity_encoder)

    @property
    def planner(self):
        """The keyframe planner, or None (see `planner_id`)."""
        folder = self._planner_folder()
        if folder is None:
            return None

        return self._get("planner", lambda: load_keyframe_planner(folder, self.device))

    def _load_keyframer(self):
        c = self.choice
        if c.builtin_keyframer:
            folder = c.keyframe_model if c.backend == "builtin" else None
            check = None
            if self.keyframe_candidates > 1:  # it embeds figures with the run's encoder
                check = IdentityCheck.load(self.device, encoder=self.encoder)
            keyframer = BuiltinKeyframer(
                load_keyframe_pipeline(folder, self.device),
                candidates=self.keyframe_candidates,
                check=check,
                device=self.device,
            )
            if c.resolution is not None and c.resolution != keyframer.resolution:
                raise InputError(
                    f"--resolution {c.resolution}: the built-in keyframer draws "
                    f"{keyframer.resolution}x{keyframer.resolution} keyframes; other sizes need "
                    "--backend diffusers --keyframe-model MODEL"
                )
            return keyframer

        try:
            # loaded lazily: diffusers' and transformers' pretrained pipelines, this backend's
            from reelsmith.renderer.keyframes.pretrained import PretrainedKeyframer

            return PretrainedKeyframer.from_pretrained(
                c.keyframe_model, device=self.device, resolution=c.resolution
            )
        except ValueError as exc:
            raise InputError(f"--keyframe-model {c.keyframe_model}: {exc}") from None

    def _load_shot_renderer(self):
        c = self.choice
        steps = {} if c.shot_steps is None else {"steps": c.shot_steps}
        if c.backend == "builtin":
            folder = c.shot_model or shipped_shot_model()
            return load_builtin_shot_renderer(folder, self.device, **steps)

        try:
            # loaded lazily: diffusers' and transformers' pretrained pipelines, this backend's
            from reelsmith.renderer.shots.pretrained import PretrainedShotRenderer

            return PretrainedShotRenderer.from_pretrained(c.shot_model, device=self.device, **steps)
        except ValueError as exc:
            raise InputError(f"--shot-model {c.shot_model}: {exc}") from None

    @contextmanager
    def shot_renderer(self) -> Iterator:
        """Borrow a shot renderer: one per shot rendered at once (a pipeline holds per-call
        state, so two threads never share one), at most `concurrency` of them loaded."""
        with self._lock:
            grow = self._renderers.empty() and self._renderer_count < self.concurrency
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
