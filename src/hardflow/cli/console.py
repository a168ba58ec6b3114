"""The one place the CLI writes to the terminal: ``out`` for results, ``err`` for the rest."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """A ``--json`` result on stdout (indented; rich colours it only on a terminal)."""
    out.print_json(json.dumps(data))


def note(message: str) -> None:
    """A step of a long operation, dimmed on stderr (stdout stays the result)."""
    err.print(f"[dim]· {escape(message)}[/]")


def silent(_message: str) -> None:
    """The progress callback of ``--json`` runs: stderr stays empty."""


def print_error(diagnostics: str) -> None:
    err.print(f"[bold red]error:[/] {escape(diagnostics)}")
