"""`BuiltinShotRenderer`: the `ShotRenderer` over the built-in shot model, `MotionPipeline`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reelsmith.renderer.shots.motion_pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    MotionPipeline,
    MotionPipelineOutput,
    load_motion_pipeline,
)
from reelsmith.renderer.shots.protocol import (
    Progress,
    ShotRequest,
    at_model,
    check_requests,
    clip_seed,
    from_model,
    identity_embeddings,
)


class BuiltinShotRenderer:
    """The `ShotRenderer` over a `MotionPipeline`.

    A shot is rendered at the model's size and frame rate over the request's time span, as
    clips of `native_frames` frames, then retimed and resized back to the request's. Every clip
    warps the shot's own keyframe: clip k > 0 draws the frames right after clip k - 1, with its
    last motion latent as context, so nothing is re-encoded from a generated frame and the
    characters cannot drift however long the shot is. Clips of different shots are drawn
    together (all first clips, then all second clips, ...) in batches of `batch_size`; clip k
    of a shot seeded s uses `clip_seed(s, k)`, so a shot is the same whatever is rendered with
    it. A shot's first `slots` characters (in the order of its actions, then its identities)
    are the model's; the others move only as the keyframe's pixels around them do.

    Args:
        pipe: A loaded `MotionPipeline`.
        steps: Denoising steps per clip.
        guidance_scale: Guidance over the motion condition (1.0: one branch).
        layered: Move each character as one rigid layer where the pipeline has a segmenter.
        batch_size: The most clips per pipeline call.
        name: The backend's name in logs and errors.
    """

    def __init__(
        self,
        pipe: MotionPipeline,
        *,
        steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        layered: bool = True,
        batch_size: int = 8,
        name: str = "motion",
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps {steps} must be at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be at least 1")
        self.pipe = pipe
        self.steps, self.guidance_scale, self.batch_size = steps, guidance_scale, batch_size
        self.layered = layered
        self.name = name
        self.native_frames = pipe.native_frames
        self.fps = pipe.fps
        self.calls = 0  # pipeline calls so far
        pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str = "cpu", **kwargs
    ) -> BuiltinShotRenderer:
        """`load_motion_pipeline(path, device)` wrapped; kwargs go to the constructor."""
        return cls(load_motion_pipeline(path, device), **kwargs)

    def render(
        self, requests: Sequence[ShotRequest], progress: Progress | None = None
    ) -> list[np.ndarray]:
        """One shot per request, uint8 (request.frames, H, W, 3) at its keyframe's size."""
        # 1. check inputs
        requests = check_requests(requests)
        for request in requests:
            if request.start is not None:
                raise ValueError(
                    f"shot {request.shot_id!r}: {self.name} renders whole shots from their "
                    "keyframe and extends long ones itself; a start frame is not taken"
                )

        # 2. each shot at the model's size and frame rate
        shots = [at_model(request, (self.pipe.resolution,) * 2, self.fps) for request in requests]

        # 3. clip rounds: clip k of every shot still short of frames, drawn together
        clips: list[list[np.ndarray]] = [[] for _ in shots]
        last: list[torch.Tensor | None] = [None] * len(shots)
        done = 0
        for k in range(max(-(-s.frames // self.native_frames) for s in shots)):
            todo = [i for i, s in enumerate(shots) if k * self.native_frames < s.frames]
            for j in range(0, len(todo), self.batch_size):
                batch = todo[j : j + self.batch_size]
                out = self._draw([shots[i] for i in batch], k, [last[i] for i in batch])
                for i, frames, motion in zip(batch, out.frames, out.motion_latents, strict=True):
                    clips[i].append(frames)
                    last[i] = motion[-1]
            for i in todo:
                if (k + 1) * self.native_frames >= shots[i].frames:
                    done += 1
                    if progress is not None:
                        progress(done, len(shots))

        # 4. exactly the frames asked for, at each request's frame rate and size
        return [
            from_model(np.concatenate(clips[i])[: shots[i].frames], request, shots[i])
            for i, request in enumerate(requests)
        ]

    def _draw(
        self, shots: list[ShotRequest], k: int, context: list[torch.Tensor | None]
    ) -> MotionPipelineOutput:
        characters = [
            list(dict.fromkeys([*s.actions, *identity_embeddings(s)]))[: self.pipe.slots]
            for s in shots
        ]
        self.calls += 1
        return self.pipe(
            np.stack([s.keyframe for s in shots]),
            cameras=[s.camera for s in shots],
            actions=[
                {c: s.actions[c] for c in chosen if c in s.actions}
                for s, chosen in zip(shots, characters, strict=True)
            ],
            identities=[
                {c: e for c, e in identity_embeddings(s).items() if c in chosen}
                for s, chosen in zip(shots, characters, strict=True)
            ],
            context=None if k == 0 else context,
            offsets=[k * self.native_frames] * len(shots),
            shot_frames=[s.frames for s in shots],
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            layered=self.layered,
            generator=[torch.Generator().manual_seed(clip_seed(int(s.seed), k)) for s in shots],
        )
