"""Deterministic layer tarballs: the same tree and SOURCE_DATE_EPOCH give the same bytes.

A layer is written in one pass: tar headers and file contents are produced in path order,
hashed (the *diff_id*), compressed, hashed again (the *digest*) and streamed to a temporary
file that is renamed into place. Two compressions, each with one fixed setting so the same tar
always gives the same bytes:

* ``gzip`` (the default, every engine reads it): zlib level 6 inside a gzip frame we write
  ourselves;
* ``zstd``: one zstd frame at level 3 (what ``podman push --compression-format zstd`` uses),
  single-threaded, with a content checksum and without the content size field (the size is not
  known when the frame starts, and leaving it out always keeps the header the same). The bytes
  depend on the libzstd bundled with the ``zstandard`` package, as gzip's depend on zlib.

The tar format is POSIX ustar, written by hand so that the bytes do not depend on the
Python version's :mod:`tarfile`:

* every entry gets ``mtime = SOURCE_DATE_EPOCH``, numeric uid/gid from the ownership map,
  empty user/group names, the permission bits (including sticky) from disk;
* names that fit ustar (a 100-byte name, or a 155-byte prefix plus a 100-byte name split at a
  ``/``) are plain ustar; longer or non-ASCII names get a PAX extended header holding only a
  ``path`` (and ``linkpath`` for long symlink targets) record — never time records;
* the archive ends with two zero blocks and no record padding;
* the gzip header has mtime 0, no file name, XFL 0 and OS 255 (unknown).

Each layer stands alone: the parent directories of every path are written too, so any
layer extracts onto an empty directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import zstandard

from hardflow.errors import ArchiveError, BuildError
from hardflow.fsutil import (
    ConfinementError,
    chmod_confined,
    confined_parts,
    link_confined,
    lstat_confined,
    mkdirs_confined,
    open_confined,
    remove_confined,
    symlink_confined,
)
from hardflow.oci.layer import (
    COMPRESSIONS,
    GZIP_LEVEL,
    SUFFIX,
    Compression,
    Layer,
    gzip_header,
    open_layer,
    zstd_compressor,
)
from hardflow.oci.members import classify

Owner = tuple[int, int]

BLOCK = 512
_CHUNK = 1 << 20  # file contents are read and compressed in 1 MiB pieces
_PAX_NAME = b"././@PaxHeader"
_MAX_OCTAL_7 = 0o7777777  # 7 octal digits: uid, gid, mode
_MAX_OCTAL_11 = 0o77777777777  # 11 octal digits: size, mtime


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its name and the paths (relative to the root) that belong to it.

    Paths are taken literally, not recursively: a directory listed here becomes one directory
    entry; its contents must be listed too (see :func:`list_tree`).
    """

    name: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    """One tar entry, decided before any byte is written."""

    name: str  # relative path, no trailing slash
    kind: bytes  # tar type flag: b"0" file, b"2" symlink, b"5" directory
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str


# ---------------------------------------------------------------------------------------------
# pure helpers


def normalize_path(path: str) -> str:
    """``"/opt/airflow/"`` → ``"opt/airflow"``; rejects ``..``, ``.`` and empty components."""
    stripped = path.strip("/")
    parts = stripped.split("/")
    if not stripped or any(p in ("", ".", "..") for p in parts):
        raise BuildError(
            f"layer path {path!r} is not a plain relative path below the image root "
            "(expected components without '', '.' or '..')"
        )
    return stripped


def _sort_key(path: str) -> bytes:
    return os.fsencode(path)


def with_parents(paths: Iterable[str]) -> list[str]:
    """The normalized paths plus every parent directory, deduplicated, in byte order.

    Sorting the names without a trailing slash puts every directory before its contents.
    """
    out: set[str] = set()
    for raw in paths:
        path = normalize_path(raw)
        out.add(path)
        parts = path.split("/")
        for i in range(1, len(parts)):
            out.add("/".join(parts[:i]))
    return sorted(out, key=_sort_key)


def normalize_owners(owners: Mapping[str, Owner]) -> dict[str, Owner]:
    """Owner map keys in the same form as layer paths (no leading or trailing slash)."""
    return {normalize_path(k): (int(v[0]), int(v[1])) for k, v in owners.items()}


def _octal(value: int, width: int, what: str, name: str) -> bytes:
    limit = 8 ** (width - 1) - 1
    if value < 0 or value > limit:
        raise BuildError(f"tar entry {name!r}: {what} {value} does not fit a ustar field")
    return b"%0*o\0" % (width - 1, value)


def _field(data: bytes, width: int) -> bytes:
    return data + b"\0" * (width - len(data))


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise BuildError(f"{what} {text!r} is not valid UTF-8; image paths must be UTF-8") from None


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) fitting the ustar fields, or None when a PAX path record is needed."""
    if not name.isascii():
        return None
    if len(name) <= 100:
        return b"", name
    # the shortest prefix that leaves a name of at most 100 bytes, split at a slash
    start = len(name) - 101
    for i in range(max(start, 0), min(len(name), 156)):
        if name[i : i + 1] == b"/" and 0 < len(name) - i - 1 <= 100 and i <= 155:
            return name[:i], name[i + 1 :]
    return None


def _ustar_header(
    *,
    name: bytes,
    prefix: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    kind: bytes,
    linkname: bytes,
    label: str,
) -> bytes:
    head = b"".join(
        (
            _field(name, 100),
            _octal(mode, 8, "mode", label),
            _octal(uid, 8, "uid", label),
            _octal(gid, 8, "gid", label),
            _octal(size, 12, "size", label),
            _octal(mtime, 12, "mtime", label),
            b" " * 8,  # checksum placeholder
            kind,
            _field(linkname, 100),
            b"ustar\x0000",
            _field(b"", 32),  # uname: numeric owners only
            _field(b"", 32),  # gname
            _octal(0, 8, "devmajor", label),
            _octal(0, 8, "devminor", label),
            _field(prefix, 155),
            b"\0" * 12,
        )
    )
    assert len(head) == BLOCK
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length = len(str(length).encode()) + len(body)
    return str(length).encode() + body


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _entry_header(entry: _Entry, mtime: int) -> bytes:
    """The header block(s) for one entry: an optional PAX header, then the ustar header."""
    raw_name = _encode(entry.name, "path") + (b"/" if entry.kind == b"5" else b"")
    raw_link = _encode(entry.linkname, "symlink target") if entry.linkname else b""
    records = b""
    split = _split_ustar(raw_name)
    if split is None:
        records += _pax_record("path", raw_name)
        split = (b"", raw_name[:100])
    link_field = raw_link
    if len(raw_link) > 100 or not raw_link.isascii():
        records += _pax_record("linkpath", raw_link)
        link_field = raw_link[:100]
    out = b""
    if records:
        out += _ustar_header(
            name=_PAX_NAME,
            prefix=b"",
            mode=0o644,
            uid=0,
            gid=0,
            size=len(records),
            mtime=mtime,
            kind=b"x",
            linkname=b"",
            label=entry.name,
        )
        out += records + _padding(len(records))
    out += _ustar_header(
        name=split[1],
        prefix=split[0],
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=entry.size,
        mtime=mtime,
        kind=entry.kind,
        linkname=link_field,
        label=entry.name,
    )
    return out


# ---------------------------------------------------------------------------------------------
# the I/O shell


def _stat_entry(root: Path, rel: str, owners: Mapping[str, Owner], layer: str) -> _Entry:
    full = root / rel
    try:
        st = os.lstat(full)
    except OSError as exc:
        raise BuildError(
            f"layer {layer!r}: path {rel!r} is missing under {root}: {exc.strerror}"
        ) from None
    perm = stat.S_IMODE(st.st_mode)
    if perm & (stat.S_ISUID | stat.S_ISGID):
        raise BuildError(
            f"{full} has setuid/setgid bits (mode {perm:04o}); the image must have none",
            hint="the assembler clears these bits; a file slipped past it",
        )
    uid, gid = owners.get(rel, (0, 0))
    if stat.S_ISREG(st.st_mode):
        return _Entry(rel, b"0", perm, uid, gid, st.st_size, "")
    if stat.S_ISDIR(st.st_mode):
        return _Entry(rel, b"5", perm, uid, gid, 0, "")
    if stat.S_ISLNK(st.st_mode):
        return _Entry(rel, b"2", 0o777, uid, gid, 0, os.readlink(full))
    raise BuildError(
        f"{full} is neither a regular file, a directory nor a symlink "
        f"(mode {st.st_mode:o}); device nodes, fifos and sockets do not belong in an image"
    )


def _check_no_path_below_a_link(entries: Sequence[_Entry], layer: str) -> None:
    """Refuse a path listed below a symlink: reading it would follow the link on the host.

    The stages never record such a path (their writes never pass through a symlink); this is
    the layer writer's own guard, so a tree from elsewhere cannot leak host files either."""
    links = {e.name for e in entries if e.kind == b"2"}
    if not links:
        return
    for entry in entries:
        parent = entry.name.rpartition("/")[0]
        while parent:
            if parent in links:
                raise BuildError(
                    f"layer {layer!r}: path {entry.name!r} lies below the symlink {parent!r}; "
                    "a layer never reads through a symlink"
                )
            parent = parent.rpartition("/")[0]


class _Sink:
    """tar bytes in → diff_id hash; compress (gzip frame or zstd frame) → digest hash → file."""

    def __init__(
        self,
        out: BinaryIO,
        progress: Callable[[int], None] | None,
        compression: Compression = "gzip",
    ) -> None:
        self._out = out
        self._progress = progress
        self._compression = compression
        self._tar_hash = hashlib.sha256()
        self._gz_hash = hashlib.sha256()
        self._deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, 8, 0)
        self._zstd = zstd_compressor().compressobj() if compression == "zstd" else None
        self._crc = 0
        self._buffer = bytearray()
        self.uncompressed = 0
        self.compressed = 0
        if self._zstd is None:
            self._emit(gzip_header())

    def _emit(self, data: bytes) -> None:
        if data:
            self._gz_hash.update(data)
            self._out.write(data)
            self.compressed += len(data)

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self._flush_buffer()

    def _flush_buffer(self) -> None:
        if not self._buffer:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        self._tar_hash.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self.uncompressed += len(data)
        if self._zstd is not None:
            self._emit(self._zstd.compress(data))
        else:
            self._emit(self._deflate.compress(data))
        if self._progress is not None:
            self._progress(len(data))

    def finish(self) -> tuple[str, str]:
        self._flush_buffer()
        if self._zstd is not None:
            self._emit(self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
        else:
            self._emit(self._deflate.flush(zlib.Z_FINISH))
            self._emit(
                struct.pack("<II", self._crc & 0xFFFFFFFF, self.uncompressed & 0xFFFFFFFF)
            )
        return "sha256:" + self._tar_hash.hexdigest(), "sha256:" + self._gz_hash.hexdigest()


def _copy_contents(full: Path, entry: _Entry, sink: _Sink) -> None:
    remaining = entry.size
    try:
        with open(full, "rb") as fh:
            while remaining > 0:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                sink.write(chunk)
                remaining -= len(chunk)
            grew = bool(fh.read(1))
    except OSError as exc:
        raise BuildError(f"cannot read {full} for layer: {exc.strerror}") from None
    if remaining or grew:
        raise BuildError(
            f"{full} changed size while the layer was written "
            f"(expected {entry.size} bytes); nothing may modify the tree during a build"
        )
    sink.write(_padding(entry.size))


def write_layer(
    root: Path,
    spec: LayerSpec,
    owners: Mapping[str, Owner],
    sde: int,
    out_dir: Path,
    progress: Callable[[int], None] | None = None,
    compression: Compression = "gzip",
) -> Layer:
    """Write ``spec``'s paths under ``root`` as ``out_dir/<hex>.tar.gz`` (``.tar.zst``).

    ``owners`` maps paths (with or without a leading slash) to numeric (uid, gid); paths not
    in it — including the parent directories added automatically — are owned by 0:0.
    ``progress`` receives the number of uncompressed bytes written since its last call.
    """
    if compression not in COMPRESSIONS:
        raise BuildError(
            f"layer compression {compression!r} is not supported (expected one of "
            f"{', '.join(COMPRESSIONS)})"
        )
    if sde < 0 or sde > _MAX_OCTAL_11:
        raise BuildError(f"SOURCE_DATE_EPOCH {sde} is out of range for a tar header")
    out_dir = out_dir.absolute()
    owner_map = normalize_owners(owners)
    names = with_parents(spec.paths)
    entries = [_stat_entry(root, rel, owner_map, spec.name) for rel in names]
    _check_no_path_below_a_link(entries, spec.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{spec.name}-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh, progress, compression)
            for entry in entries:
                sink.write(_entry_header(entry, sde))
                if entry.kind == b"0":
                    _copy_contents(root / entry.name, entry, sink)
            sink.write(b"\0" * (2 * BLOCK))
            diff_id, digest = sink.finish()
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        final = out_dir / f"{digest.removeprefix('sha256:')}{SUFFIX[compression]}"
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Layer(
        name=spec.name,
        path=final,
        digest=digest,
        diff_id=diff_id,
        size=sink.compressed,
        uncompressed_size=sink.uncompressed,
        file_count=len(entries),
        compression=compression,
    )


def list_tree(root: Path) -> tuple[str, ...]:
    """Every path below ``root`` (files, symlinks, directories), relative, in byte order.

    Symlinks to directories are listed but not followed.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root)
        for name in (*dirnames, *filenames):
            found.append((base / name).as_posix())
    return tuple(sorted(found, key=_sort_key))


def recompress(layer: Layer, compression: Compression, out_dir: Path) -> Layer:
    """The same tar as ``layer`` with another compression (e.g. gzip for a docker-archive).

    The tar is decompressed and compressed again with the fixed settings above, so the blob is
    byte for byte the one :func:`write_layer` gives for the same tree; its diff_id is checked.
    """
    if layer.compression == compression:
        return layer
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{layer.name}-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, open_layer(layer.path) as stream:
            sink = _Sink(fh, None, compression)
            while chunk := stream.read(_CHUNK):
                sink.write(chunk)
            diff_id, digest = sink.finish()
        if diff_id != layer.diff_id:
            raise BuildError(
                f"layer {layer.name} ({layer.path}): its tar has diff_id {diff_id}, "
                f"expected {layer.diff_id}; the blob is corrupt"
            )
        os.chmod(tmp, 0o644)
        final = out_dir / f"{digest.removeprefix('sha256:')}{SUFFIX[compression]}"
        os.replace(tmp, final)
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"cannot recompress layer {layer.path}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Layer(
        name=layer.name,
        path=final,
        digest=digest,
        diff_id=diff_id,
        size=sink.compressed,
        uncompressed_size=sink.uncompressed,
        file_count=layer.file_count,
        compression=compression,
    )


class _HashingReader:
    """A read-only stream that hashes what passes through it (to check a diff_id)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.hash.update(data)
        return data


def extract_layer(layer: Layer, dest: Path) -> None:
    """Unpack ``layer`` onto ``dest`` (created if needed), checking its diff_id.

    Used to rebuild the lower layers' tree from cached blobs. The blob was written by
    :func:`write_layer`, but it is read back from a cache on disk, so it is treated as any
    archive: a member :func:`hardflow.oci.members.classify` flags (absolute, ``..``, a link
    leaving the root, a device or a FIFO) is refused, and every entry is written through
    :mod:`hardflow.fsutil`'s confinement, so nothing is written through a symlink, whatever
    the order of the members. Modes keep the permission bits, never setuid/setgid.
    """
    dest.mkdir(parents=True, exist_ok=True)
    where = f"layer {layer.name} ({layer.path})"
    try:
        with open_layer(layer.path) as stream:
            reader = _HashingReader(stream)
            with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
                dirs: list[tuple[str, int]] = []
                for info in archive:
                    _extract_member(archive, info, dest, where, dirs)
            while reader.read(_CHUNK):
                pass  # the zero blocks after the end-of-archive marker
            # directory modes last, deepest first (as tar does): a directory without write
            # permission must still receive its contents when the build is not root
            for rel, mode in sorted(dirs, reverse=True):
                chmod_confined(dest, rel, mode)
    except ConfinementError as exc:
        raise ArchiveError(
            f"{where}: member {exc.rel!r}: {exc.reason}",
            hint="the cached layer is corrupt or was tampered with; remove the layer cache",
        ) from None
    except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as exc:
        raise BuildError(f"cannot unpack {where}: {exc}") from None
    actual = "sha256:" + reader.hash.hexdigest()
    if actual != layer.diff_id:
        raise BuildError(
            f"{where}: its tar has diff_id {actual}, expected {layer.diff_id}; the blob is corrupt"
        )


def _extract_member(
    archive: tarfile.TarFile,
    info: tarfile.TarInfo,
    dest: Path,
    where: str,
    dirs: list[tuple[str, int]],
) -> None:
    issue = classify(where, info)
    if issue is not None:
        detail = f" -> {issue.detail}" if issue.detail else ""
        raise ArchiveError(
            f"{where}: member {info.name!r}{detail}: refused ({issue.kind})",
            hint="the cached layer is corrupt or was tampered with; remove the layer cache",
        )
    rel = info.name
    mode = info.mode & 0o1777  # permission bits and sticky; never setuid/setgid
    if not confined_parts(dest, rel):
        return  # the root itself ("./")
    if info.isdir():
        mkdirs_confined(dest, rel)
        dirs.append((rel, mode))
    elif info.isreg():
        data = archive.extractfile(info)
        if data is None:
            raise ArchiveError(f"{where}: member {rel!r} has no data")
        _replace_dir(dest, rel)
        with open_confined(dest, rel, mode & 0o777, replace=True) as out:
            shutil.copyfileobj(data, out, _CHUNK)
    elif info.issym():
        _replace_dir(dest, rel)
        symlink_confined(dest, rel, info.linkname, replace=True)
    elif info.islnk():
        _replace_dir(dest, rel)
        link_confined(dest, rel, info.linkname, replace=True)
    else:
        raise ArchiveError(f"{where}: member {rel!r}: unsupported member type {info.type!r}")


def _replace_dir(dest: Path, rel: str) -> None:
    """A later member wins over a directory of an earlier one, as tar does."""
    st = lstat_confined(dest, rel)
    if st is not None and stat.S_ISDIR(st.st_mode):
        remove_confined(dest, rel)
