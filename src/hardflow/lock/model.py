"""The lock: every input of an image pinned by version and sha256, plus the spec it came from.

The lock names files, never hosts: a Debian package by its path in the archive pool, a wheel by
its file name. Where they are fetched from is decided at build time from the host's
configuration, so one lock works with any mirror (and a snapshot mirror rebuilds an old one).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hardflow.errors import LockError
from hardflow.fsutil import atomic_write

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedDeb:
    name: str
    version: str
    architecture: str
    suite: str  # the suite whose index listed it (e.g. trixie-security)
    filename: str  # path relative to the archive root: pool/main/...
    sha256: str
    size: int
    source: str  # source package name
    source_version: str

    @property
    def archive(self) -> str:
        """'security' for packages from a *-security suite, else 'main'."""
        return "security" if self.suite.endswith("-security") else "main"


@dataclass(frozen=True)
class LockedWheel:
    name: str  # canonical (PEP 503) project name
    version: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class LockedSuite:
    name: str
    date: str  # the verified Release file's Date field (RFC 2822)
    epoch: int  # the same as a Unix timestamp


@dataclass(frozen=True)
class Lock:
    spec_checksum: str
    suites: tuple[LockedSuite, ...]
    debs: tuple[LockedDeb, ...]
    wheels: tuple[LockedWheel, ...]

    @property
    def source_date_epoch(self) -> int:
        """Default SOURCE_DATE_EPOCH: the newest Release date the lock was made from."""
        return max((s.epoch for s in self.suites), default=0)

    def to_json(self) -> str:
        data: dict[str, Any] = {"lock_version": LOCK_VERSION, **asdict(self)}
        data["debs"] = sorted(data["debs"], key=lambda d: d["name"])
        data["wheels"] = sorted(data["wheels"], key=lambda w: w["name"])
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def parse_lock(text: str, origin: str) -> Lock:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockError(f"{origin}: not valid JSON: {exc}", hint="run `hardflow lock`") from None
    if not isinstance(data, dict) or data.get("lock_version") != LOCK_VERSION:
        found = data.get("lock_version") if isinstance(data, dict) else type(data).__name__
        raise LockError(
            f"{origin}: expected lock_version {LOCK_VERSION}, found {found!r}",
            hint="run `hardflow lock` to write a lock this version understands",
        )
    try:
        return Lock(
            spec_checksum=str(data["spec_checksum"]),
            suites=tuple(LockedSuite(**s) for s in data["suites"]),
            debs=tuple(LockedDeb(**d) for d in data["debs"]),
            wheels=tuple(LockedWheel(**w) for w in data["wheels"]),
        )
    except (KeyError, TypeError) as exc:
        raise LockError(
            f"{origin}: malformed lock ({exc})", hint="run `hardflow lock` to rewrite it"
        ) from None


def read_lock(path: Path) -> Lock:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(f"no lock file at {path}", hint="run `hardflow lock` first") from None
    except OSError as exc:
        raise LockError(f"cannot read lock {path}: {exc.strerror}") from None
    return parse_lock(text, str(path))


def write_lock(lock: Lock, path: Path) -> None:
    atomic_write(path, lock.to_json().encode())


def check_matches(lock: Lock, spec_checksum: str, lock_path: Path) -> None:
    if lock.spec_checksum != spec_checksum:
        raise LockError(
            f"lock {lock_path} was made for another spec "
            f"(lock has {lock.spec_checksum[:19]}…, spec is {spec_checksum[:19]}…)",
            hint="run `hardflow lock` to re-lock after changing the spec",
        )


@dataclass(frozen=True)
class LockDiff:
    added: tuple[tuple[str, str], ...]
    removed: tuple[tuple[str, str], ...]
    changed: tuple[tuple[str, str, str], ...]  # name, old, new

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_locks(old: Lock | None, new: Lock) -> LockDiff:
    def versions(lock: Lock | None) -> dict[str, str]:
        if lock is None:
            return {}
        out = {f"deb:{d.name}": d.version for d in lock.debs}
        out.update({f"pypi:{w.name}": w.version for w in lock.wheels})
        return out

    a, b = versions(old), versions(new)
    return LockDiff(
        added=tuple((k, b[k]) for k in sorted(b.keys() - a.keys())),
        removed=tuple((k, a[k]) for k in sorted(a.keys() - b.keys())),
        changed=tuple((k, a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]),
    )
