"""The bounded, hostile-input-safe primitives under the image reader (:mod:`hardflow.oci.reader`).

Everything an image hands us is untrusted: a blob may be a symlink to ``/dev/zero`` or a FIFO,
a digest may be ``sha256:../../etc/passwd``, a JSON document may be 2 GiB or nested 100 000
deep, a tar header may declare a 1 GiB extended header, a layer may be a decompression bomb.
The helpers here refuse each of these with an :class:`~hardflow.errors.ImageError` that names
the artifact, instead of hanging, exhausting memory or escaping into the file system. Nothing
here writes to disk.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import zstandard

from hardflow.errors import ImageError

Compression = Literal["gzip", "zstd"]
CHUNK = 1 << 20
MAX_JSON_BYTES = 4 << 20  # an index, manifest or config larger than this is not one
MAX_TAR_HEADER = 1 << 20  # a PAX or GNU long-name header larger than this is not one
# decompression bombs: the uncompressed stream may exceed the compressed bytes read so far by
# this ratio only (gzip cannot reach it; real layers compress 2-10x), past a generous floor
BOMB_RATIO = 1100
BOMB_FLOOR = 256 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# the errors a damaged compressed tar stream raises from the standard library and zstandard
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    OSError,
    EOFError,
    ValueError,
    OverflowError,
    zstandard.ZstdError,
)


# ---------------------------------------------------------------------------------------------
# digests and JSON shapes


def check_digest(value: object, where: str) -> str:
    """``value`` when it is ``sha256:`` + 64 lowercase hex digits (safe to become a path)."""
    if isinstance(value, str) and DIGEST.fullmatch(value):
        return value
    raise ImageError(f"{where}: digest {value!r} is not of the form sha256:<64 lowercase hex>")


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ImageError(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def as_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImageError(f"{what} is {_kind(value)}; expected a JSON object")
    return value


def as_list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ImageError(f"{what} is {_kind(value)}; expected a JSON list")
    return value


def as_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ImageError(f"{what} is {_kind(value)}; expected a string")
    return value


def as_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImageError(f"{what} is {_kind(value)}; expected a size in bytes (an integer >= 0)")
    return value


def optional_str(doc: dict[str, Any], key: str, what: str) -> str | None:
    value = doc.get(key)
    return None if value is None else as_str(value, f"{what}.{key}")


def string_map(value: object, what: str) -> dict[str, str]:
    """Annotations or labels: a JSON object of strings (``null`` reads as empty)."""
    if value is None:
        return {}
    doc = as_object(value, what)
    return {str(k): as_str(v, f"{what}.{k}") for k, v in doc.items()}


def _kind(value: object) -> str:
    if value is None:
        return "missing (or null)"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    name = names.get(type(value), "a number" if isinstance(value, int | float) else "odd")
    shown = repr(value)
    return f"{name} ({shown[:60]}{'…' if len(shown) > 60 else ''})"


# ---------------------------------------------------------------------------------------------
# opening files


def open_regular(path: Path, what: str, size: int | None = None) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file (of ``size`` bytes, when given).

    ``lstat`` first, so a symlink (to ``/dev/zero``, to a file elsewhere) or a FIFO is refused
    before anything opens it; ``O_NOFOLLOW | O_NONBLOCK`` and a second ``fstat`` close the race
    where the file is swapped between the two calls.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise ImageError(f"{what} is missing ({path})") from None
    except OSError as exc:
        raise ImageError(f"cannot read {what} ({path}): {exc.strerror}") from None
    _require_regular(before, path, what)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(f"cannot open {what} ({path}): {exc.strerror}") from None
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(
        after.st_mode
    ):
        os.close(fd)
        raise ImageError(f"{what} ({path}) changed while it was opened; refusing to read it")
    if size is not None and after.st_size != size:
        os.close(fd)
        raise ImageError(f"{what} ({path}) has {after.st_size} bytes; its descriptor says {size}")
    return os.fdopen(fd, "rb")


def _require_regular(info: os.stat_result, path: Path, what: str) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    kinds = {
        stat.S_IFLNK: "a symlink",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFDIR: "a directory",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFSOCK: "a socket",
    }
    kind = kinds.get(stat.S_IFMT(info.st_mode), "not a regular file")
    raise ImageError(f"{what} ({path}) is {kind}; expected a regular file")


def read_bounded(stream: IO[bytes], limit: int, what: str) -> bytes:
    """All of ``stream`` when it holds at most ``limit`` bytes; never reads more than that + 1."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"{what} is larger than {limit} bytes; refusing to read it")
    return data


# ---------------------------------------------------------------------------------------------
# streams


class HashingReader(io.RawIOBase):
    """Reads from ``raw``, hashing (and counting) every byte read; ``tap`` sees each chunk.

    ``guard``, when given, is called after every read with the running count: it raises to
    stop a stream that grows past what its source allows (a decompression bomb).
    """

    def __init__(
        self,
        raw: IO[bytes],
        tap: Callable[[bytes], None] | None = None,
        guard: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0
        self._tap = tap
        self._guard = guard

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.raw.read(min(len(view), CHUNK))
        n = len(data)
        view[:n] = data
        if n:
            self.hash.update(data)
            self.count += n
            if self._tap is not None:
                self._tap(data)
            if self._guard is not None:
                self._guard(self.count)
        return n

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def compression_of(head: bytes) -> Compression | None:
    """The compression a blob starts with (its first bytes), or None for a plain tar."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


class _OwningGzip(gzip.GzipFile):
    """A gzip reader that closes the file it reads from (``GzipFile(fileobj=…)`` does not)."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._owned = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._owned.close()


def decompressed(raw: IO[bytes], kind: Compression | None) -> IO[bytes]:
    """The uncompressed stream of ``raw``; closing it closes ``raw``."""
    if kind == "gzip":
        return _OwningGzip(raw)  # type: ignore[return-value]
    if kind == "zstd":
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=True
        )
        return reader
    return raw


def bomb_guard(source: HashingReader, what: str) -> Callable[[int], None]:
    """A :class:`HashingReader` guard that stops an uncompressed stream growing far beyond
    the compressed bytes it came from."""

    def check(count: int) -> None:
        if count > BOMB_FLOOR + BOMB_RATIO * source.count:
            raise ImageError(
                f"{what}: {count} uncompressed bytes from {source.count} compressed ones; "
                "refusing a decompression bomb"
            )

    return check


class SafeTarInfo(tarfile.TarInfo):
    """A tar header whose extended records are bounded: :mod:`tarfile` reads a PAX or GNU
    long-name header whole into memory, whatever size it declares."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        extended = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)  # fmt: skip
        if self.type in extended and self.size > MAX_TAR_HEADER:
            raise tarfile.HeaderError(
                f"an extended header of {self.size} bytes (at most {MAX_TAR_HEADER} are read)"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]


# ---------------------------------------------------------------------------------------------
# blob stores: a directory or a tarball


class Store(Protocol):
    label: str

    def exists(self, name: str) -> bool: ...

    def open(self, name: str, what: str, size: int | None) -> IO[bytes]: ...

    def close(self) -> None: ...


def plain_name(name: object, what: str) -> str:
    """A member name safe to look up: relative, no ``..``, no empty component."""
    text = as_str(name, what)
    while text.startswith("./"):
        text = text[2:]
    parts = text.split("/")
    if not text or text.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in text:
        raise ImageError(f"{what} is {name!r}; expected a plain relative name without '..'")
    return text


def blob_name(digest: str) -> str:
    """The layout-relative path of a validated digest."""
    return "blobs/sha256/" + check_digest(digest, "blob").removeprefix("sha256:")


class DirStore:
    def __init__(self, root: Path, label: str) -> None:
        self.root = root
        self.label = label
        self._dirs_checked = False

    def _path(self, name: str) -> Path:
        if name.startswith("blobs/") and not self._dirs_checked:
            # a blobs/ that is a symlink would let a layout read files from anywhere
            for sub in ("blobs", "blobs/sha256"):
                try:
                    mode = os.lstat(self.root / sub).st_mode
                except OSError:
                    raise ImageError(f"{self.label}: {sub}/ is missing") from None
                if not stat.S_ISDIR(mode):
                    raise ImageError(f"{self.label}: {sub} is not a directory (a symlink?)")
            self._dirs_checked = True
        return self.root / plain_name(name, f"{self.label}: blob name")

    def exists(self, name: str) -> bool:
        return os.path.lexists(self._path(name))

    def open(self, name: str, what: str, size: int | None) -> IO[bytes]:
        return open_regular(self._path(name), f"{self.label}: {what}", size)

    def close(self) -> None:
        pass


class TarStore:
    def __init__(self, handle: IO[bytes], label: str) -> None:
        self.label = label
        self._handle = handle
        try:
            self.archive = tarfile.open(  # noqa: SIM115 (closed by close())
                fileobj=handle, mode="r:", tarinfo=SafeTarInfo
            )
            self.members = {_member_key(m.name): m for m in self.archive.getmembers()}
        except STREAM_ERRORS as exc:
            handle.close()
            raise ImageError(f"{label}: the tarball is truncated or damaged: {exc}") from None

    def exists(self, name: str) -> bool:
        return name in self.members

    def _regular(self, name: str, what: str) -> tarfile.TarInfo:
        member = self.members.get(name)
        if member is None:
            raise ImageError(f"{self.label}: {what} ({name}) is not in the archive")
        if member.issym() or member.islnk():
            # docker save links a layer shared by two images; follow one hop inside the archive
            base = posixpath.dirname(name) if member.issym() else ""
            target = posixpath.normpath(posixpath.join(base, member.linkname))
            target = plain_name(target, f"{self.label}: {what} ({name}) link target")
            member = self.members.get(target, member)
        if not member.isreg():
            raise ImageError(f"{self.label}: {what} ({name}) is not a regular file in the archive")
        return member

    def open(self, name: str, what: str, size: int | None) -> IO[bytes]:
        member = self._regular(plain_name(name, f"{self.label}: {what}"), what)
        if size is not None and member.size != size:
            raise ImageError(
                f"{self.label}: {what} ({name}) has {member.size} bytes; its descriptor says {size}"
            )
        handle = self.archive.extractfile(member)
        if handle is None:  # pragma: no cover - a regular member always has a file object
            raise ImageError(f"{self.label}: cannot read {what} ({name})")
        return handle

    def close(self) -> None:
        self.archive.close()
        self._handle.close()


def _member_key(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


__all__ = [
    "BOMB_FLOOR",
    "BOMB_RATIO",
    "CHUNK",
    "DIGEST",
    "MAX_JSON_BYTES",
    "MAX_TAR_HEADER",
    "STREAM_ERRORS",
    "Compression",
    "DirStore",
    "HashingReader",
    "SafeTarInfo",
    "Store",
    "TarStore",
    "as_list",
    "as_object",
    "as_size",
    "as_str",
    "blob_name",
    "bomb_guard",
    "check_digest",
    "compression_of",
    "decompressed",
    "load_json",
    "open_regular",
    "optional_str",
    "plain_name",
    "read_bounded",
    "sha256_of",
    "string_map",
]
