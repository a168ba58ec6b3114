"""Command line: argument parsing and output only. The work happens in the stage modules.

This module holds the ``hardflow`` group, its global options and :func:`main`, the one place
that turns a :class:`~hardflow.errors.HardflowError` into a message and exit status 1. Each
command group lives in its own module (``build``, ``run``, ``audit`` ...), writes through
:mod:`hardflow.cli.console` and shares its options from :mod:`hardflow.cli.options`.
"""

from __future__ import annotations

import logging
import sys

import click

from hardflow import __version__
from hardflow.cli import audit, bench, build, checkdags, deploy, diff, lock, run, sbom, sign
from hardflow.cli.console import err, print_error
from hardflow.errors import HardflowError

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=HELP_OPTIONS)
@click.option("-v", "--verbose", count=True, help="More detail (-vv for debug logs).")
@click.version_option(__version__, prog_name="hardflow")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Build, prove, audit and run minimal hardened Apache Airflow images."""
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = {"verbose": verbose}


def _register_commands(group: click.Group) -> None:
    commands: tuple[click.Command, ...] = (
        lock.lock, build.build,
        run.run, run.stop, run.logs, run.password, run.demo,
        sbom.sbom,
        sign.keygen, sign.sign, sign.verify, sign.push,
        audit.audit, deploy.deploy, bench.bench, checkdags.check_dags_cmd,
        diff.diff,
    )  # fmt: skip
    for command in commands:
        _own_help_names(command)
        group.add_command(command)


def _own_help_names(command: click.Command) -> None:
    """``-h`` on every command, also when one is invoked on its own (tests call a command
    directly): click builds a command's help option once, from the first context it sees, and
    keeps it, so a command first seen without the group's settings lost ``-h`` for good."""
    for key, value in HELP_OPTIONS.items():
        command.context_settings.setdefault(key, value)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _own_help_names(sub)


_register_commands(cli)


def main() -> None:
    """The ``hardflow`` console script (and ``python -m hardflow.cli``)."""
    try:
        rv = cli.main(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except HardflowError as exc:
        print_error(exc.diagnostics())
        sys.exit(1)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
