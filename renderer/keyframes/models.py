"""The built-in keyframe models: the keyframe tokenizer and the decoder's condition encoder.

A keyframe is summarised by K continuous tokens of width d (`KeyframeEncoder`); the keyframe
decoder renders it back from those tokens, the identity embeddings of the shot's characters
and the shot's spec. `ConditionEncoder` turns the three conditions into the one sequence the
decoder's transformer cross-attends to:

    [K keyframe tokens] [S identity slots] [location, time, size, camera] [S character slots]

Each condition can be dropped (replaced by learned null vectors) on its own: that is what
classifier-free guidance over each condition, and drawing without tokens, rely on.

The spec (`planner.keyframe_spec.KeyframeSpec`, re-exported here) is the shot in the storyworld
vocabulary: a character slot holds the looks its description names (shape, colour, accessory,
pattern; unknown where not named) and its action. A portrait is a spec with the place
`portrait` and one character.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import PixArtTransformer2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from reelsmith.schema.conditioning import SCENE_FIELDS, SLOT_FIELDS, TRAITS


class ConditionEncoder(ModelMixin, ConfigMixin):
    """Keyframe tokens + identity embeddings + spec -> the decoder's condition sequence.

    forward(tokens (B, K, d) or None, identities (B, S, D), spec (B, 4 + 6S) long,
    keep_tokens (B,), keep_identity (B, S), keep_spec (B,)) -> (B, K + 2S + 4, width).
    A dropped condition (keep False) is replaced by its learned null vectors; an absent
    character slot (spec present flag 0) is null in both its identity and spec slot.
    """

    @register_to_config
    def __init__(
        self,
        token_count: int = 2,
        token_dim: int = 32,
        identity_dim: int = 64,
        slots: int = 4,
        width: int = 128,
    ) -> None:
        super().__init__()
        self.token_in = nn.Linear(token_dim, width)
        self.identity_in = nn.Sequential(
            nn.Linear(identity_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.scene = nn.ModuleList(nn.Embedding(len(v) + 1, width) for v in SCENE_FIELDS.values())
        self.slot = nn.ModuleList(nn.Embedding(len(v) + 1, width) for v in SLOT_FIELDS.values())
        self.slot_out = nn.Sequential(nn.SiLU(), nn.Linear(width, width))
        length = token_count + 2 * slots + len(SCENE_FIELDS)
        self.position = nn.Parameter(torch.randn(length, width) * 0.02)
        self.null = nn.Parameter(torch.randn(length, width) * 0.02)
        self.norm = nn.LayerNorm(width)

    @property
    def length(self) -> int:
        return self.position.shape[0]

    def forward(
        self,
        tokens: torch.Tensor | None,
        identities: torch.Tensor,
        spec: torch.Tensor,
        keep_tokens: torch.Tensor,
        keep_identity: torch.Tensor,
        keep_spec: torch.Tensor,
    ) -> torch.Tensor:
        cfg = self.config
        b, s = spec.shape[0], cfg.slots
        dtype = self.null.dtype
        if tokens is None:
            tokens = torch.zeros(b, cfg.token_count, cfg.token_dim, device=spec.device)
            keep_tokens = torch.zeros(b, dtype=torch.bool, device=spec.device)
        tok = self.token_in(tokens.to(dtype))
        ident = self.identity_in(identities.to(dtype))
        scene = torch.stack([emb(spec[:, k]) for k, emb in enumerate(self.scene)], 1)
        slot_ix = spec[:, len(SCENE_FIELDS) :].view(b, s, 2 + len(TRAITS))
        present = slot_ix[..., 0].bool()
        slot = self.slot_out(sum(emb(slot_ix[..., 1 + k]) for k, emb in enumerate(self.slot)))
        k_tok, k_sc = cfg.token_count, len(SCENE_FIELDS)
        keep = torch.cat(
            [
                keep_tokens[:, None].expand(b, k_tok),
                keep_identity & present,
                keep_spec[:, None].expand(b, k_sc),
                keep_spec[:, None] & present,
            ],
            1,
        )
        x = torch.cat([tok, ident, scene, slot], 1)
        x = torch.where(keep[..., None], x, self.null[None].to(x.dtype))
        return self.norm(x + self.position[None])


class KeyframeEncoder(ModelMixin, ConfigMixin):
    """The keyframe tokenizer: (B, 3, r, r) in [-1, 1] -> (B, K, d) tokens.

    A small CNN to an 8x8 feature map, then K learned queries attend over it. Tokens are
    normalised per token (zero mean, unit variance over d), a fixed scale for the planner.
    """

    @register_to_config
    def __init__(
        self, resolution: int = 64, width: int = 64, token_count: int = 2, token_dim: int = 32
    ) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        w = width
        layers, c, size = [nn.Conv2d(3, w, 3, 1, 1), nn.SiLU()], w, resolution
        while size > 8:
            out = min(2 * c, 4 * w)
            layers += [nn.Conv2d(c, out, 3, 2, 1), nn.GroupNorm(8, out), nn.SiLU()]
            c, size = out, size // 2
        self.body = nn.Sequential(*layers)
        self.position = nn.Parameter(torch.randn(64, c) * 0.02)
        self.queries = nn.Parameter(torch.randn(token_count, c) * 0.02)
        self.attend = nn.MultiheadAttention(c, 4, batch_first=True)
        self.out = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, token_dim))
        self.norm = nn.LayerNorm(token_dim, elementwise_affine=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        r = self.config.resolution
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, r, r):
            raise ValueError(
                f"keyframes to tokenize must be (B, 3, {r}, {r}); got {tuple(pixels.shape)}"
            )
        f = self.body(pixels).flatten(2).transpose(1, 2) + self.position  # (B, 64, C)
        q = self.queries[None].expand(len(pixels), -1, -1)
        z, _ = self.attend(q, f, f, need_weights=False)
        return self.norm(self.out(z))


# -- the decoder's transformer with a detail path -------------------------------------------


def unpatchify(x: torch.Tensor, patch: int, channels: int) -> torch.Tensor:
    """(B, N, p*p*c) per-token patches -> (B, c, s*p, s*p) pixels, PixArt's own layout."""
    b, n, _ = x.shape
    s = math.isqrt(n)
    x = x.reshape(b, s, s, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, channels, s * patch, s * patch)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """The inverse of `unpatchify`: (B, c, s*p, s*p) -> (B, N, p*p*c)."""
    b, c, h, _ = x.shape
    s = h // patch
    x = x.reshape(b, c, s, patch, s, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, s * s, patch * patch * c)


class DetailProjection(nn.Linear):
    """PixArt's output projection (each token -> its own p x p patch, `weight` and `bias` as
    before) plus a convolutional detail path: a 3x3 window of the token grid, drawn at full
    resolution (pixel shuffle) and refined together with the projected patches by two 3x3
    convolutions over pixels, then added. A token's pixels see the tokens beside it, so a
    pattern crossing a patch border is drawn as one. The last convolution starts at zero: a
    transformer trained without the path computes exactly what it did before."""

    def __init__(self, inner: int, patch: int, channels: int, width: int) -> None:
        super().__init__(inner, patch * patch * channels)
        self.patch, self.channels = patch, channels
        pixel_width = max(8, width // 4)
        self.detail_in = nn.Conv2d(inner, width, 3, padding=1)
        self.detail_up = nn.Conv2d(width, patch * patch * pixel_width, 1)
        self.detail_mix = nn.Conv2d(pixel_width + channels, pixel_width, 3, padding=1)
        self.detail_out = nn.Conv2d(pixel_width, channels, 3, padding=1)
        nn.init.zeros_(self.detail_out.weight)
        nn.init.zeros_(self.detail_out.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, N, inner)
        out = super().forward(hidden)
        b, n, inner = hidden.shape
        s = math.isqrt(n)
        grid = hidden.transpose(1, 2).reshape(b, inner, s, s)
        f = F.pixel_shuffle(self.detail_up(F.silu(self.detail_in(grid))), self.patch)
        base = unpatchify(out, self.patch, self.channels)
        d = self.detail_out(F.silu(self.detail_mix(torch.cat([F.silu(f), base], 1))))
        return out + patchify(d, self.patch)


class KeyframeTransformer(PixArtTransformer2DModel):
    """`PixArtTransformer2DModel` whose output projection is a `DetailProjection` of
    `detail_width` channels (0: plain PixArt). Every other weight keeps PixArt's name, so a
    plain PixArt's state dict loads into it with only the detail path's weights new
    (`with_detail`)."""

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 16,
        attention_head_dim: int = 72,
        in_channels: int = 4,
        out_channels: int | None = 8,
        num_layers: int = 28,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        cross_attention_dim: int | None = 1152,
        attention_bias: bool = True,
        sample_size: int = 128,
        patch_size: int = 2,
        activation_fn: str = "gelu-approximate",
        num_embeds_ada_norm: int | None = 1000,
        upcast_attention: bool = False,
        norm_type: str = "ada_norm_single",
        norm_elementwise_affine: bool = False,
        norm_eps: float = 1e-6,
        interpolation_scale: int | None = None,
        use_additional_conditions: bool | None = None,
        caption_channels: int | None = None,
        attention_type: str | None = "default",
        detail_width: int = 0,
    ) -> None:
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=num_layers,
            dropout=dropout,
            norm_num_groups=norm_num_groups,
            cross_attention_dim=cross_attention_dim,
            attention_bias=attention_bias,
            sample_size=sample_size,
            patch_size=patch_size,
            activation_fn=activation_fn,
            num_embeds_ada_norm=num_embeds_ada_norm,
            upcast_attention=upcast_attention,
            norm_type=norm_type,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            interpolation_scale=interpolation_scale,
            use_additional_conditions=use_additional_conditions,
            caption_channels=caption_channels,
            attention_type=attention_type,
        )
        if detail_width:
            self.proj_out = DetailProjection(
                self.inner_dim, patch_size, self.out_channels, detail_width
            )


def settings(transformer: PixArtTransformer2DModel) -> dict:
    """The arguments that build another transformer like `transformer` (its config, without
    diffusers' own `_` entries)."""
    return {k: v for k, v in transformer.config.items() if not k.startswith("_")}


def with_detail(transformer: PixArtTransformer2DModel, width: int) -> KeyframeTransformer:
    """`transformer` (float32) with a detail path of `width` channels added, computing exactly
    what it did (the path's last layer is zero); a transformer that has one is returned as it
    is."""
    if transformer.dtype != torch.float32:
        raise ValueError(f"a detail path is added in float32, not {transformer.dtype}")
    if getattr(transformer.config, "detail_width", 0):
        return transformer
    out = KeyframeTransformer(**settings(transformer), detail_width=width)
    missing, unexpected = out.load_state_dict(transformer.state_dict(), strict=False)
    if unexpected or any(".detail_" not in k for k in missing):
        raise ValueError(
            f"transformer does not fit a detail path: missing {missing}, unexpected {unexpected}"
        )
    return out.to(transformer.device)  # float32, as `transformer` is in training


def deepened(transformer: PixArtTransformer2DModel, layers: int) -> PixArtTransformer2DModel:
    """`transformer` (float32) grown to `layers` blocks, computing exactly what it did.

    New blocks are spread evenly between the old ones. Each starts as a copy of the block before
    it with its three output projections (self-attention, cross-attention, feed-forward) at zero,
    so it adds nothing to the residual stream until training moves it (block expansion, as in
    LLaMA Pro). A transformer of `layers` blocks is returned as it is.
    """
    if transformer.dtype != torch.float32:
        raise ValueError(f"a transformer is deepened in float32, not {transformer.dtype}")
    old = transformer.config.num_layers
    if layers < old:
        raise ValueError(f"layers={layers} would remove blocks from a transformer of {old}")
    if layers == old:
        return transformer
    out = type(transformer)(**{**settings(transformer), "num_layers": layers})
    state = {
        k: v for k, v in transformer.state_dict().items() if not k.startswith("transformer_blocks.")
    }
    out.load_state_dict(state, strict=False)
    # old block i goes to position place[i]; the new ones fill the gaps, after their source
    place = [round(i * layers / old) for i in range(old)]
    source = [max(i for i in range(old) if place[i] <= j) for j in range(layers)]
    with torch.no_grad():
        for j, i in enumerate(source):
            block = out.transformer_blocks[j]
            block.load_state_dict(transformer.transformer_blocks[i].state_dict())
            if j not in place:
                for proj in (block.attn1.to_out[0], block.attn2.to_out[0], block.ff.net[2]):
                    proj.weight.zero_()
                    proj.bias.zero_()
    return out.to(transformer.device)
