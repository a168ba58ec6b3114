"""A layer blob as a value, and its two compressions (gzip and zstd), one setting each.

The settings are fixed so the same tar always gives the same bytes (see
:mod:`hardflow.build.layers` for the tar writer and the reasons behind each setting).
"""

from __future__ import annotations

import gzip
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import zstandard

from hardflow.errors import BuildError

Compression = Literal["gzip", "zstd"]
COMPRESSIONS: tuple[Compression, ...] = ("gzip", "zstd")
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
SUFFIX: dict[str, str] = {"gzip": ".tar.gz", "zstd": ".tar.zst"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Layer:
    name: str
    path: Path  # the compressed blob on disk, named <hex of digest>.tar.gz (or .tar.zst)
    digest: str  # "sha256:…" of the compressed blob
    diff_id: str  # "sha256:…" of the uncompressed tar
    size: int  # compressed size in bytes
    uncompressed_size: int
    file_count: int  # tar entries (files, directories, symlinks) in the layer
    compression: Compression = "gzip"


def gzip_header() -> bytes:
    """Magic, deflate, no flags, mtime 0, XFL 0, OS 255 (unknown)."""
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff"



def zstd_compressor() -> zstandard.ZstdCompressor:
    """The one zstd setting layers are written with (see the module docstring)."""
    return zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=False, threads=0
    )



def layer_compression(head: bytes) -> Compression | None:
    """The compression a blob starts with (its first bytes), or None for a plain tar."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return None


def open_layer(path: Path) -> IO[bytes]:
    """The uncompressed tar stream of a layer blob: gzip, zstd or plain, told by its magic."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (returned: the caller closes it)
    except OSError as exc:
        raise BuildError(f"cannot read layer {path}: {exc.strerror}") from None
    kind = layer_compression(fh.read(4))
    fh.seek(0)
    if kind == "gzip":
        fh.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "zstd":
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(fh, closefd=True)
        return reader
    return fh


def iter_tar_entries(tar_gz: Path) -> Iterator[tarfile.TarInfo]:
    """The members of a (gzip- or zstd-compressed) layer, in archive order (tests, audits)."""
    try:
        with open_layer(tar_gz) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            yield from archive
    except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as exc:
        raise BuildError(f"cannot read layer {tar_gz}: {exc}") from None
