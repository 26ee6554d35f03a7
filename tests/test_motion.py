"""The latent flow shot model: warping, the pipeline and shot renderer on tiny models built in
code, and a tiny training run through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reelsmith.errors import InputError
from reelsmith.renderer.identity.encoder import ENCODER
from reelsmith.renderer.shots.builtin import BuiltinShotRenderer
from reelsmith.renderer.shots.flow_autoencoder import FlowAutoencoder
from reelsmith.renderer.shots.motion_pipeline import (
    PRESETS,
    MotionPipeline,
    load_motion_pipeline,
    make_pipeline,
)
from reelsmith.renderer.shots.motion_transformer import MotionTransformer
from reelsmith.renderer.shots.protocol import ShotRequest, clip_seed
from reelsmith.training.cli import main as train_main

torch.set_num_threads(1)
STEPS = 2
TINY_FLOW = PRESETS["flow-tiny"]  # 16 x 16 frames, 4 x 4 latents
TINY_MOTION = PRESETS["motion-tiny"]  # 4 frames per clip, 8-d identities, 2 slots


@pytest.fixture(scope="module")
def pipe() -> MotionPipeline:
    torch.manual_seed(0)
    pipe = make_pipeline(TINY_FLOW, TINY_MOTION)
    # untrained, the zero-initialised output layers ignore every input: perturb all weights
    with torch.no_grad():
        for p in pipe.motion_transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        torch.nn.init.normal_(pipe.flow_autoencoder.encoder_out.weight, std=0.1)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def keyframes(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def clip_inputs(n: int) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "cameras": (["pan-left", "static", None] * n)[:n],
        "actions": ([{"mara": "walk-left"}, {"ben": "wave", "ivo": "run"}, {}] * n)[:n],
        "identities": ([{"mara": torch.randn(8, generator=g)}, {}, {}] * n)[:n],
        "looks": ([{"mara": {"colour": "red"}}, {}, {}] * n)[:n],
        "context": ([None, torch.randn(3, 4, 4, generator=g), None] * n)[:n],
        "offsets": ([0, 4, 0] * n)[:n],
        "shot_frames": ([4, 30, 9] * n)[:n],
    }


# -- warping ------------------------------------------------------------------------------


def test_zero_flow_warp_is_the_identity():
    flow = FlowAutoencoder(**TINY_FLOW)
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    latent = torch.zeros(2, 3, 4, 4)
    warped, visible = flow.warp(image, latent)
    torch.testing.assert_close(warped, image, atol=1e-6, rtol=0)
    assert torch.allclose(visible, torch.full_like(visible, 0.5))
    # at another size too: the flow is in pixels at the model's resolution, scaled
    big = torch.rand(1, 3, 48, 32)
    torch.testing.assert_close(flow.warp(big, latent[:1])[0], big, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (0, -2), (2, 1)])
def test_translation_flow_moves_a_pattern_by_that_many_pixels(dx, dy):
    flow = FlowAutoencoder(**{**TINY_FLOW, "resolution": 32, "latent_size": 8})
    scale = flow.config.flow_scale
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, 10:14, 12:15] = 1.0  # a 4 x 3 block
    latent = torch.zeros(1, 3, 8, 8)
    latent[:, 0], latent[:, 1] = -dx / scale, -dy / scale  # backward flow: p <- p - d
    warped, _ = flow.warp(image, latent)
    expected = torch.zeros_like(image)
    expected[:, :, 10 + dy : 14 + dy, 12 + dx : 15 + dx] = 1.0
    torch.testing.assert_close(warped, expected, atol=1e-5, rtol=0)
    # twice the size, twice the pixels
    big = torch.nn.functional.interpolate(image, scale_factor=2.0, mode="nearest")
    moved = torch.roll(big, shifts=(2 * dy, 2 * dx), dims=(2, 3))
    torch.testing.assert_close(flow.warp(big, latent)[0], moved, atol=1e-5, rtol=0)


def test_nearest_sampling_moves_pixels_without_blending_them():
    image = torch.zeros(1, 3, 16, 16)
    image[:, :, :, ::2] = 1.0  # one-pixel stripes
    latent = torch.zeros(1, 3, 4, 4)
    latent[:, 0] = 0.4 / 8.0  # 0.4 pixel (flow_scale 8): between two stripes, nearer one
    bilinear = FlowAutoencoder(**TINY_FLOW)
    nearest = FlowAutoencoder(**TINY_FLOW, sampling="nearest")
    with torch.no_grad():
        blended = bilinear.warp(image, latent)[0]
        moved = nearest.warp(image, latent)[0]
    inner = blended[..., 1:-1]
    assert ((inner - 0.5).abs() - 0.1).abs().max() < 1e-5  # every pixel a 0.4 / 0.6 blend
    assert set(moved.unique().tolist()) == {0.0, 1.0}  # every pixel one of the keyframe's
    assert moved[..., 1:-1].std() > 0.4  # the stripes survive
    # with gradients (training) it samples bilinearly, so the flow gets a gradient
    flow_latent = latent.clone().requires_grad_()
    trained = nearest.warp(image, flow_latent)[0]
    torch.testing.assert_close(trained.detach(), blended)
    trained[..., 1:-1].sum().backward()
    assert flow_latent.grad.abs().sum() > 0


def test_unknown_sampling_is_refused_by_name():
    with pytest.raises(ValueError, match="sampling must be one of .*'cubic'"):
        FlowAutoencoder(**TINY_FLOW, sampling="cubic")


def test_decode_keeps_what_is_visible_and_fills_what_is_not():
    flow = FlowAutoencoder(**TINY_FLOW)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    latent = torch.zeros(1, 3, 4, 4)
    latent[:, 2] = 1.0  # all visible: the frame is the warped keyframe, nearly exactly
    assert (flow.decode(image, latent) - image).abs().max() < 0.05
    latent[:, 2] = -1.0  # nothing visible: the fill
    assert (flow.decode(image, latent) - image).abs().max() > 0.05


# -- save / load --------------------------------------------------------------------------


def test_save_load_round_trip_float16_on_disk_float32_loaded(pipe, tmp_path):
    pipe.flow_autoencoder.half()
    pipe.motion_transformer.half()
    try:
        pipe.save_pretrained(tmp_path / "motion")
    finally:
        pipe.flow_autoencoder.float()
        pipe.motion_transformer.float()
    for part in ("flow_autoencoder", "motion_transformer"):
        weights = load_file(tmp_path / "motion" / part / "diffusion_pytorch_model.safetensors")
        assert {w.dtype for w in weights.values()} == {torch.float16}
    loaded = load_motion_pipeline(tmp_path / "motion")
    assert loaded.motion_transformer.dtype == torch.float32
    assert loaded.flow_autoencoder.dtype == torch.float32
    assert loaded.motion_transformer.config.frames == TINY_MOTION["frames"]
    for a, b in zip(
        loaded.motion_transformer.parameters(), pipe.motion_transformer.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b.half().float())


def test_missing_weights_say_how_to_train(tmp_path):
    with pytest.raises(InputError, match="python -m reelsmith.training motion"):
        load_motion_pipeline(tmp_path / "nothing")


# -- the pipeline -------------------------------------------------------------------------


def test_pipeline_output_shapes(pipe):
    out = pipe(
        keyframes(3), **clip_inputs(3), num_inference_steps=STEPS, generator=generators(1, 2, 3)
    )
    assert out.frames.shape == (3, 4, 16, 16, 3) and out.frames.dtype == np.uint8
    assert out.motion_latents.shape == (3, 4, 3, 4, 4)
    pt = pipe(keyframes(1), num_inference_steps=STEPS, output_type="pt", generator=generators(1))
    assert pt.frames.shape == (1, 4, 3, 16, 16) and 0 <= pt.frames.min() <= pt.frames.max() <= 1


def test_same_seed_same_frames_other_seed_other_frames(pipe):
    kw = {**clip_inputs(2), "num_inference_steps": STEPS}
    a = pipe(keyframes(2), generator=generators(5, 6), **kw)
    b = pipe(keyframes(2), generator=generators(5, 6), **kw)
    c = pipe(keyframes(2), generator=generators(7, 8), **kw)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not torch.equal(a.motion_latents, c.motion_latents)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_batched_equals_one_by_one(pipe, guidance_scale):
    inputs, frames = clip_inputs(3), keyframes(3)
    kw = {"num_inference_steps": STEPS, "guidance_scale": guidance_scale}
    batched = pipe(frames, **inputs, generator=generators(1, 2, 3), **kw)
    for i in range(3):
        one = pipe(
            frames[i : i + 1],
            **{k: v[i : i + 1] for k, v in inputs.items()},
            generator=generators(i + 1),
            **kw,
        )
        torch.testing.assert_close(
            one.motion_latents[0], batched.motion_latents[i], atol=1e-4, rtol=0
        )
        assert np.abs(one.frames[0].astype(int) - batched.frames[i]).max() <= 1


def test_guidance_changes_the_result_and_costs_a_branch(pipe):
    calls = []
    hook = pipe.motion_transformer.register_forward_hook(lambda m, a, o: calls.append(len(a[0])))
    try:
        plain = pipe(
            keyframes(2), **clip_inputs(2), num_inference_steps=STEPS, guidance_scale=1.0,
            generator=generators(1, 2),
        )  # fmt: skip
        guided = pipe(
            keyframes(2), **clip_inputs(2), num_inference_steps=STEPS, guidance_scale=3.0,
            generator=generators(1, 2),
        )  # fmt: skip
    finally:
        hook.remove()
    assert calls == [2] * STEPS + [4] * STEPS
    assert not torch.equal(plain.motion_latents, guided.motion_latents)


def test_callback_runs_once_per_step_and_can_replace_latents(pipe):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, tuple(kwargs["latents"].shape)))
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == STEPS - 1 else None

    out = pipe(
        keyframes(1),
        num_inference_steps=STEPS,
        generator=generators(0),
        callback_on_step_end=callback,
    )
    assert seen == [(i, (1, 4, 3, 4, 4)) for i in range(STEPS)]
    mean = torch.tensor(pipe.motion_transformer.config.latent_mean)[:, None, None]
    torch.testing.assert_close(out.motion_latents[0], mean.expand(4, 3, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"cameras": ["dolly"]}, "unknown camera move 'dolly'"),
        ({"actions": [{"mara": "dance"}]}, "unknown action 'dance'"),
        ({"identities": [{"mara": torch.zeros(5)}]}, r"identity of 'mara' has shape \(5,\)"),
        ({"looks": [{"mara": {"colour": "plaid"}}]}, "unknown look colour='plaid'"),
        ({"actions": [{"a": "run", "b": "run", "c": "run"}]}, "3 characters"),
        ({"context": [torch.zeros(3, 2, 2)]}, r"context 0 has shape \(3, 2, 2\)"),
        ({"offsets": [-1]}, "offsets"),
        ({"shot_frames": [0]}, "shot_frames"),
        ({"cameras": ["static", "static"]}, "2 cameras given for 1 keyframes"),
        ({"generator": generators(1, 2)}, "2 generators"),
        ({"output_type": "pil"}, "output_type"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "callback tensor input"),
    ],
)
def test_check_inputs_names_the_bad_value(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(keyframes(1), **kwargs)


def test_keyframes_at_another_size_are_refused(pipe):
    with pytest.raises(ValueError, match=r"uint8 \(B, 16, 16, 3\)"):
        pipe(keyframes(1, size=32))


# -- the shot renderer --------------------------------------------------------------------


def request(frames: int, fps: float = 8, size: int = 16, seed: int = 3) -> ShotRequest:
    return ShotRequest(
        shot_id="s1",
        keyframe=keyframes(1, size=size, seed=seed)[0],
        frames=frames,
        fps=fps,
        camera="pan-right",
        actions={"mara": "walk-right"},
        identities={"mara": {ENCODER: np.ones(8, np.float32) / 8**0.5}},
        seed=seed,
    )


@pytest.mark.parametrize(
    ("frames", "fps", "size"), [(1, 8, 16), (3, 8, 16), (4, 8, 16), (13, 8, 16), (25, 24, 40)]
)
def test_renderer_returns_exactly_the_frames_asked_for(pipe, frames, fps, size):
    renderer = BuiltinShotRenderer(pipe, steps=STEPS)
    (out,) = renderer.render([request(frames, fps, size)])
    assert out.shape == (frames, size, size, 3) and out.dtype == np.uint8


def test_renderer_first_frame_is_the_keyframe_moved_by_the_first_latent(pipe):
    shot = request(4)
    (out,) = BuiltinShotRenderer(pipe, steps=STEPS).render([shot])
    direct = pipe(
        shot.keyframe[None],
        cameras=["pan-right"],
        actions=[{"mara": "walk-right"}],
        identities=[{"mara": torch.ones(8) / 8**0.5}],
        shot_frames=[4],
        num_inference_steps=STEPS,
        generator=generators(shot.seed),
    )
    pixels = torch.from_numpy(shot.keyframe).permute(2, 0, 1)[None].float() / 127.5 - 1
    first = pipe.flow_autoencoder.decode(pixels, direct.motion_latents[:, 0])
    expected = ((first.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0)
    assert np.abs(out[0].astype(int) - expected.numpy()).max() <= 1
    np.testing.assert_array_equal(out, direct.frames[0])


def test_extension_warps_the_original_keyframe_with_the_last_latent_as_context(pipe):
    shot = request(10)
    renderer = BuiltinShotRenderer(pipe, steps=STEPS, batch_size=1)
    (out,) = renderer.render([shot])
    assert renderer.calls == 3  # clips of 4 + 4 + 2 (of 4) frames
    kw = {
        "cameras": ["pan-right"],
        "actions": [{"mara": "walk-right"}],
        "identities": [{"mara": torch.ones(8) / 8**0.5}],
        "shot_frames": [10],
        "num_inference_steps": STEPS,
    }
    first = pipe(shot.keyframe[None], generator=generators(shot.seed), **kw)
    second = pipe(
        shot.keyframe[None],
        context=[first.motion_latents[0, -1]],
        offsets=[4],
        generator=generators(clip_seed(shot.seed, 1)),
        **kw,
    )
    np.testing.assert_array_equal(out[:4], first.frames[0])
    np.testing.assert_array_equal(out[4:8], second.frames[0])


def test_renderer_batches_shots_without_changing_them(pipe):
    shots = [request(6, seed=1), replace(request(3, seed=2), shot_id="s2")]
    alone = [BuiltinShotRenderer(pipe, steps=STEPS).render([s])[0] for s in shots]
    done = []
    together = BuiltinShotRenderer(pipe, steps=STEPS).render(
        shots, progress=lambda *a: done.append(a)
    )
    for a, b in zip(alone, together, strict=True):
        assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1
    assert sorted(done) == [(1, 2), (2, 2)]


def test_renderer_refuses_a_start_frame(pipe):
    shot = replace(request(4), start=keyframes(1)[0])
    with pytest.raises(ValueError, match="start frame"):
        BuiltinShotRenderer(pipe).render([shot])


def test_transformer_attention_variants_agree_on_shapes():
    for attention in ("full", "factorised"):
        model = MotionTransformer(**{**TINY_MOTION, "attention": attention})
        assert sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(ValueError, match="attention"):
        MotionTransformer(**{**TINY_MOTION, "attention": "sparse"})


# -- training -----------------------------------------------------------------------------

TINY_CONFIG = {
    "data": {
        "train": {"kind": "clips", "count": 6, "seed": 5, "resolution": 32, "clip_frames": 6,
                  "shard_size": 6},
        "held_out": {"kind": "clips", "count": 3, "seed": 6, "resolution": 32, "clip_frames": 6,
                     "shard_size": 3},
    },
    "model": {
        "flow": {"resolution": 32, "latent_size": 8, "width": 8},
        "motion": {"resolution": 32, "latent_size": 8, "patch_size": 2, "frames": 4, "width": 16,
                   "layers": 1, "heads": 2, "identity_dim": 64, "slots": 4},
    },
    "train": {
        "seed": 0,
        "flow": {"steps": 2, "batch": 4, "lr": 0.001, "weight_decay": 0.0, "warmup": 1,
                 "max_seconds": 0, "smoothness": 0.02, "visibility": 0.01,
                 "character_weight": 4.0, "flip": True, "log_every": 1},
        "motion": {"steps": 2, "batch": 4, "lr": 0.0005, "weight_decay": 0.01, "warmup": 1,
                   "clip_grad": 1.0, "ema": 0.99, "max_seconds": 0, "first_clip_fraction": 0.3,
                   "drop_motion": 0.1, "drop_identity": 0.1, "drop_identity_slot": 0.1,
                   "drop_looks": 0.5, "identity_noise": 0.05, "log_every": 1},
        "eval": {"pairs_per_clip": 2, "steps": 2, "seed": 0},
    },
}  # fmt: skip


def train(tmp_path, *overrides: str, out: str = "out", init=None) -> subprocess.CompletedProcess:
    config = tmp_path / "motion.json"
    config.write_text(json.dumps(TINY_CONFIG))
    command = [
        sys.executable, "-m", "reelsmith.training", "motion", "--out", str(tmp_path / out),
        "--data", str(tmp_path / "data"), "--config", str(config), "--workers", "1",
        "--device", "cpu",
    ]  # fmt: skip
    if init is not None:
        command += ["--init", str(init)]
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_a_kept_loss_holds_only_itself():
    """A mean-reduced MSE shares its squared-error buffer's storage; what the trainers keep
    per step for the log must not (one such buffer a step ran a GPU out of memory)."""
    from reelsmith.training.common import kept

    pred = torch.randn(8, 64, 96, requires_grad=True)
    loss = torch.nn.functional.mse_loss(pred, torch.zeros_like(pred))
    assert kept(loss).untyped_storage().nbytes() == loss.element_size()
    assert kept(loss) == loss and not kept(loss).requires_grad


def test_tiny_training_run_writes_a_loadable_pipeline(tmp_path):
    done = train(tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    record = json.loads((out / "train_log.json").read_text())
    assert record["flow"]["steps_run"] == 2 and record["motion"]["steps_run"] == 2
    assert record["device"] == "cpu" and "training on cpu" in done.stdout
    assert {"psnr", "psnr_repeat_keyframe"} <= set(record["flow"])
    assert {"v_loss", "v_loss_without_motion"} <= set(record["motion"])
    assert (out / "train.log").read_text().count(" held-out: {") == 2
    pipe = load_motion_pipeline(out)
    assert pipe.motion_transformer.config.latent_scale == record["motion"]["latent_scale"]
    shot = replace(request(5, size=32), identities={"mara": {ENCODER: np.ones(64) / 8}})
    (frames,) = BuiltinShotRenderer(pipe, steps=STEPS).render([shot])
    assert frames.shape == (5, 32, 32, 3)


def test_init_continues_a_saved_pipeline_and_freeze_flow_keeps_its_autoencoder(tmp_path):
    assert train(tmp_path).returncode == 0
    first = tmp_path / "out"
    # the config's model sizes differ: --init's own sizes win
    done = train(
        tmp_path, "train.freeze_flow=true", "model.motion.layers=3", out="again", init=first
    )
    assert done.returncode == 0, done.stderr
    again = tmp_path / "again"
    record = json.loads((again / "train_log.json").read_text())
    assert record["init"] == str(first) and record["flow"]["frozen"]
    assert record["config"]["model"]["motion"]["layers"] == 1
    assert f"starting from {first}" in done.stdout

    def weights(folder, part):
        return load_file(folder / part / "diffusion_pytorch_model.safetensors")

    kept, before = weights(again, "flow_autoencoder"), weights(first, "flow_autoencoder")
    assert all(torch.equal(kept[k], before[k]) for k in before)
    moved, start = weights(again, "motion_transformer"), weights(first, "motion_transformer")
    assert moved.keys() == start.keys()
    assert any(not torch.equal(moved[k], start[k]) for k in start)  # trained further
    a, b = load_motion_pipeline(again), load_motion_pipeline(first)
    assert a.motion_transformer.config.latent_scale == b.motion_transformer.config.latent_scale
    # without freeze_flow, stage A continues from the saved autoencoder too
    assert train(tmp_path, out="third", init=again).returncode == 0
    third = weights(tmp_path / "third", "flow_autoencoder")
    assert any(not torch.equal(third[k], kept[k]) for k in kept)


def test_init_keeps_the_pipelines_segmenter(tmp_path):
    from reelsmith.renderer.identity.segmenter import CharacterSegmenter

    assert train(tmp_path).returncode == 0
    first = load_motion_pipeline(tmp_path / "out")
    first.register_modules(segmenter=CharacterSegmenter(width=4, depth=2))
    first.save_pretrained(tmp_path / "with_segmenter")
    done = train(tmp_path, out="again", init=tmp_path / "with_segmenter")
    assert done.returncode == 0, done.stderr
    again = load_motion_pipeline(tmp_path / "again")
    assert isinstance(again.segmenter, CharacterSegmenter)
    for a, b in zip(again.segmenter.parameters(), first.segmenter.parameters(), strict=True):
        torch.testing.assert_close(a, b.half().float())


def test_init_that_is_not_a_pipeline_is_one_line(tmp_path):
    done = train(tmp_path, init=tmp_path / "nowhere")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no motion pipeline there" in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.freeze_flow=true"], "train.freeze_flow needs --init"),
        (["model.motion.identity_dim=8"], "identity_dim is 8"),
        (['model.motion.attention="sparse"'], "attention"),
        (["model.flow.latent_size=4"], "latent_size"),
        (["data.train.clip_frames=4"], "clip_frames must be at least"),
        (['data.held_out.kind="movies"'], "data.held_out must be a clips dataset"),
        (["train.flow.speed=1"], "no config key 'train.flow.speed'"),
        (["train.motion.batch=0"], "train.motion.batch must be an integer >= 1"),
        (["nothing.here=1"], "no config key 'nothing'"),
    ],
)
def test_bad_config_is_an_input_error_before_any_work(tmp_path, overrides, message):
    config = tmp_path / "motion.json"
    config.write_text(json.dumps(TINY_CONFIG))
    argv = ["motion", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]
    argv += ["--config", str(config)] + [a for item in overrides for a in ("--set", item)]
    with pytest.raises(InputError, match=message):
        train_main(argv)
    assert not (tmp_path / "data").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_an_input_error_before_any_work(tmp_path):
    config = tmp_path / "motion.json"
    config.write_text(json.dumps(TINY_CONFIG))
    argv = ["motion", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]
    with pytest.raises(InputError, match="--device cuda: torch sees no CUDA device"):
        train_main([*argv, "--config", str(config), "--device", "cuda"])
    assert not (tmp_path / "data").exists()


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    done = train(tmp_path, "model.motion.identity_dim=8")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("reelsmith.training: error:") and "identity_dim" in lines[0]
