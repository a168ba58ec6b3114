"""`hardflow run | stop | logs | password | demo`: Airflow from a hardflow image, hardened, in
podman or docker. The work is in :mod:`hardflow.run.runner` and :mod:`hardflow.demo`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from hardflow.cli.console import err, out, print_json
from hardflow.cli.options import default_image, default_out, json_option, name_option
from hardflow.cli.progress import reporter, status
from hardflow.contract import API_PORT, DAGS_DIR

port_option = click.option(
    "--port", default=API_PORT, show_default=True, help="Host port on 127.0.0.1."
)


@click.command()
@click.option("--image", help="Image reference (default: the embedded default spec's).")
@click.option(
    "--dags",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help=f"DAG folder, mounted read-only at {DAGS_DIR}.",
)
@port_option
@click.option("--detach", "-d", is_flag=True, help="Return once healthy; keep it running.")
@name_option
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for health.")
@json_option()
@click.argument("command", nargs=-1)
def run(
    image: str | None,
    dags: Path | None,
    port: int,
    detach: bool,
    name: str,
    timeout: float,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Run Airflow (default: `standalone`, SQLite) hardened in podman or docker."""
    from hardflow.run.engine import detect_engine
    from hardflow.run.runner import RunRequest, attach, start

    engine = detect_engine()
    req = RunRequest(
        image=image or default_image(),
        dags=dags.resolve() if dags else None,
        port=port,
        detach=detach,
        name=name,
        command=command or ("standalone",),
        health_timeout=timeout,
    )
    with status(as_json, f"starting {name}") as say:
        result = start(engine, req, say)
    if as_json:
        print_json({
            "name": result.name, "url": result.url, "volume": result.volume,
            "username": result.username, "seconds_to_healthy": round(result.seconds_to_healthy, 2),
        })  # fmt: skip
    else:
        out.print(f"[bold green]healthy[/] in {result.seconds_to_healthy:.1f}s: {result.url}")
        out.print(f"  user: {result.username}; password: `hardflow password --name {name}`")
        out.print(f"  stop: `hardflow stop --name {name}`; logs: `hardflow logs --name {name}`")
    if not detach:
        code = attach(engine, name, on_progress=err.print)
        sys.exit(code or 0)


@click.command()
@name_option
@click.option(
    "--volume", "remove_volume", is_flag=True, help="Also delete its AIRFLOW_HOME volume."
)
@click.option("--timeout", default=30, show_default=True, help="Seconds before SIGKILL.")
def stop(name: str, remove_volume: bool, timeout: int) -> None:
    """Stop and remove a container started by `hardflow run`."""
    from hardflow.run.engine import detect_engine
    from hardflow.run.runner import stop_container

    code = stop_container(
        detect_engine(), name, timeout=timeout, remove_volume=remove_volume,
        on_progress=err.print,
    )  # fmt: skip
    out.print(f"{name} stopped (exit code {code})")


@click.command()
@name_option
@click.option("--follow", "-f", is_flag=True, help="Stream new output.")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs(name: str, follow: bool, tail: int | None) -> None:
    """Show the logs of a container started by `hardflow run`."""
    from hardflow.run.engine import detect_engine
    from hardflow.run.runner import show_logs

    text = show_logs(detect_engine(), name, follow=follow, tail=tail)
    if text:
        # the container's own bytes, unstyled: rich would read its brackets as markup
        sys.stdout.write(text)


@click.command()
@name_option
def password(name: str) -> None:
    """Print the generated admin password of a running container."""
    from hardflow.run.engine import detect_engine
    from hardflow.run.runner import admin_password

    out.print(admin_password(detect_engine(), name) or "")


@click.command()
@port_option
@click.option("--name", default="hardflow-demo", show_default=True, help="Container name.")
@click.option("--keep/--stop", default=True, help="Keep Airflow running afterwards (default).")
@json_option()
def demo(port: int, name: str, keep: bool, as_json: bool) -> None:
    """Build the default image if needed, run it hardened, run the example DAG, report."""
    from hardflow.demo import DemoImage, build_and_load, greeting, needs_build, run_example
    from hardflow.run.engine import detect_engine
    from hardflow.spec import resolve_spec_arg

    engine = detect_engine()
    spec, lock_path = resolve_spec_arg(None)
    image = DemoImage.load(spec, lock_path, default_out(spec.name, spec.tag))
    if needs_build(engine, image):
        with reporter(not as_json) as rep:
            digest = build_and_load(engine, image, rep)
        err.print(f"built and loaded {image.reference} ({digest[:19]})")
    with status(as_json, f"starting {name}") as say:
        result = run_example(
            engine, image.reference, port=port, name=name, keep=keep, on_progress=say
        )
    if as_json:
        print_json(result.to_json())
    else:
        started, dag_run = result.started, result.run
        colour = "green" if dag_run.ok else "red"
        out.print(f"Airflow healthy in {started.seconds_to_healthy:.1f}s at {started.url}")
        out.print(
            f"DAG run {dag_run.dag_id}/{dag_run.run_id}: [bold {colour}]{dag_run.state}[/] "
            f"in {dag_run.seconds:.1f}s"
        )
        for task in dag_run.tasks:
            out.print(f"  task {task.task_id}: {task.state}  {escape(greeting(task))}")
        if keep:
            out.print(f"  still running: `hardflow password --name {name}` for the admin password,"
                      f" `hardflow stop --name {name}` to stop it")  # fmt: skip
    if not result.ok:
        sys.exit(1)
