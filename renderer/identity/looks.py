"""The looks reader: a character's crop -> how likely each of its looks is.

Memory keeps every character's looks (shape, colour, accessory, pattern), and each keyframe's
spec spells them out. The identity encoder compares a figure with a portrait as a whole and,
at the size of a small figure in a 64-pixel frame, barely tells spots from stripes; this reader
names each trait. With it, the identity check that keeps the best of several drawings can fit
each character to a figure by its looks (`IdentityCheck.load(looks=True)`; measured against
the identity embeddings in renderer/README.md, it chooses no better, so it is not the default).
It is trained on storyworld keyframes' ground truth (`python -m reelsmith.training looks`):
crops of the characters, their boxes jittered and half of them softened as a decoder draws,
each trait a softmax over its vocabulary. Its vocabulary is part of its config, so the labels
travel with the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from reelsmith.renderer import shipped
from reelsmith.renderer.identity.encoder import crop_body
from reelsmith.renderer.loading import load_model
from reelsmith.schema import vocabulary

WEIGHTS = shipped.LOOKS
TRAITS = {
    "shape": list(vocabulary.SHAPES),
    "colour": list(vocabulary.COLOURS),
    "accessory": list(vocabulary.ACCESSORIES),
    "pattern": list(vocabulary.PATTERNS),
}


class LooksReader(ModelMixin, ConfigMixin):
    """A small CNN: crops (B, 3, r, r) in [-1, 1] -> per trait, logits over its values."""

    @register_to_config
    def __init__(
        self,
        resolution: int = 32,
        width: int = 48,
        traits: Mapping[str, Sequence[str]] | Sequence[Sequence] | None = None,
    ) -> None:
        super().__init__()
        traits = TRAITS if traits is None else traits
        pairs = traits.items() if isinstance(traits, Mapping) else traits
        self.traits = {name: list(values) for name, values in pairs}
        # the labels travel with the weights, as [name, values] pairs: a config is saved with
        # its keys sorted, and the head's logits are in this order
        self.register_to_config(traits=[[name, values] for name, values in self.traits.items()])
        self.body = crop_body(width)
        self.head = nn.Linear(4 * width, sum(len(v) for v in self.traits.values()))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.body(pixels)).split([len(v) for v in self.traits.values()], -1)
        return dict(zip(self.traits, logits, strict=True))

    def labels(self, looks: Sequence[Mapping[str, str]]) -> dict[str, torch.Tensor]:
        """Looks -> per trait, each one's value index (B,); -1 where it is not named or not in
        this reader's vocabulary (such a trait counts for nothing)."""
        return {
            name: torch.tensor(
                [values.index(x[name]) if x.get(name) in values else -1 for x in looks]
            )
            for name, values in self.traits.items()
        }

    @torch.no_grad()
    def log_probs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Crops (F, 3, r, r) -> per trait, float32 log-probabilities (F, values) on the CPU."""
        if len(pixels) == 0:
            return {name: torch.zeros(0, len(values)) for name, values in self.traits.items()}
        logits = self(pixels.to(self.device, self.dtype))
        return {name: F.log_softmax(x.float(), -1).cpu() for name, x in logits.items()}

    def likelihood(
        self, log_probs: Mapping[str, torch.Tensor], looks: Sequence[Mapping[str, str]]
    ) -> torch.Tensor:
        """`log_probs` of F figures and C characters' looks -> (C, F): the probability that
        each figure shows every look named of each character (1 where none is named)."""
        wanted = self.labels(looks)
        total = torch.zeros(len(looks), len(next(iter(log_probs.values()))))
        for name, logp in log_probs.items():
            index = wanted[name]
            named = index >= 0
            total[named] += logp[:, index[named]].T
        return total.exp()

    def knows(self, looks: Mapping[str, str]) -> bool:
        """Whether `looks` names any trait this reader reads."""
        return any(looks.get(name) in values for name, values in self.traits.items())


def load_looks_reader(path: str | Path | None = None) -> LooksReader:
    """The looks reader from a `save_pretrained` folder; the shipped one by default."""
    return load_model(LooksReader, path, WEIGHTS, "looks reader")
