"""A keyframe's spec: the shot in the storyworld vocabulary, as the keyframe models read it.

`KeyframeSpec` holds a shot's place, time of day, shot size and camera move, and per character
the looks its description names (shape, colour, accessory, pattern; unknown where not named) and
its action (`schema.encoding.spec_indices` turns it into the integers the models read). A
portrait is a spec with the place `portrait` and one character.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reelsmith.schema import vocabulary
from reelsmith.schema.screenplay import Action, CameraMove, Scene, Shot, ShotSize, TimeOfDay

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
