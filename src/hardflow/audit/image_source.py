"""Read an image without running it: its config, its layers and the merged file system.

Sources: an OCI image layout (a directory with ``oci-layout`` and ``index.json``), an
oci-archive (the same as a tar), a docker-archive (``docker save``/``podman save`` output with
``manifest.json``), or an image in the local podman/docker store, which is saved as a
docker-archive through :mod:`hardflow.run.engine` first.

Reading goes through the one image reader (:mod:`hardflow.oci.reader`): every layer is
streamed once, the raw blob is hashed (checked against the OCI descriptor), the decompressed
tar is hashed (checked against the config's ``diff_ids``), each entry is recorded, unsafe
members are kept in :attr:`ImageData.member_issues`, and small regular files are scanned for
private-key material (account files are read up to :data:`CONTENT_LIMIT`). Whiteouts
(``.wh.NAME`` and the opaque ``.wh..wh..opq``) from a layer apply to the layers below it, as
the OCI image spec says, so :attr:`ImageData.files` is what a container would see. What a
later layer deletes is still in the earlier layer's blob: secret hits are kept per layer for
that reason.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardflow.audit.model import AuditError
from hardflow.errors import ImageError
from hardflow.oci.members import MemberIssue
from hardflow.oci.reader import ImageReader, LayerRef, ManifestRef, Platform, open_image
from hardflow.oci.stream import LayerStream, merge_layer, normalize_member, whiteout_target

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
# account files larger than this are not read (an /etc/passwd of 600 MiB is not one)
CONTENT_LIMIT = 4 << 20
_PREFERRED_PLATFORM = Platform("linux", "amd64")

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
    # which platform of a multi-platform image (an index of several): "linux/arm64"; "" for
    # an image of one platform
    platform: str = ""

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
# pure helpers


class ImageReadError(AuditError, ImageError):
    """The image cannot be read: an image error (from :mod:`hardflow.oci.reader`) that the
    audit reports as its own."""


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
    """Remove what the whiteout ``directory/name`` hides from the lower layers' ``files``."""
    merge_layer(files, (), [posixpath.join(directory, name)], lambda _: False)


def _reference(chosen: ManifestRef) -> str | None:
    if chosen.image_name:
        return chosen.image_name
    tag = chosen.ref_name
    if tag and chosen.digest is not None and ":" not in tag and "/" not in tag:
        return f"(unnamed):{tag}"  # an OCI ref.name is often a bare tag
    return tag or None


# ---------------------------------------------------------------------------------------------
# streaming one layer


@dataclass
class _LayerScan:
    """Mutable accumulator while one layer streams; frozen into LayerInfo at the end."""

    entries: list[FileEntry]
    whiteouts: list[str]  # whiteout member paths
    contents: dict[str, bytes]
    named: list[str]
    times: list[str]
    late: list[str]
    unsorted: list[str]
    secrets: list[SecretHit]


def _scan_member(
    layer: LayerStream,
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
    if whiteout_target(path) is not None:
        scan.whiteouts.append(path)
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
    wanted = path in CONTENT_PATHS and info.size <= CONTENT_LIMIT
    if info.isreg() and (wanted or 0 < info.size <= SECRET_SCAN_LIMIT):
        data = layer.read(info, max(CONTENT_LIMIT, SECRET_SCAN_LIMIT))
        if path in CONTENT_PATHS:
            scan.contents[path] = data
        match = _PRIVATE_KEY.search(data)
        if match:
            what = match.group(1).decode("ascii", "replace").lower()
            scan.secrets.append(SecretHit(path, index, f"a {what}"))
    return key


def _scan_layer(
    reader: ImageReader,
    layer: LayerRef,
    created: int | None,
    files: dict[str, FileEntry],
    contents: dict[str, bytes],
    issues: list[MemberIssue],
) -> LayerInfo:
    scan = _LayerScan([], [], {}, [], [], [], [], [])
    with reader.open_layer(layer) as stream:
        previous: bytes | None = None
        for info in stream:
            previous = _scan_member(stream, info, layer.index, created, scan, previous)
    # leaving the block checked the blob digest and the diff_id
    issues.extend(stream.issues)
    merge_layer(files, ((e.path, e) for e in scan.entries), scan.whiteouts,
                lambda e: e.kind == "dir")  # fmt: skip
    for path in [p for p in contents if p not in files]:
        del contents[path]  # whited out, or under a directory a file replaced
    for entry in scan.entries:
        contents.pop(entry.path, None)
    contents.update(scan.contents)
    mtimes = [e.mtime for e in scan.entries]
    return LayerInfo(
        index=layer.index,
        blob=layer.id,
        compression=stream.compression_name,
        gzip_mtime=stream.gzip_mtime,
        gzip_name=stream.gzip_name,
        entries=len(scan.entries),
        paths=tuple(e.path for e in scan.entries),
        named_owners=tuple(scan.named),
        time_records=tuple(scan.times),
        mtimes=(min(mtimes), max(mtimes)) if mtimes else (0, 0),
        late_mtimes=tuple(scan.late),
        unsorted=tuple(scan.unsorted),
        secrets=tuple(scan.secrets),
        diff_id=stream.diff_id,
    )


def _read(reader: ImageReader, source: str, ref: ManifestRef | None = None) -> ImageData:
    if ref is None:
        image = reader.image(prefer=_PREFERRED_PLATFORM, first_if_ambiguous=True)
    else:
        image = reader.image(ref)
    created = parse_created(image.config.get("created"))
    files: dict[str, FileEntry] = {}
    contents: dict[str, bytes] = {}
    issues: list[MemberIssue] = []
    layers = [
        _scan_layer(reader, layer, created, files, contents, issues) for layer in image.layers
    ]
    return ImageData(
        source=source,
        kind=reader.kind,
        reference=_reference(image.manifest),
        config=image.config,
        layers=tuple(layers),
        files=files,
        contents=contents,
        created=created,
        member_issues=tuple(issues),
    )


def _config_platform(config: Mapping[str, Any]) -> Platform | None:
    os_name, arch = config.get("os"), config.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    variant = config.get("variant")
    return Platform(os_name, arch, variant if isinstance(variant, str) else "")


def platform_refs(reader: ImageReader) -> dict[str, ManifestRef]:
    """The images of a multi-platform source by platform (the first listed for each), in
    the order listed; empty when the source holds one platform (or says none)."""
    refs: dict[str, ManifestRef] = {}
    for m in reader.manifests():
        if not m.attachment and m.platform is not None:
            refs.setdefault(str(m.platform), m)
    return refs if len(refs) > 1 else {}


def parse_platform(text: str) -> Platform:
    """``linux/arm64`` (``OS/ARCH[/VARIANT]``), or an :class:`ImageReadError`."""
    try:
        return Platform.parse(text)
    except ImageError as exc:
        raise ImageReadError(exc.message, hint="e.g. --platform linux/arm64") from None


def _read_platforms(reader: ImageReader, source: str, platform: str | None) -> list[ImageData]:
    refs = platform_refs(reader)
    wanted = parse_platform(platform) if platform is not None else None
    if refs:
        chosen = {
            p: m for p, m in refs.items() if wanted is None or Platform.parse(p).matches(wanted)
        }
        if not chosen:
            raise ImageReadError(
                f"{source} has no platform {wanted} (its platforms: {', '.join(refs)})",
                hint=f"choose one with --platform {next(iter(refs))}, or leave --platform out "
                "to audit every platform",
            )
        return [replace(_read(reader, source, m), platform=p) for p, m in chosen.items()]
    data = _read(reader, source)
    if wanted is not None:
        found = _config_platform(data.config)
        if found is None or not found.matches(wanted):
            raise ImageReadError(
                f"{source} is an image of one platform ({found or 'not stated'}), not {wanted}",
                hint="leave --platform out",
            )
    return [data]


# ---------------------------------------------------------------------------------------------
# entry point


def read_image_path(path: Path, source: str | None = None) -> ImageData:
    """Read an OCI layout directory, an oci-archive or a docker-archive."""
    try:
        with open_image(path) as reader:
            return _read(reader, source or str(path))
    except ImageError as exc:
        raise ImageReadError(exc.message, hint=exc.hint) from None


def read_image_platforms(
    path: Path, source: str | None = None, platform: str | None = None
) -> list[ImageData]:
    """Every platform of a multi-platform image (or the one ``platform`` names), each with
    its :attr:`ImageData.platform`; an image of one platform as :func:`read_image_path` reads
    it (``platform``, if given, must be its own)."""
    try:
        with open_image(path) as reader:
            return _read_platforms(reader, source or str(path), platform)
    except ImageReadError:
        raise
    except ImageError as exc:
        raise ImageReadError(exc.message, hint=exc.hint) from None


Saver = Callable[[str, Path], None]


def _engine_saver(engine_name: str | None) -> Saver:
    def save(reference: str, dest: Path) -> None:
        from hardflow.run.engine import detect_engine, save_image

        save_image(detect_engine(engine_name), reference, dest)

    return save


def looks_like_path(image: str) -> bool:
    return image.startswith(("/", "./", "../", "~")) or os.path.exists(image)


@contextmanager
def local_image(
    image: str, *, engine: str | None = None, saver: Saver | None = None
) -> Iterator[tuple[Path, bool]]:
    """``image`` as a file to read, and whether it came from the engine: a path (layout or
    archive) as it is, or a reference in the local engine store saved as a docker-archive
    into a temporary directory that is removed on exit."""
    if looks_like_path(image):
        path = Path(image).expanduser()
        if not path.exists():
            raise AuditError(f"{image}: no such file or directory")
        yield path, False
        return
    save = saver or _engine_saver(engine)
    with tempfile.TemporaryDirectory(prefix="hardflow-audit-") as tmp:
        dest = Path(tmp) / "image.tar"
        save(image, dest)
        yield dest, True


def read_image(image: str, *, engine: str | None = None, saver: Saver | None = None) -> ImageData:
    """Read ``image``: a path (layout or archive) or a reference in the local engine store."""
    with local_image(image, engine=engine, saver=saver) as (path, from_engine):
        data = read_image_path(path, image)
    if not from_engine:
        return data
    return replace(data, source=image, kind="engine", reference=data.reference or image)


def read_images(
    image: str,
    *,
    platform: str | None = None,
    engine: str | None = None,
    saver: Saver | None = None,
) -> list[ImageData]:
    """:func:`read_image` for every platform of a multi-platform ``image`` (or the one
    ``platform`` names); see :func:`read_image_platforms`."""
    with local_image(image, engine=engine, saver=saver) as (path, from_engine):
        found = read_image_platforms(path, image, platform)
    if not from_engine:
        return found
    return [replace(d, source=image, kind="engine", reference=d.reference or image) for d in found]


def is_setid(entry: FileEntry) -> bool:
    return entry.kind in ("file", "hardlink") and bool(entry.mode & (stat.S_ISUID | stat.S_ISGID))


__all__ = [
    "CONTENT_LIMIT",
    "CONTENT_PATHS",
    "FileEntry",
    "ImageData",
    "ImageReadError",
    "LayerInfo",
    "Saver",
    "SecretHit",
    "apply_whiteout",
    "is_setid",
    "local_image",
    "looks_like_path",
    "normalize_member",
    "parse_created",
    "parse_platform",
    "platform_refs",
    "read_image",
    "read_image_path",
    "read_image_platforms",
    "read_images",
]
