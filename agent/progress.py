"""The command line's progress bars: a bar per stage on stderr, and one per shot as it renders."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bars:
    """The graph's progress on stderr: a bar per stage, and one per shot while it renders."""

    LABELS = {
        "screenplay": "screenplay",
        "cast": "casting",
        "keyframes": "keyframes",
        "shots": "shots",
        "assemble": "assembly",
    }

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def stage(self, name: str, total: int | None = None, done: int = 0) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], total=total, completed=done)
        else:
            label = self.LABELS.get(name, name)
            self.tasks[name] = self.progress.add_task(label, total=total, completed=done)

    def advance(self, name: str, done: float) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], completed=done)

    def shot_started(self, shot_id: str) -> None:
        self.tasks[f"shot:{shot_id}"] = self.progress.add_task(f"  {shot_id}", total=None)

    def shot_finished(self, shot_id: str) -> None:
        task = self.tasks.pop(f"shot:{shot_id}", None)
        if task is not None:
            self.progress.remove_task(task)
            if "shots" in self.tasks:
                self.progress.advance(self.tasks["shots"])
