"""Loading a built-in diffusers pipeline from a `save_pretrained` folder, quietly."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from reelsmith.numerics import settle


def load_quietly(cls: type[DiffusionPipeline], folder: Path, device: str) -> DiffusionPipeline:
    """`cls.from_pretrained(folder)` in float32 on `device`, with no loading bar and the
    pipeline's own progress bar off (callers report progress their own way)."""
    from diffusers.utils import logging as diffusers_logging

    settle()
    shown = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # no "Loading pipeline components" bar
    try:
        pipe = cls.from_pretrained(folder, dtype=torch.float32)
    finally:
        if shown:
            diffusers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
