"""`hardflow bench`: build and run the default image and a conventional reference side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hardflow.cli.console import note, out, print_json
from hardflow.cli.options import json_option
from hardflow.errors import HardflowError


@click.command()
@click.option(
    "--runs",
    default=3,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Repetitions of every timed figure (the median is reported).",
)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("bench/results"),
    show_default=True,
    help="Where latest.json and latest.md are written.",
)
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Scratch space for builds (default: the system temp dir).",
)
@click.option("--spec", "spec_arg", metavar="FILE|NAME", help="Spec to bench (default: default).")
@click.option(
    "--core-spec",
    default="core",
    show_default=True,
    metavar="FILE|NAME",
    help="Spec reported as the core image ('' to skip).",
)
@click.option(
    "--platforms-spec",
    default="airflow-multiplatform",
    show_default=True,
    metavar="FILE|NAME",
    help="Multi-platform spec whose size per platform is reported ('' to skip).",
)
@click.option(
    "--change-package",
    default="idna",
    show_default=True,
    help="Wheel pinned to another version for the warm one-package rebuild.",
)
@click.option("--no-reference", is_flag=True, help="Skip the conventional reference image.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for health.")
@click.option(
    "--render",
    "render_json",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Only re-render latest.md from this JSON result.",
)
@json_option("Print the result JSON on stdout.")
def bench(
    runs: int,
    results_dir: Path,
    work_dir: Path | None,
    spec_arg: str | None,
    core_spec: str,
    platforms_spec: str,
    change_package: str,
    no_reference: bool,
    timeout: float,
    render_json: Path | None,
    as_json: bool,
) -> None:
    """Build the hardflow image and a conventional reference (Debian minbase + venv + pip) of
    the same locked requirements in one run; measure size, files, packages, build and rebuild
    times, time to healthy, the example DAG and peak RSS; write bench/results/latest.{json,md}.
    """
    from hardflow.bench.report import render_markdown
    from hardflow.bench.run import BenchOptions, run_bench, write_results

    if render_json is not None:
        try:
            result = json.loads(render_json.read_text())
        except (OSError, ValueError) as exc:
            raise HardflowError(f"cannot read bench result {render_json}: {exc}") from None
        if not isinstance(result, dict):
            raise HardflowError(f"{render_json}: expected a JSON object, found {type(result)}")
        js, md = write_results(result, results_dir)
    else:
        options = BenchOptions(
            runs=runs,
            results_dir=results_dir,
            work_dir=work_dir,
            spec_arg=spec_arg,
            core_spec=core_spec or None,
            platforms_spec=platforms_spec or None,
            change_package=change_package,
            reference=not no_reference,
            timeout=timeout,
        )
        result = run_bench(options, say=note)
        js, md = results_dir / "latest.json", results_dir / "latest.md"
    if as_json:
        print_json(result)
        return
    out.print(render_markdown(result), markup=False)
    out.print(f"wrote {js} and {md}")
