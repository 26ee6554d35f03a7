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

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from reelsmith.planner.keyframe_spec import (  # noqa: F401  (re-exported: the spec is theirs too)
    ACTIONS,
    CAMERAS,
    LOCATIONS,
    PORTRAIT,
    SCENE_FIELDS,
    SIZES,
    SLOT_FIELDS,
    TIMES,
    TRAITS,
    CharacterSpec,
    KeyframeSpec,
    spec_indices,
)


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
