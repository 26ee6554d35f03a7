"""KeyframePipeline on a tiny pipeline built in code; the shipped keyframe and identity models."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.renderer.identity.encoder import crop_boxes, load_identity_encoder
from reelsmith.renderer.keyframes.models import (
    ConditionEncoder,
    KeyframeEncoder,
    KeyframeTransformer,
    deepened,
    patchify,
    unpatchify,
    with_detail,
)
from reelsmith.renderer.keyframes.pipeline import (
    BRANCHES,
    KeyframePipeline,
    load_keyframe_pipeline,
    make_pipeline,
)
from reelsmith.schema.conditioning import ACTIONS, TRAITS, CharacterSpec, KeyframeSpec
from reelsmith.schema.encoding import spec_indices
from reelsmith.schema.looks import cast_identities
from reelsmith.world.render import WorldConfig, WorldRenderer, portrait

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "resolution": 16,
    "token_count": 2,
    "token_dim": 4,
    "identity_dim": 8,
    "slots": 2,
    "layers": 1,
    "heads": 2,
    "head_dim": 8,
    "patch_size": 4,
    "encoder_width": 8,  # GroupNorm(8, ...) in the tokenizer: a multiple of 8
    "condition_width": 16,
}
STEPS = 2
PLAIN = {"spec": 1.0, "identity": 1.0, "tokens": 1.0}  # the conditional model alone: one branch
MARA = CharacterSpec("mara", {"shape": "pointed", "colour": "red"}, "wave")
BEN = CharacterSpec("ben", {"accessory": "hat"})
FOREST = KeyframeSpec("forest", characters=(MARA,))
BEACH = KeyframeSpec("beach", time="night", size="wide", characters=(MARA, BEN))


@pytest.fixture(scope="module")
def pipe() -> KeyframePipeline:
    torch.manual_seed(0)
    pipe = make_pipeline(**TINY)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def conditions(specs, seed: int = 0) -> dict:
    """Random tokens (B, K, d) and unit identity embeddings for every character of `specs`."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(len(specs), TINY["token_count"], TINY["token_dim"], generator=g)
    identities = [
        {
            c.id: F.normalize(torch.randn(TINY["identity_dim"], generator=g), dim=0)
            for c in s.characters
        }
        for s in specs
    ]
    return {"tokens": tokens, "identities": identities}


def draw(pipe, specs, seed: int = 0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    generator = kwargs.pop("generator", torch.Generator().manual_seed(seed))
    return pipe(specs, generator=generator, **kwargs).images


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


def public(config) -> dict:
    """A diffusers config without its bookkeeping keys (`_class_name`, `_use_default_values`)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


# -- 1. save / load ---------------------------------------------------------------------


def test_tiny_pipeline_has_the_asked_sizes(pipe):
    assert pipe.resolution == 16
    assert pipe.token_shape == (2, 4)
    assert pipe.identity_dim == 8
    assert pipe.condition_encoder.config.slots == 2
    assert pipe.condition_encoder.length == 2 + 2 * 2 + 4


def test_save_and_load_round_trip_is_bit_exact(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = KeyframePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    for name in ("keyframe_encoder", "condition_encoder", "transformer"):
        before, after = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert before.keys() == after.keys()
        for key, value in before.items():
            assert after[key].dtype == value.dtype, f"{name}.{key}"
            assert torch.equal(after[key], value), f"{name}.{key}"
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert public(loaded.scheduler.config) == public(pipe.scheduler.config)
    inputs = conditions([FOREST, BEACH])
    assert np.array_equal(
        draw(loaded, [FOREST, BEACH], 3, **inputs), draw(pipe, [FOREST, BEACH], 3, **inputs)
    )


def test_patchify_inverts_pixarts_unpatchify():
    tokens = torch.randn(2, 16, 4 * 4 * 3)
    pixels = unpatchify(tokens, 4, 3)
    assert pixels.shape == (2, 3, 16, 16)
    # PixArt's layout: token (row 1, column 2), pixel (3, 0) of its patch, channel 1
    assert pixels[0, 1, 4 + 3, 8 + 0] == tokens[0, 1 * 4 + 2].view(4, 4, 3)[3, 0, 1]
    assert torch.equal(patchify(pixels, 4), tokens)


def predictor(pipe):
    """model -> its prediction for one fixed noisy batch, timesteps and condition sequence."""
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([900, 10])
    cond = torch.randn(2, pipe.condition_encoder.length, TINY["condition_width"])
    added = {"resolution": None, "aspect_ratio": None}

    def predict(model):
        with torch.no_grad():
            return model(x, cond, t, added, return_dict=False)[0]

    return predict


def test_a_detail_path_starts_as_the_plain_transformer_and_round_trips(pipe, tmp_path):
    plain = pipe.transformer
    detailed = with_detail(plain, 16)
    assert isinstance(detailed, KeyframeTransformer) and detailed.config.detail_width == 16
    assert with_detail(detailed, 32) is detailed
    predict = predictor(pipe)
    assert torch.equal(predict(detailed), predict(plain))
    with torch.no_grad():  # a trained path changes the prediction, locally
        torch.nn.init.normal_(detailed.proj_out.detail_out.weight, std=0.1)
    assert not torch.equal(predict(detailed), predict(plain))
    with_path = KeyframePipeline(
        pipe.keyframe_encoder, pipe.condition_encoder, detailed, pipe.scheduler
    )
    with_path.save_pretrained(tmp_path)
    loaded = KeyframePipeline.from_pretrained(tmp_path)
    assert type(loaded.transformer) is KeyframeTransformer
    for key, value in detailed.state_dict().items():
        assert torch.equal(loaded.transformer.state_dict()[key], value), key
    inputs = conditions([FOREST])
    with_path.set_progress_bar_config(disable=True)
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(
        draw(loaded, [FOREST], 3, **inputs), draw(with_path, [FOREST], 3, **inputs)
    )
    with pytest.raises(ValueError, match="float16"):
        with_detail(copy.deepcopy(plain).to(torch.float16), 16)


def test_a_deepened_transformer_starts_as_the_shallow_one_and_loads_from_shards(pipe, tmp_path):
    torch.manual_seed(1)
    shallow = make_pipeline(**{**TINY, "layers": 3}).transformer
    with torch.no_grad():  # trained-looking blocks: every output projection non-zero
        for p in shallow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    deep = deepened(shallow, 5)
    assert deep.config.num_layers == 5 and deepened(deep, 5) is deep
    predict = predictor(pipe)
    assert torch.equal(predict(deep), predict(shallow))
    # the old blocks keep their order (at 0, 2, 3); the new ones (1, 4) copy the block before
    # them, all but their output projections, which start at zero
    old = [b.state_dict() for b in shallow.transformer_blocks]
    new = [b.state_dict() for b in deep.transformer_blocks]
    for j, i in ((0, 0), (2, 1), (3, 2)):
        assert all(torch.equal(new[j][k], v) for k, v in old[i].items())
    outputs = ("attn1.to_out.0.weight", "attn2.to_out.0.weight", "ff.net.2.weight")
    for j, i in ((1, 0), (4, 2)):
        assert all(new[j][k].count_nonzero() == 0 for k in outputs)
        assert torch.equal(new[j]["attn1.to_q.weight"], old[i]["attn1.to_q.weight"])
    with torch.no_grad():  # a trained new block changes the prediction
        deep.transformer_blocks[1].ff.net[2].weight.normal_(std=0.1)
    assert not torch.equal(predict(deep), predict(shallow))
    deep.save_pretrained(tmp_path, max_shard_size="20KB")  # several files and their index
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    loaded = type(deep).from_pretrained(tmp_path)
    assert loaded.config.num_layers == 5 and torch.equal(predict(loaded), predict(deep))
    with pytest.raises(ValueError, match="layers=2 would remove"):
        deepened(shallow, 2)
    with pytest.raises(ValueError, match="float16"):
        deepened(copy.deepcopy(shallow).to(torch.float16), 5)


# -- 2. seeds ---------------------------------------------------------------------------


def test_same_seed_same_image_other_seed_differs(pipe):
    inputs = conditions([FOREST])
    first = draw(pipe, FOREST, 1, **inputs)
    assert np.array_equal(first, draw(pipe, FOREST, 1, **inputs))
    assert not np.array_equal(first, draw(pipe, FOREST, 2, **inputs))


def test_per_keyframe_generators_do_not_depend_on_the_batch(pipe):
    inputs = conditions([FOREST, BEACH])
    both = draw(
        pipe,
        [FOREST, BEACH],
        generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)],
        **inputs,
    )
    alone = draw(
        pipe,
        [FOREST],
        generator=[torch.Generator().manual_seed(5)],
        tokens=inputs["tokens"][:1],
        identities=inputs["identities"][:1],
    )
    # exact on CPU: the batch of 2 runs the same kernels row by row
    assert np.array_equal(both[0], alone[0])
    assert not np.array_equal(both[0], both[1])


# -- 3. bad inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokens": torch.zeros(1, 3, 4)}, "(1, 3, 4)"),
        ({"tokens": torch.full((1, 2, 4), float("nan"))}, "NaN"),
        ({"identities": [{"ben": torch.zeros(8)}]}, "'mara'"),
        ({"identities": [{"mara": torch.zeros(5)}]}, "(5,)"),
        ({"identities": [{"mara": torch.zeros(8)}, {}]}, "2 identity maps"),
        ({"height": 32}, "height 32"),
        ({"width": 24}, "width 24"),
        ({"guidance": {"style": 2.0}}, "'style'"),
        ({"output_type": "latent"}, "'latent'"),
        ({"latents": torch.zeros(1, 3, 8, 8)}, "(1, 3, 8, 8)"),
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer >= 1, got 0"),
        ({"generator": [torch.Generator(), torch.Generator()]}, "2 generators"),
        ({"tokens": np.zeros((1, 2, 4), np.float32)}, "ndarray"),
        ({"identities": [torch.zeros(8)]}, "one mapping"),
    ],
)
def test_bad_inputs_raise_naming_the_value(pipe, change, message):
    kwargs = {**conditions([FOREST]), **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        draw(pipe, [FOREST], **kwargs)


def test_tokenizer_refuses_resolutions_it_cannot_pool():
    with pytest.raises(ValueError, match="48"):
        KeyframeEncoder(resolution=48, width=8, token_count=2, token_dim=4)


def test_no_specs_raises(pipe):
    with pytest.raises(ValueError, match="empty"):
        draw(pipe, [])


def test_encode_refuses_other_resolutions(pipe):
    tokens = pipe.encode(np.zeros((2, 16, 16, 3), np.uint8))
    assert tuple(tokens.shape) == (2, 2, 4) and tokens.dtype == torch.float32
    with pytest.raises(ValueError, match=re.escape("(1, 8, 8, 3)")):
        pipe.encode(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=re.escape("(16, 16)")):
        pipe.encode(np.zeros((16, 16), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"location": "moon"}, "'moon'"),
        ({"location": "forest", "time": "noon"}, "'noon'"),
        ({"location": "forest", "camera": "dolly"}, "'dolly'"),
        (
            {"location": "forest", "characters": (CharacterSpec("a", {"colour": "mauve"}),)},
            "'mauve'",
        ),
        ({"location": "forest", "characters": (CharacterSpec("a", {"hair": "red"}),)}, "hair"),
        ({"location": "forest", "characters": (CharacterSpec("a", action="dance"),)}, "'dance'"),
    ],
)
def test_keyframe_spec_refuses_unknown_words(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        KeyframeSpec(**kwargs)


# -- 4. callback ------------------------------------------------------------------------


def test_callback_sees_the_latents_after_every_step(pipe):
    seen = []

    def record(pipeline, step, timestep, kwargs):
        assert pipeline is pipe
        seen.append((step, int(timestep), kwargs["latents"].clone()))

    pixels = draw(
        pipe, [FOREST, BEACH], num_inference_steps=3, output_type="pt", callback_on_step_end=record
    )
    assert [step for step, _, _ in seen] == [0, 1, 2]
    assert [t for _, t, _ in seen] == pipe.scheduler.timesteps.tolist()
    assert all(tuple(latents.shape) == (2, 3, 16, 16) for _, _, latents in seen)
    assert not torch.equal(seen[0][2], seen[1][2])
    torch.testing.assert_close(pixels, (seen[-1][2].clamp(-1, 1) + 1) / 2)  # the last sample


def test_callback_can_replace_the_latents(pipe):
    def zero(pipeline, step, timestep, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])}

    plain = draw(pipe, FOREST, 4)
    zeroed = draw(pipe, FOREST, 4, callback_on_step_end=zero)
    assert not np.array_equal(plain, zeroed)
    assert (zeroed == 128).all()  # zero latents after the last step: mid grey, (0 + 1) / 2


# -- 5. guidance ------------------------------------------------------------------------


def test_all_scales_one_computes_one_branch(pipe):
    inputs = conditions([FOREST, BEACH])
    cond, coef = pipe._conditions([FOREST, BEACH], guidance=PLAIN, **inputs)
    assert coef == [1.0]
    assert tuple(cond.shape) == (2, pipe.condition_encoder.length, 16)
    with transformer_batches(pipe) as batches:
        draw(pipe, [FOREST, BEACH], guidance=PLAIN, **inputs)
    assert batches == [2] * STEPS


def test_spec_guidance_adds_the_unconditional_branch(pipe):
    inputs = conditions([FOREST])
    guided = {**PLAIN, "spec": 2.0}
    cond, coef = pipe._conditions([FOREST], guidance=guided, **inputs)
    # e0 + 2 (e1 - e0) + (e2 - e1) + (e3 - e2) = -e0 + e1 + e3
    assert coef == [-1.0, 1.0, 1.0]
    enc = pipe.condition_encoder
    with torch.no_grad():
        nothing = enc.norm(enc.null + enc.position)
    torch.testing.assert_close(cond[0], nothing)  # the first branch drops every condition
    with transformer_batches(pipe) as batches:
        out = draw(pipe, [FOREST], guidance=guided, **inputs)
    assert batches == [3] * STEPS
    assert not np.array_equal(out, draw(pipe, [FOREST], guidance=PLAIN, **inputs))


def test_coefficients_of_each_scale(pipe):
    inputs = conditions([FOREST])
    cases = {
        (1.0, 1.0, 3.0): [-2.0, 3.0],  # spec+identity, all three
        (2.0, 2.0, 2.0): [-1.0, 2.0],  # nothing, all three
        (1.5, 1.0, 1.0): [-0.5, 0.5, 1.0],
        (0.0, 0.0, 0.0): [1.0],  # nothing alone
    }
    for (spec, identity, tokens), expected in cases.items():
        guidance = {"spec": spec, "identity": identity, "tokens": tokens}
        cond, coef = pipe._conditions([FOREST], guidance=guidance, **inputs)
        assert coef == pytest.approx(expected), guidance
        assert len(cond) == len(expected)
    assert set(BRANCHES) == set(PLAIN)


def test_spec_alone_uses_only_spec_branches(pipe):
    """No tokens, no identities: a new character's portrait, guided on the spec only."""
    heavy = {"spec": 1.0, "identity": 5.0, "tokens": 5.0}
    assert pipe._conditions([FOREST], None, None, heavy)[1] == [1.0]
    assert pipe._conditions([FOREST], None, None, {**heavy, "spec": 3.0})[1] == [-2.0, 3.0]
    with transformer_batches(pipe) as batches:
        image = draw(pipe, KeyframeSpec.portrait(MARA), guidance=heavy)
    assert batches == [1] * STEPS
    assert image.shape == (1, 16, 16, 3)


# -- 6. output types --------------------------------------------------------------------


def test_output_types(pipe):
    specs = [FOREST, BEACH]
    arrays = draw(pipe, specs, output_type="np")
    assert arrays.dtype == np.uint8 and arrays.shape == (2, 16, 16, 3)
    images = draw(pipe, specs, output_type="pil")
    assert len(images) == 2 and all(isinstance(i, PIL.Image.Image) for i in images)
    assert images[0].size == (16, 16) and np.array_equal(np.asarray(images[1]), arrays[1])
    pixels = draw(pipe, specs, output_type="pt")
    assert pixels.dtype == torch.float32 and tuple(pixels.shape) == (2, 3, 16, 16)
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    as_uint8 = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(as_uint8, arrays)
    (single,) = pipe(FOREST, num_inference_steps=1, return_dict=False)
    assert single.shape == (1, 16, 16, 3)


# -- 7. spec layout ---------------------------------------------------------------------


def test_spec_indices_layout():
    row = spec_indices(BEACH, slots=3)
    assert row.dtype == torch.long
    # location beach (2nd) -> 2, night (3rd) -> 3, wide (1st) -> 1, static (1st) -> 1
    scene = [2, 3, 1, 1]
    # mara: present, pointed (3rd shape), red (1st colour), accessory and pattern unknown, wave
    mara = [1, 3, 1, 0, 0, ACTIONS.index("wave") + 1]
    ben = [1, 0, 0, TRAITS["accessory"].index("hat") + 1, 0, 0]  # hat; no action
    empty = [0] * 6
    assert row.tolist() == scene + mara + ben + empty
    assert ACTIONS.index("wave") + 1 == 6 and TRAITS["accessory"].index("hat") + 1 == 2
    # characters beyond the slots are left out
    assert spec_indices(BEACH, slots=1).tolist() == scene + mara
    assert spec_indices(KeyframeSpec("forest"), slots=2).tolist() == [1, 1, 2, 1] + [0] * 12


# -- 8. condition encoder ---------------------------------------------------------------


def test_dropped_tokens_are_the_null_vectors_whatever_the_tokens():
    torch.manual_seed(0)
    enc = ConditionEncoder(token_count=2, token_dim=4, identity_dim=8, slots=2, width=16).eval()
    spec = torch.stack([spec_indices(BEACH, 2), spec_indices(FOREST, 2)])
    identities = torch.randn(2, 2, 8)
    yes, no = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    have = torch.ones(2, 2, dtype=torch.bool)
    with torch.no_grad():
        null = enc.norm(enc.null + enc.position)  # (L, width)
        a = enc(torch.randn(2, 2, 4), identities, spec, no, have, yes)
        b = enc(100 * torch.randn(2, 2, 4), identities, spec, no, have, yes)
        c = enc(None, identities, spec, yes, have, yes)  # no tokens at all: dropped
        kept = enc(torch.randn(2, 2, 4), identities, spec, yes, have, yes)
    assert torch.equal(a, b) and torch.equal(a, c)
    torch.testing.assert_close(a[:, :2], null[None, :2].expand(2, -1, -1))
    assert not torch.allclose(kept[:, :2], a[:, :2])
    torch.testing.assert_close(kept[:, 2:], a[:, 2:])  # the other positions don't move
    # FOREST has one character: its second identity and character slots are null
    torch.testing.assert_close(a[1, 2 + 1], null[2 + 1])
    torch.testing.assert_close(a[1, 2 + 2 + 4 + 1], null[2 + 2 + 4 + 1])
    assert not torch.allclose(a[0, 2 + 1], null[2 + 1])


# -- 9. shipped weights -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_keyframe_pipeline()


@pytest.fixture(scope="module")
def identity_encoder():
    return load_identity_encoder()


def test_shipped_models_have_the_documented_sizes(shipped, identity_encoder):
    assert isinstance(shipped, KeyframePipeline)
    assert shipped.resolution == 64
    assert shipped.token_shape == (2, 32)
    assert shipped.identity_dim == 64
    assert shipped.transformer.dtype == torch.float32
    assert identity_encoder.config.dim == 64
    assert not identity_encoder.training


def test_shipped_weights_are_small():
    mb = 1 << 20
    folders = sorted(p for p in ROOT.glob("*/weights") if p.is_dir())
    assert {p.parent.name for p in folders} == {"renderer", "planner", "evaluation"}
    for folder in folders:
        files = sorted(folder.rglob("*.safetensors"))
        assert files, folder
        for path in files:
            assert path.stat().st_size <= 16 * mb, path
    total = sum(path.stat().st_size for f in folders for path in f.rglob("*") if path.is_file())
    assert total <= 40 * mb


def storyworld():
    """A three-character screenplay drawn by the storyworld: its shots, truths and cast."""
    screenplay = OfflineWriter().write(
        Brief("a red fox, a blue robot and a green frog in the forest by day", seed=0, shots=10)
    )
    cast = cast_identities(screenplay.characters)
    renderer = WorldRenderer(WorldConfig(max_frames=1))
    shots = {
        shot.id: (scene, shot, renderer.render_shot(screenplay, scene, shot, cast))
        for scene, shot in screenplay.shots()
    }
    return shots, cast


def test_shipped_pipeline_reconstructs_a_storyworld_keyframe(shipped, identity_encoder):
    shots, cast = storyworld()
    looks = {cid: identity.to_dict() for cid, identity in cast.items()}
    portraits = identity_encoder.embed([portrait(identity, 64) for identity in cast.values()])
    embeddings = dict(zip(cast, portraits, strict=True))
    specs, truths = [], []
    for shot_id in ("s01-02", "s02-03"):  # forest, fox + robot; desert, robot close-up
        scene, shot, truth = shots[shot_id]
        specs.append(KeyframeSpec.from_shot(scene, shot, looks))
        truths.append(truth.frames[0])
    truths = np.stack(truths)
    tokens = shipped.encode(truths)  # (2, 2, 32)
    random_tokens = F.layer_norm(  # the tokenizer's scale: zero mean, unit variance per token
        torch.randn(1, 2, 32, generator=torch.Generator().manual_seed(0)), (32,)
    )
    # keyframe 0's spec and cast each time; tokens: its own, random, the desert close-up's
    images = shipped(
        [specs[0]] * 3,
        tokens=torch.cat([tokens[:1], random_tokens, tokens[1:]]),
        identities=[embeddings] * 3,
        num_inference_steps=16,
        generator=torch.Generator().manual_seed(0),
    ).images
    error = np.abs(images.astype(np.float32) - truths[0].astype(np.float32)).mean((1, 2, 3))
    own, from_random, other = error  # about 18, 28 and 49 grey levels on a CPU
    assert own < 0.8 * from_random, error
    assert own < 0.5 * other, error


def test_shipped_identity_encoder_matches_crops_to_portraits(identity_encoder):
    shots, cast = storyworld()
    names = list(cast)
    portraits = identity_encoder.embed([portrait(cast[cid], 64) for cid in names])  # (3, 64)
    checked = set()
    for shot_id in ("s01-02", "s01-04"):  # fox + robot, fox + frog, all in wide shots
        _, _, truth = shots[shot_id]
        visible = truth.labels["frames"][0]
        assert len(visible) == 2
        frames = torch.from_numpy(truth.frames[:1]).expand(len(visible), -1, -1, -1)
        boxes = torch.tensor([v["box"] for v in visible])
        with torch.no_grad():
            crops = identity_encoder(crop_boxes(frames, boxes, identity_encoder.config.resolution))
        for v, crop in zip(visible, crops, strict=True):
            a = names.index(v["id"])
            to_crop = float(portraits[a] @ crop)
            for b in set(range(len(names))) - {a}:
                assert to_crop > float(portraits[a] @ portraits[b]), (v["id"], names[b])
                assert to_crop > float(portraits[b] @ crop), (v["id"], names[b])
            checked.add(v["id"])
    assert checked == set(names)


def test_parse_guidance():
    from reelsmith.renderer.keyframes.pipeline import parse_guidance

    assert parse_guidance("") == {}
    assert parse_guidance("spec=2, identity=3") == {"spec": 2.0, "identity": 3.0}
    with pytest.raises(ValueError, match="'style=2'"):
        parse_guidance("style=2")
    with pytest.raises(ValueError, match="'spec=x'"):
        parse_guidance("spec=x")
