"""Progress on stderr: rich bars for the pipeline's :class:`hardflow.progress.Progress`, and a
status line for the runner's one-message callbacks. ``--json`` runs draw neither."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress

from hardflow.cli.console import err, note, silent
from hardflow.progress import NullProgress, Task


class _Task:
    def __init__(self, bar: RichProgress, task_id: Any) -> None:
        self.bar, self.id = bar, task_id

    def advance(self, amount: int = 1) -> None:
        self.bar.advance(self.id, amount)

    def finish(self) -> None:
        task = self.bar.tasks[self.id] if isinstance(self.id, int) else None
        if task is not None and task.total is None:
            self.bar.update(self.id, total=1, completed=1)
        elif task is not None:
            self.bar.update(self.id, completed=task.total)


class RichReporter:
    """Implements hardflow.progress.Progress with rich bars on stderr (quiet without a bar)."""

    def __init__(self, bar: RichProgress | None) -> None:
        self.bar = bar

    def task(self, description: str, total: int | None = None, bytes_: bool = False) -> Task:
        if self.bar is None:
            return NullProgress().task(description, total)
        return _Task(self.bar, self.bar.add_task(description, total=total, bytes_=bytes_))

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message)


class _CountColumn(MofNCompleteColumn):
    """Bytes for download/compress tasks, counts for the others."""

    def __init__(self) -> None:
        super().__init__()
        self._dl = DownloadColumn()

    def render(self, task: Any) -> Any:
        if task.fields.get("bytes_"):
            return self._dl.render(task)
        if task.total is None:
            return ""
        return super().render(task)


@contextmanager
def reporter(enabled: bool) -> Iterator[RichReporter]:
    """Bars while the block runs when ``enabled``; a silent reporter otherwise."""
    if not enabled:
        yield RichReporter(None)
        return
    bar = RichProgress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description:<32}"),
        BarColumn(),
        _CountColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    with bar:
        yield RichReporter(bar)


@contextmanager
def status(quiet: bool, first: str) -> Iterator[Callable[[str], None]]:
    """A spinner showing the latest message, each message also kept as a dimmed line."""
    if quiet:
        yield silent
        return
    with err.status(first) as spinner:

        def say(message: str) -> None:
            spinner.update(message)
            note(message)

        yield say
