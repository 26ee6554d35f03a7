"""Reading and writing H.264 mp4 files with PyAV.

Writes are atomic (a temporary file in the same folder, then a rename), so a crash never
leaves a half-written video where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
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
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Encode frames (T, H, W, 3) uint8 as H.264 (yuv420p) at `fps`.

    Args:
        path: Output file.
        frames: RGB frames; H and W times `upscale` must be even.
        fps: Frames per second.
        upscale: Integer nearest-neighbour enlargement for viewing small frames.
        crf: x264 quality, 0 (lossless luma) to 51; 18 looks lossless.
        metadata: Container tags, e.g. {"title": ..., "comment": ...}.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    with Mp4Writer(path, fps, (height, width), upscale, crf, metadata) as writer:
        for image in frames:
            writer.write(image)
    return writer.path


class Mp4Writer:
    """Encode frames one at a time into an H.264 mp4, atomically.

    The file appears at `path` only when the `with` block ends without an exception; a
    long movie never has to be held in memory at once.

    Example:
        with Mp4Writer("movie.mp4", fps=8, size=(64, 64), upscale=4) as writer:
            for frame in frames:  # each (64, 64, 3) uint8
                writer.write(frame)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: int,
        size: tuple[int, int],
        upscale: int = 1,
        crf: int = 18,
        metadata: Mapping[str, str] | None = None,
    ):
        """Args: `size` is the frames' (height, width) before `upscale`; see `write_mp4`."""
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.upscale = int(upscale)
        if self.upscale < 1:
            raise ValueError(f"upscale must be a positive integer, got {upscale}")
        height, width = (n * self.upscale for n in self.size)
        if height % 2 or width % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}")
        self.fps, self.crf, self.metadata = fps, crf, dict(metadata or {})
        self.frames_written = 0
        self._tmp: str | None = None
        self._container = self._stream = None

    def __enter__(self) -> Mp4Writer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".mp4", dir=self.path.parent
        )
        os.fchmod(fd, 0o644)
        os.close(fd)
        try:
            self._container = av.open(self._tmp, mode="w", format="mp4")
            self._container.metadata.update(self.metadata)
            stream = self._container.add_stream("libx264", rate=self.fps)
            stream.height, stream.width = (n * self.upscale for n in self.size)
            stream.pix_fmt = "yuv420p"
            # deterministic output: one thread, no timing-dependent decisions
            stream.options = {"crf": str(self.crf), "preset": "medium", "threads": "1"}
            stream.codec_context.thread_count = 1
            self._stream = stream
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, image: np.ndarray) -> None:
        """Append one RGB frame (H, W, 3) uint8 of the writer's native size."""
        image = np.asarray(image)
        if image.shape != (*self.size, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"a frame must be {(*self.size, 3)} uint8, got {image.shape} {image.dtype}"
            )
        if self.upscale > 1:
            image = image.repeat(self.upscale, axis=0).repeat(self.upscale, axis=1)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        # convert to YUV here: the encoder's implicit conversion of small frames reads
        # uninitialised memory, so the same frames could give different files
        frame = frame.reformat(format="yuv420p")
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        if self._container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()
        Path(self._tmp).unlink(missing_ok=True)


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
