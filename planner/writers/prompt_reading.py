"""Reading a free-text prompt for the offline writer: who is in it, where, and when.

No model is involved: named characters are capitalised words that are not ordinary words
("Mira", "Captain Bo", "Zoë"); described characters are a determiner or number, adjectives
and a noun the storyworld can draw ("a red fox", "two rusty robots", "the tall pilot with a
hat"), with the adjectives kept. An appositive describes a named character:
"Mira, a small mouse with a scarf, ..." gives Mira that description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reelsmith.schema import vocabulary
from reelsmith.schema.screenplay import TimeOfDay

MAX_CAST = 6

NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "2": 2, "3": 3, "4": 4}
DETERMINERS = {"a", "an", "the", "one", "some", "his", "her", "their", "my", "our", "your"}
TITLES = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "captain",
    "professor",
    "sir",
    "lady",
    "lord",
    "aunt",
    "uncle",
    "grandma",
    "grandpa",
    "king",
    "queen",
    "prince",
    "princess",
    "agent",
}
# Words that end an adjective run ("a fox and ..." stops at "and").
FUNCTION = set(
    """
a an the and or but if then when while after before so as at in on of to for from with
without into onto over under about across through between behind beyond during until upon
is are was were be been being has have had do does did will would can could should may might
must this that these those there here it its he she they we you i me him her them us my your
his their our one two three four five six seven eight nine ten some all every each no not
who what where why how which""".split()
)
# Capitalised words that start sentences or titles but are not names.
COMMON = FUNCTION | set(
    """
story tale movie film episode scene chapter part once later
meanwhile suddenly finally together alone night day dusk dawn morning evening today tomorrow
yesterday monday tuesday wednesday thursday friday saturday sunday january february march
april may june july august september october november december christmas halloween new old
young big little lost last first next great good bad dear hello goodbye yes please thanks ok
""".split()
)

WORD = re.compile(r"[^\W\d_][\w'’-]*|\d+|[.,;:!?]", re.UNICODE)


@dataclass(frozen=True)
class CastMember:
    name: str
    description: str


@dataclass(frozen=True)
class PromptReading:
    cast: list[CastMember]
    locations: list[str]
    time: TimeOfDay | None


def read_prompt(prompt: str) -> PromptReading:
    """Find the cast, places and time of day named in `prompt`."""
    tokens = WORD.findall(prompt[:20_000])
    cast = _named_and_described(tokens)
    locations = vocabulary.find(prompt, vocabulary.LOCATIONS)
    time = None
    text = vocabulary.words(prompt)
    for when, names in (
        (TimeOfDay.night, ("night", "midnight", "moonlight", "nighttime", "dark")),
        (TimeOfDay.dusk, ("dusk", "sunset", "evening", "twilight", "dawn", "sunrise")),
        (TimeOfDay.day, ("day", "morning", "noon", "afternoon", "daylight", "sunny")),
    ):
        if any(f" {name} " in text for name in names):
            time = when
            break
    return PromptReading(cast=cast[:MAX_CAST], locations=locations, time=time)


def _is_noun(word: str) -> str | None:
    """The singular drawable noun for `word` ('robots' -> 'robot'), or None."""
    low = word.lower()
    nouns = _drawable_nouns()
    for candidate in (
        low,
        low[:-1] if low.endswith("s") else "",
        low[:-2] if low.endswith("es") else "",
    ):
        if candidate and candidate in nouns:
            return candidate
    if low == "mice":
        return "mouse"
    return None


def _drawable_nouns() -> set[str]:
    nouns = {n for names in vocabulary.SHAPES.values() for n in names}
    return nouns - set(vocabulary.SHAPES) - {"small", "little", "tiny", "tall"}


def _looks_like_name(token: str, previous: str) -> bool:
    if not token[:1].isupper() or token.lower() in COMMON:
        return False
    if _is_noun(token) or any(token.lower() in syn for syn in vocabulary.LOCATIONS.values()):
        # "Fox" after a determiner is a noun, not a name
        return previous.lower() not in DETERMINERS and previous not in {",", ""}
    return True


def _named_and_described(tokens: list[str]) -> list[CastMember]:
    cast: list[CastMember] = []
    seen: set[str] = set()

    def add(name: str, description: str) -> None:
        key = name.lower()
        if key not in seen and len(cast) < MAX_CAST:
            seen.add(key)
            cast.append(CastMember(name, description))

    i = 0
    while i < len(tokens):
        token, previous = tokens[i], tokens[i - 1] if i else ""
        # a named character: Title? Name (Name)?
        if _looks_like_name(token, previous) or (
            token.lower() in TITLES and i + 1 < len(tokens) and tokens[i + 1][:1].isupper()
        ):
            j = i + 1
            if token.lower() in TITLES and j + 1 < len(tokens) and tokens[j] == ".":
                j += 1  # "Mr. Steel"
            while j < len(tokens) and j - i < 4 and _looks_like_name(tokens[j], tokens[j - 1]):
                j += 1
            name = " ".join(tokens[i:j]).replace(" .", ".")
            description = ""
            # appositive: "Mira, a small mouse with a scarf,"
            if j + 1 < len(tokens) and tokens[j] == "," and tokens[j + 1].lower() in DETERMINERS:
                phrase, end = _described_phrase(tokens, j + 1)
                if phrase:
                    description, j = phrase, end
            if name.rstrip(".").lower() not in TITLES:
                add(name, description)
            i = j
            continue
        # a described character: "a red fox", "two rusty robots"
        if token.lower() in DETERMINERS or token.lower() in NUMBERS:
            phrase, end = _described_phrase(tokens, i)
            if phrase:
                count = NUMBERS.get(token.lower(), 1)
                noun_words = phrase.split(" with ")[0].split()[1:]
                base = " ".join(w.capitalize() for w in noun_words)
                for k in range(count):
                    add(f"{base} {k + 1}" if count > 1 else base, phrase)
                i = end
                continue
        i += 1
    return cast


def _described_phrase(tokens: list[str], start: int) -> tuple[str, int]:
    """'a red fox with a hat' starting at tokens[start]; ('', start) if no drawable noun."""
    j = start + 1
    adjectives: list[str] = []
    while j < len(tokens) and j - start <= 4:
        word = tokens[j]
        noun = _is_noun(word)
        if noun:
            phrase = _article(" ".join([*adjectives, noun]))
            j += 1
            # "with a hat", "wearing glasses"
            if j + 1 < len(tokens) and tokens[j].lower() in ("with", "wearing"):
                k = j + 1
                if tokens[k].lower() in DETERMINERS:
                    k += 1
                if k < len(tokens) and vocabulary.first(tokens[k], vocabulary.ACCESSORIES):
                    phrase += f" with a {tokens[k].lower()}"
                    j = k + 1
            return phrase, j
        if not word[:1].isalpha() or word.lower() in FUNCTION or word.lower() in DETERMINERS:
            break
        adjectives.append(word.lower())
        j += 1
    return "", start


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase
