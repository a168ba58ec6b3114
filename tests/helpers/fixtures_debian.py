"""A small, real, *signed* Debian-style repository for tests.

Everything is made here, in a temporary directory: a throwaway GPG key, tiny ``.deb`` files
written byte by byte (ar + control.tar + data.tar), ``Packages`` indices, a ``Release`` with
SHA256 lines and a clear-signed ``InRelease``. The repository is served through ``file://``
URLs; :func:`file_downloader` is the matching downloader.

Typical use::

    repo = build_repo(tmp_path, [FakePackage("app", "1.0", depends="libfoo (>= 1)"),
                                 FakePackage("libfoo", "1.2", files={"usr/lib/libfoo.so.1": b"x"})])
    index = load_suite(repo.base_url, "trixie", ["main"], "amd64", repo.keyring, file_downloader)

Needs the ``gpg`` and ``gpgv`` programs (Debian's gnupg and gpgv packages).
"""

from __future__ import annotations

import atexit
import bz2
import gzip
import hashlib
import io
import lzma
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from hardflow.errors import FetchError

DEFAULT_DATE = "Sat, 10 May 2025 10:00:00 UTC"
DEFAULT_EPOCH = 1746871200


# --------------------------------------------------------------------------- downloader


def file_downloader(url: str) -> bytes:
    """A :data:`hardflow.debian.repo.Downloader` for ``file://`` URLs."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        raise FetchError(f"{url}: file_downloader only reads file:// URLs")
    path = Path(urllib.request.url2pathname(parsed.path))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FetchError(f"{url}: cannot read: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- .deb writing


@dataclass(frozen=True)
class TarEntry:
    """One member of a data.tar, written exactly as given (so tests can write bad ones)."""

    path: str  # as stored, e.g. "./usr/bin/tool" or "../etc/passwd"
    kind: str = "file"  # file, dir, symlink, hardlink, fifo, chardev, blockdev
    data: bytes = b""
    mode: int = 0o644
    link: str = ""


def _tar(entries: Sequence[TarEntry]) -> bytes:
    buf = io.BytesIO()
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chardev": tarfile.CHRTYPE,
        "blockdev": tarfile.BLKTYPE,
    }
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.type = types[entry.kind]
            info.mode = entry.mode
            info.mtime = DEFAULT_EPOCH
            info.uname = info.gname = "root"
            if entry.kind in ("symlink", "hardlink"):
                info.linkname = entry.link
            if entry.kind in ("chardev", "blockdev"):
                info.devmajor, info.devminor = 1, 3
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data, mtime=0)
    if compression == "xz":
        return lzma.compress(data)
    if compression == "zst":
        return zstandard.ZstdCompressor().compress(data)
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def ar_archive(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A System V ``ar`` archive as dpkg writes it."""
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        assert len(header) == 60
        out += header.encode("ascii") + data
        if len(data) % 2:
            out += b"\n"
    return bytes(out)


def control_text(fields: Mapping[str, str]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in fields.items() if v != "")


def build_deb(
    path: Path,
    control: Mapping[str, str],
    entries: Sequence[TarEntry],
    *,
    conffiles: Sequence[str] = (),
    compression: str = "gz",
) -> Path:
    """Write a ``.deb`` with the given control fields and data.tar entries."""
    control_entries = [
        TarEntry("./", "dir", mode=0o755),
        TarEntry("./control", data=control_text(control).encode()),
    ]
    if conffiles:
        control_entries.append(
            TarEntry("./conffiles", data="".join(f"{c}\n" for c in conffiles).encode())
        )
    suffix = f".{compression}" if compression else ""
    blob = ar_archive(
        [
            ("debian-binary", b"2.0\n"),
            (f"control.tar{suffix}", _compress(_tar(control_entries), compression)),
            (f"data.tar{suffix}", _compress(_tar(entries), compression)),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


@dataclass(frozen=True)
class FakePackage:
    """A package of the fake archive. ``files``/``symlinks`` paths are relative to ``/``."""

    name: str
    version: str = "1.0"
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    suites: tuple[str, ...] = ("trixie",)  # the suites whose index lists it
    files: Mapping[str, bytes] = field(default_factory=dict)
    modes: Mapping[str, int] = field(default_factory=dict)  # default 0o755 under bin/, else 0o644
    symlinks: Mapping[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    source: str = ""  # "name" or "name (version)"; "" = same as the binary
    essential: bool = False
    priority: str = "optional"
    conffiles: tuple[str, ...] = ()
    recommends: str = ""

    @property
    def filename(self) -> str:
        src = (self.source or self.name).split(" ")[0]
        prefix = src[:4] if src.startswith("lib") else src[:1]
        version = self.version.split(":", 1)[-1]
        return f"pool/main/{prefix}/{src}/{self.name}_{version}_{self.architecture}.deb"

    def control(self) -> dict[str, str]:
        return {
            "Package": self.name,
            "Source": self.source,
            "Version": self.version,
            "Architecture": self.architecture,
            "Maintainer": "Hardflow Tests <tests@example.invalid>",
            "Essential": "yes" if self.essential else "",
            "Priority": self.priority,
            "Pre-Depends": self.pre_depends,
            "Depends": self.depends,
            "Recommends": self.recommends,
            "Provides": self.provides,
            "Description": f"test package {self.name}",
        }

    def entries(self) -> list[TarEntry]:
        paths = list(self.files) + list(self.symlinks)
        dirs = sorted(
            {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
        )
        out = [TarEntry("./", "dir", mode=0o755)]
        out += [TarEntry(f"./{d}/", "dir", mode=0o755) for d in dirs]
        for path, data in sorted(self.files.items()):
            default = 0o755 if "/bin/" in f"/{path}" else 0o644
            out.append(TarEntry(f"./{path}", data=data, mode=self.modes.get(path, default)))
        for path, target in sorted(self.symlinks.items()):
            out.append(TarEntry(f"./{path}", "symlink", mode=0o777, link=target))
        return out


# --------------------------------------------------------------------------- signing keys


@dataclass(frozen=True)
class SigningKey:
    gnupghome: Path
    fingerprint: str
    keyring: Path  # the exported public key, usable as gpgv --keyring


_KEYS: dict[str, SigningKey] = {}


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", "--quiet", *args],
        input=stdin,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _cleanup_key(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True
    )
    shutil.rmtree(home, ignore_errors=True)


def make_signing_key(uid: str = "Hardflow Test Archive <archive@example.invalid>") -> SigningKey:
    """A passphrase-less ed25519 signing key (one per uid per process, cleaned up at exit)."""
    if uid in _KEYS:
        return _KEYS[uid]
    # A short path: gpg-agent's socket lives in the home dir and socket paths are length-limited.
    home = Path(tempfile.mkdtemp(prefix="hfgpg-", dir="/tmp"))
    home.chmod(0o700)
    atexit.register(_cleanup_key, home)
    _gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
    listing = _gpg(home, "--with-colons", "--list-keys", uid).decode()
    fingerprint = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
    keyring = home / "keyring.gpg"
    keyring.write_bytes(_gpg(home, "--export", fingerprint))
    key = SigningKey(home, fingerprint, keyring)
    _KEYS[uid] = key
    return key


def clearsign(key: SigningKey, text: bytes) -> bytes:
    return _gpg(
        key.gnupghome,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--local-user",
        key.fingerprint,
        "--digest-algo",
        "SHA256",
        "--clearsign",
        stdin=text,
    )


# --------------------------------------------------------------------------- the repository


@dataclass
class FakeRepo:
    root: Path
    key: SigningKey
    suites: tuple[str, ...]
    packages: tuple[FakePackage, ...]
    arch: str = "amd64"

    @property
    def base_url(self) -> str:
        return self.root.as_uri()

    @property
    def keyring(self) -> Path:
        return self.key.keyring

    def dist(self, suite: str) -> Path:
        return self.root / "dists" / suite

    def deb_path(self, name: str, version: str | None = None) -> Path:
        for pkg in self.packages:
            if pkg.name == name and (version is None or pkg.version == version):
                return self.root / pkg.filename
        raise KeyError(f"{name} {version or ''}")

    def write_release(
        self,
        suite: str,
        *,
        date: str = DEFAULT_DATE,
        valid_until: str | None = None,
        codename: str | None = None,
        key: SigningKey | None = None,
    ) -> None:
        """(Re)write ``Release`` from the index files present, and sign it as ``InRelease``."""
        dist = self.dist(suite)
        lines = [
            "Origin: Hardflow Tests",
            "Label: Hardflow Tests",
            f"Suite: {suite}",
            f"Codename: {codename or suite}",
            f"Date: {date}",
        ]
        if valid_until:
            lines.append(f"Valid-Until: {valid_until}")
        lines += [f"Architectures: {self.arch}", "Components: main", "SHA256:"]
        listed = [*dist.glob("*/binary-*/Packages*"), *dist.glob("*/Contents-*")]
        for index in sorted(listed):
            data = index.read_bytes()
            rel = index.relative_to(dist).as_posix()
            lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data):>8} {rel}")
        release = ("\n".join(lines) + "\n").encode()
        (dist / "Release").write_bytes(release)
        (dist / "InRelease").write_bytes(clearsign(key or self.key, release))


def _stanza(pkg: FakePackage, deb: Path) -> str:
    data = deb.read_bytes()
    fields = pkg.control()
    fields.pop("Description")
    fields.update(
        {
            "Filename": pkg.filename,
            "Size": str(len(data)),
            "SHA256": hashlib.sha256(data).hexdigest(),
            "Description": f"test package {pkg.name}",
        }
    )
    return control_text(fields)


def build_repo(
    root: Path,
    packages: Sequence[FakePackage],
    suites: Sequence[str] = ("trixie",),
    *,
    key: SigningKey | None = None,
    date: str = DEFAULT_DATE,
    valid_until: str | None = None,
    compressions: Sequence[str] = (".xz", ""),
    arch: str = "amd64",
    contents: bool = False,
    arches: Sequence[str] = (),
) -> FakeRepo:
    """Write the .debs, per-suite ``main/binary-ARCH/Packages{compressions}``, Release, InRelease.

    A package is listed by each suite in its ``suites`` (only suites given here are written).
    ``contents``: also write each suite's ``main/Contents-ARCH.gz`` (listed in the Release).
    ``arches``: several architectures (as Debian's archive has), each ``binary-ARCH`` index
    listing the packages of that architecture and the ``Architecture: all`` ones; without it
    ``arch``'s index lists every package.
    """
    root.mkdir(parents=True, exist_ok=True)
    repo = FakeRepo(root, key or make_signing_key(), tuple(suites), tuple(packages),
                    " ".join(arches) if arches else arch)  # fmt: skip
    for pkg in packages:
        build_deb(root / pkg.filename, pkg.control(), pkg.entries(), conffiles=pkg.conffiles)
    for suite in suites:
        for index_arch in arches or (arch,):
            stanzas = [
                _stanza(pkg, root / pkg.filename)
                for pkg in sorted(packages, key=lambda p: (p.name, p.version))
                if suite in pkg.suites and (not arches or pkg.architecture in (index_arch, "all"))
            ]
            text = "\n".join(stanzas).encode()
            index_dir = repo.dist(suite) / "main" / f"binary-{index_arch}"
            index_dir.mkdir(parents=True, exist_ok=True)
            for suffix in compressions:
                compressed = _compress(text, suffix.lstrip("."))
                (index_dir / f"Packages{suffix}").write_bytes(compressed)
        if contents:
            write_contents(repo, suite, [p for p in packages if suite in p.suites])
        repo.write_release(suite, date=date, valid_until=valid_until)
    return repo


def contents_text(packages: Sequence[FakePackage]) -> bytes:
    """A ``Contents-ARCH`` index of ``packages``: ``path  section/pkg[,section/pkg]`` lines."""
    owners: dict[str, list[str]] = {}
    for pkg in packages:
        for path in [*pkg.files, *pkg.symlinks]:
            owners.setdefault(path, []).append(f"libs/{pkg.name}")
    return "".join(f"{path:<60} {','.join(names)}\n" for path, names in sorted(owners.items())
                   ).encode()  # fmt: skip


def write_contents(
    repo: FakeRepo, suite: str, packages: Sequence[FakePackage], data: bytes | None = None
) -> Path:
    """Write ``main/Contents-ARCH.gz`` of ``suite`` (``data``: the uncompressed text as is).

    Call :meth:`FakeRepo.write_release` afterwards to list (and sign) it.
    """
    path = repo.dist(suite) / "main" / f"Contents-{repo.arch}.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_compress(contents_text(packages) if data is None else data, "gz"))
    return path
