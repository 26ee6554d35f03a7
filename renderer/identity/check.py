"""`IdentityCheck`: which of several drawings of a keyframe shows its characters best.

A keyframe decoder draws a small figure's looks right most of the time, but not always, and
which drawings miss depends on the noise it starts from. So the built-in keyframer can draw a
few candidates of each keyframe and keep the one whose characters look most like themselves
(`BuiltinKeyframer(candidates=N)`). The check uses only the product's own models: the
character segmenter finds the figures in a drawing; each character of the spec is matched to
the figure that fits it best, one figure per character, where a figure fits a character by
the cosine similarity of its crop's identity embedding with the character's reference
embedding (the identity encoder: what memory stores per character).

    score = (sum over the spec's characters of its figure's fit
             - `extra` for every figure left over) / max(characters, 1)

A character with no figure left scores 0; a figure smaller than `min_pixels` is not counted.

With a looks reader (`renderer.looks.LooksReader`; `IdentityCheck.load(looks=True)`), a
character whose looks name a trait the reader reads is fitted instead by the probability that
the figure shows those looks. On held-out keyframes it keeps drawings the judges read right
no more often than the identity embeddings do (renderer/README.md), so it is not the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reelsmith.errors import InputError
from reelsmith.numerics import settle
from reelsmith.renderer import shipped
from reelsmith.renderer.identity.encoder import IdentityEncoder, crop_boxes, load_identity_encoder
from reelsmith.renderer.identity.looks import WEIGHTS as LOOKS
from reelsmith.renderer.identity.looks import LooksReader, load_looks_reader
from reelsmith.renderer.identity.segmenter import CharacterSegmenter

SEGMENTER = shipped.SEGMENTER


class IdentityCheck:
    """Scores drawings by how well their figures match the characters' looks and identities.

    Args:
        segmenter: Finds the characters of a drawing (`CharacterSegmenter.segment`).
        encoder: Embeds a character's crop; the references must be this encoder's embeddings.
        looks: Reads a figure's looks; None matches by identity embeddings alone.
        min_pixels: Smaller figures are not counted (specks of a drawing are not characters).
        extra: What a figure matching no character costs, against a fit of at most 1.
    """

    def __init__(
        self,
        segmenter: CharacterSegmenter,
        encoder: IdentityEncoder,
        looks: LooksReader | None = None,
        min_pixels: int = 12,
        extra: float = 0.5,
    ) -> None:
        self.segmenter, self.encoder = segmenter.eval(), encoder.eval()
        self.looks = None if looks is None else looks.eval()
        self.min_pixels, self.extra = min_pixels, extra

    @classmethod
    def load(
        cls,
        device: str = "cpu",
        encoder: IdentityEncoder | None = None,
        looks: LooksReader | bool = False,
        **kwargs,
    ) -> IdentityCheck:
        """The shipped segmenter (the shot model's) and identity encoder (or `encoder`, one
        already loaded); with `looks`, the shipped looks reader too (or that reader)."""
        if not (SEGMENTER / "config.json").is_file():
            raise InputError(f"{SEGMENTER}: no character segmenter there (config.json is missing)")
        settle()
        segmenter = CharacterSegmenter.from_pretrained(SEGMENTER, dtype=torch.float32)
        encoder = load_identity_encoder() if encoder is None else encoder
        if looks is True:
            looks = load_looks_reader(LOOKS)
        reader = looks.to(device) if isinstance(looks, LooksReader) else None
        return cls(segmenter.to(device), encoder.to(device), reader, **kwargs)

    @torch.no_grad()
    def figures(self, frames: np.ndarray) -> list[torch.Tensor]:
        """uint8 frames (B, H, W, 3) -> per frame, its figures' embeddings (n, dim)."""
        return [embeds for embeds, _ in self._read(frames, looks=False)]

    @torch.no_grad()
    def _read(self, frames: np.ndarray, looks: bool) -> list[tuple[torch.Tensor, dict | None]]:
        """Per frame, its figures' identity embeddings (n, dim) and, with `looks` (and a
        reader), their looks' log-probabilities (`LooksReader.log_probs`)."""
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
        read_looks = looks and self.looks is not None
        if not boxes:
            empty = self.looks.log_probs(torch.zeros(0)) if read_looks else None
            return [(torch.zeros(0, dim), empty) for _ in frames]
        frames_of, boxes = images[owners], torch.stack(boxes)
        crops = crop_boxes(frames_of, boxes, self.encoder.config.resolution)
        embeds = self.encoder(crops.to(self.encoder.dtype)).float().cpu()  # (n, dim), unit
        owner = torch.tensor(owners)
        if not read_looks:
            return [(embeds[owner == i], None) for i in range(len(frames))]
        resolution = self.looks.config.resolution
        if resolution != self.encoder.config.resolution:
            crops = crop_boxes(frames_of, boxes, resolution)
        log_probs = self.looks.log_probs(crops)
        return [
            (embeds[owner == i], {name: x[owner == i] for name, x in log_probs.items()})
            for i in range(len(frames))
        ]

    def scores(
        self,
        frames: np.ndarray,
        references: Sequence[Sequence[torch.Tensor]],
        looks: Sequence[Sequence[Mapping[str, str]]] | None = None,
    ) -> list[float]:
        """uint8 frames (B, H, W, 3) and, per frame, its characters' reference embeddings (and
        their looks, in the same order) -> one score per frame (higher: the characters look
        more like themselves)."""
        n = len(frames)
        if len(references) != n:
            raise ValueError(f"{n} frames need as many reference lists, not {len(references)}")
        if looks is not None and len(looks) != n:
            raise ValueError(
                f"{n} frames need as many reference lists and looks lists, "
                f"not {len(references)} and {len(looks)}"
            )
        out = []
        for k, (found, log_probs) in enumerate(self._read(frames, looks is not None)):
            fit = similarity(references[k], found)  # (characters, figures)
            if log_probs is not None:
                wanted = looks[k]
                if len(wanted) != len(references[k]):
                    raise ValueError(
                        f"frame {k}: {len(references[k])} reference embeddings but looks for "
                        f"{len(wanted)} characters"
                    )
                known = torch.tensor([self.looks.knows(x) for x in wanted], dtype=torch.bool)
                if known.any():
                    fit[known] = self.looks.likelihood(log_probs, wanted)[known]
            out.append(match(fit, self.extra)[0])
        return out


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
    looks: Sequence[Sequence[Mapping[str, str]]] | None = None,
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
        looks: Per keyframe, its characters' looks in the same order (what the check's looks
            reader matches); None matches by the references alone.

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
        check.scores(
            drawings.reshape(-1, *drawings.shape[2:]),
            list(references) * candidates,
            None if looks is None else list(looks) * candidates,
        )
    )
    chosen = scores.reshape(candidates, b).argmax(0)  # (B,)
    return drawings[chosen, np.arange(b)], drawings
