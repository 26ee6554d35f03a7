"""Fountain <-> Screenplay: read and write screenplays in the plain-text standard.

`parse(text, source)` reads Fountain (https://fountain.io/syntax) into a `Screenplay`;
`dumps(screenplay)` writes one. `parse(dumps(s)) == s` for every valid Screenplay. The
lexical rules live in `fountain_syntax`, the reader of their elements in `fountain_import`, the
writer in `fountain_export`; this module documents how Fountain maps onto the schema.

Reading (Fountain -> Screenplay):

- Title page: `Title:` -> title (lines joined); `Logline:` (else `Synopsis:`, else `Notes:`)
  -> logline; `Style:` -> style; Credit, Author, Draft date … have no place in the schema.
  Without a title the source file's stem names the movie, else the first scene's location.
- Scenes: one per scene heading. INT. / EXT. / EST. / INT./EXT. / I/E -> `Setting`; a forced
  `.HEADING` has none. The last ` - ` part naming a time is the time of day (DAY, MORNING,
  AFTERNOON -> day; DUSK, EVENING, SUNSET, DAWN -> dusk; NIGHT, MIDNIGHT -> night;
  CONTINUOUS, LATER, SAME -> the previous scene's; none -> day); the rest, lowercased, is
  the location: "EXT. FOREST CLEARING - NIGHT" -> "forest clearing", night, exterior. Ids
  are `scene-01` … by position, or `scene-12a` from a scene number `#12A#`. Synopses
  (`= …`) under a heading are the scene's summary. Action or dialogue before the first
  heading opens a scene at a storyworld place its text names ("the snowy woods" ->
  "forest"), else at the first heading's place, else at "unspecified".
- Shots: each action paragraph starts a shot; dialogue joins the current shot or starts
  one; a transition ends the shot and sets its `transition` (DISSOLVE -> crossfade, FADE ->
  fade, others -> cut). A heading with nothing under it is one establishing shot. Ids are
  `s<scene>-<shot>` by position (`s01-01`). The rest is estimated from the text:
  - duration: words of action and dialogue / 2.5 + 0.5 s per line, 2 s if empty, 0.5-30 s;
  - characters: those named in the action, then the speakers who are not off screen
    (V.O., O.S., O.C.). A name is a cue name or alias as whole words in any case, longest
    first ("Mr. Steel" is not also "Steel"; but WILL is also in "she will");
  - size: a CLOSE ON / WIDE SHOT / ESTABLISHING direction, else wide for a scene's first
    shot, close-up for dialogue with one person on screen, medium otherwise;
  - camera: PAN LEFT/RIGHT, ZOOM IN/OUT, PUSH IN, PULL BACK, TRACKING …, else static;
  - keyframe prompt "<location>, <time>. <action>"; motion prompt the action; no blocking.
- Characters: one per distinct cue (case-insensitive, extensions dropped), in order of
  first cue. The name is the cue in title case ("MR. STEEL" -> "Mr. Steel"), or as written
  when forced (`@McCLANE`); ids come from `unique_slug`, so STEEL and MR. STEEL stay two
  people. Someone who never speaks is in the cast only if a note declares them. A
  character's introduction gives its description: the first action that writes the cue
  as a word, in its capitals, then a comma (after an optional parenthetical), then a phrase
  starting with a lowercase letter: "MIRA (8), a small yellow mouse with a scarf, searches
  the trees." -> "a small yellow mouse with a scarf" (up to the next , . ; : ! ? or dash).
- Dialogue: each parenthetical starts a `DialogueLine`; extensions -> `extension` (CONT'D
  dropped); lyrics (`~`) get the parenthetical "singing" unless they have one; dual
  dialogue (`^`) is two speakers in one shot. Centered text is action. Notes, boneyard,
  sections, page breaks and emphasis are dropped (an escaped `\\*` stays a `*`).

Writing (Screenplay -> Fountain): a title page; per scene its heading (INT. / EXT. /
INT./EXT. from the setting, a forced `.` without one; the location upper-cased, then DAY,
DUSK or NIGHT; `#12a#` for an id `scene-12a`) and its summary as a synopsis; per shot
its action, its dialogue under one cue per character (the upper-cased name, forced with `@`
when that would not read back, numbered when two characters share a name) and DISSOLVE TO:
or FADE OUT. (a cut is the default and is not written). Text is escaped to read back as
itself.

What Fountain has no place for (ids, durations, sizes, camera moves, blocking, prompts,
character descriptions …) goes into notes `[[reelsmith <kind>: {json}]]` of kind
screenplay, character, scene or shot, only where the text alone reads back differently:
`dumps` parses its own text and notes each difference. A shot note also marks where a shot
without action begins. Notes set fields after everything else is read and never change how
the rest is read, so a screenplay parsed from plain Fountain is written back as plain
Fountain.
"""

from __future__ import annotations

from reelsmith.errors import InputError
from reelsmith.planner import fountain_export as export
from reelsmith.planner import fountain_import
from reelsmith.planner import fountain_syntax as syntax
from reelsmith.schema.screenplay import Screenplay

__all__ = ["dumps", "parse"]


def parse(text: str, source: str = "screenplay.fountain") -> Screenplay:
    """Read a Fountain screenplay.

    Args:
        text: The Fountain text.
        source: Where the text came from; it starts every error message and, without a
            title page, names the movie.

    Returns:
        A valid Screenplay (see the module docstring for the mapping).

    Raises:
        InputError: binary data, an unclosed note or boneyard, a malformed reelsmith note,
            or nothing to make a scene of; one line naming `source`.
        ScreenplayError: the result breaks the schema (e.g. a 5000-character paragraph).
    """
    # 1. text -> title page and elements
    title_page, elements = syntax.read(text, source)
    # 2. elements -> drafts of scenes and shots, in story order
    declared = [e for e in elements if isinstance(e, syntax.Note) and e.kind == "character"]
    reader = fountain_import.Reader(fountain_import.Cast(declared, source))
    for element in elements:
        reader.add(element)
    if not reader.scenes:
        raise InputError(
            f"{source}: no scene heading found (a scene starts with a line like "
            "'INT. KITCHEN - DAY')"
        )
    # 3. drafts -> Screenplay: estimate what Fountain does not say, then apply the notes
    return Screenplay.from_data(reader.finish(title_page, source), source)


def dumps(screenplay: Screenplay) -> str:
    """Write a screenplay as Fountain.

    Args:
        screenplay: Any valid Screenplay.

    Returns:
        Fountain text, with reelsmith notes only where the text alone would read back
        differently; `parse` of it equals `screenplay`.
    """
    cues = export.choose_cues(screenplay.characters)
    # 1. the cast goes into notes only when the cues alone would not give it back
    notes = export.Notes()
    plain = parse(export.write(screenplay, cues, notes))
    notes.cast = plain.characters != screenplay.characters
    # 2. so does every field of a scene or shot that the text alone reads differently
    notes.fill(parse(export.write(screenplay, cues, notes)), screenplay)
    return export.write(screenplay, cues, notes)
