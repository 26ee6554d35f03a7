"""Driving a run: make it, or go on with it, through the movie graph; and say where it stands.

A pass is one trip through the graph, on its own checkpoint thread. Resuming after the user
edited screenplay.json starts the next pass: every keyframe and shot whose key the edit did not
change is found in the cache, so only the edited shots are drawn and rendered again.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from reelsmith.agent.cache import Cache
from reelsmith.agent.context import Context
from reelsmith.agent.graph import StaleShot, build_graph
from reelsmith.agent.run_dir import RunDir, screenplay_digest
from reelsmith.errors import InputError


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
        try:
            _stream(graph, command, config, context)
        except StaleShot as exc:
            # the models, or their versions, changed since this pass keyed its shots (a run
            # resumed by another reelsmith): a fresh pass keys them again and finds the rest
            run.log(f"{exc}: a fresh pass")
            run.next_thread()
            config = _config(run)
            _stream(graph, {"approve": False}, config, context)
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


def _stream(graph, command, config: dict, context: Context) -> None:
    for _ in graph.stream(command, config, context=context, durability="sync"):
        pass


def _config(run: RunDir) -> dict:
    return {
        "configurable": {"thread_id": run.thread},
        "max_concurrency": run.options.concurrency,
    }
