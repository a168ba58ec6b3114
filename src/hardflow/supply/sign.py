"""cosign-compatible key-based signatures of OCI images (ECDSA P-256, SHA-256).

Signatures (what ``cosign sign --key`` stores, and what podman's ``sigstoreSigned`` policy
checks): the payload is the "simple signing" JSON naming the image's manifest digest and a
docker reference; the signature is ECDSA over the exact payload bytes, DER-encoded, and stored
base64 in the annotation ``dev.cosignproject.cosign/signature`` of the payload layer of the
``sha256-<hex>.sig`` manifest (see :mod:`hardflow.oci.attach`). We sign deterministically
(RFC 6979), so signing the same image with the same key and identity twice stores nothing new.

Signing is planned, then written: every check (blobs, the layout's JSON, the attestations to
attach) and every signature is done in memory first (:func:`plan_signing`); only then are the
new blobs written and ``index.json`` replaced once (:func:`write_signing`). A failure leaves
the layout as it was, never half signed.

Key files live in :mod:`hardflow.supply.keys`, verification in :mod:`hardflow.supply.verify`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hardflow.errors import TrustError
from hardflow.fsutil import atomic_write
from hardflow.oci.attach import (
    ATT_SUFFIX,
    MEDIA_DSSE,
    MEDIA_SIMPLESIGNING,
    PREDICATE_ANNOTATION,
    SIG_SUFFIX,
    SIGNATURE_ANNOTATION,
    AttachedLayer,
    ImageEntry,
    attachment_config,
    attachment_manifest,
    attachment_tag,
    blob_path,
    file_digest,
    is_attachment_tag,
    merge_by_digest,
    merge_by_predicate,
    read_index,
)
from hardflow.oci.writer import MEDIA_MANIFEST, REF_NAME, canonical_json, sha256_digest

# The names below were defined here before keys and verification had modules of their own;
# they stay importable from here (the CLI and older callers use them).
from hardflow.supply.dsse import pae
from hardflow.supply.keys import (
    PASSWORD_ENV,
    KeyFileError,
    KeyPair,
    decrypt_private_key,
    decrypt_secret,
    encrypt_private_key,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    parse_public_key,
    public_key_pem,
    read_password,
    write_key_pair,
)
from hardflow.supply.verify import (
    SIGNATURE_TYPE,
    AttestationCheck,
    SignatureCheck,
    Target,
    VerifyError,
    VerifyReport,
    attachment,
    check_attestation,
    check_signature,
    image_entry,
    index_platforms,
    parse_statement_envelope,
    repository_of,
    signing_targets,
    verify_blobs,
    verify_bytes,
    verify_layout,
)

__all__ = [
    "PASSWORD_ENV",
    "SIGNATURE_TYPE",
    "AttestationCheck",
    "KeyFileError",
    "KeyPair",
    "PlatformSigned",
    "SignPlan",
    "SignResult",
    "SignatureCheck",
    "VerifyError",
    "VerifyReport",
    "check_attestation",
    "check_signature",
    "decrypt_private_key",
    "decrypt_secret",
    "default_identity",
    "encrypt_private_key",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pae",
    "parse_public_key",
    "plan_signing",
    "public_key_pem",
    "read_password",
    "repository_of",
    "sign_image",
    "sign_layout",
    "signer",
    "simple_signing_payload",
    "verify_blobs",
    "verify_bytes",
    "verify_layout",
    "write_key_pair",
    "write_signing",
]

# where build.platforms puts every platform's SBOMs and provenance but the docker-archive's
PLATFORMS_DIR = "platforms"

Merge = Callable[[Sequence[AttachedLayer], Sequence[AttachedLayer]], list[AttachedLayer]]


def signer(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """``data → DER ECDSA P-256/SHA-256 signature``, deterministic (RFC 6979)."""
    algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)

    def sign(data: bytes) -> bytes:
        return key.sign(data, algorithm)

    return sign


def simple_signing_payload(docker_reference: str, manifest_digest: str) -> bytes:
    """cosign's payload, byte for byte: compact JSON, ``"optional":null``."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


def default_identity(entry: ImageEntry) -> str:
    if entry.name:
        return repository_of(entry.name)
    raise TrustError(
        "the OCI layout does not name its image (no io.containerd.image.name annotation)",
        hint="pass --identity REGISTRY/REPOSITORY",
    )


# ---------------------------------------------------------------------------------------------
# planning: every check and every signature, nothing written


@dataclass(frozen=True)
class Attachment:
    """The complete new content of one ``sha256-<hex>.<suffix>`` attachment of ``digest``."""

    suffix: str
    layers: tuple[AttachedLayer, ...]
    digest: str = ""  # the manifest it is attached to ("": the plan's manifest_digest)


@dataclass(frozen=True)
class SignPlan:
    layout_dir: Path
    manifest_digest: str
    identity: str
    key_id: str
    # per signed manifest: its signature, then its attestations (if any); the image first,
    # then (an image index) each platform's manifest
    attachments: tuple[Attachment, ...]
    platforms: tuple[tuple[str, str], ...] = ()  # an image index: (platform, manifest digest)


def _merged(layout_dir: Path, digest: str, suffix: str, new: Sequence[AttachedLayer],
            merge: Merge) -> Attachment:  # fmt: skip
    existing = attachment(layout_dir, digest, suffix)  # strict: a malformed one is refused
    return Attachment(suffix, tuple(merge(existing[1] if existing else [], new)), digest)


def _attestation_layers(
    envelopes: Sequence[tuple[str, bytes]], targets: Sequence[Target]
) -> dict[str, list[AttachedLayer]]:
    """The envelopes as attestation layers, by the manifest their statement is about: the
    image's, or (an index) one platform's."""
    by_digest: dict[str, list[AttachedLayer]] = {}
    for origin, env in envelopes:
        statement = parse_statement_envelope(env, origin)
        about = [t for t in targets if t.digest in statement.subjects]
        if not about:
            wanted = ", ".join(
                f"{t.platform} {t.digest}" if t.platform else t.digest for t in targets
            )
            raise TrustError(
                f"{origin}: its statement is about "
                f"{', '.join(statement.subjects) or 'nothing'}, not the image {wanted}",
                hint="rebuild, or sign the image the attestation was written for",
            )
        # cosign's attestation layer: the signature is inside the envelope, and the annotation
        # is there, empty (`cosign verify-attestation` refuses a layer without it)
        annotations = {SIGNATURE_ANNOTATION: "", PREDICATE_ANNOTATION: statement.predicate_type}
        by_digest.setdefault(about[0].digest, []).append(
            AttachedLayer(MEDIA_DSSE, env, annotations)
        )
    return by_digest


def plan_signing(
    layout_dir: Path,
    key: ec.EllipticCurvePrivateKey,
    identity: str | None = None,
    tag: str | None = None,
    attestations: Sequence[tuple[str, bytes]] = (),
) -> SignPlan:
    """Check the layout and sign in memory; ``attestations`` are (origin, signed envelope),
    each attached to the manifest its statement is about.

    An image index is signed as ``cosign sign --recursive`` does: the index and each
    platform's manifest, all naming the same identity. Raises :class:`TrustError` on
    anything wrong; writes nothing.
    """
    layout_dir = layout_dir.absolute()
    verify_blobs(layout_dir)
    entry = image_entry(layout_dir, tag)
    targets = signing_targets(layout_dir, entry)
    ident = identity or default_identity(entry)
    sign = signer(key)
    by_digest = _attestation_layers(attestations, targets)
    planned: list[Attachment] = []
    for target in targets:
        payload = simple_signing_payload(ident, target.digest)
        sig_layer = AttachedLayer(
            MEDIA_SIMPLESIGNING,
            payload,
            {SIGNATURE_ANNOTATION: base64.b64encode(sign(payload)).decode("ascii")},
        )
        planned.append(_merged(layout_dir, target.digest, SIG_SUFFIX, [sig_layer], merge_by_digest))
        if target.digest in by_digest:
            layers = by_digest[target.digest]
            planned.append(
                _merged(layout_dir, target.digest, ATT_SUFFIX, layers, merge_by_predicate)
            )
    platforms = tuple((str(t.platform), t.digest) for t in targets if t.platform is not None)
    return SignPlan(layout_dir, entry.digest, ident, key_id(key.public_key()), tuple(planned),
                    platforms)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# writing: blobs first (harmless while unreferenced), then index.json once


def _write_blob(layout_dir: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    path = blob_path(layout_dir, digest)
    if not path.exists() or file_digest(path) != digest:
        atomic_write(path, data)
    return digest


def write_signing(plan: SignPlan) -> dict[str, str]:
    """Store the planned attachments; returns their manifest digests by tag
    (``sha256-<hex>.sig``: :func:`~hardflow.oci.attach.attachment_tag`)."""
    layout_dir = plan.layout_dir
    index = read_index(layout_dir)
    entries = {}
    digests: dict[str, str] = {}
    for planned in plan.attachments:
        for layer in planned.layers:
            _write_blob(layout_dir, layer.data)
        config = attachment_config(planned.layers)
        _write_blob(layout_dir, config)
        manifest = attachment_manifest(config, planned.layers)
        digest = _write_blob(layout_dir, manifest)
        tag = attachment_tag(planned.digest or plan.manifest_digest, planned.suffix)
        entries[tag] = {
            "mediaType": MEDIA_MANIFEST,
            "digest": digest,
            "size": len(manifest),
            "annotations": {REF_NAME: tag},
        }
        digests[tag] = digest
    # the same order oci.attach keeps: images first, then attachments sorted by tag
    others = [e for e in index["manifests"] if _tag(e) not in entries]
    images = [e for e in others if not is_attachment_tag(_tag(e))]
    attached = sorted(
        [*(e for e in others if is_attachment_tag(_tag(e))), *entries.values()],
        key=lambda e: str(_tag(e)),
    )
    new_index = {**index, "manifests": [*images, *attached]}
    data = canonical_json(new_index)
    if data != (layout_dir / "index.json").read_bytes():
        atomic_write(layout_dir / "index.json", data)
    return digests


def _tag(entry: object) -> str | None:
    # index entries were checked by the plan (verify.index_entries); stay total anyway
    if not isinstance(entry, dict):
        return None
    annotations = entry.get("annotations")
    tag = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return tag if isinstance(tag, str) else None


# ---------------------------------------------------------------------------------------------
# the operations


@dataclass(frozen=True)
class PlatformSigned:
    """One platform's manifest of a signed image index."""

    platform: str
    manifest_digest: str
    signature_manifest: str
    attestation_manifest: str | None = None


@dataclass(frozen=True)
class SignResult:
    manifest_digest: str  # the image's: its manifest, or its image index
    identity: str
    signature_manifest: str  # digest of the sha256-<hex>.sig manifest
    tag: str
    key_id: str
    attestation_manifest: str | None = None  # digest of the sha256-<hex>.att manifest
    platforms: tuple[PlatformSigned, ...] = ()  # an image index: each platform's manifest


def _result(plan: SignPlan, digests: dict[str, str]) -> SignResult:
    def made(digest: str, suffix: str) -> str | None:
        return digests.get(attachment_tag(digest, suffix))

    top = plan.manifest_digest
    return SignResult(
        manifest_digest=top,
        identity=plan.identity,
        signature_manifest=digests[attachment_tag(top, SIG_SUFFIX)],
        tag=attachment_tag(top, SIG_SUFFIX),
        key_id=plan.key_id,
        attestation_manifest=made(top, ATT_SUFFIX),
        platforms=tuple(
            PlatformSigned(p, d, digests[attachment_tag(d, SIG_SUFFIX)], made(d, ATT_SUFFIX))
            for p, d in plan.platforms
        ),
    )


def sign_layout(
    layout_dir: Path,
    key: ec.EllipticCurvePrivateKey,
    identity: str | None = None,
    tag: str | None = None,
) -> SignResult:
    """Sign the layout's image: a ``sha256-<hex>.sig`` manifest in the same layout.

    ``identity`` is the docker reference the signature names (cosign's convention: the
    repository the image is pulled from, without tag — podman's ``matchRepository``);
    default: the repository in the layout's ``io.containerd.image.name``.
    """
    plan = plan_signing(layout_dir, key, identity, tag)
    return _result(plan, write_signing(plan))


def sign_image(
    layout_dir: Path,
    key: ec.EllipticCurvePrivateKey,
    identity: str | None = None,
    tag: str | None = None,
    *,
    attest: bool = True,
    out_dir: Path | None = None,
) -> SignResult:
    """Sign the image and, with ``attest``, sign and attach the build's attestations too
    (provenance, SPDX, CycloneDX envelopes in ``out_dir``, default: beside the layout) when
    they are all there — all or nothing: if any part fails, nothing is written.

    An image index: the index and every platform's manifest are signed, and each platform's
    attestations (see :func:`_platform_folder`) are attached to its own manifest."""
    from hardflow.supply.provenance import attestation_files, signed_attestations

    envelopes: list[tuple[str, bytes]] = []
    layout = layout_dir.absolute()
    if attest:
        entry = image_entry(layout, tag)
        platforms = index_platforms(layout, entry)
        folder = out_dir if out_dir is not None else layout.parent
        wanted = (
            [(entry.digest, folder)]
            if platforms is None
            else [(t.digest, _platform_folder(folder, str(t.platform))) for t in platforms]
        )
        if all(p.is_file() for _, f in wanted for p in attestation_files(f)):
            for digest, f in wanted:
                signed = signed_attestations(digest, signer(key), key_id(key.public_key()), f)
                envelopes += zip(map(str, attestation_files(f)), signed, strict=True)
    plan = plan_signing(layout_dir, key, identity, tag, envelopes)
    return _result(plan, write_signing(plan))


def _platform_folder(folder: Path, platform: str) -> Path:
    """A platform's attestations: ``platforms/<os>-<arch>/`` when the build wrote one (every
    platform but the docker-archive's, see :mod:`hardflow.build.platforms`), else beside
    the layout."""
    own = folder / PLATFORMS_DIR / platform.replace("/", "-")
    return own if own.is_dir() else folder
