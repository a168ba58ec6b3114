"""Downloads and the content-addressed cache.

Every artifact is stored under ``<cache>/sha256/<hex>`` and only after its hash was checked, via
a temporary file renamed into place: an interrupted download never leaves an entry, and two
builds writing the same entry at once each rename a complete, verified file. Entries are checked
again when used, so a corrupted cache is caught, reported and replaced.

Networks fail in passing (a DNS hiccup, a reset connection, a proxy answering 503, a stream cut
midway), so every download is retried with a short exponential backoff, whatever the phase it
failed in. A cut stream is resumed with a ``Range`` request when the server honours it (206),
restarted otherwise; either way the final bytes are checked against the locked sha256. Failures
that retrying cannot cure (404, 403, a complete file with the wrong hash) fail at once.

HTTP is stdlib ``urllib`` (no extra dependency for a handful of GETs). TLS trust follows the
host: OpenSSL's defaults honour ``SSL_CERT_FILE``/``SSL_CERT_DIR``, and we also load
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when set, as the usual company-proxy setups expect.
Proxies come from the standard ``*_proxy`` variables (urllib reads them).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import BinaryIO, TypeVar

import platformdirs

from hardflow import __version__
from hardflow.errors import FetchError, TrustError
from hardflow.fsutil import atomic_output, lstat_confined, unlink_confined
from hardflow.lock.model import LockedWheel

USER_AGENT = f"hardflow/{__version__}"
CHUNK = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_T = TypeVar("_T")


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARDFLOW_CACHE_DIR") or platformdirs.user_cache_dir("hardflow"))


@cache
def ssl_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        bundle = os.environ.get(var)
        if bundle and os.path.isfile(bundle):
            ctx.load_verify_locations(cafile=bundle)
    return ctx


class _LocalMismatch(Exception):
    """A local copy of an artifact has another digest (the text says which file, which one)."""


class NotFound(FetchError):
    """The server answered 404/410: the file is not (or no longer) there."""


class InvalidDigest(TrustError, ValueError):
    """A string used as a sha256 is not 64 lowercase hex digits.

    Also a ``ValueError`` so that readers which treat a malformed record as "absent" (the layer
    cache) keep doing so.
    """


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a download is tried.

    ``attempts`` counts every try (the first included); the wait before try ``n+1`` is
    ``base_delay * 2**(n-1)`` capped at ``max_delay`` (a ``Retry-After`` the server sends is
    honoured up to the same cap). ``sleep`` is injectable so tests need not wait.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, failed_tries: int, retry_after: float | None = None) -> float:
        wait = self.base_delay * 2.0 ** max(failed_tries - 1, 0)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return max(0.0, min(wait, self.max_delay))


DEFAULT_RETRY = RetryPolicy()
"""The policy used when none is given (read at call time, so tests may replace it)."""


def redact(url: str) -> str:
    """``url`` without the password or token of its userinfo part, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


class _Transient(Exception):
    """A failure worth another try; ``retry_after`` is the server's wish in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After", "") if exc.headers is not None else ""
    return float(value) if str(value).strip().isdigit() else None


def _classify(exc: BaseException, url: str, label: str) -> _Transient:
    """Turn what urllib raised into a retryable :class:`_Transient`, or raise a permanent error."""
    shown = redact(url)
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        if code in (404, 410):
            raise NotFound(f"{shown}: not found (HTTP {code})") from None
        reason = f"HTTP {code} {exc.reason}".rstrip()
        if code >= 500 or code in (408, 425, 429):
            return _Transient(reason, _retry_after(exc))
        raise FetchError(
            f"{label}: {shown}: {reason} (not retried: the server refuses this request)",
            hint="check the mirror/index URL and any credentials it needs",
        ) from None
    if isinstance(exc, urllib.error.URLError):
        if url.startswith("file:"):
            raise NotFound(f"{shown}: not found ({exc.reason})") from None
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise TrustError(
                f"{label}: {shown}: TLS certificate not trusted ({exc.reason.verify_message})",
                hint="set SSL_CERT_FILE or REQUESTS_CA_BUNDLE to your proxy's CA bundle",
            ) from None
        return _Transient(str(exc.reason))
    if isinstance(exc, ssl.SSLCertVerificationError):
        raise TrustError(f"{label}: {shown}: TLS certificate not trusted ({exc})") from None
    if isinstance(exc, FileNotFoundError) and url.startswith("file:"):
        raise NotFound(f"{shown}: not found") from None
    if isinstance(exc, (http.client.HTTPException, OSError)):
        return _Transient(f"{type(exc).__name__}: {exc}".rstrip(": "))
    raise exc


def _credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its userinfo, and the Basic authorization header it stood for.

    (urllib would otherwise take ``user:token@host`` for a host name.)
    """
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(
        f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    ).decode()
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return bare, {"Authorization": f"Basic {token}"}


def _open(url: str, headers: Mapping[str, str], timeout: float) -> http.client.HTTPResponse:
    url, auth = _credentials(url)
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **auth, **headers})
    if url.startswith("file:"):
        resp = urllib.request.urlopen(req, timeout=timeout)
    else:
        resp = urllib.request.urlopen(req, timeout=timeout, context=ssl_context())
    return resp  # type: ignore[no-any-return]


def _declared_length(resp: http.client.HTTPResponse) -> int | None:
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.strip().isdigit() else None


def _read_all(resp: http.client.HTTPResponse, write: Callable[[bytes], None]) -> bool:
    """Copy the body to ``write``; a body shorter than its Content-Length is a cut stream.

    (``http.client`` returns a short body silently when the peer closes early.) Returns
    whether the server declared the length, i.e. whether the body is known to be complete.
    """
    declared = _declared_length(resp)
    n = 0
    while chunk := resp.read(CHUNK):
        write(chunk)
        n += len(chunk)
    if declared is not None and n < declared:
        raise _Transient(f"the stream ended after {n} of {declared} bytes")
    return declared is not None


def _with_retries(url: str, label: str, policy: RetryPolicy, attempt: Callable[[], _T]) -> _T:
    """Run ``attempt`` until it succeeds, a permanent error is raised, or tries run out."""
    reasons: list[str] = []
    for tried in range(1, max(policy.attempts, 1) + 1):
        try:
            return attempt()
        except _Transient as exc:
            failure = exc
        except Exception as exc:  # classified: permanent failures are raised from here
            if isinstance(exc, FetchError | TrustError):
                raise
            failure = _classify(exc, url, label)
        reasons.append(failure.reason)
        if tried < policy.attempts:
            policy.sleep(policy.delay(tried, failure.retry_after))
    raise FetchError(
        f"{label}: download failed after {len(reasons)} tries from {redact(url)}: "
        f"{reasons[-1]}"
        + (f" (earlier: {'; '.join(dict.fromkeys(reasons[:-1]))})" if len(reasons) > 1 else ""),
        hint="the network or the server failed repeatedly; check connectivity and proxies "
        "(*_proxy variables), then run the command again",
    )


def http_get(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    policy: RetryPolicy | None = None,
) -> bytes:
    """GET a URL into memory, retrying transient failures (see :class:`RetryPolicy`)."""
    chosen = policy or DEFAULT_RETRY

    def attempt() -> bytes:
        parts: list[bytes] = []
        with _open(url, headers or {}, chosen.timeout) as resp:
            _read_all(resp, parts.append)
        return b"".join(parts)

    return _with_retries(url, redact(url), chosen, attempt)


@dataclass(frozen=True)
class Artifact:
    """One file to fetch: a label for messages, its digest, and where it may be found.

    ``local``: files on this machine to copy it from instead of downloading (a wheel of the
    spec's find-links folders); tried in order, each checked against ``sha256``.
    """

    label: str
    sha256: str
    size: int  # 0: not known
    urls: Callable[[], Sequence[str]]  # computed lazily: not needed when cached or offline
    local: tuple[Path, ...] = ()


_PLAIN_WHEEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_\-]*\.whl")


def find_links_artifact(wheel: LockedWheel, folders: Sequence[str]) -> Artifact:
    """The artifact of a wheel locked from the spec's find-links ``folders``.

    The lock names it by file name only; the candidates are that name in each folder, so a
    lock can never point at a file outside them (the name is checked again here: one plain
    file name, no separator, no leading dot).
    """
    if not _PLAIN_WHEEL.fullmatch(wheel.filename):
        raise FetchError(
            f"{wheel.filename!r}: not a plain wheel file name; a lock entry from find-links "
            "names a file in a find-links folder, nothing else"
        )
    if not folders:
        raise FetchError(
            f"{wheel.filename}: the lock takes it from [python] find-links, "
            "but the spec names no find-links folder",
            hint="add the folder to [python] find-links, or run `hardflow lock` again",
        )
    return Artifact(
        label=wheel.filename,
        sha256=wheel.sha256,
        size=wheel.size,
        urls=list,
        local=tuple(Path(folder) / wheel.filename for folder in folders),
    )


class _Partial:
    """The bytes of one artifact received so far, in the open temporary file ``out``."""

    def __init__(self, out: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self.out = out
        self.progress = progress
        self.digest = hashlib.sha256()
        self.size = 0
        self.reported = 0  # bytes already reported to ``progress`` (a restart reports no twice)
        self.resumed = False

    def restart(self) -> None:
        self.out.seek(0)
        self.out.truncate()
        self.digest = hashlib.sha256()
        self.size = 0
        self.resumed = False

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        if self.progress and self.size > self.reported:
            self.progress(self.size - self.reported)
            self.reported = self.size


def _content_range_start(resp: http.client.HTTPResponse) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


class Cache:
    def __init__(
        self, root: Path | None = None, offline: bool = False, retry: RetryPolicy | None = None
    ) -> None:
        self.root = root or default_cache_dir()
        self.offline = offline
        self.retry = retry

    def path_for(self, sha256: str) -> Path:
        # The lock parser checks digests too; this guard keeps a crafted one ("../..") from
        # ever becoming a path, whoever passes it.
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise InvalidDigest(
                f"cache: {sha256!r} is not a sha256 digest (expected 64 lowercase hex digits)"
            )
        return self.root / "sha256" / sha256[:2] / sha256

    def get(self, art: Artifact, progress: Callable[[int], None] | None = None) -> Path:
        """Return a verified cache path for ``art``, downloading it when needed."""
        try:
            path = self.path_for(art.sha256)
        except InvalidDigest as exc:
            raise InvalidDigest(f"{art.label}: {exc.message}") from None
        # The entry is looked at without following symlinks, below the cache root: a symlink
        # planted in the cache can neither be trusted as an entry nor make us delete its target
        # (lstat_confined also refuses a symlinked sha256/ or sha256/xx/ directory).
        rel = path.relative_to(self.root).as_posix()
        st = lstat_confined(self.root, rel)
        if st is not None:
            if stat.S_ISREG(st.st_mode) and _sha256_nofollow(path) == art.sha256:
                if progress:
                    progress(art.size or st.st_size)
                return path
            unlink_confined(self.root, rel)  # corrupt or not a file: drop it and fetch again
        if art.local:
            return self._copy_local(art, path)
        if self.offline:
            raise FetchError(
                f"{art.label}: not in the cache ({self.root}) and --offline was given",
                hint="run the same command once without --offline to fill the cache",
            )
        urls = list(art.urls())
        failures: list[FetchError] = []
        for url in urls:
            try:
                # atomic_output: the entry appears complete and verified, or not at all.
                with atomic_output(path, 0o644) as out:
                    self._download(url, art, out, progress)
                return path
            except FetchError as exc:  # NotFound included: try the next location
                failures.append(exc)
        if failures and all(isinstance(e, NotFound) for e in failures):
            raise FetchError(
                f"{art.label}: no longer served by the mirror "
                f"({'; '.join(e.message for e in failures)})",
                hint="the archive has moved on: run `hardflow lock --update` to re-pin, or point "
                "HARDFLOW_DEBIAN_MIRROR at a snapshot mirror of the date the lock was made",
            )
        if len(failures) == 1:
            raise failures[0]
        reasons = "; ".join(e.message.removeprefix(f"{art.label}: ") for e in failures)
        raise FetchError(f"{art.label}: download failed: {reasons or 'no location is known'}")

    def _copy_local(self, art: Artifact, path: Path) -> Path:
        """Copy the first of ``art.local`` whose sha256 is the locked one into the cache."""
        mismatches: list[str] = []
        for source in art.local:
            try:
                # atomic_output: a copy whose digest differs is dropped, never renamed in
                with source.open("rb") as fh, atomic_output(path, 0o644) as out:
                    digest = hashlib.sha256()
                    size = 0
                    while chunk := fh.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                    actual = digest.hexdigest()
                    if actual != art.sha256:
                        raise _LocalMismatch(f"{source}: sha256 {actual} ({size} bytes)")
                return path
            except FileNotFoundError:
                continue
            except _LocalMismatch as exc:
                mismatches.append(str(exc))
            except OSError as exc:
                mismatches.append(f"{source}: cannot read ({exc.strerror or exc})")
        if not mismatches:
            raise FetchError(
                f"{art.label}: the lock takes this wheel from [python] find-links, but it is "
                f"in none of its folders (looked for {', '.join(str(p) for p in art.local)})",
                hint="put the wheel the lock was made with back into the folder, or run "
                "`hardflow lock --update` to lock the wheels the folder has now",
            )
        sizes = f" ({art.size} bytes)" if art.size else ""
        raise TrustError(
            f"{art.label}: the wheel in the find-links folder differs from the lock\n"
            f"  expected sha256 {art.sha256}{sizes}\n"
            + "".join(f"  found    {m}\n" for m in mismatches).rstrip("\n"),
            hint="the file changed since the lock was made: do not use it unchecked; put the "
            "locked file back, or re-lock with `hardflow lock --update --only NAME`",
        )

    def _download(
        self,
        url: str,
        art: Artifact,
        out: BinaryIO,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Fill ``out`` with the verified bytes of ``art`` from ``url`` (retrying, resuming)."""
        policy = self.retry or DEFAULT_RETRY
        part = _Partial(out, progress)
        shown = redact(url)

        def attempt() -> None:
            headers = {"Range": f"bytes={part.size}-"} if part.size else {}
            with _open(url, headers, policy.timeout) as resp:
                status = getattr(resp, "status", None) or 200
                if part.size and status == 206 and _content_range_start(resp) == part.size:
                    part.resumed = True
                else:
                    part.restart()  # no Range support (200): start over
                complete = _read_all(resp, self._bounded(part, art, shown))
            if not complete and art.size and part.size < art.size:
                # No declared length: a short body may be a cut stream, not the whole file.
                raise _Transient(f"the stream ended after {part.size} of {art.size} bytes")
            actual = part.digest.hexdigest()
            if actual == art.sha256:
                return
            if part.resumed:
                # The pieces may come from two versions of the file: fetch it whole once more
                # before calling it a mismatch.
                part.restart()
                raise _Transient("sha256 mismatch after a resumed download")
            sizes = f" ({art.size} bytes)" if art.size else ""
            raise TrustError(
                f"{art.label}: sha256 mismatch for {shown}\n"
                f"  expected {art.sha256}{sizes}\n  actual   {actual} ({part.size} bytes)",
                hint="the file on the mirror differs from the lock: do not use it; "
                "check the mirror, or re-lock with `hardflow lock --update` if the "
                "archive legitimately changed",
            )

        _with_retries(url, art.label, policy, attempt)

    @staticmethod
    def _bounded(part: _Partial, art: Artifact, shown: str) -> Callable[[bytes], None]:
        """``part.write`` that refuses more bytes than the lock says the file has."""

        def write(chunk: bytes) -> None:
            if art.size and part.size + len(chunk) > art.size:
                raise TrustError(
                    f"{art.label}: {shown} sends more than the locked {art.size} bytes",
                    hint="the file on the mirror differs from the lock: do not use it",
                )
            part.write(chunk)

        return write

    def clear_partial(self) -> None:
        """Remove temporary files left by interrupted runs (never complete entries)."""
        for pattern in ("*/.dl-*.part", "*/.*.tmp"):
            for tmp in (self.root / "sha256").glob(pattern):
                if time.time() - tmp.stat().st_mtime > 3600:
                    tmp.unlink(missing_ok=True)


def _sha256_nofollow(path: Path) -> str | None:
    """The sha256 of a regular file at ``path`` (never through a symlink), None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
