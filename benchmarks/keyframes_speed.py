"""Keyframe decoding speed: one keyframe on the CPU, batch throughput on a GPU.

    python benchmarks/keyframes_speed.py                       # CPU, one keyframe at a time
    python benchmarks/keyframes_speed.py --device cuda --batch 64 256 1024

Times the shipped `KeyframePipeline` at its default resolution and step count, with tokens
(reconstruction: one branch) and without (spec + identities, with the guidance given: one
branch per condition whose coefficient is not zero). On a GPU it reports keyframes/s, the
model's FLOPs per keyframe (counted by torch's FLOP counter over one denoising step, times the
steps; the tokenizer is not part of decoding) and the achieved fraction of the GPU's peak dense
bf16/fp16 tensor throughput (`--peak-tflops`, 989 for an H100/H200 SXM).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from reelsmith.renderer.keyframes.pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    load_keyframe_pipeline,
    parse_guidance,
)
from reelsmith.schema.conditioning import CharacterSpec, KeyframeSpec

SPEC = KeyframeSpec(
    "forest",
    "day",
    "medium",
    "static",
    (
        CharacterSpec("mara", {"shape": "round", "colour": "red"}, "wave"),
        CharacterSpec("ode", {"colour": "blue", "accessory": "hat"}, "idle"),
    ),
)


def run(pipe, b, tokens, guidance, steps, seed=0):
    ids = [
        {
            "mara": torch.nn.functional.normalize(torch.randn(64), dim=0),
            "ode": torch.nn.functional.normalize(torch.randn(64), dim=0),
        }
    ] * b
    gens = [torch.Generator(pipe.device).manual_seed(seed + i) for i in range(b)]
    return pipe(
        [SPEC] * b,
        tokens=tokens,
        identities=ids,
        guidance=guidance,
        num_inference_steps=steps,
        generator=gens,
    )


def timed(fn, repeats: int, sync) -> list[float]:
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance", default="", help="no-token guidance, e.g. spec=2,identity=2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument(
        "--candidates",
        type=int,
        default=0,
        help="also time the built-in keyframer drawing one keyframe (with tokens) from 1 and "
        "from this many candidates, the identity check keeping one (the product's path)",
    )
    args = parser.parse_args()
    pipe = load_keyframe_pipeline(args.pipeline, args.device)
    dtype = getattr(torch, args.dtype)
    if dtype != torch.float32:
        pipe.transformer.to(dtype)
        pipe.condition_encoder.to(dtype)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    guidance = parse_guidance(args.guidance)
    k, d = pipe.token_shape
    report = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu x{torch.get_num_threads()}",
        "dtype": args.dtype,
        "steps": args.steps,
        "resolution": pipe.resolution,
        "guidance_no_tokens": guidance,
        "runs": [],
    }
    # FLOPs of one denoising step at batch 1 and one branch
    with FlopCounterMode(display=False) as counter:
        x = torch.randn(1, 3, pipe.resolution, pipe.resolution, device=args.device, dtype=dtype)
        cond = torch.randn(1, pipe.condition_encoder.length, 128, device=args.device, dtype=dtype)
        with torch.no_grad():
            pipe.transformer(
                x,
                encoder_hidden_states=cond,
                timestep=torch.tensor([500], device=args.device),
                added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            )
    step_flops = counter.get_total_flops()
    report["transformer_gflops_per_step"] = step_flops / 1e9
    for mode in ("tokens", "no_tokens"):
        for b in args.batch:
            tokens = torch.randn(b, k, d) if mode == "tokens" else None
            g = {} if mode == "tokens" else guidance
            one = None if tokens is None else tokens[:1]
            ids = [{"mara": torch.zeros(64), "ode": torch.zeros(64)}]
            branches = len(pipe._conditions([SPEC], one, ids, {**DEFAULT_GUIDANCE, **g})[1])
            times = timed(
                lambda b=b, tokens=tokens, g=g: run(pipe, b, tokens, g, args.steps),
                args.repeats,
                sync,
            )
            best = min(times)
            flops = step_flops * args.steps * branches * b
            row = {
                "mode": mode,
                "batch": b,
                "branches": branches,
                "seconds_median": statistics.median(times),
                "seconds_best": best,
                "keyframes_per_s": b / statistics.median(times),
                "gflops_per_keyframe": step_flops * args.steps * branches / 1e9,
            }
            if cuda:
                row["achieved_tflops"] = flops / statistics.median(times) / 1e12
                row["fraction_of_peak"] = row["achieved_tflops"] / args.peak_tflops
            report["runs"].append(row)
            print(json.dumps(row), flush=True)
    if args.candidates:
        for n in sorted({1, args.candidates}):
            row = time_keyframer(pipe, n, args.steps, args.repeats, sync, args.device)
            report["runs"].append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(report, indent=1))


def time_keyframer(pipe, candidates: int, steps: int, repeats: int, sync, device: str) -> dict:
    """One keyframe with tokens through `BuiltinKeyframer` (candidates + the identity check)."""
    from reelsmith.renderer.keyframes.builtin import BuiltinKeyframer
    from reelsmith.renderer.keyframes.keyframer import IdentityReference

    keyframer = BuiltinKeyframer(pipe, steps=steps, candidates=candidates, device=device)
    width = pipe.condition_encoder.config.identity_dim
    refs = {
        c.id: IdentityReference(
            embeddings={keyframer.encoder: torch.nn.functional.normalize(torch.randn(width), dim=0)}
        )
        for c in SPEC.characters
    }
    tokens = torch.randn(1, *pipe.token_shape)
    times = timed(lambda: keyframer.draw([SPEC], [refs], [0], tokens), repeats, sync)
    return {
        "mode": "keyframer",
        "candidates": candidates,
        "batch": 1,
        "seconds_median": statistics.median(times),
        "seconds_best": min(times),
    }


if __name__ == "__main__":
    main()
