"""`hardflow check-dags DIR`: load a DAG folder in the target image, report what must change.

Exit status: 0 when no error was found (warnings allowed), 1 when there are errors (a file
that does not load, a cycle, a duplicate DAG id, an Airflow 3 removal), 2 when the input is
not usable (DIR missing or not a directory, the image not in the engine's storage, no ruff).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape

from hardflow.cli.console import err, out, print_error
from hardflow.cli.options import default_image, json_option
from hardflow.dagcheck.model import DagCheckInputError
from hardflow.dagcheck.report import render_text

_STYLES = {
    "error": "bold red",
    "warning": "yellow",
    "fix": "cyan",
    "file": "bold",
    "ok": "bold green",
    "fail": "bold red",
    "dim": "dim",
}
EXIT_ERRORS = 1
EXIT_BAD_INPUT = 2


@click.command("check-dags")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--image", help="Image to load the DAGs in (default: the embedded default spec's).")
@click.option("--engine", "engine_name", help="podman or docker (default: detected).")
@click.option(
    "--python",
    "python",
    default="python",
    show_default=True,
    help="The Python on the image's PATH that runs the loader.",
)
@click.option(
    "--airflow3-rules/--no-airflow3-rules",
    "airflow3_rules",
    default=None,
    help="Run ruff's AIR3 migration rules (default: when the image has Airflow 3 or later).",
)
@click.option("--fix", is_flag=True, help="Apply ruff's safe AIR3 fixes to DIR, then check again.")
@click.option("--unsafe-fixes", is_flag=True, help="With --fix: also apply ruff's unsafe fixes.")
@json_option("Machine-readable report on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Show the full traceback of load errors.")
def check_dags_cmd(
    folder: Path,
    image: str | None,
    engine_name: str | None,
    python: str,
    airflow3_rules: bool | None,
    fix: bool,
    unsafe_fixes: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Load the DAG folder DIR with Airflow's own DagBag inside the image (hardened, no
    network) and, for Airflow 3 targets, add ruff's Airflow 3 migration findings (AIR3xx),
    each with file, line, rule and the suggested change."""
    from hardflow.dagcheck.run import CheckRequest, check_dags
    from hardflow.run.engine import detect_engine

    req = CheckRequest(
        folder=folder,
        image=image or default_image(),
        python=python,
        airflow3_rules=airflow3_rules,
        fix=fix,
        unsafe_fixes=unsafe_fixes,
    )
    try:
        engine = detect_engine(engine_name)
        if as_json:
            report = check_dags(engine, req)
        else:
            with err.status(f"checking {folder}") as status:
                report = check_dags(engine, req, lambda m: status.update(escape(m)))
    except DagCheckInputError as exc:
        # the one failure with its own exit status (2): main() would exit 1
        print_error(exc.diagnostics())
        sys.exit(EXIT_BAD_INPUT)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        for line in render_text(report, verbose=verbose):
            style = _STYLES.get(line.style or "")
            out.print(f"[{style}]{escape(line.text)}[/]" if style else escape(line.text))
    if not report.ok:
        sys.exit(EXIT_ERRORS)
