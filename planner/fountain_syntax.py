"""Fountain syntax: the lexical half of `reelsmith.planner.fountain`.

`read` turns Fountain text (https://fountain.io/syntax) into a title page and a flat list of
elements: scene headings, action, dialogue, transitions, synopses and reelsmith notes. It
knows nothing of the Screenplay schema. Boneyard, ordinary notes, sections and page breaks are
dropped here; emphasis markup is removed and backslash escapes become literal characters.

The text is read block by block (blocks are separated by blank lines). The first line of a
block decides what the block is, as the spec says; a few one-line elements (scene heading,
transition, section, synopsis, page break) are peeled off the top of a block so that messy
files with missing blank lines still read well. A line of exactly two spaces continues a
dialogue block (the spec's way to put a blank line inside a speech).

`classify` is the writer's check of the same rules (`fountain_export.escape` writes text that
reads back as itself); `CONTROL` holds the characters the reader drops.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from reelsmith.errors import InputError

# -- elements --------------------------------------------------------------------------


@dataclass
class Heading:
    """A scene heading; `setting` is 'INT', 'EXT', 'EST', 'INT/EXT', 'I/E' … or None."""

    setting: str | None
    text: str
    number: str | None = None


@dataclass
class Action:
    text: str


@dataclass
class Speech:
    """A stretch of one speech: the parenthetical before it and its lines."""

    parenthetical: str
    line: str
    lyric: bool = False


@dataclass
class Dialogue:
    """A character cue and what follows it; `cue` is the name without '@', '^' or extensions."""

    cue: str
    forced: bool = False
    extensions: list[str] = field(default_factory=list)
    speeches: list[Speech] = field(default_factory=list)
    dual: bool = False


@dataclass
class Transition:
    text: str


@dataclass
class Synopsis:
    text: str


@dataclass
class Note:
    """A `[[reelsmith <kind>: {json}]]` note: the writer's place for what Fountain cannot say."""

    kind: str
    data: dict


Element = Heading | Action | Dialogue | Transition | Synopsis | Note

NOTE_KINDS = ("screenplay", "character", "scene", "shot")
TITLE_KEYS = frozenset(
    "title credit author authors source date contact copyright notes logline synopsis style "
    "revision episode series genre format".split()
    + ["draft date", "written by"]
)
KNOWN_TRANSITIONS = frozenset(
    {"FADE OUT.", "FADE OUT", "FADE TO BLACK.", "FADE TO BLACK", "CUT TO BLACK.", "FADE IN:"}
)

# `\x` escapes become private-use characters while the text is read, then the literal `x`.
ESCAPABLE = "\\*_[]()~"
_RESTORE = str.maketrans({chr(0xE000 + i): ch for i, ch in enumerate(ESCAPABLE)})
_ESCAPED = re.compile(r"\\([\\*_\[\]()~])")
_REMOVED, _NOTE_MARK = "\x01", "\x02"  # stand-ins while notes are taken out

_SCAN = re.compile(
    r"\\(?P<escaped>[\\*_\[\]()~])"
    r"|(?P<boneyard>/\*.*?\*/)"
    r"|(?P<note>\[\[(?:(?!\]\]|\n[ \t]*\n).)*\]\])"  # a note holds no blank line
    r"|(?P<unclosed>/\*|\[\[)",
    re.DOTALL,
)
_REELSMITH_NOTE = re.compile(r"\[\[\s*reelsmith\s+(\w+)\s*:(.*)\]\]", re.DOTALL | re.IGNORECASE)
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd\ud800-\udfff]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_BOLD_ITALIC = re.compile(r"(\*{1,3})(?=\S)(.+?)(?<=\S)\1")
_UNDERLINE = re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)")
_TITLE_KEY = re.compile(r"([A-Za-z][A-Za-z ]*?)\s*:(.*)")
_HEADING = re.compile(
    r"(INT\.?\s*/\s*EXT|EXT\.?\s*/\s*INT|I\s*/\s*E|E\s*/\s*I|INT|EXT|EST)(?:\.|\s)\s*(.*)",
    re.IGNORECASE,
)
_SCENE_NUMBER = re.compile(r"\s*#([\w.-]+)#$")
_CUE = re.compile(r"(@?)([^()^]+?)\s*((?:\([^()]*\)\s*)*)(\^?)")
_PAGE_BREAK = re.compile(r"={3,}")


# -- reading ---------------------------------------------------------------------------


def read(text: str, source: str) -> tuple[dict[str, str], list[Element]]:
    """Fountain text -> (title page as lowercase key -> value, body elements in order).

    Raises:
        InputError: binary data, or a boneyard / note that is never closed.
    """
    # 1. plain text only
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text or len(_BINARY.findall(text)) > 0.05 * len(text):
        raise InputError(f"{source}: not a Fountain screenplay (binary data)")
    text = CONTROL.sub("", text.replace("\f", "\n"))
    # 2. escapes, boneyard and notes, then emphasis, line by line
    text, notes = _take_out_notes(text, source)
    lines = _lines(text)
    # 3. title page, then the body block by block
    title_page, body = _title_page(lines)
    elements: list[Element] = []
    for block in _blocks(body):
        elements.extend(_block_elements(block, notes))
    return title_page, elements


def _take_out_notes(text: str, source: str) -> tuple[str, list[Note]]:
    notes: list[Note] = []

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return _protect(match)
        line = text.count("\n", 0, match.start()) + 1
        if match["unclosed"]:
            opener = match["unclosed"]
            closer = "*/" if opener == "/*" else "]]"
            raise InputError(f"{source}: line {line}: '{opener}' is never closed by '{closer}'")
        reelsmith = match["note"] and _REELSMITH_NOTE.fullmatch(match["note"])
        if not reelsmith:
            return _REMOVED
        kind = reelsmith[1].lower()
        try:
            data = json.loads(reelsmith[2])
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: line {line}: reelsmith note is not JSON ({exc})") from None
        if kind not in NOTE_KINDS or not isinstance(data, dict):
            raise InputError(
                f"{source}: line {line}: a reelsmith note is '[[reelsmith <kind>: {{...}}]]' "
                f"with kind one of {', '.join(NOTE_KINDS)}"
            )
        notes.append(Note(kind, data))
        return f"{_NOTE_MARK}{len(notes) - 1}{_NOTE_MARK}"

    return _SCAN.sub(replace, text), notes


def _protect(escape: re.Match) -> str:
    """`\\*` -> a private-use stand-in that no markup rule touches."""
    return chr(0xE000 + ESCAPABLE.index(escape[1]))


def _lines(text: str) -> list[str]:
    """Lines without removed notes; each reelsmith note on a line of its own ('\\x02<n>')."""
    lines = []
    for line in text.split("\n"):
        marks = re.findall(rf"{_NOTE_MARK}(\d+){_NOTE_MARK}", line)
        lines.extend(f"{_NOTE_MARK}{n}" for n in marks)
        rest = re.sub(rf"{_NOTE_MARK}\d+{_NOTE_MARK}", _REMOVED, line)
        if _REMOVED in rest:
            rest = rest.replace(_REMOVED, "")
            if not rest.strip():
                continue  # the line held only notes or boneyard: it was never there
        lines.append(_strip_emphasis(rest))
    return lines


def _strip_emphasis(line: str) -> str:
    for _ in range(3):  # nested markup such as _**both**_
        stripped = _UNDERLINE.sub(r"\1", _BOLD_ITALIC.sub(r"\2", line))
        if stripped == line:
            break
        line = stripped
    return line


def _is_note_line(line: str) -> bool:
    return line.startswith(_NOTE_MARK)


def _title_page(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    if start == len(lines) or not _is_title_key(lines[start]):
        return {}, lines
    page: dict[str, list[str]] = {}
    key, notes, i = None, [], start
    while i < len(lines):
        line = lines[i]
        if _is_note_line(line):
            notes.append(line)
        elif not line.strip():  # the page goes on only if another known key follows
            following = next((j for j in range(i, len(lines)) if lines[j].strip()), len(lines))
            if following == len(lines) or not _is_title_key(lines[following]):
                break
            i = following
            continue
        elif not line[0].isspace() and (match := _TITLE_KEY.fullmatch(line)):
            key = match[1].lower()
            page[key] = [match[2]]
        elif key and not _heading(line.strip()):
            page[key].append(line)  # an indented (or messy unindented) continuation
        else:
            break
        i += 1
    values = {key: clean(" ".join(parts)) for key, parts in page.items()}
    return values, notes + lines[i:]


def _is_title_key(line: str) -> bool:
    match = _TITLE_KEY.fullmatch(line.strip())
    return bool(match) and not line[0].isspace() and match[1].lower() in TITLE_KEYS


def _blocks(lines: list[str]) -> list[list[str]]:
    blocks: list[list[str]] = []
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif line == "  " and _is_dialogue_block(block):
            block.append("")
        elif block:
            blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    return blocks


def _is_dialogue_block(block: list[str]) -> bool:
    text = [line.strip() for line in block if not _is_note_line(line)]
    return bool(text) and _cue(text[0]) is not None


def _block_elements(block: list[str], notes: list[Note]) -> list[Element]:
    elements: list[Element] = [notes[int(line[1:])] for line in block if _is_note_line(line)]
    lines = [line.strip() for line in block if not _is_note_line(line)]
    i = 0
    while i < len(lines):
        line = lines[i]
        cue = _cue(line) if i + 1 < len(lines) else None  # a cue needs a line after it
        if line.startswith("!"):  # forced action: the rest of the block, as written
            elements.append(Action(paragraph([line[1:], *lines[i + 1 :]])))
            break
        if cue and (cue.forced or not (_heading(line) or _transition(line) is not None)):
            cue.speeches = _speeches(lines[i + 1 :])
            elements.append(cue)
            break
        if not line or line.startswith("#") or _PAGE_BREAK.fullmatch(line):
            i += 1  # sections and page breaks shape the document, not the movie
        elif line.startswith("="):
            elements.append(Synopsis(clean(line[1:])))
            i += 1
        elif heading := _heading(line):
            elements.append(heading)
            i += 1
        elif _is_centered(line):
            end = next((j for j in range(i, len(lines)) if not _is_centered(lines[j])), len(lines))
            elements.append(Action(paragraph([centered[1:-1] for centered in lines[i:end]])))
            i = end
        elif (transition := _transition(line)) is not None:
            elements.append(Transition(transition))
            i += 1
        else:  # action; lyrics outside dialogue read as action too
            elements.append(Action(paragraph([a.removeprefix("~") for a in lines[i:]])))
            break
    return elements


def _heading(line: str) -> Heading | None:
    forced = line.startswith(".") and not line.startswith("..")
    body = line[1:].strip() if forced else line
    match = _HEADING.fullmatch(body)
    if not (forced or match):
        return None
    setting = re.sub(r"[.\s]", "", match[1]).upper() if match else None
    rest = match[2] if match else body
    number = _SCENE_NUMBER.search(rest)
    if number:
        rest = rest[: number.start()]
    return Heading(setting, clean(rest), clean(number[1]) if number else None)


def _is_centered(line: str) -> bool:
    return len(line) > 1 and line.startswith(">") and line.endswith("<")


def _transition(line: str) -> str | None:
    if line.startswith(">"):
        return clean(line[1:])
    if line.isupper() and (line.endswith("TO:") or line in KNOWN_TRANSITIONS):
        return clean(line)
    return None


def _cue(line: str) -> Dialogue | None:
    match = _CUE.fullmatch(line)
    if not match:
        return None
    forced, name = match[1] == "@", match[2].strip()
    if not forced and not _looks_like_name(name):
        return None
    extensions = [clean(ext) for ext in re.findall(r"\(([^()]*)\)", match[3])]
    return Dialogue(clean(name), forced, [ext for ext in extensions if ext], dual=bool(match[4]))


def _looks_like_name(name: str) -> bool:
    """An all-caps line short enough to be a name: 'MR. STEEL', 'R2-D2', not 'FADE IN:'."""
    return (
        name.isupper()
        and name[0] not in "!@~=#>.["
        and not name.endswith(":")
        and len(name.split()) <= 6
    )


def _speeches(lines: list[str]) -> list[Speech]:
    """The lines after a cue: each parenthetical starts a new speech."""
    speeches: list[Speech] = []
    pending: list[str] = []  # parentheticals waiting for their line
    spoken: list[str] = []
    lyric = False
    for line in lines:
        is_parenthetical = len(line) > 1 and line[0] == "(" and line[-1] == ")"
        if is_parenthetical and any(spoken):
            speeches.append(Speech(", ".join(pending), paragraph(spoken), lyric))
            pending, spoken, lyric = [], [], False
        if is_parenthetical:
            pending += [content] if (content := clean(line[1:-1])) else []
            spoken = []
        elif line.startswith("~"):
            spoken.append(line[1:])
            lyric = True
        else:
            spoken.append(line)
    if any(spoken):
        speeches.append(Speech(", ".join(pending), paragraph(spoken), lyric))
    elif pending and speeches:  # a parenthetical after the last line belongs to it
        speeches[-1].line += f" ({', '.join(pending)})"
    return speeches


def clean(value: str) -> str:
    """One line: whitespace collapsed, escapes turned into their literal characters."""
    return " ".join(value.split()).translate(_RESTORE)


def paragraph(lines: list[str]) -> str:
    """Lines as one text: each line `clean`, blank lines at either end dropped."""
    return "\n".join(clean(line) for line in lines).strip("\n")


def display_name(cue: str) -> str:
    """A cue in title case: 'MR. STEEL' -> 'Mr. Steel', "O'BRIEN'S" -> "O'Brien's"."""
    name = re.sub(r"[^\W\d_]+(?:['’][^\W\d_]+)*", lambda m: m[0].capitalize(), cue.lower())
    return re.sub(r"\b([^\W\d_])(['’])([^\W\d_])", lambda m: m[1] + m[2] + m[3].upper(), name)


def cue_key(name: str) -> str:
    """What makes two cues the same character: case and spacing do not."""
    return " ".join(name.split()).upper()


# -- the writer's side -------------------------------------------------------------------


def classify(lines: list[str]) -> list[Element]:
    """How the reader sees one block of escaped lines (no notes, no emphasis)."""
    return _block_elements([_ESCAPED.sub(_protect, line) for line in lines], [])
