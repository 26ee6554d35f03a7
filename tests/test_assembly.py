"""Movie assembly: shot and movie mp4s, transitions, WebVTT subtitles, storyboard PNG and HTML."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from reelsmith.errors import InputError
from reelsmith.renderer.assembly.movie import ShotMedia, assemble
from reelsmith.renderer.assembly.subtitles import subtitle_cues, to_webvtt, validate_webvtt
from reelsmith.renderer.assembly.timeline import plan_timeline
from reelsmith.renderer.assembly.video import read_mp4
from reelsmith.schema.screenplay import Screenplay

FPS = 8
COLOURS = {"a": (200, 60, 60), "b": (40, 160, 220), "c": (120, 200, 80), "d": (230, 230, 40)}
LENGTHS = {"a": 16, "b": 16, "c": 12, "d": 8}  # frames
# a -crossfade-> b -fade-> c -cut-> d -fade (to black)-; transitions 0.5 s = 4 frames
MOVIE_FRAMES = sum(LENGTHS.values()) - 4


def make_screenplay() -> Screenplay:
    return Screenplay.model_validate(
        {
            "title": "Lanterns <& Co>",
            "characters": [{"id": "mara", "name": "Mara"}, {"id": "bo", "name": "Bo & Co"}],
            "scenes": [
                {
                    "id": "s1",
                    "location": "forest clearing",
                    "setting": "exterior",
                    "time": "dusk",
                    "shots": [
                        {
                            "id": "a",
                            "duration": 2,
                            "characters": ["mara"],
                            "action": "Mara walks in.\nShe stops.",
                            "dialogue": [{"speaker": "mara", "line": "Where is <everyone>?"}],
                            "transition": "crossfade",
                        },
                        {
                            "id": "b",
                            "duration": 2,
                            "size": "close-up",
                            "dialogue": [
                                {"speaker": "bo", "line": "Here & there.", "parenthetical": "loud"},
                                {"speaker": "mara", "line": "Good."},
                            ],
                            "transition": "fade",
                        },
                    ],
                },
                {
                    "id": "s2",
                    "location": "kitchen",
                    "setting": "interior",
                    "time": "night",
                    "shots": [
                        {"id": "c", "duration": 1.5, "action": "<script>alert(1)</script> <b>x"},
                        {"id": "d", "duration": 1, "transition": "fade"},
                    ],
                },
            ],
        }
    )


def make_shot(shot_id: str) -> ShotMedia:
    """A flat colour with a white square moving along the bottom (the corner stays flat)."""
    frames = np.empty((LENGTHS[shot_id], 64, 64, 3), np.uint8)
    frames[:] = COLOURS[shot_id]
    for t in range(len(frames)):
        frames[t, 40:48, 4 * t % 56 : 4 * t % 56 + 8] = 255
    return ShotMedia(frames, frames[0].copy())


def make_shots() -> dict[str, ShotMedia]:
    return {shot_id: make_shot(shot_id) for shot_id in LENGTHS}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    calls = []
    run_dir = tmp_path_factory.mktemp("run")
    result = assemble(
        run_dir, make_screenplay(), make_shots(), FPS, crf=12, callback=lambda *a: calls.append(a)
    )
    return result, calls


def probe(path: Path) -> tuple[int, float, float, tuple[int, int]]:
    """Frames, frame rate, duration in seconds and (height, width) as PyAV reads them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        duration = float(stream.duration * stream.time_base)
        return count, float(stream.average_rate), duration, (stream.height, stream.width)


def test_each_shot_reads_back_at_native_size(run):
    result, _ = run
    assert list(result.shots) == list("abcd")
    for shot_id, path in result.shots.items():
        count, fps, duration, size = probe(path)
        assert (count, fps, size) == (LENGTHS[shot_id], FPS, (64, 64))
        assert duration == pytest.approx(LENGTHS[shot_id] / FPS)
        frames, _ = read_mp4(path)
        error = np.abs(frames.astype(int) - make_shot(shot_id).frames.astype(int)).mean()
        assert error < 3, shot_id  # H.264 blurs the square's edges a little
        keyframe = np.asarray(Image.open(result.keyframes[shot_id]))
        assert np.array_equal(keyframe, make_shot(shot_id).keyframe)


def test_movie_has_the_shots_frames_less_crossfades(run):
    result, calls = run
    count, fps, duration, size = probe(result.movie)
    assert (count, fps, size) == (MOVIE_FRAMES, FPS, (256, 256))
    assert duration == pytest.approx(MOVIE_FRAMES / FPS) == pytest.approx(result.duration)
    assert result.frame_count == MOVIE_FRAMES
    with av.open(str(result.movie)) as container:
        assert "native size 64x64" in container.metadata["comment"]
        assert container.metadata["title"] == "Lanterns <& Co>"
    assert [s.start for s in result.timeline] == [0, 12, 28, 40]
    stages = {stage: (done, total) for stage, done, total in calls}
    assert stages["shots"] == (4, 4) and stages["movie"] == (MOVIE_FRAMES, MOVIE_FRAMES)
    assert calls[-1] == ("storyboard", 1, 1)


def test_movie_pixels_cuts_crossfades_and_fades(run):
    result, _ = run
    frames, _ = read_mp4(result.movie)  # (T, 256, 256, 3), 4x nearest neighbour
    movie = frames.reshape(MOVIE_FRAMES, 64, 4, 64, 4, 3).astype(float).mean(axis=(2, 4))
    shot = {i: make_shot(i).frames.astype(float) for i in LENGTHS}

    def close(got, want):
        return np.abs(got - want).mean() < 3

    # cut-like stretches: the shots' own frames
    assert close(movie[0:12], shot["a"][0:12])
    assert close(movie[16:24], shot["b"][4:12])
    assert close(movie[32:40], shot["c"][4:12])
    assert close(movie[40:44], shot["d"][0:4])
    corner = movie[:, :16, :16].mean(axis=(1, 2))  # (T, 3), flat colour in every shot
    a, b = np.array(COLOURS["a"]), np.array(COLOURS["b"])
    # crossfade a -> b over movie frames 12..15: blends, moving from a towards b
    for j in range(4):
        weight = (j + 1) / 5
        assert np.abs(corner[12 + j] - (a * (1 - weight) + b * weight)).max() < 6, j
    # fade b -> c through black, and the movie's end fades out
    assert np.abs(corner[24] - 0.75 * b).max() < 6
    assert corner[27].max() < 6 and corner[28].max() < 6 and corner[47].max() < 6
    assert np.abs(corner[31] - 0.75 * np.array(COLOURS["c"])).max() < 6


def test_subtitles_validate_in_order_inside_the_movie_and_escaped(run):
    result, _ = run
    text = result.subtitles.read_text("utf-8")
    cues = validate_webvtt(text, result.duration)
    assert [c[2] for c in cues] == [
        "<v Mara>Where is &lt;everyone&gt;?</v>",
        "<v Bo &amp; Co>(loud) Here &amp; there.</v>",
        "<v Mara>Good.</v>",
    ]
    starts = [c[0] for c in cues]
    assert starts == sorted(starts) and cues[-1][1] <= result.duration
    # each line inside its shot's own stretch: a ends mid-crossfade (frame 14), b then begins
    assert cues[0][0] == 0 and cues[0][1] == pytest.approx(14 / FPS)
    assert cues[1][0] == pytest.approx(14 / FPS) and cues[2][1] == pytest.approx(28 / FPS)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("00:00:00.000 --> 00:00:01.000\nhi\n", "WEBVTT"),
        ("WEBVTT\n\n00:00.000 -> 00:01.000\nhi\n", "timing"),
        ("WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nhi\n", "before its start"),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nx\n\n00:00.500 --> 00:03.000\ny\n", "previous"),
        ("WEBVTT\n\n1\n00:00:01.000 --> 00:00:09.000\nhi\n", "after the movie"),
        ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v A>1 < 2</v>\n", "unescaped"),
    ],
)
def test_webvtt_validator_rejects(text, problem):
    with pytest.raises(ValueError, match=problem):
        validate_webvtt(text, duration=5.0)


def test_storyboard_png_tiles(run):
    result, _ = run
    sheet = np.asarray(Image.open(result.storyboard_png).convert("RGB"))
    assert sheet.shape[1] > 4 * 128 and sheet.shape[0] > 128
    for colour in COLOURS.values():  # every keyframe shows, enlarged to 128x128
        assert (np.all(sheet == colour, axis=-1).sum()) > 100 * 100


def test_same_inputs_same_bytes(run, tmp_path):
    result, _ = run
    assemble(tmp_path, make_screenplay(), make_shots(), FPS, crf=12)
    for name in ("movie.mp4", "subtitles.vtt", "storyboard.png", "storyboard.html", "shots/b.mp4"):
        assert (tmp_path / name).read_bytes() == (result.run_dir / name).read_bytes(), name


def test_run_directory_is_what_evaluation_reads(run):
    from reelsmith.evaluation.cli import load_run

    result, _ = run
    screenplay, frames, _, _ = load_run(result.run_dir)
    assert screenplay == make_screenplay()
    assert [f.shape for f in frames] == [(LENGTHS[i], 64, 64, 3) for i in LENGTHS]


def test_transitions_are_shortened_to_half_the_shorter_shot():
    screenplay = make_screenplay()
    spans = plan_timeline(screenplay, {"a": 3, "b": 40, "c": 40, "d": 1}, fps=24)
    assert (spans[0].overlap_out, spans[1].overlap_in) == (1, 1)  # a has 3 frames: 1 overlaps
    assert (spans[1].fade_out, spans[2].fade_in) == (12, 12)  # 0.5 s at 24 fps
    assert spans[3].fade_out == 0 and spans[3].end == 3 + 40 + 40 + 1 - 1
    cues = validate_webvtt(to_webvtt(subtitle_cues(screenplay, spans, 24)), spans[-1].end / 24)
    assert len(cues) == 3 and cues[0][1] <= 2.5 / 24  # a's own stretch: 2.5 of its 3 frames
    cut = plan_timeline(screenplay, dict(LENGTHS), fps=FPS, transition_seconds=0)
    assert cut[-1].end == sum(LENGTHS.values())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 30), st.sampled_from(["cut", "crossfade", "fade"]), st.integers(0, 4)
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([1, 8, 24, 25, 30, 60, 240]),
)
def test_any_timeline_tiles_the_movie_and_its_cues_validate(shots, fps):
    screenplay = Screenplay.model_validate(
        {
            "title": "t",
            "characters": [{"id": "mara", "name": "Mara"}],
            "scenes": [
                {
                    "id": "s",
                    "location": "x",
                    "shots": [
                        {
                            "id": f"s{k}",
                            "transition": transition,
                            "dialogue": [
                                {"speaker": "mara", "line": "hi " * j} for j in range(1, lines + 1)
                            ],
                        }
                        for k, (_, transition, lines) in enumerate(shots)
                    ],
                }
            ],
        }
    )
    spans = plan_timeline(screenplay, {f"s{k}": n for k, (n, _, _) in enumerate(shots)}, fps)
    overlaps = sum(span.overlap_out for span in spans)
    assert spans[-1].end == sum(n for n, _, _ in shots) - overlaps
    owns = [span.own for span in spans]
    assert owns[0][0] == 0 and owns[-1][1] == spans[-1].end
    assert all(a < b for a, b in owns)
    assert all(a[1] == b[0] for a, b in zip(owns[:-1], owns[1:], strict=True))
    cues = validate_webvtt(to_webvtt(subtitle_cues(screenplay, spans, fps)), spans[-1].end / fps)
    assert "".join(c[2] for c in cues).count("<v Mara>") == sum(lines for _, _, lines in shots)


def _bad(shot_id: str, **change) -> dict[str, ShotMedia]:
    shots = make_shots()
    media = shots[shot_id]
    shots[shot_id] = ShotMedia(
        change.get("frames", media.frames), change.get("keyframe", media.keyframe)
    )
    return shots


BAD_INPUTS = {
    "no frames": (
        lambda: _bad("c", frames=np.zeros((0, 64, 64, 3), np.uint8)),
        "'c'.*frame count 0",
    ),
    "float frames": (lambda: _bad("b", frames=np.zeros((4, 64, 64, 3))), "'b'.*uint8"),
    "grey frames": (
        lambda: _bad("d", frames=np.zeros((4, 64, 64), np.uint8)),
        "'d'.*\\(T, H, W, 3\\)",
    ),
    "other size": (lambda: _bad("c", frames=np.zeros((4, 32, 32, 3), np.uint8)), "'c'.*32x32"),
    "odd size": (lambda: _bad("a", frames=np.zeros((4, 63, 64, 3), np.uint8)), "'a'.*even"),
    "bad keyframe": (lambda: _bad("b", keyframe=np.zeros((64, 64), np.uint8)), "'b'.*keyframe"),
    "missing shot": (lambda: {k: v for k, v in make_shots().items() if k != "c"}, "'c'.*no frames"),
    "extra shot": (lambda: {**make_shots(), "zz": make_shot("a")}, "'zz'.*screenplay lacks"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_shot_and_leaves_the_run_alone(run, tmp_path, case):
    result, _ = run
    shutil.copytree(result.run_dir, tmp_path / "run")
    before = {p: p.read_bytes() for p in sorted((tmp_path / "run").rglob("*")) if p.is_file()}
    make, message = BAD_INPUTS[case]
    with pytest.raises(InputError, match=message) as error:
        assemble(tmp_path / "run", make_screenplay(), make(), FPS)
    assert "\n" not in str(error.value)
    after = {p: p.read_bytes() for p in sorted((tmp_path / "run").rglob("*")) if p.is_file()}
    assert after == before


# -- the storyboard page in a real browser -----------------------------------------------


class Chromium:
    """Headless chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    FLAGS = (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--remote-debugging-pipe"
    ).split()

    def __init__(self, executable: str, profile: Path):
        # fds above 9, so bash's '3<&' and '4>&' cannot overwrite one another (dash cannot
        # redirect fds above 9, hence bash)
        child_in, self._to_child = (_high(fd) for fd in os.pipe())
        self._from_child, child_out = (_high(fd) for fd in os.pipe())
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}', executable]
            + [*self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(child_in, child_out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_in)
        os.close(child_out)
        self._buffer, self._id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            for reply in self._receive():
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
                self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(event.get("method") == method for event in self.events):
            self.events.extend(self._receive())

    def _receive(self, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in messages]

    def load(self, url: str, expression: str) -> tuple[object, list[str], list[str]]:
        """Open `url`; return `expression`'s value (a promise's, awaited), the page's errors
        and the URLs it fetched."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        value = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )["result"].get("value")
        errors, urls = [], []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("exception", {}).get("description"))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(str(params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"])
            elif method == "Network.loadingFailed":
                errors.append(f"loading failed: {params}")
            elif method == "Network.requestWillBeSent":
                urls.append(params["request"]["url"])
        self.send("Target.closeTarget", {"targetId": target})
        return value, errors, urls

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(10)
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def _high(fd: int) -> int:
    """A copy of `fd` numbered 10 or more (the original closed)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    browser = Chromium(executable, tmp_path_factory.mktemp("profile"))
    yield browser
    browser.close()


def test_storyboard_html_loads_without_errors_one_tile_a_shot(run, chromium, tmp_path):
    result, _ = run
    page = result.storyboard_html.as_uri()
    summary = """Promise.all([...document.querySelectorAll('video')].map(v =>
        v.readyState >= 1 ? v : new Promise((ok, fail) => {
            v.onloadedmetadata = () => ok(v); v.onerror = () => fail(new Error('video'));
        }))).then(videos => [
        document.querySelectorAll('.tile').length, document.scripts.length,
        document.querySelector('#shot-c .action').textContent,
        [...document.querySelectorAll('h2')].map(h => h.textContent),
        videos.map(v => [v.videoWidth, v.duration])])"""
    value, errors, urls = chromium.load(page, summary)
    assert errors == []
    assert value == [
        4,
        0,
        "<script>alert(1)</script> <b>x",
        ["EXT. FOREST CLEARING - DUSK", "INT. KITCHEN - NIGHT"],
        [[64, LENGTHS[i] / FPS] for i in LENGTHS],  # each shot's mp4 plays in the page
    ]
    assert urls[0] == page and all(url.startswith("data:") for url in urls[1:])
    # the harness sees errors where there are some
    broken = tmp_path / "broken.html"
    broken.write_text("<script>undefinedName()</script><img src='missing.png'>")
    _, errors, _ = chromium.load(broken.as_uri(), "1")
    assert len(errors) >= 2
