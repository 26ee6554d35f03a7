"""The storyboard of a movie: a contact-sheet PNG and a self-contained HTML page.

The contact sheet shows each shot's keyframe (enlarged by a whole factor when small) with the
shot id and the first line of its action, in PIL's default font. The page holds the shot list
by scene (heading, shot size and camera move, action, dialogue), each shot's keyframe as a PNG
and its video as an mp4, all inline as data: URIs; it has no script and its content security
policy forbids loading anything else.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reelsmith.schema.screenplay import Scene, Screenplay, Setting, Shot

THUMB = 128  # the contact sheet's keyframe box, pixels
PAD = 8
LINE = 13  # caption line height
COLUMNS = 6

HEADING_PREFIXES = {Setting.interior: "INT.", Setting.exterior: "EXT.", Setting.both: "INT./EXT."}


class Span(Protocol):
    """A shot's place on the movie's timeline (`renderer.assembly.timeline.ShotSpan`)."""

    shot_id: str
    start: int
    frames: int


def scene_heading(scene: Scene) -> str:
    """'EXT. FOREST CLEARING - NIGHT' (the location alone when the setting is unknown)."""
    prefix = HEADING_PREFIXES.get(scene.setting, "")
    place = " ".join(scene.location.split()).upper()
    return f"{prefix} {place} - {scene.time.value.upper()}".strip()


def contact_sheet(
    screenplay: Screenplay,
    keyframes: Mapping[str, np.ndarray],
    timeline: Sequence[Span],
    fps: int,
    size: tuple[int, int],
) -> Image.Image:
    """A grid of the shots' keyframes with shot id and first action line, under a title line.

    Args:
        screenplay: Gives the title, the story order and each shot's action.
        keyframes: Shot id -> keyframe (h, w, 3) uint8.
        timeline: Each shot's span in movie frames, story order.
        fps: The movie's frame rate.
        size: The shots' native (height, width), stated in the title line.
    """
    shots = [shot for _, shot in screenplay.shots()]
    columns = max(1, min(COLUMNS, len(shots)))
    rows = math.ceil(len(shots) / columns)
    cell_w, cell_h = THUMB + PAD, THUMB + 2 * LINE + PAD
    header = 2 * LINE + PAD
    sheet = Image.new("RGB", (PAD + columns * cell_w, header + rows * cell_h), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    seconds = (timeline[-1].start + timeline[-1].frames) / fps if timeline else 0.0
    info = (
        f"{len(shots)} shots, {seconds:.1f} s at {fps} fps; "
        f"native size {size[1]}x{size[0]}, keyframes shown enlarged"
    )
    width = sheet.width - 2 * PAD
    draw.text((PAD, 4), _fit(draw, font, screenplay.title, width), fill=(0, 0, 0), font=font)
    draw.text((PAD, 4 + LINE), _fit(draw, font, info, width), fill=(90, 90, 90), font=font)
    for k, shot in enumerate(shots):
        x = PAD + (k % columns) * cell_w
        y = header + (k // columns) * cell_h
        thumb = thumbnail(keyframes[shot.id], THUMB)
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        action = shot.action.strip().splitlines()[0] if shot.action.strip() else ""
        draw.text((x, y + THUMB + 2), _fit(draw, font, shot.id, THUMB), fill=(0, 0, 0), font=font)
        draw.text(
            (x, y + THUMB + 2 + LINE), _fit(draw, font, action, THUMB), fill=(60, 60, 60), font=font
        )
    return sheet


def thumbnail(image: np.ndarray, box: int) -> Image.Image:
    """Fit an RGB image in a `box`-pixel square: whole-factor nearest-neighbour enlargement
    for small images (pixels stay sharp), Lanczos reduction for large ones."""
    picture = Image.fromarray(np.ascontiguousarray(image), "RGB")
    longest = max(picture.size)
    if longest <= box:
        factor = box // longest
        return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    scale = box / longest
    target = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(target, Image.LANCZOS)


def _fit(draw: ImageDraw.ImageDraw, font, text: str, width: int) -> str:
    """`text` on one line, cut with '...' to fit `width` pixels, drawable in `font`."""
    text = " ".join(text.split())
    if not isinstance(font, ImageFont.FreeTypeFont):  # the bitmap fallback font is Latin-1
        text = text.encode("latin-1", "replace").decode("latin-1")
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "..."


def storyboard_html(
    screenplay: Screenplay,
    keyframes: Mapping[str, bytes],
    videos: Mapping[str, bytes],
    timeline: Sequence[Span],
    fps: int,
    size: tuple[int, int],
    upscale: int,
) -> str:
    """A self-contained HTML page of the storyboard: one `.tile` element per shot.

    Args:
        screenplay: The shot list's text, by scene.
        keyframes: Shot id -> keyframe PNG bytes.
        videos: Shot id -> shot mp4 bytes.
        timeline: Each shot's span in movie frames (its start time is shown).
        fps: The movie's frame rate.
        size: The shots' native (height, width).
        upscale: The display enlargement of keyframes and videos.
    """
    esc = _escape
    spans = {span.shot_id: span for span in timeline}
    names = {c.id: c.name for c in screenplay.characters}
    seconds = (timeline[-1].start + timeline[-1].frames) / fps if timeline else 0.0
    height, width = size[0] * upscale, size[1] * upscale
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; media-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(screenplay.title)} - storyboard</title>",
        f"<style>{_CSS % {'width': width, 'height': height}}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{esc(screenplay.title)}</h1>",
    ]
    if screenplay.logline:
        out.append(f'<p class="logline">{esc(screenplay.logline)}</p>')
    if screenplay.style:
        out.append(f'<p class="style">Style: {esc(screenplay.style)}</p>')
    out.append(
        f'<p class="info">{screenplay.num_shots} shots, {seconds:.1f} s at {fps} fps; '
        f"native size {size[1]}&times;{size[0]} (movie.mp4 enlarged {upscale}&times;)</p>"
    )
    if screenplay.characters:
        cast = ", ".join(
            f"<b>{esc(c.name)}</b>" + (f" ({esc(c.description)})" if c.description else "")
            for c in screenplay.characters
        )
        out.append(f'<p class="cast">Cast: {cast}</p>')
    out.append("</header>")
    for scene in screenplay.scenes:
        out.append(f'<section class="scene" id="scene-{esc(scene.id)}">')
        out.append(f"<h2>{esc(scene_heading(scene))}</h2>")
        if scene.summary:
            out.append(f'<p class="summary">{esc(scene.summary)}</p>')
        out.append('<div class="tiles">')
        for shot in scene.shots:
            out.append(_tile(shot, spans[shot.id], fps, keyframes[shot.id], videos[shot.id], names))
        out.append("</div></section>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _tile(
    shot: Shot, span: Span, fps: int, png: bytes, mp4: bytes, names: Mapping[str, str]
) -> str:
    esc = _escape
    keyframe_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    video_uri = "data:video/mp4;base64," + base64.b64encode(mp4).decode("ascii")
    facts = (
        f"{shot.size.value}, {shot.camera.value}; {span.frames / fps:.2f} s "
        f"from {_clock(span.start / fps)}; then {shot.transition.value}"
    )
    parts = [
        f'<article class="tile" id="shot-{esc(shot.id)}">',
        f'<h3>{esc(shot.id)}</h3><p class="facts">{esc(facts)}</p>',
        '<div class="media">',
        f'<img src="{keyframe_uri}" alt="keyframe of {esc(shot.id)}">',
        f'<video controls loop muted playsinline preload="metadata" poster="{keyframe_uri}">'
        f'<source src="{video_uri}" type="video/mp4"></video>',
        "</div>",
    ]
    if shot.characters:
        people = ", ".join(esc(names.get(c, c)) for c in shot.characters)
        parts.append(f'<p class="characters">On screen: {people}</p>')
    if shot.action:
        parts.append(f'<p class="action">{esc(shot.action)}</p>')
    for line in shot.dialogue:
        speaker = esc(names.get(line.speaker, line.speaker))
        if line.extension:
            speaker += f" ({esc(line.extension)})"
        aside = f" <i>({esc(line.parenthetical)})</i>" if line.parenthetical else ""
        parts.append(f'<p class="line"><b>{speaker}</b>{aside} {esc(line.line)}</p>')
    parts.append("</article>")
    return "\n".join(parts)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
header { margin-bottom: 1em; } .info, .facts { color: #666; }
h2 { font-size: 1.1em; letter-spacing: 0.05em; border-bottom: 1px solid #ccc; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; }
.tile { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px;
  width: calc(2 * min(%(width)dpx, 240px) + 16px); }
.tile h3 { margin: 0; font-size: 1em; } .tile p { margin: 0.3em 0; }
.media { display: flex; gap: 8px; }
.media img, .media video { width: min(%(width)dpx, 240px); aspect-ratio: %(width)d / %(height)d;
  image-rendering: pixelated; background: #000; }
.action { white-space: pre-wrap; } .line b { text-transform: uppercase; }
"""
