"""`ShotPipeline`: the built-in shot renderer (image to video) as a diffusers pipeline, and
`BuiltinShotRenderer`, the `ShotRenderer` over it.

Components:
- `condition_encoder` (`ShotConditionEncoder`): camera move + per-character identity and action
  -> condition tokens;
- `transformer` (`ShotTransformer`): a factorised space-time DiT in pixel space, v-prediction of
  each frame's difference from the clip's start frame (see `renderer/shot_model.py`);
- `scheduler`: any diffusers scheduler (`DPMSolverMultistepScheduler` ships).

A clip is the start frame (given, returned as it is) and up to `native_frames - 1` frames drawn
after it. Classifier-free guidance runs over the motion (camera move and actions together):
with e_u the prediction with the motion dropped and e_c with it,

    e_u + g (e_c - e_u)

and with g = 1 only e_c is computed (one branch). Identities and images are in both branches.

    pipe = load_shot_pipeline()
    out = pipe(keyframes, cameras=["pan-left"], actions=[{"mara": "wave"}],
               identities=[{"mara": emb}], num_frames=16, generator=g)
    out.frames                                          # (B, 16, 64, 64, 3) uint8

A clip that continues a shot passes `starts` (the last frame so far), `offsets` (that frame's
index in the shot) and `shot_frames` (the whole shot's length): the motion of a storyworld shot
is laid out over the whole shot, and the model is told where in it each frame is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from reelsmith.planner.screenplay import Action, CameraMove
from reelsmith.renderer.loading import load_quietly
from reelsmith.renderer.shot_model import (
    ACTIONS,
    CAMERAS,
    PRESETS,
    ShotConditionEncoder,
    ShotTransformer,
    phase_features,
)
from reelsmith.renderer.shots import (
    Progress,
    ShotRequest,
    at_model,
    check_requests,
    extend_clip_by_clip,
    from_model,
    identity_embeddings,
)

WEIGHTS = Path(__file__).parent / "weights" / "shots"
TRAIN_COMMAND = (
    f"python -m reelsmith.world.train shots --identity memory/weights/identity --out {WEIGHTS}"
)
# 8 steps x 2 branches of the default model: ~0.35 s of one core per frame (shot_model.py)
DEFAULT_STEPS = 8
DEFAULT_GUIDANCE = 2.0
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "solver_order": 2,
    "lower_order_final": True,
    "final_sigmas_type": "zero",
}

Images = np.ndarray | torch.Tensor | Sequence[np.ndarray]


@dataclass
class ShotPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor


class ShotPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "condition_encoder->transformer"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        condition_encoder: ShotConditionEncoder,
        transformer: ShotTransformer,
        scheduler,
    ) -> None:
        super().__init__()
        self.register_modules(
            condition_encoder=condition_encoder, transformer=transformer, scheduler=scheduler
        )

    # -- shapes ---------------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return self.transformer.config.resolution

    @property
    def native_frames(self) -> int:
        """The most frames of one clip, its start frame included."""
        return self.transformer.config.max_frames + 1

    @property
    def fps(self) -> float:
        return float(self.transformer.config.fps)

    @property
    def identity_dim(self) -> int:
        return self.condition_encoder.config.identity_dim

    @property
    def slots(self) -> int:
        return self.condition_encoder.config.slots

    # -- inputs ---------------------------------------------------------------------------

    def _pixels(self, images: Images, name: str) -> torch.Tensor:
        """uint8 (B, r, r, 3) images -> (B, 3, r, r) float in [-1, 1]; ValueError otherwise."""
        if isinstance(images, Sequence) and not isinstance(images, np.ndarray):
            if not all(isinstance(i, np.ndarray) for i in images):
                raise ValueError(f"{name} must be uint8 arrays (H, W, 3)")
            images = np.stack(images) if images else np.zeros((0,), np.uint8)
        x = torch.as_tensor(images) if not torch.is_tensor(images) else images
        r = self.resolution
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (r, r, 3):
            got = f"{x.dtype} {tuple(x.shape)}"
            raise ValueError(f"{name} must be uint8 (B, {r}, {r}, 3); got {got}")
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def check_inputs(
        self,
        b,
        n_starts,
        num_frames,
        cameras,
        actions,
        identities,
        offsets,
        shot_frames,
        steps,
        guidance_scale,
        generator,
        output_type,
        callback_tensor_inputs,
    ) -> None:
        if b == 0:
            raise ValueError("no clips to draw: keyframes is empty")
        if n_starts != b:
            raise ValueError(f"{n_starts} start frames given for {b} keyframes")
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type {output_type!r} is not one of np, pt")
        if not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"guidance_scale {guidance_scale!r} must be a number >= 0")
        for name in callback_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback tensor input {name!r} is not one of ['latents']")
        native = self.native_frames
        if isinstance(num_frames, bool) or not isinstance(num_frames, int):
            raise ValueError(f"num_frames must be an integer, got {num_frames!r}")
        if not 2 <= num_frames <= native:
            raise ValueError(f"num_frames {num_frames} must be in [2, {native}] for this model")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {steps!r}")
        if isinstance(generator, list) and len(generator) != b:
            raise ValueError(f"{len(generator)} generators given for {b} clips")
        for name, values in (
            ("cameras", cameras),
            ("actions", actions),
            ("identities", identities),
            ("offsets", offsets),
            ("shot_frames", shot_frames),
        ):
            if values is not None and len(values) != b:
                raise ValueError(f"{len(values)} {name} given for {b} clips")
        for camera in cameras or []:
            if camera not in CAMERAS:
                raise ValueError(f"unknown camera move {camera!r} (one of {list(CAMERAS)})")
        for i, clip in enumerate(actions or []):
            if not isinstance(clip, Mapping):
                raise ValueError("actions must be one mapping (character id -> action) per clip")
            for character, action in clip.items():
                if action not in ACTIONS:
                    raise ValueError(
                        f"clip {i}: character {character!r} has unknown action {action!r} "
                        f"(one of {list(ACTIONS)})"
                    )
        for i, clip in enumerate(identities or []):
            if not isinstance(clip, Mapping):
                raise ValueError(
                    "identities must be one mapping (character id -> embedding) per clip"
                )
            for character, embedding in clip.items():
                vector = torch.as_tensor(embedding)
                if tuple(vector.shape) != (self.identity_dim,):
                    raise ValueError(
                        f"clip {i}: identity of {character!r} has shape "
                        f"{tuple(vector.shape)}, expected ({self.identity_dim},)"
                    )
                if not torch.isfinite(vector).all():
                    raise ValueError(f"clip {i}: identity of {character!r} is not finite")
        for i, offset in enumerate(offsets or []):
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(f"clip {i}: offset {offset!r} must be an integer >= 0")
        for i, length in enumerate(shot_frames or []):
            if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                raise ValueError(f"clip {i}: shot_frames {length!r} must be an integer >= 1")

    def _slots(self, b: int, actions, identities) -> dict[str, torch.Tensor]:
        """Per clip its characters in slots: identities first, in their order, then characters
        with an action only; at most `slots` (the rest are not conditioned on). A character
        with no action is idle (as storyworld stages it)."""
        s, d = self.slots, self.identity_dim
        out = {
            "identities": torch.zeros(b, s, d),
            "actions": torch.full((b, s), ACTIONS.index(Action.idle.value)),
            "present": torch.zeros(b, s, dtype=torch.bool),
            "has_identity": torch.zeros(b, s, dtype=torch.bool),
        }
        for i in range(b):
            given = dict((identities or [{}] * b)[i])
            acts = dict((actions or [{}] * b)[i])
            characters = list(dict.fromkeys([*given, *acts]))[:s]
            for k, character in enumerate(characters):
                out["present"][i, k] = True
                if character in acts:
                    out["actions"][i, k] = ACTIONS.index(acts[character])
                if character in given:
                    out["identities"][i, k] = torch.as_tensor(given[character]).float()
                    out["has_identity"][i, k] = True
        return out

    def encode_conditions(
        self, cameras: Sequence[str], slots: dict, guidance_scale: float
    ) -> tuple[torch.Tensor, list[float]]:
        """Condition tokens of each branch, stacked ((branches * B, 1 + S, w)), and the
        branches' coefficients: [g] (g = 1) or [1 - g, g] (motion dropped, then kept)."""
        device, enc = self._execution_device, self.condition_encoder
        camera = torch.tensor([CAMERAS.index(c) for c in cameras], device=device)
        keeps = [True] if guidance_scale == 1.0 else [False, True]
        coef = [1.0] if guidance_scale == 1.0 else [1.0 - guidance_scale, guidance_scale]
        blocks = []
        for keep in keeps:
            blocks.append(
                enc(
                    slots["identities"].to(device, enc.dtype),
                    slots["actions"].to(device),
                    camera,
                    slots["present"].to(device),
                    slots["has_identity"].to(device),
                    torch.full((len(cameras),), keep, device=device),
                )
            )
        return torch.cat(blocks), coef

    # -- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        keyframes: Images,
        starts: Images | None = None,
        num_frames: int | None = None,
        cameras: Sequence[CameraMove | str] | None = None,
        actions: Sequence[Mapping[str, Action | str]] | None = None,
        identities: Sequence[Mapping[str, torch.Tensor | np.ndarray]] | None = None,
        offsets: Sequence[int] | None = None,
        shot_frames: Sequence[int] | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ShotPipelineOutput | tuple:
        """Draw one clip per keyframe.

        Args:
            keyframes: The shots' keyframes, uint8 (B, r, r, 3) (or a list of (r, r, 3)).
            starts: The frame each clip starts from, like `keyframes`; None: the keyframes.
            num_frames: Frames per clip, the start frame included, 2 .. `native_frames`
                (default `native_frames`).
            cameras: Each clip's camera move (default static).
            actions: Per clip, character id -> its action (a character not named is idle).
            identities: Per clip, character id -> identity embedding (D,) (from the identity
                encoder `reelsmith-identity-v1`).
            offsets: Per clip, the index in its shot of the start frame (default 0).
            shot_frames: Per clip, the frames of its whole shot (default `num_frames`).
            num_inference_steps: Denoising steps.
            guidance_scale: Classifier-free guidance over the motion; 1.0 is one branch.
            generator: A torch.Generator, or one per clip (a clip's frames then depend on its
                own generator only).
            latents: Initial noise (B, num_frames - 1, 3, r, r), instead of drawing it.
            output_type: "np" (uint8 (B, F, r, r, 3)) or "pt" (float (B, F, 3, r, r) in
                [0, 1]); frame 0 is the start frame as given.
            callback_on_step_end: Called as fn(pipe, step, timestep, kwargs) after each step;
                it may return {"latents": ...} to replace the sample.
        """
        # 1. check inputs
        x_key = self._pixels(keyframes, "keyframes")
        x_start = x_key if starts is None else self._pixels(starts, "starts")
        num_frames = self.native_frames if num_frames is None else num_frames
        cameras, actions = plain_words(cameras, actions)
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        self.check_inputs(
            len(x_key),
            len(x_start),
            num_frames,
            cameras,
            actions,
            identities,
            offsets,
            shot_frames,
            num_inference_steps,
            guidance_scale,
            generator,
            output_type,
            callback_on_step_end_tensor_inputs,
        )
        b = len(x_key)
        device, r = self._execution_device, self.resolution

        # 2. encode the conditions and where each frame is in its shot
        slots = self._slots(b, actions, identities)
        conditions, coef = self.encode_conditions(
            cameras or [CameraMove.static.value] * b, slots, float(guidance_scale)
        )
        phase = phase_features(
            torch.tensor(list(offsets or [0] * b)),
            torch.tensor(list(shot_frames or [num_frames] * b)),
            num_frames - 1,
        )

        # 3. noise
        shape = (b, num_frames - 1, 3, r, r)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents of shape {tuple(latents.shape)} should be {shape}")

        # 4. denoise: differences from the start frame
        residual = self.denoise(
            latents,
            x_start.to(device),
            x_key.to(device),
            conditions,
            phase.to(device),
            coef,
            num_inference_steps,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )

        # 5. frames: the start frame, then start + difference
        x_start = x_start.to(device)
        scale = self.transformer.config.residual_scale
        drawn = (x_start[:, None] + residual / scale).clamp(-1, 1)
        video = torch.cat([x_start[:, None], drawn], 1)  # (B, F, 3, r, r)
        video = (video + 1) / 2
        self.maybe_free_model_hooks()
        if output_type == "pt":
            result = video.cpu()
        else:
            result = (video * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        if not return_dict:
            return (result,)
        return ShotPipelineOutput(frames=result)

    def denoise(
        self,
        latents: torch.Tensor,
        start: torch.Tensor,
        keyframe: torch.Tensor,
        conditions: torch.Tensor,
        phase: torch.Tensor,
        coef: Sequence[float] = (1.0,),
        num_inference_steps: int = DEFAULT_STEPS,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> torch.Tensor:
        """The sampling loop: noise (B, F, 3, r, r) -> differences from the start frame times
        `residual_scale` (unclamped), guided by condition tokens stacked per branch
        (len(coef) * B rows)."""
        device = self._execution_device
        dtype = self.transformer.dtype
        n_branch, b = len(coef), len(latents)
        conditions = conditions.to(device, dtype)
        start = start.repeat(n_branch, 1, 1, 1).to(dtype)
        keyframe = keyframe.repeat(n_branch, 1, 1, 1).to(dtype)
        phase = phase.repeat(n_branch, 1, 1)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents.to(device, torch.float32) * self.scheduler.init_noise_sigma
        weights = torch.tensor(coef, device=device).view(n_branch, 1, 1, 1, 1, 1)
        timesteps = self.scheduler.timesteps
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                x = self.scheduler.scale_model_input(latents, t)
                x = x.repeat(n_branch, 1, 1, 1, 1).to(dtype)
                step = torch.as_tensor(t, device=device).expand(len(x))
                pred = self.transformer(x, start, keyframe, step, conditions, phase).float()
                pred = (pred.view(n_branch, b, *pred.shape[1:]) * weights).sum(0)
                latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    local = {"latents": latents}
                    kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    out = callback_on_step_end(self, i, t, kwargs) or {}
                    latents = out.get("latents", latents)
                progress.update()
        return latents


def plain_words(cameras, actions) -> tuple[list | None, list | None]:
    """Camera moves and actions given as enums -> their values ("pan-left", "walk-left")."""
    if cameras is not None:
        cameras = [getattr(c, "value", c) for c in cameras]
    if actions is not None:
        actions = [
            {k: getattr(a, "value", a) for k, a in clip.items()}
            if isinstance(clip, Mapping)
            else clip
            for clip in actions
        ]
    return cameras, actions


def make_pipeline(
    resolution: int = 64,
    patch_size: int = PRESETS["default"]["patch_size"],
    width: int = PRESETS["default"]["width"],
    layers: int = PRESETS["default"]["layers"],
    heads: int = PRESETS["default"]["heads"],
    mlp_ratio: float = 4.0,
    max_frames: int = 15,
    fps: int = 8,
    residual_scale: float = 2.0,
    identity_dim: int = 64,
    slots: int = 4,
) -> ShotPipeline:
    """A freshly initialised pipeline of the given size (the training script's starting point,
    and the tests' tiny models)."""
    from diffusers import DPMSolverMultistepScheduler

    return ShotPipeline(
        condition_encoder=ShotConditionEncoder(identity_dim, slots, width),
        transformer=ShotTransformer(
            resolution, patch_size, width, layers, heads, mlp_ratio, max_frames, fps, residual_scale
        ),
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER),
    )


def load_shot_pipeline(path: str | Path | None = None, device: str = "cpu") -> ShotPipeline:
    """The shot pipeline from a `save_pretrained` folder (float32, whatever is on disk); the
    shipped one by default."""
    from reelsmith.errors import InputError

    folder = Path(path) if path is not None else WEIGHTS
    if not (folder / "model_index.json").is_file():
        if path is None:
            raise InputError(
                f"there is no built-in shot model at {folder}; train one with: {TRAIN_COMMAND}"
            )
        raise InputError(f"{folder}: no shot pipeline there (model_index.json is missing)")
    return load_quietly(ShotPipeline, folder, device)


# -- the ShotRenderer ---------------------------------------------------------------------


class _NextClip(Exception):
    """Raised inside `extend_clip_by_clip` when a shot needs a clip not yet rendered."""

    def __init__(self, clip: ShotRequest, offset: int) -> None:
        super().__init__(clip.shot_id)
        self.clip, self.offset = clip, offset


class BuiltinShotRenderer:
    """The `ShotRenderer` over a `ShotPipeline`.

    Every shot is rendered at the model's size and frame rate over the request's time span,
    clip by clip (`shots.extend_clip_by_clip`, overlap 1: a clip's first frame is the last
    frame of the clip before), then retimed and resized back to the request's. Every clip gets
    the shot's keyframe, camera move, actions and identities again, and where its frames are in
    the shot. Clips of different shots are drawn together: all first clips, then all second
    clips, and so on, in batches of `batch_size` clips of the same length; each clip's noise
    comes from its own seed, so a shot is the same whatever is rendered with it. A request
    with a `start` frame is taken as a shot that begins there.

    Args:
        pipe: A loaded `ShotPipeline`.
        steps: Denoising steps per clip.
        guidance_scale: Classifier-free guidance over the motion (1.0: one branch).
        batch_size: The most clips per pipeline call.
        name: The backend's name in logs and errors.
    """

    def __init__(
        self,
        pipe: ShotPipeline,
        *,
        steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        batch_size: int = 4,
        name: str = "builtin",
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps {steps} must be at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be at least 1")
        self.pipe = pipe
        self.steps, self.guidance_scale, self.batch_size = steps, guidance_scale, batch_size
        self.name = name
        self.native_frames = pipe.native_frames
        self.fps = pipe.fps
        self.calls = 0  # pipeline calls so far
        pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str = "cpu", **kwargs
    ) -> BuiltinShotRenderer:
        """`load_shot_pipeline(path, device)` wrapped; kwargs go to the constructor."""
        return cls(load_shot_pipeline(path, device), **kwargs)

    def render(
        self, requests: Sequence[ShotRequest], progress: Progress | None = None
    ) -> list[np.ndarray]:
        """One shot per request, uint8 (request.frames, H, W, 3) at its keyframe's size."""
        # 1. check inputs
        requests = check_requests(requests)

        # 2. each shot at the model's size and frame rate
        shots = [at_model(request, (self.pipe.resolution,) * 2, self.fps) for request in requests]

        # 3. clip rounds: replay every unfinished shot's clip-by-clip extension with the clips
        # drawn so far until it asks for a new one; draw all those together; repeat
        clips: list[list[np.ndarray]] = [[] for _ in requests]
        frames: dict[int, np.ndarray] = {}
        while len(frames) < len(requests):
            wanted: dict[int, _NextClip] = {}
            for i, shot in enumerate(shots):
                if i in frames:
                    continue
                try:
                    frames[i] = extend_clip_by_clip(
                        self._replay(clips[i]), shot, self.native_frames, overlap=1
                    )
                except _NextClip as need:
                    wanted[i] = need
                    continue
                if progress is not None:
                    progress(len(frames), len(requests))
            for i, clip in zip(wanted, self._draw(shots, wanted), strict=True):
                clips[i].append(clip)

        # 4. back to each request's frame rate and size
        return [from_model(frames[i], request, shots[i]) for i, request in enumerate(requests)]

    @staticmethod
    def _replay(done: list[np.ndarray]) -> Callable[[ShotRequest], np.ndarray]:
        """A `render_one` that gives back the clips in `done`, in order, then raises
        `_NextClip` with the next clip and its start frame's index in the shot."""
        calls = iter(range(len(done) + 1))

        def render_one(clip: ShotRequest) -> np.ndarray:
            k = next(calls)
            if k < len(done):
                return done[k]
            raise _NextClip(clip, sum(len(c) - 1 for c in done))

        return render_one

    def _draw(self, shots: list[ShotRequest], wanted: dict[int, _NextClip]) -> list[np.ndarray]:
        """The clips in `wanted` (in its order), drawn in batches of one clip length."""
        out: dict[int, np.ndarray] = {}
        by_length: dict[int, list[int]] = {}
        for i, need in wanted.items():
            by_length.setdefault(need.clip.frames, []).append(i)
        for length, members in by_length.items():
            for k in range(0, len(members), self.batch_size):
                batch = members[k : k + self.batch_size]
                clips = [wanted[i].clip for i in batch]
                video = self.pipe(
                    np.stack([c.keyframe for c in clips]),
                    starts=np.stack([c.first_frame for c in clips]),
                    num_frames=length,
                    cameras=[c.camera for c in clips],
                    actions=[c.actions for c in clips],
                    identities=[identity_embeddings(c) for c in clips],
                    offsets=[wanted[i].offset for i in batch],
                    shot_frames=[shots[i].frames for i in batch],
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance_scale,
                    generator=[torch.Generator().manual_seed(int(c.seed)) for c in clips],
                ).frames
                self.calls += 1
                out.update(zip(batch, video, strict=True))
        return [out[i] for i in wanted]
