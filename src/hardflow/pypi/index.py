"""Python package indexes: which ones the host uses, and where a locked wheel is served now.

The lock names a wheel by file name and sha256 only. At fetch time the file is looked up on the
indexes the host is configured for, through the simple repository API: PEP 691 JSON when the
index offers it, PEP 503 HTML otherwise (one request with content negotiation; the body is
sniffed, because a ``file://`` index or a static mirror answers HTML whatever we ask for).

Where the indexes come from:

* uv's own configuration (``UV_DEFAULT_INDEX``, ``UV_INDEX_URL``, ``UV_EXTRA_INDEX_URL``,
  ``UV_INDEX``, ``UV_FIND_LINKS``, ``uv.toml``) is read by uv itself when we resolve;
* pip's configuration (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS`` and the
  ``pip.conf`` files) is mapped onto uv's command line here, because uv does not read it and a
  company proxy is often configured for pip only. When the host configures uv's indexes, pip's
  are left alone (uv's configuration wins, and passing pip's on the command line would silently
  override it).

The default index (when nothing is configured) is never written in this code: it is asked from
uv, see :func:`uv_index_urls`.
"""

from __future__ import annotations

import configparser
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from packaging.utils import canonicalize_name

from hardflow.errors import FetchError, ResolveError

log = logging.getLogger(__name__)

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
# PEP 691 content negotiation: JSON preferred, HTML (both spellings) accepted.
ACCEPT = f"{SIMPLE_JSON}, {SIMPLE_HTML};q=0.2, text/html;q=0.01"

# pip's configuration files, lowest precedence first (pip's own order: global, then user).
PIP_SYSTEM_FILES = (Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"))

# uv environment variables and uv.toml keys that select indexes.
_UV_INDEX_ENV = (
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
)
_UV_INDEX_KEYS = {"index", "index-url", "default-index", "extra-index-url", "find-links"}

Download = Callable[[str, Mapping[str, str]], bytes]


@dataclass(frozen=True)
class IndexConfig:
    """Indexes to resolve and fetch from, on top of what uv reads from its own configuration.

    ``index_url`` None means uv's default (its configuration, else its built-in default index).
    ``index_strategy`` is passed to uv's ``--index-strategy`` when set: indexes mapped from
    pip's configuration use ``unsafe-best-match``, which is pip's own semantics (pip picks the
    best version over all its indexes, where uv would stop at the first index naming a project).
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    index_strategy: str | None = None

    def uv_args(self) -> list[str]:
        """The uv command-line options for this configuration."""
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.index_strategy:
            args += ["--index-strategy", self.index_strategy]
        return args


# --------------------------------------------------------------------------- host configuration


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


def pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """pip.conf files that pip would read, lowest precedence first."""
    home = Path(env.get("HOME", str(Path.home())))
    xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    explicit = env.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:
        return []
    files = list(PIP_SYSTEM_FILES)
    # pip skips the user files when PIP_CONFIG_FILE names an existing file.
    if not (explicit and Path(explicit).exists()):
        files += [home / ".pip" / "pip.conf", xdg / "pip" / "pip.conf"]
    if explicit:
        files.append(Path(explicit))
    return files


def read_pip_config(files: Sequence[Path]) -> dict[str, str]:
    """The effective ``[global]`` + ``[install]`` settings of these pip.conf files."""
    settings: dict[str, str] = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            with path.open(encoding="utf-8") as fh:
                parser.read_file(fh)
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            log.warning("ignoring unreadable pip configuration %s: %s", path, exc)
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    settings[key.replace("_", "-")] = value
    return settings


def _uv_config_files(env: Mapping[str, str]) -> list[Path]:
    home = Path(env.get("HOME", str(Path.home())))
    xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    files = [Path("/etc/uv/uv.toml"), xdg / "uv" / "uv.toml"]
    if env.get("UV_CONFIG_FILE"):
        files.append(Path(env["UV_CONFIG_FILE"]))
    return files


def uv_configures_indexes(env: Mapping[str, str]) -> bool:
    """Whether the host tells uv itself which indexes to use (environment or uv.toml)."""
    if any(env.get(name) for name in _UV_INDEX_ENV):
        return True
    if env.get("UV_NO_CONFIG"):
        return False
    for path in _uv_config_files(env):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            log.warning("cannot read uv configuration %s: %s", path, exc)
            continue
        pip_table = data.get("pip")
        keys = set(data) | (set(pip_table) if isinstance(pip_table, dict) else set())
        if keys & _UV_INDEX_KEYS:
            return True
    return False


def _local_path(location: str) -> Path | None:
    """The local path of a ``file://`` URL or a plain path; None for remote URLs."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and location[1:2] == ":"):
        return Path(location)
    return None


def _exists_or_remote(location: str, what: str) -> bool:
    path = _local_path(location)
    if path is None or path.exists():
        return True
    log.debug("skipping %s %s: %s does not exist", what, location, path)
    return False


def index_config_from_host(
    env: Mapping[str, str] = os.environ,
    *,
    pip_files: Sequence[Path] | None = None,
) -> IndexConfig:
    """Map the host's pip configuration onto an :class:`IndexConfig` (uv reads its own).

    ``pip_files`` overrides the pip.conf files to read (tests); by default pip's own list.
    Local (``file://`` or path) extra indexes and find-links that do not exist are skipped.
    pip's extra indexes and find-links are mapped only with ``HARDFLOW_PIP_EXTRA_INDEXES=1``.
    """
    if uv_configures_indexes(env):
        log.debug("uv's own index configuration is in effect; pip's is not mapped")
        return IndexConfig()
    settings = read_pip_config(pip_config_files(env) if pip_files is None else pip_files)
    for key in ("index-url", "extra-index-url", "find-links"):
        env_name = "PIP_" + key.upper().replace("-", "_")
        if env.get(env_name):
            settings[key] = env[env_name]
    index_url = settings.get("index-url", "").strip() or None
    if env.get("HARDFLOW_PIP_EXTRA_INDEXES", "").lower() not in ("1", "true", "yes"):
        # pip's extra indexes and find-links usually serve the *host's* Python (here: local
        # wheel mirrors for another interpreter); mixed into the image's resolution with
        # best-match semantics they can shadow the real index and invite dependency
        # confusion. Only the primary index (what a company proxy sets) is mapped by default.
        settings.pop("extra-index-url", None)
        settings.pop("find-links", None)
    extras = tuple(
        u for u in _split(settings.get("extra-index-url")) if _exists_or_remote(u, "extra index")
    )
    links = tuple(
        u for u in _split(settings.get("find-links")) if _exists_or_remote(u, "find-links")
    )
    if index_url and not _exists_or_remote(index_url, "index"):
        index_url = None
    return IndexConfig(
        index_url=index_url,
        extra_index_urls=extras,
        find_links=links,
        index_strategy="unsafe-best-match" if extras or links else None,
    )


# --------------------------------------------------------------------------- uv's own indexes


def uv_binary() -> str:
    try:
        import uv
    except ImportError:  # pragma: no cover - uv is a dependency
        raise ResolveError(
            "the `uv` package is not installed", hint="install hardflow with its dependencies"
        ) from None
    return str(uv.find_uv_bin())


@functools.lru_cache(maxsize=8)
def _uv_emitted_indexes(uv: str, uv_env: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    del uv_env  # part of the cache key only: uv reads it from the process environment
    with tempfile.TemporaryDirectory(prefix="hardflow-uv-") as tmp:
        req = Path(tmp) / "empty.in"
        req.write_text("", encoding="utf-8")
        cmd = [
            uv, "pip", "compile", str(req), "--emit-index-url", "--no-header", "--quiet",
            "--offline", "--no-progress", "--python", sys.executable,
        ]  # fmt: skip
        try:
            # In a scratch directory, like `resolve`: project-level uv.toml files are not read.
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
        except OSError as exc:
            raise ResolveError(f"cannot run uv ({uv}): {exc}") from None
    if proc.returncode != 0:
        raise ResolveError(
            f"uv could not report its index configuration: {proc.stderr.strip()[-2000:]}"
        )
    urls: list[str] = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("--index-url", "--extra-index-url", "-i"):
            urls.append(parts[1])
    return tuple(urls)


def uv_index_urls() -> tuple[str, ...]:
    """The indexes uv uses with the host's uv configuration: default index first, then extras.

    Asked from uv itself (``uv pip compile --emit-index-url`` of an empty requirement set,
    offline, ~0.5 s, cached per environment), so no index host is written in hardflow and a
    ``UV_DEFAULT_INDEX`` or ``uv.toml`` on the host is honoured.
    """
    uv_env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("UV_")))
    urls = _uv_emitted_indexes(uv_binary(), uv_env)
    if not urls:
        raise ResolveError("uv reported no package index (is UV_NO_INDEX set?)")
    return urls


def default_index_url() -> str:
    """uv's effective default index URL (its configuration, else its built-in default)."""
    return uv_index_urls()[0]


def index_urls(config: IndexConfig) -> tuple[str, ...]:
    """The indexes to look a file up on, in order: the index, then the extra indexes."""
    if config.index_url:
        own: tuple[str, ...] = (config.index_url,)
    else:
        own = uv_index_urls()
    seen: dict[str, None] = {}
    for url in (*own, *config.extra_index_urls):
        seen.setdefault(url, None)
    return tuple(seen)


# --------------------------------------------------------------------------- simple API pages


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str  # absolute, without fragment
    sha256: str | None


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.base: str | None = None
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "base" and values.get("href") and self.base is None:
            self.base = values["href"]
        elif tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))


def _file_from_href(href: str, base: str) -> IndexFile:
    url, fragment = urldefrag(urljoin(base, href))
    sha256 = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
    return IndexFile(
        filename=unquote(urlparse(url).path.rsplit("/", 1)[-1]), url=url, sha256=sha256
    )


def parse_project_page(body: bytes, page_url: str) -> list[IndexFile]:
    """Files listed by a simple-API project page, JSON (PEP 691) or HTML (PEP 503)."""
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            data: Any = json.loads(text)
            files = data["files"]
            out = []
            for entry in files:
                url, _ = urldefrag(urljoin(page_url, str(entry["url"])))
                hashes = entry.get("hashes") or {}
                out.append(IndexFile(str(entry["filename"]), url, hashes.get("sha256")))
            return out
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FetchError(f"{page_url}: malformed simple-API JSON page ({exc!r})") from None
    parser = _AnchorParser()
    parser.feed(text)
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return [_file_from_href(href, base) for href in parser.hrefs]


def _read_page(url: str, download: Download) -> tuple[bytes, str]:
    """A page's body and its effective URL; local directories are read as their index.html."""
    local = _local_path(url)
    if local is not None:
        target = local / "index.html" if local.is_dir() else local
        try:
            return target.read_bytes(), target.as_uri()
        except OSError as exc:
            raise FetchError(f"cannot read {target}: {exc.strerror}") from None
    return download(url, {"Accept": ACCEPT}), url


def _project_files(page: str, download: Download) -> list[IndexFile]:
    return parse_project_page(*_read_page(page, download))


def _find_link_files(location: str, download: Download) -> list[IndexFile]:
    local = _local_path(location)
    if local is not None and local.is_dir():
        return [
            IndexFile(p.name, p.resolve().as_uri(), None)
            for p in sorted(local.iterdir())
            if p.is_file()
        ]
    body, url = _read_page(location, download)
    return parse_project_page(body, url)


def wheel_url(
    config: IndexConfig,
    name: str,
    filename: str,
    download: Download,
    *,
    sha256: str | None = None,
) -> str:
    """Where ``filename`` (a wheel of project ``name``) is served now.

    Tries the index, then the extra indexes, then the find-links locations. With ``sha256``,
    a file the index lists under another hash is passed over. ``download(url, headers)``
    returns a body or raises (any ``HardflowError`` or ``OSError`` means "not here").
    """
    project = canonicalize_name(name)
    tried: list[str] = []

    def look(where: str, files: Callable[[], list[IndexFile]]) -> str | None:
        try:
            listed = [f for f in files() if f.filename == filename]
        except (FetchError, OSError, ValueError) as exc:
            log.debug("%s: %s", where, exc)
            tried.append(f"{where} ({_reason(exc)})")
            return None
        for f in listed:
            if not (sha256 and f.sha256) or f.sha256.lower() == sha256.lower():
                return f.url
        if listed:
            tried.append(f"{where} (lists it with sha256 {listed[0].sha256}, lock has {sha256})")
        else:
            tried.append(f"{where} (not listed)")
        return None

    for index in index_urls(config):
        page = index.rstrip("/") + f"/{project}/"
        found = look(index, functools.partial(_project_files, page, download))
        if found:
            return found
    for link in config.find_links:
        found = look(link, functools.partial(_find_link_files, link, download))
        if found:
            return found
    raise FetchError(
        f"wheel {filename} ({project}) is not served by any configured index; tried: "
        + "; ".join(tried),
        hint="the lock may pin a file the index no longer serves: run `hardflow lock --update`",
    )


def files_with_digests(
    config: IndexConfig, name: str, digests: Collection[str], download: Download
) -> dict[str, str]:
    """The file names the indexes list for project ``name`` under these sha256 hex digests.

    Best effort, for messages (which file a requirements file's ``--hash`` is of): an index
    that cannot be read is passed over.
    """
    wanted = {d.lower() for d in digests}
    found: dict[str, str] = {}
    for index in index_urls(config):
        page = index.rstrip("/") + f"/{canonicalize_name(name)}/"
        try:
            files = _project_files(page, download)
        except (FetchError, OSError, ValueError) as exc:
            log.debug("%s: %s", page, exc)
            continue
        for f in files:
            if f.sha256 and f.sha256.lower() in wanted:
                found.setdefault(f.sha256.lower(), f.filename)
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FetchError):
        return exc.message
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return str(exc) or type(exc).__name__


def urllib_download(url: str, headers: Mapping[str, str], timeout: float = 60.0) -> bytes:
    """A minimal ``download`` for :func:`wheel_url` (stdlib urllib; ``file:`` URLs too)."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{url}: {getattr(exc, 'reason', exc)}") from None
