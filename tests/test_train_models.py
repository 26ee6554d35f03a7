"""The identity, looks and keyframe trainers end to end on tiny models and datasets, in-process
(`reelsmith.training.cli.main`), and the helpers they share."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import astuple
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from reelsmith.renderer.identity.encoder import IdentityEncoder, load_identity_encoder
from reelsmith.renderer.identity.looks import TRAITS, LooksReader, load_looks_reader
from reelsmith.renderer.keyframes.pipeline import (
    KeyframePipeline,
    load_keyframe_pipeline,
    make_pipeline,
)
from reelsmith.schema.conditioning import KeyframeSpec
from reelsmith.schema.looks import Identity
from reelsmith.training.cli import main
from reelsmith.training.common import commit, set_lr
from reelsmith.training.data import data_folder, load_keyframes
from reelsmith.training.keyframes import evaluate_keyframes
from reelsmith.training.keyframes_data import frame_weights, pixel_weights
from reelsmith.training.looks import trait_table
from reelsmith.world.dataset import DatasetSpec

TINY_DATA = [
    "data.train.count=64",
    "data.held_out.count=32",
    "data.train.shard_size=64",
    "data.held_out.shard_size=32",
    "train.steps=2",
    "train.batch=8",
    "train.warmup=1",
]
TINY_IDENTITY = ["model.resolution=16", "model.width=8", "model.dim=8"]
TINY_KEYFRAMES = [
    "data.train.resolution=32",  # the model's resolution: portraits and frames are stacked
    "data.held_out.resolution=32",
    "model.resolution=32",
    "model.identity_dim=8",  # the tiny identity encoder's dim
    "model.layers=1",
    "model.heads=2",
    "model.head_dim=8",
    "model.encoder_width=8",
    "model.condition_width=16",
    "model.token_dim=4",
    "train.eval_count=4",
]


def run(model: str, out: Path, data: Path, overrides: list[str], *extra: str) -> None:
    sets = [arg for item in overrides for arg in ("--set", item)]
    argv = [model, "--out", str(out), "--data", str(data), "--device", "cpu", "--workers", "1"]
    main([*argv, *sets, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    run("identity", root / "identity", data, TINY_DATA + TINY_IDENTITY)
    run(
        "keyframes",
        root / "keyframes",
        data,
        TINY_DATA + TINY_KEYFRAMES,
        "--identity",
        str(root / "identity"),
    )
    return {"identity": root / "identity", "keyframes": root / "keyframes", "data": data}


def weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.safetensors"))
    assert files, folder
    return files


def assert_float16(folder: Path) -> None:
    for path in weight_files(folder):
        with safe_open(path, "pt") as f:
            names = f.keys()  # a list: safe_open is not a mapping
            assert names, path
            for name in names:
                assert f.get_tensor(name).dtype == torch.float16, (path, name)


def read_log(folder: Path) -> dict:
    log = json.loads((folder / "train_log.json").read_text("utf-8"))
    assert len(log["losses"]) == 2 and all(math.isfinite(x) for x in log["losses"])
    assert log["device"] == "cpu" and log["commit"]
    assert (folder / "train.log").read_text("utf-8").strip()
    return log


def test_identity_run_saves_a_float16_encoder_and_its_log(trained):
    folder = trained["identity"]
    assert_float16(folder)
    encoder = IdentityEncoder.from_pretrained(folder)
    assert (encoder.config.resolution, encoder.config.width, encoder.config.dim) == (16, 8, 8)
    assert load_identity_encoder(folder).dtype == torch.float32
    log = read_log(folder)
    assert log["config"]["train"]["steps"] == 2 and log["config"]["model"]["dim"] == 8
    held = log["held_out"]
    assert held["crops"] > 0 and held["held_out_identities"] == 108  # every tenth of 1,080
    for key in ("held_out_top1_of_1080", "trained_top1_of_1080", "held_out_top1_among_held_out"):
        assert key in held


def test_looks_run_saves_a_float16_reader_and_its_log(trained, tmp_path):
    out = tmp_path / "looks"  # its own data: other seeds than the identity encoder's
    run("looks", out, tmp_path / "data", TINY_DATA + ["model.resolution=16", "model.width=8"])
    assert_float16(out)
    reader = load_looks_reader(out)
    assert reader.dtype == torch.float32 and reader.config.resolution == 16
    assert list(reader.traits.items()) == list(TRAITS.items())  # in order, in the config
    log = read_log(out)
    held = log["held_out"]
    assert held["crops"] > 0 and 0 <= held["all_traits"] <= min(held[t] for t in TRAITS) <= 1


def test_trait_table_gives_each_identity_its_values():
    reader = LooksReader(resolution=16, width=8)
    table = trait_table(reader)
    assert table.shape == (1080, 4)
    for index in (0, 17, 541, 1079):
        identity = Identity.from_index(index)
        assert [TRAITS[t][int(v)] for t, v in zip(TRAITS, table[index], strict=True)] == list(
            astuple(identity)
        )


def test_keyframes_run_saves_a_float16_pipeline_and_its_log(trained):
    folder = trained["keyframes"]
    assert_float16(folder)
    assert {p.parent.name for p in weight_files(folder)} == {
        "keyframe_encoder",
        "condition_encoder",
        "transformer",
    }
    pipe = KeyframePipeline.from_pretrained(folder)
    assert pipe.resolution == 32 and pipe.token_shape == (2, 4) and pipe.identity_dim == 8
    assert pipe.transformer.config.num_layers == 1
    pipe = load_keyframe_pipeline(folder)  # float32, and it draws
    image = pipe(KeyframeSpec("forest"), num_inference_steps=1).images
    assert image.shape == (1, 32, 32, 3)
    log = read_log(folder)
    assert log["steps_run"] == 2
    assert log["config"]["model"]["layers"] == 1 and log["config"]["train"]["eval_count"] == 4
    held = log["held_out"]
    assert held["n"] == 4 and held["slots"] == 4
    assert held["reconstruction_mse"] > 0 and math.isfinite(held["reconstruction_psnr"])


def test_both_runs_share_one_dataset_folder(trained):
    names = sorted(p.name for p in trained["data"].iterdir())
    # identity at 64 pixels, keyframes at 32: one train and one held-out set each
    assert names == [
        "keyframes-32-s7777-r32",
        "keyframes-32-s7777-r64",
        "keyframes-64-s1-r32",
        "keyframes-64-s1-r64",
    ]


def test_keyframe_evaluation_caps_n_at_the_held_out_keyframes():
    torch.manual_seed(0)
    pipe = make_pipeline(
        resolution=16,
        token_dim=4,
        identity_dim=8,
        slots=2,
        layers=1,
        heads=2,
        head_dim=8,
        encoder_width=8,
        condition_width=16,
    )
    held = {
        "images": torch.zeros(3, 16, 16, 3, dtype=torch.uint8),
        "spec": torch.zeros(3, 4 + 6 * 2, dtype=torch.long),
        "identity": torch.tensor([[0, -1], [1, 2], [-1, -1]]),
    }
    numbers = evaluate_keyframes(pipe, held, torch.randn(3, 8), torch.device("cpu"))
    assert numbers["n"] == 3 and math.isfinite(numbers["reconstruction_mse"])


def test_datasets_that_hold_other_items_get_their_own_folders(tmp_path):
    base = DatasetSpec(kind="clips", count=8, seed=3)
    assert data_folder(tmp_path, base) == tmp_path / "clips-8-s3-r64"
    others = [
        dataclasses.replace(base, clip_frames=16),
        dataclasses.replace(base, long_shots=0.25),
        dataclasses.replace(base, fps=12),
        dataclasses.replace(base, clip_frames=16, long_shots=0.25),
    ]
    names = [data_folder(tmp_path, s).name for s in [base, *others]]
    assert len(set(names)) == len(names)
    assert names[-1] == "clips-8-s3-r64-f16-long0.25"
    # the same items stored in other shards: the same folder (`build` refuses the mismatch)
    resharded = dataclasses.replace(base, shard_size=4)
    assert data_folder(tmp_path, resharded) == data_folder(tmp_path, base)


def test_character_weight_weighs_the_characters_pixels_up(trained, tmp_path):
    """The same run, seed and data with the characters' pixels counted 4x (small figures more):
    the same model at the first step, so only the weighting changes its loss."""
    out = tmp_path / "weighted"
    run(
        "keyframes",
        out,
        trained["data"],
        [*TINY_DATA, *TINY_KEYFRAMES, "train.character_weight=4.0", "train.figure_pixels=400"],
        "--identity",
        str(trained["identity"]),
    )
    plain = read_log(trained["keyframes"])["losses"]
    weighted = read_log(out)["losses"]
    assert weighted[0] != pytest.approx(plain[0], rel=1e-4)
    folder = next(trained["data"].glob("keyframes-64-*"))
    data = load_keyframes(folder, slots=4)
    assert data["figures"].dtype == torch.uint8
    assert data["figures"].shape == data["images"].shape[:3]
    assert 0 < (data["figures"] > 0).float().mean() < 0.5
    assert int(data["figures"].max()) <= 4  # 1 + slot


def test_pixel_weights_count_small_figures_more():
    """A 2x2 figure and a 4x4 one on a 16x16 frame: with figure_pixels=16 the small one's
    pixels weigh 1 + 3 x 16/4 = 13, the large one's 4; one pixel around each weighs the same;
    the rest 1. Without figure_pixels both weigh 4 (the plain character weight)."""
    figures = torch.zeros(1, 16, 16, dtype=torch.uint8)
    figures[0, 2:4, 2:4] = 1
    figures[0, 8:12, 8:12] = 2
    plain = pixel_weights(figures, 4.0)
    small = pixel_weights(figures, 4.0, figure_pixels=16)
    assert plain[0, 2, 2] == plain[0, 9, 9] == 4.0
    assert small[0, 2, 2] == 13.0 and small[0, 9, 9] == 4.0
    assert small[0, 1, 1] == 13.0 and small[0, 0, 0] == 1.0  # the ring around, then background
    assert small[0, 12, 12] == 4.0 and small[0, 13, 13] == 1.0
    capped = pixel_weights(figures, 4.0, figure_pixels=64)  # 64/4 = 16, capped at 4
    assert capped[0, 2, 2] == 1 + 3 * 4.0 and capped[0, 9, 9] == 13.0


def test_a_run_records_whether_its_code_is_the_commit(tmp_path):
    """A run's log names the commit, marked dirty when tracked files were changed after it
    (untracked files, such as data and outputs, do not count)."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("add", "code.py")
    git("-c", "user.name=r", "-c", "user.email=r@r", "commit", "-qm", "code")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "out.json").write_text("{}")
    assert commit(tmp_path) == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert commit(tmp_path) == head + "-dirty"
    assert commit(tmp_path / "nowhere") == "unknown"


def test_a_detail_path_added_to_a_trained_pipeline_starts_where_it_was(trained, tmp_path):
    """`--init` a trained pipeline with `model.detail_width`: the detail path starts at zero, so
    the first step's loss is the plain continuation's, and the result saves and loads as a
    `KeyframeTransformer` whose path has learned something."""
    common = [*TINY_DATA, *TINY_KEYFRAMES, "train.freeze_encoder=true"]
    extra = ("--identity", str(trained["identity"]), "--init", str(trained["keyframes"]))
    run("keyframes", tmp_path / "plain", trained["data"], common, *extra)
    run(
        "keyframes",
        tmp_path / "detail",
        trained["data"],
        [*common, "model.detail_width=16"],
        *extra,
    )
    plain, detail = read_log(tmp_path / "plain")["losses"], read_log(tmp_path / "detail")["losses"]
    assert detail[0] == pytest.approx(plain[0], rel=1e-6)
    assert detail[1] != pytest.approx(plain[1], rel=1e-6)
    pipe = load_keyframe_pipeline(tmp_path / "detail")
    assert type(pipe.transformer).__name__ == "KeyframeTransformer"
    assert pipe.transformer.config.detail_width == 16
    assert pipe.transformer.proj_out.detail_out.weight.abs().sum() > 0
    assert pipe(KeyframeSpec("forest"), num_inference_steps=1).images.shape == (1, 32, 32, 3)


def test_set_lr_scales_each_group_by_its_own_scale():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a]}, {"params": [b], "scale": 5.0}], lr=1.0)
    set_lr(opt, 2e-4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-4, 1e-3])


def test_keyframes_of_several_characters_can_be_drawn_more_often():
    slots = torch.tensor([[3, -1, -1], [3, 7, -1], [-1, -1, -1], [1, 2, 5]])
    assert frame_weights(slots, 1.0) is None
    assert frame_weights(slots, 4.0).tolist() == [1.0, 4.0, 1.0, 4.0]
    drawn = torch.multinomial(
        frame_weights(slots, 4.0), 10_000, True, generator=torch.Generator().manual_seed(0)
    )
    counts = torch.bincount(drawn, minlength=4).float()
    assert 3.5 < counts[1] / counts[0] < 4.5 and 3.5 < counts[3] / counts[2] < 4.5
    with pytest.raises(ValueError, match="multi_character_weight must be > 0, got 0"):
        frame_weights(slots, 0.0)
