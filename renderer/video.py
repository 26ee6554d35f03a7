"""Reading and writing H.264 mp4 files with PyAV.

Writes are atomic (a temporary file in the same folder, then a rename), so a crash never
leaves a half-written video where a finished one is expected.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import av
import numpy as np

from reelsmith.errors import InputError


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int,
    upscale: int = 1,
    crf: int = 18,
) -> Path:
    """Encode frames (T, H, W, 3) uint8 as H.264 (yuv420p) at `fps`.

    Args:
        path: Output file.
        frames: RGB frames; H and W times `upscale` must be even.
        fps: Frames per second.
        upscale: Integer nearest-neighbour enlargement for viewing small frames.
        crf: x264 quality, 0 (lossless luma) to 51; 18 looks lossless.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mp4", dir=path.parent)
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # deterministic output: one thread, no timing-dependent decisions
            stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
            stream.codec_context.thread_count = 1
            for image in frames:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_mp4(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode a video into RGB frames (T, H, W, 3) uint8 and its frame rate."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise InputError(f"{path}: not a readable video ({exc})") from None
    if not frames:
        raise InputError(f"{path}: the video has no frames")
    return np.stack(frames), fps
