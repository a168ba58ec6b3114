"""Which Debian package ships a file: the archive's ``Contents-ARCH`` indices, verified.

A suite's ``<component>/Contents-<arch>.gz`` lists every file of every package of that
architecture, one line each: ``usr/lib/x86_64-linux-gnu/libxml2.so.2  libs/libxml2`` (the path
without its leading slash, then a comma-separated list of ``[area/]section/package``).

Trust follows :mod:`hardflow.debian.repo`: the suite's ``InRelease`` is verified with gpgv
(:func:`~hardflow.debian.repo.load_release`), and only a Contents file that the verified Release
lists is used, after its sha256 and size matched the listing. The file is fetched by a callable
the caller passes (the build hands in its content-addressed download cache, so the tens of
megabytes are fetched once); this module hashes the bytes again while it reads them, so a
wrong file is refused here whoever fetched it.

A full index is about a gigabyte uncompressed, so it is never parsed whole: the decompressed
stream is searched chunk by chunk for the few file names asked about, and only the lines that
hold one are split.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import lzma
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from hardflow.debian.repo import Downloader, VerifiedRelease, load_release
from hardflow.errors import FetchError, HardflowError, TrustError

CHUNK = 8 << 20
# Suffixes in order of preference (the Debian archive serves only .gz for Contents).
_FORMATS = (".gz", ".xz", "")


@dataclass(frozen=True)
class ListedFile:
    """A file the verified Release of ``suite`` lists, with the digest it must have."""

    suite: str
    path: str  # as listed, e.g. "main/Contents-amd64.gz"
    url: str  # by its name (for messages)
    sha256: str
    size: int
    urls: tuple[str, ...] = ()  # where to fetch it, best first (by hash, then by name)


@dataclass(frozen=True)
class Provider:
    package: str
    suite: str


@dataclass(frozen=True)
class Lookup:
    """What the indices say about the paths asked about."""

    providers: dict[str, tuple[Provider, ...]]  # path -> packages (suites in the order given)
    problems: tuple[str, ...]  # suites or components that could not be searched, and why
    searched: tuple[str, ...]  # the indices that were searched (suite: path)

    @property
    def complete(self) -> bool:
        return not self.problems


FetchListed = Callable[[ListedFile], Path]
"""Returns a local file holding the listed file's bytes (it is checked again when read)."""


def contents_file(release: VerifiedRelease, component: str, arch: str) -> ListedFile | None:
    """The Contents index of ``component``/``arch`` that ``release`` lists (``None`` if none)."""
    for suffix in _FORMATS:
        rel = f"{component}/Contents-{arch}{suffix}"
        listed = release.files.get(rel)
        if listed is not None:
            return ListedFile(release.suite, rel, f"{release.dist_url}/{rel}", *listed,
                              urls=release.urls(rel))  # fmt: skip
    return None


def _package_names(field: str) -> Iterator[str]:
    """``libs/libxml2,non-free/libs/foo`` -> ``libxml2``, ``foo``."""
    for item in field.split(","):
        name = item.strip().rsplit("/", 1)[-1]
        if name:
            yield name


def search_lines(chunks: Iterable[bytes], paths: Collection[str]) -> dict[str, list[str]]:
    """Packages each of ``paths`` (no leading slash) belongs to, from the Contents text that
    ``chunks`` yields in order. Lines are found by their file name first (a fast byte search),
    so the cost is the decompression, not the parsing."""
    wanted = {p.lstrip("/") for p in paths}
    needles = sorted({p.rsplit("/", 1)[-1].encode() for p in wanted})
    found: dict[str, list[str]] = {}
    tail = b""
    for chunk in chunks:
        data = tail + chunk
        cut = data.rfind(b"\n") + 1
        block, tail = data[:cut], data[cut:]
        _search_block(block, wanted, needles, found)
    if tail:
        _search_block(tail + b"\n", wanted, needles, found)
    return found


def _search_block(
    block: bytes, wanted: set[str], needles: Sequence[bytes], found: dict[str, list[str]]
) -> None:
    for needle in needles:
        at = block.find(needle)
        while at >= 0:
            start = block.rfind(b"\n", 0, at) + 1
            end = block.find(b"\n", at)
            line = block[start:end].decode("utf-8", "replace")
            parts = line.rsplit(None, 1)
            if len(parts) == 2:
                path = parts[0].strip().removeprefix("./")
                if path in wanted:
                    names = found.setdefault(path, [])
                    names.extend(n for n in _package_names(parts[1]) if n not in names)
            at = block.find(needle, end)


class _Hashing(io.RawIOBase):
    """Reads ``fh``, hashing and counting every byte on the way."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.fh.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        self.count += len(data)
        return len(data)


def _verified_chunks(path: Path, listed: ListedFile) -> Iterator[bytes]:
    """The decompressed bytes of the fetched file, refused unless its raw bytes match the
    Release's sha256 and size (checked as they stream; a mismatch raises at the end, before
    the caller returns anything it found)."""
    try:
        with path.open("rb") as raw:
            hashing = _Hashing(raw)
            reader = io.BufferedReader(hashing, 1 << 20)
            with contextlib.ExitStack() as stack:
                stream: io.BufferedIOBase = reader
                if listed.path.endswith(".gz"):
                    stream = stack.enter_context(gzip.GzipFile(fileobj=reader, mode="rb"))
                elif listed.path.endswith(".xz"):
                    stream = stack.enter_context(lzma.LZMAFile(reader, "rb"))
                while chunk := stream.read(CHUNK):
                    yield chunk
            while reader.read(CHUNK):  # anything after the compressed stream counts too
                pass
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise TrustError(f"{listed.url}: cannot read the Contents index: {exc}") from None
    actual = hashing.digest.hexdigest()
    if actual != listed.sha256 or hashing.count != listed.size:
        raise TrustError(
            f"{listed.url}: does not match the signed Release of suite {listed.suite!r}: "
            f"expected sha256 {listed.sha256} ({listed.size} bytes), got {actual} "
            f"({hashing.count} bytes)"
        )


def search_file(path: Path, listed: ListedFile, paths: Collection[str]) -> dict[str, list[str]]:
    """Search one fetched Contents file (verified against ``listed`` while it is read)."""
    return search_lines(_verified_chunks(path, listed), paths)


@dataclass(frozen=True)
class SuiteSource:
    """Where one suite of the spec is fetched from."""

    base_url: str
    suite: str


def find_providers(
    sources: Sequence[SuiteSource],
    components: Sequence[str],
    arch: str,
    keyring: Path,
    download: Downloader,
    fetch: FetchListed,
    paths: Collection[str],
) -> Lookup:
    """The packages that ship each of ``paths``, from the Contents indices of every suite and
    component. A suite that cannot be searched (no listed index, a failed download or
    signature) is reported in :attr:`Lookup.problems`; the other suites still answer."""
    providers: dict[str, list[Provider]] = {}
    problems: list[str] = []
    searched: list[str] = []
    for source in sources:
        try:
            release = load_release(source.base_url, source.suite, keyring, download)
        except HardflowError as exc:
            problems.append(f"{source.suite}: {exc.message}")
            continue
        for component in components:
            listed = contents_file(release, component, arch)
            if listed is None:
                problems.append(
                    f"{source.suite}: the signed Release lists no {component}/Contents-{arch} index"
                )
                continue
            try:
                local = fetch(listed)
                found = search_file(local, listed, paths)
            except (FetchError, TrustError) as exc:
                problems.append(f"{source.suite}: {exc.message}")
                continue
            searched.append(f"{source.suite}: {listed.path}")
            for path, names in found.items():
                entry = providers.setdefault(path, [])
                entry.extend(Provider(n, source.suite) for n in names)
    return Lookup(
        {path: tuple(found) for path, found in providers.items()},
        tuple(problems),
        tuple(searched),
    )


__all__ = [
    "ListedFile",
    "Lookup",
    "Provider",
    "SuiteSource",
    "contents_file",
    "find_providers",
    "search_file",
    "search_lines",
]
