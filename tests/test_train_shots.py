"""Shot-model training end to end on CPU: tiny clips, a tiny model, the shipped identity encoder."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from reelsmith.errors import InputError
from reelsmith.memory.identity import WEIGHTS as IDENTITY_WEIGHTS
from reelsmith.renderer.shot_model import ACTIONS, CAMERAS
from reelsmith.renderer.shot_pipeline import BuiltinShotRenderer, load_shot_pipeline
from reelsmith.renderer.shots import ShotRequest
from reelsmith.world import train, train_shots
from reelsmith.world.dataset import DatasetSpec, read

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.train.count=6",
    "data.train.shard_size=3",
    "data.train.resolution=32",
    "data.train.clip_frames=20",
    "data.train.long_shots=0.5",  # both layouts: the train set's keyframes come first
    "data.held_out.count=4",
    "data.held_out.shard_size=4",
    "data.held_out.resolution=32",
    "data.held_out.clip_frames=20",
    "data.held_out.long_shots=0",
    "model.resolution=32",
    "model.patch_size=8",
    "model.width=16",
    "model.layers=1",
    "model.heads=2",
    "model.max_frames=3",
    "train.steps=8",
    "train.batch=4",
    "train.warmup=1",
    "train.log_every=4",
    "train.eval_every=4",
    "train.eval_count=4",
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only wait on each other
    yield
    torch.set_num_threads(threads)


def argv(out: Path, data: Path, overrides: list[str]) -> list[str]:
    sets = [arg for item in overrides for arg in ("--set", item)]
    place = ["--out", str(out), "--data", str(data), "--device", "cpu", "--workers", "1"]
    return ["shots", *place, "--identity", str(IDENTITY_WEIGHTS), *sets]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """One tiny run through the command line, as the GPU run goes."""
    root = tmp_path_factory.mktemp("shots")
    command = [
        sys.executable,
        "-m",
        "reelsmith.world.train",
        *argv(root / "out", root / "data", TINY),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=single_thread(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    return {"out": root / "out", "data": root / "data", "stdout": done.stdout}


def single_thread() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_run_saves_a_float16_pipeline_that_loads_as_float32(run):
    out = run["out"]
    assert {p.name for p in out.iterdir()} == {
        "model_index.json",
        "condition_encoder",
        "transformer",
        "scheduler",
        "train_log.json",
        "train.log",
    }
    for path in sorted(out.rglob("*.safetensors")):
        with safe_open(path, "pt") as f:
            names = f.keys()  # a list: safe_open is not a mapping
            assert names and {f.get_tensor(k).dtype for k in names} == {torch.float16}
    pipe = load_shot_pipeline(out)
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.float32}
    assert (pipe.resolution, pipe.native_frames, pipe.transformer.config.width) == (32, 4, 16)
    log = json.loads((out / "train_log.json").read_text("utf-8"))
    weights = sum(
        p.numel() for part in (pipe.transformer, pipe.condition_encoder) for p in part.parameters()
    )
    assert log["weights"] == weights


def test_train_log_holds_losses_and_held_out_numbers(run):
    log = json.loads((run["out"] / "train_log.json").read_text("utf-8"))
    assert log["steps_run"] == 8 and log["device"] == "cpu" and log["commit"]
    assert [x["step"] for x in log["losses"]] == [3, 7]
    assert all(math.isfinite(x["loss"]) for x in log["losses"])
    assert [e["step"] for e in log["evals"]] == [3, 7]  # every 4 steps; the last at the end
    held = log["held_out"]
    assert held["n"] == 4 and held["steps"] >= 1
    for key in ("all_mse", "all_repeat_start_mse", "first_clips_mse", "drawn_flicker"):
        assert math.isfinite(held[key]), key
    assert log["data"]["train"]["shots"] == 6 and log["config"]["model"]["width"] == 16
    text = (run["out"] / "train.log").read_text("utf-8")
    assert "held-out loss" in text and "shots held-out" in text
    assert "shots held-out" in run["stdout"]


def test_the_trained_folder_renders_shots(run):
    renderer = BuiltinShotRenderer.from_pretrained(run["out"], steps=2)
    keyframe = np.zeros((32, 32, 3), np.uint8)
    shots = [
        ShotRequest("a", keyframe, frames=3, fps=8),
        ShotRequest("b", keyframe, frames=9, fps=8),
    ]
    out = renderer.render(shots)
    assert [o.shape for o in out] == [(3, 32, 32, 3), (9, 32, 32, 3)]
    assert all(np.array_equal(o[0], keyframe) for o in out)


@pytest.mark.parametrize("name", ["clips-6-s21-r32-f20-long0.5", "clips-4-s7777-r32-f20"])
def test_loaded_clips_and_training_windows(run, name):
    folder = run["data"] / name
    data = train_shots.load_clips(folder, slots=4)
    items = list(read(folder))
    n = len(items)
    assert data["frames"].shape == (n, 20, 32, 32, 3) and data["frames"].dtype == torch.uint8
    for k, item in enumerate(items):
        record, shot = item["record"], item["record"]["shot"]
        keyed = "clip_start" in record  # long_shots > 0: the keyframe, then the clip
        assert keyed == name.startswith("clips-6")
        assert torch.equal(data["keyframes"][k], torch.from_numpy(item["images"][0]))
        clip = item["images"][1:] if keyed else item["images"]
        assert torch.equal(data["frames"][k], torch.from_numpy(clip))
        start = record.get("clip_start", 0)
        assert data["clip_start"][k] == start
        assert data["shot_frames"][k] == round(shot["duration"] * 8)
        assert data["real"][k] == min(20, data["shot_frames"][k] - start)
        assert CAMERAS[data["camera"][k]] == shot["camera"]
        cast = shot["characters"]
        ids = [record["identities"][c] for c in cast]
        assert data["identity"][k, : len(cast)].tolist() == ids
        assert (data["identity"][k, len(cast) :] == -1).all()
        acts = {b["character"]: b["action"] for b in shot["blocking"]}
        named = [ACTIONS[a] for a in data["actions"][k, : len(cast)]]
        assert named == [acts.get(c, "idle") for c in cast]
    if name.startswith("clips-6"):
        assert (data["clip_start"] > 0).any() and (data["shot_frames"] > 40).any()
    g = torch.Generator().manual_seed(0)
    picked = torch.arange(n).repeat(50)
    starts = train_shots.random_starts(data, picked, 4, 0.3, g)
    assert (starts >= 0).all() and (starts + 4 <= data["real"][picked]).all()
    assert (starts == 0).float().mean() > 0.25 and (starts > 0).any()
    batch = train_shots.clip_batch(data, picked[:n], starts[:n], 4)
    assert batch["frames"].shape == (n, 3, 3, 32, 32) and batch["start"].shape == (n, 3, 32, 32)
    first = data["frames"][picked[:n], starts[:n]].permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(batch["start"], first)
    offsets = data["clip_start"][:n] + starts[:n]
    u = (offsets + 1).clamp(max=data["shot_frames"][:n] - 1) / (data["shot_frames"][:n] - 1)
    torch.testing.assert_close(batch["phase"][:, 0, 0], u.float())


def test_long_shots_are_for_clips_and_a_fraction():
    with pytest.raises(InputError, match="long_shots is for clips"):
        DatasetSpec("keyframes", 4, long_shots=0.5)
    with pytest.raises(InputError, match=re.escape("long_shots must be in [0, 1]")):
        DatasetSpec("clips", 4, long_shots=1.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["model.width=15"], "bad shots model config"),
        (["model.identity_dim=8"], "model.identity_dim is 8"),
        (['data.train.kind="keyframes"'], "data.train.kind must be 'clips'"),
        (["data.held_out.clip_frames=3"], "data.held_out.clip_frames 3 is shorter"),
        (["data.train.resolution=64"], "data.train is 64 px"),
        (["train.batch=0"], "train.batch must be an integer >= 1"),
        (["train.nonsense=1"], "unknown keys ['nonsense']"),
    ],
)
def test_bad_configs_are_input_errors(tmp_path, change, message):
    with pytest.raises(InputError, match=re.escape(message)):
        train.main(argv(tmp_path / "out", tmp_path / "data", TINY + change))
    assert not (tmp_path / "data").exists()  # refused before any data is built


def test_a_bad_config_is_one_line_on_the_command_line(tmp_path):
    command = [
        sys.executable,
        "-m",
        "reelsmith.world.train",
        *argv(tmp_path / "out", tmp_path / "data", [*TINY, "model.heads=3"]),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=single_thread(), timeout=120
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reelsmith.world.train: error: bad shots"), lines
