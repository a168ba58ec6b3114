"""The one image reader: OCI layouts, oci-archives and docker-archives, layer by layer.

Sources: an OCI image layout directory (``index.json``, ``blobs/sha256/``; indexes may nest
and may list several platforms), the same as a tarball (an *oci-archive*), or a
``docker save``/``podman save`` tarball (``manifest.json`` naming a config and layer tars).
:func:`open_image` opens one; :meth:`ImageReader.manifests` lists its images (with platform
and ref name), :meth:`ImageReader.image` reads one (manifest and config, digest-checked) and
:meth:`ImageReader.open_layer` streams one layer (gzip, zstd or plain tar) as a
:class:`~hardflow.oci.stream.LayerStream`; :func:`hardflow.oci.stream.merge_layer` applies a
layer's entries and whiteouts to a merged file-system view. The pieces live beside it:
:mod:`hardflow.oci.blobs` (bounded, lstat-checked reads, digest and JSON-shape checks, the
directory and tarball stores) and :mod:`hardflow.oci.stream` (one layer, the merged view).

Every byte read is checked: index-referenced blobs against their digest and size, each layer
by a streaming hash of its blob and of its uncompressed tar (the config's ``diff_ids``).
Reads are bounded (:mod:`hardflow.oci.blobs`); unsafe layer members are recorded
(:func:`hardflow.oci.members.classify`), never followed; nothing is written to disk. Every
failure is an :class:`~hardflow.errors.ImageError` naming the artifact and the field.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardflow.errors import ImageError
from hardflow.oci import blobs
from hardflow.oci.blobs import (
    MAX_JSON_BYTES,
    STREAM_ERRORS,
    DirStore,
    SafeTarInfo,
    Store,
    TarStore,
    as_list,
    as_object,
    as_size,
    as_str,
    blob_name,
    check_digest,
    load_json,
    optional_str,
    plain_name,
    read_bounded,
    sha256_of,
    string_map,
)
from hardflow.oci.stream import LayerStream
from hardflow.oci.writer import CONTAINERD_NAME, MEDIA_INDEX, MEDIA_MANIFEST, REF_NAME

MANIFEST_TYPES = frozenset({MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"})
INDEX_TYPES = frozenset({MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"})
MAX_INDEX_DEPTH = 4
# cosign-style attachments (signatures, attestations) listed beside the image in index.json
_ATTACHMENT_TAG = re.compile(r"sha256-[0-9a-f]{64}\.[a-z]+")
_DIGEST_NAMED = re.compile(r"(?:blobs/sha256/|)([0-9a-f]{64})(?:\.json)?")

# ---------------------------------------------------------------------------------------------
# values


def is_attachment_tag(tag: str | None) -> bool:
    """``sha256-<hex>.sig`` / ``.att``: cosign's tag for what is attached to an image."""
    return tag is not None and bool(_ATTACHMENT_TAG.fullmatch(tag))


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64`` or ``linux/arm64/v8``."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ImageError(f"platform {text!r} is not OS/ARCHITECTURE[/VARIANT]")
        return cls(*parts)

    def matches(self, wanted: Platform) -> bool:
        return (self.os, self.architecture) == (wanted.os, wanted.architecture) and (
            not wanted.variant or self.variant == wanted.variant
        )


@dataclass(frozen=True)
class ManifestRef:
    """One image an OCI index (or a docker-archive's ``manifest.json``) lists."""

    position: str  # where it is listed, e.g. "index.json manifests[1]"
    digest: str | None  # the image manifest's digest (None in a docker-archive)
    size: int | None
    media_type: str
    platform: Platform | None
    ref_name: str | None  # org.opencontainers.image.ref.name, or a docker-archive's first tag
    image_name: str | None  # io.containerd.image.name, e.g. "hardflow/airflow:3.3.2"
    tags: tuple[str, ...] = ()  # a docker-archive's RepoTags
    config_name: str | None = None  # docker-archive: the config member
    layer_names: tuple[str, ...] = ()  # docker-archive: the layer members

    @property
    def attachment(self) -> bool:
        """A cosign signature or attestation (tagged ``sha256-<hex>.sig``), not an image."""
        return is_attachment_tag(self.ref_name)

    def describe(self) -> str:
        name = self.image_name or self.ref_name or (self.digest or "")[:19] or self.position
        return f"{name} ({self.platform})" if self.platform else name


@dataclass(frozen=True)
class LayerRef:
    index: int  # 0 = the bottom layer
    name: str  # the blob (or archive member) that holds it
    digest: str | None  # the descriptor's digest; a docker-archive has none unless digest-named
    size: int | None  # the descriptor's size
    media_type: str
    diff_id: str  # the config's rootfs.diff_ids entry: the uncompressed tar's digest

    @property
    def id(self) -> str:
        """What names this layer in reports: its digest, else its member name."""
        return self.digest or self.name


@dataclass(frozen=True)
class Image:
    source: str  # the reader's label (the path)
    kind: str  # oci-layout, oci-archive, docker-archive
    manifest: ManifestRef
    manifest_digest: str | None  # None for a docker-archive
    config_digest: str  # the config's sha256 (computed)
    config_size: int
    config: Mapping[str, Any]
    layers: tuple[LayerRef, ...]


# ---------------------------------------------------------------------------------------------
# the reader


class ImageReader:
    """An open image (use as a context manager); see the module docstring."""

    def __init__(self, store: Store, kind: str) -> None:
        self._store = store
        self.kind = kind
        self.label = store.label
        self._manifests: tuple[ManifestRef, ...] | None = None

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    # -- small documents ----------------------------------------------------------------------

    def _json(self, name: str, what: str, size: int | None = None) -> tuple[bytes, Any]:
        with self._store.open(name, what, size) as fh:
            try:
                data = read_bounded(fh, MAX_JSON_BYTES, f"{self.label}: {what}")
            except STREAM_ERRORS as exc:
                raise ImageError(f"{self.label}: cannot read {what}: {exc}") from None
        return data, load_json(data, f"{self.label}: {what}")

    def read_blob(self, digest: str, size: int | None = None, *,
                  limit: int = MAX_JSON_BYTES, what: str = "blob") -> bytes:  # fmt: skip
        """A blob's bytes (at most ``limit``), checked against its digest and size."""
        name = blob_name(check_digest(digest, f"{self.label}: {what}"))
        with self._store.open(name, f"{what} {digest}", size) as fh:
            data = read_bounded(fh, limit, f"{self.label}: {what} {digest}")
        actual = sha256_of(data)
        if actual != digest:
            raise ImageError(
                f"{self.label}: {what} {digest} does not match its digest: its content hashes "
                f"to {actual}",
                hint="the blob was modified after it was written",
            )
        return data

    def _json_blob(self, digest: str, size: int | None, what: str) -> Any:
        data = self.read_blob(digest, size, what=what)
        return load_json(data, f"{self.label}: {what} {digest}")

    def index(self) -> dict[str, Any]:
        """The top-level ``index.json`` (OCI layout or oci-archive)."""
        if self.kind == "docker-archive":
            raise ImageError(f"{self.label} is a docker-archive; it has no OCI index")
        _, doc = self._json("index.json", "index.json")
        return as_object(doc, f"{self.label}: index.json")

    # -- listing and picking ------------------------------------------------------------------

    def manifests(self) -> tuple[ManifestRef, ...]:
        """Every image manifest listed (nested indexes flattened), attachments included."""
        if self._manifests is None:
            if self.kind == "docker-archive":
                self._manifests = self._docker_manifests()
            else:
                found: list[ManifestRef] = []
                self._walk(self.index(), "index.json", 0, None, found)
                self._manifests = tuple(found)
        return self._manifests

    def _walk(
        self,
        index: dict[str, Any],
        where: str,
        depth: int,
        top: ManifestRef | None,
        found: list[ManifestRef],
    ) -> None:
        for entry in index_entries(index, self.label, where):
            # the names a nested image goes by are those of the top-level entry
            named = entry if top is None else replace(
                entry, ref_name=top.ref_name, image_name=top.image_name
            )  # fmt: skip
            assert entry.digest is not None
            doc: Any = None
            if not entry.media_type:  # optional in old indexes: the document tells what it is
                doc = self._json_blob(entry.digest, entry.size, f"{entry.position}")
            if entry.media_type in INDEX_TYPES or (isinstance(doc, dict) and "manifests" in doc):
                if depth + 1 >= MAX_INDEX_DEPTH:
                    raise ImageError(f"{self.label}: image indexes nest more than "
                                     f"{MAX_INDEX_DEPTH} deep at {entry.position}")  # fmt: skip
                if doc is None:
                    doc = self._json_blob(entry.digest, entry.size, "image index")
                nested = as_object(doc, f"{self.label}: image index {entry.digest}")
                self._walk(nested, f"index {entry.digest[:19]}…", depth + 1, named, found)
            elif entry.media_type in MANIFEST_TYPES or not entry.media_type:
                found.append(named)
            # anything else (an artifact of another media type) is not an image: left out

    def _docker_manifests(self) -> tuple[ManifestRef, ...]:
        _, doc = self._json("manifest.json", "manifest.json")
        entries = as_list(doc, f"{self.label}: manifest.json")
        if not entries:
            raise ImageError(f"{self.label}: manifest.json lists no image")
        out: list[ManifestRef] = []
        for i, item in enumerate(entries):
            at = f"manifest.json[{i}]"
            entry = as_object(item, f"{self.label}: {at}")
            tags_value = entry.get("RepoTags")
            tags = tuple(
                as_str(t, f"{self.label}: {at}.RepoTags")
                for t in ([] if tags_value is None else as_list(tags_value, f"{at}.RepoTags"))
            )
            layers = as_list(entry.get("Layers"), f"{self.label}: {at}.Layers")
            out.append(
                ManifestRef(
                    position=at,
                    digest=None,
                    size=None,
                    media_type="docker-archive",
                    platform=None,
                    ref_name=tags[0] if tags else None,
                    image_name=None,
                    tags=tags,
                    config_name=plain_name(entry.get("Config"), f"{self.label}: {at}.Config"),
                    layer_names=tuple(
                        plain_name(name, f"{self.label}: {at}.Layers[{j}]")
                        for j, name in enumerate(layers)
                    ),
                )
            )
        return tuple(out)

    def select(
        self,
        *,
        ref_name: str | None = None,
        platform: Platform | None = None,
        prefer: Platform | None = None,
        first_if_ambiguous: bool = False,
    ) -> ManifestRef:
        """The one image chosen by ref name and/or platform.

        Several left: the one for ``prefer`` when exactly one matches it, else the first when
        ``first_if_ambiguous``, else an error that lists them."""
        images = [m for m in self.manifests() if not m.attachment]
        chosen = images
        if ref_name is not None:
            chosen = [m for m in chosen if ref_name in (m.ref_name, m.image_name, *m.tags)]
        if platform is not None:
            chosen = [m for m in chosen if m.platform is not None and m.platform.matches(platform)]
        if len(chosen) > 1 and prefer is not None:
            preferred = [m for m in chosen if m.platform is not None and m.platform.matches(prefer)]
            chosen = preferred if len(preferred) == 1 else chosen
        if len(chosen) == 1 or (chosen and first_if_ambiguous):
            return chosen[0]
        listing = "; ".join(m.describe() for m in images) or "none"
        if not chosen:
            wanted = " and ".join(
                x for x in (f"ref name {ref_name!r}" if ref_name else "",
                            f"platform {platform}" if platform else "") if x
            )  # fmt: skip
            raise ImageError(
                f"{self.label} has no image" + (f" with {wanted}" if wanted else "")
                + f" (images: {listing})"
            )  # fmt: skip
        raise ImageError(
            f"{self.label} holds {len(chosen)} images ({listing}); choose one by platform or "
            "by ref name"
        )

    # -- one image ----------------------------------------------------------------------------

    def image(
        self,
        ref: ManifestRef | None = None,
        *,
        ref_name: str | None = None,
        platform: Platform | None = None,
        prefer: Platform | None = None,
        first_if_ambiguous: bool = False,
    ) -> Image:
        """Read the manifest and config of ``ref`` (default: the one :meth:`select` picks)."""
        chosen = ref or self.select(ref_name=ref_name, platform=platform, prefer=prefer,
                                    first_if_ambiguous=first_if_ambiguous)  # fmt: skip
        if chosen.digest is None:
            return self._docker_image(chosen)
        what = f"image manifest {chosen.digest}"
        manifest = as_object(
            self._json_blob(chosen.digest, chosen.size, "image manifest"), f"{self.label}: {what}"
        )
        config_desc = as_object(manifest.get("config"), f"{self.label}: {what}.config")
        config_digest = check_digest(config_desc.get("digest"), f"{self.label}: {what}.config")
        config_bytes = self.read_blob(
            config_digest, _optional_size(config_desc, f"{what}.config"), what="image config"
        )
        config = as_object(load_json(config_bytes, f"{self.label}: image config"),
                           f"{self.label}: image config {config_digest}")  # fmt: skip
        descs = as_list(manifest.get("layers"), f"{self.label}: {what}.layers")
        diff_ids = self._diff_ids(config, len(descs))
        layers = []
        for i, item in enumerate(descs):
            at = f"{self.label}: {what}.layers[{i}]"
            desc = as_object(item, at)
            digest = check_digest(desc.get("digest"), at)
            layers.append(
                LayerRef(i, blob_name(digest), digest, _optional_size(desc, at),
                         optional_str(desc, "mediaType", at) or "", diff_ids[i])
            )  # fmt: skip
        return Image(self.label, self.kind, chosen, chosen.digest, config_digest,
                     len(config_bytes), config, tuple(layers))  # fmt: skip

    def _docker_image(self, chosen: ManifestRef) -> Image:
        assert chosen.config_name is not None
        config_bytes, config_doc = self._json(
            chosen.config_name, f"image config ({chosen.config_name})"
        )
        config_digest = sha256_of(config_bytes)
        named = _DIGEST_NAMED.fullmatch(chosen.config_name)
        if named and config_digest != f"sha256:{named.group(1)}":
            raise ImageError(
                f"{self.label}: image config {chosen.config_name} does not match its digest: "
                f"its content hashes to {config_digest}"
            )
        config = as_object(config_doc, f"{self.label}: image config {chosen.config_name}")
        diff_ids = self._diff_ids(config, len(chosen.layer_names))
        layers = []
        for i, name in enumerate(chosen.layer_names):
            match = re.fullmatch(r"blobs/sha256/([0-9a-f]{64})", name)
            digest = f"sha256:{match.group(1)}" if match else None
            layers.append(LayerRef(i, name, digest, None, "", diff_ids[i]))
        return Image(self.label, self.kind, chosen, None, config_digest, len(config_bytes),
                     config, tuple(layers))  # fmt: skip

    def _diff_ids(self, config: Mapping[str, Any], count: int) -> list[str]:
        rootfs = as_object(config.get("rootfs"), f"{self.label}: image config rootfs")
        diff_ids = as_list(rootfs.get("diff_ids"), f"{self.label}: image config rootfs.diff_ids")
        if len(diff_ids) != count:
            raise ImageError(
                f"{self.label}: the config lists {len(diff_ids)} diff_ids for {count} layers"
            )
        return [
            check_digest(d, f"{self.label}: image config rootfs.diff_ids[{i}]")
            for i, d in enumerate(diff_ids)
        ]

    # -- layers -------------------------------------------------------------------------------

    def open_layer(
        self, layer: LayerRef, tap: Callable[[bytes], None] | None = None
    ) -> LayerStream:
        """Stream ``layer``; its blob digest, size and diff_id are checked by ``finish``."""
        label = f"{self.label}: layer {layer.index} ({layer.name})"
        handle = self._store.open(layer.name, f"layer {layer.index}", layer.size)
        return LayerStream(handle, label, layer.id, digest=layer.digest, diff_id=layer.diff_id,
                           tap=tap)  # fmt: skip


def index_entries(
    index: Mapping[str, Any], label: str, where: str = "index.json"
) -> list[ManifestRef]:
    """The entries of one image index as they are listed (nested indexes not followed),
    each checked: an object with a valid digest, a size, string annotations, a platform."""
    listed = as_list(index.get("manifests"), f"{label}: {where}.manifests")
    out: list[ManifestRef] = []
    for i, item in enumerate(listed):
        at = f"{where} manifests[{i}]"
        entry = as_object(item, f"{label}: {at}")
        annotations = string_map(entry.get("annotations"), f"{label}: {at}.annotations")
        out.append(
            ManifestRef(
                position=at,
                digest=check_digest(entry.get("digest"), f"{label}: {at}.digest"),
                size=_optional_size(entry, f"{label}: {at}"),
                media_type=optional_str(entry, "mediaType", f"{label}: {at}") or "",
                platform=_platform(entry.get("platform"), f"{label}: {at}.platform"),
                ref_name=annotations.get(REF_NAME),
                image_name=annotations.get(CONTAINERD_NAME),
            )
        )
    return out


def _optional_size(desc: Mapping[str, Any], what: str) -> int | None:
    value = desc.get("size")
    return None if value is None else as_size(value, f"{what}.size")


def _platform(value: object, what: str) -> Platform | None:
    if value is None:
        return None
    doc = as_object(value, what)
    return Platform(
        as_str(doc.get("os", ""), f"{what}.os"),
        as_str(doc.get("architecture", ""), f"{what}.architecture"),
        as_str(doc.get("variant", ""), f"{what}.variant"),
    )


# ---------------------------------------------------------------------------------------------
# opening


def open_image(path: Path, label: str | None = None) -> ImageReader:
    """Open an OCI layout directory, an oci-archive or a docker-archive at ``path``."""
    name = label or str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file or directory") from None
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        store = DirStore(path, name)
        if not os.path.lexists(path / "index.json"):
            raise ImageError(
                f"{name} is a directory but not an OCI image layout (expected the files "
                "oci-layout and index.json)"
            )
        return ImageReader(store, "oci-layout")
    handle = blobs.open_regular(path, "image archive")
    head = handle.read(4)
    handle.seek(0)
    if blobs.compression_of(head) is not None:
        handle.close()
        raise ImageError(
            f"{name} is a compressed tarball; decompress it first (an image archive is a "
            "plain tar, as docker save and podman save write it)"
        )
    try:
        tarfile.open(fileobj=handle, mode="r:", tarinfo=SafeTarInfo).next()  # noqa: SIM115
    except STREAM_ERRORS as exc:
        handle.close()
        raise ImageError(
            f"{name} is not an image: expected an OCI layout directory, an oci-archive or a "
            f"docker-archive tarball ({exc})"
        ) from None
    handle.seek(0)
    tar_store = TarStore(handle, name)
    if tar_store.exists("manifest.json"):
        return ImageReader(tar_store, "docker-archive")
    if tar_store.exists("index.json"):
        return ImageReader(tar_store, "oci-archive")
    tar_store.close()
    raise ImageError(
        f"{name} is a tarball but not an image: expected manifest.json (docker-archive) or "
        "oci-layout and index.json (oci-archive)"
    )


def read_layout_blob(layout: Path, digest: str, size: int | None = None, *,
                     limit: int = MAX_JSON_BYTES, what: str = "blob") -> bytes:  # fmt: skip
    """One blob of an OCI layout directory, checked (for callers that hold a digest)."""
    reader = ImageReader(DirStore(layout, str(layout)), "oci-layout")
    return reader.read_blob(digest, size, limit=limit, what=what)


def layout_blob_path(layout: Path, digest: str) -> Path:
    """Where a layout keeps the blob ``digest`` (validated before it becomes a path)."""
    return layout / blob_name(check_digest(digest, f"{layout}: blob"))


__all__ = [
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "Image",
    "ImageReader",
    "LayerRef",
    "LayerStream",
    "ManifestRef",
    "Platform",
    "index_entries",
    "is_attachment_tag",
    "layout_blob_path",
    "open_image",
    "read_layout_blob",
]
