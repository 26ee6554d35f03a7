"""ShotPipeline and BuiltinShotRenderer on a tiny pipeline built in code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from safetensors import safe_open

from reelsmith.errors import InputError
from reelsmith.memory.identity import ENCODER
from reelsmith.renderer import shot_pipeline
from reelsmith.renderer.shot_model import (
    ACTIONS,
    ShotConditionEncoder,
    ShotTransformer,
    phase_features,
)
from reelsmith.renderer.shot_pipeline import (
    BuiltinShotRenderer,
    ShotPipeline,
    load_shot_pipeline,
    make_pipeline,
)
from reelsmith.renderer.shots import ShotRequest, clip_seed

TINY = {
    "resolution": 16,
    "patch_size": 4,
    "width": 16,
    "layers": 1,
    "heads": 2,
    "max_frames": 5,  # clips of up to 6 frames
    "identity_dim": 8,
    "slots": 2,
}
STEPS = 2


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only wait on each other
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe() -> ShotPipeline:
    torch.manual_seed(0)
    pipe = make_pipeline(**TINY)
    with torch.no_grad():  # the output layer starts at zero: give it weights, so frames move
        pipe.transformer.final_layer.weight.normal_(0, 0.5)
        pipe.transformer.adaln[1].weight.normal_(0, 0.2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images(n: int, seed: int = 0, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def embedding(seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(8, generator=torch.Generator().manual_seed(seed)), dim=0
    )


def inputs(n: int = 1) -> dict:
    """Keyframes and conditions of n clips: one walker, one waver with a friend, ..."""
    return {
        "keyframes": images(n),
        "cameras": ["pan-left", "static", "zoom-in"][:n],
        "actions": [{"mara": "walk-left"}, {"ben": "wave", "mara": "idle"}, {}][:n],
        "identities": [{"mara": embedding(1)}, {"ben": embedding(2)}, {}][:n],
    }


def draw(pipe, seed: int = 0, **kwargs) -> np.ndarray:
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("num_frames", 4)
    generator = kwargs.pop("generator", torch.Generator().manual_seed(seed))
    return pipe(generator=generator, **kwargs).frames


@contextmanager
def transformer_batches(pipe) -> Iterator[list[int]]:
    """The batch size of every transformer forward call inside the block (a forward hook)."""
    batches: list[int] = []
    handle = pipe.transformer.register_forward_hook(
        lambda module, args, output: batches.append(args[0].shape[0])
    )
    try:
        yield batches
    finally:
        handle.remove()


# -- 1. shapes, save / load --------------------------------------------------------------


def test_tiny_pipeline_has_the_asked_sizes(pipe):
    assert (pipe.resolution, pipe.native_frames, pipe.fps) == (16, 6, 8.0)
    assert (pipe.identity_dim, pipe.slots) == (8, 2)


def test_float16_on_disk_loads_as_float32_and_draws_the_same(pipe, tmp_path):
    half = make_pipeline(**TINY)
    half.condition_encoder.load_state_dict(pipe.condition_encoder.state_dict())
    half.transformer.load_state_dict(pipe.transformer.state_dict())
    half.condition_encoder.to(torch.float16)
    half.transformer.to(torch.float16)
    half.save_pretrained(tmp_path)
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert len(files) == 2
    for path in files:
        with safe_open(path, "pt") as f:
            names = f.keys()  # a list: safe_open is not a mapping
            assert names and {f.get_tensor(k).dtype for k in names} == {torch.float16}

    loaded = load_shot_pipeline(tmp_path)
    assert type(loaded.scheduler) is type(pipe.scheduler)
    for name in ("condition_encoder", "transformer"):
        before, after = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert before.keys() == after.keys()
        for key, value in after.items():
            assert value.dtype == torch.float32, f"{name}.{key}"
            assert torch.equal(value, before[key].half().float()), f"{name}.{key}"
    # reloaded: the same weights (rounded to float16) draw the same frames
    rounded = make_pipeline(**TINY)
    rounded.condition_encoder.load_state_dict(loaded.condition_encoder.state_dict())
    rounded.transformer.load_state_dict(loaded.transformer.state_dict())
    rounded.set_progress_bar_config(disable=True)
    assert np.array_equal(draw(loaded, 3, **inputs(2)), draw(rounded, 3, **inputs(2)))


def test_missing_folders_are_input_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="no shot pipeline there"):
        load_shot_pipeline(tmp_path)
    monkeypatch.setattr(shot_pipeline, "WEIGHTS", tmp_path / "shots")
    with pytest.raises(InputError, match=r"no built-in shot model at .*train one with"):
        load_shot_pipeline()


# -- 2. seeds and batches ----------------------------------------------------------------


def test_same_seed_same_frames_other_seed_differs(pipe):
    first = draw(pipe, 1, **inputs())
    assert np.array_equal(first, draw(pipe, 1, **inputs()))
    assert not np.array_equal(first, draw(pipe, 2, **inputs()))


def test_clips_drawn_together_equal_clips_drawn_alone(pipe):
    together = draw(
        pipe, generator=[torch.Generator().manual_seed(s) for s in (5, 6, 7)], **inputs(3)
    )
    given = inputs(3)
    for i, seed in enumerate((5, 6, 7)):
        alone = draw(
            pipe,
            generator=[torch.Generator().manual_seed(seed)],
            **{k: v[i : i + 1] for k, v in given.items()},
        )
        assert np.abs(together[i].astype(int) - alone[0]).max() <= 1  # float rounding at most
    assert not np.array_equal(together[0, 1:], together[1, 1:])


def test_a_shorter_clip_is_the_start_of_a_longer_one(pipe):
    """Causal temporal attention: frames do not depend on frames after them."""
    noise = torch.randn(1, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    shot = {**inputs(), "shot_frames": [20], "offsets": [3]}
    long = pipe(num_frames=6, latents=noise, num_inference_steps=STEPS, output_type="pt", **shot)
    short = pipe(
        num_frames=3, latents=noise[:, :2], num_inference_steps=STEPS, output_type="pt", **shot
    )
    torch.testing.assert_close(short.frames, long.frames[:, :3], atol=1e-5, rtol=0)


# -- 3. outputs, guidance, callbacks -------------------------------------------------------


def test_outputs_start_with_the_start_frame(pipe):
    starts = images(2, seed=9)
    frames = draw(pipe, starts=starts, **inputs(2))
    assert frames.shape == (2, 4, 16, 16, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[:, 0], starts)
    assert not np.array_equal(frames[:, 1], starts)
    pt = draw(pipe, starts=starts, output_type="pt", **inputs(2))
    assert pt.shape == (2, 4, 3, 16, 16) and pt.dtype == torch.float32
    assert pt.min() >= 0 and pt.max() <= 1
    assert np.array_equal((pt * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2), frames)
    default = draw(pipe, num_frames=None, **inputs())
    assert default.shape[1] == pipe.native_frames
    assert np.array_equal(default[0, 0], inputs()["keyframes"][0])  # no start: the keyframe


def test_guidance_one_computes_one_branch_and_more_two(pipe):
    with transformer_batches(pipe) as batches:
        draw(pipe, guidance_scale=1.0, **inputs(3))
    assert batches == [3] * STEPS
    with transformer_batches(pipe) as batches:
        draw(pipe, guidance_scale=2.5, **inputs(3))
    assert batches == [6] * STEPS


def test_guidance_moves_the_frames_towards_the_motion(pipe):
    plain = draw(pipe, guidance_scale=1.0, output_type="pt", **inputs())
    guided = draw(pipe, guidance_scale=3.0, output_type="pt", **inputs())
    assert not torch.equal(plain, guided)


def test_callback_sees_the_latents_after_every_step_and_can_replace_them(pipe):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, tuple(kwargs["latents"].shape)))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    frames = draw(pipe, callback_on_step_end=callback, output_type="pt", **inputs())
    assert seen == [(k, (1, 3, 3, 16, 16)) for k in range(STEPS)]
    torch.testing.assert_close(frames[:, 1:], frames[:, :1].expand(-1, 3, -1, -1, -1))


# -- 4. bad inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keyframes": images(1, size=8)}, "keyframes must be uint8 (B, 16, 16, 3)"),
        ({"keyframes": images(1).astype(np.float32)}, "float32"),
        ({"keyframes": images(0)}, "empty"),
        ({"starts": images(2)}, "2 start frames given for 1 keyframes"),
        ({"num_frames": 7}, "num_frames 7 must be in [2, 6]"),
        ({"num_frames": 1}, "num_frames 1"),
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer >= 1, got 0"),
        ({"cameras": ["dolly"]}, "'dolly'"),
        ({"cameras": ["static", "static"]}, "2 cameras given for 1 clips"),
        ({"actions": [{"mara": "dance"}]}, "'mara' has unknown action 'dance'"),
        ({"actions": ["walk"]}, "one mapping"),
        ({"identities": [{"mara": torch.zeros(5)}]}, "(5,)"),
        ({"identities": [{"mara": torch.full((8,), float("nan"))}]}, "not finite"),
        ({"offsets": [-1]}, "offset -1"),
        ({"shot_frames": [0]}, "shot_frames 0"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"output_type": "pil"}, "'pil'"),
        ({"latents": torch.zeros(1, 2, 3, 16, 16)}, "(1, 3, 3, 16, 16)"),
        ({"generator": [torch.Generator(), torch.Generator()]}, "2 generators given for 1"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "'noise'"),
    ],
)
def test_bad_inputs_raise_naming_the_value(pipe, change, message):
    kwargs = {**inputs(), **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        draw(pipe, **kwargs)


# -- 5. the model's parts ------------------------------------------------------------------


def test_phase_features_place_each_frame_in_its_shot():
    phase = phase_features(torch.tensor([0, 15]), torch.tensor([21, 21]), 6)
    assert phase.shape == (2, 6, 2)
    torch.testing.assert_close(phase[0, :, 0], torch.arange(1, 7) / 20)
    torch.testing.assert_close(phase[1, :, 0], torch.tensor([16, 17, 18, 19, 20, 20]) / 20)
    assert (phase[..., 1] == phase[0, 0, 1]).all() and 0 < phase[0, 0, 1] < 1


def test_absent_slots_and_dropped_motion_are_their_learned_vectors():
    torch.manual_seed(0)
    enc = ShotConditionEncoder(identity_dim=8, slots=2, width=16).eval()
    b = 2
    ident = torch.randn(b, 2, 8)
    acts = torch.tensor([[1, 2], [3, 4]])
    camera = torch.tensor([1, 2])
    present = torch.tensor([[True, False], [True, False]])
    on = torch.ones(b, 2, dtype=torch.bool)
    out = enc(ident, acts, camera, present, on, torch.tensor([True, False]))
    assert out.shape == (b, 3, 16)
    torch.testing.assert_close(out[0, 2], out[1, 2])  # absent: the empty slot
    other = enc(
        ident.flip(0), acts.flip(0), camera.flip(0), present, on, torch.tensor([True, False])
    )
    torch.testing.assert_close(other[1, 0], out[1, 0])  # dropped motion: the null camera
    assert not torch.allclose(other[1, 1], out[1, 1])  # the identity stays
    assert len(ACTIONS) == enc.action.num_embeddings


def test_transformer_refuses_too_many_frames():
    model = ShotTransformer(resolution=16, patch_size=4, width=16, layers=1, heads=2, max_frames=2)
    x = torch.zeros(1, 3, 3, 16, 16)
    with pytest.raises(ValueError, match="at most 2 frames"):
        model(x, x[:, 0], x[:, 0], torch.zeros(1), torch.zeros(1, 3, 16), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="multiple of patch"):
        ShotTransformer(resolution=18, patch_size=4)


# -- 6. BuiltinShotRenderer ----------------------------------------------------------------


class Recorder:
    """The pipeline, with every call's arguments kept."""

    def __init__(self, pipe: ShotPipeline) -> None:
        self.pipe, self.calls = pipe, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, keyframes, **kwargs):
        self.calls.append({"keyframes": keyframes, **kwargs})
        return self.pipe(keyframes, **kwargs)


def request(shot_id: str, frames: int, seed: int = 0, **kwargs) -> ShotRequest:
    kwargs.setdefault("keyframe", images(1, seed=seed)[0])
    return ShotRequest(
        shot_id,
        frames=frames,
        fps=8,
        seed=seed,
        camera="pan-right",
        actions={"mara": "run"},
        identities={"mara": {ENCODER: embedding(seed).numpy()}, "ben": {"other-encoder": [0.0]}},
        **kwargs,
    )


def test_renderer_gives_each_shot_its_frames_starting_at_its_keyframe(pipe):
    renderer = BuiltinShotRenderer(pipe, steps=STEPS)
    assert (renderer.native_frames, renderer.fps) == (6, 8.0)
    done = []
    shots = [request("short", 4, 1), request("native", 6, 2), request("long", 17, 3)]
    out = renderer.render(shots, progress=lambda n, total: done.append((n, total)))
    assert [o.shape for o in out] == [(4, 16, 16, 3), (6, 16, 16, 3), (17, 16, 16, 3)]
    assert all(o.dtype == np.uint8 for o in out)
    for frames, shot in zip(out, shots, strict=True):
        assert np.array_equal(frames[0], shot.keyframe)
    assert done == [(1, 3), (2, 3), (3, 3)]


def test_long_shots_go_clip_by_clip_batched_with_the_keyframe_every_time(pipe):
    recorder = Recorder(pipe)
    renderer = BuiltinShotRenderer(recorder, steps=STEPS, batch_size=2)
    long = request("long", 14, 3)  # clips of 6 + 5 + 5 new frames: 6, 6, then 4 frames
    out = renderer.render([request("a", 6, 1), long, request("b", 6, 2)])
    # round 1: three clips of 6 frames (two calls of at most 2); round 2: 6; round 3: 4
    assert [len(c["keyframes"]) for c in recorder.calls] == [2, 1, 1, 1]
    assert [c["num_frames"] for c in recorder.calls] == [6, 6, 6, 4]
    assert [c["offsets"] for c in recorder.calls[-2:]] == [[5], [10]]
    assert [c["shot_frames"] for c in recorder.calls[-2:]] == [[14], [14]]
    for call in recorder.calls[-2:]:  # the keyframe again, and the last frame so far
        assert np.array_equal(call["keyframes"][0], long.keyframe)
        assert set(call["identities"][0]) == {"mara"}  # only the built-in encoder's
    assert np.array_equal(recorder.calls[2]["starts"][0], out[1][5])
    assert np.array_equal(recorder.calls[3]["starts"][0], out[1][10])
    # each clip's seed is its own: the long shot alone is the same shot
    alone = BuiltinShotRenderer(pipe, steps=STEPS).render([long])[0]
    assert np.abs(alone.astype(int) - out[1]).max() <= 1
    assert clip_seed(3, 1) != 3


def test_other_sizes_and_frame_rates_are_rendered_at_the_model_and_brought_back(pipe):
    renderer = BuiltinShotRenderer(pipe, steps=STEPS)
    keyframe = images(1, size=40)[0][:, :30]  # 40 x 30
    shot = ShotRequest("wide", keyframe, frames=12, fps=24, seed=4)
    (frames,) = renderer.render([shot])
    assert frames.shape == (12, 40, 30, 3)  # 0.5 s: 5 model frames at 8 fps, repeated


def test_renderer_refuses_what_is_not_a_request(pipe):
    renderer = BuiltinShotRenderer(pipe, steps=STEPS)
    with pytest.raises(ValueError, match="empty"):
        renderer.render([])
    with pytest.raises(ValueError, match=r"requests\[0\] is a dict"):
        renderer.render([{"shot_id": "x"}])
    with pytest.raises(ValueError, match="steps 0"):
        BuiltinShotRenderer(pipe, steps=0)
