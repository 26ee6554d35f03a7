"""The judges: small networks trained on storyworld ground truth, used only to measure.

- `FrameJudge`: one frame -> who is on screen (a CenterNet-style dense head on a 16x16 grid:
  centre heatmap, box size, and each character's shape / colour / accessory / pattern) and
  where and when (location, time of day, shot size, from a global head).
- `IdentityEmbedder`: a character crop -> a unit-length identity embedding.
- `ClipEncoder`: a clip of frames -> an embedding, for a Fréchet distance between sets of clips.

No model of the product uses a judge or its weights (as a loss, a filter or a reranker).
Weights are safetensors files in `evaluation/weights/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reelsmith.numerics import settle
from reelsmith.renderer.identity.encoder import crop_boxes
from reelsmith.schema import vocabulary
from reelsmith.schema.looks import ACCESSORIES, COLOURS, PATTERNS, SHAPES, Identity
from reelsmith.schema.screenplay import CameraMove, ShotSize, TimeOfDay

WEIGHTS = Path(__file__).parent / "weights"
LOCATIONS = tuple(vocabulary.LOCATIONS)
TIMES = tuple(t.value for t in TimeOfDay)
SIZES = tuple(s.value for s in ShotSize)
CAMERAS = tuple(c.value for c in CameraMove)
TRAITS = {"shape": SHAPES, "colour": COLOURS, "accessory": ACCESSORIES, "pattern": PATTERNS}
GRID = 16  # detection grid of a 64x64 frame: one cell per 4x4 pixels
CROP = 32  # identity crops are resized to CROP x CROP


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()
    )


def to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


class FrameJudge(nn.Module):
    """Who is on screen, and where and when, from one 64x64 frame.

    `threshold`: a heatmap peak above it is a character (`judge_frames`' default). It is
    calibrated on ground truth alone (`benchmarks/judge_threshold.py`, seed 7100, which no
    benchmark measures a model on): of 0.2, 0.25, ..., 0.45, the one with the fewest errors
    (characters missed or misread plus detections of nobody in the shot), the higher on a tie.
    """

    threshold = 0.25

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv(3, w // 2), conv(w // 2, w, 2), conv(w, w))  # 32x32
        self.down = nn.Sequential(conv(w, 2 * w, 2), conv(2 * w, 2 * w))  # 16x16
        self.context = nn.Sequential(  # widen the receptive field to a whole character
            nn.Conv2d(2 * w, 2 * w, 3, 1, 2, dilation=2, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.SiLU(),
            conv(2 * w, 2 * w),
        )
        n_attr = sum(len(v) for v in TRAITS.values())
        self.dense_head = nn.Conv2d(2 * w, 1 + 2 + n_attr, 1)  # heat, (w, h), traits
        self.global_body = nn.Sequential(conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w, 2))  # 4x4
        self.global_head = nn.Linear(4 * w, len(LOCATIONS) + len(TIMES) + len(SIZES))
        nn.init.constant_(self.dense_head.bias[:1], -4.0)  # few cells hold a centre

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, 64, 64) -> dense (B, C, 16, 16), global logits (B, 14)."""
        h = self.context(self.down(self.stem(x)))
        dense = self.dense_head(h)
        g = self.global_body(h).mean(dim=(2, 3))  # (B, 4w)
        return dense, self.global_head(g)

    @staticmethod
    def split_dense(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """dense (B, C, G, G) -> heat logits (B, G, G), size (B, 2, G, G), trait logits."""
        heat, size = dense[:, 0], dense[:, 1:3]
        traits, start = [], 3
        for values in TRAITS.values():
            traits.append(dense[:, start : start + len(values)])
            start += len(values)
        return heat, size, traits

    @staticmethod
    def split_global(logits: torch.Tensor) -> list[torch.Tensor]:
        a, b = len(LOCATIONS), len(LOCATIONS) + len(TIMES)
        return [logits[:, :a], logits[:, a:b], logits[:, b:]]


@dataclass
class Detection:
    identity: Identity
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass
class FrameVerdict:
    detections: list[Detection]
    location: str
    time: str
    size: str


@torch.no_grad()
def judge_frames(
    model: FrameJudge, frames: torch.Tensor, threshold: float | None = None, batch: int = 256
) -> list[FrameVerdict]:
    """Run the frame judge on uint8 frames (N, 64, 64, 3); a heatmap peak above `threshold`
    (the judge's own, `FrameJudge.threshold`, when None) is a character."""
    threshold = model.threshold if threshold is None else threshold
    model.eval()
    device = next(model.parameters()).device
    verdicts = []
    for chunk in frames.split(batch):
        dense, logits = model(to_input(chunk.to(device)))
        dense, logits = dense.float().cpu(), logits.float().cpu()
        heat_logits, size, traits = FrameJudge.split_dense(dense)
        heat = heat_logits.sigmoid()  # (B, G, G)
        peaks = heat == F.max_pool2d(heat[:, None], 3, 1, 1)[:, 0]
        location, time, shot = (z.argmax(1) for z in FrameJudge.split_global(logits))
        trait_ids = [t.argmax(1) for t in traits]  # each (B, G, G)
        cell = 64 / GRID
        for b in range(len(chunk)):
            found = []
            for r, c in (peaks[b] & (heat[b] > threshold)).nonzero().tolist():
                values = [
                    names[int(t[b, r, c])]
                    for names, t in zip(TRAITS.values(), trait_ids, strict=True)
                ]
                w, h = (size[b, :, r, c].float() * 64).tolist()
                cx, cy = (c + 0.5) * cell, (r + 0.5) * cell
                found.append(
                    Detection(
                        Identity(*values),
                        float(heat[b, r, c]),
                        (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                    )
                )
            verdicts.append(
                FrameVerdict(found, LOCATIONS[location[b]], TIMES[time[b]], SIZES[shot[b]])
            )
    return verdicts


class IdentityEmbedder(nn.Module):
    """A character crop (3, 32, 32) -> a 64-d unit vector; trained as a cosine classifier."""

    def __init__(self, width: int = 48, dim: int = 64, classes: int = 1080) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv(3, w),
            conv(w, w, 2),
            conv(w, 2 * w),
            conv(2 * w, 2 * w, 2),
            conv(2 * w, 4 * w, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.project = nn.Linear(4 * w, dim)
        self.classes = nn.Parameter(torch.randn(classes, dim) * 0.1)  # training only
        self.scale = 16.0

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """crops (B, 3, 32, 32) in [-1, 1] -> embeddings (B, dim), unit length."""
        return F.normalize(self.project(self.body(crops)), dim=-1)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.scale * embeddings @ F.normalize(self.classes, dim=-1).T


def crops(frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Square crops around boxes: uint8 frames (B, H, W, 3), boxes (B, 4) as x0, y0, x1, y1
    in pixels -> (B, 3, CROP, CROP) in [-1, 1]."""
    return crop_boxes(frames, boxes, CROP)


class ClipEncoder(nn.Module):
    """Frames (B, T, 3, 64, 64) -> a 128-d clip embedding, trained to tell place, time, shot
    size, camera move and the lead character's action apart."""

    def __init__(self, width: int = 48, dim: int = 128) -> None:
        super().__init__()
        w = width
        self.frame = nn.Sequential(conv(3, w, 2), conv(w, 2 * w, 2), conv(2 * w, 2 * w, 2))
        self.time = nn.Sequential(  # (B, C, T, 8, 8)
            nn.Conv3d(2 * w, 4 * w, 3, (1, 2, 2), 1),
            nn.SiLU(),
            nn.Conv3d(4 * w, 4 * w, 3, (2, 2, 2), 1),
            nn.SiLU(),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )
        self.project = nn.Linear(4 * w, dim)
        n_out = len(LOCATIONS) + len(TIMES) + len(SIZES) + len(CAMERAS) + 12
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(dim, n_out))  # training only

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        f = self.frame(clips.flatten(0, 1))  # (B*T, C, 8, 8)
        f = f.unflatten(0, (b, t)).transpose(1, 2)  # (B, C, T, 8, 8)
        return self.project(self.time(f))


JUDGES = {"frame": FrameJudge, "identity": IdentityEmbedder, "clip": ClipEncoder}


def save_judge(model: nn.Module, name: str, folder: Path = WEIGHTS) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    # half precision halves the files; the judges' numbers don't move (float32 at load)
    state = {
        k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path), metadata={"judge": name})
    return path


def load_judge(name: str, folder: Path = WEIGHTS) -> nn.Module:
    """A trained judge from safetensors, in eval mode, on the CPU."""
    from safetensors.torch import load_file

    from reelsmith.errors import InputError

    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise InputError(f"{path}: the {name} judge's weights are missing")
    settle()
    model = JUDGES[name]()
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()
