"""The built-in shot model: a factorised space-time DiT in pixel space, and its conditions.

A clip of F frames continues a shot from its *start frame* (frame 0, given); the model draws
frames 1 .. F as their difference from the start frame (times `residual_scale`, v-prediction),
so what does not move is zero. Per generated frame its inputs are, concatenated
channel-wise (image-to-video style):

    [noisy difference (3)] [start frame (3)] [keyframe (3)]          -> (B, F, 9, r, r)

The keyframe is the shot's first frame, the appearance anchor; the start frame is where the
clip begins (the keyframe for a shot's first clip, the last frame of the clip before for the
next ones), so a long shot rendered clip by clip sees its keyframe again in every clip.

Each of the `layers` blocks holds spatial attention (a frame's patches, with the condition
tokens as extra keys and values), causal temporal attention (each patch position over frames
1 .. f) and an MLP, each modulated per frame (adaLN-single, as in PixArt) by the diffusion
timestep, the camera move and the frame's *phase*: how far through the
shot it is, u = frame index / (shot frames - 1), and the shot's length. Storyworld actions and
camera moves play out over the whole shot (a pan covers the same distance in a 2 s shot and a
5 s one), so the phase is what tells a frame where it is in the motion. Causal temporal
attention makes a shorter clip exactly the first frames of a longer one: one model draws any
clip length up to `max_frames` with no waste.

`ShotConditionEncoder` turns the conditions into the tokens the patches attend to:
[camera] [slot 1] .. [slot S], a slot holding a character's identity embedding plus its action,
so that the patches showing a character (matched to it through its identity) read that
character's action. Camera and actions together ("motion") and identities can each be dropped
to learned null vectors: classifier-free guidance over motion uses that.

CPU cost, the constraint that picked the size. One forward of one clip (15 drawn frames,
64x64, fp32), CPU seconds of the process (`time.process_time`, best of 5, models interleaved)
on the 2-core Intel Xeon 2.3 GHz (Sapphire Rapids) development box, under a load of ~6 from
other work, so wall times ran ~1.5x these and 2 threads (CPU of both) ran no faster than 1:

| patch | width | layers | weights | 1 thread | 1 thread, bf16 autocast | 2 threads |
| ----- | ----- | ------ | ------- | -------- | ----------------------- | --------- |
| 4     | 160   | 6      | 2.96M   | 0.28 s   | 0.18 s                  | 0.47 s    |
| 4     | 192   | 6      | 4.23M   | 0.35 s   | 0.24 s                  | 0.66 s    |
| 4     | 256   | 4      | 5.35M   | 0.38 s   |                         |           |
| 8     | 192   | 8      | 5.53M   | 0.11 s   |                         | 0.20 s    |
| 8     | 256   | 6      | 7.61M   | 0.12 s   |                         |           |

A drawn frame costs steps x guidance branches x forward / 15: with the pipeline's defaults (8
steps, 2 branches) the shipped patch-4 width-160 model (`PRESETS["default"]`, 5.9 MB in
float16) costs ~0.3 s of one core per frame; `BuiltinShotRenderer` rendering 6 shots of 2.5 s
(120 frames) used 44 s of CPU (0.37 s per frame). Patch 8 is ~3x cheaper, at 8x8-pixel
patches for characters ~10-25 pixels tall; bf16 autocast (AMX) ~1.5x.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from reelsmith.planner.screenplay import Action, CameraMove

CAMERAS = tuple(c.value for c in CameraMove)
ACTIONS = tuple(a.value for a in Action)
PHASE_FREQUENCIES = 8  # Fourier features of the shot phase u
MAX_SHOT_FRAMES = 480  # 60 s at 8 fps: the length feature is log(frames) / log(this)

PRESETS = {
    # 2.96M weights (with the condition encoder): 5.9 MB in float16
    "default": {"patch_size": 4, "width": 160, "layers": 6, "heads": 4},
    "tiny": {"resolution": 16, "patch_size": 4, "width": 16, "layers": 1, "heads": 2},
}


def phase_features(offsets: torch.Tensor, shot_frames: torch.Tensor, frames: int) -> torch.Tensor:
    """Where generated frames 1 .. `frames` of each clip are in their shot.

    Args:
        offsets: (B,) the index in its shot of each clip's start frame.
        shot_frames: (B,) frames in each whole shot.
        frames: Generated frames per clip.

    Returns:
        (B, frames, 2) float: the phase u = min(index, n - 1) / (n - 1) and the shot's length
        log(n) / log(MAX_SHOT_FRAMES).
    """
    n = shot_frames.float().clamp(min=2)[:, None]  # (B, 1)
    index = offsets.float()[:, None] + torch.arange(1, frames + 1, device=offsets.device)
    u = torch.minimum(index, n - 1) / (n - 1)  # (B, F)
    length = (n.log() / math.log(MAX_SHOT_FRAMES)).expand_as(u)
    return torch.stack([u, length], -1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (...,) values -> (..., dim), as in DiT."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def sincos_2d(width: int, grid: int) -> torch.Tensor:
    """Fixed 2D sine-cosine positions of a grid x grid patch layout -> (grid * grid, width)."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter) / quarter)
    coords = torch.arange(grid, dtype=torch.float32)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    parts = [f(c.flatten()[:, None] * omega) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    out = torch.cat(parts, 1)
    return F.pad(out, (0, width - out.shape[1]))


class ShotConditionEncoder(ModelMixin, ConfigMixin):
    """Camera move + per-character identity and action -> (B, 1 + S, width) condition tokens.

    forward(identities (B, S, D), actions (B, S) long, camera (B,) long, present (B, S),
    keep_identity (B, S), keep_motion (B,)). Actions and camera are indices into `ACTIONS` and
    `CAMERAS`. An absent slot (present False) is the learned empty vector whatever else it
    holds; a dropped identity (keep False) its null identity; with keep_motion False the camera
    and every action are their null vectors.
    """

    @register_to_config
    def __init__(self, identity_dim: int = 64, slots: int = 4, width: int = 192) -> None:
        super().__init__()
        self.identity_in = nn.Sequential(
            nn.Linear(identity_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.action = nn.Embedding(len(ACTIONS), width)
        self.camera = nn.Embedding(len(CAMERAS), width)
        self.null_identity = nn.Parameter(torch.randn(width) * 0.02)
        self.null_action = nn.Parameter(torch.randn(width) * 0.02)
        self.null_camera = nn.Parameter(torch.randn(width) * 0.02)
        self.empty = nn.Parameter(torch.randn(width) * 0.02)
        self.kind = nn.Parameter(torch.randn(2, width) * 0.02)  # camera token, slot token
        self.norm = nn.LayerNorm(width)

    def forward(
        self,
        identities: torch.Tensor,
        actions: torch.Tensor,
        camera: torch.Tensor,
        present: torch.Tensor,
        keep_identity: torch.Tensor,
        keep_motion: torch.Tensor,
    ) -> torch.Tensor:
        dtype = self.empty.dtype
        ident = self.identity_in(identities.to(dtype))  # (B, S, w)
        ident = torch.where(keep_identity[..., None], ident, self.null_identity)
        act = torch.where(keep_motion[:, None, None], self.action(actions), self.null_action)
        slots = torch.where(present[..., None], ident + act, self.empty) + self.kind[1]
        cam = torch.where(keep_motion[:, None], self.camera(camera), self.null_camera)
        tokens = torch.cat([(cam + self.kind[0])[:, None], slots], 1)  # (B, 1 + S, w)
        return self.norm(tokens)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis; `context` tokens (through the
    same projections) are extra keys and values."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        b, n, w = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(b, n, 3, h, w // h).permute(2, 0, 3, 1, 4)  # (B, h, n, d)
        if context is not None:  # (B, L, w) -> keys and values (B, h, n + L, d)
            ck, cv = self.qkv(context)[..., w:].view(b, -1, 2, h, w // h).permute(2, 0, 3, 1, 4)
            k, v = torch.cat([k, ck], 2), torch.cat([v, cv], 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, h, n, d)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class ShotBlock(nn.Module):
    """Spatial attention (with the condition tokens as extra keys), causal temporal attention
    and an MLP, each modulated per frame (adaLN)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_space = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.norm_context = nn.LayerNorm(width, eps=1e-6)
        self.space = Attention(width, heads)
        self.norm_time = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.time = Attention(width, heads)
        self.norm_mlp = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        # added to the shared modulation (PixArt's adaLN-single): per block 9 vectors
        self.scale_shift_table = nn.Parameter(torch.randn(9, width) / width**0.5)

    def forward(self, x: torch.Tensor, mod: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, f, n, w = x.shape  # (B, F, N, w)
        m = (mod.view(b, f, 9, w) + self.scale_shift_table)[:, :, :, None]  # (B, F, 9, 1, w)
        shift_s, scale_s, gate_s, shift_t, scale_t, gate_t, shift_m, scale_m, gate_m = m.unbind(2)
        # 1. each frame's patches and the condition tokens
        h = modulate(self.norm_space(x), shift_s, scale_s).view(b * f, n, w)
        context = self.norm_context(cond)[:, None].expand(b, f, -1, w).reshape(b * f, -1, w)
        x = x + gate_s * self.space(h, context).view(b, f, n, w)
        # 2. each patch position over the frames so far
        h = modulate(self.norm_time(x), shift_t, scale_t).transpose(1, 2).reshape(b * n, f, w)
        h = self.time(h, causal=True).view(b, n, f, w).transpose(1, 2)  # (B, F, N, w)
        x = x + gate_t * h
        # 3. per patch
        return x + gate_m * self.mlp(modulate(self.norm_mlp(x), shift_m, scale_m))


class ShotTransformer(ModelMixin, ConfigMixin):
    """Noisy frame differences + start frame + keyframe -> v-prediction; see the module doc.

    `max_frames` is the most frames drawn after the start frame (a clip holds one more);
    `fps` the frame rate the model was trained at (it only records it); `residual_scale` what
    the differences from the start frame are multiplied by before diffusion (storyworld clips'
    differences have a standard deviation of ~0.25, frames ~0.5: 2 gives them a frame's).

    forward(sample (B, F, 3, r, r), start (B, 3, r, r), keyframe (B, 3, r, r), timestep (B,),
    conditions (B, L, width), phase (B, F, 2)) -> (B, F, 3, r, r). Images are in [-1, 1];
    `phase` is `phase_features` of the clip.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        resolution: int = 64,
        patch_size: int = 4,
        width: int = 192,
        layers: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        max_frames: int = 15,
        fps: int = 8,
        residual_scale: float = 2.0,
    ) -> None:
        super().__init__()
        if resolution % patch_size:
            raise ValueError(f"resolution {resolution} is not a multiple of patch {patch_size}")
        if width % heads or width % 4:
            raise ValueError(f"width {width} must be a multiple of 4 and of heads {heads}")
        grid = resolution // patch_size
        self.x_embedder = nn.Conv2d(9, width, patch_size, patch_size)
        self.register_buffer("space_position", sincos_2d(width, grid), persistent=False)
        self.time_position = nn.Parameter(torch.randn(max_frames, width) * 0.02)
        self.t_embedder = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.phase_embedder = nn.Sequential(
            nn.Linear(2 * PHASE_FREQUENCIES + 2, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.camera_embedder = nn.Linear(width, width)  # the camera token -> the frame vector
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 9 * width))
        self.blocks = nn.ModuleList(ShotBlock(width, heads, mlp_ratio) for _ in range(layers))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, width) / width**0.5)
        self.final_adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.final_layer = nn.Linear(width, patch_size * patch_size * 3)
        # the blocks start as identities and the output at zero (DiT's adaLN-Zero)
        for linear in (self.adaln[1], self.final_adaln[1], self.final_layer):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def frame_vectors(
        self, timestep: torch.Tensor, conditions: torch.Tensor, phase: torch.Tensor
    ) -> torch.Tensor:
        """(B,) timesteps, (B, L, w) conditions, (B, F, 2) phase -> (B, F, w) per-frame vector."""
        k = torch.arange(1, PHASE_FREQUENCIES + 1, device=phase.device) * math.pi
        u = phase[..., :1] * k  # (B, F, P)
        features = torch.cat([phase, torch.sin(u), torch.cos(u)], -1).to(self.dtype)
        t = self.t_embedder(timestep_embedding(timestep, 256).to(self.dtype))  # (B, w)
        camera = self.camera_embedder(conditions[:, 0])  # (B, w)
        return (t + camera)[:, None] + self.phase_embedder(features)

    def forward(
        self,
        sample: torch.Tensor,
        start: torch.Tensor,
        keyframe: torch.Tensor,
        timestep: torch.Tensor,
        conditions: torch.Tensor,
        phase: torch.Tensor,
    ) -> torch.Tensor:
        cfg = self.config
        b, f, c, r, _ = sample.shape
        if f > cfg.max_frames or (c, r) != (3, cfg.resolution):
            raise ValueError(
                f"sample of shape {tuple(sample.shape)}: at most {cfg.max_frames} frames of "
                f"(3, {cfg.resolution}, {cfg.resolution})"
            )
        p, w = cfg.patch_size, cfg.width
        images = torch.cat([start, keyframe], 1)[:, None].expand(b, f, 6, r, r)
        x = torch.cat([sample.to(self.dtype), images.to(self.dtype)], 2)  # (B, F, 9, r, r)
        x = self.x_embedder(x.reshape(b * f, 9, r, r)).flatten(2).transpose(1, 2)  # (BF, N, w)
        n = x.shape[1]
        x = x.view(b, f, n, w) + self.space_position + self.time_position[:f, None]
        vectors = self.frame_vectors(timestep, conditions, phase)  # (B, F, w)
        mod = self.adaln(vectors)  # (B, F, 9w)
        cond = conditions.to(self.dtype)
        for block in self.blocks:
            x = block(x, mod, cond)  # (B, F, N, w)
        shift, scale = (self.final_adaln(vectors).view(b, f, 2, w) + self.final_table).unbind(2)
        x = modulate(self.final_norm(x), shift[:, :, None], scale[:, :, None])
        x = self.final_layer(x)  # (B, F, N, p * p * 3)
        g = r // p
        x = x.view(b, f, g, g, p, p, 3).permute(0, 1, 6, 2, 4, 3, 5)  # (B, F, 3, g, p, g, p)
        return x.reshape(b, f, 3, r, r)
