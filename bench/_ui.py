"""The live progress bar (rich) and bench's own messages, on stderr."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


class Ui:
    def __init__(self, *, quiet: bool = False) -> None:
        self.console = Console(stderr=True, quiet=quiet, log_path=False)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console, transient=False,
            disable=quiet)

    def log(self, message: str) -> None:
        self.console.log(message)

    @contextmanager
    def task(self, description: str, total: float) -> Iterator[Task]:
        task_id = self._progress.add_task(description, total=total, info="")
        handle = Task(self._progress, task_id, total)
        self._progress.start()
        try:
            yield handle
        finally:
            self._progress.update(task_id, completed=handle.completed)  # type: ignore[arg-type]
            self._progress.stop()  # leaves the finished bar on screen
            self._progress.remove_task(task_id)  # type: ignore[arg-type]

    @contextmanager
    def load(self, description: str, seconds: float) -> Iterator[LoadTask]:
        """A bar over the load's seconds, showing requests done and the live rate."""
        with self.task(description, round(seconds)) as task:
            yield LoadTask(task)


class Task:
    def __init__(self, progress: Progress, task_id: object, total: float) -> None:
        self._progress = progress
        self._id = task_id
        self.total = total
        self.completed: float = 0

    def update(self, completed: float, info: str = "") -> None:
        self.completed = completed
        self._progress.update(self._id, completed=completed, info=info)  # type: ignore[arg-type]

    def advance(self, by: float = 1) -> None:
        self.update(self.completed + by)


class LoadTask:
    def __init__(self, task: Task) -> None:
        self._task = task
        self._t0 = time.monotonic()
        self._last = (self._t0, 0)
        self._rate = 0.0

    def __call__(self, done: int, errors: int) -> None:
        now = time.monotonic()
        t, n = self._last
        if now - t >= 0.5:
            self._rate = (done - n) / (now - t)
            self._last = (now, done)
        self._task.update(min(round(now - self._t0, 1), self._task.total),
                          f"{done:,} req  {self._rate:,.0f} req/s  {errors:,} errors")
