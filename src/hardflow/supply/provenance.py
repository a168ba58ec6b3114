"""in-toto statements about an image: SLSA v1 provenance and the SBOMs as attestations.

Every statement has the image's manifest digest as its subject and is serialized
deterministically (sorted keys, compact), so one build gives the same bytes anywhere. At build
time they are written as *unsigned* DSSE envelopes (see :func:`write_supply_chain`); signing
later adds a signature over the same payload (:func:`hardflow.supply.dsse.sign_envelope`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import zstandard

from hardflow import __version__
from hardflow.errors import BuildError, TrustError
from hardflow.fsutil import atomic_write
from hardflow.lock.model import Lock
from hardflow.oci.writer import ImageResult, canonical_json
from hardflow.spec import ImageSpec
from hardflow.supply.dsse import Envelope, Signer, envelope, parse_envelope
from hardflow.supply.sbom import (
    FILE_NAMES,
    FORMATS,
    Format,
    document,
    inventory,
    read_image,
    render,
)
from hardflow.supply.sbom.image import ImageSubject
from hardflow.supply.sbom.inventory import deb_purl, pypi_purl
from hardflow.supply.sbom.layermemo import DiskLayerMemo

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
PREDICATE_TYPES: dict[Format, str] = {
    "spdx": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
}
PROJECT_URL = "https://github.com/hardflow/hardflow"
BUILD_TYPE = f"{PROJECT_URL}/build-types/oci-image/v1"
BUILDER_ID = f"{PROJECT_URL}/builder/hardflow-cli"
PROVENANCE_FILE = "provenance.intoto.json"
ATTESTATION_FILES: dict[Format, str] = {
    "spdx": "sbom.spdx.intoto.json",
    "cyclonedx": "sbom.cdx.intoto.json",
}


def subject(image: ImageSubject) -> list[dict[str, Any]]:
    digest = image.manifest_digest
    if not digest.startswith("sha256:"):
        raise BuildError(
            f"image {image.reference}: no OCI manifest digest to make a statement about"
        )
    return [{"name": image.name, "digest": {"sha256": digest.split(":", 1)[1]}}]


def statement(image: ImageSubject, predicate_type: str, predicate: Any) -> bytes:
    """An in-toto v1 statement (canonical JSON bytes) about ``image``."""
    return canonical_json(
        {
            "_type": STATEMENT_TYPE,
            "subject": subject(image),
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


def resolved_dependencies(lock: Lock, distro: str) -> list[dict[str, Any]]:
    """Every input file of the build with its sha256: the lock, each .deb and each wheel."""
    deps: list[dict[str, Any]] = [
        {
            "name": "hardflow.lock.json",
            "digest": {"sha256": hashlib.sha256(lock.to_json().encode()).hexdigest()},
            "mediaType": "application/json",
        }
    ]
    for d in sorted(lock.debs, key=lambda d: d.name):
        deps.append(
            {
                "uri": deb_purl(d.name, d.version, d.architecture, distro),
                "name": d.filename,
                "digest": {"sha256": d.sha256},
                "annotations": {"suite": d.suite, "size": d.size},
            }
        )
    for w in sorted(lock.wheels, key=lambda w: w.name):
        deps.append(
            {
                "uri": pypi_purl(w.name, w.version),
                "name": w.filename,
                "digest": {"sha256": w.sha256},
            }
        )
    return deps


def builder_versions() -> dict[str, str]:
    """What the image's bytes depend on besides the lock, the spec and hardflow's own source:
    zlib compresses gzip layers (the library loaded at run time: Debian 12's on the README's
    machines), libzstd (bundled in the zstandard wheel) zstd layers, ``installer`` writes the
    installed wheels' files. The Python running the builder is recorded too (the layers are
    written by hand, not with its tarfile)."""
    return {
        "hardflow": __version__,
        "python": platform.python_version(),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "libzstd": ".".join(str(n) for n in zstandard.ZSTD_VERSION),
        "zstandard": metadata.version("zstandard"),
        "installer": metadata.version("installer"),
    }


def build_umask() -> str:
    """The builder's umask (octal), read without changing it: the image's interpreter
    compiles ``.pyc`` files (and makes their ``__pycache__`` folders) under it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return line.split()[1]
    except (OSError, IndexError):
        pass
    return "unknown"


def provenance_predicate(
    spec: ImageSpec, lock: Lock, source_date_epoch: int, distro: str
) -> dict[str, Any]:
    """A SLSA v1 provenance predicate. No timestamps of the build run and no host paths:
    the same inputs and builder versions (:func:`builder_versions`) and umask give the same
    predicate on any machine."""
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "spec": {
                    "name": spec.name,
                    "tag": spec.tag,
                    "checksum": spec.checksum(),
                    "lockChecksum": spec.lock_checksum(),
                },
                "lock": {
                    "specChecksum": lock.spec_checksum,
                    "sha256": hashlib.sha256(lock.to_json().encode()).hexdigest(),
                },
                "sourceDateEpoch": source_date_epoch,
            },
            "internalParameters": {
                "architecture": spec.debian.architecture,
                "python": spec.python.version,
                "umask": build_umask(),
                "debianSuites": [
                    {"name": s.name, "date": s.date}
                    for s in sorted(lock.suites, key=lambda s: s.name)
                ],
            },
            "resolvedDependencies": resolved_dependencies(lock, distro),
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": builder_versions()},
        },
    }


def provenance_statement(
    image: ImageSubject, spec: ImageSpec, lock: Lock, source_date_epoch: int, distro: str
) -> bytes:
    return statement(
        image, SLSA_PROVENANCE, provenance_predicate(spec, lock, source_date_epoch, distro)
    )


def sbom_statement(image: ImageSubject, fmt: Format, sbom: dict[str, Any]) -> bytes:
    return statement(image, PREDICATE_TYPES[fmt], sbom)


def write_supply_chain(
    built: ImageResult,
    source_date_epoch: int,
    lock: Lock,
    spec: ImageSpec,
    out_dir: Path,
    memo_dir: Path | None = None,
    platform: str | None = None,
) -> dict[str, Path]:
    """Write the SBOMs and the attestations of a fresh build into ``out_dir``.

    Files (each written atomically):

    * ``sbom.spdx.json``, ``sbom.cdx.json`` — the SBOM documents themselves;
    * ``provenance.intoto.json`` — SLSA provenance, an in-toto statement in an *unsigned* DSSE
      envelope;
    * ``sbom.spdx.intoto.json``, ``sbom.cdx.intoto.json`` — the SBOMs as in-toto attestations,
      in unsigned DSSE envelopes.

    Signing adds signatures to the envelopes later without changing their payloads. Returns
    the paths by key: ``spdx``, ``cyclonedx``, ``provenance``, ``spdx-attestation``,
    ``cyclonedx-attestation``. ``memo_dir``: where the build keeps what each layer holds for
    the SBOM, by digest (:mod:`~hardflow.supply.sbom.layermemo`), so unchanged layers are not
    read again. ``platform`` (``linux/arm64``): which image of a multi-platform layout.
    """
    memo = DiskLayerMemo(memo_dir) if memo_dir is not None else None
    files = read_image(built.layout_dir, memo=memo, platform=platform)
    image = files.subject
    if image.manifest_digest != built.manifest_digest:
        raise BuildError(
            f"{built.layout_dir}: manifest digest is {image.manifest_digest}, "
            f"expected {built.manifest_digest} from the build"
        )
    inv = inventory(files, lock)
    outputs: dict[str, tuple[Path, bytes]] = {}
    for fmt in FORMATS:
        doc = document(inv, fmt)
        outputs[fmt] = (out_dir / FILE_NAMES[fmt], render(doc))
        outputs[f"{fmt}-attestation"] = (
            out_dir / ATTESTATION_FILES[fmt],
            envelope(sbom_statement(image, fmt, doc), None),
        )
    outputs["provenance"] = (
        out_dir / PROVENANCE_FILE,
        envelope(
            provenance_statement(image, spec, lock, source_date_epoch, inv.distro), None
        ),
    )
    for path, data in outputs.values():
        atomic_write(path, data)
    return {key: path for key, (path, _) in outputs.items()}


def attestation_files(out_dir: Path) -> list[Path]:
    """The build-time envelopes beside an OCI layout: provenance, SPDX, CycloneDX."""
    return [out_dir / PROVENANCE_FILE] + [out_dir / ATTESTATION_FILES[f] for f in FORMATS]


def signed_attestations(
    manifest_digest: str,
    sign: Signer,
    keyid: str = "",
    out_dir: Path | None = None,
    layout_dir: Path | None = None,
) -> list[bytes]:
    """The build-time envelopes, each re-signed with ``sign`` (earlier signatures dropped).

    Each statement's subject must be ``manifest_digest``: an attestation written for another
    build is refused rather than signed.
    """
    if out_dir is None:
        if layout_dir is None:
            raise ValueError("give out_dir or layout_dir")
        out_dir = layout_dir.parent
    signed: list[bytes] = []
    for path in attestation_files(out_dir):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrustError(
                f"no attestation at {path} ({exc.strerror})",
                hint="`hardflow build` writes it beside the OCI layout",
            ) from None
        env = parse_envelope(data, str(path))
        digests = _subject_digests(env.payload, str(path))
        if manifest_digest not in digests:
            raise TrustError(
                f"{path}: its statement is about {', '.join(digests) or 'nothing'}, "
                f"not the image {manifest_digest}",
                hint="rebuild, or sign the image the attestation was written for",
            )
        signed.append(Envelope(env.payload_type, env.payload).signed(sign, keyid).to_json())
    return signed


def _subject_digests(payload: bytes, origin: str) -> list[str]:
    try:
        doc = json.loads(payload)
        digests = [s["digest"]["sha256"] for s in doc["subject"]]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise TrustError(
            f"{origin}: the payload is not an in-toto statement "
            "(expected subject[].digest.sha256)"
        ) from None
    if not all(isinstance(d, str) for d in digests):
        raise TrustError(f"{origin}: subject[].digest.sha256 must be strings; found {digests!r}")
    return [f"sha256:{d}" for d in digests]


def attest(
    layout_dir: Path,
    sign: Signer,
    keyid: str = "",
    out_dir: Path | None = None,
    tag: str | None = None,
) -> str:
    """Sign the build-time attestations and attach them to the layout's image (the one tagged
    ``tag`` when it holds several) the way cosign stores attestations (``sha256-<hex>.att``).
    Returns the attachment manifest's digest. Everything is checked before anything is
    written. (:func:`hardflow.supply.sign.sign_image` signs and attests in one step.)"""
    from hardflow.oci.attach import ATT_SUFFIX, attach_attestations
    from hardflow.supply.verify import attachment, image_entry

    layout_dir = layout_dir.absolute()
    digest = image_entry(layout_dir, tag).digest
    envelopes = signed_attestations(digest, sign, keyid, out_dir, layout_dir)
    attachment(layout_dir, digest, ATT_SUFFIX)  # an existing one must be well-formed to merge
    return attach_attestations(layout_dir, digest, envelopes)
