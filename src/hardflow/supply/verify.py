"""Verifying cosign-style signatures and attestations stored in an OCI layout.

The layout is untrusted input: ``index.json``, the manifests, the signature payloads and the
attestation envelopes may have any JSON shape. Everything is read through the strict readers
below, so a list where an object belongs, a missing key or a number where a string belongs is a
:class:`~hardflow.errors.TrustError` naming the file and the field, never a traceback. Signing
(:mod:`hardflow.supply.sign`) reads the layout through the same readers before it writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hardflow.errors import TrustError
from hardflow.oci.attach import (
    ATT_SUFFIX,
    MEDIA_DSSE,
    MEDIA_SIMPLESIGNING,
    SIG_SUFFIX,
    SIGNATURE_ANNOTATION,
    AttachedLayer,
    ImageEntry,
    attachment_tag,
    blob_digests,
    is_attachment_tag,
    read_blob,
    read_index,
    verify_blob,
)
from hardflow.oci.writer import MEDIA_INDEX, MEDIA_MANIFEST, REF_NAME
from hardflow.supply.dsse import pae
from hardflow.supply.keys import key_id

SIGNATURE_TYPE = "cosign container image signature"
IMAGE_NAME = "io.containerd.image.name"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# ---------------------------------------------------------------------------------------------
# strict JSON shapes


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    name = names.get(type(value), "a number" if isinstance(value, int | float) else "odd")
    shown = repr(value)
    return f"{name} ({shown[:50]}{'…' if len(shown) > 50 else ''})"


def _wrong(what: str, value: object, expected: str) -> TrustError:
    return TrustError(f"{what} is {_kind(value)}; expected {expected}")


def as_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(what, value, "a JSON object")
    return value


def as_list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong(what, value, "a JSON list")
    return value


def as_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _wrong(what, value, "a string")
    return value


def as_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _wrong(what, value, "a size in bytes (an integer >= 0)")
    return value


def as_digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise _wrong(what, value, "a digest sha256:<64 lowercase hex digits>")
    return value


def as_string_map(value: object, what: str) -> dict[str, str]:
    """Annotations: an object of strings; absent (or null) reads as empty."""
    if value is None:
        return {}
    return {str(k): as_str(v, f"{what}.{k}") for k, v in as_object(value, what).items()}


def _member(value: object, key: str, what: str) -> Any:
    """``value[key]`` once ``value`` is known to be an object (``None`` when absent)."""
    return as_object(value, what).get(key)


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise TrustError(f"{what} is not valid JSON ({str(exc)[:120]})") from None


def as_base64(value: object, what: str) -> bytes:
    text = as_str(value, what)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TrustError(f"{what} is not valid base64") from None


# ---------------------------------------------------------------------------------------------
# the layout, read strictly


@dataclass(frozen=True)
class IndexEntry:
    """One entry of ``index.json``'s ``manifests`` list (an image or an attachment)."""

    digest: str
    size: int
    tag: str | None  # org.opencontainers.image.ref.name
    name: str | None  # io.containerd.image.name


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


def index_entries(layout_dir: Path) -> list[IndexEntry]:
    """Every entry of the layout's ``index.json``, each field checked."""
    index = read_index(layout_dir)
    entries: list[IndexEntry] = []
    for i, raw in enumerate(index["manifests"]):
        what = f"{layout_dir}/index.json: manifests[{i}]"
        doc = as_object(raw, what)
        annotations = as_string_map(doc.get("annotations"), f"{what}.annotations")
        entries.append(
            IndexEntry(
                digest=as_digest(doc.get("digest"), f"{what}.digest"),
                size=as_size(doc.get("size"), f"{what}.size"),
                tag=annotations.get(REF_NAME),
                name=annotations.get(IMAGE_NAME),
            )
        )
    return entries


def image_entry(layout_dir: Path, tag: str | None = None) -> ImageEntry:
    """The image the layout names: the one tagged ``tag``, or the only one there is."""
    images = [e for e in index_entries(layout_dir) if not is_attachment_tag(e.tag)]
    chosen = [e for e in images if e.tag == tag] if tag is not None else images
    if len(chosen) == 1:
        e = chosen[0]
        return ImageEntry(e.digest, e.size, e.tag, e.name)
    tags = ", ".join(sorted(str(e.tag) for e in images))
    if not chosen:
        raise TrustError(
            f"{layout_dir}/index.json names no image"
            + (f" tagged {tag!r}" if tag else "")
            + (f" (tags: {tags})" if tags else "")
        )
    raise TrustError(
        f"{layout_dir}/index.json names {len(chosen)} images ({tags}); say which one with its tag"
    )


def _descriptor(value: object, what: str) -> Descriptor:
    doc = as_object(value, what)
    return Descriptor(
        media_type=as_str(doc.get("mediaType"), f"{what}.mediaType"),
        digest=as_digest(doc.get("digest"), f"{what}.digest"),
        size=as_size(doc.get("size"), f"{what}.size"),
        annotations=as_string_map(doc.get("annotations"), f"{what}.annotations"),
    )


def read_manifest(layout_dir: Path, digest: str, size: int | None, what: str) -> Manifest:
    """An image manifest from the layout: its blob checked, then its shape."""
    doc = as_object(parse_json(read_blob(layout_dir, digest, size), what), what)
    layers = as_list(doc.get("layers"), f"{what}: layers")
    return Manifest(
        config=_descriptor(doc.get("config"), f"{what}: config"),
        layers=tuple(_descriptor(x, f"{what}: layers[{i}]") for i, x in enumerate(layers)),
    )


# ---------------------------------------------------------------------------------------------
# image indexes: what is signed (cosign sign --recursive: the index and every manifest)

MANIFEST_MEDIA_TYPES = frozenset(
    {MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"}
)
INDEX_MEDIA_TYPES = frozenset(
    {MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"}
)


@dataclass(frozen=True)
class Target:
    """One manifest a signature covers: the image (a manifest or an image index), or one
    platform's manifest of an index (``platform`` says which, e.g. ``linux/arm64``)."""

    digest: str
    size: int
    platform: str | None = None
    is_index: bool = False

    @property
    def label(self) -> str:
        """How messages name it: "image manifest", "image index", "platform linux/arm64"."""
        if self.platform is not None:
            return f"platform {self.platform}"
        return "image index" if self.is_index else "image manifest"


def _platform_name(value: object, what: str) -> str:
    doc = as_object(value, what)
    parts = [
        as_str(doc.get("os"), f"{what}.os"),
        as_str(doc.get("architecture"), f"{what}.architecture"),
    ]
    variant = doc.get("variant")
    if variant is not None:
        parts.append(as_str(variant, f"{what}.variant"))
    if not all(parts) or any("/" in p for p in parts):
        raise TrustError(f"{what} is {'/'.join(parts)!r}; expected OS/ARCHITECTURE[/VARIANT]")
    return "/".join(parts)


def index_platforms(layout_dir: Path, entry: ImageEntry) -> tuple[Target, ...] | None:
    """The platform manifests of the image index ``entry`` names, in its order; None when
    ``entry`` is a plain image manifest. Every field is checked; a nested index, a manifest
    without a platform or a platform listed twice is refused."""
    what = f"{layout_dir}: manifest {entry.digest}"
    doc = as_object(parse_json(read_blob(layout_dir, entry.digest, entry.size), what), what)
    if doc.get("mediaType") not in INDEX_MEDIA_TYPES and "manifests" not in doc:
        return None
    what = f"{layout_dir}: image index {entry.digest}"
    listed = as_list(doc.get("manifests"), f"{what}: manifests")
    if not listed:
        raise TrustError(f"{what} lists no manifest; expected one per platform")
    targets: list[Target] = []
    for i, raw in enumerate(listed):
        at = f"{what}: manifests[{i}]"
        desc = _descriptor(raw, at)
        if desc.media_type not in MANIFEST_MEDIA_TYPES:
            raise TrustError(
                f"{at}.mediaType is {desc.media_type!r}; expected an image manifest "
                f"({MEDIA_MANIFEST}): nested indexes are not supported"
            )
        platform = _platform_name(_member(raw, "platform", at), f"{at}.platform")
        if any(t.platform == platform for t in targets):
            raise TrustError(f"{at}: platform {platform} is listed twice")
        targets.append(Target(desc.digest, desc.size, platform))
    return tuple(targets)


def signing_targets(layout_dir: Path, entry: ImageEntry) -> tuple[Target, ...]:
    """What signing covers: the one manifest, or an index and each platform's manifest
    (each manifest read and its shape checked)."""
    platforms = index_platforms(layout_dir, entry)
    if platforms is None:
        read_manifest(
            layout_dir, entry.digest, entry.size, f"{layout_dir}: manifest {entry.digest}"
        )
        return (Target(entry.digest, entry.size),)
    for t in platforms:
        read_manifest(layout_dir, t.digest, t.size, f"{layout_dir}: {t.label} manifest {t.digest}")
    return (Target(entry.digest, entry.size, is_index=True), *platforms)


def attachment(
    layout_dir: Path, manifest_digest: str, suffix: str
) -> tuple[str, list[AttachedLayer]] | None:
    """(the ``sha256-<hex>.<suffix>`` manifest's digest, its layers), or None when absent."""
    tag = attachment_tag(manifest_digest, suffix)
    entries = [e for e in index_entries(layout_dir) if e.tag == tag]
    if not entries:
        return None
    entry = entries[-1]
    manifest = read_manifest(layout_dir, entry.digest, entry.size, f"{layout_dir}: {tag}")
    layers = [
        AttachedLayer(d.media_type, read_blob(layout_dir, d.digest, d.size), dict(d.annotations))
        for d in manifest.layers
    ]
    return entry.digest, layers


def signed_digests(layout_dir: Path) -> list[str]:
    """The manifests the layout holds signatures for (``sha256:…``)."""
    suffix = "." + SIG_SUFFIX
    return [
        str(e.tag).removesuffix(suffix).replace("-", ":", 1)
        for e in index_entries(layout_dir)
        if is_attachment_tag(e.tag) and str(e.tag).endswith(suffix)
    ]


def verify_blobs(layout_dir: Path, owners: str = "") -> int:
    """Every blob's content must hash to its file name; returns how many were checked.
    ``owners`` is said after the count (which platforms the changed blobs belong to)."""
    checked = blob_digests(layout_dir)
    changed = [
        f"{path.name[:12]}… now hashes to {digest[:19]}…"
        for path, digest in checked
        if digest != "sha256:" + path.name
    ]
    if changed:
        raise TrustError(
            f"{layout_dir}: {len(changed)} blob(s) were changed after they were written"
            f"{owners}: " + "; ".join(changed[:5]),
            hint="a layer, config or manifest was modified; rebuild the image",
        )
    return len(checked)


# ---------------------------------------------------------------------------------------------
# checks


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    identity: str | None
    reason: str  # "ok" or why not


@dataclass(frozen=True)
class AttestationCheck:
    ok: bool
    predicate_type: str | None
    reason: str


@dataclass(frozen=True)
class PlatformReport:
    """What was checked for one platform's manifest of an image index."""

    platform: str
    manifest_digest: str
    signatures: tuple[SignatureCheck, ...]
    attestations: tuple[AttestationCheck, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "manifest_digest": self.manifest_digest,
            "signatures": [_signature_json(s) for s in self.signatures],
            "attestations": [_attestation_json(a) for a in self.attestations],
        }


@dataclass(frozen=True)
class VerifyReport:
    layout_dir: Path
    manifest_digest: str
    key_id: str
    blobs_checked: int
    signatures: tuple[SignatureCheck, ...]
    attestations: tuple[AttestationCheck, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)
    platforms: tuple[PlatformReport, ...] = ()  # an image index: each platform's manifest

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "layout": str(self.layout_dir),
            "manifest_digest": self.manifest_digest,
            "key_id": self.key_id,
            "blobs_checked": self.blobs_checked,
            "signatures": [_signature_json(s) for s in self.signatures],
            "attestations": [_attestation_json(a) for a in self.attestations],
            "problems": list(self.problems),
            **({"platforms": [p.to_json() for p in self.platforms]} if self.platforms else {}),
        }


def _signature_json(s: SignatureCheck) -> dict[str, Any]:
    return {"ok": s.ok, "identity": s.identity, "reason": s.reason}


def _attestation_json(a: AttestationCheck) -> dict[str, Any]:
    return {"ok": a.ok, "predicate_type": a.predicate_type, "reason": a.reason}


class VerifyError(TrustError):
    """The image does not verify; ``report`` says why."""

    def __init__(self, report: VerifyReport) -> None:
        lines = "\n  ".join(report.problems)
        super().__init__(
            f"{report.layout_dir} does not verify under key {report.key_id}:\n  {lines}"
        )
        self.report = report


def verify_bytes(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def repository_of(reference: str) -> str:
    """``host:5000/org/name:tag`` → ``host:5000/org/name`` (cosign signs the repository)."""
    ref = reference.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


@dataclass(frozen=True)
class SimpleSigning:
    """What a simple-signing payload says."""

    type: str
    manifest_digest: str
    identity: str


def parse_simple_signing(payload: bytes, what: str = "signed payload") -> SimpleSigning:
    doc = as_object(parse_json(payload, what), what)
    critical = as_object(doc.get("critical"), f"{what}: critical")
    image = as_object(critical.get("image"), f"{what}: critical.image")
    identity = as_object(critical.get("identity"), f"{what}: critical.identity")
    return SimpleSigning(
        type=as_str(critical.get("type"), f"{what}: critical.type"),
        manifest_digest=as_str(
            image.get("docker-manifest-digest"), f"{what}: critical.image.docker-manifest-digest"
        ),
        identity=as_str(
            identity.get("docker-reference"), f"{what}: critical.identity.docker-reference"
        ),
    )


def check_signature(
    key: ec.EllipticCurvePublicKey,
    manifest_digest: str,
    payload: bytes,
    annotations: Mapping[str, str],
    identity: str | None = None,
) -> SignatureCheck:
    """One simple-signing layer: the signature over the payload, then what the payload says."""
    encoded = annotations.get(SIGNATURE_ANNOTATION)
    if not encoded:
        return SignatureCheck(False, None, f"no {SIGNATURE_ANNOTATION} annotation")
    try:
        signature = as_base64(encoded, f"the {SIGNATURE_ANNOTATION} annotation")
    except TrustError as exc:
        return SignatureCheck(False, None, exc.message)
    if not verify_bytes(key, payload, signature):
        return SignatureCheck(False, None, "signature does not verify under this key")
    try:
        signed = parse_simple_signing(payload)
    except TrustError as exc:
        return SignatureCheck(False, None, f"not simple signing JSON: {exc.message}")
    if signed.type != SIGNATURE_TYPE:
        return SignatureCheck(False, signed.identity, f"signed payload type is {signed.type!r}")
    if signed.manifest_digest != manifest_digest:
        return SignatureCheck(
            False,
            signed.identity,
            f"signature is for manifest {signed.manifest_digest}, not this one",
        )
    if identity is not None and signed.identity not in (identity, repository_of(identity)):
        return SignatureCheck(
            False, signed.identity, f"signature names {signed.identity!r}, expected {identity!r}"
        )
    return SignatureCheck(True, signed.identity, "ok")


@dataclass(frozen=True)
class Statement:
    """The parts of a DSSE envelope around an in-toto statement that verification needs."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]
    predicate_type: str
    subjects: tuple[str, ...]  # sha256:… digests


def parse_statement_envelope(envelope: bytes, what: str = "attestation") -> Statement:
    """A DSSE envelope and the in-toto statement inside, every field checked."""
    doc = as_object(parse_json(envelope, what), what)
    payload = as_base64(doc.get("payload"), f"{what}: payload")
    sigs = as_list(doc.get("signatures"), f"{what}: signatures")
    signatures = tuple(
        as_base64(_member(s, "sig", f"{what}: signatures[{i}]"), f"{what}: signatures[{i}].sig")
        for i, s in enumerate(sigs)
    )
    inner = f"{what}: payload"
    statement = as_object(parse_json(payload, inner), inner)
    subjects = as_list(statement.get("subject"), f"{inner}.subject")
    digests: list[str] = []
    for i, s in enumerate(subjects):
        where = f"{inner}.subject[{i}]"
        found = _member(_member(s, "digest", where), "sha256", f"{where}.digest")
        digests.append("sha256:" + as_str(found, f"{where}.digest.sha256"))
    return Statement(
        payload_type=as_str(doc.get("payloadType"), f"{what}: payloadType"),
        payload=payload,
        signatures=signatures,
        predicate_type=as_str(statement.get("predicateType"), f"{inner}.predicateType"),
        subjects=tuple(digests),
    )


def check_attestation(
    key: ec.EllipticCurvePublicKey, manifest_digest: str, envelope: bytes
) -> AttestationCheck:
    try:
        st = parse_statement_envelope(envelope)
    except TrustError as exc:
        return AttestationCheck(False, None, exc.message)
    message = pae(st.payload_type, st.payload)
    if not any(verify_bytes(key, message, sig) for sig in st.signatures):
        return AttestationCheck(
            False,
            st.predicate_type,
            f"none of its {len(st.signatures)} signature(s) verifies under this key",
        )
    if manifest_digest not in st.subjects:
        return AttestationCheck(
            False, st.predicate_type, f"its subject is not the manifest {manifest_digest}"
        )
    return AttestationCheck(True, st.predicate_type, "ok")


def _blob_owners(layout_dir: Path, targets: tuple[Target, ...], changed: set[str]) -> str:
    """ " (platform linux/arm64: its manifest)" — which platforms a changed blob belongs to."""
    owners: list[str] = []
    for t in targets:
        if t.platform is None:
            continue
        if t.digest in changed:
            owners.append(f"{t.label}: its manifest")
            continue
        try:
            manifest = read_manifest(layout_dir, t.digest, t.size, t.label)
        except TrustError:
            continue
        if any(d.digest in changed for d in (manifest.config, *manifest.layers)):
            owners.append(f"{t.label}: its config or a layer")
    return f" ({'; '.join(owners)})" if owners else ""


def _check_target(
    layout_dir: Path, key: ec.EllipticCurvePublicKey, target: Target, identity: str | None
) -> tuple[list[SignatureCheck], list[AttestationCheck], list[str]]:
    """The signatures and attestations of one manifest, and the problems found."""
    prefix = f"{target.label}: " if target.platform is not None else ""
    kid = key_id(key)
    problems: list[str] = []
    sig = attachment(layout_dir, target.digest, SIG_SUFFIX)
    checks: list[SignatureCheck] = []
    if sig is None:
        others = signed_digests(layout_dir)
        kind = "manifest" if target.platform is not None else target.label
        problems.append(
            f"{prefix}no signature for the {kind} {target.digest}"
            + (
                f" (the layout has signatures for {', '.join(others)}: was the image changed "
                "and re-indexed after signing?)"
                if others
                else ""
            )
        )
    else:
        checks = [
            check_signature(key, target.digest, layer.data, layer.annotations, identity)
            for layer in sig[1]
            if layer.media_type == MEDIA_SIMPLESIGNING
        ]
        if not any(c.ok for c in checks):
            reasons = "; ".join(sorted({c.reason for c in checks})) or "no signature layers"
            problems.append(
                f"{prefix}none of the {len(checks)} signature(s) of {target.digest} verifies "
                f"under key {kid}: {reasons}"
            )
    att = attachment(layout_dir, target.digest, ATT_SUFFIX)
    attestations: list[AttestationCheck] = []
    if att is not None:
        attestations = [
            check_attestation(key, target.digest, layer.data)
            for layer in att[1]
            if layer.media_type == MEDIA_DSSE
        ]
        problems.extend(
            f"{prefix}attestation {a.predicate_type or '?'}: {a.reason}"
            for a in attestations
            if not a.ok
        )
    return checks, attestations, problems


def verify_layout(
    layout_dir: Path,
    key: ec.EllipticCurvePublicKey,
    identity: str | None = None,
    tag: str | None = None,
) -> VerifyReport:
    """Check the blobs, the signatures and the attestations; raise :class:`VerifyError` with
    every reason when the image is not signed by ``key`` (or anything was changed).

    An image index needs a valid signature of the index and of every platform's manifest
    (what ``cosign sign --recursive`` writes, what a ``sigstoreSigned`` policy checks when
    it copies all platforms); the problems name the platform."""
    layout_dir = layout_dir.absolute()
    entry = image_entry(layout_dir, tag)
    checked = blob_digests(layout_dir)
    changed = {"sha256:" + p.name for p, d in checked if d != "sha256:" + p.name}
    targets: tuple[Target, ...] = ()
    if changed:
        try:
            targets = (
                Target(entry.digest, entry.size),
                *(index_platforms(layout_dir, entry) or ()),
            )
        except TrustError:
            targets = ()
        verify_blobs(layout_dir, _blob_owners(layout_dir, targets, changed))
    targets = signing_targets(layout_dir, entry)
    for t in targets:
        if t.is_index:
            continue
        manifest = read_manifest(layout_dir, t.digest, t.size, f"{layout_dir}: manifest {t.digest}")
        for desc in (manifest.config, *manifest.layers):
            verify_blob(layout_dir, desc.digest, desc.size)  # streamed: never held whole
    problems: list[str] = []
    results = []
    for t in targets:
        checks, attestations, found = _check_target(layout_dir, key, t, identity)
        results.append((t, checks, attestations))
        problems.extend(found)
    top, signatures, attestations = results[0]
    report = VerifyReport(
        layout_dir=layout_dir,
        manifest_digest=top.digest,
        key_id=key_id(key),
        blobs_checked=len(checked),
        signatures=tuple(signatures),
        attestations=tuple(attestations),
        problems=tuple(problems),
        platforms=tuple(
            PlatformReport(str(t.platform), t.digest, tuple(s), tuple(a)) for t, s, a in results[1:]
        ),
    )
    if problems:
        raise VerifyError(report)
    return report
