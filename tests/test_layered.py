"""Layered decoding and the character segmenter: characters move as rigid layers, the segmenter
splits a keyframe into them, the pipeline saves and loads it, and a tiny training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from reelsmith.renderer.identity.segmenter import (
    BACKGROUND,
    CHARACTER,
    EDGE,
    CharacterSegmenter,
    instances,
    targets,
)
from reelsmith.renderer.shots.flow_autoencoder import FlowAutoencoder
from reelsmith.renderer.shots.layered import decode_layered, inpaint
from reelsmith.renderer.shots.motion_pipeline import PRESETS, load_motion_pipeline, make_pipeline

torch.set_num_threads(1)
R = 32  # frames of 32 x 32, motion latents of 8 x 8 (4 x 4 pixels a cell), flow_scale 8
FLOW = {"resolution": R, "latent_size": 8, "width": 8, "sampling": "nearest"}


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A banded background (sky over ground) with one striped 8 x 8 character at rows 12-19,
    columns 4-11: the keyframe (1, 3, R, R) in [-1, 1] and its labels (1, R, R)."""
    image = torch.zeros(1, 3, R, R)
    image[:, 2, :16] = 0.8  # blue sky
    image[:, 1, 16:] = 0.4  # green ground
    labels = torch.zeros(1, R, R, dtype=torch.long)
    labels[0, 12:20, 4:12] = 1
    stripes = torch.tensor([1.0, -1.0] * 4)[:, None].expand(8, 8)
    image[0, 0, 12:20, 4:12] = stripes
    image[0, 1, 12:20, 4:12] = -stripes
    image[0, 2, 12:20, 4:12] = 0.0
    return image, labels


def flow_of(dx_cells: dict[tuple[int, int], float]) -> torch.Tensor:
    """A visible motion latent (1, 3, 8, 8) whose x flow is -dx pixels in the given cells (a
    move of dx pixels to the right there) and 0 elsewhere."""
    latent = torch.zeros(1, 3, 8, 8)
    latent[:, 2] = 1.0
    for (row, col), dx in dx_cells.items():
        latent[0, 0, row, col] = -dx / 8.0
    return latent


def cells(rows: range, cols: range, dx: float) -> dict[tuple[int, int], float]:
    return {(r, c): dx for r in rows for c in cols}


def character_box(frame: torch.Tensor) -> list[tuple[int, int]]:
    """Where the character's exact stripes are in a frame: [(row, col), ...]."""
    red = frame[0].isclose(torch.tensor(1.0)) | frame[0].isclose(torch.tensor(-1.0))
    blueless = frame[2].isclose(torch.tensor(0.0), atol=1e-4)
    return [tuple(p) for p in torch.nonzero(red & blueless).tolist()]


@pytest.fixture(scope="module")
def flow() -> FlowAutoencoder:
    torch.manual_seed(0)
    return FlowAutoencoder(**FLOW).eval()


# -- inpainting ---------------------------------------------------------------------------


def test_inpaint_fills_a_hole_with_its_rows_and_keeps_the_rest():
    image, labels = scene()
    holes = (labels > 0)[:, None]
    filled = inpaint(image, holes)
    background = image.clone()
    background[:, :, 12:16, 4:12] = torch.tensor([0.0, 0.0, 0.8])[:, None, None]
    background[:, :, 16:20, 4:12] = torch.tensor([0.0, 0.4, 0.0])[:, None, None]
    torch.testing.assert_close(filled, background)
    assert torch.equal(filled[~holes.expand_as(image)], image[~holes.expand_as(image)])


# -- layered decoding ---------------------------------------------------------------------


@torch.no_grad()
def test_a_moving_character_keeps_every_pixel_where_a_smooth_flow_squeezes_it(flow):
    image, labels = scene()
    # the cells of the character's left part move 3 pixels right, the rest stays: the flow
    # falls from 3 to 0 across its right part
    latent = flow_of(cells(range(2, 6), range(0, 3), 3.0))
    frame = decode_layered(flow, image, latent, labels, wobble=0.0)[0]
    assert len(character_box(frame)) == 64
    torch.testing.assert_close(frame[:, 12:20, 7:15], image[0, :, 12:20, 4:12], rtol=0, atol=0)
    warped, _ = flow.warp(image, latent)  # the flat warp, nearest pixel too
    assert len(character_box(warped[0])) < 64  # the smooth flow squeezes it at its edge


@torch.no_grad()
def test_what_the_character_uncovers_is_background_not_the_character(flow):
    image, labels = scene()
    latent = flow_of(cells(range(2, 6), range(0, 5), 8.0))
    frame = decode_layered(flow, image, latent, labels, wobble=0.0)[0]
    assert len(character_box(frame)) == 64
    uncovered = frame[:, 12:20, 4:12][:, :, :4]  # where the character stood, now empty
    assert character_box(uncovered) == []
    assert (uncovered[2, :4] > 0.4).all()  # painted out with the sky above


@torch.no_grad()
def test_a_character_moved_out_of_frame_is_not_drawn(flow):
    image, labels = scene()
    latent = flow_of(cells(range(0, 8), range(0, 8), -24.0))  # everything 24 px left
    frame = decode_layered(flow, image, latent, labels, wobble=0.0)[0]
    assert character_box(frame) == []


@torch.no_grad()
def test_nearer_characters_are_drawn_over_further_ones(flow):
    image, labels = scene()
    # a second character, solid white, lower on the screen (nearer), overlapping the first
    image[0, :, 16:24, 8:16] = 1.0
    labels[0, 16:24, 8:16] = 2
    for order in (labels, torch.where(labels > 0, 3 - labels, 0)):  # whatever the numbering
        frame = decode_layered(flow, image, flow_of({}), order, wobble=0.0)[0]
        assert (frame[:, 16:24, 8:16] == 1.0).all()


@torch.no_grad()
def test_wobble_bounds_how_far_a_pixel_leaves_its_rigid_place(flow):
    image, labels = scene()
    latent = flow_of(cells(range(2, 6), range(0, 4), 3.0))
    latent[0, 1, 3, 1] = 0.3  # some vertical flow inside the character
    rigid = decode_layered(flow, image, latent, labels, wobble=0.0)
    wobbly = decode_layered(flow, image, latent, labels, wobble=1.0)
    assert not torch.equal(rigid, wobbly)
    change = (rigid - wobbly).abs().amax(1)[0]  # (R, R)
    # the character's pixels move; far from it only the autoencoder's fill (blended in at
    # the 2% the latent leaves invisible) sees anything else
    assert change[12:20, 4:15].max() > 0.5
    assert change[:, 20:].max() < 0.05 and change[:, :2].max() < 0.05


def test_labels_of_another_shape_are_refused(flow):
    image, labels = scene()
    with pytest.raises(ValueError, match="labels of shape"):
        decode_layered(flow, image, flow_of({}), labels[:, :8])


# -- the segmenter ------------------------------------------------------------------------


def test_targets_mark_only_where_two_characters_touch():
    masks = torch.zeros(1, 8, 12, dtype=torch.long)
    masks[0, 2:6, 1:4] = 3
    masks[0, 2:6, 4:7] = 1  # touches 3
    masks[0, 2:5, 9:11] = 2  # alone
    classes = targets(masks)[0]
    assert (classes[masks[0] == 0] == BACKGROUND).all()
    assert (classes[:, 3:5][2:6] == EDGE).all()  # the shared border, both sides
    assert (classes[2:6, 1:3] == CHARACTER).all() and (classes[2:5, 9:11] == CHARACTER).all()


def test_instances_split_touching_characters_at_their_edge():
    masks = torch.zeros(2, 8, 12, dtype=torch.long)
    masks[0, 2:6, 1:4] = 3
    masks[0, 2:6, 4:7] = 1
    masks[0, 2:5, 9:11] = 2
    labels = instances(targets(masks))
    assert labels.dtype == torch.long and labels.shape == masks.shape
    assert sorted(labels[0].unique().tolist()) == [0, 1, 2, 3]
    for k in (1, 2, 3):  # each true character is exactly one instance, whole
        found = labels[0][masks[0] == k].unique()
        assert len(found) == 1 and found.item() > 0
    assert (labels[1] == 0).all()


def test_segmenter_labels_and_size_check():
    model = CharacterSegmenter(width=4, depth=2).eval()
    labels = model.segment(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert labels.shape == (2, 16, 16) and labels.dtype == torch.long
    with pytest.raises(ValueError, match="multiple of 4"):
        model(torch.zeros(1, 3, 18, 18))
    with pytest.raises(ValueError, match="depth must be at least 1"):
        CharacterSegmenter(depth=0)


# -- the pipeline with a segmenter --------------------------------------------------------


def tiny_pipeline(segmenter: bool):
    torch.manual_seed(0)
    pipe = make_pipeline(PRESETS["flow-tiny"], PRESETS["motion-tiny"])
    with torch.no_grad():
        for p in pipe.motion_transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        torch.nn.init.normal_(pipe.flow_autoencoder.encoder_out.weight, std=0.1)
    if segmenter:
        seg = CharacterSegmenter(width=4, depth=2)
        with torch.no_grad():  # call the middle of the frame a character
            seg.head.bias.copy_(torch.tensor([0.0, -50.0, -50.0]))
            seg.head.weight.zero_()
        pipe.register_modules(segmenter=seg)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, **kwargs) -> np.ndarray:
    keyframes = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    return pipe(
        keyframes,
        cameras=["pan-left", "static"],
        actions=[{"mara": "walk-left"}, {}],
        num_inference_steps=2,
        generator=[torch.Generator().manual_seed(s) for s in (1, 2)],
        **kwargs,
    ).frames


def test_without_a_segmenter_or_with_layered_off_the_frames_are_the_flat_warp():
    flat = draw(tiny_pipeline(segmenter=False))
    with_seg = tiny_pipeline(segmenter=True)
    np.testing.assert_array_equal(draw(with_seg, layered=False), flat)
    # a segmenter that finds no character leaves every frame as the flat warp (background
    # painted out nowhere), so layered decoding changes nothing
    np.testing.assert_array_equal(draw(with_seg), flat)


def test_a_segmenter_saves_and_loads_with_the_pipeline(tmp_path):
    pipe = tiny_pipeline(segmenter=True)
    with torch.no_grad():  # everything a character: layered decoding moves it rigidly
        pipe.segmenter.head.bias.copy_(torch.tensor([0.0, 50.0, -50.0]))
    pipe.save_pretrained(tmp_path / "motion")
    loaded = load_motion_pipeline(tmp_path / "motion")
    assert isinstance(loaded.segmenter, CharacterSegmenter)
    np.testing.assert_array_equal(draw(loaded), draw(pipe))
    assert not np.array_equal(draw(pipe), draw(pipe, layered=False))
    make = tiny_pipeline(segmenter=False)
    make.save_pretrained(tmp_path / "plain")
    assert load_motion_pipeline(tmp_path / "plain").segmenter is None


# -- training -----------------------------------------------------------------------------

TINY_CONFIG = {
    "data": {
        "train": {"kind": "clips", "count": 4, "seed": 5, "resolution": 32, "clip_frames": 4,
                  "shard_size": 4},
        "held_out": {"kind": "clips", "count": 2, "seed": 6, "resolution": 32, "clip_frames": 4,
                     "shard_size": 2},
    },
    "model": {"width": 4, "depth": 2},
    "train": {"seed": 0, "steps": 3, "batch": 4, "lr": 0.002, "weight_decay": 0.01,
              "warmup": 1, "edge_weight": 4.0, "max_seconds": 60, "log_every": 1},
}  # fmt: skip


def train(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    config = tmp_path / "segmenter.json"
    config.write_text(json.dumps(TINY_CONFIG))
    command = [
        sys.executable, "-m", "reelsmith.training", "segmenter", "--out",
        str(tmp_path / "out"), "--data", str(tmp_path / "data"), "--config", str(config),
        "--workers", "1", "--device", "cpu", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_tiny_training_run_writes_a_segmenter_and_adds_it_to_a_pipeline(tmp_path):
    done = train(tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out" / "train_log.json").read_text())
    assert record["steps_run"] == 3
    assert {"pixel_accuracy", "character_iou", "instances_found"} <= set(record["held_out"])
    model = CharacterSegmenter.from_pretrained(tmp_path / "out")
    assert model.config.width == 4

    motion = make_pipeline(
        {"resolution": 32, "latent_size": 8, "width": 8},
        {**PRESETS["motion-tiny"], "resolution": 32, "latent_size": 8},
    )
    motion.save_pretrained(tmp_path / "motion")
    (tmp_path / "out").rename(tmp_path / "alone")
    done = train(tmp_path, "--init", str(tmp_path / "motion"))
    assert done.returncode == 0, done.stderr
    pipe = load_motion_pipeline(tmp_path / "out")
    assert isinstance(pipe.segmenter, CharacterSegmenter)
    assert (tmp_path / "out" / "segmenter" / "train_log.json").is_file()


def test_init_at_another_resolution_is_one_line(tmp_path):
    motion = make_pipeline(PRESETS["flow-tiny"], PRESETS["motion-tiny"])  # 16 x 16
    motion.save_pretrained(tmp_path / "motion")
    done = train(tmp_path, "--init", str(tmp_path / "motion"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "resolution is 32 but the motion pipeline" in done.stderr
