"""The families of diffusers image-to-video pipelines `PretrainedShotRenderer` drives.

Each family is a small adapter that maps a `ShotRequest` to its pipeline's arguments (the
family is found from the pipeline's class, or named):

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
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from diffusers import (
    CogVideoXImageToVideoPipeline,
    LTXImageToVideoPipeline,
    StableVideoDiffusionPipeline,
    WanImageToVideoPipeline,
)
from diffusers.utils import is_ftfy_available

from reelsmith.errors import InputError
from reelsmith.renderer.shots.protocol import ShotRequest, motion_level, motion_prompt


class RendererSettings(Protocol):
    """What a family reads of the `PretrainedShotRenderer` that drives it."""

    pipe: Any  # the loaded image-to-video pipeline
    fps: float
    guidance_scale: float
    negative_prompt: str


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

    def arguments(self, renderer: RendererSettings, clip: ShotRequest) -> dict:
        """The family's own pipeline arguments for one clip (text, guidance, frame rate)."""
        raise NotImplementedError


def prompt_arguments(renderer: RendererSettings, clip: ShotRequest) -> dict:
    """What a family with a text encoder reads of a clip: its motion prompt, the negative
    prompt and the guidance scale."""
    return {
        "prompt": motion_prompt(clip),
        "negative_prompt": renderer.negative_prompt,
        "guidance_scale": renderer.guidance_scale,
    }


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
        max_length = renderer.pipe.transformer.config.max_text_seq_length
        return prompt_arguments(renderer, clip) | {"max_sequence_length": max_length}


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
        return prompt_arguments(renderer, clip)


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
        arguments = prompt_arguments(renderer, clip) | {"frame_rate": renderer.fps}
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
