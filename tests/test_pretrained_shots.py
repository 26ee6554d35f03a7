"""Shot requests, clip-by-clip extension, and PretrainedShotRenderer over tiny diffusers
image-to-video pipelines (SVD, CogVideoX, Wan, LTX) built in code."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    AutoencoderKLLTXVideo,
    AutoencoderKLTemporalDecoder,
    AutoencoderKLWan,
    CogVideoXImageToVideoPipeline,
    CogVideoXTransformer3DModel,
    DDIMScheduler,
    DDPMPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LTXImageToVideoPipeline,
    LTXVideoTransformer3DModel,
    StableVideoDiffusionPipeline,
    UNet2DModel,
    UNetSpatioTemporalConditionModel,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)
from diffusers.utils import is_ftfy_available
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from reelsmith.errors import InputError
from reelsmith.renderer.shots.pretrained import PretrainedShotRenderer, save_memory
from reelsmith.renderer.shots.pretrained_families import family_of
from reelsmith.renderer.shots.protocol import (
    ShotRequest,
    camera_words,
    clip_seed,
    extend_clip_by_clip,
    motion_level,
    motion_prompt,
    retime,
)
from reelsmith.schema.screenplay import Blocking, CameraMove, Shot

KEYFRAME_SIZE = (20, 24)  # not the models' size: frames are resized there and back
WORDS = "a the fox robot runs walks left right camera pans zooms in out static follows".split()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and much slower on busy cores with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def keyframe(seed: int, size: tuple[int, int] = KEYFRAME_SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def request(frames: int, seed: int = 1, fps: float = 8.0, **kw) -> ShotRequest:
    fields = {"keyframe": keyframe(0), "motion": "a fox runs", "camera": "pan-left", **kw}
    return ShotRequest(shot_id="s1", frames=frames, fps=fps, seed=seed, **fields)


# -- tiny components ----------------------------------------------------------------------


def t5_tokenizer() -> T5Tokenizer:
    """A unigram T5 tokenizer over a few words and the letters, built in code."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -1.0) for w in WORDS] + [
        (c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz,."
    ]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=16)


def t5_encoder(width: int = 32) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(t5_tokenizer()),
        d_model=width,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
    )
    return T5EncoderModel(config).eval()  # built models train: no dropout here


def clip_vision(width: int, image_size: int, patch_size: int) -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=width,
        projection_dim=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=image_size,
        patch_size=patch_size,
    )
    return CLIPVisionModelWithProjection(config)


def svd_pipe() -> StableVideoDiffusionPipeline:
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 32),  # its GroupNorms have 32 groups
        layers_per_block=1,
        sample_size=8,  # x VAE factor 2: 16 x 16 pixels
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=8,
        num_attention_heads=2,
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=3 * 4,  # fps, motion bucket, noise augmentation
        num_frames=5,
    )
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        interpolation_type="linear",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4
    )
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=clip_vision(8, 224, 56),  # the pipe resizes to 224 for CLIP
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=16, size=16),
    )


def cogvideox_pipe() -> CogVideoXImageToVideoPipeline:
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=2,  # x patch 2 x VAE factor 8 / 2: 16 pixels, fixed by learned positions
        sample_height=2,
        sample_frames=9,  # 3 latent frames
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return CogVideoXImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=vae,
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )


def wan_pipe() -> WanImageToVideoPipeline:
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,  # 16 noise + 16 image latents + 4 mask
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,
    )
    return WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_encoder=clip_vision(4, 16, 8),
        image_processor=CLIPImageProcessor(crop_size=16, size=16),
    )


def ltx_pipe() -> LTXImageToVideoPipeline:
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),  # 4x in space and time
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return LTXImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


# per family: the pipe, and what its tiny model needs (Wan and LTX have no size in config)
TINY = {
    "svd": (svd_pipe, {}),
    "cogvideox": (cogvideox_pipe, {}),
    "wan": (wan_pipe, {"size": (16, 16), "native_frames": 9}),
    "ltx": (ltx_pipe, {"size": (32, 32), "native_frames": 9}),
}
FAMILIES = [
    "svd",
    "cogvideox",
    pytest.param("wan", marks=pytest.mark.skipif(not is_ftfy_available(), reason="Wan needs ftfy")),
    "ltx",
]


def tiny_renderer(family: str, **kw) -> PretrainedShotRenderer:
    build, settings = TINY[family]
    call_kwargs = {} if family == "svd" else {"max_sequence_length": 16}
    return PretrainedShotRenderer(build(), steps=2, call_kwargs=call_kwargs, **{**settings, **kw})


# -- every family -------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_shots_have_the_requested_frames_size_and_seed(family):
    renderer = tiny_renderer(family)
    assert renderer.family.name == family and renderer.name == f"pretrained-{family}"
    native, fps = renderer.native_frames, renderer.fps
    long, short = native - 1, 3
    progress = []
    a, b = renderer.render(
        [request(long, seed=1, fps=fps), request(short, seed=2, fps=fps, keyframe=keyframe(1))],
        progress=lambda done, total: progress.append((done, total)),
    )
    assert a.shape == (long, *KEYFRAME_SIZE, 3) and a.dtype == np.uint8
    assert b.shape == (short, *KEYFRAME_SIZE, 3) and b.dtype == np.uint8
    assert progress == [(1, 2), (2, 2)] and renderer.calls == 2

    np.testing.assert_array_equal(renderer.render([request(long, seed=1, fps=fps)])[0], a)
    assert not np.array_equal(renderer.render([request(long, seed=3, fps=fps)])[0], a)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_long_shot_continues_from_the_last_frame_of_each_clip(family):
    renderer = tiny_renderer(family)
    native, fps = renderer.native_frames, renderer.fps
    size = renderer.render_size(KEYFRAME_SIZE)  # keyframe at the model's size: no resizing
    shot = request(native + 3, seed=5, fps=fps, keyframe=keyframe(0, size))
    [frames] = renderer.render([shot])
    assert frames.shape == (native + 3, *size, 3)
    assert renderer.calls == 2  # two clips

    # clip 1 is the shot cut to the model's length, with the shot's seed
    [first] = renderer.render([replace(shot, frames=native)])
    np.testing.assert_array_equal(frames[:native], first)
    # clip 2 starts from clip 1's last frame with the next clip seed; its first frame is dropped
    then = replace(shot, keyframe=frames[native - 1], frames=4, seed=clip_seed(5, 1))
    [second] = renderer.render([then])
    np.testing.assert_array_equal(frames[native:], second[1:])


@pytest.mark.parametrize("family", FAMILIES)
def test_family_arguments(family):
    renderer = tiny_renderer(family)
    clip = request(5, fps=renderer.fps)
    arguments = renderer.family.arguments(renderer, clip)
    if family == "svd":
        assert "prompt" not in arguments and arguments["fps"] == 7
        assert arguments["max_guidance_scale"] == 3.0 and arguments["min_guidance_scale"] == 1.0
        still = replace(clip, camera="static", actions={"mara": "idle"})
        assert renderer.family.arguments(renderer, still)["motion_bucket_id"] == 56
        assert arguments["motion_bucket_id"] == 136  # no actions: 0.4, panning: + 0.2
    else:
        assert arguments["prompt"] == "A fox runs. The camera pans left."
        assert arguments["negative_prompt"] and arguments["guidance_scale"] > 1
    if family == "ltx":
        assert arguments["frame_rate"] == 25.0 and "decode_timestep" not in arguments
        renderer.pipe.vae.register_to_config(timestep_conditioning=True)  # as LTX-Video 0.9.1+
        arguments = renderer.family.arguments(renderer, clip)
        assert arguments["decode_timestep"] == 0.05 and arguments["decode_noise_scale"] == 0.025
    if family == "cogvideox":
        assert arguments["max_sequence_length"] == 16


def test_frames_are_retimed_to_the_requested_fps():
    renderer = tiny_renderer("svd")  # renders at 7 fps
    [frames] = renderer.render([request(7, fps=14.0)])
    assert frames.shape[0] == 7 and renderer.calls == 1
    # 4 frames at 7 fps: each shown twice at 14 fps, the first once
    for i, j in ((1, 2), (3, 4), (5, 6)):
        np.testing.assert_array_equal(frames[i], frames[j])
    assert not np.array_equal(frames[2], frames[3])
    # and fewer frames at a lower rate: every other model frame
    [slow] = renderer.render([request(3, fps=3.5)])
    assert slow.shape[0] == 3


def test_render_sizes():
    svd = tiny_renderer("svd")
    assert svd.render_size((20, 24)) == (16, 16)  # area 16 x 16, multiples of 8
    assert svd.render_size((16, 64)) == (8, 32)
    assert tiny_renderer("svd", size=(24, 8)).render_size((20, 24)) == (24, 8)
    cog = tiny_renderer("cogvideox")
    assert cog.render_size((100, 30)) == (16, 16)  # learned positions: one size
    with pytest.raises(ValueError, match=r"renders at \(16, 16\) only"):
        tiny_renderer("cogvideox", size=(32, 16))
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_renderer("ltx", size=(16, 16))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="native_frames 8 .* 8k\\+1"):
        tiny_renderer("cogvideox", native_frames=8)
    with pytest.raises(ValueError, match="overlap 5"):
        tiny_renderer("svd", overlap=5)
    renderer = tiny_renderer("svd")
    with pytest.raises(ValueError, match="requests is empty"):
        renderer.render([])
    with pytest.raises(ValueError, match=r"requests\[0\] is a dict"):
        renderer.render([{"frames": 3}])


def test_family_is_found_from_the_class_or_named():
    pipe = svd_pipe()
    assert family_of(pipe).name == "svd" and family_of(pipe, "svd").name == "svd"
    with pytest.raises(InputError, match="unknown image-to-video family 'sora'"):
        family_of(pipe, "sora")
    with pytest.raises(InputError, match="StableVideoDiffusionPipeline is not a .*Wan"):
        family_of(pipe, "wan")
    with pytest.raises(InputError, match="DDPMPipeline is not one of the image-to-video pipelines"):
        PretrainedShotRenderer(ddpm_pipe())


def test_memory_options(caplog):
    cog = cogvideox_pipe()
    save_memory(cog, vae_tiling=True, vae_slicing=True)
    assert cog.vae.use_tiling and cog.vae.use_slicing
    with caplog.at_level(logging.WARNING, logger="reelsmith.renderer.shots.pretrained"):
        save_memory(svd_pipe(), vae_tiling=True)
    assert "AutoencoderKLTemporalDecoder has no VAE tiling" in caplog.text
    with pytest.raises(ValueError, match="accelerator"):
        save_memory(cog, cpu_offload=True)


@pytest.mark.gpu
def test_cpu_offload_renders_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    renderer = tiny_renderer("svd")
    save_memory(renderer.pipe, device="cuda", cpu_offload=True)
    [frames] = renderer.render([request(3, fps=renderer.fps)])
    assert frames.shape == (3, *KEYFRAME_SIZE, 3)


# -- loading ------------------------------------------------------------------------------


def ddpm_pipe() -> DDPMPipeline:
    unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
    )
    return DDPMPipeline(unet=unet, scheduler=DDIMScheduler())


def test_from_pretrained_loads_a_saved_pipeline(tmp_path):
    svd_pipe().save_pretrained(tmp_path / "svd")
    renderer = PretrainedShotRenderer.from_pretrained(str(tmp_path / "svd"), steps=2)
    assert isinstance(renderer.pipe, StableVideoDiffusionPipeline) and renderer.steps == 2
    [frames] = renderer.render([request(3, fps=renderer.fps)])
    assert frames.shape == (3, *KEYFRAME_SIZE, 3)
    named = PretrainedShotRenderer.from_pretrained(str(tmp_path / "svd"), family="svd", steps=2)
    np.testing.assert_array_equal(named.render([request(3, fps=renderer.fps)])[0], frames)


def test_from_pretrained_errors(tmp_path):
    def fails(match: str, model: str, **kw) -> None:
        with pytest.raises(InputError, match=match) as error:
            PretrainedShotRenderer.from_pretrained(model, **kw)
        assert "\n" not in str(error.value)

    fails("no such folder", str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    fails(f"{tmp_path / 'empty'}: cannot load", str(tmp_path / "empty"))
    ddpm_pipe().save_pretrained(tmp_path / "ddpm")
    fails("DDPMPipeline is not one of the image-to-video pipelines", str(tmp_path / "ddpm"))
    fails("unknown image-to-video family 'sora'", str(tmp_path / "ddpm"), family="sora")
    svd_pipe().save_pretrained(tmp_path / "svd")
    fails(f"{tmp_path / 'svd'}", str(tmp_path / "svd"), family="ltx")


# -- requests, prompts, clips -------------------------------------------------------------


def test_camera_words_and_motion_prompt():
    assert camera_words("static") == "static camera"
    assert camera_words(CameraMove.zoom_in) == "the camera slowly zooms in"
    with pytest.raises(ValueError, match="'tilt-up'.*pan-left"):
        camera_words("tilt-up")
    assert motion_prompt(request(3)) == "A fox runs. The camera pans left."
    blocking = request(3, motion="", camera="follow", actions={"mara": "walk-left", "ben": "wave"})
    assert motion_prompt(blocking) == (
        "Mara walks to the left, ben waves. The camera follows the action."
    )
    assert motion_prompt(request(3, motion="", camera="static")) == "Static camera."
    assert motion_level(replace(blocking, actions={"mara": "run"})) == 1.0
    assert motion_level(replace(blocking, camera="static", actions={})) == 0.4


def test_shot_request_checks_its_fields():
    with pytest.raises(ValueError, match="keyframe must be uint8"):
        request(3, keyframe=keyframe(0).astype(np.float32))
    with pytest.raises(ValueError, match="frames 0"):
        request(0)
    with pytest.raises(ValueError, match="fps 0"):
        request(3, fps=0)
    with pytest.raises(ValueError, match="'mara' has unknown action 'dance'"):
        request(3, actions={"mara": "dance"})
    with pytest.raises(ValueError, match="start frame has shape"):
        request(3, start=keyframe(0, (8, 8)))
    assert request(3).camera is CameraMove.pan_left
    np.testing.assert_array_equal(request(3, start=keyframe(2)).first_frame, keyframe(2))
    np.testing.assert_array_equal(request(3).first_frame, keyframe(0))


def test_shot_request_from_a_screenplay_shot():
    shot = Shot(
        id="s7",
        duration=2.0,
        camera="zoom-out",
        characters=["mara"],
        action="Mara jumps over the log.",
        blocking=[Blocking(character="mara", action="jump")],
    )
    made = ShotRequest.from_shot(shot, keyframe(0), fps=12, seed=9, identities={"mara": {}})
    assert (made.shot_id, made.frames, made.fps, made.seed) == ("s7", 24, 12, 9)
    assert motion_prompt(made) == "Mara jumps over the log. The camera slowly zooms out."
    assert made.actions == {"mara": "jump"} and made.identities == {"mara": {}}


def copy_then_noise(seeds: list[int]):
    """A clip renderer: the clip's first frame, then frames drawn from the clip's seed."""

    def render_one(clip: ShotRequest) -> np.ndarray:
        seeds.append(clip.seed)
        rng = np.random.default_rng(clip.seed)
        noise = rng.integers(0, 256, (clip.frames - 1, *clip.keyframe.shape), dtype=np.uint8)
        return np.concatenate([clip.first_frame[None], noise])

    return render_one


@pytest.mark.parametrize(("frames", "clips"), [(3, 1), (5, 1), (6, 2), (9, 2), (10, 3), (23, 6)])
def test_extend_clip_by_clip_gives_exact_frames_from_continuing_clips(frames, clips):
    seeds: list[int] = []
    shot = request(frames, seed=4, keyframe=keyframe(0, (4, 4)))
    out = extend_clip_by_clip(copy_then_noise(seeds), shot, native_frames=5, overlap=1)
    assert out.shape == (frames, 4, 4, 3) and out.dtype == np.uint8
    assert seeds == [clip_seed(4, k) for k in range(clips)] and seeds[0] == 4
    assert len(set(seeds)) == clips
    np.testing.assert_array_equal(out[0], shot.keyframe)
    # every clip after the first starts from the last frame of the one before, which is dropped
    for k in range(1, clips):
        boundary = 5 + 4 * (k - 1)
        assert not np.array_equal(out[boundary], out[boundary - 1])
    seeds_again: list[int] = []
    again = extend_clip_by_clip(copy_then_noise(seeds_again), shot, native_frames=5, overlap=1)
    np.testing.assert_array_equal(again, out)
    assert seeds_again == seeds


def test_extend_clip_by_clip_overlap_and_errors():
    seeds: list[int] = []
    shot = request(12, seed=4, keyframe=keyframe(0, (4, 4)))
    out = extend_clip_by_clip(copy_then_noise(seeds), shot, native_frames=6, overlap=2)
    assert out.shape[0] == 12 and len(seeds) == 3  # 6 + 4 + 2 new frames
    assert clip_seed(4, 1) != clip_seed(5, 1) and clip_seed(4, 1) == clip_seed(4, 1)
    with pytest.raises(ValueError, match="native_frames 1"):
        extend_clip_by_clip(copy_then_noise([]), shot, native_frames=1)
    with pytest.raises(ValueError, match="overlap 6"):
        extend_clip_by_clip(copy_then_noise([]), shot, native_frames=6, overlap=6)
    with pytest.raises(ValueError, match=r"a clip must be uint8 \(6, 4, 4, 3\)"):
        extend_clip_by_clip(lambda clip: np.zeros((2, 4, 4, 3), np.uint8), shot, native_frames=6)


def test_retime():
    frames = np.arange(10)[:, None, None, None].astype(np.uint8)
    assert retime(frames, 10.0, 5, 5.0)[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]
    assert retime(frames, 5.0, 4, 10.0)[:, 0, 0, 0].tolist() == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="do not reach"):
        retime(frames, 10.0, 6, 5.0)


# -- real weights -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.parametrize(
    "model",
    [
        "stabilityai/stable-video-diffusion-img2vid-xt",
        "THUDM/CogVideoX-5b-I2V",
        "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        "Lightricks/LTX-Video",
    ],
)
def test_real_pipelines(model):
    renderer = PretrainedShotRenderer.from_pretrained(
        model, torch_dtype=torch.bfloat16, device="cuda", cpu_offload=True, vae_tiling=True, steps=4
    )
    shot = request(renderer.native_frames + 8, fps=renderer.fps, keyframe=keyframe(0, (480, 640)))
    [frames] = renderer.render([shot])
    assert frames.shape == (shot.frames, 480, 640, 3) and renderer.calls == 2
