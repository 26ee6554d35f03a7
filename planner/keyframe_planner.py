"""The keyframe planner: a causal transformer that plans each shot's keyframe tokens.

MovieDreamer-style: a transformers Llama backbone, fed `inputs_embeds` only, reads one movie
as the interleaved sequence

    [style] [cast_1 .. cast_C] | [spec_1] [tok_1,0 .. tok_1,K-1] | [spec_2] [tok_2,0 ..] | ...
     pinned prefix (P = 1 + C)   shot 1: 1 + K positions           shot 2 ...

where a cast position holds a character's identity embedding (64-d, renderer/identity/encoder.py),
a spec position the shot's `KeyframeSpec` (via `spec_indices`, one vector per shot) and a token
position one continuous keyframe token (K x d, renderer/keyframes/pipeline.py). A spec's slots
say what each character looks like and does, not who it is: the optional `slot_cast` (B, T, S)
points each slot at its cast member (-1: none or unknown), whose identity embedding (the one its
cast position holds, the null when dropped) is projected and added to the slot's vector.

Teacher forcing: keyframe token j of a shot is predicted by a Gaussian-mixture head from the
hidden state one position before it (the spec predicts token 0, token 0 predicts token 1, ...).

During training, token masking (input keyframe tokens -> a learned mask vector) and identity
dropout (cast members -> a learned null) fight overfitting. Absent cast slots (`cast_mask`
False) are the same null; padded shots come last, so they never reach real ones (causal).

`KVCacheDecoding` (`planner_decoding.py`) adds the planning methods: `generate` and `stream`
plan shot after shot with a KV cache.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlamaConfig, LlamaModel

from reelsmith.errors import InputError
from reelsmith.numerics import settle
from reelsmith.planner.planner_decoding import KVCacheDecoding
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


class KeyframePlanner(KVCacheDecoding, nn.Module):
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

    def positions(self, cast_size: int, shots: int) -> int:
        """Sequence positions of a context of the style, a cast of `cast_size` and `shots`
        whole shots (a spec and K tokens each): with `shots` the window, `stream`'s cache."""
        return 1 + cast_size + shots * (1 + self.config.token_count)

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
    folder = Path(path) if path is not None else WEIGHTS
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise InputError(f"{folder}: no keyframe planner there ({', '.join(missing)} missing)")
    settle()
    return KeyframePlanner.from_pretrained(folder).to(device)
