"""`hardflow build`: build an image from its spec and lock.

``--with``/``--debian`` add requirements and Debian packages to the spec for one command; the
lock of that spec is kept in the download cache (made the first time, reused after). When the
spec bakes a DAG folder, the new image loads it with Airflow's DagBag before the command
succeeds (``--no-check-dags`` skips that).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from hardflow.cli.console import out, print_json
from hardflow.cli.options import default_out, json_option, lock_option, spec_option
from hardflow.cli.progress import reporter
from hardflow.errors import EngineError
from hardflow.progress import Progress
from hardflow.spec import ImageSpec, resolve_spec_arg

if TYPE_CHECKING:
    from hardflow.build.pipeline import BuildResult
    from hardflow.dagcheck.model import CheckReport
    from hardflow.lock.model import Lock


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _lock_for(
    spec: ImageSpec,
    spec_lock: Path,
    lock_arg: Path | None,
    additions: bool,
    rep: Progress,
) -> tuple[Lock, Path, bool]:
    """(lock, its path, whether it was made now). With additions the lock of the derived spec
    is kept in the cache (or at --lock): made once, keeping the base lock's pins where they
    fit, then reused without resolving anything."""
    from hardflow.lock.model import read_lock

    if not additions:
        path = lock_arg or spec_lock
        return read_lock(path), path, False
    from hardflow.lock.resolve import derived_lock_path, ensure_lock

    path = lock_arg or derived_lock_path(spec)
    base = read_lock(spec_lock) if spec_lock.is_file() else None
    outcome = ensure_lock(spec, path, rep, prefer=base)
    return outcome.lock, path, not outcome.up_to_date


def _platform_of(result: BuildResult) -> str:
    """The platform whose image ``result.image`` is (multi-platform builds)."""
    return next(p for p, one in result.platforms if one.image.manifest_digest ==
                result.image.manifest_digest)  # fmt: skip


def _check_baked_dags(spec: ImageSpec, result: BuildResult, rep: Progress) -> CheckReport:
    """Load the baked DAG folder with Airflow's DagBag inside the new image."""
    from hardflow.dagcheck.run import BuiltImage, check_built_image
    from hardflow.run.engine import detect_engine

    try:
        engine = detect_engine()
    except EngineError as exc:
        raise EngineError(
            f"cannot check the baked DAGs ({spec.dags}) in the new image: {exc.message}",
            hint="install podman (or start docker), or build with --no-check-dags to skip "
            "the check",
        ) from None
    img = result.image
    built = BuiltImage(
        layout=img.layout_dir,
        archive=img.archive_path,
        reference=img.reference,
        dags=Path(spec.dags),
        image_dags=f"{spec.home.rstrip('/')}/dags",
        image_plugins=f"{spec.home.rstrip('/')}/plugins",
    )
    rep.log(f"checking the baked DAGs in the new image with {engine.name}…")
    return check_built_image(engine, built, on_progress=rep.log)


def _print_check(report: CheckReport) -> None:
    from hardflow.cli.checkdags import _STYLES
    from hardflow.dagcheck.report import render_text

    for line in render_text(report):
        style = _STYLES.get(line.style or "")
        out.print(f"[{style}]{escape(line.text)}[/]" if style else escape(line.text))


@click.command()
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
@click.option(
    "--with",
    "with_",
    metavar="REQUIREMENT",
    multiple=True,
    help="Add a Python requirement to the spec for this build (repeatable); the lock is made "
    "once and kept in the download cache.",
)
@click.option(
    "--debian",
    metavar="PACKAGE",
    multiple=True,
    help="Add a Debian package to the spec for this build (repeatable).",
)
@click.option(
    "--check-dags/--no-check-dags",
    "check_dags",
    default=True,
    show_default=True,
    help="Load the spec's baked DAG folder with Airflow's DagBag in the new image (needs "
    "podman or docker); errors fail the build.",
)
@click.option(
    "--platform",
    "platforms",
    metavar="OS/ARCH[,OS/ARCH]",
    help="Build these platforms of the spec's 'platforms' (linux/amd64, linux/arm64; default: "
    "all of them). Several make one OCI image index; the docker-archive and --load hold the "
    "host's platform.",
)
@json_option("Machine-readable summary on stdout.")
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
    with_: tuple[str, ...],
    debian: tuple[str, ...],
    check_dags: bool,
    platforms: str | None,
    as_json: bool,
) -> None:
    """Build the image from its spec and lock: an OCI layout, a docker-archive, SBOMs and
    provenance."""
    from hardflow.build.pipeline import BuildOptions
    from hardflow.build.platforms import build_image as run_build
    from hardflow.lock.fetch import Cache
    from hardflow.spec import parse_platforms, platform_architecture, with_additions

    spec, spec_lock = resolve_spec_arg(spec_arg)
    additions = bool(with_ or debian)
    if additions:
        spec = with_additions(spec, requirements=with_, packages=debian)
    with reporter(not as_json) as rep:
        locked, lock_path, lock_made = _lock_for(spec, spec_lock, lock_arg, additions, rep)
    if additions and not as_json:
        what = "made and kept" if lock_made else "reused"
        out.print(f"lock: {what} {escape(str(lock_path))}")
    options = BuildOptions(
        out_dir=out_dir or default_out(spec.name, spec.tag),
        cache=Cache(cache_dir, offline=offline),
        source_date_epoch=source_date_epoch,
        compression="zstd" if compression == "zstd" else "gzip",
        layer_cache=not no_layer_cache,
        architectures=tuple(
            platform_architecture(p) for p in parse_platforms(platforms.split(","), "--platform")
        )
        if platforms is not None
        else (),
    )
    for arch in options.architectures:
        spec.for_architecture(arch)  # a platform the spec (and its lock) lacks: say so now
    if check_reproducible:
        from hardflow.build.reproduce import check_reproducible as check
        from hardflow.build.reproduce import render_report

        with reporter(not as_json) as rep:
            report = check(spec, locked, lock_path, options, separate_caches, rep)
        if as_json:
            print_json(report.to_json())
        else:
            for line in render_report(report):
                out.print(escape(line))
        if not report.reproducible:
            sys.exit(1)
        return
    dag_report: CheckReport | None = None
    with reporter(not as_json) as rep:
        result = run_build(spec, locked, lock_path, options, rep)
        loaded = None
        if spec.dags and check_dags:
            t = time.monotonic()
            dag_report = _check_baked_dags(spec, result, rep)
            result.timings["check_dags"] = time.monotonic() - t
        if load and (dag_report is None or dag_report.ok):
            from hardflow.run.engine import detect_engine, load_archive

            engine = detect_engine()
            assert result.image.archive_path is not None
            rep.log(f"loading into {engine.name}…")
            loaded = load_archive(engine, result.image.archive_path)
    summary: dict[str, Any] = result.summary()
    summary["loaded"] = loaded
    summary["lock"] = {"path": str(lock_path), "made": lock_made}
    summary["check_dags"] = dag_report.to_json() if dag_report is not None else None
    if as_json:
        print_json(summary)
        if dag_report is not None and not dag_report.ok:
            sys.exit(1)
        return
    img = result.image
    if result.platforms:
        out.print(f"[bold]{img.reference}[/]  {result.index_digest} (image index)")
        for platform, one in result.platforms:
            out.print(
                f"  {platform:<12} {one.image.manifest_digest}  {len(one.image.layers)} layers, "
                f"{_mb(one.image.compressed_size)} {one.compression}, "
                f"{one.debian_packages} Debian + {one.python_packages} Python packages"
            )
        out.print(f"  the layers of {_platform_of(result)} (in the docker-archive):")
    else:
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
    if spec.dags and not check_dags:
        out.print("  baked DAGs not checked (--no-check-dags)")
    if dag_report is not None:
        seconds = result.timings.get("check_dags", 0)
        out.print(f"  baked DAGs checked in the new image in {seconds:.1f}s:")
        _print_check(dag_report)
        if not dag_report.ok:
            out.print(
                f"[bold red]the baked DAGs of {escape(str(spec.dags))} do not load in the "
                f"new image[/] (written to {escape(str(img.layout_dir.parent))}, not loaded): "
                "fix them and build again, or build with --no-check-dags"
            )
            sys.exit(1)
