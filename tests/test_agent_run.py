"""The agent's parts in-process: run directories, content keys, the cache, the graph's shape
and the backend choice. The whole agent, run as the real CLI, is in test_agent.py."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest
import torch

from reelsmith.agent.cache import Cache, folder_fingerprint, identity_digest, keyframe_key, shot_key
from reelsmith.agent.config import ModelChoice, RunConfig, RunInputs, RunOptions, shipped_shot_model
from reelsmith.agent.graph import build_graph
from reelsmith.agent.run_dir import RUN_FORMAT, RunDir
from reelsmith.errors import InputError
from reelsmith.renderer.shots.protocol import ShotRequest
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec
from reelsmith.stages.shots import render_seed

# -- run directories ------------------------------------------------------------------------


def test_a_run_directory_is_created_whole(tmp_path):
    inputs, options = RunInputs(prompt="a fox", seed=3), RunOptions(approve=True)
    run = RunDir.create(
        tmp_path / "new" / "run", RunConfig(inputs, options), source=(".csv", b"a,b\n")
    )
    assert sorted(p.name for p in run.path.iterdir()) == ["run.json", "source.csv"]
    record = json.loads((run.path / "run.json").read_text())
    assert record["format"] == RUN_FORMAT and record["thread"] == "pass-1"
    assert record["inputs"]["prompt"] == "a fox" and record["options"]["approve"] is True
    assert not [p for p in run.path.parent.iterdir() if p.name.startswith(".")]  # no staging

    empty = tmp_path / "empty"
    empty.mkdir()
    assert RunDir.is_vacant(empty) and RunDir.is_vacant(tmp_path / "missing")
    RunDir.create(empty, RunConfig(inputs, options))  # an empty folder is taken over
    again = RunDir.open(empty)
    assert again.inputs == inputs and again.options == options and again.same_inputs(inputs)
    assert not again.same_inputs(RunInputs(prompt="a fox", seed=4))
    assert not RunDir.is_vacant(empty)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        RunDir.is_vacant(tmp_path / "file")


def test_open_refuses_what_is_not_a_run_of_this_format(tmp_path):
    with pytest.raises(InputError, match="no such run directory"):
        RunDir.open(tmp_path / "missing")
    with pytest.raises(InputError, match=r"not a reelsmith run directory \(no run.json\)"):
        RunDir.open(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(InputError, match="run.json: not a reelsmith run file"):
        RunDir.open(tmp_path)
    run = RunDir.create(tmp_path / "run", RunConfig(RunInputs(prompt="x")))
    record = json.loads((run.path / "run.json").read_text())
    old = json.dumps({**record, "format": RUN_FORMAT + 1, "reelsmith": "9.0"})
    (run.path / "run.json").write_text(old)
    with pytest.raises(InputError, match=rf"made by reelsmith 9.0 \(run format {RUN_FORMAT + 1}\)"):
        RunDir.open(run.path)
    assert (run.path / "run.json").read_text() == old  # refused, never changed
    (run.path / "run.json").write_text(json.dumps({**record, "inputs": {"colour": 1}}))
    with pytest.raises(InputError, match="bad inputs or options"):
        RunDir.open(run.path)


def test_one_process_at_a_time_and_leftovers_are_cleaned(tmp_path):
    run = RunDir.create(tmp_path / "run", RunConfig(RunInputs(prompt="x")))
    leftovers = [run.path / "cache" / "shots" / ".abc.npy.x1.tmp", run.path / ".movie.mp4.x2.mp4"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    with run.lock():
        assert not any(p.exists() for p in leftovers)
        held = rf"another reelsmith \(pid {os.getpid()}\)"
        with pytest.raises(InputError, match=held), RunDir.open(run.path).lock():
            pass
    with RunDir.open(run.path).lock():  # released
        pass


def test_each_pass_has_its_own_thread(tmp_path):
    run = RunDir.create(tmp_path / "run", RunConfig(RunInputs(prompt="x")))
    assert run.next_thread() == "pass-2"
    assert RunDir.open(run.path).thread == "pass-2"


# -- content keys ---------------------------------------------------------------------------


def spec(action: str = "walk-left", prompt: str = "") -> KeyframeSpec:
    fox = CharacterSpec("fox", {"shape": "round", "colour": "red"}, action, "a red fox")
    return KeyframeSpec("forest", "day", "wide", "static", (fox,), prompt)


def identities(value: float = 1.0) -> dict:
    portrait = np.zeros((8, 8, 3), np.uint8)
    return {
        "fox": identity_digest(torch.full((4,), value), portrait),
        "owl": identity_digest(torch.full((4,), 2.0), portrait),
    }


def test_keyframe_keys_change_with_what_the_keyframe_depends_on():
    model = {"kind": "builtin", "weights": "abc"}
    key = keyframe_key(spec(), identities(), 7, model, None, 64)
    assert key == keyframe_key(spec(), identities(), 7, model, None, 64)
    changed = [
        keyframe_key(spec(action="run"), identities(), 7, model, None, 64),
        keyframe_key(spec(prompt="at dawn"), identities(), 7, model, None, 64),
        keyframe_key(spec(), identities(1.5), 7, model, None, 64),
        keyframe_key(spec(), identities(), 8, model, None, 64),
        keyframe_key(spec(), identities(), 7, {**model, "weights": "abd"}, None, 64),
        keyframe_key(spec(), identities(), 7, model, {"weights": "p"}, 64),
        keyframe_key(spec(), identities(), 7, model, None, 128),
    ]
    assert len({key, *changed}) == 1 + len(changed)
    # a character the keyframe does not show is not part of its key
    others = {**identities(), "owl": identity_digest(torch.zeros(4), None)}
    assert keyframe_key(spec(), others, 7, model, None, 64) == key


def request(**changes) -> ShotRequest:
    keyframe = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    fields = {
        "shot_id": "s1",
        "keyframe": keyframe,
        "frames": 12,
        "fps": 8.0,
        "motion": "the fox runs",
        "camera": "pan-left",
        "actions": {"fox": "run"},
        "identities": {"fox": {"enc": torch.ones(4)}},
        "seed": 5,
    }
    return ShotRequest(**{**fields, **changes})


def test_shot_keys_change_with_what_the_shot_depends_on():
    renderer = {"kind": "diffusers", "model": "m", "steps": 2}
    key = shot_key(request(), renderer)
    assert key == shot_key(request(), renderer)
    assert shot_key(request(shot_id="other"), renderer) == key  # the id only seeds it
    touched = request().keyframe.copy()
    touched[0, 0, 0] ^= 1
    changed = [
        shot_key(request(keyframe=touched), renderer),
        shot_key(request(frames=13), renderer),
        shot_key(request(fps=7.0), renderer),
        shot_key(request(motion="the fox waves"), renderer),
        shot_key(request(camera="zoom-in"), renderer),
        shot_key(request(actions={"fox": "wave"}), renderer),
        shot_key(request(identities={"fox": {"enc": torch.zeros(4)}}), renderer),
        shot_key(request(seed=6), renderer),
        shot_key(request(), {**renderer, "steps": 3}),
    ]
    assert len({key, *changed}) == 1 + len(changed)


def test_seeds_come_from_the_run_seed_and_the_shot_id():
    assert render_seed(0, "s1") == render_seed(0, "s1")
    assert len({render_seed(0, "s1"), render_seed(1, "s1"), render_seed(0, "s2")}) == 3
    assert 0 <= render_seed(123, "s1") < 2**32


def test_folder_fingerprints_follow_the_weights_not_the_logs(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"1234")
    first = folder_fingerprint(str(tmp_path / "m"))
    (tmp_path / "m" / "train_log.json").write_text("{}")
    folder_fingerprint.cache_clear()
    assert folder_fingerprint(str(tmp_path / "m")) == first
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"1235")
    folder_fingerprint.cache_clear()
    assert folder_fingerprint(str(tmp_path / "m")) != first


def test_the_cache_stores_by_key_and_indexes_by_shot(tmp_path):
    cache = Cache(tmp_path)
    image = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    cache.put_keyframe("k1", image, torch.ones(2, 3))
    assert cache.has_keyframe("k1") and not cache.has_keyframe("k2")
    assert np.array_equal(cache.keyframe("k1"), image)
    assert np.load(cache.keyframe_path("k1").with_suffix(".npy")).shape == (2, 3)
    frames = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    cache.put_shot("f1", frames)
    assert cache.has_shot("f1") and np.array_equal(cache.shot("f1"), frames)

    cache.set_index("s1", keyframe="k1")
    cache.set_index("s1", frames="f1")
    assert cache.index("s1") == {"shot": "s1", "keyframe": "k1", "frames": "f1"}
    written = cache.index_path("s1").stat().st_mtime_ns
    cache.set_index("s1", frames="f1")  # no change: not rewritten
    assert cache.index_path("s1").stat().st_mtime_ns == written


# -- the graph and the backends ------------------------------------------------------------


def test_the_graph_shape(tmp_path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    with sqlite3.connect(tmp_path / "c.sqlite", check_same_thread=False) as conn:
        drawn = build_graph(SqliteSaver(conn)).get_graph()
    nodes = set(drawn.nodes) - {"__start__", "__end__"}
    assert nodes == {
        "write_screenplay",
        "validate",
        "approve",
        "cast",
        "plan_keyframes",
        "render_shot",
        "assemble",
    }
    edges = {(e.source, e.target) for e in drawn.edges}
    for edge in [
        ("__start__", "write_screenplay"),
        ("write_screenplay", "validate"),
        ("validate", "approve"),
        ("validate", "cast"),
        ("approve", "cast"),
        ("cast", "plan_keyframes"),
        ("plan_keyframes", "render_shot"),
        ("render_shot", "assemble"),
        ("assemble", "__end__"),
    ]:
        assert edge in edges, edge


def test_only_running_out_of_memory_is_retried():
    from reelsmith.agent.graph import _out_of_memory

    policy = build_graph().builder.nodes["render_shot"].retry_policy
    assert policy.retry_on is _out_of_memory and policy.max_attempts > 1
    assert _out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not _out_of_memory(InputError("bad shot")) and not _out_of_memory(ValueError())


def test_backend_choices_are_checked_before_loading(tmp_path):
    pretrained = dict(backend="diffusers", keyframe_model="some/model", shot_model="some/video")
    for choice, message in [
        (ModelChoice(backend="comfy"), "unknown backend 'comfy'"),
        (ModelChoice(backend="diffusers"), "name it with --shot-model"),
        (ModelChoice(shot_model=str(tmp_path / "none")), "--shot-model .*: no such folder"),
        (ModelChoice(backend="diffusers", shot_model="./none"), "no such folder"),
        (ModelChoice(resolution=63, shot_model=str(tmp_path)), "must be even"),
        (RunOptions(concurrency=0), "--concurrency"),
        (RunOptions(device="nowhere"), "is not a torch device"),
        (ModelChoice(shot_steps=0, shot_model=str(tmp_path)), "--shot-steps"),
        (
            ModelChoice(keyframe_candidates=0, shot_model=str(tmp_path)),
            "--keyframe-candidates must be from 1 to 16, got 0",
        ),
        (
            ModelChoice(**pretrained, keyframe_candidates=2),
            "only the built-in keyframer draws candidates",
        ),
        (
            ModelChoice(plan_temperature=-0.5, shot_model=str(tmp_path)),
            "--plan-temperature must be from 0 to 2, got -0.5",
        ),
        (
            ModelChoice(plan_temperature=2.5, shot_model=str(tmp_path)),
            "--plan-temperature must be from 0 to 2, got 2.5",
        ),
        (
            ModelChoice(**pretrained, plan_temperature=1.0),
            "--plan-temperature: keyframes from --keyframe-model some/model are drawn without",
        ),
    ]:
        with pytest.raises(InputError, match=message):
            choice.check()
    if shipped_shot_model() is None:
        with pytest.raises(InputError, match="--backend diffusers --shot-model MODEL"):
            ModelChoice().check()


def test_keyframe_candidates_are_part_of_the_keyframers_cache_key():
    from reelsmith.agent.models import Models
    from reelsmith.renderer.keyframes.builtin import DEFAULT_CANDIDATES

    default = Models(ModelChoice()).keyframer_id
    assert default["candidates"] == DEFAULT_CANDIDATES
    one = Models(ModelChoice(keyframe_candidates=1)).keyframer_id
    assert one["candidates"] == 1 and one != default


def test_the_plan_temperature_is_part_of_the_planners_cache_key():
    from reelsmith.agent.models import Models
    from reelsmith.planner.planning import DEFAULT_TEMPERATURE

    default = Models(ModelChoice()).planner_id
    assert default["temperature"] == DEFAULT_TEMPERATURE == 0.0
    warm = Models(ModelChoice(plan_temperature=1.0)).planner_id
    assert warm["temperature"] == 1.0 and warm["weights"] == default["weights"]
    assert warm != default
