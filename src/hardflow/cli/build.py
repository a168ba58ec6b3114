"""`hardflow build`: build an image from its spec and lock."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from hardflow.cli.console import out, print_json
from hardflow.cli.options import default_out, json_option, lock_option, spec_option
from hardflow.cli.progress import reporter
from hardflow.spec import resolve_spec_arg


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


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
    options = BuildOptions(
        out_dir=out_dir or default_out(spec.name, spec.tag),
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
            print_json(report.to_json())
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
        print_json(summary)
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
