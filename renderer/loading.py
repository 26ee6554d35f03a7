"""Loading the renderer's models: the built-in ones from their `save_pretrained` folders, quietly,
and pretrained diffusers pipelines from the Hub or a folder, each failure as one `InputError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch
from diffusers import DiffusionPipeline
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import logging as diffusers_logging
from huggingface_hub.errors import EntryNotFoundError
from safetensors import SafetensorError

from reelsmith.errors import InputError
from reelsmith.numerics import settle

# what a failed load raises: missing files or repos, bad configs, bad weights
LOAD_FAILURES = (OSError, ValueError, KeyError, RuntimeError, EntryNotFoundError, SafetensorError)
M = TypeVar("M", bound=ModelMixin)


# -- the built-in models --------------------------------------------------------------------


def check_model_folder(folder: Path, what: str, marker: str, hint: str = "") -> None:
    """Raise `InputError` when `folder` lacks `marker`, the file a saved `what` holds."""
    if not (folder / marker).is_file():
        raise InputError(f"{folder}: no {what} there ({marker} is missing){hint}")


def load_model(cls: type[M], path: str | Path | None, default: Path, what: str) -> M:
    """`cls` from a `save_pretrained` folder (`default`, the shipped one, when None), in float32
    and eval mode; `InputError` naming the folder when it holds no model."""
    folder = Path(path) if path is not None else default
    check_model_folder(folder, what, "config.json")
    settle()
    return cls.from_pretrained(folder, dtype=torch.float32).eval()


def load_quietly(cls: type[DiffusionPipeline], folder: Path, device: str) -> DiffusionPipeline:
    """`cls.from_pretrained(folder)` in float32 on `device`, with no loading bar and the
    pipeline's own progress bar off (callers report progress their own way)."""
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


# -- pretrained pipelines -------------------------------------------------------------------


def local_model(model: str, expected: str) -> str:
    """A model given as a path ('/', '.', '~') with `~` expanded, or a Hub id as it is;
    `InputError` when the path is not a folder (of what was `expected`, e.g. "a text-to-image
    pipeline")."""
    if not model.startswith(("/", ".", "~")):
        return model
    model = str(Path(model).expanduser())
    if not Path(model).is_dir():
        raise InputError(f"{model}: no such folder ({expected} was expected)")
    return model


def own_arguments(cls: type, kwargs: dict) -> dict:
    """Take the keyword arguments of `cls`'s constructor out of `kwargs` (the rest go to
    `from_pretrained`)."""
    return {k: kwargs.pop(k) for k in inspect.signature(cls).parameters if k in kwargs}


def dtype_argument(torch_dtype: torch.dtype | None, key: str = "torch_dtype") -> dict:
    """`{key: torch_dtype}`, or nothing to keep the checkpoint's dtype."""
    return {} if torch_dtype is None else {key: torch_dtype}


def hub_subfolder(path: str) -> tuple[str, str]:
    """Split a Hub path "owner/name/sub/folder" into ("owner/name", "sub/folder").

    A local folder, or a path with no subfolder, comes back whole with subfolder "".
    """
    if path.count("/") < 2 or Path(path).expanduser().is_dir():
        return path, ""
    owner, name, subfolder = path.split("/", 2)
    return f"{owner}/{name}", subfolder


@contextmanager
def load_failure(message: str) -> Iterator[None]:
    """Turn a failed load (`LOAD_FAILURES`) in the block into one `InputError`: the message,
    then the first line of the failure's (its class name when it has none)."""
    try:
        yield
    except LOAD_FAILURES as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{message}: {reason}") from e
