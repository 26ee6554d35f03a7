"""`KeyframePipeline`: the built-in keyframe decoder as a diffusers pipeline.

Components:
- `keyframe_encoder` (`KeyframeEncoder`): keyframe -> K tokens of width d (the tokenizer);
- `condition_encoder` (`ConditionEncoder`): tokens + identities + spec -> condition sequence;
- `transformer` (diffusers `PixArtTransformer2DModel`, or `KeyframeTransformer`: the same with a
  convolutional detail path on its output): a small pixel-space DiT, v-prediction;
- `scheduler`: any diffusers scheduler (`DPMSolverMultistepScheduler` ships).

Classifier-free guidance runs over each condition, nested: spec, then identities, then tokens.
With e0 the prediction with nothing, e1 with the spec, e2 with spec + identities and e3 with all
three, the guided prediction is

    e0 + g_spec (e1 - e0) + g_identity (e2 - e1) + g_tokens (e3 - e2)

and only the branches whose coefficient is not zero are computed (all scales 1: one branch).
A condition that is not given (no tokens, or no identities) is left out of the chain.

    pipe = KeyframePipeline.from_pretrained(folder)
    tokens = pipe.encode(images)                         # (B, K, d)
    out = pipe(specs, tokens=tokens, identities=[{"mara": emb}, ...], generator=g)
    out.images                                           # (B, H, W, 3) uint8
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler, PixArtTransformer2DModel
from diffusers.utils import BaseOutput

from reelsmith.renderer import shipped
from reelsmith.renderer.keyframes.models import (
    ConditionEncoder,
    KeyframeEncoder,
    KeyframeTransformer,
)
from reelsmith.renderer.loading import check_model_folder, load_quietly
from reelsmith.renderer.pipeline_steps import (
    SCHEDULER,
    StepCallback,
    callback_inputs,
    check_identity,
    check_sampling,
    denoise_guided,
    initial_noise,
)
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.encoding import spec_indices

WEIGHTS = shipped.KEYFRAMES
BRANCHES = ("spec", "identity", "tokens")
# chosen on held-out storyworld keyframes (benchmarks/keyframes_quality.py); 1.0 everywhere
# is the plain conditional model, one branch
DEFAULT_GUIDANCE = {"spec": 2.0, "identity": 2.0, "tokens": 2.0}
PORTRAIT_GUIDANCE = {"spec": 3.0}
# DPM-Solver++ 2M: on held-out keyframes 8 steps keep identity as well as 16 (renderer/README.md)
DEFAULT_STEPS = 8


@dataclass
class KeyframePipelineOutput(BaseOutput):
    images: np.ndarray | list[PIL.Image.Image] | torch.Tensor


class KeyframePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "keyframe_encoder->condition_encoder->transformer"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        keyframe_encoder: KeyframeEncoder,
        condition_encoder: ConditionEncoder,
        transformer: PixArtTransformer2DModel,
        scheduler,
    ) -> None:
        super().__init__()
        self.register_modules(
            keyframe_encoder=keyframe_encoder,
            condition_encoder=condition_encoder,
            transformer=transformer,
            scheduler=scheduler,
        )

    # -- shapes ---------------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return self.transformer.config.sample_size

    @property
    def token_shape(self) -> tuple[int, int]:
        c = self.condition_encoder.config
        return c.token_count, c.token_dim

    @property
    def identity_dim(self) -> int:
        return self.condition_encoder.config.identity_dim

    # -- the tokenizer --------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Keyframes (B, H, W, 3) uint8 -> tokens (B, K, d) float32 on the CPU."""
        images = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        r = self.resolution
        if images.ndim == 3:
            images = images[None]
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (r, r, 3):
            raise ValueError(
                f"keyframes to encode must be (B, {r}, {r}, 3) uint8; "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        enc = self.keyframe_encoder
        pixels = images.to(enc.device).permute(0, 3, 1, 2).to(enc.dtype) / 127.5 - 1.0
        return enc(pixels).float().cpu()

    # -- conditions -----------------------------------------------------------------------

    def check_inputs(self, specs, tokens, identities, height, width, steps, generator) -> None:
        r = self.resolution
        check_sampling(steps, generator, len(specs))
        if tokens is not None and not torch.is_tensor(tokens):
            raise ValueError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if identities is not None and not all(isinstance(i, Mapping) for i in identities):
            raise ValueError(
                "identities must be one mapping (character id -> embedding) per keyframe"
            )
        for name, value in (("height", height), ("width", width)):
            if value is not None and value != r:
                raise ValueError(f"{name} {value} is not this model's resolution {r}")
        if tokens is not None:
            k, d = self.token_shape
            if tokens.ndim != 3 or tuple(tokens.shape) != (len(specs), k, d):
                raise ValueError(
                    f"tokens of shape {tuple(tokens.shape)} should be ({len(specs)}, {k}, {d})"
                )
            if not torch.isfinite(tokens).all():
                raise ValueError("tokens contain NaN or infinite values")
        if identities is not None:
            if len(identities) != len(specs):
                raise ValueError(
                    f"{len(identities)} identity maps given for {len(specs)} keyframes"
                )
            slots = self.condition_encoder.config.slots
            for i, (spec, given) in enumerate(zip(specs, identities, strict=True)):
                for character in spec.characters[:slots]:
                    if character.id not in given:
                        raise ValueError(
                            f"keyframe {i}: no identity embedding for character {character.id!r}"
                        )
                    check_identity(i, character.id, given[character.id], self.identity_dim)

    def _identity_tensor(self, specs, identities) -> tuple[torch.Tensor, torch.Tensor]:
        slots = self.condition_encoder.config.slots
        out = torch.zeros(len(specs), slots, self.identity_dim)
        have = torch.zeros(len(specs), slots, dtype=torch.bool)
        if identities is not None:
            for i, (spec, given) in enumerate(zip(specs, identities, strict=True)):
                for k, character in enumerate(spec.characters[:slots]):
                    out[i, k] = torch.as_tensor(given[character.id], dtype=torch.float32)
                    have[i, k] = True
        return out, have

    def _conditions(self, specs, tokens, identities, guidance) -> tuple[torch.Tensor, list]:
        """The condition sequences of every branch needed, stacked, and their coefficients."""
        device = self._execution_device
        b = len(specs)
        names = (
            ["spec"] + ["identity"] * (identities is not None) + ["tokens"] * (tokens is not None)
        )
        g = [float(guidance.get(n, 1.0)) for n in names]  # g_1 .. g_top
        coef = [1.0 - g[0]] + [g[k] - g[k + 1] for k in range(len(g) - 1)] + [g[-1]]
        spec = torch.stack([spec_indices(s, self.condition_encoder.config.slots) for s in specs])
        ident, have = self._identity_tensor(specs, identities)
        blocks, used = [], []
        for level, c in enumerate(coef):  # level 0: nothing; 1: +spec; 2: +identity; 3: +tokens
            if c == 0.0:
                continue
            on = set(names[:level])
            keep_tokens = torch.full((b,), "tokens" in on)
            keep_identity = have & ("identity" in on)
            keep_spec = torch.full((b,), "spec" in on)
            enc = self.condition_encoder
            blocks.append(
                enc(
                    None if tokens is None else tokens.to(device, enc.dtype),
                    ident.to(device, enc.dtype),
                    spec.to(device),
                    keep_tokens.to(device),
                    keep_identity.to(device),
                    keep_spec.to(device),
                )
            )
            used.append(c)
        return torch.cat(blocks), used

    # -- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        specs: KeyframeSpec | Sequence[KeyframeSpec],
        tokens: torch.Tensor | None = None,
        identities: Sequence[Mapping[str, torch.Tensor]] | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance: Mapping[str, float] | None = None,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> KeyframePipelineOutput | tuple:
        """Draw one keyframe per spec.

        Args:
            specs: What each keyframe shows.
            tokens: (B, K, d) keyframe tokens (from `encode` or the planner), or None to draw
                from spec + identities alone.
            identities: Per keyframe, character id -> identity embedding (D,) for every
                character of its spec; None to draw from the spec alone (a new character's
                portrait).
            num_inference_steps: Denoising steps.
            guidance: Scale per condition, keys "spec", "identity", "tokens"; missing keys take
                `DEFAULT_GUIDANCE`.
            generator: A torch.Generator (or one per keyframe) for determinism.
            output_type: "np" (uint8 (B, H, W, 3)), "pil" or "pt" (float (B, 3, H, W) in [0, 1]).
            callback_on_step_end: Called as fn(pipe, step, timestep, kwargs) after each step;
                it may return {"latents": ...} to replace the sample.
        """
        # 1. check inputs
        if isinstance(specs, KeyframeSpec):
            specs = [specs]
        specs = list(specs)
        if not specs:
            raise ValueError("no keyframes to draw: specs is empty")
        if output_type not in ("np", "pil", "pt"):
            raise ValueError(f"output_type {output_type!r} is not one of np, pil, pt")
        unknown = set(guidance or {}) - set(BRANCHES)
        if unknown:
            raise ValueError(f"unknown guidance keys {sorted(unknown)}; use {list(BRANCHES)}")
        tensor_inputs = callback_inputs(
            self, callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        self.check_inputs(specs, tokens, identities, height, width, num_inference_steps, generator)
        guidance = {**DEFAULT_GUIDANCE, **(guidance or {})}
        device = self._execution_device
        b, r = len(specs), self.resolution

        # 2. encode the conditions of every guidance branch
        conditions, coef = self._conditions(specs, tokens, identities, guidance)

        # 3. initial noise
        shape = (b, self.transformer.config.in_channels, r, r)
        latents = initial_noise(shape, latents, generator, device)

        # 4. denoise
        latents = self.denoise(
            latents, conditions, coef, num_inference_steps, callback_on_step_end, tensor_inputs
        )

        # 5. decode: the samples are the pixels
        images = (latents.clamp(-1, 1) + 1) / 2
        self.maybe_free_model_hooks()
        if output_type == "pt":
            result = images.cpu()
        else:
            arrays = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            result = arrays if output_type == "np" else [PIL.Image.fromarray(a) for a in arrays]
        if not return_dict:
            return (result,)
        return KeyframePipelineOutput(images=result)

    def denoise(
        self,
        latents: torch.Tensor,
        conditions: torch.Tensor,
        coef: Sequence[float] = (1.0,),
        num_inference_steps: int = DEFAULT_STEPS,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> torch.Tensor:
        """The sampling loop: noise (B, C, r, r) -> samples in [-1, 1] (unclamped), guided by
        condition sequences stacked per branch (len(coef) * B rows) with coefficients `coef`."""
        device = self._execution_device
        dtype = self.transformer.dtype
        conditions = conditions.to(device, dtype)
        added = {"resolution": None, "aspect_ratio": None}

        def predict(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
            return self.transformer(
                x.to(dtype),
                encoder_hidden_states=conditions,
                timestep=step,
                added_cond_kwargs=added,
                return_dict=False,
            )[0].float()

        return denoise_guided(
            self,
            latents,
            predict,
            coef,
            num_inference_steps,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            device,
        )


def parse_guidance(text: str) -> dict[str, float]:
    """ "spec=2,identity=3" -> {"spec": 2.0, "identity": 3.0}; "" -> {}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"guidance {part!r} should be NAME=NUMBER") from None
        if not sep or key.strip() not in BRANCHES:
            raise ValueError(f"guidance {part!r}: NAME is one of {list(BRANCHES)}")
    return out


def make_pipeline(
    resolution: int = 64,
    token_count: int = 2,
    token_dim: int = 32,
    identity_dim: int = 64,
    slots: int = 4,
    layers: int = 6,
    heads: int = 4,
    head_dim: int = 64,
    patch_size: int = 4,
    encoder_width: int = 64,
    condition_width: int = 128,
    detail_width: int = 0,
) -> KeyframePipeline:
    """A freshly initialised pipeline of the given size (the training script's starting point,
    and the tests' tiny models). `detail_width` > 0 gives the transformer a detail path
    (`KeyframeTransformer`); 0 keeps diffusers' plain `PixArtTransformer2DModel`."""
    extra = {"detail_width": detail_width} if detail_width else {}
    cls = KeyframeTransformer if detail_width else PixArtTransformer2DModel
    transformer = cls(
        sample_size=resolution,
        in_channels=3,
        out_channels=3,
        patch_size=patch_size,
        num_layers=layers,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        cross_attention_dim=heads * head_dim,
        caption_channels=condition_width,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
        **extra,
    )
    return KeyframePipeline(
        keyframe_encoder=KeyframeEncoder(resolution, encoder_width, token_count, token_dim),
        condition_encoder=ConditionEncoder(
            token_count, token_dim, identity_dim, slots, condition_width
        ),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER),
    )


def load_keyframe_pipeline(path: str | Path | None = None, device: str = "cpu") -> KeyframePipeline:
    """The keyframe pipeline from a `save_pretrained` folder; the shipped one by default."""
    folder = Path(path) if path is not None else WEIGHTS
    check_model_folder(folder, "keyframe pipeline", "model_index.json")
    return load_quietly(KeyframePipeline, folder, device)
