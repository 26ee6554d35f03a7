"""The shot model's training config (`python -m reelsmith.training motion`): the two models'
sizes, the two stages' settings, and the presets `motion` (CPU) and `motion-gpu` (the shipped
run, on one H100)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from reelsmith.errors import InputError
from reelsmith.renderer.shots.flow_autoencoder import FlowAutoencoder
from reelsmith.renderer.shots.motion_transformer import MotionTransformer
from reelsmith.training.config import Datasets, as_dict, from_dict
from reelsmith.world.dataset import DatasetSpec


@dataclass(frozen=True)
class FlowModelConfig:
    """`FlowAutoencoder`'s sizes: a frame as flow + visibility relative to its keyframe. The
    defaults of this section and the next are the constructors'; `MotionRunConfig`'s are the
    shipped sizes."""

    resolution: int = 64  # frame side in pixels (the data's resolution must match)
    latent_size: int = 16  # motion latent side: 16 x 16 cells of 4 x 4 pixels at 64
    width: int = 16  # channels of the first conv block (widening to 4x)
    flow_scale: float = 8.0  # pixels of flow per latent unit
    visibility_bound: float = 4.0  # the visibility latent's logit range
    sampling: str = "bilinear"  # how it warps without gradients (training: always bilinear)


@dataclass(frozen=True)
class MotionModelConfig:
    """`MotionTransformer`'s sizes (its latent mean and scale come from the data)."""

    resolution: int = 64  # must be the flow autoencoder's
    latent_size: int = 16  # must be the flow autoencoder's
    patch_size: int = 2  # latent cells per patch side
    frames: int = 8  # T frames per window
    fps: int = 8  # frames per second the windows are drawn at
    width: int = 128  # transformer width
    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP width over `width`
    attention: str = "full"  # "full" or "factorised" (space, then time)
    identity_dim: int = 64  # the identity encoder's embedding width
    slots: int = 4  # character slots of a spec (`spec_indices`)


@dataclass(frozen=True)
class MotionModelsConfig:
    """The two models of a `MotionPipeline`."""

    flow: FlowModelConfig = FlowModelConfig()  # stage A's model
    motion: MotionModelConfig = MotionModelConfig()  # stage B's model


@dataclass(frozen=True)
class FlowStageConfig:
    """Stage A: the flow autoencoder on (keyframe, frame) pairs, by reconstruction."""

    steps: int = 6000  # most steps; the cosine decays over steps or max_seconds, the nearer
    batch: int = 16  # frame pairs per step
    lr: float = 0.001  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW's
    warmup: int = 100  # steps of linear warmup
    max_seconds: float = 600.0  # most seconds of training (0: no limit)
    smoothness: float = 0.02  # weight of the flow's smoothness term
    visibility: float = 0.01  # weight of the push towards "visible" (warp rather than paint)
    character_weight: float = 4.0  # the characters' pixels weigh 1 + this in the L1 loss
    flip: bool = True  # random horizontal flips
    log_every: int = 100  # steps between log lines


@dataclass(frozen=True)
class MotionStageConfig:
    """Stage B: the motion transformer's v-prediction on windows of motion latents."""

    steps: int = 8000  # most steps; the cosine decays over steps or max_seconds, the nearer
    batch: int = 16  # windows per step
    lr: float = 0.0005  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW's
    warmup: int = 200  # steps of linear warmup
    clip_grad: float = 1.0  # gradient norm clip
    ema: float = 0.998  # most decay of the saved EMA copy
    max_seconds: float = 900.0  # most seconds of training (0: no limit)
    first_clip_fraction: float = 0.3  # share of windows that start a shot, without context
    drop_motion: float = 0.1  # P(camera and actions dropped together): guidance
    drop_identity: float = 0.1  # P(every identity of a window is dropped)
    drop_identity_slot: float = 0.1  # P(one slot's identity is dropped)
    drop_looks: float = 0.5  # P(one slot's looks are dropped)
    identity_noise: float = 0.05  # Gaussian noise on the identity embeddings (renormalised)
    log_every: int = 100  # steps between log lines


@dataclass(frozen=True)
class MotionEvalConfig:
    """The held-out numbers of both stages."""

    pairs_per_clip: int = 4  # stage A: frames per held-out clip compared with the truth
    steps: int = 10  # stage B: sampling steps of the held-out first clips
    seed: int = 0  # stage B: the held-out noise and timesteps


@dataclass(frozen=True)
class MotionTrainConfig:
    """Both stages of the run and their held-out numbers."""

    seed: int = 0  # stage A's draws (stage B's: seed + 1) and the initial weights
    flow: FlowStageConfig = FlowStageConfig()
    motion: MotionStageConfig = MotionStageConfig()
    eval: MotionEvalConfig = MotionEvalConfig()
    freeze_flow: bool = False  # with --init: keep its flow autoencoder (stage A skipped)
    note: str = ""  # free text kept with the run's config (read by nothing)


@dataclass(frozen=True)
class MotionRunConfig:
    """One shot-model run: its clips datasets, both models' sizes and both stages."""

    data: Datasets = Datasets(
        train=DatasetSpec(
            kind="clips", count=3000, seed=41, clip_frames=16, long_shots=0.25, shard_size=250
        ),
        held_out=DatasetSpec(
            kind="clips", count=128, seed=7741, clip_frames=16, long_shots=0.25, shard_size=128
        ),
    )
    model: MotionModelsConfig = MotionModelsConfig(
        flow=FlowModelConfig(sampling="nearest"), motion=MotionModelConfig(patch_size=4, width=96)
    )
    train: MotionTrainConfig = MotionTrainConfig()


def _gpu() -> MotionRunConfig:
    """The shipped run on one H100: more clips, bigger batches, 150 s + 330 s of training."""
    cpu = MotionRunConfig()
    flow = replace(cpu.train.flow, steps=100_000, batch=64, max_seconds=150.0, log_every=500)
    motion = replace(
        cpu.train.motion,
        steps=100_000,
        batch=256,
        lr=0.001,
        warmup=300,
        max_seconds=330.0,
        log_every=500,
    )
    return replace(
        cpu,
        data=replace(cpu.data, train=replace(cpu.data.train, count=8000)),
        train=replace(cpu.train, flow=flow, motion=motion),
    )


PRESETS = {
    "motion": MotionRunConfig(),  # on a CPU in well under an hour
    "motion-gpu": _gpu(),  # the shipped run
}


def sizes_of(pipe, folder: Path) -> MotionModelsConfig:
    """The sizes of a saved `MotionPipeline`'s two models (what `--init` trains on with)."""

    def public(model, *leave_out: str) -> dict:  # constructor arguments, not bookkeeping
        return {
            k: v for k, v in model.config.items() if not k.startswith("_") and k not in leave_out
        }

    sizes = {
        "flow": public(pipe.flow_autoencoder),
        "motion": public(pipe.motion_transformer, "latent_mean", "latent_scale"),
    }
    try:
        return from_dict(MotionModelsConfig, sizes)
    except InputError as exc:
        raise InputError(f"--init {folder}: {exc}") from None


def check_config(config: MotionRunConfig, identity_dim: int) -> None:
    """Raise InputError naming the first thing in `config` that cannot be trained."""
    try:
        flow = FlowAutoencoder(**as_dict(config.model.flow))
        motion = MotionTransformer(**as_dict(config.model.motion))
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad motion model config: {exc}") from None
    for key in ("resolution", "latent_size"):
        if flow.config[key] != motion.config[key]:
            raise InputError(
                f"model.flow.{key} is {flow.config[key]} but model.motion.{key} is "
                f"{motion.config[key]}"
            )
    if motion.config.identity_dim != identity_dim:
        raise InputError(
            f"the identity encoder makes {identity_dim}-d embeddings but "
            f"model.motion.identity_dim is {motion.config.identity_dim}"
        )
    for name in ("train", "held_out"):
        spec = getattr(config.data, name)
        if spec.kind != "clips":
            raise InputError(f"data.{name} must be a clips dataset")
        if spec.resolution != flow.config.resolution:
            raise InputError(
                f"data.{name}.resolution is {spec.resolution} but the model's is "
                f"{flow.config.resolution}"
            )
        if spec.clip_frames < motion.config.frames + 1:
            raise InputError(
                f"data.{name}.clip_frames must be at least model.motion.frames + 1 = "
                f"{motion.config.frames + 1} (a window after a context frame)"
            )
    t = config.train
    for section, key in (
        ("flow", "steps"), ("flow", "batch"), ("flow", "log_every"), ("motion", "steps"),
        ("motion", "batch"), ("motion", "log_every"), ("eval", "pairs_per_clip"),
    ):  # fmt: skip
        if getattr(getattr(t, section), key) < 1:
            raise InputError(f"train.{section}.{key} must be an integer >= 1")
