"""`PretrainedShotRenderer`: shots from a diffusers image-to-video pipeline.

Four families are driven, each by a small adapter that maps a `ShotRequest` to its pipeline's
arguments (`renderer.shots.pretrained_families`; the family is found from the pipeline's class,
or named): Stable Video Diffusion, CogVideoX, Wan and LTX-Video, each with its own clip
lengths, frame rate, size multiple and text input. A clip is rendered at the smallest valid
length that holds it and cut to length.

A shot is rendered at the model's own frame rate `fps` (passed to SVD as `fps`, to LTX as
`frame_rate`), over the same time span as the request, then retimed to the request's frame count
and fps by nearest frame (`shots.retime`: frames are dropped or repeated, never blended). Shots
longer than `native_frames` go clip by clip (`shots.extend_clip_by_clip`). Frames are rendered
at the model's size (the keyframe's aspect ratio at the family's usual area, each side a
multiple of the family's, or `size`; CogVideoX-I2V's learned position embeddings fix its size)
and resized back to the keyframe's size.

Prompts: `shots.motion_prompt` (the shot's action, then the camera move, in words). SVD has no
text input: the amount of motion (`shots.motion_level`) sets its `motion_bucket_id` instead, and
the camera move is not rendered. None of these pipelines takes identity embeddings: identity
comes through the keyframe (drawn with the characters' references), the requests' identities
are not used.

Each clip is one pipeline call with its own `torch.Generator` on the CPU seeded from the clip's
seed, so a shot's frames depend only on its request.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline

from reelsmith.errors import InputError
from reelsmith.renderer.keyframes.pretrained import to_uint8
from reelsmith.renderer.loading import dtype_argument, load_failure, local_model, own_arguments
from reelsmith.renderer.shots.pretrained_families import FAMILIES, family_of
from reelsmith.renderer.shots.protocol import (
    Progress,
    ShotRequest,
    at_model,
    check_requests,
    extend_clip_by_clip,
    from_model,
)

logger = logging.getLogger(__name__)

NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


class PretrainedShotRenderer:
    """The `ShotRenderer` over a diffusers image-to-video pipeline; see the module docstring.

    Args:
        pipe: A loaded StableVideoDiffusion, CogVideoX, Wan or LTX image-to-video pipeline.
        family: The family's name ("svd", "cogvideox", "wan", "ltx"); found from the pipe's
            class when None.
        steps: Denoising steps per clip (the family's default when None).
        guidance_scale: Classifier-free guidance (SVD: the last frame's, the first gets 1).
        negative_prompt: The negative prompt of every clip (SVD has none).
        size: (height, width) to render at, multiples of the family's; by default the
            keyframe's aspect ratio at the family's usual area.
        fps: The frame rate the model renders at (the family's default when None).
        native_frames: The most frames one clip has (the family's default when None).
        overlap: Frames dropped from the start of each continuing clip (see
            `extend_clip_by_clip`).
        call_kwargs: Passed to every pipeline call as they are, over this class's own: e.g.
            {"decode_chunk_size": 4} (SVD, less memory) or {"use_dynamic_cfg": True} (CogVideoX).
        name: The backend's name in logs and errors.
    """

    def __init__(
        self,
        pipe,
        *,
        family: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str = NEGATIVE_PROMPT,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        native_frames: int | None = None,
        overlap: int = 1,
        call_kwargs: Mapping[str, object] | None = None,
        name: str | None = None,
    ) -> None:
        self.family = family_of(pipe, family)
        self.family.check(pipe)
        self.pipe = pipe
        self.steps = self.family.steps if steps is None else steps
        self.guidance_scale = (
            self.family.guidance_scale if guidance_scale is None else guidance_scale
        )
        self.negative_prompt = negative_prompt
        self.fps = self.family.fps(pipe) if fps is None else float(fps)
        self.native_frames = (
            self.family.native_frames(pipe) if native_frames is None else native_frames
        )
        self.overlap = overlap
        self.call_kwargs = dict(call_kwargs or {})
        self.name = name or f"pretrained-{self.family.name}"
        self.calls = 0  # pipeline calls so far: one per clip
        if self.steps < 1:
            raise ValueError(f"steps {self.steps} must be at least 1")
        if not self.fps > 0:
            raise ValueError(f"fps {self.fps} must be positive")
        valid = self.family.clip_frames(pipe, self.native_frames)
        if self.native_frames < 2 or valid != self.native_frames:
            step = self.family.frame_step(pipe)
            raise ValueError(
                f"native_frames {self.native_frames} is not a clip length of {self.name}: "
                f"{step}k+1 frames, at least 2"
            )
        if not 1 <= overlap < self.native_frames:
            raise ValueError(
                f"overlap {overlap} must be in [1, native_frames {self.native_frames})"
            )
        self.size = None if size is None else self._check_size(size)
        pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        family: str | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str = "cpu",
        cpu_offload: bool = False,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        trust_remote_code: bool = False,
        **kwargs,
    ) -> PretrainedShotRenderer:
        """Load an image-to-video pipeline (safetensors only) and wrap it.

        Args:
            model: A Hub id or a `save_pretrained` folder of an image-to-video pipeline.
            family: Load it as this family's pipeline; found from the folder when None.
            torch_dtype: The weights' dtype (the checkpoint's when None).
            device: Where to run; with `cpu_offload`, the accelerator the models visit.
            cpu_offload: Keep the models on the CPU, each moved to `device` while it runs.
            vae_tiling: Decode (and encode) in spatial tiles where the VAE can.
            vae_slicing: Decode a batch one video at a time where the VAE can.
            trust_remote_code: Allow a custom pipeline's code from the Hub.
            **kwargs: Passed on to `from_pretrained` (e.g. variant) and then to this class's
                constructor (steps, size, native_frames, ...).

        Raises:
            InputError: The pipeline cannot be loaded or is not of a known family.
        """
        own = own_arguments(cls, kwargs)
        if family is not None and family not in FAMILIES:
            raise InputError(f"unknown image-to-video family {family!r} (one of {list(FAMILIES)})")
        model = local_model(model, "an image-to-video pipeline")
        loader = DiffusionPipeline if family is None else FAMILIES[family].pipeline_class
        dtype = dtype_argument(torch_dtype)
        with load_failure(f"{model}: cannot load an image-to-video pipeline"):
            pipe = loader.from_pretrained(
                model, use_safetensors=True, trust_remote_code=trust_remote_code, **dtype, **kwargs
            )
        try:
            renderer = cls(pipe, family=family, **own)
        except InputError as e:
            raise InputError(f"{model}: {e}") from e
        save_memory(
            pipe,
            device=device,
            cpu_offload=cpu_offload,
            vae_tiling=vae_tiling,
            vae_slicing=vae_slicing,
        )
        return renderer

    # -- sizes ----------------------------------------------------------------------------

    def _check_size(self, size: tuple[int, int]) -> tuple[int, int]:
        height, width = size
        multiple = self.family.size_multiple(self.pipe)
        if min(height, width) < multiple or height % multiple or width % multiple:
            raise ValueError(f"size {size} is not a multiple of {multiple} on each side")
        fixed = self.family.fixed_size(self.pipe)
        if fixed is not None and (height, width) != fixed:
            raise ValueError(f"size {size}: {self.name} renders at {fixed} only")
        return height, width

    def render_size(self, keyframe_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) the model renders a keyframe of `keyframe_size` at."""
        fixed = self.size or self.family.fixed_size(self.pipe)
        if fixed is not None:
            return fixed
        height, width = keyframe_size
        multiple = self.family.size_multiple(self.pipe)
        scale = math.sqrt(self.family.area(self.pipe) / (height * width))
        return (
            max(1, round(height * scale / multiple)) * multiple,
            max(1, round(width * scale / multiple)) * multiple,
        )

    # -- rendering ------------------------------------------------------------------------

    def render(
        self, requests: Sequence[ShotRequest], progress: Progress | None = None
    ) -> list[np.ndarray]:
        """One clip per request, uint8 (frames, H, W, 3) at its keyframe's size."""
        # 1. check inputs
        requests = check_requests(requests)

        # 2. render each shot on its own
        shots = []
        for i, request in enumerate(requests):
            shots.append(self._render_shot(request))
            if progress is not None:
                progress(i + 1, len(requests))
        return shots

    def _render_shot(self, request: ShotRequest) -> np.ndarray:
        """One shot: clip by clip at the model's size and fps, then back to the request's."""
        at = at_model(request, self.render_size(request.keyframe.shape[:2]), self.fps)
        frames = extend_clip_by_clip(self._render_clip, at, self.native_frames, self.overlap)
        return from_model(frames, request, at)

    def _render_clip(self, clip: ShotRequest) -> np.ndarray:
        """One pipeline call: uint8 (clip.frames, h, w, 3) at the model's size."""
        height, width = clip.keyframe.shape[:2]
        num_frames = self.family.clip_frames(self.pipe, clip.frames)
        arguments = {
            "image": PIL.Image.fromarray(clip.first_frame),
            "height": height,
            "width": width,
            "num_frames": num_frames,
            "num_inference_steps": self.steps,
            "generator": torch.Generator(device="cpu").manual_seed(int(clip.seed)),
            "output_type": "np",
            **self.family.arguments(self, clip),
            **self.call_kwargs,
        }
        video = self.pipe(**arguments).frames[0]  # (F, h, w, 3) in [0, 1]
        self.calls += 1
        if len(video) < clip.frames:
            raise RuntimeError(
                f"shot {clip.shot_id!r}: {self.name} gave {len(video)} frames for "
                f"num_frames={num_frames}, fewer than the {clip.frames} needed"
            )
        return to_uint8(np.asarray(video[: clip.frames]))


def save_memory(
    pipe,
    *,
    device: str = "cpu",
    cpu_offload: bool = False,
    vae_tiling: bool = False,
    vae_slicing: bool = False,
) -> None:
    """Move the pipe to `device`, or offload it to the CPU; turn on VAE tiling / slicing.

    A VAE without tiling or slicing (SVD's; use its `decode_chunk_size` instead) is left as it
    is, with a warning.
    """
    for wanted, kind in ((vae_tiling, "tiling"), (vae_slicing, "slicing")):
        if not wanted:
            continue
        if hasattr(pipe.vae, f"use_{kind}"):
            getattr(pipe.vae, f"enable_{kind}")()
        else:
            logger.warning("%s has no VAE %s; it decodes as usual", type(pipe.vae).__name__, kind)
    if cpu_offload:
        if device == "cpu":
            raise ValueError("cpu_offload moves models to an accelerator: give device, e.g. 'cuda'")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
