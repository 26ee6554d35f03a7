"""How fast the built-in shot renderer draws video, and how much of the chip it uses.

    python benchmarks/shots_speed.py [--motion DIR] [--device cuda] [--seconds 4]
        [--dtype tf32] [--max-batch 1024] [--json PATH]

A "shot" here is `--seconds` of video (default 4 s: 32 frames at 8 fps, 4 clips of 8 frames,
each `--steps` denoising steps at batch 1 + one decode), rendered from a held-out storyworld
keyframe by `BuiltinShotRenderer` (the shipped model by default), the whole product path:
conditions, sampling loop, flow decode, retime.

- CPU (batch 1): seconds of compute per second of video, at torch's thread count
  (`--threads` to set it; say OMP_NUM_THREADS=1 for one core). Where the pipeline has a
  segmenter, batch 1 is measured again with layered decoding off, in the same run
  (`layered_time_ratio`: layered time over flat time).
- CUDA: shots/s at batch 1 and for every power-of-two batch up to `--max-batch` (shots drawn
  together, `batch_size` = that many clips per pipeline call), the best of them; the model
  FLOPs of one shot (`torch.utils.flop_counter.FlopCounterMode`: matmuls, convolutions and
  attention; warping and elementwise work are not counted) and the achieved fraction of the
  chip's dense peak at the precision the models ran in: `--dtype fp32` (CUDA cores, H100/H200
  SXM 67 TFLOP/s), `tf32` (float32 weights, TF32 tensor-core matmuls, 495 TFLOP/s; the
  default, as `load_motion_pipeline` gives float32) or `bf16` (weights cast to bfloat16,
  989 TFLOP/s). `--peak-tflops` for another chip.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from reporting import print_report
from torch.utils.flop_counter import FlopCounterMode

from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.renderer.identity.encoder import ENCODER, load_identity_encoder
from reelsmith.renderer.shots.builtin import BuiltinShotRenderer
from reelsmith.renderer.shots.motion_pipeline import DEFAULT_STEPS
from reelsmith.renderer.shots.protocol import ShotRequest
from reelsmith.schema.looks import cast_identities
from reelsmith.world.dataset import random_brief
from reelsmith.world.render import WorldConfig, WorldRenderer, portrait

FPS = 8
# dense TFLOP/s of an H100 SXM (an H200 has the same tensor cores), by the precision run in
PEAK_TFLOPS = {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}
CHIPS_WITH_THAT_PEAK = ("H100", "H200")


def held_out_request(seconds: float, seed: int) -> ShotRequest:
    """A shot of a held-out screenplay with characters, `seconds` long, from its ground-truth
    keyframe, with its characters' identity embeddings (canonical portraits)."""
    renderer = WorldRenderer(WorldConfig(resolution=64, fps=FPS, seed=seed, max_frames=1))
    screenplay = OfflineWriter().write(random_brief(random.Random(f"{seed}/speed"), 4))
    identities = cast_identities(screenplay.characters)
    encoder = load_identity_encoder()
    for scene, shot in screenplay.shots():
        if shot.characters:
            keyframe = renderer.render_shot(screenplay, scene, shot, identities).frames[0]
            embeddings = encoder.embed([portrait(identities[c], 64) for c in shot.characters])
            return ShotRequest.from_shot(
                shot.model_copy(update={"duration": seconds}),
                keyframe,
                fps=FPS,
                seed=seed,
                identities={
                    c: {ENCODER: e} for c, e in zip(shot.characters, embeddings, strict=True)
                },
            )
    raise ValueError(f"seed {seed}: the screenplay has no shot with characters")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def shots_per_second(renderer, request, batch: int, device: str, min_seconds: float) -> float:
    """Shots/s drawing `batch` shots together (after one warm-up call), over >= min_seconds."""
    renderer.batch_size = batch
    requests = [replace(request, seed=request.seed + i) for i in range(batch)]
    renderer.render(requests)  # warm-up: kernels chosen, memory allocated
    sync(device)
    calls, started = 0, time.perf_counter()
    while True:
        renderer.render(requests)
        calls += 1
        sync(device)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return calls * batch / elapsed


def flops_per_shot(renderer, request) -> int:
    renderer.batch_size = 1
    with FlopCounterMode(display=False) as counter:
        renderer.render([request])
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--motion", type=Path, help="motion pipeline folder (default: shipped)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=4.0, help="video per shot")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--dtype", choices=tuple(PEAK_TFLOPS), default="tf32", help="CUDA only")
    parser.add_argument("--max-batch", type=int, default=1024, help="CUDA batch sweep's top")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--peak-tflops", type=float, help="the chip's dense peak at --dtype")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    parser.add_argument("--seed", type=int, default=9300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    torch.backends.cuda.matmul.allow_tf32 = args.dtype == "tf32"
    torch.backends.cudnn.allow_tf32 = args.dtype == "tf32"

    # 1. the renderer and one held-out shot
    renderer = BuiltinShotRenderer.from_pretrained(args.motion, args.device, steps=args.steps)
    if cuda and args.dtype == "bf16":
        renderer.pipe.to(dtype=torch.bfloat16)
    request = held_out_request(args.seconds, args.seed)
    report: dict = {
        "motion": str(args.motion or "shipped"),
        "device": torch.cuda.get_device_name(args.device) if cuda else "cpu",
        "precision": args.dtype if cuda else "fp32",
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "shot_seconds": args.seconds,
        "shot_frames": request.frames,
        "clips_per_shot": -(-request.frames // renderer.native_frames),
    }

    # 2. FLOPs of one shot (the same at any batch: every clip is its own sample)
    report["gflops_per_shot"] = round(flops_per_shot(renderer, request) / 1e9, 3)

    # 3. batch 1; on CUDA, the batch sweep
    one = shots_per_second(renderer, request, 1, args.device, args.min_seconds)
    report["batch_1"] = {
        "shots_per_second": round(one, 3),
        "seconds_per_video_second": round(1 / (one * args.seconds), 4),
    }
    if renderer.pipe.segmenter is not None:  # the same shots decoded flat, side by side
        renderer.layered = False
        flat = shots_per_second(renderer, request, 1, args.device, args.min_seconds)
        renderer.layered = True
        report["batch_1_unlayered"] = {
            "shots_per_second": round(flat, 3),
            "seconds_per_video_second": round(1 / (flat * args.seconds), 4),
        }
        report["layered_time_ratio"] = round(flat / one, 3)
    if cuda:
        sweep, batch = {}, 1
        while batch <= args.max_batch:
            try:
                sweep[batch] = round(
                    shots_per_second(renderer, request, batch, args.device, args.min_seconds), 2
                )
            except torch.OutOfMemoryError:
                break
            print(f"batch {batch}: {sweep[batch]} shots/s", flush=True)
            batch *= 2
        best = max(sweep, key=sweep.get)
        report["sweep_shots_per_second"] = sweep
        report["best"] = {
            "batch": best,
            "shots_per_second": sweep[best],
            "video_seconds_per_second": round(sweep[best] * args.seconds, 1),
        }
        peak = args.peak_tflops
        name = report["device"]
        if peak is None and any(chip in name for chip in CHIPS_WITH_THAT_PEAK):
            peak = PEAK_TFLOPS[args.dtype]
        report["peak_tflops"] = peak
        if peak:
            for key, rate in (("batch_1", one), ("best", sweep[best])):
                achieved = report["gflops_per_shot"] * 1e9 * rate
                report[key]["achieved_tflops"] = round(achieved / 1e12, 3)
                report[key]["fraction_of_peak"] = round(achieved / (peak * 1e12), 5)
    print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
