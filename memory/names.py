"""Names in a series bible: a series' name, checked; a character's name, folded for matching."""

from __future__ import annotations

import re
import unicodedata

from reelsmith.errors import InputError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


def fold(name: str) -> str:
    """Case- and accent-insensitive form of a name: 'Zoë ' -> 'zoe'."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.casefold().split())


def check_series_name(name: str) -> str:
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InputError(
            f"bad series name {name!r}: use letters, digits, spaces, '-', '_' or '.' "
            "(no path separators, no '..', at most 64 characters)"
        )
    return name
