"""The steps the two built-in diffusers pipelines (`KeyframePipeline`, `MotionPipeline`) share:
their noise schedule, the checks of the sampling arguments, the initial noise, and the
denoising loop with classifier-free guidance over stacked condition branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

# both built-in models are trained on this schedule (v-prediction) and sampled with
# DPM-Solver++ 2M over it
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "solver_order": 2,
    "lower_order_final": True,
    "final_sigmas_type": "zero",
}
StepCallback = Callable | PipelineCallback | MultiPipelineCallbacks


def check_sampling(num_inference_steps, generator, batch: int) -> None:
    """Raise ValueError on a bad step count, or a generator list not one per keyframe."""
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(
            f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}"
        )
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"{len(generator)} generators given for {batch} keyframes")


def check_identity(i: int, who: str, embedding, identity_dim: int) -> None:
    """Raise ValueError when keyframe i's identity embedding of `who` is not (identity_dim,)."""
    shape = tuple(torch.as_tensor(embedding).shape)
    if shape != (identity_dim,):
        raise ValueError(
            f"keyframe {i}: identity of {who!r} has shape {shape}, expected ({identity_dim},)"
        )


def callback_inputs(
    pipe: DiffusionPipeline, callback: StepCallback | None, tensor_inputs: Sequence[str]
) -> Sequence[str]:
    """The tensors the step callback is given (a `PipelineCallback` names its own), checked
    against the pipeline's `_callback_tensor_inputs`."""
    if isinstance(callback, PipelineCallback | MultiPipelineCallbacks):
        tensor_inputs = callback.tensor_inputs
    for name in tensor_inputs:
        if name not in pipe._callback_tensor_inputs:
            raise ValueError(
                f"callback tensor input {name!r} is not one of {pipe._callback_tensor_inputs}"
            )
    return tensor_inputs


def initial_noise(
    shape: tuple[int, ...],
    latents: torch.Tensor | None,
    generator: torch.Generator | list[torch.Generator] | None,
    device: torch.device,
) -> torch.Tensor:
    """The caller's latents, checked against `shape`, else float32 noise from `generator`."""
    if latents is None:
        return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
    if tuple(latents.shape) != shape:
        raise ValueError(f"latents of shape {tuple(latents.shape)} should be {shape}")
    return latents


def denoise_guided(
    pipe: DiffusionPipeline,
    latents: torch.Tensor,
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    coef: Sequence[float],
    num_inference_steps: int,
    callback_on_step_end: Callable | None,
    callback_on_step_end_tensor_inputs: Sequence[str],
    device: torch.device,
) -> torch.Tensor:
    """The sampling loop: noise (B, ...) -> the scheduler's final sample on `device`.

    At each step `predict(x, timesteps)` gives the model's float32 output for the latents
    repeated once per branch (len(coef) * B rows, branch by branch); the guided prediction is
    the branches' sum weighted by `coef`. The step callback is called as
    fn(pipe, step, timestep, kwargs) and may return {"latents": ...} to replace the sample.
    """
    scheduler = pipe.scheduler
    n_branch, b = len(coef), len(latents)
    scheduler.set_timesteps(num_inference_steps, device=device)
    latents = latents.to(device, torch.float32) * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    ones = [1] * latents.ndim
    weights = torch.tensor(coef, device=device, dtype=torch.float32).view(n_branch, *ones)
    with pipe.progress_bar(total=len(timesteps)) as progress:
        for i, t in enumerate(timesteps):
            x = scheduler.scale_model_input(latents, t).repeat(n_branch, *ones[1:])
            step = torch.as_tensor(t, device=device).expand(len(x))
            pred = predict(x, step)  # (len(coef) * B, ...)
            pred = (pred.view(n_branch, b, *pred.shape[1:]) * weights).sum(0)
            latents = scheduler.step(pred, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                local = {"latents": latents}
                kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                out = callback_on_step_end(pipe, i, t, kwargs) or {}
                latents = out.get("latents", latents)
            progress.update()
    return latents
