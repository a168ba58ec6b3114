"""Read what an SBOM needs out of a built image: an OCI layout directory or a docker-archive.

Only a handful of paths matter (dpkg ``status.d`` records, Debian copyright files and the
symlinks between doc directories, ``*.dist-info/METADATA``, ``os-release``), so the layers are
streamed once, in order, and everything else is skipped. Whiteouts are honoured, so a later
layer can delete what an earlier one put there. Blob digests are checked while reading: an
SBOM of a tampered layout would be a lie.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from hardflow.errors import ArchiveError
from hardflow.oci.attach import is_attachment_tag
from hardflow.oci.layer import Layer
from hardflow.oci.writer import (
    MEDIA_MANIFEST,
    REF_NAME,
    canonical_json,
    manifest_document,
    sha256_digest,
)

_WANTED = re.compile(
    r"(var/lib/dpkg/status\.d/[^/]+"
    r"|usr/share/doc/[^/]+(/copyright)?"
    r"|(etc|usr/lib)/os-release"
    r"|.+\.dist-info/METADATA)"
)
_CHUNK = 1 << 20
_MAX_FILE = 16 << 20  # a METADATA or copyright file bigger than this is not one


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
class ImageFiles:
    subject: ImageSubject
    files: Mapping[str, bytes]  # relevant regular files by relative path
    links: Mapping[str, str]  # relevant symlinks: relative path → link target


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
# layer streaming


class _HashingReader:
    """A read-only file object that hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> str:
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


class _Prefixed:
    """``head`` (already read from ``raw``) followed by the rest of ``raw``."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self.head = head
        self.raw = raw

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.raw.read(n)
        if n < 0:
            data, self.head = self.head + self.raw.read(), b""
            return data
        data, self.head = self.head[:n], self.head[n:]
        return data if len(data) == n else data + self.raw.read(n - len(data))


def _apply_layer(
    stream: IO[bytes], origin: str, files: dict[str, bytes], links: dict[str, str]
) -> None:
    import zstandard

    try:
        head = stream.read(4)
        source: Any = _Prefixed(head, stream)
        if head == b"\x28\xb5\x2f\xfd":  # zstd layers (tar+zstd), which tarfile cannot open
            source = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        with tarfile.open(fileobj=source, mode="r|*") as archive:
            for info in archive:
                _apply_entry(archive, info, files, links)
    except (tarfile.TarError, EOFError, OSError, ValueError, zstandard.ZstdError) as exc:
        raise ArchiveError(f"cannot read image layer {origin}: {exc}") from None


def _apply_entry(
    archive: tarfile.TarFile,
    info: tarfile.TarInfo,
    files: dict[str, bytes],
    links: dict[str, str],
) -> None:
    path = _clean(info.name)
    base = path.rsplit("/", 1)[-1]
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if base == ".wh..wh..opq":  # opaque directory: nothing below it from earlier layers
        _remove_below(parent, files, links, keep_dir=True)
        return
    if base.startswith(".wh."):
        victim = f"{parent}/{base[4:]}" if parent else base[4:]
        _remove_below(victim, files, links, keep_dir=False)
        return
    # a new entry replaces whatever was at that path
    files.pop(path, None)
    links.pop(path, None)
    if not wanted(path):
        return
    if info.issym():
        links[path] = info.linkname
    elif info.isfile():
        if info.size > _MAX_FILE:
            raise ArchiveError(f"image file /{path} is {info.size} bytes; expected a small text")
        fh = archive.extractfile(info)
        if fh is not None:
            files[path] = fh.read()
    elif info.islnk():
        target = _clean(info.linkname)
        if target in files:
            files[path] = files[target]


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _remove_below(
    path: str, files: dict[str, bytes], links: dict[str, str], keep_dir: bool
) -> None:
    prefix = f"{path}/" if path else ""
    for table in (files, links):
        for key in [k for k in table if k.startswith(prefix) or (not keep_dir and k == path)]:
            del table[key]


# --------------------------------------------------------------------------------------------
# OCI layout


def _load_json(data: bytes, origin: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{origin}: not valid JSON: {exc}") from None


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise ArchiveError(f"{layout}: unsupported blob digest {digest!r}; expected sha256:<hex>")
    return layout / "blobs" / "sha256" / hexpart


def _read_blob(layout: Path, digest: str) -> bytes:
    path = _blob_path(layout, digest)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArchiveError(f"{layout}: blob {digest} is missing: {exc.strerror}") from None
    if sha256_digest(data) != digest:
        raise ArchiveError(f"{path}: content does not match its digest {digest}")
    return data


def _created(config: Mapping[str, Any], origin: str) -> int:
    text = str(config.get("created") or "")
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise ArchiveError(
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
    return ImageSubject(
        reference=reference,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        created=_created(config, origin),
        architecture=str(config.get("architecture", "")),
        os=str(config.get("os", "")),
        labels={str(k): str(v) for k, v in (runtime.get("Labels") or {}).items()},
    )


def read_oci_layout(layout: Path) -> ImageFiles:
    index = _load_json(_read(layout / "index.json"), f"{layout}/index.json")
    manifests = [  # cosign's signatures and attestations (sha256-<hex>.sig/.att) are not it
        m
        for m in index.get("manifests", [])
        if m.get("mediaType") == MEDIA_MANIFEST
        and not is_attachment_tag((m.get("annotations") or {}).get(REF_NAME))
    ]
    if len(manifests) != 1:
        raise ArchiveError(
            f"{layout}/index.json: expected exactly one image manifest, found {len(manifests)}"
        )
    entry = manifests[0]
    manifest_digest = str(entry["digest"])
    manifest = _load_json(_read_blob(layout, manifest_digest), f"manifest {manifest_digest}")
    config_digest = str(manifest["config"]["digest"])
    config = _load_json(_read_blob(layout, config_digest), f"config {config_digest}")
    annotations = entry.get("annotations") or {}
    reference = str(
        annotations.get("io.containerd.image.name")
        or annotations.get("org.opencontainers.image.ref.name")
        or layout.name
    )
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    for layer in manifest.get("layers", []):
        digest = str(layer["digest"])
        path = _blob_path(layout, digest)
        if not path.is_file():
            raise ArchiveError(f"{layout}: layer blob {digest} is missing")
        with open(path, "rb") as raw:
            reader = _HashingReader(raw)
            _apply_layer(reader, str(path), files, links)  # type: ignore[arg-type]
            if reader.drain() != digest:
                raise ArchiveError(f"{path}: content does not match its digest {digest}")
    subject = _subject(reference, manifest_digest, config_digest, config, str(layout))
    return ImageFiles(subject, files, links)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from None


# --------------------------------------------------------------------------------------------
# docker-archive


def read_docker_archive(path: Path) -> ImageFiles:
    """A ``docker save``-style tar. The OCI manifest digest is recomputed when the archive
    holds gzip blobs named by digest (as hardflow writes them): the manifest hardflow puts in
    the OCI layout is a pure function of the layer blobs, the config and the config's
    ``org.opencontainers.image.*`` labels, so the SBOM of the archive and of the layout agree.
    For other archives the manifest digest is left empty and the config digest identifies it.
    """
    try:
        return _read_docker_archive(path)
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"cannot read docker-archive {path}: {exc}") from None


def _read_docker_archive(path: Path) -> ImageFiles:
    with tarfile.open(path, mode="r:") as archive:

        def member(name: str) -> IO[bytes]:
            try:
                fh = archive.extractfile(name)
            except KeyError:
                fh = None
            if fh is None:
                raise ArchiveError(f"{path}: member {name!r} is missing")
            return fh

        entries = _load_json(member("manifest.json").read(), f"{path}:manifest.json")
        if not isinstance(entries, list) or len(entries) != 1:
            raise ArchiveError(f"{path}: manifest.json must describe exactly one image")
        entry = entries[0]
        config_bytes = member(entry["Config"]).read()
        config = _load_json(config_bytes, f"{path}:{entry['Config']}")
        config_digest = sha256_digest(config_bytes)
        files: dict[str, bytes] = {}
        links: dict[str, str] = {}
        descriptors: list[Layer] = []
        digest_named = True
        for name in entry.get("Layers", []):
            reader = _HashingReader(member(name))
            _apply_layer(reader, f"{path}:{name}", files, links)  # type: ignore[arg-type]
            digest = reader.drain()
            m = re.fullmatch(r"blobs/sha256/([0-9a-f]{64})", name)
            if m is None or f"sha256:{m.group(1)}" != digest:
                digest_named = False
            descriptors.append(Layer(name, Path(name), digest, "", reader.size, 0, 0))
    labels = (config.get("config") or {}).get("Labels") or {}
    manifest_digest = ""
    if digest_named and descriptors:
        annotations = {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")}
        manifest = manifest_document(descriptors, config_digest, len(config_bytes), annotations)
        manifest_digest = sha256_digest(canonical_json(manifest))
    tags = entry.get("RepoTags") or []
    reference = str(tags[0]) if tags else path.stem
    subject = _subject(reference, manifest_digest, config_digest, config, str(path))
    return ImageFiles(subject, files, links)


def read_image(path: Path) -> ImageFiles:
    """An OCI layout directory (or a build output directory holding ``oci/``) or a
    docker-archive file."""
    if path.is_dir():
        if (path / "index.json").is_file():
            return read_oci_layout(path)
        if (path / "oci" / "index.json").is_file():
            return read_oci_layout(path / "oci")
        raise ArchiveError(
            f"{path} is a directory without index.json; expected an OCI image layout"
        )
    if path.is_file():
        return read_docker_archive(path)
    raise ArchiveError(f"no image at {path}; expected an OCI layout directory or a docker-archive")


def iter_wanted(files: Mapping[str, bytes], pattern: str) -> Iterator[tuple[str, bytes]]:
    rx = re.compile(pattern)
    for path in sorted(files):
        if rx.fullmatch(path):
            yield path, files[path]
