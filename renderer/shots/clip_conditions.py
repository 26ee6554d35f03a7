"""The per-clip conditions `MotionPipeline` takes, checked and laid out as tensors.

Each field holds one entry per clip, or is None where not given: the camera move, each
character's action, identity embedding and known looks, the motion latent of the frame before
the clip, the index in its shot of its first frame and the whole shot's length. A clip's
characters are those named in its actions, identities or looks, in order of first mention.
`tensors` lays them out as `MotionTransformer.conditions` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reelsmith.renderer.pipeline_steps import check_identity
from reelsmith.renderer.shots.motion_transformer import phase_features
from reelsmith.schema.conditioning import ACTIONS, CAMERAS, TRAITS


@dataclass
class ClipConditions:
    """What each clip is conditioned on besides its keyframe (see `MotionPipeline.__call__`)."""

    cameras: Sequence[str | None] | None = None
    actions: Sequence[Mapping[str, str]] | None = None
    identities: Sequence[Mapping[str, torch.Tensor | np.ndarray]] | None = None
    looks: Sequence[Mapping[str, Mapping[str, str]]] | None = None
    context: Sequence[torch.Tensor | None] | None = None
    offsets: Sequence[int] | None = None
    shot_frames: Sequence[int] | None = None

    def characters(self, i: int) -> list[str]:
        """Clip i's characters in order of first mention: actions, then identities, then looks."""
        seen: dict[str, None] = {}
        for given in (self.actions, self.identities, self.looks):
            if given is not None:
                seen.update(dict.fromkeys(given[i]))
        return list(seen)

    def check(self, b: int, slots: int, identity_dim: int, context_shape: tuple) -> None:
        """Raise ValueError naming the first bad value, for `b` clips of a model with `slots`
        character slots, `identity_dim` identities and motion latents of `context_shape`."""
        for name in ("cameras", "actions", "identities", "looks", "offsets", "shot_frames"):
            value = getattr(self, name)
            if value is not None and len(value) != b:
                raise ValueError(f"{len(value)} {name} given for {b} keyframes")
        self._check_vocabulary(identity_dim)
        for i in range(b):
            n = len(self.characters(i))
            if n > slots:
                raise ValueError(f"keyframe {i}: {n} characters, this model takes {slots}")
        if self.context is not None:
            if len(self.context) != b:
                raise ValueError(f"{len(self.context)} contexts given for {b} keyframes")
            for i, c in enumerate(self.context):
                if c is not None and tuple(torch.as_tensor(c).shape) != context_shape:
                    got = tuple(torch.as_tensor(c).shape)
                    raise ValueError(f"context {i} has shape {got}, expected {context_shape}")
        for i, value in enumerate(self.offsets or ()):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"offsets[{i}] {value!r} must be an integer >= 0")
        for i, value in enumerate(self.shot_frames or ()):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"shot_frames[{i}] {value!r} must be an integer >= 1")

    def _check_vocabulary(self, identity_dim: int) -> None:
        """Camera moves, actions and looks the model knows; identities of its width."""
        for camera in self.cameras or ():
            if camera is not None and _value(camera) not in CAMERAS:
                raise ValueError(f"unknown camera move {camera!r} (one of {list(CAMERAS)})")
        for i, given in enumerate(self.actions or ()):
            for who, action in given.items():
                if _value(action) not in ACTIONS:
                    raise ValueError(
                        f"keyframe {i}: character {who!r} has unknown action {action!r} "
                        f"(one of {list(ACTIONS)})"
                    )
        for i, given in enumerate(self.identities or ()):
            for who, emb in given.items():
                check_identity(i, who, emb, identity_dim)
        for i, given in enumerate(self.looks or ()):
            for who, traits in given.items():
                for trait, value in traits.items():
                    if trait not in TRAITS or value not in TRAITS[trait]:
                        raise ValueError(
                            f"keyframe {i}: {who!r} has unknown look {trait}={value!r}"
                        )

    def tensors(
        self, b: int, slots: int, identity_dim: int, context_shape: tuple, native_frames: int
    ) -> dict[str, torch.Tensor]:
        """`MotionTransformer.conditions`' arguments but the keyframes, on the CPU: camera (B,),
        identities (B, S, D), identity_mask (B, S), slot_spec (B, S, 6), context (B, 3, g, g),
        has_context (B,) and phase (B, T, 2)."""
        camera = torch.zeros(b, dtype=torch.long)
        ident = torch.zeros(b, slots, identity_dim)
        have = torch.zeros(b, slots, dtype=torch.bool)
        spec = torch.zeros(b, slots, 2 + len(TRAITS), dtype=torch.long)
        ctx = torch.zeros(b, *context_shape)
        has_ctx = torch.zeros(b, dtype=torch.bool)
        for i in range(b):
            if self.cameras is not None and self.cameras[i] is not None:
                camera[i] = CAMERAS.index(_value(self.cameras[i])) + 1
            for k, who in enumerate(self.characters(i)):
                spec[i, k, 0] = 1
                traits = (self.looks[i] if self.looks else {}).get(who, {})
                for t, (trait, values) in enumerate(TRAITS.items()):
                    if trait in traits:
                        spec[i, k, 1 + t] = values.index(traits[trait]) + 1
                action = (self.actions[i] if self.actions else {}).get(who)
                if action is not None:
                    spec[i, k, -1] = ACTIONS.index(_value(action)) + 1
                emb = (self.identities[i] if self.identities else {}).get(who)
                if emb is not None:
                    ident[i, k] = torch.as_tensor(emb, dtype=torch.float32)
                    have[i, k] = True
            if self.context is not None and self.context[i] is not None:
                ctx[i] = torch.as_tensor(self.context[i], dtype=torch.float32)
                has_ctx[i] = True
        offsets = torch.tensor(self.offsets if self.offsets is not None else [0] * b)
        lengths = self.shot_frames if self.shot_frames is not None else [native_frames] * b
        phase = phase_features(offsets, torch.tensor(lengths), native_frames)
        return {
            "camera": camera,
            "identities": ident,
            "identity_mask": have,
            "slot_spec": spec,
            "context": ctx,
            "has_context": has_ctx,
            "phase": phase,
        }


def _value(name) -> str:
    """A vocabulary word given as text or as its enum member ("pan-left", `CameraMove`)."""
    return str(getattr(name, "value", name))
