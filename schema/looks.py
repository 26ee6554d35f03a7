"""Character identities: shape x colour x accessory x pattern, and who in a screenplay gets which.

There are 5 shapes x 12 colours x 6 accessories x 3 patterns = 1,080 identities. A
character's identity honours every look its description (or name) names ("a red fox with a
hat" is pointed, red and wears a hat); whatever isn't named comes from a stable hash of the
character's name, so the same name gets the same look in every run and on every machine. Two
characters of one screenplay never share an identity: a later character changes one of its
unnamed traits until it is free, and only if every combination of its named traits is taken
does a named trait give way.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass

from reelsmith.schema import vocabulary
from reelsmith.schema.screenplay import Character

SHAPES = tuple(vocabulary.SHAPES)
COLOURS = tuple(vocabulary.COLOURS)
ACCESSORIES = tuple(vocabulary.ACCESSORIES)
PATTERNS = tuple(vocabulary.PATTERNS)
TRAITS = {"shape": SHAPES, "colour": COLOURS, "accessory": ACCESSORIES, "pattern": PATTERNS}


@dataclass(frozen=True, order=True)
class Identity:
    shape: str
    colour: str
    accessory: str
    pattern: str

    @property
    def key(self) -> str:
        """A stable short name, e.g. 'pointed-red-hat-plain'."""
        return f"{self.shape}-{self.colour}-{self.accessory}-{self.pattern}"

    @property
    def index(self) -> int:
        """Position in `all_identities()`: a class label for judges and datasets."""
        s, c, a, p = (TRAITS[t].index(getattr(self, t)) for t in TRAITS)
        return ((s * len(COLOURS) + c) * len(ACCESSORIES) + a) * len(PATTERNS) + p

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_index(cls, index: int) -> Identity:
        return all_identities()[index]


def all_identities() -> list[Identity]:
    """Every identity of the world, in `Identity.index` order."""
    return _ALL


_ALL = [Identity(*combo) for combo in itertools.product(SHAPES, COLOURS, ACCESSORIES, PATTERNS)]


def named_traits(text: str) -> dict[str, str]:
    """The traits a description names: 'a tall red fox with a hat' -> shape, colour, accessory.

    The noun decides the shape ("fox" -> pointed) unless a shape word comes first
    ("a tall fox" -> tall). The first colour, accessory and pattern named win.
    """
    named = {}
    for trait, table in (
        ("shape", vocabulary.SHAPES),
        ("colour", vocabulary.COLOURS),
        ("accessory", vocabulary.ACCESSORIES),
        ("pattern", vocabulary.PATTERNS),
    ):
        hit = vocabulary.first(text, table)
        if hit is not None:
            named[trait] = hit
    return named


def identity_for(character: Character, taken: set[Identity] | None = None) -> Identity:
    """The identity of one character, avoiding those in `taken` (which it does not modify)."""
    taken = taken or set()
    named = named_traits(f"{character.description} {character.name}")
    digest = hashlib.sha256(character.name.strip().lower().encode("utf-8")).digest()
    free = [t for t in TRAITS if t not in named]
    # hash-ordered candidates for the free traits, then (if all clash) for the named ones too
    for open_traits in (free, list(TRAITS)):
        for candidate in _candidates(named, open_traits, digest):
            if candidate not in taken:
                return candidate
    raise ValueError("more characters than identities in the world")


def cast_identities(characters: list[Character]) -> dict[str, Identity]:
    """Identities for a whole cast, in cast order, pairwise distinct."""
    taken: set[Identity] = set()
    out = {}
    for character in characters:
        identity = identity_for(character, taken)
        taken.add(identity)
        out[character.id] = identity
    return out


def _candidates(named: dict[str, str], open_traits: list[str], digest: bytes):
    """Identities keeping `named` traits outside `open_traits`, the hash's favourite first."""
    orders = []
    for k, trait in enumerate(TRAITS):
        values = TRAITS[trait]
        if trait in open_traits:
            start = digest[k] % len(values)
            if trait in named:  # a named trait that has to give way: keep it first
                start = values.index(named[trait])
            orders.append([values[(start + i) % len(values)] for i in range(len(values))])
        else:
            orders.append([named[trait]])
    # vary the last traits fastest: pattern, then accessory, then colour, then shape
    for combo in itertools.product(*orders):
        yield Identity(*combo)
