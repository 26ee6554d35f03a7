"""`IdentityCheck`: which of several drawings of a keyframe shows its characters best.

A keyframe decoder draws a small figure's looks right most of the time, but not always, and
which drawings miss depends on the noise it starts from. So the built-in keyframer can draw a
few candidates of each keyframe and keep the one whose characters look most like their
references in memory (`BuiltinKeyframer(candidates=N)`). The check uses only the product's own
models: the character segmenter finds the figures in a drawing, the identity encoder (what
memory stores per character) embeds each figure's crop, and each character of the spec is
matched to the figure most like its reference embedding, one figure per character.

    score = (sum over the spec's characters of the cosine similarity with its figure
             - `extra` for every figure left over) / max(characters, 1)

A character with no figure left scores 0; a figure smaller than `min_pixels` is not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.memory.identity import IdentityEncoder, crop_boxes, load_identity_encoder
from reelsmith.renderer.segmenter import CharacterSegmenter

SEGMENTER = Path(__file__).parent / "weights" / "motion" / "segmenter"


class IdentityCheck:
    """Scores drawings by how well their figures match the characters' identity embeddings.

    Args:
        segmenter: Finds the characters of a drawing (`CharacterSegmenter.segment`).
        encoder: Embeds a character's crop; the references must be this encoder's embeddings.
        min_pixels: Smaller figures are not counted (specks of a drawing are not characters).
        extra: What a figure matching no character costs, against a similarity of at most 1.
    """

    def __init__(
        self,
        segmenter: CharacterSegmenter,
        encoder: IdentityEncoder,
        min_pixels: int = 12,
        extra: float = 0.5,
    ) -> None:
        self.segmenter, self.encoder = segmenter.eval(), encoder.eval()
        self.min_pixels, self.extra = min_pixels, extra

    @classmethod
    def load(
        cls, device: str = "cpu", encoder: IdentityEncoder | None = None, **kwargs
    ) -> IdentityCheck:
        """The shipped segmenter (the shot model's) and identity encoder (or `encoder`, one
        already loaded)."""
        from reelsmith.errors import InputError
        from reelsmith.numerics import settle

        if not (SEGMENTER / "config.json").is_file():
            raise InputError(f"{SEGMENTER}: no character segmenter there (config.json is missing)")
        settle()
        segmenter = CharacterSegmenter.from_pretrained(SEGMENTER, dtype=torch.float32)
        encoder = load_identity_encoder() if encoder is None else encoder
        return cls(segmenter.to(device), encoder.to(device), **kwargs)

    @torch.no_grad()
    def figures(self, frames: np.ndarray) -> list[torch.Tensor]:
        """uint8 frames (B, H, W, 3) -> per frame, its figures' embeddings (n, dim)."""
        device = self.segmenter.device
        images = torch.from_numpy(np.ascontiguousarray(frames)).to(device)  # (B, H, W, 3)
        pixels = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        labels = self.segmenter.segment(pixels.to(self.segmenter.dtype))  # (B, H, W)
        owners, boxes = [], []
        for i, frame_labels in enumerate(labels):
            for k in range(1, int(frame_labels.max()) + 1):
                ys, xs = torch.nonzero(frame_labels == k, as_tuple=True)
                if len(ys) >= self.min_pixels:
                    owners.append(i)
                    boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]))
        dim = self.encoder.config.dim
        if not boxes:
            return [torch.zeros(0, dim) for _ in frames]
        crops = crop_boxes(images[owners], torch.stack(boxes), self.encoder.config.resolution)
        embeds = self.encoder(crops.to(self.encoder.dtype)).float().cpu()  # (n, dim), unit
        owner = torch.tensor(owners)
        return [embeds[owner == i] for i in range(len(frames))]

    def scores(
        self, frames: np.ndarray, references: Sequence[Sequence[torch.Tensor]]
    ) -> list[float]:
        """uint8 frames (B, H, W, 3) and, per frame, its characters' reference embeddings ->
        one score per frame (higher: the characters look more like their references)."""
        if len(references) != len(frames):
            raise ValueError(
                f"{len(frames)} frames need as many reference lists, not {len(references)}"
            )
        return [
            match(similarity(refs, found), self.extra)[0]
            for found, refs in zip(self.figures(frames), references, strict=True)
        ]


def similarity(references: Sequence[torch.Tensor], figures: torch.Tensor) -> torch.Tensor:
    """Reference embeddings and figure embeddings (n, dim) -> cosine similarities (refs, n)."""
    if not references:
        return torch.zeros(0, figures.shape[0])
    wanted = F.normalize(torch.stack([r.float().cpu() for r in references]), dim=-1)
    return wanted @ figures.T


def match(similarity: torch.Tensor, extra: float) -> tuple[float, list[tuple[int, int]]]:
    """(characters, figures) cosine similarities -> the greedy one-to-one match (the most
    similar pair first) as (character, figure) pairs, and its score: matched similarities,
    minus `extra` per figure left over, over the number of characters (at least 1)."""
    sim = similarity.clone()
    characters, figures = sim.shape
    total, pairs = 0.0, []
    for _ in range(min(characters, figures)):
        c, f = divmod(int(sim.argmax()), figures)
        total += float(sim[c, f])
        pairs.append((c, f))
        sim[c, :], sim[:, f] = -torch.inf, -torch.inf
    leftover = max(figures - characters, 0)
    return (total - extra * leftover) / max(characters, 1), pairs


def candidate_seed(seed: int, k: int) -> int:
    """The seed of a keyframe's k-th candidate: the keyframe's own seed for the first, so one
    candidate draws what the seed always drew; the others derived from (seed, k)."""
    if k == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])


def draw_best(
    check: IdentityCheck,
    draw: Callable[[list[int]], np.ndarray],
    seeds: Sequence[int],
    references: Sequence[Sequence[torch.Tensor]],
    candidates: int,
) -> tuple[np.ndarray, np.ndarray]:
    """B keyframes drawn `candidates` times, the best of each kept.

    Args:
        check: Scores the drawings.
        draw: Draws every candidate at once: given the candidates' seeds, candidate-major
            (`candidate_seed(seed, k)` for k, then for each keyframe), it returns uint8
            (candidates * B, H, W, 3), so the caller repeats its specs `candidates` times.
        seeds: One per keyframe.
        references: Per keyframe, its characters' reference embeddings.
        candidates: Drawings per keyframe; 1 draws once and checks nothing.

    Returns:
        The kept drawings (B, H, W, 3) and all of them (candidates, B, H, W, 3); on a tie the
        earlier candidate is kept.
    """
    b = len(seeds)
    flat = [candidate_seed(s, k) for k in range(candidates) for s in seeds]
    frames = draw(flat)  # (candidates * B, H, W, 3)
    drawings = frames.reshape(candidates, b, *frames.shape[1:])
    if candidates == 1:
        return drawings[0], drawings
    scores = np.array(
        check.scores(drawings.reshape(-1, *drawings.shape[2:]), list(references) * candidates)
    )
    chosen = scores.reshape(candidates, b).argmax(0)  # (B,)
    return drawings[chosen, np.arange(b)], drawings
