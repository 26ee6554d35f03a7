"""PretrainedKeyframer over tiny diffusers pipelines built in code; IP-Adapter from a file."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from safetensors.torch import save_file
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from reelsmith.errors import InputError
from reelsmith.renderer.keyframes.keyframer import IdentityReference
from reelsmith.renderer.keyframes.pretrained import PretrainedKeyframer
from reelsmith.renderer.keyframes.spec_prompts import prompt_of
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec

SIDE = 16  # pixels: UNet sample size 8 x VAE factor 2
MARA = CharacterSpec(id="mara", looks={"colour": "red"}, description="a red fox")
BEN = CharacterSpec(id="ben", description="a blue robot")
FOREST = KeyframeSpec(location="forest", characters=(MARA,), prompt="a red fox in a forest")
BOTH = KeyframeSpec(location="beach", characters=(MARA, BEN), prompt="a fox and a robot")
EMPTY = KeyframeSpec(location="desert", time="night", prompt="an empty desert at night")


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz,-":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def tokenizer(folder) -> CLIPTokenizer:
    return CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=16,
        pad_token="<|endoftext|>",
    )


def text_config(vocab_size: int, width: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_dim=width,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=SIDE,
    )


def image_encoder() -> CLIPVisionModelWithProjection:
    # 16 px, 8 px patches: 4 patches + CLS = 5 hidden states of width 8; 8-d image embeds
    config = CLIPVisionConfig(
        hidden_size=8,
        projection_dim=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=16,
        patch_size=8,
    )
    return CLIPVisionModelWithProjection(config)


def feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})


def scheduler() -> DDIMScheduler:
    return DDIMScheduler(steps_offset=1, clip_sample=False)


def sd_pipe(tokenizer_files, with_image_encoder: bool = True) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tok = tokenizer(tokenizer_files)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    return StableDiffusionPipeline(
        vae=vae(),
        text_encoder=CLIPTextModel(text_config(len(tok), 16)),
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler(),
        safety_checker=None,
        feature_extractor=feature_extractor(),
        image_encoder=image_encoder() if with_image_encoder else None,
        requires_safety_checker=False,
    )


def ip_adapter_state(unet: UNet2DConditionModel, clip_dim: int = 8) -> dict[str, torch.Tensor]:
    """A plain IP-Adapter checkpoint for `unet`, in the original (h94) key layout."""
    g = torch.Generator().manual_seed(1)
    cross = unet.config.cross_attention_dim
    state = {
        "image_proj.proj.weight": torch.randn(4 * cross, clip_dim, generator=g),
        "image_proj.proj.bias": torch.randn(4 * cross, generator=g),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    # one to_k_ip / to_v_ip per cross-attention, numbered 1, 3, 5, ... over all attentions
    widths = unet.config.block_out_channels
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            width = widths[-1]
        elif name.startswith("up_blocks"):
            width = list(reversed(widths))[int(name.split(".")[1])]
        else:
            width = widths[int(name.split(".")[1])]
        for proj in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{key_id}.{proj}.weight"] = torch.randn(width, cross, generator=g)
        key_id += 2
    return state


@pytest.fixture
def ip_folder(tokenizer_files, tmp_path):
    folder = tmp_path / "ip"
    folder.mkdir()
    save_file(ip_adapter_state(sd_pipe(tokenizer_files).unet), str(folder / "ip.safetensors"))
    return folder


@pytest.fixture
def keyframer(tokenizer_files, ip_folder) -> PretrainedKeyframer:
    pipe = sd_pipe(tokenizer_files)
    pipe.load_ip_adapter(str(ip_folder), subfolder="", weight_name="ip.safetensors")
    return PretrainedKeyframer(pipe, steps=2, guidance_scale=3.0, ip_adapter_scale=1.0)


# -- drawing ------------------------------------------------------------------------------


def test_draw_shape_dtype_and_per_keyframe_seeds(keyframer):
    refs = [{"mara": IdentityReference(image=image(0))}, {}]
    frames = keyframer.draw([FOREST, EMPTY], refs, seeds=[1, 2])
    assert frames.shape == (2, SIDE, SIDE, 3) and frames.dtype == np.uint8
    assert keyframer.resolution == SIDE
    np.testing.assert_array_equal(keyframer.draw([FOREST, EMPTY], refs, seeds=[1, 2]), frames)
    other = keyframer.draw([FOREST, EMPTY], refs, seeds=[3, 2])
    assert not np.array_equal(other[0], frames[0])
    np.testing.assert_array_equal(other[1], frames[1])  # a keyframe depends on its own seed only


def test_reference_image_steers_the_keyframe(keyframer):
    a = keyframer.draw([FOREST], [{"mara": IdentityReference(image=image(0))}], seeds=[5])
    b = keyframer.draw([FOREST], [{"mara": IdentityReference(image=image(1))}], seeds=[5])
    assert np.abs(a.astype(int) - b.astype(int)).max() > 2

    keyframer.ip_adapter_scale = 0.0
    a = keyframer.draw([FOREST], [{"mara": IdentityReference(image=image(0))}], seeds=[5])
    b = keyframer.draw([FOREST], [{"mara": IdentityReference(image=image(1))}], seeds=[5])
    np.testing.assert_array_equal(a, b)


def test_embedding_is_cached_and_reused_without_the_image(keyframer):
    key = keyframer.ip_adapter_key()
    assert key.startswith("ip-adapter:CLIPVisionModelWithProjection-8-")
    assert key.endswith(":image-embeds")
    reference = IdentityReference(image=image(0))
    first = keyframer.draw([FOREST], [{"mara": reference}], seeds=[7])
    assert reference.embeddings[key].shape == (8,)
    cached = IdentityReference(image=None, embeddings={key: reference.embeddings[key].clone()})
    np.testing.assert_array_equal(keyframer.draw([FOREST], [{"mara": cached}], seeds=[7]), first)

    with pytest.raises(ValueError, match="'mara'.*no image"):
        keyframer.draw([FOREST], [{"mara": IdentityReference()}], seeds=[7])
    wrong = IdentityReference(embeddings={key: torch.zeros(5)})
    with pytest.raises(ValueError, match=r"'mara'.*shape \(5,\)"):
        keyframer.draw([FOREST], [{"mara": wrong}], seeds=[7])


def test_several_characters_are_several_images_of_one_adapter(keyframer):
    mara, ben = IdentityReference(image=image(0)), IdentityReference(image=image(1))
    embeds, scale = keyframer._identity_embeds([("mara", mara), ("ben", ben)])
    assert embeds.shape == (2, 2, 8) and scale == 1.0  # (negative + positive, characters, D)
    assert not embeds[0].any() and embeds[1].any()
    embeds, scale = keyframer._identity_embeds([])
    assert embeds.shape == (2, 1, 8) and scale == 0.0

    a = keyframer.draw([BOTH], [{"mara": mara, "ben": ben}], seeds=[3])
    b = keyframer.draw([BOTH], [{"mara": mara, "ben": IdentityReference(image=image(2))}], [3])
    assert a.shape == (1, SIDE, SIDE, 3) and not np.array_equal(a, b)


def test_plus_adapter_reads_hidden_states(keyframer):
    # swap in a Plus resampler (4 queries, as the loaded attention processors expect)
    torch.manual_seed(0)
    plus = IPAdapterPlusImageProjection(
        embed_dims=8, output_dims=16, hidden_dims=64, depth=1, heads=1, num_queries=4
    )
    keyframer.pipe.unet.encoder_hid_proj.image_projection_layers[0] = plus
    key = keyframer.ip_adapter_key()
    assert key.endswith(":hidden-states")
    reference = IdentityReference(image=image(0))
    a = keyframer.draw([BOTH, EMPTY], [{"mara": reference, "ben": reference}, {}], seeds=[1, 2])
    assert a.shape == (2, SIDE, SIDE, 3)
    assert reference.embeddings[key].shape == (5, 8)  # 4 patches + CLS, width 8
    b = keyframer.draw([FOREST], [{"mara": IdentityReference(image=image(1))}], seeds=[1])
    c = keyframer.draw([FOREST], [{"mara": reference}], seeds=[1])
    assert not np.array_equal(b, c)


def test_input_errors(keyframer):
    with pytest.raises(ValueError, match="'ben'"):
        keyframer.draw([BOTH], [{"mara": IdentityReference(image=image(0))}], seeds=[1])
    with pytest.raises(ValueError, match="tokens"):
        keyframer.draw([EMPTY], [{}], seeds=[1], tokens=torch.zeros(1, 2, 32))
    with pytest.raises(ValueError, match="2 seeds given for 1 keyframes"):
        keyframer.draw([EMPTY], [{}], seeds=[1, 2])
    with pytest.raises(ValueError, match="2 identity maps given for 1 keyframes"):
        keyframer.draw([EMPTY], [{}, {}], seeds=[1])


def test_without_ip_adapter_identities_are_ignored_with_one_warning(tokenizer_files, caplog):
    keyframer = PretrainedKeyframer(sd_pipe(tokenizer_files), steps=2, guidance_scale=3.0)
    assert keyframer.ip_adapter_key() is None
    with caplog.at_level(logging.WARNING, logger="reelsmith.renderer.keyframes.pretrained"):
        a = keyframer.draw([FOREST], [{"mara": IdentityReference(image=image(0))}], seeds=[4])
        b = keyframer.draw([FOREST], [{"mara": IdentityReference(image=image(1))}], seeds=[4])
    np.testing.assert_array_equal(a, b)
    assert len([r for r in caplog.records if "no IP-Adapter" in r.getMessage()]) == 1
    with pytest.raises(ValueError, match="'mara'"):  # references are still required
        keyframer.draw([FOREST], [{}], seeds=[4])


def test_portrait(keyframer):
    portrait = keyframer.portrait(MARA, seed=3)
    assert portrait.shape == (SIDE, SIDE, 3) and portrait.dtype == np.uint8
    np.testing.assert_array_equal(keyframer.portrait(MARA, seed=3), portrait)
    assert not np.array_equal(keyframer.portrait(MARA, seed=4), portrait)


def test_keyframes_without_characters_and_portraits_are_text_only(tokenizer_files, ip_folder):
    pipe = sd_pipe(tokenizer_files)
    keyframer = PretrainedKeyframer(pipe, steps=2, guidance_scale=3.0, ip_adapter_scale=1.0)
    text_only = keyframer.draw([EMPTY], [{}], seeds=[6]), keyframer.portrait(BEN, seed=6)
    pipe.load_ip_adapter(str(ip_folder), subfolder="", weight_name="ip.safetensors")
    assert keyframer.ip_adapter_key() is not None
    np.testing.assert_array_equal(keyframer.draw([EMPTY], [{}], seeds=[6]), text_only[0])
    np.testing.assert_array_equal(keyframer.portrait(BEN, seed=6), text_only[1])


def test_prompt_of():
    assert prompt_of(FOREST) == "a red fox in a forest"
    walker = CharacterSpec(
        id="kit", looks={"colour": "red", "shape": "pointed"}, action="walk-left"
    )
    spec = KeyframeSpec(location="forest", time="night", size="wide", characters=(walker, BEN))
    assert prompt_of(spec) == (
        "wide shot of a red pointed character walking left and a blue robot in the forest, at night"
    )
    assert prompt_of(KeyframeSpec(location="beach")) == "medium shot in the beach, in daylight"


# -- loading ------------------------------------------------------------------------------


def test_from_pretrained_loads_a_saved_pipeline_and_adapter(tokenizer_files, ip_folder, tmp_path):
    sd_pipe(tokenizer_files, with_image_encoder=False).save_pretrained(tmp_path / "pipe")
    image_encoder().save_pretrained(ip_folder / "image_encoder")  # where h94 keeps it
    keyframer = PretrainedKeyframer.from_pretrained(
        str(tmp_path / "pipe"),
        ip_adapter=str(ip_folder),
        ip_adapter_subfolder="",
        ip_adapter_weight_name="ip.safetensors",
        steps=2,
    )
    assert isinstance(keyframer.pipe, StableDiffusionPipeline)
    assert keyframer.resolution == SIDE and keyframer.ip_adapter_key() is not None
    reference = IdentityReference(image=image(0))
    frames = keyframer.draw([FOREST, EMPTY], [{"mara": reference}, {}], seeds=[1, 2])
    assert frames.shape == (2, SIDE, SIDE, 3) and frames.dtype == np.uint8
    assert keyframer.ip_adapter_key() in reference.embeddings

    # the key names the encoder's weights, not where they were loaded from
    again = PretrainedKeyframer.from_pretrained(
        str(tmp_path / "pipe"),
        ip_adapter=str(ip_folder),
        ip_adapter_subfolder="",
        ip_adapter_weight_name="ip.safetensors",
        image_encoder=str(ip_folder / "image_encoder"),
        steps=2,
    )
    assert again.ip_adapter_key() == keyframer.ip_adapter_key()
    cached = {"mara": IdentityReference(embeddings=dict(reference.embeddings))}
    np.testing.assert_array_equal(again.draw([FOREST], [cached], seeds=[1]), frames[:1])

    plain = PretrainedKeyframer.from_pretrained(str(tmp_path / "pipe"), steps=2)
    assert plain.ip_adapter_key() is None
    assert plain.portrait(MARA, seed=1).shape == (SIDE, SIDE, 3)


def test_from_pretrained_errors(tmp_path, ip_folder, tokenizer_files):
    missing = tmp_path / "missing"
    with pytest.raises(InputError, match=str(missing)):
        PretrainedKeyframer.from_pretrained(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=str(tmp_path / "empty")) as error:
        PretrainedKeyframer.from_pretrained(str(tmp_path / "empty"))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"\.bin.*safetensors"):
        PretrainedKeyframer.from_pretrained(
            str(tmp_path / "empty"), ip_adapter="h94/IP-Adapter", ip_adapter_weight_name="a.bin"
        )
    sd_pipe(tokenizer_files).save_pretrained(tmp_path / "pipe")
    with pytest.raises(InputError, match=f"{tmp_path / 'pipe'}.*nope.safetensors"):
        PretrainedKeyframer.from_pretrained(
            str(tmp_path / "pipe"),
            ip_adapter=str(ip_folder),
            ip_adapter_subfolder="",
            ip_adapter_weight_name="nope.safetensors",
        )


# -- SDXL ---------------------------------------------------------------------------------


def sdxl_pipe(tokenizer_files) -> StableDiffusionXLPipeline:
    torch.manual_seed(0)
    tok = tokenizer(tokenizer_files)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,  # 8 + 8: both text encoders' hidden states
        attention_head_dim=4,
        norm_num_groups=4,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=6 * 4 + 8,  # 6 size numbers + pooled text
    )
    return StableDiffusionXLPipeline(
        vae=vae(),
        text_encoder=CLIPTextModel(text_config(len(tok), 8)),
        text_encoder_2=CLIPTextModelWithProjection(text_config(len(tok), 8)),
        tokenizer=tok,
        tokenizer_2=tokenizer(tokenizer_files),
        unet=unet,
        scheduler=scheduler(),
        image_encoder=image_encoder(),
        feature_extractor=feature_extractor(),
    )


def test_sdxl(tokenizer_files, tmp_path):
    pipe = sdxl_pipe(tokenizer_files)
    save_file(ip_adapter_state(pipe.unet), str(tmp_path / "ip.safetensors"))
    pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip.safetensors")
    keyframer = PretrainedKeyframer(pipe, steps=2, guidance_scale=3.0, ip_adapter_scale=1.0)
    assert keyframer.resolution == SIDE
    a = keyframer.draw([FOREST, EMPTY], [{"mara": IdentityReference(image=image(0))}, {}], [1, 2])
    b = keyframer.draw([FOREST, EMPTY], [{"mara": IdentityReference(image=image(1))}, {}], [1, 2])
    assert a.shape == (2, SIDE, SIDE, 3) and a.dtype == np.uint8
    assert not np.array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
