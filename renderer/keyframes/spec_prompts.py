"""A keyframe spec as a text-to-image prompt: the spec's own prompt, else one written from its
size, characters, location and time; a new character's portrait prompt from its description.
"""

from __future__ import annotations

from reelsmith.schema.conditioning import PORTRAIT, CharacterSpec, KeyframeSpec

PORTRAIT_SUFFIX = ", front view, plain grey background, full body"
SIZE_TEXT = {"wide": "wide shot", "medium": "medium shot", "close-up": "close-up shot"}
TIME_TEXT = {"day": "in daylight", "dusk": "at dusk", "night": "at night"}
ACTION_TEXT = {
    "idle": "standing",
    "walk-left": "walking left",
    "walk-right": "walking right",
    "run": "running",
    "jump": "jumping",
    "wave": "waving",
    "sit": "sitting",
    "approach": "approaching",
    "leave": "leaving",
    "turn": "turning around",
    "talk": "talking",
    "follow": "following",
}


def describe(character: CharacterSpec) -> str:
    """A character as text: its description, else its known looks, else its id."""
    if character.description.strip():
        return character.description.strip()
    looks = character.looks
    words = [looks.get("colour"), looks.get("pattern"), looks.get("shape")]
    words = [w for w in words if w and w != "plain"]
    if not words:
        return character.id
    text = f"a {' '.join(words)} character"
    if looks.get("accessory", "none") != "none":
        text += f" with a {looks['accessory']}"
    return text


def prompt_of(spec: KeyframeSpec) -> str:
    """The spec's prompt, or one written from its size, characters, location and time."""
    if spec.prompt.strip():
        return spec.prompt.strip()
    who = [
        describe(c) + (f" {ACTION_TEXT.get(c.action, c.action)}" if c.action else "")
        for c in spec.characters
    ]
    place = "a plain background" if spec.location == PORTRAIT else f"the {spec.location}"
    subject = f" of {' and '.join(who)}" if who else ""
    return f"{SIZE_TEXT[spec.size]}{subject} in {place}, {TIME_TEXT[spec.time]}"


def portrait_prompt(character: CharacterSpec) -> str:
    """A new character's reference portrait as text: front view on a plain background."""
    if character.description.strip():
        prompt = KeyframeSpec.portrait(character).prompt
    else:
        prompt = f"portrait of {describe(character)}"
    return prompt + PORTRAIT_SUFFIX
