"""Options and defaults that several commands share, so they read and behave the same."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hardflow.contract import local_reference

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_OUT = Path("out")
"""Where ``hardflow build`` (and ``demo``) write a build unless told otherwise."""

spec_option = click.option(
    "--spec",
    "spec_arg",
    metavar="FILE|NAME",
    help="Spec TOML file, or the name of an embedded spec (default: the embedded 'default').",
)
lock_option = click.option(
    "--lock",
    "lock_arg",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Lock file (default: beside the spec, SPEC.lock.json).",
)
name_option = click.option("--name", default="hardflow", show_default=True, help="Container name.")


def json_option(help_text: str = "Machine-readable result on stdout.") -> Callable[[F], F]:
    """``--json`` (parameter ``as_json``): the result a script reads, on stdout."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def default_out(spec_name: str, tag: str) -> Path:
    """``out/NAME-TAG``; a '/' in the name (a registry path) becomes '_'."""
    return DEFAULT_OUT / f"{spec_name.replace('/', '_')}-{tag}"


def default_image() -> str:
    """The engine's name of the embedded default spec's image (what ``build --load`` loads)."""
    from hardflow.spec import load_embedded

    return local_reference(load_embedded().reference)
