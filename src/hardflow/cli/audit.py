"""`hardflow audit image|manifests`: benchmark an image or deployment manifests.

Exit status: 0 when no finding at or above ``--exit-level`` remains (accepted findings do not
count), ``--exit-code`` (default 1) otherwise. Errors (bad input) exit 1 with a message, as
every hardflow command does. The default exit level is WARN, as with Dockle: FATAL and WARN
findings fail, INFO findings are reported but pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from hardflow.audit.model import Level, Report
from hardflow.audit.report import FORMATS, render, summary_line
from hardflow.cli.console import out
from hardflow.cli.options import json_option as _json_option

_COLORS = {
    "[FATAL]": "bold red",
    "[WARN]": "yellow",
    "[INFO]": "cyan",
    "[SKIP]": "dim",
    "[PASS]": "green",
    "[ACPT]": "magenta",
}


def _exit_level(text: str) -> Level | None:
    return None if text == "never" else Level.parse(text)


def _emit(report: Report, fmt: str, level: Level | None, output: Path | None) -> None:
    text = render(report, fmt, level)
    if output is not None:
        from hardflow.fsutil import atomic_write

        atomic_write(output, text.encode("utf-8"))
        out.print(f"wrote {fmt} report to {output}: {summary_line(report)}", highlight=False)
        return
    if fmt != "text" or not out.is_terminal:
        sys.stdout.write(text)
        return
    for line in text.splitlines():
        style = next((s for tag, s in _COLORS.items() if line.startswith(tag)), None)
        out.print(f"[{style}]{escape(line)}[/]" if style else escape(line))


def _finish(ctx: click.Context, report: Report, level: Level | None, code: int) -> None:
    if report.fails(level):
        ctx.exit(code)


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Report format: docker-bench-like text, JSON or SARIF 2.1.0.",
)
json_option = _json_option("Same as --format json.")
output_option = click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the report to FILE instead of stdout.",
)
exit_level_option = click.option(
    "--exit-level",
    type=click.Choice(["fatal", "warn", "info", "never"]),
    default="warn",
    show_default=True,
    help="Fail when a finding at or above this level remains.",
)
exit_code_option = click.option(
    "--exit-code", type=int, default=1, show_default=True, help="Exit status on failure."
)
ignore_option = click.option(
    "--ignore",
    "ignore_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Accepted findings (TOML or YAML: id, reason, items); repeatable.",
)


@click.group()
def audit() -> None:
    """Audit images (CIS Docker §4, Dockle, NIST SP 800-190) and manifests (CIS §5, Pod
    Security Standards)."""


@audit.command("image")
@click.argument("image")
@format_option
@json_option
@output_option
@exit_level_option
@exit_code_option
@ignore_option
@click.option(
    "--key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Public key: verify the image signature (CIS 4.12, NIST 4.1.5).",
)
@click.option(
    "--hardflow-exceptions/--no-hardflow-exceptions",
    "builtin",
    default=None,
    help="Apply hardflow's shipped exceptions (default: for images built by hardflow).",
)
@click.option("--engine", help="podman or docker, for IMAGE references in the local store.")
@click.option(
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="A multi-platform image: audit this platform only (default: every platform).",
)
@click.pass_context
def image_cmd(
    ctx: click.Context,
    image: str,
    fmt: str,
    as_json: bool,
    output: Path | None,
    exit_level: str,
    exit_code: int,
    ignore_files: tuple[Path, ...],
    key: Path | None,
    builtin: bool | None,
    engine: str | None,
    platform: str | None,
) -> None:
    """Audit IMAGE without running it.

    IMAGE is an OCI layout directory, an oci-archive or docker-archive tarball, or an image
    reference in the local podman/docker store. A multi-platform image (an image index) is
    audited on every platform; each finding names the platform of its items.
    """
    from hardflow.audit.run import audit_image

    level = _exit_level(exit_level)
    report = audit_image(
        image,
        ignore_files=ignore_files,
        hardflow_exceptions_mode=builtin,
        key=key,
        engine=engine,
        platform=platform,
    )
    _emit(report, "json" if as_json else fmt, level, output)
    _finish(ctx, report, level, exit_code)


@audit.command("manifests")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@format_option
@json_option
@output_option
@exit_level_option
@exit_code_option
@ignore_option
@click.pass_context
def manifests_cmd(
    ctx: click.Context,
    paths: tuple[Path, ...],
    fmt: str,
    as_json: bool,
    output: Path | None,
    exit_level: str,
    exit_code: int,
    ignore_files: tuple[Path, ...],
) -> None:
    """Audit Compose files and Kubernetes YAML (several documents per file; rendered Helm
    output included; directories are searched for *.yaml/*.yml)."""
    from hardflow.audit.run import audit_manifests

    level = _exit_level(exit_level)
    report = audit_manifests(paths, ignore_files=ignore_files)
    _emit(report, "json" if as_json else fmt, level, output)
    _finish(ctx, report, level, exit_code)
