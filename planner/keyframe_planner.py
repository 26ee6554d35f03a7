"""The keyframe planner: a causal transformer that plans each shot's keyframe tokens.

MovieDreamer-style: a transformers Llama backbone, fed `inputs_embeds` only, reads one movie
as the interleaved sequence

    [style] [cast_1 .. cast_C] | [spec_1] [tok_1,0 .. tok_1,K-1] | [spec_2] [tok_2,0 ..] | ...
     pinned prefix (P = 1 + C)   shot 1: 1 + K positions           shot 2 ...

where a cast position holds a character's identity embedding (64-d, memory/identity.py), a spec
position the shot's `KeyframeSpec` (via `spec_indices`, one vector per shot) and a token position
one continuous keyframe token (K x d, renderer/keyframes.py). A spec's slots say what each
character looks like and does, not who it is: the optional `slot_cast` (B, T, S) points each slot
at its cast member (-1: none or unknown), whose identity embedding (the one its cast position
holds, the null when dropped) is projected and added to the slot's vector.

Teacher forcing: keyframe token j of a shot is predicted by a Gaussian-mixture head from the
hidden state one position before it (the spec predicts token 0, token 0 predicts token 1, ...).

During training, token masking (input keyframe tokens -> a learned mask vector) and identity
dropout (cast members -> a learned null) fight overfitting. Absent cast slots (`cast_mask`
False) are the same null; padded shots come last, so they never reach real ones (causal).

`generate` plans shot after shot with a KV cache. The cache holds the pinned prefix plus at most
`window` shots, the one being planned included; when the next shot would make it `window + 1`,
the window slides by `stride` shots: the cache is rebuilt from the prefix plus the last
`window - stride` finished shots' embeddings, re-encoded with positions restarting at 0, and
then grows shot by shot again. So memory is bounded by P + window * (1 + K) positions however
long the movie is; every planning step sees what a training sequence of at most `window` shots
shows (a shot planned from the prefix plus its last `window - stride` to `window - 1` shots);
and the re-encoding costs one pass over `window - stride` shots every `stride` shots. (A cache
that dropped its oldest shot in place would keep keys and values computed with that shot in
view, which no recomputation reproduces; rebuilding keeps cached and uncached plans equal.)
Decoding (`decode`) runs the backbone's layers directly on a preallocated `KVCache`: at batch 1
a step of this small model costs about as much in per-call bookkeeping as in arithmetic.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from transformers import LlamaConfig, LlamaModel

from reelsmith.numerics import settle
from reelsmith.schema.conditioning import SCENE_FIELDS, SLOT_FIELDS, TRAITS

WEIGHTS = Path(__file__).parent / "weights" / "planner"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STYLE, IDENTITY, SPEC, TOKEN = range(4)  # type ids of the four kinds of position


@dataclass
class PlannerConfig:
    """Sizes of the planner; defaults are the built-in model's."""

    token_count: int = 2  # K keyframe tokens per shot (the keyframe tokenizer's)
    token_dim: int = 32  # d, width of one keyframe token
    identity_dim: int = 64  # width of an identity embedding (memory/identity.py)
    slots: int = 4  # character slots of a spec (as in `spec_indices`)
    hidden: int = 192  # transformer width; 4 layers of 192: 2.6M weights, 5.2 MB in float16
    layers: int = 4
    heads: int = 4
    mixtures: int = 8  # M Gaussian components per predicted token
    window: int = 16  # W shots held in the generation KV cache, the current one included
    stride: int | None = None  # shots a full generation window slides by (None: window // 2)
    max_cast: int = 8  # most identity tokens in the pinned prefix
    styles: int = 1  # learned style vectors
    token_mask_prob: float = 0.1  # training: input keyframe tokens replaced by the mask vector
    identity_drop_prob: float = 0.1  # training: cast identities replaced by the null
    log_scale_range: tuple[float, float] = field(default=(-7.0, 2.0))  # clamp of log-std
    max_positions: int = 4096  # RoPE table length; training sequences must fit

    @property
    def spec_width(self) -> int:
        return len(SCENE_FIELDS) + self.slots * (2 + len(TRAITS))


@dataclass
class PlanOutput:
    """What `generate` returns: tokens (B, shots, K, d) and the KV-cache length at each step."""

    tokens: torch.Tensor
    cache_lengths: list[int]


@dataclass
class KVCache:
    """The planner's decoding cache: every layer's keys and values at each position so far.

    Allocated once per `stream` at the largest context the window allows and refilled from
    position 0 at each rebuild, so decoding allocates nothing per step; it also holds the
    layers' weights with the query/key/value and gate/up projections each fused into one
    matrix, so a step makes four matrix products per layer rather than seven, each matrix
    stored (in, out), as a one-row product reads it fastest.
    """

    keys: torch.Tensor  # (layers, B, heads, capacity, head_dim)
    values: torch.Tensor
    cos: torch.Tensor  # (capacity, 1, 1, head_dim): the rotary table of each position
    sin: torch.Tensor  # the same, its first half negated (see `decode`)
    weights: list[dict[str, torch.Tensor]]  # per layer, its weights (q|k|v and gate|up fused)
    length: int = 0  # positions filled

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]


class SpecEmbedder(nn.Module):
    """`spec_indices` rows (..., 4 + 6S) long -> one vector per shot (..., hidden).

    Each field is embedded as in `ConditionEncoder`; the slots (with a slot-index embedding and,
    where given, their character's projected identity (..., S, hidden)) go through a small MLP,
    absent ones are zeroed, and everything is summed.
    """

    def __init__(self, slots: int, hidden: int) -> None:
        super().__init__()
        self.slots = slots
        self.scene = nn.ModuleList(nn.Embedding(len(v) + 1, hidden) for v in SCENE_FIELDS.values())
        self.slot = nn.ModuleList(nn.Embedding(len(v) + 1, hidden) for v in SLOT_FIELDS.values())
        self.slot_index = nn.Parameter(torch.randn(slots, hidden) * 0.02)
        self.slot_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(
        self, spec: torch.Tensor, slot_identity: torch.Tensor | None = None
    ) -> torch.Tensor:
        scene = sum(emb(spec[..., k]) for k, emb in enumerate(self.scene))  # (..., H)
        slot_ix = spec[..., len(SCENE_FIELDS) :].unflatten(-1, (self.slots, 2 + len(TRAITS)))
        slot = sum(emb(slot_ix[..., 1 + k]) for k, emb in enumerate(self.slot))  # (..., S, H)
        if slot_identity is not None:
            slot = slot + slot_identity
        slot = self.slot_out(slot + self.slot_index) * slot_ix[..., :1].to(slot.dtype)
        return self.out(scene + slot.sum(-2))


class MixtureHead(nn.Module):
    """Hidden (..., H) -> a diagonal Gaussian mixture over one keyframe token (..., d)."""

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.m, self.d = config.mixtures, config.token_dim
        self.low, self.high = config.log_scale_range
        self.proj = nn.Linear(config.hidden, self.m * (1 + 2 * self.d))

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> logits (..., M), means (..., M, d), log_scales (..., M, d) clamped."""
        out = self.proj(hidden)
        logits, rest = out.split([self.m, 2 * self.m * self.d], -1)
        means, log_scales = rest.unflatten(-1, (self.m, 2 * self.d)).chunk(2, -1)
        return logits, means, log_scales.clamp(self.low, self.high)

    def nll(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of target (..., d), per token dimension -> (...)."""
        logits, means, log_scales = self(hidden)
        z = (target.unsqueeze(-2) - means) * torch.exp(-log_scales)  # (..., M, d)
        log_prob = -0.5 * z.pow(2) - log_scales - 0.5 * math.log(2 * math.pi)
        log_mix = torch.log_softmax(logits, -1) + log_prob.sum(-1)  # (..., M)
        return -torch.logsumexp(log_mix, -1) / self.d

    def sample(
        self,
        hidden: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Draw one token (B, d) from hidden (B, H); temperature scales the std.

        Temperature 0 returns the mean of the most likely component. `generator` is one for
        the batch, or one per row: then each row's draw depends on its own generator only.
        """
        logits, means, log_scales = self(hidden)
        per_row = isinstance(generator, Sequence)
        if temperature == 0:
            pick = logits.argmax(-1)
        elif per_row:
            probs = torch.softmax(logits.float(), -1)
            pick = torch.cat(
                [
                    torch.multinomial(p[None].to(g.device), 1, generator=g).to(p.device)[0]
                    for p, g in zip(probs, generator, strict=True)
                ]
            )
        else:
            pick = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
        rows = torch.arange(len(hidden), device=hidden.device)
        mean, log_scale = means[rows, pick], log_scales[rows, pick]  # (B, d)
        if temperature == 0:
            return mean
        if per_row:
            noise = torch.stack(
                [torch.randn(mean.shape[1:], generator=g, device=g.device) for g in generator]
            ).to(mean.device, mean.dtype)
        else:
            noise = torch.randn(
                mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
            )
        return mean + temperature * torch.exp(log_scale) * noise


class KeyframePlanner(nn.Module):
    """The planner transformer (see the module docstring for the sequence layout).

    forward(style (B,), cast (B, C, D), cast_mask (B, C), specs (B, T, 4 + 6S) long,
    tokens (B, T, K, d), shot_mask (B, T), slot_cast (B, T, S) long) -> (loss, nll (B, T, K)).
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        if config.window < 1:
            raise ValueError(f"window must be >= 1, got {config.window}")
        if config.stride is not None and not 1 <= config.stride <= config.window:
            raise ValueError(f"stride must be in [1, window {config.window}], got {config.stride}")
        self.config = c = config
        self.style_embedder = nn.Embedding(c.styles, c.hidden)
        self.identity_embedder = nn.Linear(c.identity_dim, c.hidden)
        self.cast_slot = nn.Embedding(c.max_cast, c.hidden)
        self.identity_null = nn.Parameter(torch.randn(c.identity_dim) * 0.02)
        self.spec_embedder = SpecEmbedder(c.slots, c.hidden)
        self.slot_identity = nn.Linear(c.identity_dim, c.hidden)  # a slot's cast member
        self.token_embedder = nn.Linear(c.token_dim, c.hidden)
        self.token_index = nn.Embedding(c.token_count, c.hidden)
        self.token_mask = nn.Parameter(torch.randn(c.token_dim) * 0.02)
        self.type_embedding = nn.Embedding(4, c.hidden)
        backbone = LlamaConfig(
            vocab_size=1,  # unused: the backbone is fed inputs_embeds only
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
            hidden_size=c.hidden,
            intermediate_size=4 * c.hidden,
            num_hidden_layers=c.layers,
            num_attention_heads=c.heads,
            num_key_value_heads=c.heads,
            max_position_embeddings=c.max_positions,
        )
        self.backbone = LlamaModel(backbone)
        self.head = MixtureHead(c)

    # -- inputs ---------------------------------------------------------------------------

    def check_inputs(
        self, style, cast, cast_mask, specs, tokens=None, shot_mask=None, slot_cast=None
    ) -> None:
        c = self.config
        if style.ndim != 1 or style.dtype != torch.long:
            raise ValueError(f"style must be (B,) long, got {tuple(style.shape)} {style.dtype}")
        b = len(style)
        if len(style) and not (int(style.min()) >= 0 and int(style.max()) < c.styles):
            raise ValueError(f"style ids must be in [0, {c.styles}), got {style.tolist()}")
        if cast.ndim != 3 or cast.shape[0] != b or cast.shape[2] != c.identity_dim:
            raise ValueError(f"cast must be ({b}, C, {c.identity_dim}), got {tuple(cast.shape)}")
        if cast.shape[1] > c.max_cast:
            raise ValueError(f"cast of {cast.shape[1]} is bigger than max_cast {c.max_cast}")
        if tuple(cast_mask.shape) != tuple(cast.shape[:2]) or cast_mask.dtype != torch.bool:
            raise ValueError(
                f"cast_mask must be bool {tuple(cast.shape[:2])}, got "
                f"{tuple(cast_mask.shape)} {cast_mask.dtype}"
            )
        if specs.ndim != 3 or specs.shape[0] != b or specs.shape[2] != c.spec_width:
            raise ValueError(f"specs must be ({b}, T, {c.spec_width}), got {tuple(specs.shape)}")
        t = specs.shape[1]
        if tokens is not None and tuple(tokens.shape) != (b, t, c.token_count, c.token_dim):
            raise ValueError(
                f"tokens must be {(b, t, c.token_count, c.token_dim)}, got {tuple(tokens.shape)}"
            )
        if shot_mask is not None and tuple(shot_mask.shape) != (b, t):
            raise ValueError(f"shot_mask must be {(b, t)}, got {tuple(shot_mask.shape)}")
        if slot_cast is not None:
            if tuple(slot_cast.shape) != (b, t, c.slots) or slot_cast.dtype != torch.long:
                raise ValueError(
                    f"slot_cast must be long {(b, t, c.slots)}, got "
                    f"{tuple(slot_cast.shape)} {slot_cast.dtype}"
                )
            n = cast.shape[1]
            if slot_cast.numel() and not (-1 <= int(slot_cast.min()) <= int(slot_cast.max()) < n):
                raise ValueError(
                    f"slot_cast must point into the cast of {n} (or be -1), got values from "
                    f"{int(slot_cast.min())} to {int(slot_cast.max())}"
                )

    def cast_identities(self, cast, cast_mask, identity_drop_prob: float = 0.0) -> torch.Tensor:
        """The identity each cast position holds (B, C, D): absent or dropped ones are the null."""
        keep = cast_mask
        if identity_drop_prob > 0:
            keep = keep & (torch.rand(cast_mask.shape, device=cast.device) >= identity_drop_prob)
        return torch.where(keep[..., None], cast, self.identity_null.to(cast.dtype))

    def embed_prefix(self, style: torch.Tensor, identities: torch.Tensor) -> torch.Tensor:
        """[style] [cast] from `cast_identities` (B, C, D) -> (B, 1 + C, H)."""
        slots = torch.arange(identities.shape[1], device=identities.device)
        ident = self.identity_embedder(identities) + self.cast_slot(slots)  # (B, C, H)
        ident = ident + self.type_embedding.weight[IDENTITY]
        style = self.style_embedder(style) + self.type_embedding.weight[STYLE]
        return torch.cat([style[:, None], ident], 1)

    def embed_specs(
        self,
        specs: torch.Tensor,
        slot_cast: torch.Tensor | None = None,
        identities: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, 4 + 6S) long -> (B, T, H); with slot_cast (B, T, S) each slot also gets its
        cast member's identity from `identities` (B, C, D), as the prefix holds it."""
        slot_identity = None
        if slot_cast is not None and identities is not None and identities.shape[1] > 0:
            rows = torch.arange(len(specs), device=specs.device)[:, None, None]
            picked = identities[rows, slot_cast.clamp(min=0)]  # (B, T, S, D)
            known = (slot_cast >= 0)[..., None].to(picked.dtype)
            slot_identity = self.slot_identity(picked) * known  # (B, T, S, H)
        return self.spec_embedder(specs, slot_identity) + self.type_embedding.weight[SPEC]

    def embed_tokens(self, tokens: torch.Tensor, mask_prob: float = 0.0) -> torch.Tensor:
        """(B, T, K, d) -> (B, T, K, H); in training a fraction becomes the mask vector."""
        if mask_prob > 0:
            masked = torch.rand(tokens.shape[:-1], device=tokens.device) < mask_prob
            tokens = torch.where(masked[..., None], self.token_mask.to(tokens.dtype), tokens)
        k = torch.arange(tokens.shape[-2], device=tokens.device)
        return self.token_embedder(tokens) + self.token_index(k) + self.type_embedding.weight[TOKEN]

    # -- training -------------------------------------------------------------------------

    def forward(
        self,
        style: torch.Tensor,
        cast: torch.Tensor,
        cast_mask: torch.Tensor,
        specs: torch.Tensor,
        tokens: torch.Tensor,
        shot_mask: torch.Tensor | None = None,
        slot_cast: torch.Tensor | None = None,
        token_mask_prob: float | None = None,
        identity_drop_prob: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced loss over padded movies -> (mean nll over real shots, nll (B, T, K)).

        The regularisers' probabilities default to the config's and act in training mode only.
        The mixture's densities are computed in float32, also under autocast.
        """
        self.check_inputs(style, cast, cast_mask, specs, tokens, shot_mask, slot_cast)
        h = self.hidden_states(
            style,
            cast,
            cast_mask,
            specs,
            tokens,
            slot_cast=slot_cast,
            token_mask_prob=token_mask_prob,
            identity_drop_prob=identity_drop_prob,
        )
        with torch.autocast(h.device.type, enabled=False):
            nll = self.head.nll(h.float(), tokens.float())  # (B, T, K)
        if shot_mask is None:
            return nll.mean(), nll
        weight = shot_mask[..., None].to(nll.dtype).expand_as(nll)
        return (nll * weight).sum() / weight.sum().clamp_min(1), nll

    def hidden_states(
        self,
        style: torch.Tensor,
        cast: torch.Tensor,
        cast_mask: torch.Tensor,
        specs: torch.Tensor,
        tokens: torch.Tensor,
        slot_cast: torch.Tensor | None = None,
        token_mask_prob: float | None = None,
        identity_drop_prob: float | None = None,
    ) -> torch.Tensor:
        """The hidden state that predicts each keyframe token -> (B, T, K, H)."""
        c = self.config
        t, k = tokens.shape[1:3]
        p = 1 + cast.shape[1]
        if (needed := self.positions(cast.shape[1], t)) > c.max_positions:
            raise ValueError(f"{t} shots need {needed} positions > {c.max_positions}")
        train = self.training
        tmp = (c.token_mask_prob if token_mask_prob is None else token_mask_prob) * train
        idp = (c.identity_drop_prob if identity_drop_prob is None else identity_drop_prob) * train
        identities = self.cast_identities(cast, cast_mask, idp)  # (B, C, D)
        prefix = self.embed_prefix(style, identities)  # (B, P, H)
        spec_embeds = self.embed_specs(specs, slot_cast, identities)  # (B, T, H)
        shots = torch.cat([spec_embeds[:, :, None], self.embed_tokens(tokens, tmp)], 2)
        x = torch.cat([prefix, shots.flatten(1, 2)], 1)  # (B, P + T(1+K), H)
        h = self.backbone(inputs_embeds=x, use_cache=False).last_hidden_state
        # shot t, token j is predicted from position P + t(1+K) + j: its spec, or token j-1
        return h[:, p:].unflatten(1, (t, 1 + k))[:, :, :k]  # (B, T, K, H)

    # -- inference ------------------------------------------------------------------------

    def decode(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed x (B, n, H) after what the cache holds -> the last hidden state (B, H).

        The backbone's layers as plain tensor operations on the cache's fused copies of their
        weights: the same numbers as `self.backbone(inputs_embeds=x, past_key_values=...)` (to
        float rounding) without its per-call bookkeeping (masks, cache objects, module calls),
        which at batch 1 costs more than the arithmetic of a one-position step.
        """
        b, n, hidden = x.shape
        start, end = cache.length, cache.length + n
        if end > cache.capacity:
            raise ValueError(f"{end} positions do not fit the cache's {cache.capacity}")
        heads, eps = self.config.heads, self.backbone.config.rms_norm_eps
        head_dim = hidden // heads
        half = head_dim // 2
        # Llama's rotary embedding, q cos + rotate_half(q) sin, with rotate_half(q) sin computed
        # as q's two halves swapped times the table whose first half is negated
        cos, sin = cache.cos[start:end], cache.sin[start:end]  # (n, 1, 1, head_dim)
        # a query sees the keys up to its own position (none after it)
        mask = None if n == 1 else torch.ones(n, end, dtype=torch.bool, device=x.device).tril(start)
        x = x.reshape(b * n, hidden)  # the residual stream, one row per position
        for i, w in enumerate(cache.weights):
            h = F.rms_norm(x, (hidden,), w["input_norm"], eps)
            qkv = (h @ w["qkv"]).view(b, n, 3, heads, head_dim)
            qk = qkv[:, :, :2]  # queries and keys rotated together: (B, n, 2, heads, head_dim)
            qk = qk * cos + qk.unflatten(-1, (2, half)).flip(-2).flatten(-2) * sin
            q, k = qk.permute(2, 0, 3, 1, 4)  # each (B, heads, n, head_dim)
            cache.keys[i, :, :, start:end] = k
            cache.values[i, :, :, start:end] = qkv[:, :, 2].transpose(1, 2)
            o = F.scaled_dot_product_attention(
                q, cache.keys[i, :, :, :end], cache.values[i, :, :, :end], attn_mask=mask
            )
            x = torch.addmm(x, o.transpose(1, 2).reshape(b * n, hidden), w["o"])
            gate, up = (F.rms_norm(x, (hidden,), w["post_norm"], eps) @ w["gate_up"]).chunk(2, -1)
            x = torch.addmm(x, F.silu(gate).mul_(up), w["down"])
        cache.length = end
        return F.rms_norm(x.view(b, n, hidden)[:, -1], (hidden,), self.backbone.norm.weight, eps)

    def new_cache(self, batch: int, positions: int, like: torch.Tensor) -> KVCache:
        """An empty `KVCache` of `positions` for `batch` movies, on `like`'s device and dtype."""
        c, bc = self.config, self.backbone.config
        if (
            bc.attention_bias
            or bc.mlp_bias
            or bc.hidden_act != "silu"
            or bc.head_dim * c.heads != c.hidden
        ):
            raise ValueError("the planner's decoding step assumes Llama's defaults")
        head_dim = c.hidden // c.heads
        shape = (c.layers, batch, c.heads, positions, head_dim)
        ids = torch.arange(positions, device=like.device)[None]
        cos, sin = self.backbone.rotary_emb(like, ids)  # (1, positions, head_dim)
        sign = torch.ones(head_dim, device=like.device, dtype=sin.dtype)
        sign[: head_dim // 2] = -1
        weights = [
            {
                "input_norm": layer.input_layernorm.weight,
                "qkv": torch.cat(
                    [
                        layer.self_attn.q_proj.weight,
                        layer.self_attn.k_proj.weight,
                        layer.self_attn.v_proj.weight,
                    ]
                )
                .t()
                .contiguous(),
                "o": layer.self_attn.o_proj.weight.t().contiguous(),
                "post_norm": layer.post_attention_layernorm.weight,
                "gate_up": torch.cat([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight])
                .t()
                .contiguous(),
                "down": layer.mlp.down_proj.weight.t().contiguous(),
            }
            for layer in self.backbone.layers
        ]
        return KVCache(
            keys=like.new_zeros(shape),
            values=like.new_zeros(shape),
            cos=cos[0, :, None, None],
            sin=(sin * sign)[0, :, None, None],
            weights=weights,
        )

    @torch.no_grad()
    def stream(
        self,
        style: torch.Tensor,
        cast: torch.Tensor,
        cast_mask: torch.Tensor,
        specs: torch.Tensor,
        slot_cast: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        window: int | None = None,
        stride: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """Plan the keyframe tokens of every shot, in order, for B movies at once, yielding
        each shot's as soon as it is planned, so nothing that grows with the movie is held.

        Args:
            style: (B,) style ids.
            cast: (B, C, identity_dim) identity embeddings; cast_mask (B, C) marks real ones.
            specs: (B, T, 4 + 6S) `spec_indices` rows; all movies share the shot count T
                (plan movies of different lengths in separate calls).
            slot_cast: (B, T, S) cast index of each slot's character, -1 where none or unknown.
            temperature: Scales the std of the mixture; 0 takes the most likely mean.
            generator: Makes sampling deterministic; a list of B generators (one per movie)
                makes each movie's plan independent of the others in the batch.
            window: Shots held in the KV cache, the current one included (default config's).
            stride: Shots the full window slides by: a rebuild keeps the last
                `window - stride` finished shots (default: the config's with the config's
                window, else half the window).

        Yields:
            Per shot: its tokens (B, K, d) and the KV-cache length after each of its K steps.
            Bad inputs raise `ValueError` at the first step.
        """
        # 1. check inputs
        self.check_inputs(style, cast, cast_mask, specs, slot_cast=slot_cast)
        window = self.config.window if window is None else window
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        stride = self.stride_for(window) if stride is None else stride
        if not 1 <= stride <= window:
            raise ValueError(f"stride must be in [1, window {window}], got {stride}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if isinstance(generator, Sequence) and len(generator) != len(style):
            raise ValueError(f"{len(generator)} generators given for {len(style)} movies")
        k = self.config.token_count
        capacity = self.positions(cast.shape[1], window)  # the largest context it holds
        if capacity > self.config.max_positions:
            raise ValueError(
                f"window {window} does not fit max_positions {self.config.max_positions}"
            )
        # 2. encode the pinned prefix; specs are embedded shot by shot, so that working memory
        #    does not grow with the movie
        identities = self.cast_identities(cast, cast_mask)  # (B, C, D)
        prefix = self.embed_prefix(style, identities)  # (B, P, H)
        t_all = specs.shape[1]
        finished: deque[torch.Tensor] = deque(maxlen=window - 1)  # (B, 1+K, H) per shot
        cache = self.new_cache(len(style), capacity, prefix)
        cached_shots = 0
        # 3. plan shot after shot
        for t in range(t_all):
            pointers = None if slot_cast is None else slot_cast[:, t : t + 1]
            spec = self.embed_specs(specs[:, t : t + 1], pointers, identities)  # (B, 1, H)
            if t == 0 or cached_shots == window:
                # (re)build: pinned prefix + the last window - stride shots, positions from 0
                kept = [] if t == 0 else list(finished)[len(finished) - (window - stride) :]
                cache.length = 0
                h = self.decode(torch.cat([prefix, *kept, spec], 1), cache)
                cached_shots = len(kept) + 1
            else:  # the previous shot's last token was not fed yet: feed it with this spec
                h = self.decode(torch.cat([finished[-1][:, -1:], spec], 1), cache)
                cached_shots += 1
            lengths = [cache.length]
            shot_tokens = []
            for j in range(k):
                token = self.head.sample(h, temperature, generator)  # (B, d)
                shot_tokens.append(token)
                if j + 1 < k:
                    h = self.decode(self._token_embed(token, j), cache)
                    lengths.append(cache.length)
            tokens = torch.stack(shot_tokens, 1)  # (B, K, d)
            finished.append(torch.cat([spec, self.embed_tokens(tokens[:, None])[:, 0]], 1))
            yield tokens, lengths

    @torch.no_grad()
    def generate(
        self,
        style: torch.Tensor,
        cast: torch.Tensor,
        cast_mask: torch.Tensor,
        specs: torch.Tensor,
        slot_cast: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        window: int | None = None,
        stride: int | None = None,
    ) -> PlanOutput:
        """`stream`'s shots collected: `PlanOutput` with tokens (B, T, K, d) and the cache
        length after each step. Arguments as `stream`'s."""
        b, t = specs.shape[:2] if specs.ndim == 3 else (len(style), 0)
        planned = cast.new_zeros(b, t, self.config.token_count, self.config.token_dim)
        lengths: list[int] = []
        steps = self.stream(
            style, cast, cast_mask, specs, slot_cast, temperature, generator, window, stride
        )
        for n, (tokens, shot_lengths) in enumerate(steps):
            planned[:, n] = tokens
            lengths += shot_lengths
        return PlanOutput(tokens=planned, cache_lengths=lengths)

    def positions(self, cast_size: int, shots: int) -> int:
        """Sequence positions of a context of the style, a cast of `cast_size` and `shots`
        whole shots (a spec and K tokens each): with `shots` the window, `stream`'s cache."""
        return 1 + cast_size + shots * (1 + self.config.token_count)

    def stride_for(self, window: int) -> int:
        """The default stride of a window: the config's for its own window, else half."""
        if window == self.config.window and self.config.stride is not None:
            return self.config.stride
        return max(1, window // 2)

    def _token_embed(self, token: torch.Tensor, j: int) -> torch.Tensor:
        """One sampled token (B, d) at index j -> (B, 1, H)."""
        index = self.token_index.weight[j]
        return (self.token_embedder(token) + index + self.type_embedding.weight[TOKEN])[:, None]

    # -- save / load ----------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config.json and model.safetensors into folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2))
        state = {name: tensor.contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> KeyframePlanner:
        """Load a planner written by `save_pretrained`, in eval mode."""
        folder = Path(folder)
        raw = json.loads((folder / CONFIG_NAME).read_text())
        raw["log_scale_range"] = tuple(raw["log_scale_range"])
        model = cls(PlannerConfig(**raw))
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        return model.eval()


def load_keyframe_planner(path: str | Path | None = None, device: str = "cpu") -> KeyframePlanner:
    """The keyframe planner from a `save_pretrained` folder; the shipped one by default."""
    from reelsmith.errors import InputError

    folder = Path(path) if path is not None else WEIGHTS
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise InputError(f"{folder}: no keyframe planner there ({', '.join(missing)} missing)")
    settle()
    return KeyframePlanner.from_pretrained(folder).to(device)
