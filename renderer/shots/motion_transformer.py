"""The motion transformer of the built-in shot model: diffusion over motion latents.

`MotionTransformer`: a DiT over a clip's T motion latents (`renderer.shots.flow_autoencoder`),
patchified to tokens, that predicts v. Conditions: the keyframe (a small CNN to the token grid,
added to every frame's tokens: where things are), the previous clip's last latent (added the
same way, or a learned "no context" vector), where each frame is in its shot (its phase and the
shot's length), the camera move and the timestep (adaLN), and per character slot its identity
embedding, action and known looks (cross-attention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from reelsmith.renderer.shots.flow_autoencoder import MOTION_CHANNELS, conv_block, levels
from reelsmith.schema.conditioning import ACTIONS, CAMERAS, TRAITS

SLOT_FIELDS = 2 + len(TRAITS)  # per slot: present, 4 looks, action (as `spec_indices` lays it)
PHASE_FREQUENCIES = 8  # Fourier features of a frame's phase in its shot
MAX_SHOT_FRAMES = 480  # 60 s at 8 fps: the length feature is log(frames) / log(this)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (...,) values -> (..., dim), as in DiT."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def sincos_2d(width: int, grid: int) -> torch.Tensor:
    """Fixed 2D sine-cosine positions of a grid x grid token layout -> (grid * grid, width)."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter) / quarter)
    coords = torch.arange(grid, dtype=torch.float32)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    parts = [f(c.flatten()[:, None] * omega) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    out = torch.cat(parts, 1)
    return F.pad(out, (0, width - out.shape[1]))


def phase_features(offsets: torch.Tensor, shot_frames: torch.Tensor, frames: int) -> torch.Tensor:
    """Where each of a clip's `frames` frames is in its shot.

    Storyworld lays an action out over the whole shot, so how far a character has walked by
    frame i depends on i and on the shot's length; the model is told both.

    Args:
        offsets: (B,) the index in its shot of each clip's first frame.
        shot_frames: (B,) frames in each whole shot.

    Returns:
        (B, frames, 2): the phase u = min(i, n - 1) / (n - 1) and log(n) / log(MAX_SHOT_FRAMES).
    """
    n = shot_frames.float().clamp(min=2)[:, None]  # (B, 1)
    index = offsets.float()[:, None] + torch.arange(frames, device=offsets.device)  # (B, T)
    u = torch.minimum(index, n - 1) / (n - 1)
    length = (n.log() / math.log(MAX_SHOT_FRAMES)).expand_as(u)
    return torch.stack([u, length], -1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention; keys/values from `context` when given (cross-attention)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, n, w = x.shape
        context = x if context is None else context
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, h, N, hd)
        k, v = self.kv(context).view(b, -1, 2, self.heads, w // self.heads).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, h, M, hd)
        mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, M)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class MotionBlock(nn.Module):
    """adaLN-Zero DiT block over (B, T, N, W) tokens: self-attention over all T * N tokens
    ("full") or over each frame's N then each place's T ("factorised"), cross-attention to the
    character slots, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, factorised: bool) -> None:
        super().__init__()
        self.factorised = factorised
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.temporal = Attention(width, heads) if factorised else None
        self.cross_norm = nn.LayerNorm(width)
        self.cross = Attention(width, heads)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU("tanh"), nn.Linear(hidden, width)
        )
        parts = 9 if factorised else 6
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, parts * width))
        # adaLN-Zero: every residual branch starts at zero, so the block starts as identity
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)
        nn.init.zeros_(self.cross.out.weight)
        nn.init.zeros_(self.cross.out.bias)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, slots: torch.Tensor, slot_mask: torch.Tensor
    ) -> torch.Tensor:
        b, t, n, w = x.shape
        mod = self.ada(c)[:, None, None].chunk(9 if self.factorised else 6, -1)  # (B,1,1,W) each
        h = modulate(self.norm(x), mod[0], mod[1])
        if self.factorised:
            h = self.attn(h.reshape(b * t, n, w)).view(b, t, n, w)
            x = x + mod[2] * h
            h = modulate(self.norm(x), mod[3], mod[4]).transpose(1, 2).reshape(b * n, t, w)
            h = self.temporal(h).view(b, n, t, w).transpose(1, 2)
            x = x + mod[5] * h
        else:
            x = x + mod[2] * self.attn(h.reshape(b, t * n, w)).view(b, t, n, w)
        h = self.cross(self.cross_norm(x).view(b, t * n, w), slots, slot_mask)
        x = x + h.view(b, t, n, w)
        shift, scale, gate = mod[-3:]
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


@dataclass
class MotionConditions:
    """Everything a clip is conditioned on, encoded once per sampling run.

    tokens: (B, N, W) added to every frame's tokens (keyframe + context);
    frames: (B, T, W) added to every token of a frame (its place in the shot);
    vector: (B, W) the adaLN condition without the timestep (camera, has-context);
    slots: (B, S + 1, W) what cross-attention reads, slot_mask (B, S + 1) which are there.
    """

    tokens: torch.Tensor
    frames: torch.Tensor
    vector: torch.Tensor
    slots: torch.Tensor
    slot_mask: torch.Tensor

    @staticmethod
    def cat(items: list[MotionConditions]) -> MotionConditions:
        return MotionConditions(
            *(torch.cat([getattr(i, f) for i in items]) for f in MotionConditions.__annotations__)
        )


class MotionTransformer(ModelMixin, ConfigMixin):
    """The denoiser: noisy motion latents (B, T, 3, g, g) + timestep + conditions -> v.

    Latents are shifted by `latent_mean` and divided by `latent_scale` (per channel, fitted to
    the training data) before noise is added, so the model works on unit-scale numbers; the
    pipeline undoes it.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 64,
        latent_size: int = 16,
        patch_size: int = 2,
        frames: int = 8,
        fps: int = 8,
        width: int = 128,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        attention: str = "full",
        identity_dim: int = 64,
        slots: int = 4,
        latent_mean: tuple[float, ...] = (0.0, 0.0, 0.0),
        latent_scale: tuple[float, ...] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        if attention not in ("full", "factorised"):
            raise ValueError(f"attention must be 'full' or 'factorised', got {attention!r}")
        if width % heads or width % 4:
            raise ValueError(f"width {width} must divide by heads {heads} and by 4")
        for name, value in (("latent_mean", latent_mean), ("latent_scale", latent_scale)):
            if len(value) != MOTION_CHANNELS:
                raise ValueError(f"{name} needs {MOTION_CHANNELS} values, got {value}")
        grid = latent_size // patch_size
        if grid * patch_size != latent_size:
            raise ValueError(f"latent_size {latent_size} is not a multiple of {patch_size}")
        token_dim = MOTION_CHANNELS * patch_size**2
        self.x_embedder = nn.Linear(token_dim, width)
        self.context_embedder = nn.Linear(token_dim, width)
        self.no_context = nn.Parameter(torch.zeros(width))
        self.register_buffer("pos_embed", sincos_2d(width, grid), persistent=False)
        # keyframe -> (B, W, grid, grid): halvings with widening channels, then 1x1
        n = levels(resolution, grid, "resolution / token grid")
        chans = [max(8, width >> (n - k)) for k in range(n + 1)]
        layers_ = [conv_block(3, chans[0])]
        layers_ += [conv_block(chans[k], chans[k + 1], 2) for k in range(n)]
        self.keyframe_embedder = nn.Sequential(*layers_, nn.Conv2d(chans[-1], width, 1))
        self.frame_index = nn.Parameter(torch.randn(frames, width) * 0.02)
        self.phase_embedder = nn.Sequential(
            nn.Linear(2 * PHASE_FREQUENCIES + 2, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.t_embedder = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.camera_embedder = nn.Embedding(len(CAMERAS) + 1, width)  # 0: unknown / dropped
        self.context_flag = nn.Embedding(2, width)
        self.identity_embedder = nn.Sequential(
            nn.Linear(identity_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.look_embedders = nn.ModuleList(
            nn.Embedding(len(v) + 1, width) for v in TRAITS.values()
        )
        self.action_embedder = nn.Embedding(len(ACTIONS) + 1, width)
        self.null_slot = nn.Parameter(torch.randn(width) * 0.02)
        self.slot_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(
            MotionBlock(width, heads, mlp_ratio, attention == "factorised") for _ in range(layers)
        )
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.final_layer = nn.Linear(width, token_dim)
        for layer in (self.final_ada[-1], self.final_layer):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # -- shapes ---------------------------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(T, 3, g, g): one clip's motion latents."""
        g = self.config.latent_size
        return self.config.frames, MOTION_CHANNELS, g, g

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C, g, g) -> (..., N, C p p)."""
        p, grid = self.config.patch_size, self.config.latent_size // self.config.patch_size
        *lead, c, _, _ = x.shape
        nl = len(lead)
        x = x.reshape(*lead, c, grid, p, grid, p)  # (..., C, gy, py, gx, px)
        x = x.permute(*range(nl), nl + 1, nl + 3, nl, nl + 2, nl + 4)  # (..., gy, gx, C, py, px)
        return x.reshape(*lead, grid * grid, c * p * p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, C p p) -> (..., C, g, g); the inverse of `patchify`."""
        p, grid = self.config.patch_size, self.config.latent_size // self.config.patch_size
        *lead, _, _ = x.shape
        x = x.reshape(*lead, grid, grid, MOTION_CHANNELS, p, p)  # (..., gy, gx, C, py, px)
        nl = len(lead)
        x = x.permute(*range(nl), nl + 2, nl, nl + 3, nl + 1, nl + 4)  # (..., C, gy, py, gx, px)
        return x.reshape(*lead, MOTION_CHANNELS, grid * p, grid * p)

    # -- conditions -----------------------------------------------------------------------

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, scale = (
            torch.tensor(v, device=like.device, dtype=like.dtype)[:, None, None]
            for v in (self.config.latent_mean, self.config.latent_scale)
        )
        return mean, scale

    def scale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Motion latents (..., 3, g, g) -> the unit-scale numbers the model denoises."""
        mean, scale = self._stats(latents)
        return (latents - mean) / scale

    def unscale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of `scale_latents`."""
        mean, scale = self._stats(latents)
        return latents * scale + mean

    def conditions(
        self,
        keyframes: torch.Tensor,
        camera: torch.Tensor,
        identities: torch.Tensor,
        identity_mask: torch.Tensor,
        slot_spec: torch.Tensor,
        context: torch.Tensor,
        has_context: torch.Tensor,
        phase: torch.Tensor,
    ) -> MotionConditions:
        """Encode a clip's conditions.

        Args:
            keyframes: (B, 3, r, r) in [-1, 1].
            camera: (B,) long, 1 + index in `CAMERAS`; 0 unknown (or dropped for guidance).
            identities: (B, S, D) identity embeddings; identity_mask (B, S) which are given.
            slot_spec: (B, S, 6) long per slot: present, shape, colour, accessory, pattern,
                action, each 1 + its index, 0 unknown (the slot half of `spec_indices`).
            context: (B, 3, g, g) motion latent of the frame before the clip (unscaled);
                has_context (B,) bool, False for a shot's first clip (context then unused).
            phase: (B, T, 2) from `phase_features`.
        """
        dtype = self.x_embedder.weight.dtype
        b = len(keyframes)
        # 1. where things are: keyframe features, and the previous clip's last latent
        kf = self.keyframe_embedder(keyframes.to(dtype)).flatten(2).transpose(1, 2)  # (B, N, W)
        ctx = self.context_embedder(self.patchify(self.scale_latents(context.to(dtype))))
        ctx = torch.where(has_context[:, None, None], ctx, self.no_context)
        tokens = kf + ctx + self.pos_embed.to(dtype)
        # 2. when each frame is: its index in the clip and its phase in the shot
        u = phase[..., :1].to(dtype)
        k = torch.arange(PHASE_FREQUENCIES, device=u.device, dtype=dtype)
        angles = u * math.pi * 2.0**k  # (B, T, F)
        feats = torch.cat([angles.sin(), angles.cos(), phase.to(dtype)], -1)
        frames = self.phase_embedder(feats) + self.frame_index[: phase.shape[1]]
        # 3. the camera and whether there is context, for adaLN
        vector = self.camera_embedder(camera) + self.context_flag(has_context.long())
        # 4. character slots: identity + looks + action; a null slot so none is never empty
        present = slot_spec[..., 0].bool()
        ident = self.identity_embedder(identities.to(dtype))
        ident = torch.where((identity_mask & present)[..., None], ident, 0.0)
        looks = sum(e(slot_spec[..., 1 + i]) for i, e in enumerate(self.look_embedders))
        action = self.action_embedder(slot_spec[..., 1 + len(TRAITS)])
        slots = self.slot_norm(ident + looks + action)  # (B, S, W)
        null = self.null_slot.expand(b, 1, -1)
        slots = torch.cat([null, slots], 1)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=present.device), present], 1)
        return MotionConditions(tokens, frames, vector, slots, mask)

    # -- denoising ------------------------------------------------------------------------

    def forward(
        self, latents: torch.Tensor, timestep: torch.Tensor, cond: MotionConditions
    ) -> torch.Tensor:
        """(B, T, 3, g, g) noisy scaled latents, (B,) timesteps -> (B, T, 3, g, g) v."""
        dtype = self.x_embedder.weight.dtype
        b, t = latents.shape[:2]
        x = self.x_embedder(self.patchify(latents.to(dtype)))  # (B, T, N, W)
        x = x + cond.tokens[:, None] + cond.frames[:, :, None]
        c = self.t_embedder(timestep_embedding(timestep, 256).to(dtype)) + cond.vector  # (B, W)
        for block in self.blocks:
            x = block(x, c, cond.slots, cond.slot_mask)
        shift, scale = self.final_ada(c)[:, None, None].chunk(2, -1)
        x = self.final_layer(modulate(self.final_norm(x), shift, scale))  # (B, T, N, C p p)
        return self.unpatchify(x)
