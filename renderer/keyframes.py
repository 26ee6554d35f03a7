"""The built-in keyframe models: the keyframe tokenizer and the decoder's condition encoder.

A keyframe is summarised by K continuous tokens of width d (`KeyframeEncoder`); the keyframe
decoder renders it back from those tokens, the identity embeddings of the shot's characters
and the shot's spec. `ConditionEncoder` turns the three conditions into the one sequence the
decoder's transformer cross-attends to:

    [K keyframe tokens] [S identity slots] [location, time, size, camera] [S character slots]

Each condition can be dropped (replaced by learned null vectors) on its own: that is what
classifier-free guidance over each condition, and drawing without tokens, rely on.

The spec is the shot in the storyworld vocabulary (`KeyframeSpec`): a character slot holds the
looks its description names (shape, colour, accessory, pattern; unknown where not named) and
its action. A portrait is a spec with the place `portrait` and one character.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from reelsmith.planner import vocabulary
from reelsmith.planner.screenplay import Action, CameraMove, Scene, Shot, ShotSize, TimeOfDay

PORTRAIT = "portrait"
LOCATIONS = (*vocabulary.LOCATIONS, PORTRAIT)
TIMES = tuple(t.value for t in TimeOfDay)
SIZES = tuple(s.value for s in ShotSize)
CAMERAS = tuple(c.value for c in CameraMove)
ACTIONS = tuple(a.value for a in Action)
TRAITS = {
    "shape": tuple(vocabulary.SHAPES),
    "colour": tuple(vocabulary.COLOURS),
    "accessory": tuple(vocabulary.ACCESSORIES),
    "pattern": tuple(vocabulary.PATTERNS),
}
SCENE_FIELDS = {"location": LOCATIONS, "time": TIMES, "size": SIZES, "camera": CAMERAS}
SLOT_FIELDS = {**TRAITS, "action": ACTIONS}


@dataclass(frozen=True)
class CharacterSpec:
    """One character of a keyframe: its id, the looks known of it, and what it does."""

    id: str
    looks: Mapping[str, str] = field(default_factory=dict)
    action: str | None = None
    description: str = ""


@dataclass(frozen=True)
class KeyframeSpec:
    """One keyframe to draw, in the storyworld vocabulary, plus its prompt as text."""

    location: str
    time: str = "day"
    size: str = "medium"
    camera: str = "static"
    characters: tuple[CharacterSpec, ...] = ()
    prompt: str = ""

    def __post_init__(self) -> None:
        for name, values in SCENE_FIELDS.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of {list(values)}")
        for character in self.characters:
            for trait, value in character.looks.items():
                if trait not in TRAITS or value not in TRAITS[trait]:
                    raise ValueError(f"character {character.id!r}: unknown look {trait}={value!r}")
            if character.action is not None and character.action not in ACTIONS:
                raise ValueError(f"character {character.id!r}: unknown action {character.action!r}")

    @classmethod
    def from_shot(
        cls, scene: Scene, shot: Shot, looks: Mapping[str, Mapping[str, str]], descriptions=None
    ) -> KeyframeSpec:
        """The spec of a screenplay shot; `looks` maps character id -> its known traits."""
        actions = {b.character: b.action.value for b in shot.blocking}
        place = vocabulary.first(scene.location, vocabulary.LOCATIONS) or scene.location
        characters = tuple(
            CharacterSpec(
                id=cid,
                looks=dict(looks.get(cid, {})),
                action=actions.get(cid),
                description=(descriptions or {}).get(cid, ""),
            )
            for cid in shot.characters
        )
        return cls(
            location=place,
            time=scene.time.value,
            size=shot.size.value,
            camera=shot.camera.value,
            characters=characters,
            prompt=shot.keyframe_prompt,
        )

    @classmethod
    def portrait(cls, character: CharacterSpec) -> KeyframeSpec:
        """A character's reference portrait: front-facing, alone, on a plain ground."""
        prompt = f"portrait of {character.description}".strip()
        return cls(location=PORTRAIT, size="close-up", characters=(character,), prompt=prompt)


def spec_indices(spec: KeyframeSpec, slots: int) -> torch.Tensor:
    """The spec as integers: 4 scene fields, then per slot (present, 4 looks, action).

    Each categorical index is 1 + its position in the vocabulary; 0 means unknown/absent.
    Characters past `slots` are left out (the decoder sees at most `slots` per keyframe).
    """
    row = [values.index(getattr(spec, name)) + 1 for name, values in SCENE_FIELDS.items()]
    for k in range(slots):
        if k < len(spec.characters):
            c = spec.characters[k]
            row.append(1)
            row += [TRAITS[t].index(c.looks[t]) + 1 if t in c.looks else 0 for t in TRAITS]
            row.append(ACTIONS.index(c.action) + 1 if c.action else 0)
        else:
            row += [0] * (2 + len(TRAITS))
    return torch.tensor(row, dtype=torch.long)


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
