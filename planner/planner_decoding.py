"""Planning with a KV cache: the generation half of `KeyframePlanner` (`keyframe_planner.py`).

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

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F


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


class KVCacheDecoding:
    """`KeyframePlanner`'s generation methods, mixed into it: they read the planner's
    `config` (a `PlannerConfig`), `backbone` (a Llama), `head` (the mixture head) and
    embedders."""

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
        window, stride, capacity = self.check_plan(
            style, cast, cast_mask, specs, slot_cast, temperature, generator, window, stride
        )
        k = self.config.token_count
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

    def stride_for(self, window: int) -> int:
        """The default stride of a window: the config's for its own window, else half."""
        if window == self.config.window and self.config.stride is not None:
            return self.config.stride
        return max(1, window // 2)

    def check_plan(
        self, style, cast, cast_mask, specs, slot_cast, temperature, generator, window, stride
    ) -> tuple[int, int, int]:
        """Raise ValueError naming the first bad input of `stream`; return its window and
        stride (defaults filled in) and the cache's capacity in positions."""
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
        capacity = self.positions(cast.shape[1], window)  # the largest context it holds
        if capacity > self.config.max_positions:
            raise ValueError(
                f"window {window} does not fit max_positions {self.config.max_positions}"
            )
        return window, stride, capacity
