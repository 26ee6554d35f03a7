"""What every trainer shares: the run's options, its start (device, seed), its log and commit,
the learning-rate schedule, the EMA update, pixels, and saving in float16.

A run writes a `save_pretrained` folder with float16 safetensors plus `train_log.json` (the
config, the commit, the losses and held-out numbers) and `train.log` (`finish`). The same
commit, config and seed give the same data; on the CPU the same weights too, on a GPU the
training is only as deterministic as its kernels.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reelsmith.errors import InputError
from reelsmith.numerics import settle
from reelsmith.training.config import as_dict


@dataclass(frozen=True)
class RunOptions:
    """Where a run reads and writes, and on what; the command line's flags besides the config."""

    out: Path  # the trained model's folder, with train_log.json and train.log
    data: Path = Path("/tmp/reelsmith-data")  # datasets are built here once and reused
    identity: Path | None = None  # identity encoder (keyframes, motion, planner); None: shipped
    tokenizer: Path | None = None  # planner: the keyframe pipeline whose tokens it predicts
    init: Path | None = None  # keyframes, motion: continue it; segmenter: add to this pipeline
    workers: int = 8  # processes that build storyworld datasets
    device: str = "cpu"  # torch device to train on; "cuda" needs one that torch sees


class RunLog:
    """A training run's log: each line timestamped from the start, printed as it comes and
    kept for `train.log` (`lines`), and the commit of the code it started from (`commit`:
    taken at the start, so edits made while it runs do not mark it dirty)."""

    def __init__(self) -> None:
        self.started, self.lines = time.time(), []
        self.commit = commit()

    def __call__(self, message: str) -> None:
        line = f"[{self.seconds():7.1f}s] {message}"
        print(line, flush=True)
        self.lines.append(line)

    def seconds(self) -> float:
        return time.time() - self.started

    def write(self, folder: Path) -> None:
        (folder / "train.log").write_text("\n".join(self.lines) + "\n", "utf-8")


def commit(here: Path = Path(__file__).parent) -> str:
    """The checkout's commit, with "-dirty" when tracked files differ from it (the run's code is
    then not that commit's)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except OSError:
        return "unknown"
    return (head + "-dirty" * bool(dirty)) if head else "unknown"


def start_run(options: RunOptions, seed: int) -> tuple[torch.device, RunLog]:
    """The device (CUDA refused where torch sees none), MKL settled (`reelsmith.numerics`),
    TF32 on, torch seeded, the output folder made."""
    settle()
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {options.device}: torch sees no CUDA device here")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(seed)
    options.out.mkdir(parents=True, exist_ok=True)
    return device, RunLog()


def device_name(device: torch.device) -> str:
    """What train_log.json records as the device: the GPU's name, or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def run_record(config, log: RunLog, device: torch.device) -> dict:
    """What every train_log.json records of its run: the config, commit, seconds and device."""
    return {
        "config": as_dict(config),
        "commit": log.commit,
        "seconds": round(log.seconds(), 1),
        "device": device_name(device),
    }


def finish(folder: Path, record: dict, log: RunLog) -> None:
    """Write the run's `train_log.json` (`record`) and `train.log` into `folder`."""
    (folder / "train_log.json").write_text(json.dumps(record, indent=1), "utf-8")
    log.write(folder)


# -- optimisation -------------------------------------------------------------------------


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak` over `warmup` steps, then a cosine decay to 0 at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate to `lr` times its "scale" (1 where it has none)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("scale", 1.0)


@torch.no_grad()
def update_ema(ema: list[torch.Tensor], params: list[torch.Tensor], step: int, most: float) -> None:
    """Move the EMA copy `ema` towards `params` after `step`: decay (1 + step) / (10 + step),
    at most `most`, so the copy forgets its random start within the first few hundred steps."""
    decay = min(most, (1 + step) / (10 + step))
    torch._foreach_lerp_(ema, params, 1 - decay)


def kept(loss: torch.Tensor) -> torch.Tensor:
    """A step's loss to keep for the log, holding nothing else: a mean-reduced `F.mse_loss`
    is a view into its squared-error buffer's storage, so `detach()` alone would keep one
    batch-sized buffer alive per step (a leak that ran a 32 x 32 latent run out of memory)."""
    return loss.detach().clone()


def mean_of(losses: list[torch.Tensor]) -> float:
    """The mean of per-step loss tensors, read back once (no device sync per step)."""
    return float(torch.stack(losses).mean())


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


# -- saving -------------------------------------------------------------------------------


def save_half(model, folder: Path) -> None:
    """save_pretrained with float16 weights (halves the files; load casts back to float32)."""
    copy.deepcopy(model).to(torch.float16).save_pretrained(folder)


def save_pipeline_half(pipe, folder: Path) -> None:
    """A `MotionPipeline`'s `save_pretrained` with every model component in float16 on disk
    (the pipeline is moved to the CPU and halved; `load_motion_pipeline` casts back)."""
    pipe.to("cpu")
    for name in ("flow_autoencoder", "motion_transformer", "segmenter"):
        model = getattr(pipe, name, None)
        if model is not None:
            model.half()
    pipe.save_pretrained(folder)
