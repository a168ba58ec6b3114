"""`hardflow keygen | sign | verify | push`: cosign-compatible signatures of OCI layouts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.markup import escape

from hardflow.cli.console import err, note, out, print_json, silent
from hardflow.cli.options import json_option as _json_option
from hardflow.errors import TrustError

image_argument = click.argument(
    "image", type=click.Path(path_type=Path, file_okay=False, exists=True)
)
password_file_option = click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Read the key password from FILE (default: $COSIGN_PASSWORD, else a prompt).",
)
tag_option = click.option("--tag", help="Which image of the layout (its ref.name), if several.")
json_option = _json_option("Machine-readable result.")


def _password(password_file: Path | None, *, confirm: bool) -> bytes:
    from hardflow.supply.keys import PASSWORD_ENV, read_password

    value = read_password(password_file, os.environ)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise TrustError(
            "no key password: set $COSIGN_PASSWORD or pass --password-file",
            hint=f"{PASSWORD_ENV}= (empty) means no password, as with cosign",
        )
    text: str = click.prompt(
        "Password for the private key", hide_input=True, confirmation_prompt=confirm,
        default="", show_default=False,
    )  # fmt: skip
    return text.encode("utf-8")


@click.command()
@click.option(
    "--output-key-prefix",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("cosign"),
    show_default=True,
    help="Write PREFIX.key (encrypted, mode 0600) and PREFIX.pub.",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@password_file_option
@json_option
def keygen(output_key_prefix: Path, force: bool, password_file: Path | None, as_json: bool) -> None:
    """Generate an ECDSA P-256 key pair in cosign's format (cosign can use it too)."""
    from hardflow.supply.keys import write_key_pair

    password = _password(password_file, confirm=True)
    pair = write_key_pair(output_key_prefix, password, force=force)
    if as_json:
        print_json({
            "private_key": str(pair.private_path), "public_key": str(pair.public_path),
            "key_id": pair.key_id, "encrypted": bool(password),
        })  # fmt: skip
        return
    out.print(f"private key: {pair.private_path} (encrypted, mode 0600)")
    out.print(f"public key:  {pair.public_path}  ({pair.key_id})")
    if not password:
        err.print("[yellow]warning:[/] the private key is encrypted with an empty password")


@click.command()
@click.option(
    "--key", "key_path", required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Private key (cosign's encrypted PEM).",
)  # fmt: skip
@click.option(
    "--identity",
    help="Docker reference the signature names: the repository it will be pulled from "
    "(default: the layout's image name, without tag).",
)
@password_file_option
@tag_option
@json_option
@image_argument
def sign(
    key_path: Path,
    identity: str | None,
    password_file: Path | None,
    tag: str | None,
    as_json: bool,
    image: Path,
) -> None:
    """Sign the image of the OCI layout IMAGE (e.g. out/NAME-TAG/oci), cosign-style; a
    multi-platform image's index and every platform's manifest (cosign sign --recursive)."""
    from hardflow.supply.keys import load_private_key
    from hardflow.supply.sign import sign_image

    key = load_private_key(key_path, _password(password_file, confirm=False))
    # the image and the build's SBOM and provenance envelopes beside the layout, signed and
    # attached in one step: if any part fails, nothing is written (no half-signed layout)
    result = sign_image(image, key, identity=identity, tag=tag)
    attestations = result.attestation_manifest
    platforms = [
        {"platform": p.platform, "manifest_digest": p.manifest_digest,
         "signature_manifest": p.signature_manifest,
         "attestation_manifest": p.attestation_manifest}
        for p in result.platforms
    ]  # fmt: skip
    if as_json:
        print_json({
            "manifest_digest": result.manifest_digest, "identity": result.identity,
            "signature_tag": result.tag, "signature_manifest": result.signature_manifest,
            "key_id": result.key_id, "attestation_manifest": attestations,
            **({"platforms": platforms} if platforms else {}),
        })  # fmt: skip
        return
    kind = "image index" if result.platforms else "image"
    out.print(f"signed {kind} {result.manifest_digest} as [bold]{escape(result.identity)}[/]")
    out.print(f"  with key {result.key_id}; stored as {image}:{result.tag}")
    for p in result.platforms:
        attached = " + provenance and SBOM attestations" if p.attestation_manifest else ""
        out.print(f"  platform {p.platform}: signed {p.manifest_digest}{attached}")
    if attestations:
        out.print(f"  signed and attached provenance + SBOM attestations ({attestations[:19]}…)")
    elif not any(p.attestation_manifest for p in result.platforms):
        out.print(f"  no build attestations beside {image} (provenance/SBOM not attached)")


@click.command()
@click.option(
    "--key", "key_path", required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Public key (PEM).",
)  # fmt: skip
@click.option("--identity", help="Also require the signature to name this repository.")
@tag_option
@json_option
@image_argument
def verify(
    key_path: Path, identity: str | None, tag: str | None, as_json: bool, image: Path
) -> None:
    """Verify the OCI layout IMAGE: every blob's digest, its signature and attestations
    (a multi-platform image: the index's and every platform's)."""
    from hardflow.supply.keys import load_public_key
    from hardflow.supply.verify import VerifyError, verify_layout

    try:
        report = verify_layout(image, load_public_key(key_path), identity=identity, tag=tag)
    except VerifyError as exc:
        if as_json:
            print_json(exc.report.to_json())
            sys.exit(1)
        raise
    if as_json:
        print_json(report.to_json())
        return
    out.print(f"[bold green]verified[/] {report.manifest_digest} under key {report.key_id}")
    out.print(f"  {report.blobs_checked} blobs match their digests")
    for s in report.signatures:
        mark = "[green]ok[/]" if s.ok else f"[dim]skipped: {escape(s.reason)}[/]"
        out.print(f"  signature for {escape(str(s.identity))}: {mark}")
    for a in report.attestations:
        out.print(f"  attestation {escape(str(a.predicate_type))}: [green]ok[/]")
    for p in report.platforms:
        out.print(
            f"  platform {escape(p.platform)}: {p.manifest_digest} signed"
            + (f", {len(p.attestations)} attestation(s)" if p.attestations else "")
            + " [green]ok[/]"
        )


@click.command()
@click.option(
    "--sign-key", "key_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Sign for the destination repository first (private key, cosign's format).",
)  # fmt: skip
@password_file_option
@click.option(
    "--insecure", is_flag=True, help="Plain HTTP / unverified TLS (a loopback test registry)."
)
@click.option(
    "--authfile", type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Registry credentials (containers-auth.json), as for skopeo/podman.",
)  # fmt: skip
@tag_option
@json_option
@image_argument
@click.argument("reference")
def push(
    key_path: Path | None,
    password_file: Path | None,
    insecure: bool,
    authfile: Path | None,
    tag: str | None,
    as_json: bool,
    image: Path,
    reference: str,
) -> None:
    """Copy IMAGE (an OCI layout) to the registry REFERENCE with signatures and attestations."""
    from hardflow.supply.keys import load_private_key
    from hardflow.supply.push import destination_reference, push_layout
    from hardflow.supply.sign import sign_layout
    from hardflow.supply.verify import repository_of

    if key_path is not None:
        from hardflow.oci.attach import image_entry

        entry = image_entry(image, tag)
        repo = repository_of(destination_reference(reference, entry.tag))
        key = load_private_key(key_path, _password(password_file, confirm=False))
        sign_layout(image, key, identity=repo, tag=tag)

    result = push_layout(
        image, reference, tag=tag, tls_verify=not insecure, authfile=authfile,
        on_progress=silent if as_json else note,
    )  # fmt: skip
    if as_json:
        print_json(result.to_json())
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    out.print(f"pushed [bold]{escape(result.reference)}[/]  {result.manifest_digest}")
    for platform, digest in result.platforms:
        out.print(f"  platform {escape(platform)}: {digest}")
    for copy in result.copies[1:]:
        out.print(f"  + {copy.what}: {escape(copy.destination.removeprefix('docker://'))}")
