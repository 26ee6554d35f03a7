"""The agent: a durable LangGraph graph from an idea, or a screenplay, to a movie.

    START → write_screenplay → validate ─┬──────────────────────→ cast → plan_keyframes
                                         └→ approve (--approve) ─┘            │ Send × shots
                                          END ← assemble ← render_shot ×N ←───┘

Each node loads its inputs from the run directory, calls its stage (`reelsmith.stages`) and
stores what the stage made; the state holds only small things (`agent.state`). Every step is
checkpointed in the run directory's `checkpoints.sqlite` before the next starts (durability
"sync", `agent.driver`), and each shot's render task records its result as it finishes, so a
killed run resumes at the step it was in and never renders a shot twice: a task that finished
its file but not its checkpoint finds the file by its content key (`agent.cache`).
Out-of-memory errors are retried with halved batches; bad input never is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

import torch
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send, interrupt

from reelsmith.agent.cache import Cache, digest, identity_digest, keyframe_key, shot_key
from reelsmith.agent.context import Context
from reelsmith.agent.models import Models, make_script_writer
from reelsmith.agent.run_dir import RunDir, screenplay_digest
from reelsmith.agent.state import MovieState, ShotTask
from reelsmith.atomic import write_bytes_atomic, write_text_atomic
from reelsmith.errors import InputError
from reelsmith.memory.store import SeriesStore
from reelsmith.planner.planning import prepare
from reelsmith.renderer.assembly.movie import ShotMedia
from reelsmith.schema.screenplay import Screenplay
from reelsmith.stages.assemble import assemble_movie
from reelsmith.stages.cast import cast_characters
from reelsmith.stages.keyframes import make_keyframes
from reelsmith.stages.shots import render_shot as render_frames
from reelsmith.stages.shots import shot_request
from reelsmith.stages.write import ScreenplaySource, write_screenplay


class StaleShot(InputError):
    """A shot's inputs (its keyframe, the cast, the models or their versions) are no longer
    those its pass keyed it by: the driver starts a fresh pass (`driver.advance`)."""


# -- nodes ----------------------------------------------------------------------------------


def write_screenplay_node(state: MovieState, runtime: Runtime[Context]) -> dict:
    """Write the screenplay from the prompt, or import it from the source file; a
    screenplay.json already there (an earlier pass, or one the user edited) is kept."""
    ctx, run = runtime.context, runtime.context.run
    if run.screenplay_path.is_file():
        return {}
    ctx.reporter.stage("screenplay", total=1)
    inputs = run.inputs
    source = ScreenplaySource(
        path=None if inputs.source is None else run.path / inputs.source,
        brief=None if inputs.source is not None else inputs.brief,
    )
    writer = partial(make_script_writer, inputs, run.options, ctx.api_key, ctx.base_url)
    screenplay = write_screenplay(source, writer)
    write_text_atomic(run.screenplay_path, screenplay.to_json())
    ctx.reporter.advance("screenplay", 1)
    run.log(f"screenplay: {screenplay.num_shots} shots, {screenplay.duration:.1f} s")
    return {}


def validate(state: MovieState, runtime: Runtime[Context]) -> dict:
    """Check that screenplay.json is valid and renderable; pin it by its digest."""
    screenplay = runtime.context.run.read_screenplay()
    return {"screenplay": screenplay_digest(screenplay)}


def approve(state: MovieState, runtime: Runtime[Context]) -> dict:
    """Wait for the user (`reelsmith resume`), who may have edited screenplay.json meanwhile."""
    run = runtime.context.run
    run.log("waiting for approval of the screenplay")
    interrupt({"screenplay": run.screenplay_path.name})
    screenplay = run.read_screenplay()
    run.log("screenplay approved")
    return {"screenplay": screenplay_digest(screenplay)}


def cast_node(state: MovieState, runtime: Runtime[Context]) -> dict:
    """Resolve every character in the series bible (a new one is cast: its portrait drawn, its
    identity embedded) and keep the run's copy of each (`RunDir.save_character`)."""
    ctx, run, models = runtime.context, runtime.context.run, runtime.context.models
    screenplay = _screenplay(state, run)
    looks = run.cast_looks()
    missing = [c.id for c in screenplay.characters if not run.has_character(c.id, looks)]
    if missing:
        ctx.reporter.stage("cast", total=len(missing))
        folder, name = run.series_folder()
        with SeriesStore.open(folder, name) as store, _halving_batches_on_oom(models):
            entries = cast_characters(
                screenplay,
                store,
                models.keyframer,
                models.encoder,
                missing,
                run.inputs.seed,
                progress=lambda done, total: ctx.reporter.advance("cast", done),
            )
        for character_id, entry in entries.items():
            run.save_character(character_id, entry.portrait, entry.embedding)
            looks[character_id] = dict(entry.looks)
        run.save_cast_looks(looks)
        run.log(f"cast: {', '.join(missing)}")
    return {"cast": digest((run.path / "cast.json").read_bytes())}


def keyframes_node(state: MovieState, runtime: Runtime[Context]) -> dict:
    """One keyframe per shot, planned and drawn in story order. A shot whose keyframe key is
    stored keeps that keyframe; planning runs (all shots, deterministically) only when one is
    missing."""
    ctx, run, models = runtime.context, runtime.context.run, runtime.context.models
    cache, screenplay = Cache(run.path), _screenplay(state, run)
    cast, seed = run.load_cast(screenplay), run.inputs.seed
    keys = _keyframe_keys(run, models, screenplay, cast)
    missing = [shot_id for shot_id, key in keys.items() if not cache.has_keyframe(key)]
    ctx.reporter.stage("keyframes", total=len(keys), done=len(keys) - len(missing))
    if missing:
        with _halving_batches_on_oom(models):
            keyframes = make_keyframes(
                screenplay,
                cast,
                models.keyframer,
                models.planner,
                seed=seed,
                temperature=models.plan_temperature,
                batch=models.keyframe_batch,
                progress=lambda done, total: ctx.reporter.advance("keyframes", done),
            )
        for keyframe in keyframes:
            if keyframe.shot_id in missing:
                cache.put_keyframe(keys[keyframe.shot_id], keyframe.image, keyframe.tokens)
        run.log(f"keyframes: drew {', '.join(missing)}")
    shots = _store_keyframes(run, models, cache, screenplay, cast, keys)
    stored = sum(cache.has_shot(key) for key in shots.values())
    ctx.reporter.stage("shots", total=len(shots), done=stored)
    return {"keyframes": keys, "shots": shots}


def dispatch_shots(state: MovieState) -> list[Send]:
    """One render task per shot (a shot already stored returns at once)."""
    return [
        Send(
            "render_shot",
            ShotTask(
                shot_id=shot_id,
                key=key,
                keyframe=state["keyframes"][shot_id],
                screenplay=state["screenplay"],
            ),
        )
        for shot_id, key in state["shots"].items()
    ]


def render_shot(task: ShotTask, runtime: Runtime[Context]) -> dict:
    """Render one shot from its keyframe, unless its frames are stored under its key."""
    ctx, run, models = runtime.context, runtime.context.run, runtime.context.models
    cache, shot_id, key = Cache(run.path), task["shot_id"], task["key"]
    if not cache.has_shot(key):
        screenplay = _screenplay({"screenplay": task["screenplay"]}, run)
        shot = next(s for _, s in screenplay.shots() if s.id == shot_id)
        request = _shot_request(run, shot, cache.keyframe(task["keyframe"]), screenplay)
        if shot_key(request, models.shot_renderer_id) != key:
            raise StaleShot(f"shot '{shot_id}': its inputs changed during the run; resume it")
        ctx.reporter.shot_started(shot_id)
        with _halving_batches_on_oom(models), models.shot_renderer() as renderer:
            frames = render_frames(request, renderer)
        cache.put_shot(key, frames)
        run.log(f"shot {shot_id}: rendered {len(frames)} frames")
        ctx.reporter.shot_finished(shot_id)
    cache.set_index(shot_id, frames=key)
    return {"rendered": {shot_id: key}}


def assemble_node(state: MovieState, runtime: Runtime[Context]) -> dict:
    """The movie, shots, subtitles and storyboard, from the stored keyframes and frames."""
    ctx, run, cache = runtime.context, runtime.context.run, Cache(runtime.context.run.path)
    screenplay = _screenplay(state, run)
    media = {
        shot_id: ShotMedia(cache.shot(key), cache.keyframe(state["keyframes"][shot_id]))
        for shot_id, key in state["shots"].items()
    }
    ctx.reporter.stage("assemble", total=5)
    progress = lambda done, total: ctx.reporter.advance("assemble", done)  # noqa: E731
    result = assemble_movie(run.path, screenplay, media, run.inputs.fps, progress)
    run.log(f"movie: {result.duration:.1f} s, {len(media)} shots")
    return {
        "movie": {"seconds": result.duration, "frames": result.frame_count, "shots": len(media)}
    }


# -- what the nodes share -------------------------------------------------------------------


def _screenplay(state: MovieState, run: RunDir) -> Screenplay:
    """screenplay.json, which must be the screenplay this pass pinned."""
    screenplay = run.read_screenplay()
    if screenplay_digest(screenplay) != state["screenplay"]:
        raise InputError(
            f"{run.screenplay_path} changed while the movie was being made; run "
            f"`reelsmith resume {run.path}` to make it from the edit"
        )
    return screenplay


def _keyframe_keys(run: RunDir, models: Models, screenplay: Screenplay, cast: dict) -> dict:
    """Every shot's keyframe key: its spec, the identities on screen, its seed, the models."""
    movie = prepare(screenplay, cast, run.inputs.seed)
    identities = {cid: identity_digest(e.embedding, e.portrait) for cid, e in cast.items()}
    keyframer_id, planner_id = models.keyframer_id, models.planner_id
    resolution = run.inputs.models.resolution
    return {
        shot.id: keyframe_key(spec, identities, s, keyframer_id, planner_id, resolution)
        for (_, shot), spec, s in zip(movie.shots, movie.specs, movie.seeds, strict=True)
    }


def _store_keyframes(run, models, cache, screenplay, cast, keys) -> dict[str, str]:
    """Each shot's keyframe into keyframes/, its keys into the index; each shot's frame key."""
    shots = {}
    for _, shot in screenplay.shots():
        keyframe = cache.keyframe(keys[shot.id])
        _copy_if_changed(
            cache.keyframe_path(keys[shot.id]), run.path / "keyframes" / f"{shot.id}.png"
        )
        request = shot_request(shot, keyframe, cast, fps=run.inputs.fps, seed=run.inputs.seed)
        shots[shot.id] = shot_key(request, models.shot_renderer_id)
        cache.set_index(shot.id, keyframe=keys[shot.id])
    return shots


def _shot_request(run: RunDir, shot, keyframe, screenplay: Screenplay):
    cast = run.load_cast(screenplay)
    return shot_request(shot, keyframe, cast, fps=run.inputs.fps, seed=run.inputs.seed)


def _copy_if_changed(source, target) -> None:
    data = source.read_bytes()
    if not target.is_file() or target.read_bytes() != data:
        write_bytes_atomic(target, data)


@contextlib.contextmanager
def _halving_batches_on_oom(models: Models) -> Iterator[None]:
    """Out of memory: halve the batches, then let the retry policy run the step again."""
    try:
        yield
    except torch.OutOfMemoryError:
        models.shrink_batches()
        raise


def _out_of_memory(exc: Exception) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


# -- the graph ------------------------------------------------------------------------------


def build_graph(checkpointer=None):
    """The movie graph (see the module docstring), compiled with `checkpointer`."""
    transient = RetryPolicy(max_attempts=4, initial_interval=1.0, retry_on=_out_of_memory)
    builder = StateGraph(MovieState, context_schema=Context)
    builder.add_node("write_screenplay", write_screenplay_node)
    builder.add_node("validate", validate)
    builder.add_node("approve", approve)
    builder.add_node("cast", cast_node, retry_policy=transient)
    builder.add_node("plan_keyframes", keyframes_node, retry_policy=transient)
    builder.add_node("render_shot", render_shot, retry_policy=transient)
    builder.add_node("assemble", assemble_node, retry_policy=transient)

    builder.add_edge(START, "write_screenplay")
    builder.add_edge("write_screenplay", "validate")
    builder.add_conditional_edges(
        "validate", lambda s: "approve" if s.get("approve") else "cast", ["approve", "cast"]
    )
    builder.add_edge("approve", "cast")
    builder.add_edge("cast", "plan_keyframes")
    builder.add_conditional_edges("plan_keyframes", dispatch_shots, ["render_shot"])
    builder.add_edge("render_shot", "assemble")
    builder.add_edge("assemble", END)
    return builder.compile(checkpointer=checkpointer)
