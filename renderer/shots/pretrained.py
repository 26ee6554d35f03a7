"""`PretrainedShotRenderer`: shots from a diffusers image-to-video pipeline.

Four families are driven, each by a small adapter that maps a `ShotRequest` to its pipeline's
arguments (the family is found from the pipeline's class, or named):

| family | pipeline | clip length | native | fps | size multiple | text |
| --- | --- | --- | --- | --- | --- | --- |
| svd | StableVideoDiffusionPipeline | any | unet num_frames (14/25) | 7 | 64 | none |
| cogvideox | CogVideoXImageToVideoPipeline | 8k+1 | sample_frames (49) | 8 (1.5: 16) | 16 | T5 |
| wan | WanImageToVideoPipeline | 4k+1 | 81 | 16 | 16 | T5 |
| ltx | LTXImageToVideoPipeline | 8k+1 | 161 | 25 | 32 | T5 |

Clip lengths: CogVideoX, Wan and LTX encode 1 + t*(T-1) frames into T latent frames (t = the
VAE's temporal compression: 4, 4, 8); a count off that grid is rounded down by the pipeline (Wan,
LTX) or comes back with extra frames (CogVideoX decodes an even number of latent frames T to 4T
frames, an odd one to 4(T-1)+1, hence 8k+1). A clip is rendered at the smallest valid length
that holds it and cut to length. SVD takes any count.

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

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import (
    CogVideoXImageToVideoPipeline,
    DiffusionPipeline,
    LTXImageToVideoPipeline,
    StableVideoDiffusionPipeline,
    WanImageToVideoPipeline,
)
from diffusers.utils import is_ftfy_available

from reelsmith.errors import InputError
from reelsmith.renderer.keyframes.pretrained import LOAD_FAILURES, to_uint8
from reelsmith.renderer.shots.protocol import (
    Progress,
    ShotRequest,
    at_model,
    check_requests,
    extend_clip_by_clip,
    from_model,
    motion_level,
    motion_prompt,
)

logger = logging.getLogger(__name__)

NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


class Family:
    """How one family of image-to-video pipelines is driven; subclasses fill it in."""

    name: str
    pipeline_class: type
    steps: int  # the pipeline's default number of denoising steps
    guidance_scale: float  # the pipeline's default guidance

    def check(self, pipe) -> None:
        """Raise InputError when this pipe cannot run here."""

    def frame_step(self, pipe) -> int:
        """Clips are frame_step * k + 1 frames long."""
        return 1

    def clip_frames(self, pipe, frames: int) -> int:
        """The smallest valid clip length that holds `frames` frames."""
        step = self.frame_step(pipe)
        return 1 + step * math.ceil((frames - 1) / step)

    def native_frames(self, pipe) -> int:
        raise NotImplementedError

    def fps(self, pipe) -> float:
        raise NotImplementedError

    def size_multiple(self, pipe) -> int:
        raise NotImplementedError

    def area(self, pipe) -> int:
        """Pixels of the size the family renders best at."""
        raise NotImplementedError

    def fixed_size(self, pipe) -> tuple[int, int] | None:
        """(height, width) when the model renders one size only."""
        return None

    def arguments(self, renderer: PretrainedShotRenderer, clip: ShotRequest) -> dict:
        """The family's own pipeline arguments for one clip (text, guidance, frame rate)."""
        raise NotImplementedError


class StableVideoDiffusion(Family):
    name = "svd"
    pipeline_class = StableVideoDiffusionPipeline
    steps = 25
    guidance_scale = 3.0  # max_guidance_scale: guidance grows from 1 at the first frame
    motion_buckets = (40, 200)  # motion_bucket_id of a still and of the liveliest shot

    def native_frames(self, pipe) -> int:
        return pipe.unet.config.num_frames

    def fps(self, pipe) -> float:
        return 7.0

    def size_multiple(self, pipe) -> int:
        # the UNet halves the latent once per down block after the first
        return max(8, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))

    def area(self, pipe) -> int:
        return (pipe.unet.config.sample_size * pipe.vae_scale_factor) ** 2

    def arguments(self, renderer, clip) -> dict:
        low, high = self.motion_buckets
        return {
            "fps": round(renderer.fps),
            "motion_bucket_id": round(low + motion_level(clip) * (high - low)),
            "min_guidance_scale": 1.0,
            "max_guidance_scale": renderer.guidance_scale,
        }


class CogVideoX(Family):
    name = "cogvideox"
    pipeline_class = CogVideoXImageToVideoPipeline
    steps = 50
    guidance_scale = 6.0

    def frame_step(self, pipe) -> int:
        return 2 * pipe.vae_scale_factor_temporal  # an odd number of latent frames

    def native_frames(self, pipe) -> int:
        return pipe.transformer.config.sample_frames

    def fps(self, pipe) -> float:
        return 8.0 if pipe.transformer.config.patch_size_t is None else 16.0  # 1.0 / 1.5

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size

    def area(self, pipe) -> int:
        config, factor = pipe.transformer.config, pipe.vae_scale_factor_spatial
        return config.sample_height * factor * config.sample_width * factor

    def fixed_size(self, pipe) -> tuple[int, int] | None:
        config, factor = pipe.transformer.config, pipe.vae_scale_factor_spatial
        if not config.use_learned_positional_embeddings:
            return None
        return config.sample_height * factor, config.sample_width * factor

    def arguments(self, renderer, clip) -> dict:
        return {
            "prompt": motion_prompt(clip),
            "negative_prompt": renderer.negative_prompt,
            "guidance_scale": renderer.guidance_scale,
            "max_sequence_length": renderer.pipe.transformer.config.max_text_seq_length,
        }


class Wan(Family):
    name = "wan"
    pipeline_class = WanImageToVideoPipeline
    steps = 50
    guidance_scale = 5.0

    def check(self, pipe) -> None:
        if not is_ftfy_available():  # the pipeline cleans every prompt with ftfy
            raise InputError("Wan pipelines need the ftfy package: pip install ftfy")

    def frame_step(self, pipe) -> int:
        return pipe.vae_scale_factor_temporal

    def native_frames(self, pipe) -> int:
        return 81

    def fps(self, pipe) -> float:
        return 16.0

    def size_multiple(self, pipe) -> int:
        transformer = pipe.transformer or pipe.transformer_2
        return pipe.vae_scale_factor_spatial * transformer.config.patch_size[1]

    def area(self, pipe) -> int:
        return 480 * 832

    def arguments(self, renderer, clip) -> dict:
        return {
            "prompt": motion_prompt(clip),
            "negative_prompt": renderer.negative_prompt,
            "guidance_scale": renderer.guidance_scale,
        }


class LTXVideo(Family):
    name = "ltx"
    pipeline_class = LTXImageToVideoPipeline
    steps = 50
    guidance_scale = 3.0

    def frame_step(self, pipe) -> int:
        return pipe.vae_temporal_compression_ratio

    def native_frames(self, pipe) -> int:
        return 161

    def fps(self, pipe) -> float:
        return 25.0

    def size_multiple(self, pipe) -> int:
        # the pipeline's check_inputs asks for multiples of 32 whatever the VAE
        return max(32, pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size)

    def area(self, pipe) -> int:
        return 512 * 704

    def arguments(self, renderer, clip) -> dict:
        arguments = {
            "prompt": motion_prompt(clip),
            "negative_prompt": renderer.negative_prompt,
            "guidance_scale": renderer.guidance_scale,
            "frame_rate": renderer.fps,
        }
        if renderer.pipe.vae.config.timestep_conditioning:
            # diffusers' advice for the timestep-aware VAEs of LTX-Video 0.9.1 and later
            arguments |= {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
        return arguments


FAMILIES: dict[str, Family] = {
    family.name: family for family in (StableVideoDiffusion(), CogVideoX(), Wan(), LTXVideo())
}


def family_of(pipe, name: str | None = None) -> Family:
    """The family named `name`, else the one of the pipe's class; InputError when none fits."""
    if name is not None:
        if name not in FAMILIES:
            raise InputError(f"unknown image-to-video family {name!r} (one of {list(FAMILIES)})")
        family = FAMILIES[name]
        if not isinstance(pipe, family.pipeline_class):
            raise InputError(
                f"a {type(pipe).__name__} is not a {family.pipeline_class.__name__} ({name})"
            )
        return family
    for family in FAMILIES.values():
        if isinstance(pipe, family.pipeline_class):
            return family
    classes = ", ".join(f.pipeline_class.__name__ for f in FAMILIES.values())
    raise InputError(
        f"{type(pipe).__name__} is not one of the image-to-video pipelines driven here ({classes})"
    )


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
        own = {k: kwargs.pop(k) for k in inspect.signature(cls).parameters if k in kwargs}
        if family is not None and family not in FAMILIES:
            raise InputError(f"unknown image-to-video family {family!r} (one of {list(FAMILIES)})")
        if model.startswith(("/", ".", "~")):
            model = str(Path(model).expanduser())
            if not Path(model).is_dir():
                raise InputError(
                    f"{model}: no such folder (an image-to-video pipeline was expected)"
                )
        loader = DiffusionPipeline if family is None else FAMILIES[family].pipeline_class
        dtype = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
        try:
            pipe = loader.from_pretrained(
                model, use_safetensors=True, trust_remote_code=trust_remote_code, **dtype, **kwargs
            )
        except LOAD_FAILURES as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise InputError(f"{model}: cannot load an image-to-video pipeline: {reason}") from e
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
