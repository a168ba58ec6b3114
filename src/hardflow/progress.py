"""Progress reporting between the pipeline stages and the CLI (which draws rich bars).

Stages take a :class:`Progress` and never import rich themselves, so they stay quiet in tests
and in ``--json`` mode.
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    def advance(self, amount: int = 1) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None = None, bytes_: bool = False) -> Task: ...

    def log(self, message: str) -> None: ...


class _NullTask:
    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


class NullProgress:
    def task(self, description: str, total: int | None = None, bytes_: bool = False) -> Task:
        return _NullTask()

    def log(self, message: str) -> None:
        pass
