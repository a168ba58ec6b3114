"""The OCI image: config, manifest, index, an image layout directory and a docker-archive.

Everything is serialized deterministically (sorted keys, compact separators, UTF-8), so the
same layers and :class:`ImageConfig` give the same config and manifest digests anywhere.

The config blob is a Docker/OCI image config. It carries the Docker ``Healthcheck`` key: the
OCI image spec does not define it and OCI tooling ignores it, but Docker honours it from any
config and podman honours it when the image is stored with a Docker schema 2 manifest — which
is what ``podman load`` of our docker-archive produces. An image copied into podman through
the ``oci:`` layout transport keeps its OCI manifest and podman ignores the health check then.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from hardflow.errors import BuildError
from hardflow.oci.layer import Layer

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_MEDIA_TYPES = {"gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_SECOND_NS = 1_000_000_000
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageConfig:
    user: str  # "50000:0"
    env: tuple[str, ...]  # "K=V"
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str
    exposed_ports: tuple[str, ...]  # "8080/tcp"
    labels: Mapping[str, str]
    stop_signal: str
    healthcheck: tuple[str, ...] | None  # ("CMD", "/path", "arg") or ("CMD-SHELL", "…")
    volumes: tuple[str, ...]
    created: int  # SOURCE_DATE_EPOCH
    architecture: str = "amd64"
    os: str = "linux"
    history: tuple[str, ...] = ()  # created_by text, one per layer; default "hardflow: <name>"
    healthcheck_interval: int = 10  # seconds
    healthcheck_timeout: int = 5
    healthcheck_start_period: int = 60
    healthcheck_retries: int = 3


@dataclass(frozen=True)
class ImageResult:
    manifest_digest: str
    config_digest: str
    layers: tuple[Layer, ...]
    layout_dir: Path
    archive_path: Path | None
    reference: str  # name:tag
    compressed_size: int  # sum of the layer blobs
    uncompressed_size: int  # sum of the layer tars
    manifest_size: int = 0
    config_size: int = 0
    annotations: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# pure functions


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: the bytes whose sha256 is the digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_reference(reference: str) -> tuple[str, str]:
    """``"registry.example:443/org/airflow:3.0"`` →
    (``"registry.example:443/org/airflow"``, ``"3.0"``).

    A reference without a tag gets ``latest``; digests (``@sha256:…``) are rejected.
    """
    if not reference or "@" in reference or any(c.isspace() for c in reference):
        raise BuildError(
            f"image reference {reference!r} is not of the form name[:tag] "
            "(no digest, no whitespace)"
        )
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        name, tag = reference[:colon], reference[colon + 1 :]
    else:
        name, tag = reference, "latest"
    if not name or not tag or name != name.lower():
        raise BuildError(
            f"image reference {reference!r}: expected a lowercase name and a non-empty tag"
        )
    return name, tag


def _histories(layers: Sequence[Layer], config: ImageConfig) -> tuple[str, ...]:
    if not config.history:
        return tuple(f"hardflow: {layer.name}" for layer in layers)
    if len(config.history) != len(layers):
        raise BuildError(
            f"image config has {len(config.history)} history entries for {len(layers)} "
            "layers; expected one per layer"
        )
    return config.history


def config_document(layers: Sequence[Layer], config: ImageConfig) -> dict[str, Any]:
    """The image config as a JSON-ready dict (OCI image config + Docker's Healthcheck)."""
    created = rfc3339(config.created)
    runtime: dict[str, Any] = {
        "User": config.user,
        "Env": list(config.env),
        "Entrypoint": list(config.entrypoint),
        "Cmd": list(config.cmd),
        "WorkingDir": config.workdir,
        "Labels": dict(config.labels),
        "StopSignal": config.stop_signal,
    }
    if config.exposed_ports:
        runtime["ExposedPorts"] = {port: {} for port in config.exposed_ports}
    if config.volumes:
        runtime["Volumes"] = {volume: {} for volume in config.volumes}
    if config.healthcheck:
        runtime["Healthcheck"] = {
            "Test": list(config.healthcheck),
            "Interval": config.healthcheck_interval * _SECOND_NS,
            "Timeout": config.healthcheck_timeout * _SECOND_NS,
            "StartPeriod": config.healthcheck_start_period * _SECOND_NS,
            "Retries": config.healthcheck_retries,
        }
    return {
        "architecture": config.architecture,
        "os": config.os,
        "created": created,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": created, "created_by": text} for text in _histories(layers, config)
        ],
    }


def _descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def manifest_document(
    layers: Sequence[Layer],
    config_digest: str,
    config_size: int,
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": _descriptor(MEDIA_CONFIG, config_digest, config_size),
        "layers": [
            _descriptor(layer_media_type(layer), layer.digest, layer.size) for layer in layers
        ],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


def layer_media_type(layer: Layer) -> str:
    try:
        return LAYER_MEDIA_TYPES[layer.compression]
    except KeyError:
        raise BuildError(
            f"layer {layer.name}: unknown compression {layer.compression!r} "
            f"(expected one of {', '.join(LAYER_MEDIA_TYPES)})"
        ) from None


def index_document(
    manifest_digest: str, manifest_size: int, reference: str, architecture: str, os_name: str
) -> dict[str, Any]:
    _, tag = split_reference(reference)
    entry = _descriptor(MEDIA_MANIFEST, manifest_digest, manifest_size)
    entry["annotations"] = {REF_NAME: tag, CONTAINERD_NAME: reference}
    entry["platform"] = {"architecture": architecture, "os": os_name}
    return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}


def platform_index_document(
    entries: Sequence[tuple[str, int, str, str]], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """The image index of a multi-platform image: one manifest per (digest, size,
    architecture, os), in the given order, and the image's annotations."""
    manifests = []
    for digest, size, architecture, os_name in entries:
        entry = _descriptor(MEDIA_MANIFEST, digest, size)
        entry["platform"] = {"architecture": architecture, "os": os_name}
        manifests.append(entry)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


def layout_index_document(index_digest: str, index_size: int, reference: str) -> dict[str, Any]:
    """A layout's ``index.json`` for a multi-platform image: one entry, the image index, named
    by the reference (as ``buildx --output type=oci`` and ``podman manifest push oci:`` do)."""
    _, tag = split_reference(reference)
    entry = _descriptor(MEDIA_INDEX, index_digest, index_size)
    entry["annotations"] = {REF_NAME: tag, CONTAINERD_NAME: reference}
    return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}


def docker_manifest_document(
    result: ImageResult, layers: Sequence[Layer] | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "Config": _blob_name(result.config_digest),
            "RepoTags": [result.reference],
            "Layers": [_blob_name(layer.digest) for layer in (layers or result.layers)],
        }
    ]


def _blob_name(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


# ---------------------------------------------------------------------------------------------
# the I/O shell


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o644)


def _place_blob(layer: Layer, blob: Path) -> None:
    """Hard-link the layer file into the layout, or copy it across file systems."""
    try:
        actual = layer.path.stat().st_size
    except OSError as exc:
        raise BuildError(f"layer blob {layer.path} ({layer.name}) is missing: {exc}") from None
    if actual != layer.size:
        raise BuildError(
            f"layer blob {layer.path} ({layer.name}) has {actual} bytes, expected {layer.size}"
        )
    if blob.exists():  # the same layer listed twice
        return
    try:
        os.link(layer.path, blob)
    except OSError:
        shutil.copyfile(layer.path, blob)
        os.chmod(blob, 0o644)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``; an existing ``target`` is set aside first, then removed."""
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / "x")
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old / "x", target)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_oci_layout(
    layers: Sequence[Layer],
    config: ImageConfig,
    annotations: Mapping[str, str],
    reference: str,
    out_dir: Path,
) -> ImageResult:
    """Write an OCI image layout at ``out_dir`` (replacing one that is there), atomically.

    The layout is assembled in a temporary directory beside ``out_dir`` and renamed into place,
    so ``out_dir`` is either the old layout, the new one, or absent — never half-written.
    """
    if not layers:
        raise BuildError("an image needs at least one layer; none were given")
    split_reference(reference)  # validate before writing anything
    config_bytes = canonical_json(config_document(layers, config))
    config_digest = sha256_digest(config_bytes)
    manifest_bytes = canonical_json(
        manifest_document(layers, config_digest, len(config_bytes), annotations)
    )
    manifest_digest = sha256_digest(manifest_bytes)
    index_bytes = canonical_json(
        index_document(
            manifest_digest, len(manifest_bytes), reference, config.architecture, config.os
        )
    )

    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        blobs = tmp / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for layer in layers:
            _place_blob(layer, tmp / _blob_name(layer.digest))
        _write_file(tmp / _blob_name(config_digest), config_bytes)
        _write_file(tmp / _blob_name(manifest_digest), manifest_bytes)
        _write_file(tmp / "index.json", index_bytes)
        _write_file(tmp / "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImageResult(
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layers=tuple(layers),
        layout_dir=out_dir,
        archive_path=None,
        reference=reference,
        compressed_size=sum(layer.size for layer in layers),
        uncompressed_size=sum(layer.uncompressed_size for layer in layers),
        manifest_size=len(manifest_bytes),
        config_size=len(config_bytes),
        annotations=dict(annotations),
    )


@dataclass(frozen=True)
class PlatformImage:
    """One platform's part of a multi-platform image: its layers, config and annotations."""

    layers: tuple[Layer, ...]
    config: ImageConfig
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class IndexResult:
    """A multi-platform image in an OCI layout: the image index and one image per platform
    (each :class:`ImageResult` points at the same layout; none has a docker-archive)."""

    index_digest: str
    index_size: int
    images: tuple[ImageResult, ...]
    layout_dir: Path
    reference: str


def write_oci_index(
    images: Sequence[PlatformImage],
    reference: str,
    out_dir: Path,
    annotations: Mapping[str, str] | None = None,
) -> IndexResult:
    """Write an OCI image layout holding one image index with a manifest per platform (in the
    given order), atomically as :func:`write_oci_layout` does. A blob two platforms share (a
    layer without architecture-specific files) is stored once."""
    if not images:
        raise BuildError("a multi-platform image needs at least one platform; none were given")
    split_reference(reference)
    seen: set[tuple[str, str]] = set()
    docs: list[tuple[PlatformImage, bytes, str, bytes, str]] = []
    for image in images:
        if not image.layers:
            raise BuildError(
                f"platform {image.config.os}/{image.config.architecture}: an image needs at "
                "least one layer; none were given"
            )
        platform = (image.config.os, image.config.architecture)
        if platform in seen:
            raise BuildError(f"platform {'/'.join(platform)} is given twice")
        seen.add(platform)
        config_bytes = canonical_json(config_document(image.layers, image.config))
        config_digest = sha256_digest(config_bytes)
        manifest_bytes = canonical_json(manifest_document(
            image.layers, config_digest, len(config_bytes), image.annotations
        ))  # fmt: skip
        docs.append((image, config_bytes, config_digest, manifest_bytes,
                     sha256_digest(manifest_bytes)))  # fmt: skip
    index_bytes = canonical_json(platform_index_document(
        [(d[4], len(d[3]), d[0].config.architecture, d[0].config.os) for d in docs],
        annotations if annotations is not None else images[0].annotations,
    ))  # fmt: skip
    index_digest = sha256_digest(index_bytes)
    top_bytes = canonical_json(layout_index_document(index_digest, len(index_bytes), reference))

    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        for image, config_bytes, config_digest, manifest_bytes, manifest_digest in docs:
            for layer in image.layers:
                _place_blob(layer, tmp / _blob_name(layer.digest))
            _write_file(tmp / _blob_name(config_digest), config_bytes)
            _write_file(tmp / _blob_name(manifest_digest), manifest_bytes)
        _write_file(tmp / _blob_name(index_digest), index_bytes)
        _write_file(tmp / "index.json", top_bytes)
        _write_file(tmp / "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    results = tuple(
        ImageResult(
            manifest_digest=manifest_digest,
            config_digest=config_digest,
            layers=image.layers,
            layout_dir=out_dir,
            archive_path=None,
            reference=reference,
            compressed_size=sum(layer.size for layer in image.layers),
            uncompressed_size=sum(layer.uncompressed_size for layer in image.layers),
            manifest_size=len(manifest_bytes),
            config_size=len(config_bytes),
            annotations=dict(image.annotations),
        )
        for image, config_bytes, config_digest, manifest_bytes, manifest_digest in docs
    )
    return IndexResult(index_digest, len(index_bytes), results, out_dir, reference)


def _tar_info(name: str, size: int, mtime: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = mtime
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    archive.addfile(_tar_info(name, len(data), mtime), io.BytesIO(data))


def _add_file(archive: tarfile.TarFile, name: str, source: Path, mtime: int) -> None:
    size = source.stat().st_size
    with open(source, "rb") as fh:
        archive.addfile(_tar_info(name, size, mtime), fh)


def write_docker_archive(
    result: ImageResult, path: Path, layers: Sequence[Layer] | None = None
) -> Path:
    """Write a ``docker save``-style tar that ``podman load`` / ``docker load`` accept.

    Members (sorted, mtime = the config's ``created``, owner 0:0, no names): ``blobs/``,
    ``blobs/sha256/``, the config and layer blobs, ``manifest.json``. Layers stay gzip-compressed.
    A docker-archive has no media types, so its readers expect gzip (or plain) layers: for an
    image whose layers are zstd, pass ``layers``, the same tars gzip-compressed (same diff_ids,
    hence the same config and image ID). Written through a temporary file beside ``path`` and
    renamed into place.
    """
    layout = result.layout_dir
    config_path = layout / _blob_name(result.config_digest)
    try:
        config_doc = json.loads(config_path.read_bytes())
        created = config_doc["created"]
        mtime = int(
            datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        )
    except (OSError, ValueError, KeyError) as exc:
        raise BuildError(f"cannot read the image config {config_path}: {exc}") from None

    members: dict[str, Path] = {_blob_name(result.config_digest): config_path}
    if layers is None:
        layers = result.layers
        for layer in layers:
            members[_blob_name(layer.digest)] = layout / _blob_name(layer.digest)
    else:
        if [x.diff_id for x in layers] != [x.diff_id for x in result.layers]:
            raise BuildError(
                "docker-archive: the layers given do not hold the image's tars "
                "(their diff_ids differ from the config's)"
            )
        for layer in layers:
            members[_blob_name(layer.digest)] = layer.path
    for layer in layers:
        if layer.compression != "gzip":
            raise BuildError(
                f"docker-archive: layer {layer.name} is {layer.compression}-compressed; "
                "a docker-archive carries gzip layers only"
            )
    manifest_bytes = canonical_json(docker_manifest_document(result, layers))

    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            _write_archive(raw, members, manifest_bytes, mtime)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"cannot write docker-archive {path}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_archive(
    raw: BinaryIO, members: Mapping[str, Path], manifest_bytes: bytes, mtime: int
) -> None:
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        archive.addfile(_tar_info("blobs", 0, mtime, directory=True))
        archive.addfile(_tar_info("blobs/sha256", 0, mtime, directory=True))
        for name in sorted(members):
            _add_file(archive, name, members[name], mtime)
        _add_bytes(archive, "manifest.json", manifest_bytes, mtime)
