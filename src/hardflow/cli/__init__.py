"""Command line: argument parsing and output only. The work happens in the stage modules."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.progress import (
    Progress as RichProgress,
)

from hardflow import __version__
from hardflow.errors import EngineError, HardflowError
from hardflow.lock.model import LockDiff
from hardflow.spec import resolve_spec_arg

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


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
    """Implements hardflow.progress.Progress with rich bars on stderr."""

    def __init__(self, bar: RichProgress | None) -> None:
        self.bar = bar

    def task(self, description: str, total: int | None = None, bytes_: bool = False) -> Any:
        if self.bar is None:
            from hardflow.progress import NullProgress

            return NullProgress().task(description, total)
        return _Task(self.bar, self.bar.add_task(description, total=total, bytes_=bytes_))

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message)


@contextmanager
def reporter(enabled: bool) -> Iterator[RichReporter]:
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


class _CountColumn(MofNCompleteColumn):
    """Bytes for download/compress tasks, counts for the others."""

    def __init__(self) -> None:
        super().__init__()
        self._dl = DownloadColumn()
        self._speed = TransferSpeedColumn()

    def render(self, task: Any) -> Any:
        if task.fields.get("bytes_"):
            return self._dl.render(task)
        if task.total is None:
            return ""
        return super().render(task)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _print_diff(diff: LockDiff) -> None:
    for name, version in diff.added:
        out.print(f"  [green]+ {name} {version}[/]")
    for name, version in diff.removed:
        out.print(f"  [red]- {name} {version}[/]")
    for name, old, new in diff.changed:
        out.print(f"  [yellow]~ {name} {old} → {new}[/]")


@cli.command()
@spec_option
@lock_option
@click.option("--update", is_flag=True, help="Re-resolve everything to the newest versions.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def lock(spec_arg: str | None, lock_arg: Path | None, update: bool, as_json: bool) -> None:
    """Pin the Debian closure and the Python set (with hashes) into the lock file."""
    from hardflow.lock.resolve import make_lock

    spec, lock_path = resolve_spec_arg(spec_arg)
    lock_path = lock_arg or lock_path
    with reporter(not as_json) as rep:
        outcome = make_lock(spec, lock_path, update=update, progress=rep)
    diff = outcome.diff
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "lock": str(outcome.path),
                    "up_to_date": outcome.up_to_date,
                    "debian_packages": len(outcome.lock.debs),
                    "python_packages": len(outcome.lock.wheels),
                    "added": [list(x) for x in diff.added],
                    "removed": [list(x) for x in diff.removed],
                    "upgraded": [list(x) for x in diff.changed],
                }
            )
        )
        return
    if outcome.up_to_date:
        out.print(f"{outcome.path}: up to date with {spec.source} (use --update to refresh)")
        return
    out.print(
        f"wrote {outcome.path}: {len(outcome.lock.debs)} Debian packages, "
        f"{len(outcome.lock.wheels)} Python packages (Debian mirror from {outcome.mirrors})"
    )
    if diff.empty:
        out.print("  no version changed")
    _print_diff(diff)


@cli.command()
@spec_option
@lock_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output directory (default: ./out/NAME-TAG).",
)
@click.option("--offline", is_flag=True, help="Build from the download cache alone.")
@click.option(
    "--cache-dir", type=click.Path(path_type=Path, file_okay=False), help="Download cache."
)
@click.option("--source-date-epoch", type=int, envvar="SOURCE_DATE_EPOCH", help="Timestamp.")
@click.option("--load", is_flag=True, help="Load the image into podman or docker.")
@click.option(
    "--check-reproducible",
    is_flag=True,
    help="Build twice in separate directories and compare every digest (writes no output).",
)
@click.option(
    "--separate-caches", is_flag=True, help="With --check-reproducible: a fresh cache for B."
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd"]),
    default="gzip",
    show_default=True,
    help="Layer compression of the OCI layout (the docker-archive is always gzip).",
)
@click.option(
    "--no-layer-cache",
    is_flag=True,
    help="Rebuild every layer instead of reusing finished layers from the cache.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary on stdout.")
def build(
    spec_arg: str | None,
    lock_arg: Path | None,
    out_dir: Path | None,
    offline: bool,
    cache_dir: Path | None,
    source_date_epoch: int | None,
    load: bool,
    check_reproducible: bool,
    separate_caches: bool,
    compression: str,
    no_layer_cache: bool,
    as_json: bool,
) -> None:
    """Build the image from its spec and lock: an OCI layout, a docker-archive, SBOMs and
    provenance."""
    from hardflow.build.pipeline import BuildOptions
    from hardflow.build.pipeline import build as run_build
    from hardflow.lock.fetch import Cache
    from hardflow.lock.model import read_lock

    spec, lock_path = resolve_spec_arg(spec_arg)
    lock_path = lock_arg or lock_path
    locked = read_lock(lock_path)
    out_dir = out_dir or _default_out(spec.name, spec.tag)
    options = BuildOptions(
        out_dir=out_dir,
        cache=Cache(cache_dir, offline=offline),
        source_date_epoch=source_date_epoch,
        compression="zstd" if compression == "zstd" else "gzip",
        layer_cache=not no_layer_cache,
    )
    if check_reproducible:
        from hardflow.build.reproduce import check_reproducible as check
        from hardflow.build.reproduce import render_report

        with reporter(not as_json) as rep:
            report = check(spec, locked, lock_path, options, separate_caches, rep)
        if as_json:
            out.print_json(json.dumps(report.to_json()))
        else:
            for line in render_report(report):
                out.print(escape(line))
        if not report.reproducible:
            sys.exit(1)
        return
    with reporter(not as_json) as rep:
        result = run_build(spec, locked, lock_path, options, rep)
        loaded = None
        if load:
            from hardflow.run.engine import detect_engine, load_archive

            engine = detect_engine()
            assert result.image.archive_path is not None
            rep.log(f"loading into {engine.name}…")
            loaded = load_archive(engine, result.image.archive_path)
    summary = result.summary()
    summary["loaded"] = loaded
    if as_json:
        out.print_json(json.dumps(summary))
        return
    img = result.image
    out.print(f"[bold]{img.reference}[/]  {img.manifest_digest}")
    out.print(
        f"  {len(img.layers)} layers, {result.files} files, "
        f"{_mb(img.uncompressed_size)} uncompressed, {_mb(img.compressed_size)} "
        f"{result.compression}; {len(result.layers_built)} layers built, "
        f"{len(result.layers_cached)} from the layer cache"
    )
    for layer in img.layers:
        origin = "cached" if layer.name in result.layers_cached else "built"
        out.print(
            f"    {layer.name:<16} {_mb(layer.size):>10}  {layer.file_count:>6} files  "
            f"{layer.digest[:19]}  {origin}"
        )
    out.print(
        f"  {result.debian_packages} Debian packages, {result.python_packages} Python packages, "
        f"SOURCE_DATE_EPOCH={result.source_date_epoch}"
    )
    out.print(f"  OCI layout:     {img.layout_dir}")
    if img.archive_path:
        out.print(f"  docker-archive: {img.archive_path}")
    if loaded:
        out.print(f"  loaded as:      {loaded}")
    out.print(f"  built in {result.timings.get('total', 0):.1f}s")


DEFAULT_OUT = Path("out")


def _default_out(spec_name: str, tag: str) -> Path:
    return DEFAULT_OUT / f"{spec_name.replace('/', '_')}-{tag}"


name_option = click.option(
    "--name", default="hardflow", show_default=True, help="Container name."
)


@cli.command()
@click.option("--image", help="Image reference (default: the embedded default spec's).")
@click.option(
    "--dags",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="DAG folder, mounted read-only at /opt/airflow/dags.",
)
@click.option("--port", default=8080, show_default=True, help="Host port on 127.0.0.1.")
@click.option("--detach", "-d", is_flag=True, help="Return once healthy; keep it running.")
@name_option
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for health.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
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
    ref = image or _default_reference()
    req = RunRequest(
        image=ref,
        dags=dags.resolve() if dags else None,
        port=port,
        detach=detach,
        name=name,
        command=command or ("standalone",),
        health_timeout=timeout,
    )
    with _status(as_json, f"starting {name}") as say:
        result = start(engine, req, say)
    if as_json:
        out.print_json(json.dumps({
            "name": result.name, "url": result.url, "volume": result.volume,
            "username": result.username, "seconds_to_healthy": round(result.seconds_to_healthy, 2),
        }))
    else:
        out.print(f"[bold green]healthy[/] in {result.seconds_to_healthy:.1f}s: {result.url}")
        out.print(f"  user: {result.username}; password: `hardflow password --name {name}`")
        out.print(f"  stop: `hardflow stop --name {name}`; logs: `hardflow logs --name {name}`")
    if not detach:
        code = attach(engine, name, on_progress=lambda m: err.print(m))
        sys.exit(code or 0)


@contextmanager
def _status(quiet: bool, first: str) -> Iterator[Any]:
    if quiet:
        yield lambda _m: None
        return
    with err.status(first) as st:
        def say(message: str) -> None:
            st.update(message)
            err.print(f"[dim]· {escape(message)}[/]")

        yield say


def _default_reference() -> str:
    from hardflow.spec import load_embedded

    spec = load_embedded()
    return f"localhost/{spec.reference}"


@cli.command()
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
        on_progress=lambda m: err.print(m),
    )
    out.print(f"{name} stopped (exit code {code})")


@cli.command()
@name_option
@click.option("--follow", "-f", is_flag=True, help="Stream new output.")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs(name: str, follow: bool, tail: int | None) -> None:
    """Show the logs of a container started by `hardflow run`."""
    from hardflow.run.engine import detect_engine
    from hardflow.run.runner import show_logs

    text = show_logs(detect_engine(), name, follow=follow, tail=tail)
    if text:
        sys.stdout.write(text)


@cli.command()
@name_option
def password(name: str) -> None:
    """Print the generated admin password of a running container."""
    from hardflow.run.engine import detect_engine
    from hardflow.run.runner import admin_password

    out.print(admin_password(detect_engine(), name) or "")


@cli.command()
@click.option("--port", default=8080, show_default=True, help="Host port on 127.0.0.1.")
@click.option("--name", default="hardflow-demo", show_default=True, help="Container name.")
@click.option("--keep/--stop", default=True, help="Keep Airflow running afterwards (default).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def demo(port: int, name: str, keep: bool, as_json: bool) -> None:
    """Build the default image if needed, run it hardened, run the example DAG, report."""
    from hardflow.build.pipeline import BuildOptions
    from hardflow.build.pipeline import build as run_build
    from hardflow.lock.fetch import Cache
    from hardflow.lock.model import read_lock
    from hardflow.run.engine import container_exists, detect_engine, image_exists, load_archive
    from hardflow.run.runner import RunRequest, start, stop_container, trigger_dag

    engine = detect_engine()
    spec, lock_path = resolve_spec_arg(None)
    ref = f"localhost/{spec.reference}"
    locked = read_lock(lock_path)
    out_dir = _default_out(spec.name, spec.tag)
    summary_path = out_dir / "build.json"
    fresh = False
    if summary_path.is_file():
        previous = json.loads(summary_path.read_text())
        fresh = previous.get("spec_checksum") == spec.checksum() and (
            previous.get("lock_checksum") == locked.spec_checksum
        )
    if not fresh or not image_exists(engine, ref):
        with reporter(not as_json) as rep:
            result = run_build(spec, locked, lock_path, BuildOptions(out_dir, Cache()), rep)
        assert result.image.archive_path is not None
        load_archive(engine, result.image.archive_path)
        err.print(f"built and loaded {ref} ({result.image.manifest_digest[:19]})")
    if container_exists(engine, name):
        stop_container(engine, name, remove=True, remove_volume=True)
    with _status(as_json, f"starting {name}") as say:
        started = start(engine, RunRequest(image=ref, port=port, name=name), say)
        pw = started.password
        if pw is None:
            raise EngineError(f"{name}: no generated admin password found")
        run = trigger_dag(started.url, started.username, pw, "example", 600, on_progress=say)
    logs_ok = any("hello" in t.log for t in run.tasks)
    if not keep:
        stop_container(engine, name, remove=True, remove_volume=True)
    if as_json:
        out.print_json(json.dumps({
            "url": started.url, "seconds_to_healthy": round(started.seconds_to_healthy, 2),
            "dag_id": run.dag_id, "run_id": run.run_id, "state": run.state,
            "seconds_to_success": round(run.seconds, 2), "log_has_hello": logs_ok,
        }))
    else:
        colour = "green" if run.ok else "red"
        out.print(f"Airflow healthy in {started.seconds_to_healthy:.1f}s at {started.url}")
        out.print(
            f"DAG run {run.dag_id}/{run.run_id}: [bold {colour}]{run.state}[/] "
            f"in {run.seconds:.1f}s"
        )
        for t in run.tasks:
            said = [ln for ln in t.log.splitlines() if "hello" in ln and "echo" not in ln]
            tail = said[:1] or [ln for ln in t.log.splitlines() if "hello" in ln][:1]
            out.print(f"  task {t.task_id}: {t.state}  {escape(tail[0].strip()) if tail else ''}")
        if keep:
            out.print(f"  still running: `hardflow password --name {name}` for the admin password,"
                      f" `hardflow stop --name {name}` to stop it")
    if not run.ok or not logs_ok:
        sys.exit(1)


def _register_commands() -> None:
    from hardflow.cli.audit import audit
    from hardflow.cli.bench import bench
    from hardflow.cli.checkdags import check_dags_cmd
    from hardflow.cli.deploy import deploy
    from hardflow.cli.sbom import sbom
    from hardflow.cli.sign import keygen, push, sign, verify

    for command in (sbom, keygen, sign, verify, push, audit, deploy, bench, check_dags_cmd):
        cli.add_command(command)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> None:
    _register_commands()
    try:
        rv = cli.main(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except HardflowError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.diagnostics())}", highlight=False)
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


if __name__ == "__main__":
    main()
