"""`BuiltinKeyframer`: the keyframe interface over the trained `KeyframePipeline`.

Seeds: `draw` and `portrait` take a seed per keyframe; each keyframe's noise comes from its own
seed on the CPU, so it is the same whatever else is in the batch and whichever device draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from reelsmith.renderer.identity.check import IdentityCheck, draw_best
from reelsmith.renderer.keyframes.pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    PORTRAIT_GUIDANCE,
    KeyframePipeline,
    load_keyframe_pipeline,
)
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec

# drawings per keyframe in the product (agent) by default: the identity check keeps the best of
# two (renderer/README.md, "Keeping the best of several drawings")
DEFAULT_CANDIDATES = 2


class BuiltinKeyframer:
    """The keyframe interface over the trained `KeyframePipeline`.

    Identity comes from each character's identity-encoder embedding (`encoder` names it in
    `IdentityReference.embeddings`); the looks in the spec come from the cast. Guidance per
    kind of drawing was chosen on held-out storyworld keyframes (see `renderer/README.md`).

    With `candidates` > 1, `draw` draws each keyframe that many times (candidate k from
    `identity_check.candidate_seed(seed, k)`, the first from the seed itself) and keeps the
    drawing `check` (an `IdentityCheck`; the shipped one by default) scores highest; the
    specs' looks go to it too, for a check with a looks reader.
    Portraits are drawn once.
    """

    name = "builtin"

    def __init__(
        self,
        pipeline=None,
        *,
        steps: int | None = None,
        guidance: Mapping[str, float] | None = None,
        portrait_guidance: Mapping[str, float] | None = None,
        encoder: str = "reelsmith-identity-v1",
        candidates: int = 1,
        check=None,
        device: str = "cpu",
    ) -> None:
        self.pipe = pipeline if pipeline is not None else load_keyframe_pipeline(device=device)
        self.steps = DEFAULT_STEPS if steps is None else steps
        self.guidance = dict(guidance or DEFAULT_GUIDANCE)
        self.portrait_guidance = dict(portrait_guidance or PORTRAIT_GUIDANCE)
        self.encoder = encoder
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        self.candidates = candidates
        if candidates > 1 and check is None:
            check = IdentityCheck.load(device)
        self.check = check

    @property
    def resolution(self) -> int:
        return self.pipe.resolution

    @property
    def tokenizer(self) -> KeyframePipeline:
        """The pipeline itself: it encodes keyframes into the tokens it decodes from."""
        return self.pipe

    def _generators(self, seeds: Sequence[int]) -> list[torch.Generator]:
        return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

    def draw(self, specs, identities, seeds, tokens=None) -> np.ndarray:
        specs = list(specs)
        if len(seeds) != len(specs) or len(identities) != len(specs):
            raise ValueError(
                f"{len(specs)} specs need as many seeds and identity maps; "
                f"got {len(seeds)} seeds and {len(identities)} identity maps"
            )
        embeddings = []
        for spec, given in zip(specs, identities, strict=True):
            row = {}
            for character in spec.characters:
                reference = given.get(character.id)
                if reference is None or self.encoder not in reference.embeddings:
                    raise ValueError(
                        f"character {character.id!r} has no {self.encoder} identity embedding"
                    )
                row[character.id] = reference.embeddings[self.encoder]
            embeddings.append(row)
        if self.candidates == 1:
            return self._draw(specs, embeddings, seeds, tokens)
        n = self.candidates
        kept, _ = draw_best(
            self.check,
            lambda flat: self._draw(
                specs * n,
                embeddings * n,
                flat,
                None if tokens is None else tokens.repeat(n, *[1] * (tokens.ndim - 1)),
            ),
            seeds,
            [list(row.values()) for row in embeddings],
            n,
            [[dict(c.looks) for c in spec.characters] for spec in specs],
        )
        return kept

    def _draw(self, specs, embeddings, seeds, tokens) -> np.ndarray:
        return self.pipe(
            specs,
            tokens=tokens,
            identities=embeddings,
            num_inference_steps=self.steps,
            guidance=self.guidance,
            generator=self._generators(seeds),
        ).images

    def portrait(self, character: CharacterSpec, seed: int) -> np.ndarray:
        return self.pipe(
            KeyframeSpec.portrait(character),
            num_inference_steps=self.steps,
            guidance=self.portrait_guidance,
            generator=self._generators([seed]),
        ).images[0]
