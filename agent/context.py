"""What the graph's nodes run with (`Context`, never checkpointed) and where they report."""

from __future__ import annotations

from dataclasses import dataclass, field

from reelsmith.agent.models import Models
from reelsmith.agent.run_dir import RunDir


class Reporter:
    """Where the graph reports progress; this one keeps quiet (the CLI draws bars)."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None: ...

    def stage(self, name: str, total: int | None = None, done: int = 0) -> None: ...

    def advance(self, name: str, done: float) -> None: ...

    def shot_started(self, shot_id: str) -> None: ...

    def shot_finished(self, shot_id: str) -> None: ...


@dataclass
class Context:
    """The run, its models, and what was given that is held in memory only (an API key; the
    writer's server URL with its credentials)."""

    run: RunDir
    models: Models
    reporter: Reporter = field(default_factory=Reporter)
    api_key: str | None = None
    base_url: str | None = None
