"""Things attached to an image in an OCI layout, the way cosign stores them in a registry.

cosign keeps the signatures and attestations of the manifest ``sha256:<hex>`` as ordinary OCI
image manifests tagged ``sha256-<hex>.sig`` and ``sha256-<hex>.att`` in the image's own
repository. In an OCI layout the tag is the ``org.opencontainers.image.ref.name`` annotation of
an ``index.json`` entry, so a ``skopeo copy`` of ``oci:DIR:sha256-<hex>.sig`` to
``docker://REPO:sha256-<hex>.sig`` puts it exactly where cosign, podman and skopeo look for it.

An attachment manifest has a minimal config (cosign's shape: empty architecture and os, one
``diff_id`` and one history entry per layer, the zero time) and one layer per signature or
envelope. Layers are kept in a stable order and the same layer is never stored twice, so
attaching the same thing again leaves the layout byte-for-byte unchanged.

Blobs are content-addressed and written before ``index.json``, which is replaced atomically:
a crash leaves at worst an unreferenced blob.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardflow.errors import ImageError, TrustError
from hardflow.fsutil import atomic_write
from hardflow.oci.blobs import (
    as_list,
    as_object,
    as_size,
    as_str,
    check_digest,
    load_json,
    open_regular,
    string_map,
)
from hardflow.oci.reader import (
    index_entries,
    layout_blob_path,
    open_image,
    read_layout_blob,
)
from hardflow.oci.reader import (
    is_attachment_tag as is_attachment_tag,  # re-exported: callers import it from here
)
from hardflow.oci.writer import (
    MEDIA_CONFIG,
    MEDIA_MANIFEST,
    REF_NAME,
    canonical_json,
    sha256_digest,
)

MEDIA_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
MEDIA_DSSE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_ANNOTATION = "predicateType"
SIG_SUFFIX = "sig"
ATT_SUFFIX = "att"
ZERO_TIME = "0001-01-01T00:00:00Z"  # what cosign's go-containerregistry writes

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20
MAX_UNSIZED_BLOB = 1 << 30  # a blob read without a descriptor size: at most this many bytes


@dataclass(frozen=True)
class AttachedLayer:
    """One layer of an attachment manifest: its media type, its blob and its annotations."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


@dataclass(frozen=True)
class ImageEntry:
    """The image manifest an OCI layout's ``index.json`` names (not an attachment)."""

    digest: str
    size: int
    tag: str | None  # org.opencontainers.image.ref.name
    name: str | None  # io.containerd.image.name, e.g. "hardflow/airflow:3.3.2"


# ---------------------------------------------------------------------------------------------
# pure helpers


def attachment_tag(manifest_digest: str, suffix: str) -> str:
    """``sha256:ab…`` + ``sig`` → ``sha256-ab….sig`` (cosign's tag for the attachment)."""
    if not _DIGEST.match(manifest_digest):
        raise TrustError(
            f"{manifest_digest!r} is not a manifest digest; expected sha256:<64 hex digits>"
        )
    return manifest_digest.replace(":", "-") + "." + suffix


def attachment_config(layers: Sequence[AttachedLayer]) -> bytes:
    return canonical_json(
        {
            "architecture": "",
            "config": {},
            "created": ZERO_TIME,
            "history": [{"created": ZERO_TIME} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        }
    )


def attachment_manifest(config: bytes, layers: Sequence[AttachedLayer]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [layer.descriptor() for layer in layers],
        }
    )


def predicate_type(envelope: bytes) -> str:
    """The in-toto statement's ``predicateType`` inside a DSSE envelope."""
    try:
        doc = json.loads(envelope)
        statement = json.loads(base64.b64decode(doc["payload"], validate=True))
        value = statement["predicateType"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TrustError(
            f"attestation is not a DSSE envelope around an in-toto statement with a "
            f"predicateType: {exc}"
        ) from None
    if not isinstance(value, str) or not value:
        raise TrustError(f"attestation predicateType is {value!r}; expected a non-empty string")
    return value


def merge_by_digest(
    old: Sequence[AttachedLayer], new: Sequence[AttachedLayer]
) -> list[AttachedLayer]:
    """The old layers, then the new ones not already there (same blob and annotations)."""
    out = list(old)
    for layer in new:
        if not any(x.digest == layer.digest and x.annotations == layer.annotations for x in out):
            out.append(layer)
    return out


def merge_by_predicate(
    old: Sequence[AttachedLayer], new: Sequence[AttachedLayer]
) -> list[AttachedLayer]:
    """A new attestation replaces an old one of the same predicate type (cosign's --replace)."""
    replaced = {layer.annotations.get(PREDICATE_ANNOTATION) for layer in new}
    kept = [x for x in old if x.annotations.get(PREDICATE_ANNOTATION) not in replaced]
    return merge_by_digest(kept, new)


# ---------------------------------------------------------------------------------------------
# reading a layout


class LayoutError(TrustError, ImageError):
    """The layout cannot be read safely: an image error that signing and verifying report as a
    trust failure (nothing built on it may be signed)."""


def _trusted(exc: ImageError) -> LayoutError:
    return LayoutError(exc.message, hint=exc.hint)


def blob_path(layout_dir: Path, digest: str) -> Path:
    try:
        return layout_blob_path(layout_dir, digest)
    except ImageError as exc:
        raise _trusted(exc) from None


def read_blob(layout_dir: Path, digest: str, size: int | None = None) -> bytes:
    """A blob's bytes, after checking that they hash to its digest (and have its size).

    The blob must be a regular file; it is read up to its descriptor's size (or
    :data:`MAX_UNSIZED_BLOB` when none is given). To check a large blob without holding it,
    use :func:`verify_blob`."""
    try:
        return read_layout_blob(
            layout_dir, digest, size, limit=size if size is not None else MAX_UNSIZED_BLOB
        )
    except ImageError as exc:
        raise _trusted(exc) from None


def verify_blob(layout_dir: Path, digest: str, size: int | None = None) -> None:
    """Check a blob (of any size) against its digest and size, streaming."""
    actual = file_digest(blob_path(layout_dir, digest), size)
    if actual != digest:
        raise LayoutError(
            f"{layout_dir}: blob {digest} does not match its digest: its content hashes to "
            f"{actual}",
            hint="the blob was modified after it was written",
        )


def file_digest(path: Path, size: int | None = None) -> str:
    """The sha256 of a regular file (a symlink or FIFO is refused), read in chunks."""
    h = hashlib.sha256()
    try:
        with open_regular(path, f"blob {path.name}", size) as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    except ImageError as exc:
        raise _trusted(exc) from None
    except OSError as exc:
        raise LayoutError(f"cannot read {path}: {exc.strerror}") from None
    return "sha256:" + h.hexdigest()


def read_index(layout_dir: Path) -> dict[str, Any]:
    """``index.json``, bounded and checked: an object whose ``manifests`` is a list."""
    if not os.path.lexists(layout_dir / "index.json"):
        raise LayoutError(
            f"{layout_dir} is not an OCI image layout: it has no index.json",
            hint="IMAGE is the oci/ directory a build writes, e.g. out/NAME-TAG/oci",
        )
    try:
        with open_image(layout_dir) as reader:
            doc = reader.index()
        as_list(doc.get("manifests"), f"{layout_dir}/index.json: manifests")
    except ImageError as exc:
        raise _trusted(exc) from None
    return doc


def entry_tag(entry: Mapping[str, Any]) -> str | None:
    annotations = entry.get("annotations") or {}
    tag = annotations.get(REF_NAME)
    return tag if isinstance(tag, str) else None


def image_entries(index: Mapping[str, Any]) -> list[ImageEntry]:
    """Every image manifest the index names, attachments left out (each entry checked)."""
    try:
        entries = index_entries(index, "index.json")
    except ImageError as exc:
        raise _trusted(exc) from None
    return [
        ImageEntry(str(e.digest), e.size or 0, e.ref_name, e.image_name)
        for e in entries
        if not e.attachment
    ]


def image_entry(layout_dir: Path, tag: str | None = None) -> ImageEntry:
    """The image in the layout: the one with ``tag``, or the only one there is."""
    entries = image_entries(read_index(layout_dir))
    if tag is not None:
        entries = [e for e in entries if e.tag == tag]
    if len(entries) == 1:
        return entries[0]
    tags = sorted(str(e.tag) for e in image_entries(read_index(layout_dir)))
    if not entries:
        raise TrustError(
            f"{layout_dir}/index.json names no image"
            + (f" tagged {tag!r}" if tag else "")
            + (f" (tags: {', '.join(tags)})" if tags else "")
        )
    raise TrustError(
        f"{layout_dir}/index.json names {len(entries)} images ({', '.join(tags)}); "
        "say which one with its tag"
    )


def attached_layers(
    layout_dir: Path, manifest_digest: str, suffix: str
) -> tuple[str, list[AttachedLayer]] | None:
    """(attachment manifest digest, its layers with verified blobs), or None when absent."""
    tag = attachment_tag(manifest_digest, suffix)
    index = read_index(layout_dir)
    entries = [e for e in index["manifests"] if isinstance(e, dict) and entry_tag(e) == tag]
    if not entries:
        return None
    try:
        (entry,) = index_entries({"manifests": entries[-1:]}, f"{layout_dir}/index.json")
        digest = str(entry.digest)
        what = f"{layout_dir}: attachment manifest {digest}"
        manifest = as_object(load_json(read_blob(layout_dir, digest, entry.size), what), what)
        layers: list[AttachedLayer] = []
        for i, item in enumerate(as_list(manifest.get("layers"), f"{what}: layers")):
            desc = as_object(item, f"{what}: layers[{i}]")
            size = desc.get("size")
            data = read_blob(
                layout_dir,
                check_digest(desc.get("digest"), f"{what}: layers[{i}]"),
                None if size is None else as_size(size, f"{what}: layers[{i}].size"),
            )
            layers.append(
                AttachedLayer(
                    as_str(desc.get("mediaType"), f"{what}: layers[{i}].mediaType"),
                    data,
                    string_map(desc.get("annotations"), f"{what}: layers[{i}].annotations"),
                )
            )
    except LayoutError:
        raise
    except ImageError as exc:
        raise _trusted(exc) from None
    return digest, layers


# ---------------------------------------------------------------------------------------------
# writing


def _write_blob(layout_dir: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    path = blob_path(layout_dir, digest)
    try:
        present = file_digest(path) == digest
    except ImageError:  # missing, or not a regular file: written anew (replacing it)
        present = False
    if not present:
        atomic_write(path, data)
    return digest


def attach(
    layout_dir: Path,
    manifest_digest: str,
    suffix: str,
    layers: Sequence[AttachedLayer],
    merge: Callable[[Sequence[AttachedLayer], Sequence[AttachedLayer]], list[AttachedLayer]],
) -> str:
    """Add ``layers`` to the ``sha256-<hex>.<suffix>`` manifest; returns its new digest."""
    layout_dir = layout_dir.absolute()
    index = read_index(layout_dir)
    if not any(
        isinstance(e, dict) and e.get("digest") == manifest_digest for e in index["manifests"]
    ):
        raise TrustError(
            f"{layout_dir}/index.json does not name the manifest {manifest_digest}; "
            "attachments must belong to an image in the layout"
        )
    existing = attached_layers(layout_dir, manifest_digest, suffix)
    merged = merge(existing[1] if existing else [], layers)
    for layer in merged:
        _write_blob(layout_dir, layer.data)
    config = attachment_config(merged)
    _write_blob(layout_dir, config)
    manifest = attachment_manifest(config, merged)
    digest = _write_blob(layout_dir, manifest)

    tag = attachment_tag(manifest_digest, suffix)
    entry = {
        "mediaType": MEDIA_MANIFEST,
        "digest": digest,
        "size": len(manifest),
        "annotations": {REF_NAME: tag},
    }
    others = [e for e in index["manifests"] if not (isinstance(e, dict) and entry_tag(e) == tag)]
    images = [e for e in others if not is_attachment_tag(entry_tag(e))]
    attachments = sorted(
        [*(e for e in others if is_attachment_tag(entry_tag(e))), entry],
        key=lambda e: str(entry_tag(e)),
    )
    new_index = dict(index)
    new_index["manifests"] = [*images, *attachments]
    atomic_write(layout_dir / "index.json", canonical_json(new_index))
    return digest


def attach_signature(
    layout_dir: Path, manifest_digest: str, payload: bytes, signature: bytes
) -> str:
    """Store a cosign signature: ``payload`` as the layer blob, the signature annotated."""
    layer = AttachedLayer(
        MEDIA_SIMPLESIGNING,
        payload,
        {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode("ascii")},
    )
    return attach(layout_dir, manifest_digest, SIG_SUFFIX, [layer], merge_by_digest)


def attach_attestations(layout_dir: Path, manifest_digest: str, envelopes: Sequence[bytes]) -> str:
    """Store DSSE envelopes as cosign attestations of the image ``manifest_digest``.

    One layer per envelope (media type ``application/vnd.dsse.envelope.v1+json``, annotation
    ``predicateType`` read from the in-toto statement inside). An envelope replaces a stored
    one of the same predicate type. Returns the digest of the ``sha256-<hex>.att`` manifest.
    """
    layers = [
        # cosign verify-attestation wants the (empty) signature annotation on each layer too
        AttachedLayer(
            MEDIA_DSSE, env, {PREDICATE_ANNOTATION: predicate_type(env), SIGNATURE_ANNOTATION: ""}
        )
        for env in envelopes
    ]
    return attach(layout_dir, manifest_digest, ATT_SUFFIX, layers, merge_by_predicate)


def blob_digests(layout_dir: Path) -> list[tuple[Path, str]]:
    """(path, the digest its content hashes to) for every blob file in the layout."""
    root = layout_dir / "blobs" / "sha256"
    try:
        names = sorted(os.listdir(root))
    except OSError as exc:
        raise TrustError(f"{layout_dir} has no blobs/sha256 directory: {exc.strerror}") from None
    return [(root / name, file_digest(root / name)) for name in names if not name.startswith(".")]
