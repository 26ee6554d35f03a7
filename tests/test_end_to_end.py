"""benchmarks/end_to_end.py: its full setting makes what the agent's graph makes, each ablation
changes what the renderer receives, and the report is written. Shipped models, real LangGraph,
real SQLite, real judges; one held-out screenplay of 3 shots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from reelsmith.agent.cache import Cache
from reelsmith.agent.config import ModelChoice, RunConfig, RunInputs, shipped_shot_model
from reelsmith.agent.context import Context
from reelsmith.agent.driver import advance
from reelsmith.agent.models import Models
from reelsmith.agent.run_dir import RunDir
from reelsmith.evaluation.metrics import Judges
from reelsmith.planner.planning import DEFAULT_TEMPERATURE
from reelsmith.tests.benchmark_modules import load_benchmark

pytestmark = pytest.mark.skipif(shipped_shot_model() is None, reason="no shot model shipped")
SEED = 9100


@pytest.fixture(scope="module")
def made():
    """One screenplay, its cast, and the movie of every setting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        e2e = load_benchmark("end_to_end")
        screenplay = e2e.held_out(1, SEED, 3, 3)[0]
        models = Models(ModelChoice())
        cast = e2e.cast_movie(screenplay, models, SEED)
        movies = {
            name: e2e.make_movie(setting, screenplay, cast, models, SEED)
            for name, setting in e2e.SETTINGS.items()
        }
        yield e2e, screenplay, models, cast, movies
    finally:
        torch.set_num_threads(threads)


def test_the_full_setting_makes_the_frames_the_agent_makes(made, tmp_path):
    _, screenplay, models, _, movies = made
    source = screenplay.to_json().encode()
    inputs = RunInputs(source="source.json", seed=SEED)
    run = RunDir.create(tmp_path / "run", RunConfig(inputs), (".json", source))
    assert advance(run, Context(run, models), resume=False).status == "done"
    cache = Cache(run.path)
    for (_, shot), frames in zip(screenplay.shots(), movies["full"].frames, strict=True):
        stored = cache.shot(cache.index(shot.id)["frames"])
        np.testing.assert_array_equal(stored, frames, err_msg=shot.id)


def test_each_ablation_changes_what_the_renderer_receives(made):
    _, screenplay, _, cast, movies = made
    shots = [shot for _, shot in screenplay.shots()]
    full, memory_off, context_off, chained = (
        movies[n] for n in ("full", "memory_off", "context_off", "chained")
    )
    assert any(shot.characters for shot in shots)
    # full: every character's embedding, from the cast
    for shot, request in zip(shots, full.requests, strict=True):
        assert set(request.identities) == set(shot.characters)
    # memory off: no embedding reaches the renderer, and the keyframes differ
    assert all(not request.identities for request in memory_off.requests)
    assert any(
        not np.array_equal(a, b) for a, b in zip(full.keyframes, memory_off.keyframes, strict=True)
    )
    # planner context off: the first shot (no earlier ones to see) alike, a later one not
    np.testing.assert_array_equal(context_off.keyframes[0], full.keyframes[0])
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(full.keyframes[1:], context_off.keyframes[1:], strict=True)
    )
    # chained: the first shot from its planned keyframe, each later one from the frames before
    np.testing.assert_array_equal(chained.requests[0].keyframe, full.keyframes[0])
    for before, request in zip(chained.frames, chained.requests[1:], strict=False):
        np.testing.assert_array_equal(request.keyframe, before[-1])


def test_the_report_is_written(made, tmp_path):
    e2e, screenplay, _, cast, movies = made
    judges = Judges.load()
    truth = e2e.ground_truth(screenplay)
    report = {"count": 1, "shots": 3, "seed": SEED, "device": "cpu", "text_names_every_look": 1}
    report["judge_threshold"] = judges.frame.threshold
    report["planner_temperature"] = DEFAULT_TEMPERATURE
    report["ground_truth"] = e2e.summarise([e2e.judge(judges, screenplay, truth, cast, None)])
    report["settings"] = {
        name: e2e.summarise([e2e.judge(judges, screenplay, movie.frames, cast, truth)])
        for name, movie in movies.items()
    }
    report["acceptance"] = e2e.acceptance(
        report["settings"]["full"], report["settings"]["memory_off"], report["ground_truth"]
    )
    e2e.write_report(report, tmp_path)

    table = (tmp_path / "end_to_end.md").read_text()
    assert f"planner temperature {DEFAULT_TEMPERATURE:g}, frame judge's threshold" in table
    assert f"frame judge's threshold {judges.frame.threshold}." in table
    for title in ["ground truth", *(s.title for s in e2e.SETTINGS.values())]:
        assert f"| {title} |" in table
    assert json.loads((tmp_path / "end_to_end.json").read_text())["settings"].keys() == set(
        e2e.SETTINGS
    )
    assert len(report["settings"]["full"]["identity_by_tenth"]) == 10
    with Image.open(tmp_path / "identity_by_position.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    colours = {tuple(c) for c in pixels.reshape(-1, 3)[::7]}
    assert {tuple(c) for c in e2e.PALETTE[: 1 + len(movies)]} <= colours  # a line each
