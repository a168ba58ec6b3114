"""Small images written byte by byte for the reader's tests (no hardflow writer involved, so a
test can break any one field): layer tars, OCI layouts with one or several platforms, nested
indexes, docker-archives and oci-archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class Member:
    """One tar member: kind is file, dir, symlink, hardlink, char or fifo."""

    name: str
    data: bytes = b""
    kind: str = "file"
    link: str = ""
    mode: int = 0o644


def tar_of(members: Sequence[Member]) -> bytes:
    buf = io.BytesIO()
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "char": tarfile.CHRTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = types[m.kind]
            info.mode = m.mode
            info.linkname = m.link
            info.mtime = 1_700_000_000
            if m.kind == "file":
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, kind: str | None) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def put_blob(root: Path, data: bytes) -> dict[str, Any]:
    """Store ``data`` in the layout's blobs; its descriptor (digest and size)."""
    d = digest(data)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / d[7:]).write_bytes(data)
    return {"digest": d, "size": len(data)}


def config_doc(tars: Sequence[bytes], architecture: str = "amd64") -> dict[str, Any]:
    return {
        "architecture": architecture,
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"User": "1000:0", "Labels": {"x": "y"}},
        "rootfs": {"type": "layers", "diff_ids": [digest(t) for t in tars]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
    }


@dataclass
class Written:
    """One image written into a layout: its manifest descriptor and its pieces."""

    descriptor: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]
    layer_blobs: list[bytes] = field(default_factory=list)


def put_image(
    root: Path,
    tars: Sequence[bytes],
    compression: str | None = "gzip",
    architecture: str = "amd64",
) -> Written:
    """Layers, config and manifest as blobs (index.json not written)."""
    config = config_doc(tars, architecture)
    config_desc = put_blob(root, dumps(config))
    media = {"gzip": "+gzip", "zstd": "+zstd", None: ""}[compression]
    layers = []
    blobs = []
    for tar in tars:
        blob = compress(tar, compression)
        blobs.append(blob)
        layers.append({"mediaType": f"application/vnd.oci.image.layer.v1.tar{media}",
                       **put_blob(root, blob)})  # fmt: skip
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": layers,
    }
    desc = {"mediaType": MEDIA_MANIFEST, **put_blob(root, dumps(manifest)),
            "platform": {"os": "linux", "architecture": architecture}}  # fmt: skip
    return Written(desc, manifest, config, blobs)


def write_index(root: Path, entries: Sequence[dict[str, Any]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    doc = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": list(entries)}
    (root / "index.json").write_bytes(dumps(doc))


def named(desc: dict[str, Any], reference: str = "test/app:1.0") -> dict[str, Any]:
    tag = reference.rsplit(":", 1)[1]
    return {**desc, "annotations": {REF_NAME: tag, CONTAINERD_NAME: reference}}


def layout(
    root: Path,
    tars: Sequence[bytes],
    compression: str | None = "gzip",
    reference: str = "test/app:1.0",
) -> Written:
    """A one-image OCI layout at ``root``."""
    written = put_image(root, tars, compression)
    write_index(root, [named(written.descriptor, reference)])
    return written


def docker_archive(
    path: Path,
    tars: Sequence[bytes],
    *,
    compression: str | None = None,
    digest_names: bool = False,
    manifest: Any = None,
    extra: Sequence[tuple[tarfile.TarInfo, bytes | None]] = (),
) -> Path:
    """A ``docker save``-style tar: ``<hex>.tar`` layers (podman's names) or
    ``blobs/sha256/<hex>`` (digest_names), ``<hex>.json`` config, ``manifest.json``."""
    config = dumps(config_doc(tars))
    files: dict[str, bytes] = {f"{digest(config)[7:]}.json": config}
    names = []
    for tar in tars:
        blob = compress(tar, compression)
        name = f"blobs/sha256/{digest(blob)[7:]}" if digest_names else f"{digest(tar)[7:]}.tar"
        files[name] = blob
        names.append(name)
    doc = manifest if manifest is not None else [
        {"Config": f"{digest(config)[7:]}.json", "RepoTags": ["test/app:1.0"], "Layers": names}
    ]  # fmt: skip
    files["manifest.json"] = dumps(doc)
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def tar_directory(src: Path, dest: Path) -> Path:
    """An oci-archive: the layout directory's files in a tar."""
    with tarfile.open(dest, "w") as tar:
        for child in sorted(src.iterdir()):
            tar.add(child, arcname=child.name)
    return dest
