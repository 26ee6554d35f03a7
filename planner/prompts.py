"""Every prompt reelsmith sends to a language model, in one place."""

from __future__ import annotations

import json

from reelsmith.planner.brief import Brief
from reelsmith.schema import vocabulary

SYSTEM = """\
You are a screenwriter and director of photography. You turn a brief into a shot-by-shot \
screenplay for a short movie, as one JSON object that follows the given JSON schema exactly. \
Answer with the JSON object only: no prose, no Markdown.

Rules:
- Every id is lowercase letters, digits, '-' or '_' (for example "mira", "scene-01", "s01-03").
- Every character that appears in a shot, speaks, or is approached or followed is listed in \
"characters" with that id. Scene ids and shot ids are unique.
- Every scene has at least one shot. Shot durations are between 0.5 and 30 seconds.
- Describe characters by their looks so they can be drawn the same way in every shot."""

VOCABULARY_HINT = """\
The built-in renderer draws these best: places {places}; characters of shape {shapes}, \
colour {colours}, with {accessories}, {patterns}."""


def write_messages(brief: Brief, schema: dict) -> list[dict[str, str]]:
    """The chat messages that ask a model for a screenplay."""
    wishes = []
    if brief.scenes:
        wishes.append(f"exactly {brief.scenes} scenes")
    if brief.shots:
        wishes.append(f"exactly {brief.shots} shots in total")
    if brief.duration:
        wishes.append(f"a running time of about {brief.duration:g} seconds")
    if brief.style:
        wishes.append(f"the visual style '{brief.style}'")
    wish_text = f"\nThe movie should have {', '.join(wishes)}." if wishes else ""
    hint = VOCABULARY_HINT.format(
        places=", ".join(vocabulary.LOCATIONS),
        shapes=", ".join(vocabulary.SHAPES),
        colours=", ".join(vocabulary.COLOURS),
        accessories=", ".join(a for a in vocabulary.ACCESSORIES if a != "none"),
        patterns=", ".join(vocabulary.PATTERNS),
    )
    user = (
        f"Brief: {brief.prompt.strip()}{wish_text}\n\n{hint}\n\n"
        f"JSON schema:\n{json.dumps(schema, separators=(',', ':'))}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def repair_message(errors: list[str]) -> str:
    """The follow-up message that sends validation errors back to the model."""
    listed = "\n".join(f"- {e}" for e in errors[:40])
    return (
        "That answer cannot be used. Problems:\n"
        f"{listed}\n"
        "Answer again with the whole corrected JSON object only."
    )
