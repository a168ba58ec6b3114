"""Debian archive indices, verified end to end.

Trust chain: ``InRelease`` is checked by ``gpgv`` against a keyring the user chose; only the text
gpgv prints as verified is parsed (:func:`load_release`). The verified Release names the sha256
and size of each ``Packages`` index, which is downloaded, checked against them and only then
parsed (and of each ``Contents`` index, which :mod:`hardflow.debian.contents` reads the same
way). Every ``.deb`` later carries the sha256 its verified ``Packages`` stanza gave.

The archive's location is always a parameter (``base_url``); nothing here knows a host name.
"""

from __future__ import annotations

import bz2
import datetime
import email.utils
import gzip
import hashlib
import lzma
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Release

from hardflow.errors import FetchError, TrustError

Downloader = Callable[[str], bytes]
"""Fetches one URL fully; raises :class:`~hardflow.errors.FetchError` on failure."""

ALLOW_EXPIRED_ENV = "HARDFLOW_DEBIAN_ALLOW_EXPIRED"

# Index file name suffixes in order of preference, with the function that decompresses them.
_INDEX_FORMATS: tuple[tuple[str, Callable[[bytes], bytes]], ...] = (
    (".xz", lzma.decompress),
    (".gz", gzip.decompress),
    (".bz2", bz2.decompress),
    ("", lambda data: data),
)


@dataclass(frozen=True)
class PackageRecord:
    """One stanza of a ``Packages`` index (only the fields hardflow uses)."""

    name: str
    version: str
    architecture: str
    suite: str
    filename: str  # path relative to the archive root (pool/main/...)
    sha256: str
    size: int
    source: str  # source package name
    source_version: str
    depends: str  # raw relation strings, "" if absent
    pre_depends: str
    provides: str
    essential: bool
    priority: str = ""  # required/important/standard/optional/extra; orders virtual providers


@dataclass(frozen=True)
class SuiteIndex:
    suite: str
    date: str  # the verified Release file's Date field
    epoch: int  # the same as a Unix timestamp
    packages: tuple[PackageRecord, ...]


# --------------------------------------------------------------------------- pure parsing


def parse_release_date(value: str, what: str) -> int:
    """An RFC 2822 date of a Release file as a Unix timestamp."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise TrustError(f"{what}: unreadable date {value!r}") from None
    if parsed.tzinfo is None:  # "UTC" parses as naive in some Python versions: it is UTC
        return int(parsed.replace(tzinfo=datetime.UTC).timestamp())
    return int(parsed.timestamp())


def parse_sha256_list(release: Release) -> dict[str, tuple[str, int]]:
    """Map of index path (``main/binary-amd64/Packages.xz``) to (sha256, size)."""
    entries: dict[str, tuple[str, int]] = {}
    for entry in release.get("SHA256", []):
        entries[entry["name"]] = (entry["sha256"].lower(), int(entry["size"]))
    return entries


def _source_of(value: str, name: str, version: str) -> tuple[str, str]:
    """``Source: foo (1.2-3)`` -> (foo, 1.2-3); absent -> the binary's own name and version."""
    value = value.strip()
    if not value:
        return name, version
    if "(" in value:
        src, _, rest = value.partition("(")
        return src.strip(), rest.rstrip(")").strip()
    return value, version


_WANTED_FIELDS = frozenset(
    {
        "package",
        "version",
        "architecture",
        "filename",
        "sha256",
        "size",
        "source",
        "depends",
        "pre-depends",
        "provides",
        "essential",
        "priority",
    }
)


def _iter_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Fields of interest of each stanza of a deb822 text, lower-cased names.

    Hand-written because python-debian's general parser takes tens of seconds on a full
    ``Packages`` index (~70k stanzas); this one keeps only the fields we need.
    """
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        current: str | None = None
        for line in block.split("\n"):
            if not line or line.startswith("#"):
                continue
            if line[0] in " \t":
                if current is not None:
                    fields[current] += " " + line.strip()
                continue
            key, sep, value = line.partition(":")
            if not sep:
                current = None
                continue
            key = key.strip().lower()
            if key in _WANTED_FIELDS:
                fields[key] = value.strip()
                current = key
            else:
                current = None
        if fields:
            yield fields


def parse_packages(text: str, suite: str, origin: str) -> tuple[PackageRecord, ...]:
    """Parse a ``Packages`` index. ``origin`` (a URL) names the file in errors."""
    records: list[PackageRecord] = []
    for fields in _iter_stanzas(text):
        try:
            name = fields["package"]
            version = fields["version"]
            size = int(fields["size"])
            record_fields = (fields["architecture"], fields["filename"], fields["sha256"])
        except (KeyError, ValueError) as exc:
            shown = fields.get("package", "?")
            raise TrustError(
                f"{origin}: stanza for package {shown!r} lacks a usable field ({exc})"
            ) from None
        source, source_version = _source_of(fields.get("source", ""), name, version)
        records.append(
            PackageRecord(
                name=name,
                version=version,
                architecture=record_fields[0],
                suite=suite,
                filename=record_fields[1],
                sha256=record_fields[2].lower(),
                size=size,
                source=source,
                source_version=source_version,
                depends=fields.get("depends", ""),
                pre_depends=fields.get("pre-depends", ""),
                provides=fields.get("provides", ""),
                essential=fields.get("essential", "").lower() == "yes",
                priority=fields.get("priority", ""),
            )
        )
    return tuple(records)


def check_release(release: Release, suite: str, url: str, now: float) -> None:
    """The verified Release must be for ``suite`` and, if it says so, still valid."""
    names = {release.get("Suite", ""), release.get("Codename", "")} - {""}
    if names and suite not in names:
        raise TrustError(
            f"{url}: signed Release is for suite {sorted(names)}, expected {suite!r}",
            hint="a mirror may be serving another suite's index under this name",
        )
    valid_until = release.get("Valid-Until")
    if valid_until:
        expiry = parse_release_date(valid_until, f"{url} Valid-Until")
        if now > expiry and os.environ.get(ALLOW_EXPIRED_ENV, "") not in ("1", "true", "yes"):
            raise TrustError(
                f"{url}: Release of suite {suite!r} expired at {valid_until} "
                "(an attacker could be replaying an old index)",
                hint=f"a snapshot mirror serves expired indices on purpose: set "
                f"{ALLOW_EXPIRED_ENV}=1 to accept them",
            )


# --------------------------------------------------------------------------- I/O shell


def gpgv_verify(signed: bytes, keyring: Path, what: str) -> str:
    """Verify clear-signed ``signed`` with gpgv against ``keyring``; return the verified text.

    Only the text gpgv writes out is returned: bytes outside the signed part never are.
    ``what`` (suite and URL) names the file in errors.
    """
    if not keyring.is_file():
        raise TrustError(f"{what}: keyring {keyring} does not exist")
    with tempfile.TemporaryDirectory(prefix="hardflow-gpgv-") as tmp:
        signed_path = Path(tmp) / "InRelease"
        signed_path.write_bytes(signed)
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        cmd = [
            "gpgv",
            "--homedir",
            str(home),
            "--status-fd",
            "2",
            "--keyring",
            str(keyring.resolve()),
            "--output",
            "-",
            str(signed_path),
        ]
        try:
            env = {**os.environ, "LC_ALL": "C", "LANGUAGE": ""}  # reasons in plain English
            proc = subprocess.run(cmd, capture_output=True, check=False, timeout=120, env=env)
        except FileNotFoundError:
            raise TrustError(
                f"{what}: gpgv is not installed, so the signature cannot be checked",
                hint="install the gpgv package",
            ) from None
        except subprocess.TimeoutExpired:
            raise TrustError(f"{what}: gpgv did not finish in 120 s") from None
    log = proc.stderr.decode("utf-8", "replace")
    status = [ln[len("[GNUPG:] ") :] for ln in log.splitlines() if ln.startswith("[GNUPG:] ")]
    human = [ln for ln in log.splitlines() if not ln.startswith("[GNUPG:] ")]
    # As apt does: at least one good signature by a key of the keyring and no bad one.
    # Extra signatures by keys we lack (ERRSIG) or expired/revoked keys do not count either way;
    # gpgv then exits non-zero although the text verified, so the status lines decide.
    good = [s for s in status if s.startswith("GOODSIG ")]
    bad = [s for s in status if s.startswith("BADSIG ")]
    if not good or bad or not proc.stdout:
        reason = "; ".join(h.removeprefix("gpgv: ").strip() for h in human if h.strip())
        raise TrustError(
            f"{what}: signature did not verify against {keyring}: "
            f"{reason or 'gpgv exit status ' + str(proc.returncode)}",
            hint="the index may have been tampered with, or the keyring is the wrong one",
        )
    try:
        return proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise TrustError(f"{what}: verified Release is not UTF-8 text") from None


def _fetch_index(
    base: str,
    rel_dir: str,
    entries: dict[str, tuple[str, int]],
    download: Downloader,
    suite: str,
) -> tuple[str, bytes]:
    """Download the best-compressed listed variant of an index and check its hash and size."""
    for suffix, decompress in _INDEX_FORMATS:
        rel = f"{rel_dir}{suffix}"
        if rel not in entries:
            continue
        expected_hash, expected_size = entries[rel]
        url = f"{base}/{rel}"
        data = download(url)
        actual_hash = hashlib.sha256(data).hexdigest()
        if actual_hash != expected_hash or len(data) != expected_size:
            raise TrustError(
                f"{url}: does not match the signed Release of suite {suite!r}: expected "
                f"sha256 {expected_hash} ({expected_size} bytes), got {actual_hash} "
                f"({len(data)} bytes)",
                hint="the mirror may be mid-update (retry later) or the file was tampered with",
            )
        try:
            return url, decompress(data)
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            raise TrustError(f"{url}: cannot decompress: {exc}") from None
    raise FetchError(
        f"{base}/{rel_dir}: the signed Release of suite {suite!r} lists no such index "
        "(.xz, .gz, .bz2 or plain)",
        hint="check the component and architecture names",
    )


@dataclass(frozen=True)
class VerifiedRelease:
    """The signed Release of one suite, after gpgv and the suite and expiry checks."""

    suite: str
    dist_url: str  # <base>/dists/<suite>: the files the Release lists are below it
    date: str  # the Date field
    epoch: int  # the same as a Unix timestamp
    files: dict[str, tuple[str, int]]  # listed path (main/Contents-amd64.gz) -> (sha256, size)
    by_hash: bool = False  # Acquire-By-Hash: each file is also served as <dir>/by-hash/SHA256/<hex>

    def urls(self, path: str) -> tuple[str, ...]:
        """Where the listed ``path`` is served: by its hash first (a mirror mid-update still
        serves the bytes this Release names there), then by its name."""
        plain = f"{self.dist_url}/{path}"
        if not self.by_hash or path not in self.files:
            return (plain,)
        directory = path.rsplit("/", 1)[0] if "/" in path else ""
        prefix = f"{self.dist_url}/{directory}/" if directory else f"{self.dist_url}/"
        return (f"{prefix}by-hash/SHA256/{self.files[path][0]}", plain)


def load_release(base_url: str, suite: str, keyring: Path, download: Downloader) -> VerifiedRelease:
    """Fetch ``InRelease`` of ``suite``, verify it with gpgv and check it (suite, expiry, Date).

    Only files the returned Release lists, with its sha256 and size, may be trusted.
    """
    dist = f"{base_url.rstrip('/')}/dists/{suite}"
    url = f"{dist}/InRelease"
    signed = download(url)
    text = gpgv_verify(signed, keyring, f"suite {suite!r} ({url})")
    release = Release(text)
    check_release(release, suite, url, time.time())
    date = release.get("Date", "")
    if not date:
        raise TrustError(f"{url}: signed Release has no Date field")
    epoch = parse_release_date(date, f"{url} Date")
    by_hash = str(release.get("Acquire-By-Hash", "")).strip().lower() == "yes"
    return VerifiedRelease(suite, dist, date, epoch, parse_sha256_list(release), by_hash)


def load_suite(
    base_url: str,
    suite: str,
    components: Sequence[str],
    arch: str,
    keyring: Path,
    download: Downloader,
) -> SuiteIndex:
    """Fetch, verify and parse the ``Packages`` indices of one suite."""
    return load_suite_arches(base_url, suite, components, (arch,), keyring, download)[arch]


def load_suite_arches(
    base_url: str,
    suite: str,
    components: Sequence[str],
    arches: Sequence[str],
    keyring: Path,
    download: Downloader,
) -> dict[str, SuiteIndex]:
    """The ``Packages`` indices of one suite for each architecture (``binary-ARCH``), all
    checked against the one signed Release (fetched and verified once)."""
    release = load_release(base_url, suite, keyring, download)
    dist, date, epoch, entries = release.dist_url, release.date, release.epoch, release.files
    out: dict[str, SuiteIndex] = {}
    for arch in dict.fromkeys(arches):
        packages: list[PackageRecord] = []
        for component in components:
            index_url, raw = _fetch_index(
                dist, f"{component}/binary-{arch}/Packages", entries, download, suite
            )
            try:
                content = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise TrustError(f"{index_url}: not UTF-8 text") from None
            packages.extend(parse_packages(content, suite, index_url))
        out[arch] = SuiteIndex(suite=suite, date=date, epoch=epoch, packages=tuple(packages))
    return out
