"""`reelsmith make / resume / status` end to end, as real subprocesses: the shipped keyframe
models, a tiny StableVideoDiffusion pipeline (built in code, saved to a folder) for the shots,
real LangGraph checkpoints in SQLite, real PyAV. Runs are killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from reelsmith.agent.config import shipped_shot_model
from reelsmith.agent.driver import describe
from reelsmith.agent.run_dir import RunDir
from reelsmith.errors import InputError
from reelsmith.renderer.assembly.video import read_mp4

PROMPT = "a fox and a robot meet in the forest"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # tiny models: one thread is fastest
DATA = Path(__file__).parent / "data"


def reelsmith(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reelsmith", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **ENV, "REELSMITH_HOME": str(home)},
    )


def assert_clean_failure(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, one error line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [
        line
        for line in result.stderr.strip().splitlines()
        if not line.startswith("reelsmith: warning: ")
    ]
    assert len(lines) == 1 and lines[0].startswith("reelsmith: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its size and mtime: to see that nothing changed (but
    the lock file, and SQLite's own -wal and -shm files, which come and go as it is read)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock" and not p.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def svd(tmp_path_factory) -> Path:
    """A tiny StableVideoDiffusion pipeline saved as a folder, as a user's would be."""
    import torch

    from reelsmith.tests.test_pretrained_shots import svd_pipe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("models") / "svd"
        svd_pipe().save_pretrained(folder)
    finally:
        torch.set_num_threads(threads)
    return folder


def make_args(svd: Path, out: Path, *extra: str) -> list[str]:
    return [
        "make", PROMPT, "--shots", "4", "-o", out, "--seed", "3",
        "--backend", "diffusers", "--shot-model", svd, "--shot-steps", "2", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, svd, home) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted run: what every other run is compared with."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    result = reelsmith(*make_args(svd, out), home=home)
    assert result.returncode == 0, result.stderr
    return out, result


def shot_ids(run: Path) -> list[str]:
    screenplay = json.loads((run / "screenplay.json").read_text())
    return [shot["id"] for scene in screenplay["scenes"] for shot in scene["shots"]]


def rendered_after(run: Path, marker: str) -> list[str]:
    """The shots run.log says were rendered after the last line containing `marker`."""
    lines = (run / "run.log").read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if marker in line)
    return [line.split("shot ")[1].split(":")[0] for line in lines[start:] if ": rendered" in line]


# -- making a movie -------------------------------------------------------------------------


def test_make_writes_a_movie_that_plays_and_scores(baseline, home):
    run, result = baseline
    # the summary names the movie and the storyboard; no progress bars off a terminal
    assert f"{run / 'movie.mp4'}" in result.stdout and "storyboard.html" in result.stdout
    assert "4 shots" in result.stdout and "Traceback" not in result.stderr
    assert all(line.startswith("reelsmith: warning: ") for line in result.stderr.splitlines())

    ids = shot_ids(run)
    assert len(ids) == 4
    for name in ["run.json", "screenplay.json", "checkpoints.sqlite", "cast.json", "run.log"]:
        assert (run / name).is_file(), name
    for name in ["movie.mp4", "subtitles.vtt", "storyboard.png", "storyboard.html"]:
        assert (run / name).stat().st_size > 0, name
    screenplay = json.loads((run / "screenplay.json").read_text())
    cast = json.loads((run / "cast.json").read_text())
    assert set(cast) == {c["id"] for c in screenplay["characters"]}
    for character in cast:
        assert (run / "characters" / f"{character}.png").is_file()
    durations = {s["id"]: s["duration"] for sc in screenplay["scenes"] for s in sc["shots"]}
    for shot_id in ids:
        frames, fps = read_mp4(run / "shots" / f"{shot_id}.mp4")
        assert frames.shape == (round(durations[shot_id] * 8), 64, 64, 3) and fps == 8
        assert (run / "keyframes" / f"{shot_id}.png").is_file()
        index = json.loads((run / "index" / f"{shot_id}.json").read_text())
        assert (run / "cache" / "shots" / f"{index['frames']}.npy").is_file()
    movie, fps = read_mp4(run / "movie.mp4")
    assert movie.shape[1:] == (256, 256, 3) and fps == 8 and len(movie) > 8 * 4

    status = json.loads(reelsmith("status", run, "--json", home=home).stdout)
    assert status["stage"] == "done" and (status["shots_done"], status["shots"]) == (4, 4)
    assert status["paths"]["movie.mp4"] == str(run / "movie.mp4")
    scored = reelsmith("eval", "run", run, "--json", home=home)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["shots"] == 4


def test_the_same_inputs_make_the_same_movie(baseline, svd, home, tmp_path):
    run, _ = baseline
    again = reelsmith(*make_args(svd, tmp_path / "again"), home=home)
    assert again.returncode == 0, again.stderr
    names = ["movie.mp4", "subtitles.vtt", "storyboard.png", "cast.json", "screenplay.json"]
    names += [f"keyframes/{i}.png" for i in shot_ids(run)]
    names += [f"characters/{c}.png" for c in json.loads((run / "cast.json").read_text())]
    # the shots' frames as rendered (shots/*.mp4 at 64 x 64 are not compared byte for byte:
    # PyAV's implicit RGB to YUV conversion of frames that small can read uninitialised memory)
    names += [str(p.relative_to(run)) for p in run.glob("cache/shots/*.npy")]
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (run / name).read_bytes(), name

    # make into the finished run of the same inputs: nothing to do, nothing written
    before = snapshot(run)
    same = reelsmith(*make_args(svd, run), home=home)
    assert same.returncode == 0 and "made before" in same.stdout, same.stderr
    assert {k: v for k, v in snapshot(run).items() if k != "run.log"} == {
        k: v for k, v in before.items() if k != "run.log"
    }


def test_the_python_api_makes_the_same_movie_as_the_command_line(
    baseline, svd, home, tmp_path, monkeypatch
):
    import torch

    import reelsmith as api

    run, _ = baseline
    monkeypatch.setenv("REELSMITH_HOME", str(home))
    settings = dict(shots=4, seed=3, backend="diffusers", shot_model=str(svd), shot_steps=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the command line runs (ENV)
    try:
        movie = api.make(PROMPT, output=tmp_path / "api", **settings)
        again = api.make(PROMPT, output=tmp_path / "api", **settings)
    finally:
        torch.set_num_threads(threads)
    assert movie.status == "done" and movie.shots == 4 and movie.path.is_file()
    assert again.status == "made" and again.seconds == movie.seconds
    names = ["movie.mp4", "subtitles.vtt", "storyboard.png", "cast.json", "screenplay.json"]
    names += [f"keyframes/{i}.png" for i in shot_ids(run)]
    for name in names:
        assert (tmp_path / "api" / name).read_bytes() == (run / name).read_bytes(), name
    assert api.status(tmp_path / "api")["stage"] == "done"
    with pytest.raises(InputError, match="unknown setting 'shot_count'"):
        api.make(PROMPT, output=tmp_path / "other", shot_count=4)
    with pytest.raises(InputError, match="--fps must be from 1 to 60, got 0"):
        api.make(PROMPT, output=tmp_path / "other", fps=0)
    assert not (tmp_path / "other").exists()


def test_a_run_resumed_under_other_library_versions_starts_a_fresh_pass(
    svd, home, tmp_path, monkeypatch
):
    """A pass stopped with shots keyed by other models (here: other library versions) cannot
    render them as keyed; resuming starts a fresh pass instead of failing for ever."""
    import reelsmith as api
    from reelsmith.agent import models

    monkeypatch.setenv("REELSMITH_HOME", str(home))
    settings = dict(shots=2, seed=3, backend="diffusers", shot_model=str(svd), shot_steps=2)
    out = tmp_path / "run"
    assert api.make(PROMPT, output=out, approve=True, **settings).status == "approval"

    def crash(self):
        raise RuntimeError("the machine went down")

    with monkeypatch.context() as patch:
        patch.setattr(models.Models, "_load_shot_renderer", crash)
        with pytest.raises(RuntimeError, match="went down"):
            api.resume(out)  # stopped with both render tasks pending
    assert api.status(out)["stage"] == "rendering shots"
    versions = models.versions()
    monkeypatch.setattr(models, "versions", lambda: {**versions, "diffusers": "99.0"})
    movie = api.resume(out)
    assert movie.status == "done" and movie.shots == 2
    assert "a fresh pass" in (out / "run.log").read_text()
    assert RunDir.open(out).thread == "pass-2"


def test_approve_stops_after_the_screenplay_and_resume_uses_the_edit(svd, home, tmp_path):
    run = tmp_path / "run"
    secret = "sk-never-written-anywhere"
    approve = ["--approve", "--series", "Approvals", "--api-key", secret]
    stopped = reelsmith(*make_args(svd, run, *approve), home=home)
    assert stopped.returncode == 0, stopped.stderr
    assert "waiting for approval" in stopped.stdout and f"reelsmith resume {run}" in stopped.stdout
    assert not (run / "characters").exists() and not (run / "movie.mp4").exists()
    assert describe(RunDir.open(run))["stage"] == "waiting for approval of the screenplay"

    # a bad edit is refused in one line, and the run still waits
    screenplay = json.loads((run / "screenplay.json").read_text())
    bad = json.loads(json.dumps(screenplay))
    bad["scenes"][0]["shots"][0]["characters"] = ["nobody"]
    (run / "screenplay.json").write_text(json.dumps(bad))
    before = snapshot(run)
    assert_clean_failure(reelsmith("resume", run, home=home), "unknown character id 'nobody'")
    assert snapshot(run) == before
    assert describe(RunDir.open(run))["stage"] == "waiting for approval of the screenplay"

    # a good edit: a new title, the last shot cut, one action rewritten
    screenplay["title"] = "The Fox Approves"
    screenplay["scenes"][-1]["shots"] = screenplay["scenes"][-1]["shots"][:-1] or exit(1)
    screenplay["scenes"][0]["shots"][0]["action"] = "The fox waves at the robot."
    (run / "screenplay.json").write_text(json.dumps(screenplay, indent=4))
    resumed = reelsmith("resume", run, home=home)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 shots" in resumed.stdout
    ids = shot_ids(run)
    assert len(ids) == 3 and json.loads((run / "screenplay.json").read_text())["title"] == (
        "The Fox Approves"
    )
    assert sorted(p.stem for p in (run / "shots").glob("*.mp4")) == sorted(ids)
    assert read_mp4(run / "movie.mp4")[0].shape[0] > 0
    # the characters went into the series bible, as cast
    from reelsmith.memory.store import SeriesStore

    with SeriesStore.open(home / "series" / "Approvals", "Approvals", create=False) as store:
        bible = {c["key"]: c["identity"] for c in store.characters()}
    assert bible == json.loads((run / "cast.json").read_text())
    assert not (run / "series").exists()
    for path in [*run.rglob("*"), *(home / "series").rglob("*")]:  # the key stayed in memory
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path


def test_editing_one_shot_renders_exactly_that_shot(baseline, home, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(baseline[0], run)
    before = snapshot(run)
    edited = shot_ids(run)[1]
    screenplay = json.loads((run / "screenplay.json").read_text())
    for scene in screenplay["scenes"]:
        for shot in scene["shots"]:
            if shot["id"] == edited:
                shot["action"] = "The robot jumps over a fallen log."
    (run / "screenplay.json").write_text(json.dumps(screenplay, indent=2))

    assert describe(RunDir.open(run))["screenplay_edited"]
    result = reelsmith("resume", run, home=home)
    assert result.returncode == 0, result.stderr
    after = snapshot(run)
    new_shots = [p for p in after if p.startswith("cache/shots/") and p not in before]
    assert len(new_shots) == 1
    assert rendered_after(run, "resume: pass-2") == [edited]
    for path, stamp in before.items():  # every stored output and every other index kept as is
        if path.startswith("cache/") or (path.startswith("index/") and edited not in path):
            assert after[path] == stamp, path
    assert not [p for p in after if p.startswith("cache/keyframes/") and p not in before]
    index = json.loads((run / "index" / f"{edited}.json").read_text())
    assert f"cache/shots/{index['frames']}.npy" == new_shots[0]
    status = describe(RunDir.open(run))
    assert status["pass"] == "pass-2" and status["stage"] == "done"
    assert not status["screenplay_edited"]

    # a movie lost is made again, from the stored shots alone
    movie = (run / "movie.mp4").read_bytes()
    (run / "movie.mp4").unlink()
    assert reelsmith("resume", run, home=home).returncode == 0
    assert (run / "movie.mp4").read_bytes() == movie
    assert rendered_after(run, "resume: pass-3") == []


@pytest.mark.skipif(shipped_shot_model() is None, reason="no built-in shot model shipped")
def test_make_with_the_built_in_models(home, tmp_path):
    result = reelsmith("make", PROMPT, "--shots", "6", "-o", tmp_path / "run", home=home)
    assert result.returncode == 0, result.stderr
    movie, fps = read_mp4(tmp_path / "run" / "movie.mp4")
    assert len(movie) / fps >= 15 and len(shot_ids(tmp_path / "run")) == 6
    for shot_id in shot_ids(tmp_path / "run"):
        assert read_mp4(tmp_path / "run" / "shots" / f"{shot_id}.mp4")[0].shape[1:] == (64, 64, 3)


def test_make_from_a_shot_list(svd, home, tmp_path):
    run = tmp_path / "run"
    source = DATA / "shotlists" / "harbour.yaml"
    args = [
        "make", "--from", source, "-o", run, "--approve",
        "--backend", "diffusers", "--shot-model", svd,
    ]  # fmt: skip
    stopped = reelsmith(*args, home=home)
    assert stopped.returncode == 0, stopped.stderr
    assert (run / "source.yaml").read_bytes() == source.read_bytes()
    assert json.loads((run / "screenplay.json").read_text())["title"] == "The Harbour"
    again = reelsmith(*args, home=home)  # the same inputs: still waiting, nothing done
    assert again.returncode == 0 and "waiting for approval" in again.stdout


@pytest.mark.slow
def test_a_series_keeps_its_cast_from_one_episode_to_the_next(svd, home, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    episode = ["--series", "Forest Friends"]
    assert reelsmith(*make_args(svd, first, *episode), home=home).returncode == 0
    later = make_args(svd, second, *episode)
    later[1] = "the fox and the robot race along the beach"
    later[later.index("--seed") + 1] = "4"  # another seed: a new cast would look different
    result = reelsmith(*later, home=home)
    assert result.returncode == 0, result.stderr
    cast = json.loads((second / "cast.json").read_text())
    assert cast == json.loads((first / "cast.json").read_text())
    for character in cast:
        portrait = f"characters/{character}.png"
        assert (second / portrait).read_bytes() == (first / portrait).read_bytes()


# -- killed and resumed ---------------------------------------------------------------------


def count(run: Path, pattern: str) -> int:
    return sum(1 for _ in run.glob(pattern))


def checkpoints(run: Path) -> int:
    try:
        with sqlite3.connect(f"file:{run / 'checkpoints.sqlite'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    except sqlite3.Error:
        return 0


KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "two shots stored": lambda run: count(run, "cache/shots/*.npy") >= 2,
    "screenplay written": lambda run: (run / "screenplay.json").is_file(),
    "a portrait drawn": lambda run: count(run, "characters/*.png") >= 1,
    "four checkpoints": lambda run: checkpoints(run) >= 4,
    "a keyframe stored": lambda run: count(run, "cache/keyframes/*.png") >= 1,
    "one shot stored": lambda run: count(run, "cache/shots/*.npy") >= 1,
    "three shots stored": lambda run: count(run, "cache/shots/*.npy") >= 3,
    "assembling": lambda run: count(run, "shots/*.mp4") >= 1,
}


def kill_then_resume(point: str, baseline: Path, svd: Path, home: Path, run: Path) -> None:
    # 1. start the real CLI and kill it (SIGKILL) when the run reaches the point
    log = open(run.parent / "killed.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "reelsmith", *map(str, make_args(svd, run))],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **ENV, "REELSMITH_HOME": str(home)},
    )
    deadline = time.monotonic() + 240
    while not (run.is_dir() and KILL_POINTS[point](run)):
        assert process.poll() is None, f"the run ended before '{point}'"
        assert time.monotonic() < deadline, f"'{point}' never came"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    log.close()
    assert process.returncode == -signal.SIGKILL
    on_disk = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in run.glob("cache/shots/*")}

    # 2. resume: it finishes, renders no shot that was on disk, and makes the same movie
    resumed = reelsmith("resume", run, home=home)
    assert resumed.returncode == 0, resumed.stderr
    for name, stamp in on_disk.items():
        path = run / "cache" / "shots" / name
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp, name
    stored = {f"{json.loads(p.read_text())['frames']}.npy": p.stem for p in run.glob("index/*")}
    again = rendered_after(run, "resume: pass-1")
    assert not [stored[name] for name in on_disk if stored.get(name) in again]
    assert not list(run.rglob(".*.tmp"))
    assert np.array_equal(read_mp4(run / "movie.mp4")[0], read_mp4(baseline / "movie.mp4")[0])
    assert (run / "movie.mp4").read_bytes() == (baseline / "movie.mp4").read_bytes()
    status = describe(RunDir.open(run))
    assert status["stage"] == "done" and status["shots_done"] == 4


def test_a_killed_run_resumes_without_rendering_a_shot_twice(baseline, svd, home, tmp_path):
    kill_then_resume("two shots stored", baseline[0], svd, home, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in KILL_POINTS if p != "two shots stored"])
def test_killed_at_any_point_the_run_resumes_to_the_same_movie(
    point, baseline, svd, home, tmp_path
):
    kill_then_resume(point, baseline[0], svd, home, tmp_path / "run")


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_damages_nothing(baseline, svd, home, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(baseline[0], run)
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    (not_a_run / "todo.txt").write_text("buy film")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"title": "x", "scenes": []}')
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    diffusers = ["--backend", "diffusers", "--shot-model", svd]
    cases = [
        (["resume", tmp_path / "missing"], "no such run directory"),
        (["resume", not_a_run], "not a reelsmith run directory"),
        (["status", not_a_run], "not a reelsmith run directory"),
        (["resume", run], "this run is finished"),
        (make_args(svd, not_a_run), "not empty, and not a reelsmith run directory"),
        (make_args(svd, run, "--fps", "12"), "not empty, and not a run of these inputs"),
        (
            ["make", "--from", DATA / "shotlists" / "harbour.csv", "-o", run, *diffusers],
            "not empty, and not a run of these inputs",
        ),
        (make_args(svd, a_file), "exists and is not a folder"),
        (["make", "-o", tmp_path / "o1", *diffusers], "give either a PROMPT or --from FILE"),
        (["make", PROMPT, "--from", bad_json, "-o", tmp_path / "o2"], "give either a PROMPT"),
        (["make", "--from", bad_json, "-o", tmp_path / "o3", *diffusers], "bad.json"),
        (
            ["make", "--from", DATA / "shotlists" / "harbour.csv", "--shots", "3", "-o", tmp_path],
            "--shots is for writing a screenplay",
        ),
        (["make", PROMPT, "-o", tmp_path / "o4", "--backend", "diffusers"], "--shot-model"),
        (make_args(svd, tmp_path / "o5", "--resolution", "128"), "--resolution 128"),
        (make_args(svd, tmp_path / "o6", "--fps", "0"), "--fps must be from 1 to 60"),
        (
            ["make", PROMPT, "-o", tmp_path / "o8", "--plan-temperature", "3"],
            "--plan-temperature must be from 0 to 2, got 3",
        ),
    ]
    if shipped_shot_model() is None:  # until it ships
        cases.append((["make", PROMPT, "-o", tmp_path / "o7"], "--backend diffusers --shot-model"))
    before = snapshot(tmp_path)
    for args, needle in cases:
        assert_clean_failure(reelsmith(*args, home=home), needle)
    assert snapshot(tmp_path) == before  # nothing created, nothing changed

    # a run directory from an incompatible version is refused, never changed
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "format": 0, "reelsmith": "0.0.1"}))
    before = snapshot(run)
    assert_clean_failure(reelsmith("resume", run, home=home), "run format 0")
    assert_clean_failure(reelsmith("status", run, home=home), "run format 0")
    assert_clean_failure(reelsmith(*make_args(svd, run), home=home), "run format 0")
    assert snapshot(run) == before
    (run / "run.json").write_text(json.dumps(record))

    # one process at a time
    with RunDir.open(run).lock():
        assert_clean_failure(reelsmith("resume", run, home=home), "another reelsmith")
