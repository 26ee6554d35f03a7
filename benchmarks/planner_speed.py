"""How fast the keyframe planner plans, and how its memory grows with the movie's length.

    python benchmarks/planner_speed.py [--planner DIR] [--shots 10,100,1000] [--json OUT]

On the CPU, one movie at a time (or `--batch` copies at once), greedy decoding (temperature 0),
one offline-writer screenplay per length with a cast of three (random identity embeddings),
built through `planner.planning.prepare` as the product builds it. Weights are random unless
`--planner` is given: speed and memory do not depend on them.

1. Speed: `KeyframePlanner.generate` (KV cache, window of W shots) against references that
   recompute the whole context without a cache at every step, through the same layers
   (`KeyframePlanner.decode`, its buffer emptied before every token):
   - `uncached_window`: the same context `generate` attends to (pinned prefix + the shots in
     its window, rebuilt at the same shots), re-encoded from scratch for every token; it plans
     the same tokens (the largest difference is printed), so the ratio is what the cache saves;
   - `uncached_window_transformers`: the same, through the transformers `LlamaModel` forward
     (as training runs it), for scale: at batch 1 its per-call bookkeeping dominates;
   - `uncached_movie`: no window, the whole movie so far re-encoded for every token (what a
     planner without a bounded context recomputes; different tokens past W shots, and past the
     model's `max_positions` the rotary positions go beyond what it was trained on: a timing
     reference only). At 1000 shots it runs only with `--movie-1000`.
   Runs alternate (cached, references, cached, ...) `--repeats` times; medians are reported.
2. Memory: the peak of the bytes torch's CPU allocator holds during one `generate`, above what
   was live before it, from the profiler's allocation records (`profile_memory=True`: every
   allocation with the allocator's running total). The planned tokens themselves
   (B x T x K x d floats, the result) grow with T; the peak without them is the working memory.
   `stream` hands each shot's tokens on as they are planned (as planning does when it draws
   keyframes shot by shot): its peak is what a caller that keeps no tokens holds.
3. CPU time: process CPU seconds per planned shot (of all movies) of each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path

import torch
import torch.nn.functional as F
from reporting import print_report
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from reelsmith.planner.brief import Brief
from reelsmith.planner.keyframe_planner import KeyframePlanner, PlannerConfig, load_keyframe_planner
from reelsmith.planner.planning import prepare
from reelsmith.planner.writers.offline import OfflineWriter
from reelsmith.schema.looks import cast_identities

PROMPT = (
    "Mara, a red pointed fox with a hat, Ode, a blue striped robot, and Pim, a round green "
    "frog with glasses, in the forest at dusk."
)


def movie_inputs(model: KeyframePlanner, shots: int, batch: int = 1) -> dict[str, torch.Tensor]:
    """`generate`'s inputs for one offline-writer movie of `shots` shots, `batch` times."""
    c = model.config
    screenplay = OfflineWriter().write(Brief(PROMPT, shots=shots, seed=shots))
    g = torch.Generator().manual_seed(0)
    cast = {
        cid: (F.normalize(torch.randn(c.identity_dim, generator=g), dim=0), ident.to_dict())
        for cid, ident in cast_identities(screenplay.characters).items()
    }
    movie = prepare(screenplay, cast, 0, c.slots, c.max_cast, c.identity_dim)
    rows = {
        "style": torch.zeros(1, dtype=torch.long),
        "cast": movie.cast[None],  # (1, C, D)
        "cast_mask": movie.cast_mask[None],
        "specs": movie.spec_rows[None],  # (1, T, 4 + 6S)
        "slot_cast": movie.slot_cast[None],  # (1, T, S)
    }
    return {name: x.expand(batch, *x.shape[1:]).contiguous() for name, x in rows.items()}


@torch.no_grad()
def generate_uncached(
    model: KeyframePlanner, inputs: dict, window: int | None = None, transformers: bool = False
) -> torch.Tensor:
    """Greedy planning with no KV cache: every token re-encodes its whole context.

    window: `generate`'s window (the same context, rebuilt at the same shots), or None for
    the whole movie so far. transformers: through `model.backbone`'s own forward rather than
    the layers `generate` calls. -> tokens (B, T, K, d).
    """
    k = model.config.token_count
    stride = None if window is None else model.stride_for(window)
    identities = model.cast_identities(inputs["cast"], inputs["cast_mask"])  # (B, C, D)
    prefix = model.embed_prefix(inputs["style"], identities)  # (B, P, H)
    specs, slot_cast = inputs["specs"], inputs["slot_cast"]
    finished: deque[torch.Tensor] = deque(maxlen=None if window is None else window - 1)
    context: list[torch.Tensor] | None = None  # the shots `generate`'s cache would hold
    held, planned = 0, []

    # one buffer for every step, emptied each time: every key and value is recomputed
    most = model.positions(inputs["cast"].shape[1], specs.shape[1])
    cache = model.new_cache(len(prefix), most, prefix)

    def last_hidden(parts: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(parts, 1)  # (B, n, H)
        if transformers:
            return model.backbone(inputs_embeds=x, use_cache=False).last_hidden_state[:, -1]
        cache.length = 0
        return model.decode(x, cache)

    for t in range(specs.shape[1]):
        spec = model.embed_specs(specs[:, t : t + 1], slot_cast[:, t : t + 1], identities)
        if window is None:
            context = list(finished)
        elif context is None:
            context, held = [], 1
        elif held == window:  # where `generate` rebuilds its cache: it keeps W - stride shots
            context = list(finished)[len(finished) - (window - stride) :]
            held = len(context) + 1
        else:
            context.append(finished[-1])
            held += 1
        parts = [prefix, *context, spec]
        h = last_hidden(parts)
        tokens = []
        for j in range(k):
            token = model.head.sample(h, temperature=0.0)  # (B, d)
            tokens.append(token)
            if j + 1 < k:
                parts.append(model._token_embed(token, j))
                h = last_hidden(parts)
        tokens = torch.stack(tokens, 1)  # (B, K, d)
        planned.append(tokens)
        finished.append(torch.cat([spec, model.embed_tokens(tokens[:, None])[:, 0]], 1))
    return torch.stack(planned, 1)


def timed(fn) -> tuple[object, float, float]:
    """-> (result, wall seconds, process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def peak_bytes(fn) -> int:
    """Peak bytes torch's CPU allocator held during fn(), above what was live before."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    peak, stack = 0, list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            peak = max(peak, node.extra_fields.total_allocated)
        stack.extend(node.children)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planner", type=Path, help="planner folder (default: random weights)")
    parser.add_argument("--shots", default="10,100,1000", help="movie lengths, comma-separated")
    parser.add_argument("--memory-shots", default="100,1000", help="lengths to profile memory at")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=1, help="movies planned at once")
    parser.add_argument("--movie-1000", action="store_true", help="uncached_movie at 1000 too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.planner:
        model = load_keyframe_planner(args.planner)
    else:
        model = KeyframePlanner(PlannerConfig()).eval()
    c = model.config
    report: dict = {
        "planner": str(args.planner or "random weights, default config"),
        "config": {"hidden": c.hidden, "layers": c.layers, "window": c.window, "K": c.token_count},
        "threads": args.threads,
        "batch": args.batch,
        "speed": {},
        "memory": {},
    }
    model.generate(**movie_inputs(model, 4), temperature=0.0)  # warm up

    # 1. speed: cached and the references, alternating
    for shots in [int(s) for s in args.shots.split(",")]:
        inputs = movie_inputs(model, shots, args.batch)
        runs = {
            "cached": lambda inputs=inputs: model.generate(**inputs, temperature=0.0).tokens,
            "uncached_window": lambda inputs=inputs: generate_uncached(model, inputs, c.window),
            "uncached_window_transformers": lambda inputs=inputs: generate_uncached(
                model, inputs, c.window, transformers=True
            ),
        }
        if shots < 1000 or args.movie_1000:
            runs["uncached_movie"] = lambda inputs=inputs: generate_uncached(model, inputs)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        outputs = {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                outputs[name], wall, cpu = timed(fn)
                times[name].append((wall, cpu))
        row = {}
        for name, samples in times.items():
            wall = statistics.median(w for w, _ in samples)
            cpu = statistics.median(p for _, p in samples)
            row[name] = {
                "seconds": round(wall, 4),
                "cpu_ms_per_shot": round(1000 * cpu / (shots * args.batch), 3),
            }
        for name in [n for n in runs if n != "cached"]:
            ratio = row[name]["seconds"] / row["cached"]["seconds"]
            diff = (outputs[name] - outputs["cached"]).abs().max()
            row[name].update(ratio_to_cached=round(ratio, 2), max_token_difference=float(diff))
        report["speed"][shots] = row
        print(f"{shots} shots: " + json.dumps(row), flush=True)

    # 2. memory: peak allocated bytes during one cached generate
    for shots in [int(s) for s in args.memory_shots.split(",")]:
        inputs = movie_inputs(model, shots, args.batch)
        peak = peak_bytes(lambda inputs=inputs: model.generate(**inputs, temperature=0.0))
        streamed = peak_bytes(  # each shot's tokens handed on (here: dropped) as it is planned
            lambda inputs=inputs: [None for _ in model.stream(**inputs, temperature=0.0)]
        )
        lengths = model.generate(**inputs, temperature=0.0).cache_lengths
        capacity = model.positions(inputs["cast"].shape[1], c.window)
        result = args.batch * shots * c.token_count * c.token_dim * 4  # planned tokens, float32
        report["memory"][shots] = {
            "peak_bytes": peak,
            "planned_tokens_bytes": result,
            "peak_without_planned_tokens": peak - result,
            "stream_peak_bytes": streamed,
            "max_cache_positions": max(lengths),
            # what `stream` allocates: the window's largest context, float32 keys and values
            "kv_cache_bytes": args.batch * capacity * c.layers * 2 * c.hidden * 4,
        }
        print(f"{shots} shots memory: " + json.dumps(report["memory"][shots]), flush=True)
    sizes = sorted(report["memory"])
    if len(sizes) >= 2:
        small, large = report["memory"][sizes[0]], report["memory"][sizes[-1]]
        report["memory"]["peak_ratio"] = round(large["peak_bytes"] / small["peak_bytes"], 3)
        report["memory"]["working_peak_ratio"] = round(
            large["peak_without_planned_tokens"] / small["peak_without_planned_tokens"], 3
        )
        report["memory"]["stream_peak_ratio"] = round(
            large["stream_peak_bytes"] / small["stream_peak_bytes"], 3
        )
    print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
