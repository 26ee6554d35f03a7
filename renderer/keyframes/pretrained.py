"""`PretrainedKeyframer`: keyframes from a diffusers text-to-image pipeline, identity by IP-Adapter.

Any pipeline of the Stable Diffusion 1.5 / SDXL class works (`StableDiffusionPipeline`,
`StableDiffusionXLPipeline`, whatever `AutoPipelineForText2Image` loads). The prompt is the
spec's prompt (or one written from its fields, `spec_prompts.prompt_of`); the characters'
identities reach the UNet through a loaded IP-Adapter, fed each character's reference image:

    keyframer = PretrainedKeyframer.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", ip_adapter="h94/IP-Adapter"
    )
    frames = keyframer.draw(specs, [{"mara": reference}, ...], seeds=[1, 2])  # (B, H, W, 3)

Identity embeddings. A reference's image is encoded once with the pipe's image encoder and the
result is stored back in `reference.embeddings[keyframer.ip_adapter_key()]`, so memory can cache
it; a reference holding that key needs no image. The stored embedding is one image's: (D,) CLIP
image embeds for a plain IP-Adapter, (T, D) penultimate hidden states for an IP-Adapter Plus.
The characters of a keyframe are passed as several images to the one adapter, which attends
over all their tokens together: per keyframe the pipe gets `ip_adapter_image_embeds` =
[(2, n, D)] (or (2, n, T, D)), negative embeds first, n = the number of characters. A keyframe
without characters gets one zero embedding with the adapter's scale at 0 (text only).

Keyframes are drawn one pipe call each: diffusers repeats `ip_adapter_image_embeds` for every
prompt of a call, so one call cannot give different keyframes different characters. This also
makes a keyframe's pixels depend only on its own spec, references and seed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import AutoPipelineForText2Image
from diffusers.models.embeddings import ImageProjection, IPAdapterPlusImageProjection

from reelsmith.renderer.keyframes.ip_adapter import (
    embed_shape,
    encoder_id,
    image_projection,
    load_ip_adapter,
)
from reelsmith.renderer.keyframes.keyframer import IdentityReference
from reelsmith.renderer.keyframes.spec_prompts import portrait_prompt, prompt_of
from reelsmith.renderer.loading import dtype_argument, load_failure, local_model, own_arguments
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec

logger = logging.getLogger(__name__)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8, rounded."""
    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class PretrainedKeyframer:
    """The `Keyframer` over a diffusers text-to-image pipeline, with IP-Adapter for identity.

    Args:
        pipe: A loaded pipeline; load its IP-Adapter (one, plain or Plus) with
            `pipe.load_ip_adapter` to use identities, else keyframes are drawn from text alone.
        steps: Denoising steps per keyframe.
        guidance_scale: Classifier-free guidance scale (> 1 turns guidance on).
        ip_adapter_scale: How strongly the references steer the image (0: not at all).
        resolution: Square side in pixels; the pipeline's default size when None.
        negative_prompt: The negative prompt of every keyframe.
        name: The backend's name in logs and errors.
    """

    tokenizer = None  # it reads no keyframe tokens: keyframes come from text and references

    def __init__(
        self,
        pipe,
        *,
        steps: int = 30,
        guidance_scale: float = 7.0,
        ip_adapter_scale: float = 0.6,
        resolution: int | None = None,
        negative_prompt: str = "blurry, deformed, extra limbs",
        name: str = "pretrained",
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps {steps} must be at least 1")
        if ip_adapter_scale < 0:
            raise ValueError(f"ip_adapter_scale {ip_adapter_scale} must not be negative")
        factor = getattr(pipe, "vae_scale_factor", 8)
        resolution = default_resolution(pipe) if resolution is None else resolution
        if resolution < factor or resolution % factor:
            raise ValueError(f"resolution {resolution} is not a positive multiple of {factor}")
        self.pipe = pipe
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.ip_adapter_scale = ip_adapter_scale
        self.resolution = resolution
        self.negative_prompt = negative_prompt
        self.name = name
        self._encoder_id: tuple[object, str] | None = None  # (image encoder, its id)
        self._negative: tuple[str, torch.Tensor] | None = None  # (key, negative embedding)
        self._warned = False
        pipe.set_progress_bar_config(disable=True)
        self._adapter()  # fail now on an adapter this class cannot drive

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        ip_adapter: str | None = None,
        ip_adapter_subfolder: str = "models",
        ip_adapter_weight_name: str = "ip-adapter_sd15.safetensors",
        image_encoder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str = "cpu",
        trust_remote_code: bool = False,
        **kwargs,
    ) -> PretrainedKeyframer:
        """Load a pipeline (safetensors only) and, given `ip_adapter`, its IP-Adapter.

        Args:
            model: A Hub id or a `save_pretrained` folder of a text-to-image pipeline.
            ip_adapter: A Hub id or folder holding the IP-Adapter weights (e.g. "h94/IP-Adapter").
            ip_adapter_subfolder: The weights' subfolder there ("models" for SD 1.5 on
                h94/IP-Adapter, "sdxl_models" for SDXL).
            ip_adapter_weight_name: The weights' file; it must be a .safetensors file.
            image_encoder: A folder or Hub id of a CLIP vision encoder, a Hub id may go on with a
                subfolder ("h94/IP-Adapter/models/image_encoder"); by default the pipe's own, else
                `image_encoder/` beside the IP-Adapter weights.
            torch_dtype: The weights' dtype (the checkpoint's when None).
            device: Where to run.
            trust_remote_code: Allow a custom pipeline's code from the Hub.
            **kwargs: Passed on to `AutoPipelineForText2Image.from_pretrained` and then to this
                class's constructor (steps, guidance_scale, ...).

        Raises:
            ValueError: The IP-Adapter weight file is not a .safetensors file.
            InputError: The pipeline, image encoder or IP-Adapter cannot be loaded.
        """
        if not ip_adapter_weight_name.endswith(".safetensors"):
            raise ValueError(
                f"ip_adapter_weight_name {ip_adapter_weight_name!r} is not a .safetensors file; "
                "only safetensors weights are loaded"
            )
        own = own_arguments(cls, kwargs)
        model = local_model(model, "a text-to-image pipeline")
        with load_failure(f"{model}: cannot load a text-to-image pipeline"):
            pipe = AutoPipelineForText2Image.from_pretrained(
                model,
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
                **dtype_argument(torch_dtype),
                **kwargs,
            )
        if ip_adapter is not None:
            load_ip_adapter(
                pipe,
                model,
                ip_adapter,
                ip_adapter_subfolder,
                ip_adapter_weight_name,
                image_encoder,
                torch_dtype,
            )
        return cls(pipe.to(device), **own)

    # -- identity embeddings --------------------------------------------------------------

    def _adapter(self) -> ImageProjection | IPAdapterPlusImageProjection | None:
        """The loaded IP-Adapter's image projection, or None when none is loaded."""
        return image_projection(self.pipe, self.name)

    def _hidden_states(self) -> bool:
        """Whether the adapter reads the encoder's hidden states (Plus) or its image embeds."""
        return not isinstance(self._adapter(), ImageProjection)

    def ip_adapter_key(self) -> str | None:
        """The key of this backend's embeddings in `IdentityReference.embeddings`.

        It names the image encoder by class, width and a digest of its weights (a path would
        change between machines, a class name alone would not tell two checkpoints apart), and
        the kind of embedding; None when no IP-Adapter is loaded.
        """
        if self._adapter() is None:
            return None
        encoder = self.pipe.image_encoder
        if self._encoder_id is None or self._encoder_id[0] is not encoder:
            self._encoder_id = (encoder, encoder_id(encoder))
        kind = "hidden-states" if self._hidden_states() else "image-embeds"
        return f"ip-adapter:{self._encoder_id[1]}:{kind}"

    def _embed_shape(self) -> tuple[int, ...]:
        """One image's embedding: (D,) image embeds, or (T, D) hidden states for Plus."""
        return embed_shape(self.pipe.image_encoder.config, self._hidden_states())

    @torch.no_grad()
    def _embedding(self, reference: IdentityReference, character_id: str) -> torch.Tensor:
        """One character's embedding (the cached one, else encoded and cached), float32 CPU."""
        key, shape = self.ip_adapter_key(), self._embed_shape()
        cached = reference.embeddings.get(key)
        if cached is not None:
            embed = torch.as_tensor(cached).float().cpu()
            if tuple(embed.shape) != shape:
                raise ValueError(
                    f"character {character_id!r}: cached {key} embedding has shape "
                    f"{tuple(embed.shape)}, expected {shape}"
                )
            return embed
        if reference.image is None:
            raise ValueError(
                f"character {character_id!r}: reference has no image and no {key} embedding"
            )
        image = np.asarray(reference.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"character {character_id!r}: reference image must be uint8 (H, W, 3); "
                f"got {image.dtype} {tuple(image.shape)}"
            )
        device = self.pipe._execution_device
        positive, _ = self.pipe.encode_image(
            PIL.Image.fromarray(image), device, 1, self._hidden_states()
        )
        embed = positive[0].float().cpu()  # (D,) or (T, D)
        reference.embeddings[key] = embed
        return embed

    @torch.no_grad()
    def _negative_embedding(self) -> torch.Tensor:
        """The unconditional embedding diffusers pairs with every image: zeros for image embeds,
        the hidden states of an all-zero input for Plus."""
        key = self.ip_adapter_key()
        if self._negative is None or self._negative[0] != key:
            if self._hidden_states():
                size = self.pipe.image_encoder.config.image_size
                zeros = torch.zeros(1, 3, size, size)
                _, negative = self.pipe.encode_image(zeros, self.pipe._execution_device, 1, True)
                self._negative = (key, negative[0].float().cpu())
            else:
                self._negative = (key, torch.zeros(self._embed_shape()))
        return self._negative[1]

    def _identity_embeds(
        self, references: Sequence[tuple[str, IdentityReference]]
    ) -> tuple[torch.Tensor, float]:
        """A keyframe's `ip_adapter_image_embeds` tensor and the adapter scale to draw it with.

        (2, n, D) or (2, n, T, D), negative first, with guidance; (1, ...) without. No
        characters: one zero embedding at scale 0.
        """
        if references:
            positive = torch.stack([self._embedding(ref, cid) for cid, ref in references])[None]
            negative = self._negative_embedding().expand_as(positive)  # (1, n, ...)
            scale = self.ip_adapter_scale
        else:
            positive = negative = torch.zeros(1, 1, *self._embed_shape())
            scale = 0.0
        embeds = torch.cat([negative, positive]) if self._guided() else positive
        return embeds.to(self.pipe.unet.dtype), scale

    def _guided(self) -> bool:
        """Whether the pipe runs classifier-free guidance (as its `do_classifier_free_guidance`)."""
        return self.guidance_scale > 1 and self.pipe.unet.config.time_cond_proj_dim is None

    # -- drawing --------------------------------------------------------------------------

    def check_inputs(self, specs, identities, seeds, tokens) -> None:
        if tokens is not None:
            raise ValueError(
                f"{self.name} keyframer has no keyframe tokenizer: tokens of shape "
                f"{tuple(tokens.shape)} were given; pass tokens=None"
            )
        if not specs:
            raise ValueError("no keyframes to draw: specs is empty")
        if len(identities) != len(specs):
            raise ValueError(f"{len(identities)} identity maps given for {len(specs)} keyframes")
        if len(seeds) != len(specs):
            raise ValueError(f"{len(seeds)} seeds given for {len(specs)} keyframes")
        for i, (spec, given) in enumerate(zip(specs, identities, strict=True)):
            for character in spec.characters:
                if character.id not in given:
                    raise ValueError(
                        f"keyframe {i}: no identity reference for character {character.id!r}"
                    )

    def draw(
        self,
        specs: Sequence[KeyframeSpec],
        identities: Sequence[Mapping[str, IdentityReference]],
        seeds: Sequence[int],
        tokens: torch.Tensor | None = None,
    ) -> np.ndarray:
        """One keyframe per spec, uint8 (B, H, W, 3); see the module docstring."""
        # 1. check inputs
        specs, identities, seeds = list(specs), list(identities), list(seeds)
        self.check_inputs(specs, identities, seeds, tokens)

        # 2. encode identities (before drawing anything, so a bad reference fails fast)
        if self._adapter() is None:
            if not self._warned and any(spec.characters for spec in specs):
                logger.warning(
                    "%s: the pipeline has no IP-Adapter loaded; identities are ignored and "
                    "keyframes are drawn from text only",
                    self.name,
                )
                self._warned = True
            conditions = [(None, 0.0)] * len(specs)
        else:
            conditions = [
                self._identity_embeds([(c.id, given[c.id]) for c in spec.characters])
                for spec, given in zip(specs, identities, strict=True)
            ]

        # 3. draw each keyframe on its own
        frames = [
            self._generate(prompt_of(spec), embeds, scale, seed)
            for spec, (embeds, scale), seed in zip(specs, conditions, seeds, strict=True)
        ]
        return np.stack(frames)

    def portrait(self, character: CharacterSpec, seed: int) -> np.ndarray:
        """A new character's reference portrait from its description (text only), (H, W, 3)."""
        embeds, scale = (None, 0.0) if self._adapter() is None else self._identity_embeds([])
        return self._generate(portrait_prompt(character), embeds, scale, seed)

    def _generate(
        self, prompt: str, embeds: torch.Tensor | None, scale: float, seed: int
    ) -> np.ndarray:
        """One pipe call: a single keyframe, uint8 (H, W, 3)."""
        extra = {}
        if embeds is not None:
            self.pipe.set_ip_adapter_scale(scale)
            extra["ip_adapter_image_embeds"] = [embeds]
        out = self.pipe(
            prompt=prompt,
            negative_prompt=self.negative_prompt,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            height=self.resolution,
            width=self.resolution,
            generator=torch.Generator(device="cpu").manual_seed(int(seed)),
            output_type="np",
            **extra,
        )
        return to_uint8(out.images[0])


def default_resolution(pipe) -> int:
    """The pipeline's default image side: its denoiser's sample size times the VAE's factor."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    size = getattr(getattr(denoiser, "config", None), "sample_size", None)
    if not isinstance(size, int):
        raise ValueError(f"{type(pipe).__name__} has no default sample size; pass resolution")
    return size * getattr(pipe, "vae_scale_factor", 8)
