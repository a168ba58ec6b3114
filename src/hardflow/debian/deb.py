"""Reading a ``.deb`` safely: its control stanza and the members of its data archive.

Nothing is extracted here. Every member path is normalised and checked so that whoever writes
the members into an image root cannot be led outside it:

* absolute member paths and ``..`` components are rejected;
* a member name that is not UTF-8 is rejected (image paths are UTF-8);
* a symlink whose *relative* target climbs above the root, read from the link's directory, is
  rejected. Absolute targets (``/usr/lib/foo``) are normal in Debian and allowed: they resolve
  inside the image at run time. What makes them harmless at build time is the writer: it goes
  through :mod:`hardflow.fsutil`'s confinement and never writes through a symlink, so a link
  to ``/etc`` followed by a member ``link/passwd`` is refused there, whatever this reader let
  through;
* a hardlink must name an earlier regular-file member of the same archive;
* character and block devices are skipped (logged): no device node belongs in an image, the
  runtime provides ``/dev``. FIFOs and other special types are rejected.

The ``ar`` container is read by a few lines of our own rather than python-debian's ``DebFile``:
we want every malformed or truncated input to end in one :class:`ArchiveError` naming the file
and the member, and one decompression path for xz, gzip, zstd and bzip2 members.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zstandard
from debian.deb822 import Deb822

from hardflow.errors import ArchiveError

log = logging.getLogger(__name__)

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


@dataclass(frozen=True)
class DebMember:
    """One entry of a ``.deb``'s data archive."""

    path: str  # normalised, relative: no leading "./" or "/"
    kind: Literal["file", "dir", "symlink", "hardlink"]
    mode: int  # permission bits, including setuid/setgid/sticky
    link: str  # symlink target / hardlink target path; "" otherwise
    data: bytes  # file contents; b"" for other kinds


@dataclass(frozen=True)
class DebContents:
    control: Mapping[str, str]  # fields of the control stanza
    control_text: str  # the raw control stanza, ending in one newline
    members: tuple[DebMember, ...]
    conffiles: tuple[str, ...]


def _zstd_decompress(data: bytes) -> bytes:
    dobj = zstandard.ZstdDecompressor().decompressobj()
    out = dobj.decompress(data)
    if not dobj.eof:
        raise EOFError("zstd stream ends before its end marker")
    return bytes(out)


def _gzip_decompress(data: bytes) -> bytes:
    return gzip.decompress(data)


_DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda data: data,
    ".xz": lzma.decompress,
    ".gz": _gzip_decompress,
    ".zst": _zstd_decompress,
    ".bz2": bz2.decompress,
}


def read_ar(blob: bytes, origin: str) -> list[tuple[str, bytes]]:
    """Members (name, data) of an ``ar`` archive, in order."""
    if not blob.startswith(_AR_MAGIC):
        raise ArchiveError(f"{origin}: not a .deb (no ar archive signature)")
    members: list[tuple[str, bytes]] = []
    pos = len(_AR_MAGIC)
    while pos < len(blob):
        if blob[pos : pos + 1] == b"\n":  # tolerate a stray padding byte at the very end
            pos += 1
            continue
        header = blob[pos : pos + _AR_HEADER]
        if len(header) < _AR_HEADER:
            raise ArchiveError(f"{origin}: truncated ar header at byte {pos}")
        if header[58:60] != b"`\n":
            raise ArchiveError(f"{origin}: corrupt ar header at byte {pos}")
        name = header[0:16].decode("ascii", "replace").rstrip(" ").removesuffix("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise ArchiveError(f"{origin}: member {name!r}: bad ar size field") from None
        start = pos + _AR_HEADER
        data = blob[start : start + size]
        if len(data) != size:
            raise ArchiveError(
                f"{origin}: member {name!r} is truncated: expected {size} bytes, found {len(data)}"
            )
        members.append((name, data))
        pos = start + size + (size % 2)
    return members


def _open_tar(members: list[tuple[str, bytes]], stem: str, origin: str) -> tarfile.TarFile:
    for name, data in members:
        if name == stem or name.startswith(stem + "."):
            suffix = name[len(stem) :]
            decompress = _DECOMPRESSORS.get(suffix)
            if decompress is None:
                raise ArchiveError(f"{origin}: member {name}: unsupported compression")
            try:
                raw = decompress(data)
                return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
            except (
                OSError,
                EOFError,
                ValueError,
                lzma.LZMAError,
                zlib.error,
                zstandard.ZstdError,
                tarfile.TarError,
            ) as exc:
                raise ArchiveError(f"{origin}: member {name}: cannot read: {exc}") from None
    raise ArchiveError(f"{origin}: has no {stem} member")


def normalise_member_path(name: str, origin: str) -> str:
    """``./usr/bin/x`` -> ``usr/bin/x``; absolute paths, ``..`` and non-UTF-8 are refused."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # tarfile keeps undecodable bytes as lone surrogates
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise ArchiveError(f"{origin}: member {shown!r} has a name that is not UTF-8") from None
    if "\0" in name:
        raise ArchiveError(f"{origin}: member {name!r} has a NUL byte in its name")
    if name.startswith("/"):
        raise ArchiveError(f"{origin}: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{origin}: member {name!r} contains a '..' component")
    return "/".join(parts)


def symlink_escapes(path: str, target: str) -> bool:
    """Would relative ``target`` of a link at ``path`` climb above the root?"""
    if target.startswith("/"):
        return False  # resolved inside the image root by whoever writes it
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(f"{what} is not UTF-8") from None


def _read_members(tar: tarfile.TarFile, origin: str) -> tuple[DebMember, ...]:
    members: list[DebMember] = []
    files: set[str] = set()
    try:
        infos = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"{origin}: data.tar is unreadable: {exc}") from None
    for info in infos:
        path = normalise_member_path(info.name, origin)
        where = f"{origin}: member {info.name!r}"
        mode = info.mode & 0o7777
        if info.ischr() or info.isblk():
            log.warning("%s: skipped: device nodes do not belong in an image", where)
            continue
        if not path:
            continue  # the archive's root directory "./"
        if info.isreg():
            extracted = tar.extractfile(info)
            if extracted is None:
                raise ArchiveError(f"{where}: has no data")
            try:
                data = extracted.read()
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                raise ArchiveError(f"{where}: cannot read: {exc}") from None
            if len(data) != info.size:
                raise ArchiveError(f"{where}: truncated ({len(data)} of {info.size} bytes)")
            members.append(DebMember(path, "file", mode, "", data))
            files.add(path)
        elif info.isdir():
            members.append(DebMember(path, "dir", mode, "", b""))
        elif info.issym():
            if not info.linkname:
                raise ArchiveError(f"{where}: symlink with an empty target")
            _check_text(info.linkname, f"{where}: symlink target")
            if symlink_escapes(path, info.linkname):
                raise ArchiveError(
                    f"{where}: symlink target {info.linkname!r} points outside the root"
                )
            members.append(DebMember(path, "symlink", mode, info.linkname, b""))
        elif info.islnk():
            target = normalise_member_path(info.linkname, origin)
            if target not in files:
                raise ArchiveError(
                    f"{where}: hardlink to {info.linkname!r}, which is not an earlier "
                    "regular file of this archive"
                )
            members.append(DebMember(path, "hardlink", mode, target, b""))
        else:
            raise ArchiveError(f"{where}: unsupported member type {info.type!r} (e.g. a FIFO)")
    return tuple(members)


def read_deb(path: Path) -> DebContents:
    """Read and check a ``.deb``; raises :class:`ArchiveError` on anything unsafe or broken."""
    origin = str(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ArchiveError(f"{origin}: cannot read: {exc.strerror or exc}") from None
    members = read_ar(blob, origin)
    if not members or members[0][0] != "debian-binary":
        raise ArchiveError(f"{origin}: first member is not debian-binary")
    if not members[0][1].startswith(b"2."):
        raise ArchiveError(
            f"{origin}: unsupported .deb format {members[0][1][:10]!r}, expected 2.x"
        )

    with _open_tar(members, "control.tar", origin) as control_tar:
        control_files: dict[str, bytes] = {}
        try:
            for info in control_tar.getmembers():
                if not info.isreg():
                    continue
                name = normalise_member_path(info.name, f"{origin} control.tar")
                extracted = control_tar.extractfile(info)
                if name in ("control", "conffiles") and extracted is not None:
                    control_files[name] = extracted.read()
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"{origin}: control.tar is unreadable: {exc}") from None
    if "control" not in control_files:
        raise ArchiveError(f"{origin}: control.tar has no control file")
    try:
        control_text = control_files["control"].decode("utf-8").strip("\n") + "\n"
    except UnicodeDecodeError:
        raise ArchiveError(f"{origin}: control file is not UTF-8") from None
    control = dict(Deb822(control_text))
    for field in ("Package", "Version", "Architecture"):
        if not control.get(field):
            raise ArchiveError(f"{origin}: control file has no {field} field")
    conffiles: list[str] = []
    for line in control_files.get("conffiles", b"").decode("utf-8", "replace").splitlines():
        # each line is a path, possibly preceded by flags such as "remove-on-upgrade"
        tokens = [t for t in line.split() if t.startswith("/")]
        if tokens:
            conffiles.append(tokens[-1])

    with _open_tar(members, "data.tar", origin) as data_tar:
        data_members = _read_members(data_tar, origin)
    return DebContents(
        control=control,
        control_text=control_text,
        members=data_members,
        conffiles=tuple(conffiles),
    )
