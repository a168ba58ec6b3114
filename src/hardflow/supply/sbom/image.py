"""Read what an SBOM needs out of a built image: an OCI layout directory or a docker-archive.

Only a handful of paths matter (dpkg ``status.d`` records, Debian copyright files and the
symlinks between doc directories, ``*.dist-info/METADATA``, ``os-release``), so the layers are
streamed once, in order, through the one image reader (:mod:`hardflow.oci.reader`), and
everything else is skipped. Whiteouts are honoured, so a later layer can delete what an
earlier one put there. Every digest is checked while reading (blobs, and for a docker-archive
the layers against the config's ``diff_ids``): an SBOM of a tampered image would be a lie.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from hardflow.errors import ImageError
from hardflow.oci.layer import Layer
from hardflow.oci.reader import Image, Platform, open_image
from hardflow.oci.stream import LayerStream, merge_layer, normalize_member, whiteout_target
from hardflow.oci.writer import canonical_json, manifest_document, sha256_digest

_WANTED = re.compile(
    r"(var/lib/dpkg/status\.d/[^/]+"
    r"|usr/share/doc/[^/]+(/copyright)?"
    r"|(etc|usr/lib)/os-release"
    r"|.+\.dist-info/METADATA)"
)
_MAX_FILE = 16 << 20  # a METADATA or copyright file bigger than this is not one
WANTED_PATTERN, MAX_FILE = _WANTED.pattern, _MAX_FILE  # what a layer's facts depend on


@dataclass(frozen=True)
class ImageSubject:
    """The image the SBOM describes."""

    reference: str  # name:tag
    manifest_digest: str  # "sha256:…" of the OCI manifest
    config_digest: str
    created: int  # the config's "created" (SOURCE_DATE_EPOCH for hardflow images)
    architecture: str
    os: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        slash, colon = self.reference.rfind("/"), self.reference.rfind(":")
        return self.reference[:colon] if colon > slash else self.reference

    @property
    def tag(self) -> str:
        slash, colon = self.reference.rfind("/"), self.reference.rfind(":")
        return self.reference[colon + 1 :] if colon > slash else "latest"


@dataclass(frozen=True)
class LayerRead:
    """One layer as it was streamed (for comparing images: ``hardflow diff``)."""

    digest: str  # the blob's sha256, as read
    diff_id: str  # the uncompressed tar's sha256
    size: int  # blob bytes
    uncompressed_size: int  # tar bytes
    compression: str  # gzip, zstd, none


@dataclass(frozen=True)
class ImageFiles:
    subject: ImageSubject
    files: Mapping[str, bytes]  # relevant regular files by relative path
    links: Mapping[str, str]  # relevant symlinks: relative path → link target
    layers: tuple[LayerRead, ...] = ()  # bottom first
    config: Mapping[str, Any] = field(default_factory=dict)  # the image config


def wanted(path: str) -> bool:
    return bool(_WANTED.fullmatch(path))


def resolve_link(path: str, target: str) -> str:
    """The relative path a symlink at ``path`` points to (absolute or relative target)."""
    if target.startswith("/"):
        joined = PurePosixPath(target.lstrip("/"))
    else:
        joined = PurePosixPath(path).parent / target
    parts: list[str] = []
    for part in joined.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


# --------------------------------------------------------------------------------------------
# reading through the one image reader


@dataclass(frozen=True)
class _Found:
    """What the merged file system holds at a wanted path."""

    kind: str  # file, link, dir, other
    data: bytes = b""
    link: str = ""


@dataclass(frozen=True)
class LayerFacts:
    """What the reader keeps from one layer: a pure function of the blob's bytes."""

    entries: tuple[tuple[str, _Found], ...]
    whiteouts: tuple[str, ...]
    read: LayerRead


class LayerMemo(Protocol):
    """Layer facts kept by blob digest (``supply.sbom.layermemo``: a build's warm path)."""

    def get(self, digest: str) -> LayerFacts | None: ...

    def put(self, digest: str, facts: LayerFacts) -> None: ...


def _layer_entries(stream: LayerStream) -> tuple[list[tuple[str, _Found]], list[str]]:
    """The wanted entries of one layer (path, what) and its whiteouts, in stream order."""
    entries: dict[str, _Found] = {}
    whiteouts: list[str] = []
    for info in stream:
        path = normalize_member(info.name)
        if not path:
            continue
        if whiteout_target(path) is not None:
            whiteouts.append(path)
            continue
        if not wanted(path):
            continue
        entries.pop(path, None)  # a later member of the same layer wins
        if info.issym():
            entries[path] = _Found("link", link=info.linkname)
        elif info.isreg():
            if info.size > _MAX_FILE:
                raise ImageError(
                    f"{stream.label}: image file /{path} is {info.size} bytes; expected a "
                    f"small text (at most {_MAX_FILE})"
                )
            entries[path] = _Found("file", stream.read(info, _MAX_FILE))
        elif info.isdir():
            entries[path] = _Found("dir")
        else:  # a hard link names a member of this layer; its content was read there
            target = entries.get(normalize_member(info.linkname)) if info.islnk() else None
            entries[path] = target if target is not None else _Found("other")
    return list(entries.items()), whiteouts


def _created(config: Mapping[str, Any], origin: str) -> int:
    text = str(config.get("created") or "")
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise ImageError(
            f"{origin}: image config 'created' is {text!r}; expected an RFC 3339 time"
        ) from None


def _subject(
    reference: str,
    manifest_digest: str,
    config_digest: str,
    config: Mapping[str, Any],
    origin: str,
) -> ImageSubject:
    runtime = config.get("config") or {}
    labels = runtime.get("Labels") if isinstance(runtime, dict) else None
    return ImageSubject(
        reference=reference,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        created=_created(config, origin),
        architecture=str(config.get("architecture", "")),
        os=str(config.get("os", "")),
        labels={str(k): str(v) for k, v in (labels if isinstance(labels, dict) else {}).items()},
    )


def _docker_manifest_digest(image: Image, streams: list[LayerStream]) -> str:
    """The OCI manifest digest hardflow's layout has for this docker-archive, when its layers
    are gzip blobs named by digest (as hardflow writes them); "" otherwise.

    The manifest hardflow puts in the OCI layout is a pure function of the layer blobs, the
    config and the config's ``org.opencontainers.image.*`` labels, so the SBOM of the archive
    and of the layout agree. Other archives are identified by their config digest."""
    if not image.layers or any(
        layer.digest is None or stream.compression != "gzip"
        for layer, stream in zip(image.layers, streams, strict=True)
    ):
        return ""
    descriptors = [
        Layer(layer.name, Path(layer.name), stream.digest, stream.diff_id, stream.size, 0, 0)
        for layer, stream in zip(image.layers, streams, strict=True)
    ]
    runtime = image.config.get("config") or {}
    labels = (runtime.get("Labels") if isinstance(runtime, dict) else None) or {}
    annotations = {
        str(k): str(v) for k, v in labels.items() if str(k).startswith("org.opencontainers.image.")
    }
    manifest = manifest_document(descriptors, image.config_digest, image.config_size, annotations)
    return sha256_digest(canonical_json(manifest))


def read_image(
    path: Path,
    *,
    platform: str | None = None,
    ref_name: str | None = None,
    memo: LayerMemo | None = None,
) -> ImageFiles:
    """The files an SBOM needs from an OCI layout directory (or a build output directory
    holding ``oci/``) or a docker-archive. An index listing several images (platforms) needs
    ``platform`` (``linux/arm64``) or ``ref_name`` to say which. ``memo``: layer facts by
    digest, used for the layers of a layout (the build passes its own)."""
    if path.is_dir() and not (path / "index.json").exists() and (path / "oci").is_dir():
        path = path / "oci"
    wanted_platform = Platform.parse(platform) if platform else None
    tree: dict[str, _Found] = {}
    streams: list[LayerStream] = []
    with open_image(path) as reader:
        image = reader.image(ref_name=ref_name, platform=wanted_platform)
        reads: list[LayerRead] = []
        for layer in image.layers:
            digest = layer.digest if memo is not None and image.manifest_digest else None
            facts = memo.get(digest) if memo is not None and digest else None
            if facts is None:
                with reader.open_layer(layer) as stream:
                    entries, whiteouts = _layer_entries(stream)
                streams.append(stream)
                read = LayerRead(stream.digest, stream.diff_id, stream.size,
                                 stream.uncompressed_size, stream.compression_name)  # fmt: skip
                facts = LayerFacts(tuple(entries), tuple(whiteouts), read)
                if memo is not None and digest:
                    memo.put(digest, facts)
            reads.append(facts.read)
            merge_layer(tree, list(facts.entries), list(facts.whiteouts),
                        lambda found: found.kind == "dir")  # fmt: skip
    chosen = image.manifest
    if image.manifest_digest is not None:
        reference = chosen.image_name or chosen.ref_name or path.name
        manifest_digest = image.manifest_digest
    else:
        reference = chosen.ref_name or path.stem
        manifest_digest = _docker_manifest_digest(image, streams)
    subject = _subject(reference, manifest_digest, image.config_digest, image.config, str(path))
    files = {p: f.data for p, f in tree.items() if f.kind == "file"}
    links = {p: f.link for p, f in tree.items() if f.kind == "link"}
    return ImageFiles(subject, files, links, tuple(reads), image.config)


def iter_wanted(files: Mapping[str, bytes], pattern: str) -> Iterator[tuple[str, bytes]]:
    rx = re.compile(pattern)
    for path in sorted(files):
        if rx.fullmatch(path):
            yield path, files[path]
