"""The storyworld's vocabulary: places, looks and actions the built-in models can draw.

The offline writer only emits words from here, and the storyworld (`reelsmith.world`)
renders every one of them, so anything the offline writer writes can be rendered by the
built-in models. Each canonical word comes with the synonyms that map to it when reading
free text (a scene's location, a character's description, a shot's action).

Everything here is plain data; matching is by whole lowercase words.
"""

from __future__ import annotations

import re
import unicodedata

from reelsmith.schema.screenplay import Action

# Canonical location -> words that name it in free text.
LOCATIONS: dict[str, tuple[str, ...]] = {
    "forest": ("forest", "woods", "wood", "jungle", "grove", "clearing", "trees"),
    "beach": ("beach", "shore", "seaside", "coast", "sand", "sea", "ocean", "island"),
    "city street": ("city", "street", "avenue", "road", "town", "alley", "downtown", "market"),
    "desert": ("desert", "dunes", "dune", "canyon", "oasis", "wasteland"),
    "snowfield": ("snowfield", "snow", "glacier", "tundra", "ice", "arctic", "mountain"),
    "living room": ("living room", "room", "house", "home", "apartment", "kitchen", "cabin"),
    "space station": ("space station", "space", "spaceship", "station", "starship", "moon"),
    "harbour": ("harbour", "harbor", "port", "dock", "docks", "pier", "wharf", "boat"),
}

# Body shapes -> creature or role nouns drawn with that shape.
SHAPES: dict[str, tuple[str, ...]] = {
    "round": ("round", "bear", "owl", "penguin", "frog", "ghost", "blob", "panda", "pig"),
    "boxy": ("boxy", "robot", "knight", "golem", "android", "droid", "box"),
    "pointed": ("pointed", "fox", "cat", "wolf", "wizard", "witch", "dragon", "rabbit", "bird"),
    "tall": (
        "tall",
        "person",
        "woman",
        "man",
        "girl",
        "boy",
        "child",
        "kid",
        "detective",
        "pilot",
        "sailor",
        "doctor",
        "captain",
        "farmer",
        "giant",
        "stranger",
        "friend",
        "astronaut",
    ),
    "small": ("small", "little", "tiny", "mouse", "baby", "elf", "gnome", "sprite"),
}

COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "ginger", "amber"),
    "yellow": ("yellow", "golden", "gold", "blonde"),
    "green": ("green", "emerald", "lime"),
    "teal": ("teal", "cyan", "turquoise"),
    "blue": ("blue", "navy", "azure"),
    "purple": ("purple", "violet", "lilac"),
    "pink": ("pink", "rose", "magenta"),
    "brown": ("brown", "chocolate", "tan"),
    "white": ("white", "snowy", "pale", "silver"),
    "black": ("black", "dark", "shadowy"),
    "grey": ("grey", "gray", "ashen"),
}

ACCESSORIES: dict[str, tuple[str, ...]] = {
    "none": ("bareheaded", "bare headed", "unadorned"),
    "hat": ("hat", "cap", "top hat", "beret"),
    "scarf": ("scarf", "shawl"),
    "glasses": ("glasses", "spectacles", "goggles", "monocle"),
    "crown": ("crown", "tiara", "king", "queen", "prince", "princess"),
    "backpack": ("backpack", "bag", "satchel", "rucksack"),
}

PATTERNS: dict[str, tuple[str, ...]] = {
    "plain": ("plain",),
    "striped": ("striped", "stripes", "stripy"),
    "spotted": ("spotted", "spots", "dotted", "polka"),
}

# Words in action text -> the Action they stand for.
ACTION_WORDS: dict[Action, tuple[str, ...]] = {
    Action.walk_left: ("walks left", "walk left", "heads left"),
    Action.walk_right: ("walks right", "walk right", "heads right", "walks", "walk", "strolls"),
    Action.run: ("runs", "run", "sprints", "races", "dashes", "flees", "chases", "hurries"),
    Action.jump: ("jumps", "jump", "leaps", "hops", "bounces", "dances"),
    Action.wave: ("waves", "wave", "greets", "signals", "beckons"),
    Action.sit: ("sits", "sit", "rests", "kneels", "waits"),
    Action.approach: ("approaches", "approach", "meets", "comes", "nears", "arrives"),
    Action.leave: ("leaves", "leave", "exits", "departs", "goes away", "walks away"),
    Action.turn: ("turns", "turn", "spins", "looks around", "looks back"),
    Action.talk: ("talks", "talk", "says", "speaks", "asks", "tells", "argues", "whispers"),
    Action.follow: ("follows", "follow", "trails", "tails", "pursues"),
    Action.idle: ("stands", "stand", "watches", "looks", "stares", "listens", "thinks"),
}


def words(text: str) -> str:
    """Lowercase, accent-free text with single spaces around whole words, for matching."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()
    return " " + " ".join(re.findall(r"[a-z0-9]+", folded)) + " "


def find(text: str, table: dict) -> list:
    """Canonical entries of `table` named in `text`, in order of first mention."""
    haystack = words(text)
    hits = []
    for key, synonyms in table.items():
        # earliest mention first; at the same place the longer phrase wins ("walks away")
        found = [(haystack.find(f" {w} "), -len(w)) for w in synonyms]
        found = [spot for spot in found if spot[0] >= 0]
        if found:
            hits.append((min(found), key))
    return [key for _, key in sorted(hits, key=lambda hit: hit[0])]


def first(text: str, table: dict, default=None):
    """The canonical entry of `table` mentioned first in `text`, or `default`."""
    hits = find(text, table)
    return hits[0] if hits else default
