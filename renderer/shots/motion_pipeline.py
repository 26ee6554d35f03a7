"""`MotionPipeline`: the built-in shot model (latent flow diffusion) as a diffusers pipeline
(`renderer/shots/builtin.py` has the `ShotRenderer` over it).

Components (models in `renderer/shots/flow_autoencoder.py` and `motion_transformer.py`):
- `flow_autoencoder` (`FlowAutoencoder`): motion latent -> frame, by warping the keyframe;
- `motion_transformer` (`MotionTransformer`): a DiT that denoises a clip's motion latents,
  v-prediction;
- `scheduler`: any diffusers scheduler (`DPMSolverMultistepScheduler` ships);
- `segmenter` (`CharacterSegmenter`, optional): the keyframe's characters, so that each moves
  as one rigid layer (`renderer/shots/layered.py`) instead of bending with a smooth flow.

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
from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.utils import BaseOutput

from reelsmith.renderer import shipped
from reelsmith.renderer.identity.segmenter import CharacterSegmenter
from reelsmith.renderer.loading import check_model_folder, load_quietly
from reelsmith.renderer.pipeline_steps import (
    SCHEDULER,
    StepCallback,
    callback_inputs,
    check_sampling,
    denoise_guided,
    initial_noise,
)
from reelsmith.renderer.shots.clip_conditions import ClipConditions
from reelsmith.renderer.shots.flow_autoencoder import FlowAutoencoder
from reelsmith.renderer.shots.layered import decode_layered
from reelsmith.renderer.shots.motion_transformer import MotionConditions, MotionTransformer

WEIGHTS = shipped.MOTION
TRAIN_COMMAND = "python -m reelsmith.training motion --identity renderer/weights/identity --out"
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
PRESETS = {
    # the shipped sizes (the `motion` training preset); tiny: the tests'. Flow 344,502 weights
    # (0.69 MB in float16); motion 983,964 (1.97 MB). Patches of 4 (16 tokens a frame, 128 a
    # clip) with full attention: 4.4 ms a clip-forward on one CPU core, 0.21 s a training
    # step of 16; patches of 2 cost 4-5x that, factorised attention 1.4x at patches of 4.
    "flow": {"resolution": 64, "latent_size": 16, "width": 16},
    "motion": {"resolution": 64, "latent_size": 16, "patch_size": 4, "width": 96, "layers": 4},
    "flow-tiny": {"resolution": 16, "latent_size": 4, "width": 8},
    "motion-tiny": {"resolution": 16, "latent_size": 4, "patch_size": 2, "width": 16,
                    "layers": 1, "heads": 2, "frames": 4, "identity_dim": 8, "slots": 2},
}  # fmt: skip

Images = np.ndarray | torch.Tensor | Sequence[np.ndarray]


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

    def check_inputs(self, b: int, given: ClipConditions, steps, generator) -> None:
        """Raise ValueError naming the first bad value of the sampling arguments or of the
        per-clip conditions."""
        check_sampling(steps, generator, b)
        given.check(b, self.slots, self.identity_dim, self.motion_transformer.latent_shape[1:])

    def encode_conditions(
        self, pixels: torch.Tensor, given: ClipConditions, guidance_scale: float
    ) -> tuple[MotionConditions, list[float]]:
        """The conditions of every branch needed, stacked, and their coefficients: the
        conditional branch first, then (when guided) the one without camera and actions."""
        model = self.motion_transformer
        context_shape = model.latent_shape[1:]
        tensors = given.tensors(
            len(pixels), self.slots, self.identity_dim, context_shape, self.native_frames
        )

        def encode(camera: torch.Tensor, slot_spec: torch.Tensor) -> MotionConditions:
            branch = {**tensors, "camera": camera, "slot_spec": slot_spec}
            return model.conditions(pixels, **{k: v.to(pixels.device) for k, v in branch.items()})

        camera, spec = tensors["camera"], tensors["slot_spec"]
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
        callback_on_step_end: StepCallback | None = None,
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
                (`renderer/shots/layered.py`) where the pipeline has a segmenter; False warps the
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
        tensor_inputs = callback_inputs(
            self, callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        context = list(context) if torch.is_tensor(context) else context
        given = ClipConditions(cameras, actions, identities, looks, context, offsets, shot_frames)
        self.check_inputs(b, given, num_inference_steps, generator)

        # 2. encode the conditions
        conditions, coef = self.encode_conditions(pixels, given, float(guidance_scale))

        # 3. initial noise
        shape = (b, *self.motion_transformer.latent_shape)
        latents = initial_noise(shape, latents, generator, pixels.device)

        # 4. denoise
        latents = self.denoise(
            latents, conditions, coef, num_inference_steps, callback_on_step_end, tensor_inputs
        )

        # 5. decode: each frame is the keyframe moved by its latent
        return self.decode_output(pixels, latents, layered, output_type, return_dict)

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
        return denoise_guided(
            self,
            latents,
            lambda x, step: self.motion_transformer(x, step, conditions).float(),
            coef,
            num_inference_steps,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            latents.device,
        )

    def decode_output(
        self,
        pixels: torch.Tensor,
        latents: torch.Tensor,
        layered: bool,
        output_type: str,
        return_dict: bool,
    ) -> MotionPipelineOutput | tuple:
        """`__call__`'s result from the denoised (scaled) latents (B, T, 3, g, g): the frames as
        `output_type` asks, and the motion latents unscaled, float32 on the CPU."""
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


def make_pipeline(flow: Mapping | None = None, motion: Mapping | None = None) -> MotionPipeline:
    """A freshly initialised pipeline (the training script's start, the tests' tiny models);
    `flow` and `motion` are `FlowAutoencoder` and `MotionTransformer` keyword arguments."""
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
    folder = Path(path) if path is not None else WEIGHTS
    hint = f"; train one with: {TRAIN_COMMAND} {folder}"
    check_model_folder(folder, "motion pipeline", "model_index.json", hint)
    return load_quietly(MotionPipeline, folder, device)
