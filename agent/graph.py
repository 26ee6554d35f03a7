"""The agent: a durable LangGraph graph from an idea, or a screenplay, to a movie.

    START → write_screenplay → validate ─┬──────────────────────→ cast → plan_keyframes
                                         └→ approve (--approve) ─┘            │ Send × shots
                                          END ← assemble ← render_shot ×N ←───┘

The state holds only small things (digests, content keys, shot ids); images, frames and models
live in the run directory and in `Context`. Every step is checkpointed in the run directory's
`checkpoints.sqlite` before the next starts (durability "sync"), and each shot's render task
records its result as it finishes, so a killed run resumes at the step it was in and never
renders a shot twice: a task that finished its file but not its checkpoint finds the file by its
content key (`agent.cache`). Out-of-memory errors are retried with halved batches; bad input
never is.

A pass is one trip through the graph, on its own checkpoint thread. Resuming after the user
edited screenplay.json starts the next pass: every keyframe and shot whose key the edit did not
change is found in the cache, so only the edited shots are drawn and rendered again.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, TypedDict

import torch
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy, Send, interrupt

from reelsmith.agent.backends import Models, make_script_writer
from reelsmith.agent.cache import (
    Cache,
    digest,
    identity_digest,
    keyframe_key,
    render_seed,
    shot_key,
)
from reelsmith.agent.run_dir import RunDir, screenplay_digest
from reelsmith.atomic import write_bytes_atomic, write_text_atomic
from reelsmith.errors import InputError
from reelsmith.renderer.shots.protocol import ShotRequest
from reelsmith.schema.screenplay import Screenplay

MOVIE_SIDE = 256  # movie.mp4 is enlarged (nearest neighbour) to about this many pixels


# -- state and context ----------------------------------------------------------------------


def _merge(old: dict, new: dict) -> dict:
    return {**(old or {}), **new}


class MovieState(TypedDict, total=False):
    approve: bool  # stop for the user's approval after the screenplay
    screenplay: str  # digest of the screenplay this pass makes (`run.screenplay_digest`)
    cast: str  # digest of cast.json
    keyframes: dict[str, str]  # shot id -> keyframe key
    shots: dict[str, str]  # shot id -> the key its frames must have
    rendered: Annotated[dict[str, str], _merge]  # shot id -> key, as render tasks finish
    movie: dict  # seconds, frames, shots of movie.mp4, once assembled


class ShotTask(TypedDict):
    shot_id: str
    key: str  # the key its frames must have
    keyframe: str  # its keyframe's key
    screenplay: str  # the pinned screenplay's digest


class Reporter:
    """Where the graph reports progress; this one keeps quiet (the CLI draws bars)."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None: ...

    def stage(self, name: str, total: int | None = None, done: int = 0) -> None: ...

    def advance(self, name: str, done: int) -> None: ...

    def shot_started(self, shot_id: str) -> None: ...

    def shot_finished(self, shot_id: str) -> None: ...


@dataclass
class Context:
    """What the nodes run with; never checkpointed: the models, and what the command line gave
    that is held in memory only (an API key; the writer's server URL with its credentials)."""

    run: RunDir
    models: Models
    reporter: Reporter = field(default_factory=Reporter)
    api_key: str | None = None
    base_url: str | None = None


# -- nodes ----------------------------------------------------------------------------------


def write_screenplay(state: MovieState, runtime: Runtime[Context]) -> dict:
    """Write the screenplay from the prompt, or import it from the source file.

    A screenplay.json already there (an earlier pass, or one the user edited) is kept. LLM
    writers repair their own invalid answers against the schema, a bounded number of times.
    """
    run = runtime.context.run
    if run.screenplay_path.is_file():
        return {}
    # Step 1: write or import
    runtime.context.reporter.stage("screenplay", total=1)
    inputs = run.inputs
    if inputs.source is not None:
        from reelsmith.planner.io import load_screenplay

        screenplay = load_screenplay(run.path / inputs.source)
    else:
        from reelsmith.planner.writers.base import Brief

        brief = Brief(
            inputs.prompt or "",
            scenes=inputs.scenes,
            shots=inputs.shots,
            duration=inputs.duration,
            style=inputs.style,
            seed=inputs.seed,
        )
        ctx = runtime.context
        writer = make_script_writer(inputs, run.options, ctx.api_key, ctx.base_url)
        screenplay = writer.write(brief)
    # Step 2: keep it
    write_text_atomic(run.screenplay_path, screenplay.to_json())
    runtime.context.reporter.advance("screenplay", 1)
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


def cast_characters(state: MovieState, runtime: Runtime[Context]) -> dict:
    """Resolve every character in the series bible (a new one is cast: its portrait drawn, its
    identity embedded) and keep the run's copy of each (`RunDir.save_character`)."""
    ctx = runtime.context
    run, models = ctx.run, ctx.models
    screenplay = _screenplay(state, run)
    looks = run.cast_looks()
    missing = [c for c in screenplay.characters if not run.has_character(c.id, looks)]
    if missing:
        from reelsmith.agent.references import ModelReferences
        from reelsmith.memory.casting import cast
        from reelsmith.memory.store import SeriesStore
        from reelsmith.renderer.identity.encoder import ENCODER

        # Step 1: the series bible resolves (or casts) everyone
        ctx.reporter.stage("cast", total=len(missing))
        folder, name = run.series_folder()
        with SeriesStore.open(folder, name) as store, _halving_batches_on_oom(models):
            make = ModelReferences.for_store(
                store, models.keyframer, models.encoder, run.inputs.seed
            )
            members = cast(screenplay, store, make, episode=screenplay.title)
            # Step 2: the run's own copy of each missing character
            for done, character in enumerate(missing, 1):
                member = members[character.id]
                portrait = store.get_image(member.portrait_blob)
                blob = member.embeddings.get(ENCODER)
                embedding = store.get_tensor(blob) if blob else models.encoder.embed(portrait)[0]
                run.save_character(character.id, portrait, embedding)
                looks[character.id] = member.identity or {}
                ctx.reporter.advance("cast", done)
        run.save_cast_looks(looks)
        run.log(f"cast: {', '.join(c.id for c in missing)}")
    return {"cast": digest((run.path / "cast.json").read_bytes())}


def plan_keyframes_node(state: MovieState, runtime: Runtime[Context]) -> dict:
    """One keyframe per shot, planned in story order. A shot whose keyframe key is stored keeps
    that keyframe; planning runs (all shots, deterministically) only when one is missing."""
    from reelsmith.planner.planning import plan_keyframes, prepare

    ctx = runtime.context
    run, models, cache = ctx.run, ctx.models, Cache(ctx.run.path)
    screenplay = _screenplay(state, run)
    cast = run.load_cast(screenplay)
    seed = run.inputs.seed

    # Step 1: every keyframe's key
    movie = prepare(screenplay, cast, seed)
    identities = {cid: identity_digest(e.embedding, e.portrait) for cid, e in cast.items()}
    keyframer_id, planner_id = models.keyframer_id, models.planner_id
    keys = {
        shot.id: keyframe_key(spec, identities, s, keyframer_id, planner_id, run.inputs.resolution)
        for (_, shot), spec, s in zip(movie.shots, movie.specs, movie.seeds, strict=True)
    }

    # Step 2: draw, when any is missing; keep the stored ones
    missing = [shot_id for shot_id, key in keys.items() if not cache.has_keyframe(key)]
    ctx.reporter.stage("keyframes", total=len(keys), done=len(keys) - len(missing))
    if missing:
        with _halving_batches_on_oom(models):
            planned = plan_keyframes(
                screenplay,
                cast,
                models.keyframer,
                models.planner,
                seed=seed,
                temperature=models.plan_temperature,
                batch=models.keyframe_batch,
                progress=lambda done, total: ctx.reporter.advance("keyframes", done),
            )
        for keyframe in planned:
            if keyframe.shot_id in missing:
                cache.put_keyframe(keys[keyframe.shot_id], keyframe.image, keyframe.tokens)
        run.log(f"keyframes: drew {', '.join(missing)}")

    # Step 3: each shot's keyframe in keyframes/, its keys in the index
    shots = {}
    for _, shot in screenplay.shots():
        keyframe = cache.keyframe(keys[shot.id])
        _copy_if_changed(
            cache.keyframe_path(keys[shot.id]), run.path / "keyframes" / f"{shot.id}.png"
        )
        shots[shot.id] = shot_key(_shot_request(run, shot, keyframe, cast), models.shot_renderer_id)
        cache.set_index(shot.id, keyframe=keys[shot.id])
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
    ctx = runtime.context
    run, models, cache = ctx.run, ctx.models, Cache(ctx.run.path)
    shot_id, key = task["shot_id"], task["key"]
    if not cache.has_shot(key):
        # Step 1: the request, exactly as keyed
        screenplay = _screenplay({"screenplay": task["screenplay"]}, run)
        shot = next(s for _, s in screenplay.shots() if s.id == shot_id)
        keyframe = cache.keyframe(task["keyframe"])
        request = _shot_request(run, shot, keyframe, run.load_cast(screenplay))
        if shot_key(request, models.shot_renderer_id) != key:
            raise InputError(f"shot '{shot_id}': its inputs changed during the run; resume it")
        # Step 2: render and store
        ctx.reporter.shot_started(shot_id)
        with _halving_batches_on_oom(models), models.shot_renderer() as renderer:
            frames = renderer.render([request])[0]
        cache.put_shot(key, frames)
        run.log(f"shot {shot_id}: rendered {len(frames)} frames")
        ctx.reporter.shot_finished(shot_id)
    cache.set_index(shot_id, frames=key)
    return {"rendered": {shot_id: key}}


def assemble_movie(state: MovieState, runtime: Runtime[Context]) -> dict:
    """The movie, shots, subtitles and storyboard, from the stored keyframes and frames."""
    from reelsmith.renderer.assembly.movie import ShotMedia, assemble

    ctx = runtime.context
    run, cache = ctx.run, Cache(ctx.run.path)
    screenplay = _screenplay(state, run)
    media = {
        shot_id: ShotMedia(cache.shot(key), cache.keyframe(state["keyframes"][shot_id]))
        for shot_id, key in state["shots"].items()
    }
    side = max(next(iter(media.values())).frames.shape[1:3])
    ctx.reporter.stage("assemble", total=5)
    stages = ("keyframes", "shots", "movie", "subtitles", "storyboard")
    result = assemble(
        run.path,
        screenplay,
        media,
        fps=run.inputs.fps,
        upscale=max(1, min(16, MOVIE_SIDE // side)),
        callback=lambda stage, done, total: ctx.reporter.advance(
            "assemble", stages.index(stage) + done / total
        ),
    )
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


def _shot_request(run: RunDir, shot, keyframe, cast: dict) -> ShotRequest:
    return shot_request(shot, keyframe, cast, fps=run.inputs.fps, seed=run.inputs.seed)


def shot_request(shot, keyframe, cast: dict, *, fps: int, seed: int) -> ShotRequest:
    """A shot's request to the renderer, as `render_shot` makes it (benchmarks/end_to_end.py
    makes its requests here too). `cast` maps character ids to `CastEntry`s; `seed` is the
    run seed."""
    from reelsmith.renderer.identity.encoder import ENCODER

    identities = {
        cid: {ENCODER: cast[cid].embedding}
        for cid in shot.characters
        if cast[cid].embedding is not None
    }
    return ShotRequest.from_shot(
        shot, keyframe, fps=fps, seed=render_seed(seed, shot.id), identities=identities
    )


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


# -- driving a run --------------------------------------------------------------------------


@dataclass
class Outcome:
    """Where a run stands after `advance`.

    Attributes:
        status: "done" (made now), "made" (made before, nothing changed), "approval" (waiting).
        values: The pass's state.
    """

    status: str
    values: dict


@contextlib.contextmanager
def open_graph(run: RunDir, read_only: bool = False) -> Iterator:
    """The compiled graph, checkpointing into the run's checkpoints.sqlite."""
    if read_only:
        uri = f"file:{run.checkpoints_path}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(run.checkpoints_path, check_same_thread=False)
    try:
        yield build_graph(SqliteSaver(conn))
    finally:
        conn.close()


def advance(run: RunDir, context: Context, resume: bool) -> Outcome:
    """Make the movie, or continue making it: the one entry point of `make` and `resume`.

    - never started: start the pass;
    - waiting for approval: `resume` approves the screenplay (edits validated first);
    - stopped part way: continue it, or start the next pass if screenplay.json was edited;
    - finished: start the next pass if screenplay.json was edited (or movie.mp4 is gone);
      else `resume` refuses and `make` reports the movie made.
    """
    current = None
    if run.screenplay_path.is_file():
        current = screenplay_digest(run.read_screenplay())  # a bad edit stops here
    with open_graph(run) as graph:
        snapshot = graph.get_state(_config(run))
        pinned = snapshot.values.get("screenplay")
        # a step whose tasks all finished before it was checkpointed has no `next` yet
        pending = snapshot.next or snapshot.tasks
        finished = bool(snapshot.values) and not pending
        command: dict | Command | None
        if not snapshot.values and not pending:
            command = {"approve": run.options.approve and run.thread == "pass-1"}
        elif snapshot.interrupts:
            if not resume:
                return Outcome("approval", snapshot.values)
            command = Command(resume="approved")
        elif (pinned and current != pinned) or (finished and not run.movie_path.is_file()):
            run.next_thread()  # an edit: a fresh pass, which finds the rest in the cache
            command = {"approve": False}
        elif pending:
            command = None
        elif resume:
            raise InputError(
                f"{run.path}: this run is finished (movie.mp4); edit its screenplay.json and "
                "resume to make it again"
            )
        else:
            return Outcome("made", snapshot.values)
        run.log(f"{'resume' if resume else 'make'}: {run.thread}")
        config = _config(run)
        shots = graph.get_state(config).values.get("shots")
        if shots:  # part way through the shots: the bar starts where they are
            stored = sum(Cache(run.path).has_shot(key) for key in shots.values())
            context.reporter.stage("shots", total=len(shots), done=stored)
        for _ in graph.stream(command, config, context=context, durability="sync"):
            pass
        snapshot = graph.get_state(config)
        return Outcome("approval" if snapshot.interrupts else "done", snapshot.values)


STAGES = {
    "write_screenplay": "writing the screenplay",
    "validate": "checking the screenplay",
    "approve": "waiting for approval of the screenplay",
    "cast": "casting",
    "plan_keyframes": "drawing keyframes",
    "render_shot": "rendering shots",
    "assemble": "assembling the movie",
}


def describe(run: RunDir) -> dict:
    """Where a run stands, read without changing anything: stage, shots done of all, paths."""
    values, next_nodes = {}, ()
    if run.checkpoints_path.is_file():
        try:
            with open_graph(run, read_only=True) as graph:
                snapshot = graph.get_state(_config(run))
        except sqlite3.Error:  # created, but not one checkpoint in it yet
            snapshot = None
        if snapshot is not None:
            values = snapshot.values
            next_nodes = snapshot.next or tuple(task.name for task in snapshot.tasks)
    if next_nodes:
        stage = STAGES.get(next_nodes[0], "starting")
    elif values.get("movie"):
        stage = "done"
    else:
        stage = "not started"
    shots = values.get("shots") or {}
    cache = Cache(run.path)
    try:
        screenplay = run.read_screenplay()
        total = screenplay.num_shots
        edited = "screenplay" in values and screenplay_digest(screenplay) != values["screenplay"]
    except InputError:
        total, edited = len(shots) or None, True
    paths = {
        name: str(run.path / name)
        for name in ("screenplay.json", "movie.mp4", "storyboard.html")
        if (run.path / name).is_file()
    }
    return {
        "run": str(run.path),
        "pass": run.thread,
        "stage": stage,
        "shots_done": sum(cache.has_shot(key) for key in shots.values()),
        "shots": len(shots) or total,
        "screenplay_edited": edited and run.screenplay_path.is_file(),
        "movie": values.get("movie"),
        "paths": paths,
    }


def _config(run: RunDir) -> dict:
    return {
        "configurable": {"thread_id": run.thread},
        "max_concurrency": run.options.concurrency,
    }


# -- the graph ------------------------------------------------------------------------------


def build_graph(checkpointer=None):
    """The movie graph (see the module docstring), compiled with `checkpointer`."""
    transient = RetryPolicy(max_attempts=4, initial_interval=1.0, retry_on=_out_of_memory)
    builder = StateGraph(MovieState, context_schema=Context)
    builder.add_node("write_screenplay", write_screenplay)
    builder.add_node("validate", validate)
    builder.add_node("approve", approve)
    builder.add_node("cast", cast_characters, retry_policy=transient)
    builder.add_node("plan_keyframes", plan_keyframes_node, retry_policy=transient)
    builder.add_node("render_shot", render_shot, retry_policy=transient)
    builder.add_node("assemble", assemble_movie, retry_policy=transient)

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
