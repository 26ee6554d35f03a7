"""`MotionPipeline`: the built-in shot model (latent flow diffusion) as a diffusers pipeline
(`renderer/shots/builtin.py` has the `ShotRenderer` over it).

Components (models in `renderer/motion.py`):
- `flow_autoencoder` (`FlowAutoencoder`): motion latent -> frame, by warping the keyframe;
- `motion_transformer` (`MotionTransformer`): a DiT that denoises a clip's motion latents,
  v-prediction;
- `scheduler`: any diffusers scheduler (`DPMSolverMultistepScheduler` ships);
- `segmenter` (`CharacterSegmenter`, optional): the keyframe's characters, so that each moves
  as one rigid layer (`renderer/layered.py`) instead of bending with a smooth flow.

Every frame of a clip is the keyframe moved by its own latent, all latents relative to the
keyframe, so a shot of any length shows the keyframe's characters as they are in it. Guidance
runs over the motion condition (camera move and actions together): with e_u the prediction
without it and e_c with it, e_u + g (e_c - e_u); g = 1 computes e_c alone.

    pipe = load_motion_pipeline()
    out = pipe(keyframes, cameras=["pan-left"], actions=[{"mara": "wave"}],
               identities=[{"mara": emb}], generator=g)
    out.frames                                          # (B, T, 64, 64, 3) uint8
    out.motion_latents                                  # (B, T, 3, 16, 16)

A clip that continues a shot passes `context` (the last motion latent so far), `offsets` (the
index in the shot of the clip's first frame) and `shot_frames` (the whole shot's length):
storyworld lays an action out over the whole shot, and the model is told where each frame is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from reelsmith.renderer.identity.segmenter import CharacterSegmenter
from reelsmith.renderer.loading import load_quietly
from reelsmith.renderer.shots.layered import decode_layered
from reelsmith.renderer.shots.motion import (
    PRESETS,
    FlowAutoencoder,
    MotionConditions,
    MotionTransformer,
    phase_features,
)
from reelsmith.schema.conditioning import ACTIONS, CAMERAS, TRAITS

WEIGHTS = Path(__file__).parents[1] / "weights" / "motion"
TRAIN_COMMAND = "python -m reelsmith.world.train motion --identity renderer/weights/identity --out"
DEFAULT_STEPS = 10
# guidance over the motion condition: more moves more. Decoded flat, more also bent characters
# out of shape (frame-by-frame identity 0.758 / 0.745 / 0.732 at 1.0 / 1.25 / 1.5); decoded in
# layers it hardly costs identity. On 256 held-out shots (benchmarks/shots_quality.py --count 32
# --shots 8 --long 0 --guidance G), layered (before the background got its own flow, which
# takes dynamic degree from 0.94x to 0.89x at 2.0 and the distance from 134 to 128),
# 1.25 / 1.5 / 2.0 / 2.5 give dynamic degree 0.84x / 0.88x / 0.94x / 1.01x the truth's,
# frame-by-frame identity 0.954 / 0.951 / 0.950 / 0.945 and Fréchet clip distance 161 / 146 /
# 134 / 146
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
# the per-clip conditions `__call__` takes, in the order `check_inputs` reads them
CONDITIONS = ("cameras", "actions", "identities", "looks", "context", "offsets", "shot_frames")


@dataclass
class MotionPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor  # (B, T, H, W, 3) uint8, or (B, T, 3, H, W) in [0, 1]
    motion_latents: torch.Tensor  # (B, T, 3, g, g) float32 on the CPU


class MotionPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "motion_transformer->flow_autoencoder"
    _optional_components = ["segmenter"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        flow_autoencoder: FlowAutoencoder,
        motion_transformer: MotionTransformer,
        scheduler,
        segmenter: CharacterSegmenter | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            flow_autoencoder=flow_autoencoder,
            motion_transformer=motion_transformer,
            scheduler=scheduler,
            segmenter=segmenter,
        )

    # -- shapes ---------------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return self.flow_autoencoder.config.resolution

    @property
    def native_frames(self) -> int:
        return self.motion_transformer.config.frames

    @property
    def fps(self) -> float:
        return float(self.motion_transformer.config.fps)

    @property
    def slots(self) -> int:
        return self.motion_transformer.config.slots

    @property
    def identity_dim(self) -> int:
        return self.motion_transformer.config.identity_dim

    # -- inputs ---------------------------------------------------------------------------

    def _pixels(self, images: Images) -> torch.Tensor:
        """uint8 (B, r, r, 3) -> (B, 3, r, r) in [-1, 1] on the flow autoencoder's device."""
        x = torch.as_tensor(np.stack(images) if isinstance(images, list | tuple) else images)
        r = self.resolution
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (r, r, 3):
            raise ValueError(
                f"keyframes must be uint8 (B, {r}, {r}, 3); got {x.dtype} {tuple(x.shape)}"
            )
        # contiguous: the convolutions' numbers must not depend on how the caller laid out x
        x = x.to(self.flow_autoencoder.device).permute(0, 3, 1, 2).contiguous()
        return x.float() / 127.5 - 1.0

    def check_inputs(self, b: int, given: Mapping, steps, generator) -> None:
        """Raise ValueError naming the first bad value; `given` holds the per-clip conditions
        (`__call__`'s cameras, actions, identities, looks, context, offsets, shot_frames)."""
        cameras, actions, identities, looks, context, offsets, shot_frames = (
            given.get(name) for name in CONDITIONS
        )
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {steps!r}")
        if isinstance(generator, list) and len(generator) != b:
            raise ValueError(f"{len(generator)} generators given for {b} keyframes")
        for name, value in (
            ("cameras", cameras),
            ("actions", actions),
            ("identities", identities),
            ("looks", looks),
            ("offsets", offsets),
            ("shot_frames", shot_frames),
        ):
            if value is not None and len(value) != b:
                raise ValueError(f"{len(value)} {name} given for {b} keyframes")
        for camera in cameras or ():
            if camera is not None and str(getattr(camera, "value", camera)) not in CAMERAS:
                raise ValueError(f"unknown camera move {camera!r} (one of {list(CAMERAS)})")
        for i, given in enumerate(actions or ()):
            for who, action in given.items():
                if str(getattr(action, "value", action)) not in ACTIONS:
                    raise ValueError(
                        f"keyframe {i}: character {who!r} has unknown action {action!r} "
                        f"(one of {list(ACTIONS)})"
                    )
        for i, given in enumerate(identities or ()):
            for who, emb in given.items():
                shape = tuple(torch.as_tensor(emb).shape)
                if shape != (self.identity_dim,):
                    raise ValueError(
                        f"keyframe {i}: identity of {who!r} has shape {shape}, "
                        f"expected ({self.identity_dim},)"
                    )
        for i, given in enumerate(looks or ()):
            for who, traits in given.items():
                for trait, value in traits.items():
                    if trait not in TRAITS or value not in TRAITS[trait]:
                        raise ValueError(
                            f"keyframe {i}: {who!r} has unknown look {trait}={value!r}"
                        )
        for i in range(b):
            n = len(_characters(i, actions, identities, looks))
            if n > self.slots:
                raise ValueError(f"keyframe {i}: {n} characters, this model takes {self.slots}")
        if context is not None:
            if len(context) != b:
                raise ValueError(f"{len(context)} contexts given for {b} keyframes")
            shape = self.motion_transformer.latent_shape[1:]
            for i, c in enumerate(context):
                if c is not None and tuple(torch.as_tensor(c).shape) != shape:
                    got = tuple(torch.as_tensor(c).shape)
                    raise ValueError(f"context {i} has shape {got}, expected {shape}")
        for i, value in enumerate(offsets or ()):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"offsets[{i}] {value!r} must be an integer >= 0")
        for i, value in enumerate(shot_frames or ()):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"shot_frames[{i}] {value!r} must be an integer >= 1")

    def encode_conditions(
        self, pixels: torch.Tensor, given: Mapping, guidance_scale: float
    ) -> tuple[MotionConditions, list[float]]:
        """The conditions of every branch needed, stacked, and their coefficients: the
        conditional branch first, then (when guided) the one without camera and actions."""
        cameras, actions, identities, looks, context, offsets, shot_frames = (
            given.get(name) for name in CONDITIONS
        )
        model = self.motion_transformer
        device, b, s = pixels.device, len(pixels), self.slots
        camera = torch.zeros(b, dtype=torch.long)
        ident = torch.zeros(b, s, self.identity_dim)
        have = torch.zeros(b, s, dtype=torch.bool)
        spec = torch.zeros(b, s, 2 + len(TRAITS), dtype=torch.long)
        ctx = torch.zeros(b, *model.latent_shape[1:])
        has_ctx = torch.zeros(b, dtype=torch.bool)
        for i in range(b):
            if cameras is not None and cameras[i] is not None:
                camera[i] = CAMERAS.index(str(getattr(cameras[i], "value", cameras[i]))) + 1
            for k, who in enumerate(_characters(i, actions, identities, looks)):
                spec[i, k, 0] = 1
                traits = (looks[i] if looks else {}).get(who, {})
                for t, (trait, values) in enumerate(TRAITS.items()):
                    if trait in traits:
                        spec[i, k, 1 + t] = values.index(traits[trait]) + 1
                action = (actions[i] if actions else {}).get(who)
                if action is not None:
                    spec[i, k, -1] = ACTIONS.index(str(getattr(action, "value", action))) + 1
                emb = (identities[i] if identities else {}).get(who)
                if emb is not None:
                    ident[i, k] = torch.as_tensor(emb, dtype=torch.float32)
                    have[i, k] = True
            if context is not None and context[i] is not None:
                ctx[i] = torch.as_tensor(context[i], dtype=torch.float32)
                has_ctx[i] = True
        offsets = torch.tensor(offsets if offsets is not None else [0] * b)
        lengths = torch.tensor(shot_frames if shot_frames is not None else [self.native_frames] * b)
        phase = phase_features(offsets, lengths, self.native_frames)

        def encode(camera, spec) -> MotionConditions:
            return model.conditions(
                pixels,
                camera.to(device),
                ident.to(device),
                have.to(device),
                spec.to(device),
                ctx.to(device),
                has_ctx.to(device),
                phase.to(device),
            )

        if guidance_scale == 1.0:
            return encode(camera, spec), [1.0]
        plain = spec.clone()
        plain[..., -1] = 0  # actions dropped; camera dropped below
        both = MotionConditions.cat([encode(camera, spec), encode(torch.zeros_like(camera), plain)])
        return both, [guidance_scale, 1.0 - guidance_scale]

    # -- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        keyframes: Images,
        cameras: Sequence[str | None] | None = None,
        actions: Sequence[Mapping[str, str]] | None = None,
        identities: Sequence[Mapping[str, torch.Tensor | np.ndarray]] | None = None,
        looks: Sequence[Mapping[str, Mapping[str, str]]] | None = None,
        context: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        offsets: Sequence[int] | None = None,
        shot_frames: Sequence[int] | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        layered: bool = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> MotionPipelineOutput | tuple:
        """Draw one clip of `native_frames` frames per keyframe.

        Args:
            keyframes: uint8 (B, r, r, 3) (or a list of (r, r, 3)): each clip's keyframe.
            cameras: Per clip a camera move ("pan-left", a `CameraMove`) or None (unknown).
            actions: Per clip, character id -> action ("wave", an `Action`).
            identities: Per clip, character id -> identity embedding (D,)
                (`reelsmith-identity-v1`).
            looks: Per clip, character id -> known traits ({"colour": "red", ...}).
                A clip's characters are those named in actions, identities or looks, at
                most `slots`.
            context: Per clip the motion latent (3, g, g) of the frame before it (the last of
                the previous clip's `motion_latents`), or None for a shot's first clip.
            offsets: Per clip the index in its shot of its first frame (default 0).
            shot_frames: Per clip the frames in its whole shot (default `native_frames`).
            num_inference_steps: Denoising steps.
            guidance_scale: Guidance over the motion condition (1.0: one branch).
            layered: Decode with each character moved as one rigid layer
                (`renderer/layered.py`) where the pipeline has a segmenter; False warps the
                keyframe as one image.
            generator: A torch.Generator (or one per clip) for determinism.
            latents: Initial noise (B, T, 3, g, g); drawn from `generator` when None.
            output_type: "np" (uint8 (B, T, r, r, 3)) or "pt" (float (B, T, 3, r, r) in [0, 1]).
            callback_on_step_end: Called as fn(pipe, step, timestep, kwargs) after each step;
                it may return {"latents": ...} to replace the sample.
        """
        # 1. check inputs
        pixels = self._pixels(keyframes)
        b = len(pixels)
        if b == 0:
            raise ValueError("no clips to draw: keyframes is empty")
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type {output_type!r} is not one of np, pt")
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback tensor input {name!r} is not one of ['latents']")
        given = {
            "cameras": cameras,
            "actions": actions,
            "identities": identities,
            "looks": looks,
            "context": list(context) if torch.is_tensor(context) else context,
            "offsets": offsets,
            "shot_frames": shot_frames,
        }
        self.check_inputs(b, given, num_inference_steps, generator)

        # 2. encode the conditions
        conditions, coef = self.encode_conditions(pixels, given, float(guidance_scale))

        # 3. initial noise
        shape = (b, *self.motion_transformer.latent_shape)
        device = pixels.device
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents of shape {tuple(latents.shape)} should be {shape}")

        # 4. denoise
        latents = self.denoise(
            latents,
            conditions,
            coef,
            num_inference_steps,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )

        # 5. decode: each frame is the keyframe moved by its latent
        motion = self.motion_transformer.unscale_latents(latents)
        frames = self.decode_latents(pixels, motion, layered)
        self.maybe_free_model_hooks()
        if output_type == "np":
            frames = (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        else:
            frames = frames.cpu()
        if not return_dict:
            return (frames, motion.cpu())
        return MotionPipelineOutput(frames=frames, motion_latents=motion.float().cpu())

    def denoise(
        self,
        latents: torch.Tensor,
        conditions: MotionConditions,
        coef: Sequence[float] = (1.0,),
        num_inference_steps: int = DEFAULT_STEPS,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> torch.Tensor:
        """The sampling loop: noise (B, T, 3, g, g) -> scaled motion latents, guided by
        conditions stacked per branch (len(coef) * B rows) with coefficients `coef`."""
        model = self.motion_transformer
        device = latents.device
        n_branch, b = len(coef), len(latents)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents.to(torch.float32) * self.scheduler.init_noise_sigma
        weights = torch.tensor(coef, device=device).view(n_branch, 1, 1, 1, 1, 1)
        timesteps = self.scheduler.timesteps
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                x = self.scheduler.scale_model_input(latents, t).repeat(n_branch, 1, 1, 1, 1)
                step = torch.as_tensor(t, device=device).expand(len(x))
                pred = model(x, step, conditions).float()
                pred = (pred.view(n_branch, b, *pred.shape[1:]) * weights).sum(0)
                latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    local = {"latents": latents}
                    kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    out = callback_on_step_end(self, i, t, kwargs) or {}
                    latents = out.get("latents", latents)
                progress.update()
        return latents

    def decode_latents(
        self, pixels: torch.Tensor, motion: torch.Tensor, layered: bool = True
    ) -> torch.Tensor:
        """Keyframes (B, 3, r, r) in [-1, 1] + motion (B, T, 3, g, g) -> frames (B, T, 3, r, r)
        in [0, 1]; layered (where there is a segmenter): each character moved rigidly."""
        b, t = motion.shape[:2]
        flow = self.flow_autoencoder
        keyframes = pixels[:, None].expand(b, t, *pixels.shape[1:]).flatten(0, 1).to(flow.dtype)
        latents = motion.flatten(0, 1).to(flow.dtype)
        if layered and self.segmenter is not None:
            labels = self.segmenter.segment(pixels)  # (B, r, r)
            labels = labels[:, None].expand(b, t, *labels.shape[1:]).flatten(0, 1)
            frames = decode_layered(flow, keyframes, latents, labels)
        else:
            frames = flow.decode(keyframes, latents)
        return ((frames.float().clamp(-1, 1) + 1) / 2).view(b, t, *frames.shape[1:])


def _characters(i: int, actions, identities, looks) -> list[str]:
    """Clip i's characters in order of first mention: actions, then identities, then looks."""
    seen: dict[str, None] = {}
    for given in (actions, identities, looks):
        if given is not None:
            seen.update(dict.fromkeys(given[i]))
    return list(seen)


def make_pipeline(flow: Mapping | None = None, motion: Mapping | None = None) -> MotionPipeline:
    """A freshly initialised pipeline (the training script's start, the tests' tiny models);
    `flow` and `motion` are `FlowAutoencoder` and `MotionTransformer` keyword arguments."""
    from diffusers import DPMSolverMultistepScheduler

    flow = FlowAutoencoder(**(PRESETS["flow"] if flow is None else flow))
    motion = MotionTransformer(**(PRESETS["motion"] if motion is None else motion))
    for key in ("resolution", "latent_size"):
        if flow.config[key] != motion.config[key]:
            raise ValueError(
                f"the flow autoencoder's {key} is {flow.config[key]}, the motion "
                f"transformer's {motion.config[key]}"
            )
    return MotionPipeline(
        flow_autoencoder=flow,
        motion_transformer=motion,
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER),
    )


def load_motion_pipeline(path: str | Path | None = None, device: str = "cpu") -> MotionPipeline:
    """The motion pipeline from a `save_pretrained` folder (float16 on disk, float32 loaded);
    the shipped one by default."""
    from reelsmith.errors import InputError

    folder = Path(path) if path is not None else WEIGHTS
    if not (folder / "model_index.json").is_file():
        raise InputError(
            f"{folder}: no motion pipeline there (model_index.json is missing); "
            f"train one with: {TRAIN_COMMAND} {folder}"
        )
    return load_quietly(MotionPipeline, folder, device)
