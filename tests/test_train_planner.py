"""Planner training end to end on CPU: tiny movies, the shipped tokenizer and identity encoder."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from reelsmith.errors import InputError
from reelsmith.planner.keyframe_planner import KeyframePlanner
from reelsmith.renderer.identity.encoder import WEIGHTS as IDENTITY_WEIGHTS
from reelsmith.renderer.identity.encoder import load_identity_encoder
from reelsmith.renderer.keyframes.pipeline import WEIGHTS as TOKENIZER_WEIGHTS
from reelsmith.renderer.keyframes.pipeline import load_keyframe_pipeline
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.encoding import spec_indices
from reelsmith.schema.looks import Identity
from reelsmith.schema.screenplay import Screenplay
from reelsmith.training import planner_data
from reelsmith.training.cli import main
from reelsmith.training.config import load_config
from reelsmith.training.data import portrait_embeddings
from reelsmith.training.planner import PRESETS, PlannerRunConfig, held_out_nll
from reelsmith.world.dataset import read

TINY = [
    "data.train.count=6",
    "data.train.shard_size=3",
    "data.train.max_movie_shots=9",
    "data.held_out.count=3",
    "data.held_out.shard_size=3",
    "data.held_out.max_movie_shots=9",
    "model.hidden=16",
    "model.layers=1",
    "model.heads=2",
    "model.mixtures=2",
    "model.window=4",
    "model.max_cast=4",
    "train.steps=24",
    "train.batch=4",
    "train.lr=0.01",
    "train.warmup=2",
    "train.log_every=4",
    "train.eval_every=8",
    "train.eval_batch=4",
]


def argv(out: Path, data: Path, overrides: list[str]) -> list[str]:
    sets = [arg for item in overrides for arg in ("--set", item)]
    models = ["--tokenizer", str(TOKENIZER_WEIGHTS), "--identity", str(IDENTITY_WEIGHTS)]
    place = ["--out", str(out), "--data", str(data), "--device", "cpu", "--workers", "1"]
    return ["planner", *place, *models, *sets]


def read_log(folder: Path) -> dict:
    return json.loads((folder / "train_log.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same tiny run twice on one data folder: the second finds the tokens cached."""
    root = tmp_path_factory.mktemp("planner")
    data = root / "data"
    main(argv(root / "first", data, TINY))
    caches = sorted(data.glob("*/planner-tokens-*.npy"))
    stamps = [p.stat().st_mtime_ns for p in caches]
    main(argv(root / "second", data, TINY))
    assert [p.stat().st_mtime_ns for p in caches] == stamps  # not written again
    return {"first": root / "first", "second": root / "second", "data": data}


def test_run_saves_a_float16_planner_that_loads_as_float32(runs):
    folder = runs["first"]
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "train_log.json",
        "train.log",
    }
    with safe_open(folder / "model.safetensors", "pt") as f:
        names = f.keys()  # a list: safe_open is not a mapping
        assert names and {f.get_tensor(name).dtype for name in names} == {torch.float16}
    model = KeyframePlanner.from_pretrained(folder)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    c = model.config
    assert (c.hidden, c.layers, c.window, c.max_cast) == (16, 1, 4, 4)
    assert (c.token_count, c.token_dim, c.identity_dim) == (2, 32, 64)  # the shipped models'
    assert read_log(folder)["weights"] == sum(p.numel() for p in model.parameters())


def test_train_log_holds_losses_and_held_out_nll(runs):
    log = read_log(runs["first"])
    assert log["steps_run"] == 24 and log["device"] == "cpu" and log["commit"]
    assert [x["step"] for x in log["losses"]] == [3, 7, 11, 15, 19, 23]
    losses = [x["loss"] for x in log["losses"]]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.1, losses  # it learns
    assert [e["step"] for e in log["evals"]] == [7, 15, 23]  # every 8 steps; the last at the end
    held = log["held_out"]
    assert held["nll"] == log["evals"][-1]["nll"] and math.isfinite(held["nll"])
    assert math.isfinite(held["nll_without_identities"])
    assert math.isfinite(held["gaussian_baseline_nll"])
    assert held["movies"] == 3 and held["shots"] == log["data"]["held_out"]["shots"]
    assert log["config"]["model"]["hidden"] == 16 and log["tokenizer"]["sha256"]
    lines = (runs["first"] / "train.log").read_text("utf-8")
    assert "held-out nll" in lines and "shots encoded" in lines


def test_the_saved_planner_reproduces_its_held_out_nll(runs):
    """Reloaded (float16 weights) on the held-out movies, it scores what the log says."""
    log = read_log(runs["first"])
    model = KeyframePlanner.from_pretrained(runs["first"])
    pipe = load_keyframe_pipeline(TOKENIZER_WEIGHTS)
    digest = planner_data.tokenizer_digest(TOKENIZER_WEIGHTS)
    held, info = planner_data.load_movies(
        runs["data"] / "movies-3-s7777-r64-m9", model.config, pipe, digest, lambda _: None
    )
    assert info["reused"]
    encoder = load_identity_encoder(IDENTITY_WEIGHTS)
    table = portrait_embeddings(encoder, held.cast.flatten())
    nll = held_out_nll(model, held, table, batch=8)
    assert nll == pytest.approx(log["held_out"]["nll"], abs=1e-2)


def test_second_run_reuses_the_cached_tokens_and_repeats_the_first(runs):
    first, second = read_log(runs["first"]), read_log(runs["second"])
    assert not first["data"]["train"]["reused"] and not first["data"]["held_out"]["reused"]
    assert second["data"]["train"]["reused"] and second["data"]["held_out"]["reused"]
    assert "tokens reused from planner-tokens-" in (runs["second"] / "train.log").read_text()
    # same seed, same data, cached tokens == encoded ones: the same numbers
    assert second["losses"] == first["losses"] and second["held_out"] == first["held_out"]


def test_movie_rows_point_each_slot_at_its_cast_member(runs):
    item = next(read(runs["data"] / "movies-6-s11-r64-m9"))
    record = item["record"]
    specs, slot_cast, cast = planner_data.movie_rows(record, slots=4, max_cast=8)
    screenplay = Screenplay.model_validate(record["screenplay"])
    order = [c.id for c in screenplay.characters]
    assert cast == [record["identities"][c] for c in order]
    looks = {c: Identity.from_index(i).to_dict() for c, i in record["identities"].items()}
    shots = list(screenplay.shots())
    assert len(specs) == len(slot_cast) == len(shots) == len(item["images"])
    for (scene, shot), spec, pointers in zip(shots, specs, slot_cast, strict=True):
        assert torch.equal(spec, spec_indices(KeyframeSpec.from_shot(scene, shot, looks), 4))
        assert [order[i] for i in pointers if i >= 0] == shot.characters[:4]
        assert pointers[len(shot.characters) :] == [-1] * (4 - len(shot.characters))
    # a character past max_cast is in no slot's pointer
    _, pointers, cast = planner_data.movie_rows(record, slots=4, max_cast=1)
    assert len(cast) == 1 and all(i in (-1, 0) for row in pointers for i in row)


def synthetic_movies(lengths: list[int], cast_sizes: list[int]) -> planner_data.Movies:
    n = sum(lengths)
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    return planner_data.Movies(
        specs=torch.arange(n)[:, None].repeat(1, 28),  # row i: shot i
        slot_cast=torch.full((n, 4), -1),
        tokens=torch.zeros(n, 2, 32),
        offsets=offsets,
        cast=torch.tensor([list(range(c)) + [-1] * (3 - c) for c in cast_sizes]),
    )


def test_clip_sampler_draws_consecutive_shots_of_one_movie_and_one_cast_size():
    movies = synthetic_movies([3, 10, 6, 2], [1, 2, 1, 3])
    table = torch.randn(5, 64)
    sample = planner_data.ClipSampler(movies, table, batch=32, window=4, seed=0)
    sizes = set()
    for _ in range(20):
        b = sample()
        shot = b["specs"][..., 0]  # (B, T) the shot each position holds
        length = b["shot_mask"].sum(1)
        c = b["cast"].shape[1]
        sizes.add(c)
        assert b["cast_mask"].all() and b["specs"].shape[1] == 4
        for row, n in zip(shot, length.tolist(), strict=True):
            movie = int(torch.searchsorted(movies.offsets, row[0], right=True)) - 1
            assert int((movies.cast[movie] >= 0).sum()) == c
            real = movies.lengths[movie].item()
            assert n == min(4, real)  # full window where the movie allows
            assert torch.equal(row[:n], torch.arange(row[0], row[0] + n))  # consecutive
            assert row[n - 1] < movies.offsets[movie + 1]  # inside its movie
    assert sizes == {1, 2, 3}


def test_eval_batches_cover_every_shot_once():
    movies = synthetic_movies([3, 10, 6, 2], [1, 2, 1, 3])
    seen = []
    for movie, start, length, size in planner_data.eval_batches(movies, window=4, batch=2):
        assert ((movies.cast[movie] >= 0).sum(1) == size).all()
        for m, s, n in zip(movie.tolist(), start.tolist(), length.tolist(), strict=True):
            seen += range(movies.offsets[m] + s, movies.offsets[m] + s + n)
    assert sorted(seen) == list(range(21))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.window=100", "model.max_positions=64"],
            "a window of 100 shots with a cast of 4 needs 305 positions but "
            "model.max_positions is 64",
        ),
        (
            ["model.token_dim=16"],
            "the tokenizer makes 2 tokens of 32 but model.token_count, model.token_dim are 2, 16",
        ),
        (["model.identity_dim=8"], "the identity encoder makes 64-d embeddings but"),
        (["model.depth=3"], r"--set model.depth=3: no config key 'model.depth' \(model has "),
        (["data.held_out.resolution=32"], "data.held_out must be movies at the tokenizer's"),
    ],
)
def test_bad_config_is_a_one_line_input_error(tmp_path, overrides, message):
    with pytest.raises(InputError, match=message) as err:
        main(argv(tmp_path / "out", tmp_path / "data", TINY + overrides))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data").exists()  # refused before any data is built
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    args = argv(tmp_path / "out", tmp_path / "data", ["model.token_dim=16"])
    done = subprocess.run(
        [sys.executable, "-m", "reelsmith.training", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "reelsmith.training: error: the tokenizer makes 2 tokens of 32 but "
        "model.token_count, model.token_dim are 2, 16"
    ]


def test_set_overrides_name_a_config_key_and_json():
    def load(*overrides: str) -> PlannerRunConfig:
        return load_config(PlannerRunConfig, PRESETS, "planner", None, list(overrides))

    cfg = load("train.batch=3", "train.keep_best=false")
    assert cfg.train.batch == 3 and cfg.train.keep_best is False
    assert cfg.model == PRESETS["planner"].model  # the rest of the preset stays
    with pytest.raises(InputError, match=r"no config key 'trian' \(the config has data, model"):
        load("trian.batch=3")
    with pytest.raises(InputError, match="no config key 'train.new_switch'"):
        load("train.new_switch=true")  # a typed config: no new keys
    with pytest.raises(InputError, match="not JSON"):
        load("train.batch=x")
