"""`hardflow sbom IMAGE`: the SPDX or CycloneDX SBOM of a built image."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hardflow.cli.console import err, out


def check_platform(image: Path, platform: str | None) -> str | None:
    """For a multi-platform image, ``platform`` must name one of its platforms (an SBOM
    describes one): a typed error listing them otherwise. Returns the platform chosen."""
    from hardflow.errors import ImageError
    from hardflow.oci.reader import Platform, open_image

    path = image
    if image.is_dir() and not (image / "index.json").exists() and (image / "oci").is_dir():
        path = image / "oci"
    with open_image(path) as reader:
        listed = list(dict.fromkeys(
            str(m.platform) for m in reader.manifests()
            if not m.attachment and m.platform is not None
        ))  # fmt: skip
    wanted = Platform.parse(platform) if platform is not None else None
    if len(listed) < 2:
        return platform
    if wanted is None:
        raise ImageError(
            f"{image} is a multi-platform image ({', '.join(listed)}); an SBOM describes one "
            "platform",
            hint=f"say which with --platform, e.g. --platform {listed[-1]}",
        )
    if not any(Platform.parse(p).matches(wanted) for p in listed):
        raise ImageError(
            f"{image} has no platform {wanted} (its platforms: {', '.join(listed)})",
            hint=f"say which with --platform, e.g. --platform {listed[0]}",
        )
    return str(wanted)


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
    help="A multi-platform image (an image index): the platform to describe (required).",
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

    platform = check_platform(image, platform)
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
        **({"platform": platform} if platform else {}),
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
