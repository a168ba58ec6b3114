"""Read an image without running it: its config, its layers and the merged file system.

Sources: an OCI image layout (a directory with ``oci-layout`` and ``index.json``), an
oci-archive (the same as a tar), a docker-archive (``docker save``/``podman save`` output with
``manifest.json``), or an image in the local podman/docker store, which is saved as a
docker-archive through :mod:`hardflow.run.engine` first.

Every layer is streamed once: the raw blob is hashed (checked against the OCI descriptor), the
decompressed tar is hashed (checked against the config's ``diff_ids``), each entry is recorded
and small regular files are scanned for private-key material. Whiteouts (``.wh.NAME`` and the
opaque ``.wh..wh..opq``) from a layer apply to the layers below it, as the OCI image spec says,
so :attr:`ImageData.files` is what a container would see. What a later layer deletes is still
in the earlier layer's blob: secret hits are kept per layer for that reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from hardflow.audit.model import AuditError
from hardflow.oci.members import MemberIssue

# files whose contents the checks read (after whiteouts)
CONTENT_PATHS = frozenset(
    {"etc/passwd", "etc/shadow", "etc/group", "etc/gshadow", "etc/master.passwd"}
)
SECRET_SCAN_LIMIT = 1 << 20  # scan regular files up to 1 MiB for private-key blocks
# a PEM/OpenSSH private key: the BEGIN line, a body, the END line (a bare BEGIN marker in
# source code, as parsers have it, is not a key)
_PRIVATE_KEY = re.compile(
    rb"-----BEGIN ((?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
    rb"[A-Za-z0-9+/=\s:,.\-]{64,}?-----END \1-----"
)
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
_REF_NAME = "org.opencontainers.image.ref.name"
# cosign-style attachments (signatures, attestations) listed beside the image in index.json
_ATTACHMENT_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.[a-z]+$")

ImageKind = str  # "oci-layout" | "oci-archive" | "docker-archive" | "engine"


@dataclass(frozen=True)
class FileEntry:
    """One path of the merged file system (or of one layer)."""

    path: str  # relative, no leading slash: "usr/bin/bash"
    kind: str  # file, dir, symlink, hardlink, char, block, fifo
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str
    layer: int  # index of the layer that last wrote it

    @property
    def is_file(self) -> bool:
        return self.kind in ("file", "hardlink")


@dataclass(frozen=True)
class SecretHit:
    """A private-key block found inside a file of one layer."""

    path: str
    layer: int
    what: str


@dataclass(frozen=True)
class LayerInfo:
    index: int
    blob: str  # digest or archive member name
    compression: str  # gzip, zstd, none
    gzip_mtime: int | None  # gzip header MTIME field (None when not gzip)
    gzip_name: bool  # gzip header carries a file name (FNAME flag)
    entries: int
    paths: tuple[str, ...]  # every path written by this layer (whiteouts excluded)
    named_owners: tuple[str, ...]  # paths whose tar header carries a user/group name
    time_records: tuple[str, ...]  # paths with PAX atime/ctime records
    mtimes: tuple[int, int]  # (min, max) over the entries; (0, 0) if empty
    late_mtimes: tuple[str, ...]  # paths with mtime later than the config's created time
    unsorted: tuple[str, ...]  # first paths out of byte order
    secrets: tuple[SecretHit, ...]
    diff_id: str


@dataclass(frozen=True)
class ImageData:
    source: str  # what the user named
    kind: ImageKind
    reference: str | None  # name:tag if known
    config: Mapping[str, Any]  # the image config JSON
    layers: tuple[LayerInfo, ...]
    files: Mapping[str, FileEntry]  # merged file system
    contents: Mapping[str, bytes]  # CONTENT_PATHS present in the merged file system
    created: int | None  # config "created" as epoch seconds
    # layer members unsafe to unpack (see hardflow.oci.members): escapes and special files
    member_issues: tuple[MemberIssue, ...] = ()

    @property
    def runtime(self) -> Mapping[str, Any]:
        value = self.config.get("config") or {}
        return value if isinstance(value, dict) else {}

    @property
    def history(self) -> tuple[str, ...]:
        """``created_by`` (or comment) of every history entry, empty layers included."""
        entries = self.config.get("history") or []
        out = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                out.append(str(entry.get("created_by") or entry.get("comment") or ""))
        return tuple(out)


# ---------------------------------------------------------------------------------------------
# blob stores: a directory or a tarball


class _Store(Protocol):
    label: str

    def read(self, name: str) -> bytes: ...

    def open(self, name: str) -> IO[bytes]: ...

    def exists(self, name: str) -> bool: ...


class _DirStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def _path(self, name: str) -> Path:
        clean = posixpath.normpath(name)
        if clean.startswith("../") or clean == ".." or clean.startswith("/"):
            raise AuditError(f"{self.label}: blob name {name!r} escapes the image directory")
        return self.root / clean

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except OSError as exc:
            raise AuditError(f"{self.label}: cannot read {name}: {exc.strerror}") from None

    def open(self, name: str) -> IO[bytes]:
        try:
            return open(self._path(name), "rb")
        except OSError as exc:
            raise AuditError(f"{self.label}: cannot open {name}: {exc.strerror}") from None


class _TarStore:
    def __init__(self, archive: tarfile.TarFile, label: str) -> None:
        self.archive = archive
        self.label = label
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in archive.getmembers():
            if member.isfile():
                self.members[posixpath.normpath(member.name.lstrip("/"))] = member

    def exists(self, name: str) -> bool:
        return posixpath.normpath(name) in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(posixpath.normpath(name))
        if member is None:
            raise AuditError(f"{self.label}: the archive has no member {name!r}")
        handle = self.archive.extractfile(member)
        if handle is None:  # pragma: no cover - members are regular files
            raise AuditError(f"{self.label}: cannot read member {name!r}")
        return handle

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            try:
                return fh.read()
            except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
                raise AuditError(f"{self.label}: cannot read member {name!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# pure helpers


def normalize_member(name: str) -> str:
    """``"./usr/bin/"`` → ``"usr/bin"``; ``""`` for the root itself."""
    clean = posixpath.normpath("/" + name).lstrip("/")
    return "" if clean == "." else clean


def _kind(info: tarfile.TarInfo) -> str:
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr():
        return "char"
    if info.isblk():
        return "block"
    if info.isfifo():
        return "fifo"
    return "other"


def parse_created(value: object) -> int | None:
    """RFC 3339 ``created`` → epoch seconds (fractions dropped); None when absent or odd."""
    from datetime import datetime

    if not isinstance(value, str) or not value:
        return None
    text = re.sub(r"\.\d+", "", value.strip()).replace("Z", "+00:00")
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return None


def apply_whiteout(files: dict[str, Any], directory: str, name: str) -> None:
    """Remove what a whiteout hides from the lower layers' ``files`` (in place)."""
    if name == _OPAQUE:
        prefix = directory + "/" if directory else ""
        for path in [p for p in files if p.startswith(prefix) and p != directory]:
            del files[path]
        return
    target = posixpath.join(directory, name[len(_WHITEOUT) :]) if directory else name[4:]
    files.pop(target, None)
    prefix = target + "/"
    for path in [p for p in files if p.startswith(prefix)]:
        del files[path]


def _reference_from_index(index: Mapping[str, Any], manifest: Mapping[str, Any]) -> str | None:
    annotations = manifest.get("annotations") or {}
    name = annotations.get("io.containerd.image.name")
    if isinstance(name, str) and name:
        return name
    tag = annotations.get("org.opencontainers.image.ref.name")
    if isinstance(tag, str) and tag:
        return tag if ":" in tag or "/" in tag else f"(unnamed):{tag}"
    return None


# ---------------------------------------------------------------------------------------------
# streaming one layer


class _HashingReader(io.RawIOBase):
    """Reads from ``raw`` and hashes everything read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.count += n
        return n

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _decompressor(head: bytes, source: IO[bytes]) -> tuple[str, IO[bytes]]:
    if head.startswith(_GZIP_MAGIC):
        import gzip

        gz: IO[bytes] = gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[assignment]
        return "gzip", gz
    if head.startswith(_ZSTD_MAGIC):
        import zstandard

        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(source)
        return "zstd", reader
    return "none", source


@dataclass
class _LayerScan:
    """Mutable accumulator while one layer streams; frozen into LayerInfo at the end."""

    entries: list[FileEntry]
    whiteouts: list[tuple[str, str]]  # (directory, whiteout name)
    contents: dict[str, bytes]
    named: list[str]
    times: list[str]
    late: list[str]
    unsorted: list[str]
    secrets: list[SecretHit]


def _scan_member(
    archive: tarfile.TarFile,
    info: tarfile.TarInfo,
    index: int,
    created: int | None,
    scan: _LayerScan,
    previous: bytes | None,
) -> bytes | None:
    """Record one tar member into ``scan``; returns its sort key (or ``previous``)."""
    path = normalize_member(info.name)
    if not path:
        return previous
    directory, base = posixpath.split(path)
    if base.startswith(_WHITEOUT):
        scan.whiteouts.append((directory, base))
        return previous
    key = os.fsencode(path)
    if previous is not None and key < previous and len(scan.unsorted) < 5:
        scan.unsorted.append(path)
    entry = FileEntry(
        path=path,
        kind=_kind(info),
        mode=info.mode & 0o7777,
        uid=info.uid,
        gid=info.gid,
        size=info.size if info.isreg() else 0,
        mtime=int(info.mtime),
        linkname=info.linkname,
        layer=index,
    )
    scan.entries.append(entry)
    if (info.uname or info.gname) and len(scan.named) < 20:
        scan.named.append(path)
    if ({"atime", "ctime"} & set(info.pax_headers)) and len(scan.times) < 20:
        scan.times.append(path)
    if created is not None and entry.mtime > created and len(scan.late) < 20:
        scan.late.append(path)
    if info.isreg() and (path in CONTENT_PATHS or 0 < info.size <= SECRET_SCAN_LIMIT):
        handle = archive.extractfile(info)
        data = handle.read() if handle is not None else b""
        if path in CONTENT_PATHS:
            scan.contents[path] = data
        match = _PRIVATE_KEY.search(data)
        if match:
            what = match.group(1).decode("ascii", "replace").lower()
            scan.secrets.append(SecretHit(path, index, f"a {what}"))
    return key


def _stream_layer(
    store: _Store,
    name: str,
    index: int,
    expect_digest: str | None,
    expect_diff_id: str | None,
    created: int | None,
    files: dict[str, FileEntry],
    contents: dict[str, bytes],
) -> LayerInfo:
    label = f"{store.label}: layer {index} ({name})"
    with store.open(name) as raw_handle:
        raw = _HashingReader(raw_handle)
        buffered = io.BufferedReader(raw, buffer_size=_CHUNK)
        head = buffered.peek(10)[:10]
        gzip_mtime: int | None = None
        gzip_name = False
        if head.startswith(_GZIP_MAGIC) and len(head) >= 10:
            gzip_mtime = int.from_bytes(head[4:8], "little")
            gzip_name = bool(head[3] & 0x08)
        compression, decompressed = _decompressor(head, buffered)
        tar_stream = _HashingReader(decompressed)
        scan = _LayerScan([], [], {}, [], [], [], [], [])
        try:
            with tarfile.open(fileobj=tar_stream, mode="r|") as archive:
                previous: bytes | None = None
                for info in archive:
                    previous = _scan_member(archive, info, index, created, scan, previous)
            tar_stream.drain()
            while buffered.read(_CHUNK):
                pass
        except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
            what = {"gzip": "a gzip-compressed tar", "zstd": "a zstd-compressed tar"}.get(
                compression, "a tar"
            )
            raise AuditError(
                f"{label}: expected {what} layer but could not read it: {exc}",
                hint="the blob is truncated or is not a layer; re-export the image",
            ) from None
        except Exception as exc:  # zstandard raises its own ZstdError
            if type(exc).__name__ != "ZstdError":
                raise
            raise AuditError(f"{label}: expected a zstd-compressed tar layer: {exc}") from None
    digest = "sha256:" + raw.hash.hexdigest()
    diff_id = "sha256:" + tar_stream.hash.hexdigest()
    if expect_digest and expect_digest.startswith("sha256:") and digest != expect_digest:
        raise AuditError(
            f"{label}: blob digest is {digest}, the manifest says {expect_digest}",
            hint="the blob is truncated or was modified",
        )
    if expect_diff_id and expect_diff_id.startswith("sha256:") and diff_id != expect_diff_id:
        raise AuditError(
            f"{label}: uncompressed digest is {diff_id}, the config's diff_id is {expect_diff_id}",
            hint="the layer is truncated or was modified",
        )
    # whiteouts hide lower layers' paths; then this layer's entries go on top
    for directory, base in scan.whiteouts:
        apply_whiteout(files, directory, base)
        apply_whiteout(contents, directory, base)
    for entry in scan.entries:
        existing = files.get(entry.path)
        if existing is not None and existing.kind == "dir" and entry.kind != "dir":
            apply_whiteout(files, entry.path, _OPAQUE)  # a file replaces a directory tree
        files[entry.path] = entry
        if entry.path in CONTENT_PATHS:
            contents.pop(entry.path, None)
    contents.update(scan.contents)
    mtimes = [e.mtime for e in scan.entries]
    return LayerInfo(
        index=index,
        blob=expect_digest or name,
        compression=compression,
        gzip_mtime=gzip_mtime,
        gzip_name=gzip_name,
        entries=len(scan.entries),
        paths=tuple(e.path for e in scan.entries),
        named_owners=tuple(scan.named),
        time_records=tuple(scan.times),
        mtimes=(min(mtimes), max(mtimes)) if mtimes else (0, 0),
        late_mtimes=tuple(scan.late),
        unsorted=tuple(scan.unsorted),
        secrets=tuple(scan.secrets),
        diff_id=diff_id,
    )


# ---------------------------------------------------------------------------------------------
# reading the manifests


def _json(store: _Store, name: str, what: str) -> Any:
    data = store.read(name)
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AuditError(f"{store.label}: {name} is not valid JSON ({what}): {exc}") from None


def _blob_name(digest: object, label: str) -> str:
    if not isinstance(digest, str) or ":" not in digest:
        raise AuditError(f"{label}: descriptor digest {digest!r} is not of the form algo:hex")
    algorithm, _, hexpart = digest.partition(":")
    if not re.fullmatch(r"[a-z0-9]+", algorithm) or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise AuditError(f"{label}: descriptor digest {digest!r} is malformed")
    return f"blobs/{algorithm}/{hexpart}"


def _pick_manifest(store: _Store, index: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The image manifest an index points to (linux/amd64 first), following nested indexes."""
    reference: str | None = None
    for _depth in range(4):
        manifests = index.get("manifests")
        if not isinstance(manifests, list) or not manifests:
            raise AuditError(f"{store.label}: index.json lists no manifests")
        manifests = [
            m
            for m in manifests
            if isinstance(m, dict)
            and not _ATTACHMENT_TAG.match(str((m.get("annotations") or {}).get(_REF_NAME, "")))
        ] or manifests
        chosen = manifests[0]
        for candidate in manifests:
            platform = candidate.get("platform") or {}
            if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
                chosen = candidate
                break
        reference = reference or _reference_from_index(index, chosen)
        doc = _json(store, _blob_name(chosen.get("digest"), store.label), "image manifest")
        if not isinstance(doc, dict):
            raise AuditError(f"{store.label}: manifest {chosen.get('digest')} is not an object")
        if "manifests" in doc:
            index = doc
            continue
        return doc, reference
    raise AuditError(f"{store.label}: image indexes nest too deeply")


@dataclass(frozen=True)
class _Plan:
    config: dict[str, Any]
    layers: tuple[tuple[str, str | None], ...]  # (blob name, expected digest)
    reference: str | None


def _oci_plan(store: _Store) -> _Plan:
    index = _json(store, "index.json", "OCI image index")
    if not isinstance(index, dict):
        raise AuditError(f"{store.label}: index.json is not a JSON object")
    manifest, reference = _pick_manifest(store, index)
    config_desc = manifest.get("config") or {}
    config = _json(store, _blob_name(config_desc.get("digest"), store.label), "image config")
    layers = manifest.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise AuditError(f"{store.label}: the manifest has no config or no layers list")
    plan = tuple(
        (_blob_name(layer.get("digest"), store.label), str(layer.get("digest"))) for layer in layers
    )
    return _Plan(config, plan, reference)


def _docker_plan(store: _Store) -> _Plan:
    manifest = _json(store, "manifest.json", "docker-archive manifest")
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise AuditError(f"{store.label}: manifest.json is not a non-empty list of images")
    entry = manifest[0]
    config = _json(store, str(entry.get("Config")), "image config")
    layers = entry.get("Layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise AuditError(f"{store.label}: manifest.json has no Config or Layers")
    tags = entry.get("RepoTags") or []
    reference = str(tags[0]) if tags else None
    return _Plan(config, tuple((str(name), None) for name in layers), reference)


def _read(store: _Store, plan: _Plan, source: str, kind: ImageKind) -> ImageData:
    config = plan.config
    created = parse_created(config.get("created"))
    rootfs = config.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(plan.layers):
        raise AuditError(
            f"{store.label}: the config lists {len(diff_ids or [])} diff_ids for "
            f"{len(plan.layers)} layers"
        )
    files: dict[str, FileEntry] = {}
    contents: dict[str, bytes] = {}
    layers = []
    for index, (name, digest) in enumerate(plan.layers):
        layers.append(
            _stream_layer(
                store, name, index, digest, str(diff_ids[index]), created, files, contents
            )
        )
    return ImageData(
        source=source,
        kind=kind,
        reference=plan.reference,
        config=config,
        layers=tuple(layers),
        files=files,
        contents=contents,
        created=created,
    )


# ---------------------------------------------------------------------------------------------
# entry point


def read_image_path(path: Path, source: str | None = None) -> ImageData:
    """Read an OCI layout directory, an oci-archive or a docker-archive."""
    label = source or str(path)
    if path.is_dir():
        if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
            raise AuditError(
                f"{path} is a directory but not an OCI image layout "
                "(expected the files oci-layout and index.json)"
            )
        store = _DirStore(path)
        return _read(store, _oci_plan(store), label, "oci-layout")
    try:
        with tarfile.open(path, mode="r:*") as archive:
            return _read_archive(archive, path, label)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise AuditError(
            f"{path} is not an image: expected an OCI layout directory, an oci-archive or a "
            f"docker-archive tarball ({exc})"
        ) from None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from None


def _read_archive(archive: tarfile.TarFile, path: Path, label: str) -> ImageData:
    try:
        tar_store = _TarStore(archive, str(path))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise AuditError(f"{path}: the tarball is truncated or damaged: {exc}") from None
    if tar_store.exists("manifest.json"):
        return _read(tar_store, _docker_plan(tar_store), label, "docker-archive")
    if tar_store.exists("index.json") and tar_store.exists("oci-layout"):
        return _read(tar_store, _oci_plan(tar_store), label, "oci-archive")
    raise AuditError(
        f"{path} is a tarball but not an image: expected manifest.json (docker-archive) "
        "or oci-layout and index.json (oci-archive)"
    )


Saver = Callable[[str, Path], None]


def _engine_saver(engine_name: str | None) -> Saver:
    def save(reference: str, dest: Path) -> None:
        from hardflow.run.engine import detect_engine, save_image

        save_image(detect_engine(engine_name), reference, dest)

    return save


def looks_like_path(image: str) -> bool:
    return image.startswith(("/", "./", "../", "~")) or os.path.exists(image)


def read_image(image: str, *, engine: str | None = None, saver: Saver | None = None) -> ImageData:
    """Read ``image``: a path (layout or archive) or a reference in the local engine store."""
    if looks_like_path(image):
        path = Path(image).expanduser()
        if not path.exists():
            raise AuditError(f"{image}: no such file or directory")
        return read_image_path(path, image)
    save = saver or _engine_saver(engine)
    with tempfile.TemporaryDirectory(prefix="hardflow-audit-") as tmp:
        dest = Path(tmp) / "image.tar"
        save(image, dest)
        data = read_image_path(dest, image)
    reference = data.reference or image
    return ImageData(
        source=image,
        kind="engine",
        reference=reference,
        config=data.config,
        layers=data.layers,
        files=data.files,
        contents=data.contents,
        created=data.created,
    )


def is_setid(entry: FileEntry) -> bool:
    return entry.kind in ("file", "hardlink") and bool(entry.mode & (stat.S_ISUID | stat.S_ISGID))


__all__ = [
    "CONTENT_PATHS",
    "FileEntry",
    "ImageData",
    "LayerInfo",
    "SecretHit",
    "apply_whiteout",
    "is_setid",
    "normalize_member",
    "parse_created",
    "read_image",
    "read_image_path",
]
