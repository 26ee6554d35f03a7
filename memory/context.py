"""The planner's short-term context: the cast pinned, and a sliding window of keyframes.

Memory use is independent of the movie's length: the cast's identity tokens stay, and only
the last `window` keyframes' tokens are kept.
"""

from __future__ import annotations

from collections import deque

import torch


class KeyframeContext:
    """Identity tokens of the cast plus the last `window` keyframes' tokens.

    Args:
        identity_tokens: Per character id, its identity tokens (n_i, d).
        window: How many past keyframes to keep.
    """

    def __init__(self, identity_tokens: dict[str, torch.Tensor], window: int) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.identity_tokens = dict(identity_tokens)
        self.recent: deque[tuple[str, torch.Tensor]] = deque(maxlen=window)

    def push(self, shot_id: str, keyframe_tokens: torch.Tensor) -> None:
        """Remember a planned keyframe's tokens (K, d); the oldest falls out of the window."""
        self.recent.append((shot_id, keyframe_tokens.detach()))

    def tokens(self) -> torch.Tensor:
        """The context as one (n, d) tensor: the cast in id order, then the window in order."""
        parts = [self.identity_tokens[k] for k in sorted(self.identity_tokens)]
        parts += [tokens for _, tokens in self.recent]
        if not parts:
            return torch.empty(0, 0)
        return torch.cat(parts)

    @property
    def shots(self) -> list[str]:
        return [shot_id for shot_id, _ in self.recent]
