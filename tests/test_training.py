"""`python -m reelsmith.training`: its presets and config loading, and one tiny run of every
trainer through the real command, its output loaded by the runtime's own loader."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import load_keyframe_planner
from reelsmith.renderer.identity.encoder import WEIGHTS as IDENTITY_WEIGHTS
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.identity.looks import TRAITS, load_looks_reader
from reelsmith.renderer.identity.segmenter import CharacterSegmenter
from reelsmith.renderer.keyframes.pipeline import WEIGHTS as KEYFRAME_WEIGHTS
from reelsmith.renderer.keyframes.pipeline import load_keyframe_pipeline
from reelsmith.renderer.shots.motion_pipeline import PRESETS as MOTION_SIZES
from reelsmith.renderer.shots.motion_pipeline import load_motion_pipeline, make_pipeline
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.training.cli import TRAINERS, main
from reelsmith.training.config import as_dict, from_dict, load_config
from reelsmith.training.keyframes import KeyframesRunConfig
from reelsmith.training.motion_config import MotionRunConfig

SHIPPED_LOGS = Path(__file__).resolve().parents[1]  # the repository: the shipped train logs

# -- presets and config loading -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "preset"), [(m, p) for m, t in TRAINERS.items() for p in t.presets]
)
def test_every_preset_builds_its_config_and_round_trips_through_json(model, preset):
    trainer = TRAINERS[model]
    config = trainer.presets[preset]
    assert isinstance(config, trainer.config)
    assert load_config(trainer.config, trainer.presets, preset) == config
    # what train_log.json records loads back to the same config
    assert from_dict(trainer.config, json.loads(json.dumps(as_dict(config)))) == config
    assert {"data", "model", "train"} == {f.name for f in dataclasses.fields(config)}


def test_each_model_has_a_preset_of_its_own_name():
    assert set(TRAINERS) == {"identity", "looks", "keyframes", "planner", "motion", "segmenter"}
    for model, trainer in TRAINERS.items():
        assert model in trainer.presets
    assert set(TRAINERS["keyframes"].presets) == {"keyframes", "keyframes-continue"}
    assert set(TRAINERS["motion"].presets) == {"motion", "motion-gpu"}


def recorded(folder: str) -> dict:
    return json.loads((SHIPPED_LOGS / folder / "train_log.json").read_text("utf-8"))["config"]


@pytest.mark.parametrize(
    ("model", "folder", "preset", "overrides"),
    [
        ("identity", "renderer/weights/identity", "identity", []),
        ("looks", "renderer/weights/looks", "looks", []),
        ("planner", "planner/weights/planner", "planner", []),
        ("segmenter", "renderer/weights/motion/segmenter", "segmenter", []),
        (  # stage 4 of the shipped keyframe pipeline (train_history.json)
            "keyframes",
            "renderer/weights/keyframes",
            "keyframes-continue",
            ["train.steps=9500", "train.lr=0.00015", "train.max_seconds=370"],
        ),
        ("motion", "renderer/weights/motion", "motion-gpu", []),
    ],
)
def test_the_shipped_weights_configs_are_their_presets(model, folder, preset, overrides):
    """The config each shipped model's train_log.json records is its documented command's
    (docs/training.md), apart from keys the log predates or that change no weight."""
    trainer = TRAINERS[model]
    shipped = from_dict(trainer.config, recorded(folder))
    config = load_config(trainer.config, trainer.presets, preset, None, overrides)
    if model == "keyframes":  # its log keeps the old config's note (a how-to line)
        shipped = dataclasses.replace(shipped, train=dataclasses.replace(shipped.train, note=""))
    if model == "motion":  # the log predates `sampling`, which only inference reads
        flow = dataclasses.replace(shipped.model.flow, sampling="nearest")
        shipped = dataclasses.replace(shipped, model=dataclasses.replace(shipped.model, flow=flow))
    assert shipped == config


def test_a_config_file_takes_its_sections_defaults_for_what_it_leaves_out(tmp_path):
    """As the JSON configs always did: a dataset's missing fields are DatasetSpec's defaults, a
    model's its constructor's, a train section's optional switches off."""
    path = tmp_path / "motion.json"
    clips = {"kind": "clips", "count": 6}
    path.write_text(json.dumps({"data": {"train": clips, "held_out": clips}}))
    config = load_config(MotionRunConfig, {}, "unused", path)
    assert config.data.train.long_shots == 0.0 and config.data.train.clip_frames == 8
    assert config.model == MotionRunConfig().model  # a section left out: the shipped one
    path.write_text(json.dumps({"model": {"flow": {"width": 8}}}))
    flow = load_config(MotionRunConfig, {}, "unused", path).model.flow
    assert (flow.width, flow.sampling) == (8, "bilinear")  # FlowAutoencoder's own default
    path.write_text(json.dumps({"train": {"seed": 3}}))
    assert load_config(KeyframesRunConfig, {}, "unused", path).train.stop_after == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"stpes": 3}}, r"no config key 'train.stpes' \(train has seed, steps, "),
        ({"trian": {}}, r"no config key 'trian' \(the config has data, model, train\)"),
        ({"train": {"steps": 2.5}}, r"train.steps must be of type int, got 2.5"),
        ({"train": {"compile": 1}}, r"train.compile must be of type bool, got 1"),
        ({"train": []}, r"train must be a JSON object"),
        ({"data": {"train": {"kind": "keyframes", "count": 3}}}, r"data needs 'held_out'"),
        ({"data": {"train": {"count": 3}, "held_out": {}}}, r"data.train needs 'kind'"),
        (
            {"data": {"train": {"kind": "x", "count": 3}, "held_out": {"kind": "x", "count": 1}}},
            r"data.train: unknown dataset kind 'x'",
        ),
    ],
)
def test_a_bad_config_file_is_one_error_naming_the_key(tmp_path, values, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(values))
    with pytest.raises(InputError, match=message) as err:
        load_config(KeyframesRunConfig, {}, "unused", path)
    assert str(err.value).startswith(f"--config {path}: ") and "\n" not in str(err.value)


def test_set_overrides_one_value_or_one_whole_section():
    presets = TRAINERS["keyframes"].presets
    config = load_config(
        KeyframesRunConfig,
        presets,
        "keyframes",
        None,
        ["data.train.count=64", 'data.held_out={"kind": "keyframes", "count": 8}', "train.lr=1"],
    )
    assert config.data.train == dataclasses.replace(presets["keyframes"].data.train, count=64)
    assert config.data.held_out.seed == 0 and config.data.held_out.shard_size == 512  # anew
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.stop_after == 8780  # the rest of the preset stays
    for item, message in [
        ("train.stop=1", r"--set train.stop=1: no config key 'train.stop' \(train has"),
        ("train.steps.x=1", r"'train.steps' is a value, not a section"),
        ("train.steps", r"write KEY=JSON"),
        ("train.init=3", r"train.init must be of type str, got 3"),
    ]:
        with pytest.raises(InputError, match=message):
            load_config(KeyframesRunConfig, presets, "keyframes", None, [item])


def test_an_unknown_preset_names_the_models_presets(tmp_path):
    with pytest.raises(InputError, match="no preset 'motion-gpu' here; the presets are keyframes"):
        main(["keyframes", "--preset", "motion-gpu", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):  # argparse: --preset and --config are either-or
        main(["motion", "--preset", "motion", "--config", "x.json", "--out", str(tmp_path)])
    assert not (tmp_path / "out").exists()


# -- one tiny run of every trainer, end to end --------------------------------------------

# keyframes datasets shared by the identity and looks runs (both at 64 pixels)
TINY_KEYFRAMES = {
    "train": {"kind": "keyframes", "count": 24, "seed": 1, "shard_size": 24},
    "held_out": {"kind": "keyframes", "count": 8, "seed": 7777, "shard_size": 8},
}
TINY_CLIPS = {
    "train": {"kind": "clips", "count": 4, "seed": 5, "resolution": 32, "clip_frames": 5,
              "shard_size": 4},
    "held_out": {"kind": "clips", "count": 2, "seed": 6, "resolution": 32, "clip_frames": 5,
                 "shard_size": 2},
}  # fmt: skip
TINY = {
    "identity": {
        "data": TINY_KEYFRAMES,
        "model": {"resolution": 16, "width": 8, "dim": 8},
        "train": {"steps": 3, "batch": 8, "warmup": 1},
    },
    "looks": {
        "data": TINY_KEYFRAMES,
        "model": {"resolution": 16, "width": 8},
        "train": {"steps": 3, "batch": 8, "warmup": 1},
    },
    "keyframes": {
        "data": {
            name: {**spec, "resolution": 32} for name, spec in TINY_KEYFRAMES.items()
        },  # the model's resolution: keyframes and portraits are stacked
        "model": {
            "resolution": 32,
            "layers": 1,
            "heads": 2,
            "head_dim": 8,
            "encoder_width": 8,
            "condition_width": 16,
            "token_dim": 4,
        },  # identity_dim 64: the shipped one's
        "train": {"steps": 2, "batch": 8, "warmup": 1, "eval_count": 2},
    },  # fmt: skip
    "planner": {
        "data": {
            name: {
                "kind": "movies",
                "count": count,
                "seed": seed,
                "shard_size": count,
                "max_movie_shots": 5,
            }
            for name, count, seed in (("train", 3, 11), ("held_out", 2, 7777))
        },  # fmt: skip
        "model": {
            "hidden": 16,
            "layers": 1,
            "heads": 2,
            "mixtures": 2,
            "window": 4,
            "max_cast": 4,
            "max_positions": 64,
        },  # fmt: skip
        "train": {
            "steps": 4,
            "batch": 2,
            "warmup": 1,
            "log_every": 2,
            "eval_every": 2,
            "eval_batch": 4,
            "max_seconds": 0,
        },  # fmt: skip
    },
    "motion": {
        "data": TINY_CLIPS,
        "model": {
            "flow": {"resolution": 32, "latent_size": 8, "width": 4},
            "motion": {
                "resolution": 32,
                "latent_size": 8,
                "patch_size": 2,
                "frames": 4,
                "width": 16,
                "layers": 1,
                "heads": 2,
            },
        },  # fmt: skip
        "train": {
            "flow": {"steps": 2, "batch": 2, "warmup": 1, "max_seconds": 0, "log_every": 1},
            "motion": {"steps": 2, "batch": 2, "warmup": 1, "max_seconds": 0, "log_every": 1},
            "eval": {"pairs_per_clip": 1, "steps": 1},
        },
    },
    "segmenter": {
        "data": TINY_CLIPS,
        "model": {"width": 4, "depth": 2},
        "train": {"steps": 2, "batch": 4, "warmup": 1, "log_every": 1},
    },
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """One --data folder for every run: identity and looks share their datasets."""
    return tmp_path_factory.mktemp("training-data")


def train(model: str, out: Path, data: Path, *extra: str) -> dict:
    """`python -m reelsmith.training MODEL --config TINY.json ...` in a subprocess; -> its log."""
    config = out.parent / f"{out.name}.json"
    config.write_text(json.dumps(TINY[model]))
    command = [
        sys.executable, "-m", "reelsmith.training", model, "--config", str(config),
        "--out", str(out), "--data", str(data), "--device", "cpu", "--workers", "1", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    folder = out / "segmenter" if model == "segmenter" and "--init" in extra else out
    log = json.loads((folder / "train_log.json").read_text("utf-8"))
    assert (folder / "train.log").read_text("utf-8").strip()
    assert log["device"] == "cpu" and log["commit"]
    # the recorded config is the whole config: it loads back to what the run trained with
    trainer = TRAINERS[model]
    assert from_dict(trainer.config, log["config"]) == from_dict(trainer.config, TINY[model])
    return log


def test_identity_run_loads_as_an_identity_encoder(tmp_path, data):
    log = train("identity", tmp_path / "identity", data)
    encoder = load_identity_encoder(tmp_path / "identity")
    assert encoder.config.dim == 8 and encoder.dtype == torch.float32
    assert encoder.embed(np.zeros((3, 20, 20, 3), np.uint8)).shape == (3, 8)
    assert len(log["losses"]) == 3 and log["held_out"]["held_out_identities"] == 108


def test_looks_run_loads_as_a_looks_reader(tmp_path, data):
    log = train("looks", tmp_path / "looks", data)
    reader = load_looks_reader(tmp_path / "looks")
    assert reader.config.resolution == 16 and list(reader.traits) == list(TRAITS)
    assert set(TRAITS) <= set(log["held_out"])


def test_keyframes_run_loads_as_a_keyframe_pipeline(tmp_path, data):
    log = train("keyframes", tmp_path / "kf", data, "--identity", str(IDENTITY_WEIGHTS))
    pipe = load_keyframe_pipeline(tmp_path / "kf")
    assert pipe.resolution == 32 and pipe.token_shape == (2, 4)
    assert pipe(KeyframeSpec("forest"), num_inference_steps=1).images.shape == (1, 32, 32, 3)
    assert log["steps_run"] == 2 and log["held_out"]["n"] == 2


def test_planner_run_loads_as_a_keyframe_planner(tmp_path, data):
    shipped = ["--identity", str(IDENTITY_WEIGHTS), "--tokenizer", str(KEYFRAME_WEIGHTS)]
    log = train("planner", tmp_path / "planner", data, *shipped)
    planner = load_keyframe_planner(tmp_path / "planner")
    assert (planner.config.hidden, planner.config.window) == (16, 4)
    assert log["steps_run"] == 4 and [e["step"] for e in log["evals"]][:2] == [1, 3]


def test_motion_run_loads_as_a_motion_pipeline(tmp_path, data):
    log = train("motion", tmp_path / "motion", data, "--identity", str(IDENTITY_WEIGHTS))
    pipe = load_motion_pipeline(tmp_path / "motion")
    assert pipe.resolution == 32 and pipe.segmenter is None
    assert pipe.motion_transformer.config.latent_scale == log["motion"]["latent_scale"]
    assert log["flow"]["steps_run"] == 2 and log["motion"]["steps_run"] == 2


def test_segmenter_run_is_added_to_a_motion_pipeline(tmp_path, data):
    motion = make_pipeline(
        {**MOTION_SIZES["flow-tiny"], "resolution": 32, "latent_size": 8},
        {**MOTION_SIZES["motion-tiny"], "resolution": 32, "latent_size": 8},
    )
    motion.save_pretrained(tmp_path / "motion")
    log = train("segmenter", tmp_path / "out", data, "--init", str(tmp_path / "motion"))
    pipe = load_motion_pipeline(tmp_path / "out")
    assert isinstance(pipe.segmenter, CharacterSegmenter) and pipe.segmenter.config.width == 4
    assert log["steps_run"] == 2 and log["init"] == str(tmp_path / "motion")
