"""A layer blob as a value, and its two compressions (gzip and zstd), one setting each.

The settings are fixed so the same tar always gives the same bytes (see
:mod:`hardflow.build.layers` for the tar writer and the reasons behind each setting). Reading
a layer goes through the one image reader (:mod:`hardflow.oci.stream`); :func:`open_layer` and
:func:`iter_tar_entries` are thin wrappers over it for the builder.
"""

from __future__ import annotations

import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from hardflow.errors import BuildError, ImageError
from hardflow.oci.blobs import Compression as Compression  # re-exported: the layer value's type
from hardflow.oci.blobs import compression_of
from hardflow.oci.stream import open_layer_file, open_tar_stream

COMPRESSIONS: tuple[Compression, ...] = ("gzip", "zstd")
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
SUFFIX: dict[str, str] = {"gzip": ".tar.gz", "zstd": ".tar.zst"}


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
    return compression_of(head)


class LayerError(BuildError, ImageError):
    """A layer blob cannot be read: a build error to the builder, an image error to readers."""


def open_layer(path: Path) -> IO[bytes]:
    """The uncompressed tar stream of a layer blob: gzip, zstd or plain, told by its magic.

    A thin wrapper over :func:`hardflow.oci.stream.open_tar_stream` (the blob must be a regular
    file; nothing is verified: the caller checks the diff_id when it matters)."""
    try:
        return open_tar_stream(path)
    except ImageError as exc:
        raise LayerError(exc.message, hint=exc.hint) from None


def iter_tar_entries(tar_gz: Path) -> Iterator[tarfile.TarInfo]:
    """The members of a (gzip- or zstd-compressed) layer, in archive order (tests, audits)."""
    try:
        with open_layer_file(tar_gz) as layer:
            yield from layer
    except ImageError as exc:
        raise LayerError(exc.message, hint=exc.hint) from None
