"""One layer, streamed once and checked, and the merged file-system view of layers.

A :class:`LayerStream` reads a layer blob (gzip, zstd or plain tar, told by its first bytes)
exactly once: the blob and the uncompressed tar are hashed on the way (checked against the
descriptor's digest and the config's ``diff_id`` at the end), every member is classified by
:func:`hardflow.oci.members.classify` (unsafe ones are recorded, never followed), and member
contents are read only on request, up to a limit the caller sets. :func:`merge_layer` applies
a layer's entries and whiteouts to a merged view, as the OCI image spec describes.
"""

from __future__ import annotations

import bisect
import io
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from hardflow.errors import ImageError
from hardflow.oci import blobs
from hardflow.oci.blobs import CHUNK, STREAM_ERRORS, HashingReader, SafeTarInfo
from hardflow.oci.members import MemberIssue, classify

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# one layer


class LayerStream:
    """One layer, streamed once: iterate its tar members, read small ones, then :meth:`finish`
    (or leave the ``with`` block normally) to check the blob digest, size and diff_id.

    ``issues`` collects the members :func:`hardflow.oci.members.classify` finds unsafe.
    """

    def __init__(
        self,
        raw: IO[bytes],
        label: str,
        layer_id: str,
        *,
        digest: str | None = None,
        diff_id: str | None = None,
        tap: Callable[[bytes], None] | None = None,
    ) -> None:
        self.label = label
        self.layer_id = layer_id
        self.issues: list[MemberIssue] = []
        self.digest = ""  # set by finish(): the blob's sha256
        self.diff_id = ""  # set by finish(): the uncompressed tar's sha256
        self.size = 0  # set by finish(): blob bytes
        self.uncompressed_size = 0  # set by finish(): tar bytes
        self._expect_digest = digest
        self._expect_diff_id = diff_id
        self._handle = raw
        self._raw = HashingReader(raw)
        self._buffered = io.BufferedReader(self._raw, CHUNK)
        self._archive: tarfile.TarFile | None = None
        self._done = False
        try:
            self.head = self._buffered.peek(10)[:10]
        except STREAM_ERRORS as exc:
            self.close()
            raise ImageError(f"{label}: cannot read the layer blob: {exc}") from None
        self.compression = blobs.compression_of(self.head)
        guard = blobs.bomb_guard(self._raw, label) if self.compression else None
        stream = blobs.decompressed(self._buffered, self.compression)
        self._tar = HashingReader(stream, tap=tap, guard=guard)
        self._stream = stream

    @property
    def compression_name(self) -> str:
        return self.compression or "none"

    @property
    def gzip_mtime(self) -> int | None:
        """The gzip header's MTIME field (None when the blob is not gzip)."""
        if self.compression != "gzip" or len(self.head) < 10:
            return None
        return int.from_bytes(self.head[4:8], "little")

    @property
    def gzip_name(self) -> bool:
        """True when the gzip header carries a file name (FNAME)."""
        return self.compression == "gzip" and len(self.head) >= 4 and bool(self.head[3] & 0x08)

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        try:
            self._archive = tarfile.open(  # noqa: SIM115 (closed by close())
                fileobj=self._tar, mode="r|", tarinfo=SafeTarInfo
            )
            for info in self._archive:
                issue = classify(self.layer_id, info)
                if issue is not None:
                    self.issues.append(issue)
                yield info
        except STREAM_ERRORS as exc:
            raise self._failure(exc) from None

    def read(self, info: tarfile.TarInfo, limit: int) -> bytes:
        """The content of the current member ``info`` (a regular file of at most ``limit``
        bytes: check ``info.size`` first to skip a larger one instead of failing)."""
        if not info.isreg():
            return b""
        if info.size > limit:
            raise ImageError(
                f"{self.label}: /{info.name.lstrip('./')} has {info.size} bytes; "
                f"at most {limit} are read"
            )
        if self._archive is None:
            raise ImageError(f"{self.label}: read() before the member was reached")
        try:
            handle = self._archive.extractfile(info)
            return handle.read(info.size) if handle is not None else b""
        except STREAM_ERRORS as exc:
            raise self._failure(exc) from None

    def open_member(self, info: tarfile.TarInfo) -> IO[bytes]:
        """The content of the current member ``info`` as a stream, for a caller that reads it
        in chunks (a large file is never held whole)."""
        if self._archive is None:
            raise ImageError(f"{self.label}: open_member() before the member was reached")
        handle = self._archive.extractfile(info) if info.isreg() else None
        return handle if handle is not None else io.BytesIO(b"")

    def finish(self) -> None:
        """Read to the end of the blob and check its digest and diff_id."""
        if self._done:
            return
        try:
            self._tar.drain()
            while self._buffered.read(CHUNK):
                pass
        except STREAM_ERRORS as exc:
            raise self._failure(exc) from None
        self._done = True
        self.digest, self.size = self._raw.digest(), self._raw.count
        self.diff_id, self.uncompressed_size = self._tar.digest(), self._tar.count
        if self._expect_diff_id is not None and self.diff_id != self._expect_diff_id:
            raise ImageError(
                f"{self.label}: uncompressed digest is {self.diff_id}, the config's diff_id is "
                f"{self._expect_diff_id}",
                hint="the layer is truncated or was modified",
            )
        if self._expect_digest is not None and self.digest != self._expect_digest:
            raise self._digest_mismatch()

    def _digest_mismatch(self) -> ImageError:
        return ImageError(
            f"{self.label}: content does not match its digest {self._expect_digest} "
            f"(it hashes to {self._raw.digest()}): the blob is truncated or was modified",
            hint="re-export or rebuild the image",
        )

    def _failure(self, exc: BaseException) -> ImageError:
        # a damaged stream is most often a modified blob: say so when its digest shows it
        if self._expect_digest is not None:
            try:
                self._raw.drain()
            except STREAM_ERRORS:
                pass
            else:
                if self._raw.digest() != self._expect_digest:
                    return self._digest_mismatch()
        what = {"gzip": "a gzip-compressed tar", "zstd": "a zstd-compressed tar"}.get(
            self.compression_name, "a tar"
        )
        return ImageError(
            f"{self.label}: expected {what} layer but could not read it: {exc}",
            hint="the blob is truncated or is not a layer; re-export the image",
        )

    def close(self) -> None:
        for closable in (self._archive, getattr(self, "_stream", None), self._buffered):
            try:
                if closable is not None:
                    closable.close()
            except STREAM_ERRORS:
                pass
        self._handle.close()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self.finish()
        finally:
            self.close()


def open_layer_file(
    path: Path,
    *,
    digest: str | None = None,
    diff_id: str | None = None,
    label: str | None = None,
    tap: Callable[[bytes], None] | None = None,
) -> LayerStream:
    """A layer blob on its own (a build's ``.tar.gz``/``.tar.zst``, a plain tar)."""
    name = label or f"layer {path}"
    handle = blobs.open_regular(path, name)
    return LayerStream(handle, name, digest or path.name, digest=digest, diff_id=diff_id, tap=tap)


def open_tar_stream(path: Path) -> IO[bytes]:
    """The uncompressed tar stream of a layer blob (gzip, zstd or plain), unverified."""
    handle = blobs.open_regular(path, f"layer {path}")
    try:
        head = handle.read(4)
        handle.seek(0)
    except OSError as exc:
        handle.close()
        raise ImageError(f"cannot read layer {path}: {exc.strerror}") from None
    return blobs.decompressed(handle, blobs.compression_of(head))


# ---------------------------------------------------------------------------------------------
# the merged file-system view


def normalize_member(name: str) -> str:
    """``"./usr/bin/"`` → ``"usr/bin"``; ``""`` for the root. ``..`` cannot climb above it."""
    clean = posixpath.normpath("/" + name).lstrip("/")
    return "" if clean == "." else clean


def whiteout_target(path: str) -> tuple[str, bool] | None:
    """For a whiteout member (normalized path): (what it hides, True when opaque)."""
    directory, base = posixpath.split(path)
    if base == OPAQUE:
        return directory, True
    if base.startswith(WHITEOUT):
        return posixpath.join(directory, base[len(WHITEOUT) :]), False
    return None


def _remove(tree: MutableMapping[str, Any], keys: list[str], path: str, keep_self: bool) -> None:
    """Delete ``path`` (unless ``keep_self``) and everything below it; ``keys`` is sorted."""
    if not keep_self:
        tree.pop(path, None)
    prefix = path + "/" if path else ""
    start = bisect.bisect_left(keys, prefix)
    end = bisect.bisect_left(keys, path + "0") if path else len(keys)  # "0" follows "/"
    for key in keys[start:end]:
        tree.pop(key, None)


def merge_layer(
    tree: MutableMapping[str, T],
    entries: Iterable[tuple[str, T]],
    whiteouts: Iterable[str],
    is_dir: Callable[[T], bool],
) -> None:
    """Apply one layer to ``tree``, as the OCI image spec says: its ``whiteouts`` (member
    paths ``DIR/.wh.NAME``, or ``DIR/.wh..wh..opq`` for a whole directory) hide what the lower
    layers put there, not the entries of the same layer; then its ``entries`` (normalized
    path, value) go on top, an entry that is not a directory replacing a directory with
    everything below it.
    """
    hidden: dict[str, bool] = {}  # path -> keep the path itself (opaque directory)
    for member in whiteouts:
        target = whiteout_target(member)
        if target is not None:
            hidden[target[0]] = hidden.get(target[0], True) and target[1]
    keys = sorted(tree)
    covered: str | None = None
    for path in sorted(hidden):  # an ancestor's range already holds its descendants'
        if covered is not None and path.startswith(covered):
            continue
        _remove(tree, keys, path, keep_self=hidden[path])
        covered = path + "/" if path else ""
    for path, value in entries:
        if not path:
            continue
        old = tree.get(path)
        if old is not None and is_dir(old) and not is_dir(value):
            _remove(tree, keys, path, keep_self=True)
        tree[path] = value


__all__ = [
    "OPAQUE",
    "WHITEOUT",
    "LayerStream",
    "merge_layer",
    "normalize_member",
    "open_layer_file",
    "open_tar_stream",
    "whiteout_target",
]
