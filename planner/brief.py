"""What the user asks a script writer for: the brief."""

from __future__ import annotations

from dataclasses import dataclass

from reelsmith.errors import InputError

MAX_PROMPT_CHARS = 100_000


@dataclass(frozen=True)
class Brief:
    """What the user asks for.

    Attributes:
        prompt: The idea, in any language. Must contain a non-space character.
        scenes: Number of scenes; None lets the writer choose.
        shots: Total number of shots; None lets the writer choose.
        duration: Target running time in seconds; None lets the writer choose.
        style: Visual style, free text; empty lets the writer choose.
        seed: Seed for every random choice the writer makes.
    """

    prompt: str
    scenes: int | None = None
    shots: int | None = None
    duration: float | None = None
    style: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.prompt or not self.prompt.strip():
            raise InputError("the prompt is empty: describe the movie in a few words")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InputError(
                f"the prompt is {len(self.prompt)} characters, more than {MAX_PROMPT_CHARS}"
            )
        if self.scenes is not None and not 1 <= self.scenes <= 200:
            raise InputError(f"scenes must be between 1 and 200, got {self.scenes}")
        if self.shots is not None and not 1 <= self.shots <= 2000:
            raise InputError(f"shots must be between 1 and 2000, got {self.shots}")
        if self.scenes is not None and self.shots is not None and self.shots < self.scenes:
            raise InputError(
                f"{self.shots} shots cannot fill {self.scenes} scenes: every scene needs a shot"
            )
        if self.duration is not None and not 1 <= self.duration <= 6 * 3600:
            raise InputError(f"duration must be between 1 s and 6 h, got {self.duration}")
