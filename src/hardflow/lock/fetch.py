"""Downloads and the content-addressed cache.

Every artifact is stored under ``<cache>/sha256/<hex>`` and only after its hash was checked, via
a temporary file renamed into place: an interrupted download never leaves an entry, and two
builds writing the same entry at once each rename a complete, verified file. Entries are checked
again when used, so a corrupted cache is caught, reported and replaced.

HTTP is stdlib ``urllib`` (no extra dependency for a handful of GETs). TLS trust follows the
host: OpenSSL's defaults honour ``SSL_CERT_FILE``/``SSL_CERT_DIR``, and we also load
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when set, as the usual company-proxy setups expect.
Proxies come from the standard ``*_proxy`` variables (urllib reads them).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import platformdirs

from hardflow import __version__
from hardflow.errors import FetchError, TrustError

USER_AGENT = f"hardflow/{__version__}"
CHUNK = 1 << 20


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


class NotFound(FetchError):
    """The server answered 404/410: the file is not (or no longer) there."""


def http_get(
    url: str,
    headers: Mapping[str, str] | None = None,
    retries: int = 3,
    sink: Callable[[bytes], None] | None = None,
) -> bytes:
    """GET a URL with retries on transient errors. With ``sink``, stream chunks to it."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2**attempt, 10))
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        try:
            if url.startswith("file:"):
                resp = urllib.request.urlopen(req, timeout=60)
            else:
                resp = urllib.request.urlopen(req, timeout=60, context=ssl_context())
            with resp:
                if sink is None:
                    data: bytes = resp.read()
                    return data
                while chunk := resp.read(CHUNK):
                    sink(chunk)
                return b""
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise NotFound(f"{url}: not found (HTTP {exc.code})") from None
            last = exc
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            if isinstance(exc, urllib.error.URLError) and url.startswith("file:"):
                raise NotFound(f"{url}: not found ({exc.reason})") from None
            last = exc
            if sink is not None:
                break  # a partial stream cannot be resumed into the same sink
    reason = getattr(last, "reason", None) or last
    raise FetchError(f"{url}: download failed: {reason}")


@dataclass(frozen=True)
class Artifact:
    """One file to fetch: a label for messages, its digest, and where it may be found."""

    label: str
    sha256: str
    size: int
    urls: Callable[[], Sequence[str]]  # computed lazily: not needed when cached or offline


class Cache:
    def __init__(self, root: Path | None = None, offline: bool = False) -> None:
        self.root = root or default_cache_dir()
        self.offline = offline

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def get(self, art: Artifact, progress: Callable[[int], None] | None = None) -> Path:
        """Return a verified cache path for ``art``, downloading it when needed."""
        path = self.path_for(art.sha256)
        if path.is_file():
            actual = sha256_file(path)
            if actual == art.sha256:
                if progress:
                    progress(art.size or path.stat().st_size)
                return path
            path.unlink(missing_ok=True)  # corrupted entry: drop it and fetch again
        if self.offline:
            raise FetchError(
                f"{art.label}: not in the cache ({self.root}) and --offline was given",
                hint="run the same command once without --offline to fill the cache",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        urls = list(art.urls())
        errors: list[str] = []
        for url in urls:
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".dl-", suffix=".part")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    actual = _stream_to(url, out, progress)
                if actual != art.sha256:
                    raise TrustError(
                        f"{art.label}: sha256 mismatch for {url}\n"
                        f"  expected {art.sha256}\n  actual   {actual}",
                        hint="the file on the mirror differs from the lock: do not use it; "
                        "check the mirror, or re-lock with `hardflow lock --update` if the "
                        "archive legitimately changed",
                    )
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
                return path
            except NotFound as exc:
                errors.append(exc.message)
            except FetchError as exc:
                errors.append(exc.message)
            finally:
                tmp.unlink(missing_ok=True)
        if all("not found" in e for e in errors):
            raise FetchError(
                f"{art.label}: no longer served by the mirror ({'; '.join(errors)})",
                hint="the archive has moved on: run `hardflow lock --update` to re-pin, or point "
                "HARDFLOW_DEBIAN_MIRROR at a snapshot mirror of the date the lock was made",
            )
        raise FetchError(f"{art.label}: download failed: {'; '.join(errors)}")

    def clear_partial(self) -> None:
        """Remove temporary files left by interrupted runs (never complete entries)."""
        for tmp in (self.root / "sha256").glob("*/.dl-*.part"):
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)


def _stream_to(url: str, out: BinaryIO, progress: Callable[[int], None] | None) -> str:
    """Download ``url`` into ``out``; return the sha256 of what was written."""
    digest = hashlib.sha256()

    def sink(chunk: bytes) -> None:
        digest.update(chunk)
        out.write(chunk)
        if progress:
            progress(len(chunk))

    http_get(url, sink=sink)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
