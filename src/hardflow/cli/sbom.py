"""`hardflow sbom IMAGE`: the SPDX or CycloneDX SBOM of a built image."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hardflow.cli.console import err, out


@click.command()
@click.argument("image", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["spdx", "cyclonedx"]),
    default="spdx",
    show_default=True,
    help="SPDX 2.3 JSON or CycloneDX 1.6 JSON.",
)
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The lock the image was built from (default: the embedded lock its "
    "dev.hardflow.lock.checksum label names).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the SBOM to FILE (default: standard output).",
)
@click.option(
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="For an image index that lists several platforms: the one to describe.",
)
@click.option("--json", "as_json", is_flag=True, help="With -o: a summary as JSON on stdout.")
def sbom(
    image: Path,
    fmt: str,
    lock_path: Path | None,
    output: Path | None,
    platform: str | None,
    as_json: bool,
) -> None:
    """Write the SBOM of IMAGE: an OCI layout directory (or a build output directory holding
    oci/) or a docker-archive. Lists every Debian package and Python distribution with its
    PURL, licence and the sha256 of the .deb or wheel it was installed from."""
    from hardflow.fsutil import atomic_write
    from hardflow.lock.model import read_lock
    from hardflow.supply.sbom import sbom_from_image

    lock = read_lock(lock_path) if lock_path else None
    result = sbom_from_image(
        image, lock, "spdx" if fmt == "spdx" else "cyclonedx", platform=platform
    )
    inv, data = result.inventory, result.data
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
        return
    atomic_write(output, data)
    summary = {
        "sbom": str(output),
        "format": fmt,
        "image": inv.image.reference,
        "manifest_digest": inv.image.manifest_digest or None,
        "config_digest": inv.image.config_digest,
        "debian_packages": len(inv.debs),
        "python_packages": len(inv.wheels),
    }
    if as_json:
        out.print_json(json.dumps(summary))
        return
    err.print(
        f"wrote {output}: {fmt} SBOM of {inv.image.reference}, {len(inv.debs)} Debian "
        f"packages, {len(inv.wheels)} Python distributions"
    )
