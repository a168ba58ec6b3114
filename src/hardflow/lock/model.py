"""The lock: every input of an image pinned by version and sha256, plus the spec it came from.

The lock names files, never hosts: a Debian package by its path in the archive pool, a wheel by
its file name. Where they are fetched from is decided at build time from the host's
configuration, so one lock works with any mirror (and a snapshot mirror rebuilds an old one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

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
    # In a lock of several platforms: the Debian architectures whose closure holds this entry,
    # when that is not what its architecture says (its own; every platform for "all"). Written
    # only when set, so one-platform locks read and write as before.
    platforms: tuple[str, ...] = ()

    @property
    def archive(self) -> str:
        """'security' for packages from a *-security suite, else 'main'."""
        return "security" if self.suite.endswith("-security") else "main"


FIND_LINKS = "find-links"
"""``LockedWheel.origin`` of a wheel taken from the spec's ``[python] find-links`` folders."""


@dataclass(frozen=True)
class LockedWheel:
    name: str  # canonical (PEP 503) project name
    version: str
    filename: str
    sha256: str
    size: int
    # Where the build fetches it: "" = the host's package indexes; FIND_LINKS = a folder of the
    # spec's [python] find-links (by file name: the lock never holds a host path). Written to
    # the lock file only when set, so locks without local wheels read as before.
    origin: str = ""
    # In a lock of several platforms: the Debian architectures that install this wheel when
    # not all of them do (a manylinux wheel is for one). Written only when set.
    platforms: tuple[str, ...] = ()

    @property
    def from_find_links(self) -> bool:
        return self.origin == FIND_LINKS


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
    # The Debian architectures of a multi-platform lock, the primary one first; () = one
    # platform, the spec's debian.architecture (the lock of a spec without 'platforms').
    architectures: tuple[str, ...] = ()

    @property
    def source_date_epoch(self) -> int:
        """Default SOURCE_DATE_EPOCH: the newest Release date the lock was made from."""
        return max((s.epoch for s in self.suites), default=0)

    def for_architecture(self, arch: str) -> Lock:
        """The one-platform lock of ``arch``: its .debs (its own and the shared
        ``Architecture: all`` ones) and its wheels, as a lock of that platform alone would
        list them. A one-platform lock is its own view."""
        if not self.architectures:
            return self
        if arch not in self.architectures:
            raise LockError(
                f"the lock covers {', '.join(self.architectures)}, not {arch}",
                hint="add the platform to the spec's 'platforms' and run `hardflow lock`",
            )
        return Lock(
            spec_checksum=self.spec_checksum,
            suites=self.suites,
            debs=tuple(replace(d, platforms=()) for d in self.debs if deb_serves(d, arch)),
            wheels=tuple(
                replace(w, platforms=()) for w in self.wheels if not w.platforms or
                arch in w.platforms
            ),
        )  # fmt: skip

    def to_json(self) -> str:
        data: dict[str, Any] = {"lock_version": LOCK_VERSION, **asdict(self)}
        if not self.architectures:
            del data["architectures"]
        for deb in data["debs"]:
            if not deb["platforms"]:
                del deb["platforms"]
        data["debs"] = sorted(data["debs"], key=lambda d: (d["name"], d["architecture"]))
        for wheel in data["wheels"]:
            if not wheel["origin"]:
                del wheel["origin"]
            if not wheel["platforms"]:
                del wheel["platforms"]
        data["wheels"] = sorted(data["wheels"], key=lambda w: (w["name"], w["filename"]))
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def deb_serves(deb: LockedDeb, arch: str) -> bool:
    """Is ``deb`` part of the closure of ``arch`` (in a lock of several platforms)?"""
    if deb.platforms:
        return arch in deb.platforms
    return deb.architecture in (arch, "all")


def merge_platforms(
    views: Sequence[tuple[str, Sequence[LockedDeb], Sequence[LockedWheel]]],
) -> tuple[tuple[LockedDeb, ...], tuple[LockedWheel, ...]]:
    """The entries of a multi-platform lock from each architecture's own (arch, debs, wheels),
    primary first: an entry several platforms share (an ``Architecture: all`` package, a pure
    Python wheel) is listed once, with ``platforms`` only where they are not its natural set.
    :meth:`Lock.for_architecture` gives each platform's entries back exactly."""
    arches = tuple(arch for arch, _, _ in views)
    debs: dict[LockedDeb, list[str]] = {}
    wheels: dict[LockedWheel, list[str]] = {}
    for arch, arch_debs, arch_wheels in views:
        for d in arch_debs:
            debs.setdefault(replace(d, platforms=()), []).append(arch)
        for w in arch_wheels:
            wheels.setdefault(replace(w, platforms=()), []).append(arch)

    def deb_entry(d: LockedDeb, used: list[str]) -> LockedDeb:
        natural = arches if d.architecture == "all" else (d.architecture,)
        return d if tuple(used) == natural else replace(d, platforms=tuple(used))

    def wheel_entry(w: LockedWheel, used: list[str]) -> LockedWheel:
        return w if tuple(used) == arches else replace(w, platforms=tuple(used))

    return (
        tuple(sorted((deb_entry(d, u) for d, u in debs.items()),
                     key=lambda d: (d.name, d.architecture))),
        tuple(sorted((wheel_entry(w, u) for w, u in wheels.items()),
                     key=lambda w: (w.name, w.filename))),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reading a lock: every field checked against its schema
#
# A lock is input: it may come from a pull request or another machine. Its strings become
# paths (a digest names a cache file, a wheel's file name a link, a package name a status.d
# record) and URLs, so every field is checked for type and shape before anything uses it, and
# every failure names the file, the entry, the key, what was expected and what was found.
# Unknown keys are refused, as in the spec: a misspelt key must not be silently ignored.

_HEX64 = r"[0-9a-f]{64}"
_SPEC_CHECKSUM = r"sha256:[0-9a-f]{64}"
_DEB_NAME = r"[a-z0-9][a-z0-9+.\-]+"  # Debian policy 5.6.1
_DEB_VERSION = r"(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~\-]*"  # [epoch:]upstream[-revision]
_DEB_ARCH = r"[a-z0-9][a-z0-9\-]*"
_SUITE = r"[A-Za-z0-9][A-Za-z0-9.\-]*"  # trixie, trixie-security: one URL path segment
_POOL_PART = r"[A-Za-z0-9][A-Za-z0-9.+~_%\-]*"  # no "", "." or ".." component, no "/"
_POOL_FILE = rf"pool/(?:{_POOL_PART}/)+{_POOL_PART}"
_PYPI_NAME = r"[a-z0-9]+(?:-[a-z0-9]+)*"  # canonical (PEP 503)
_DATE = r"[^\x00-\x1f\x7f]+"  # one printable line

_TOP_KEYS = ("lock_version", "spec_checksum", "suites", "debs", "wheels", "architectures")
_SUITE_KEYS = tuple(f.name for f in fields(LockedSuite))
_DEB_KEYS = tuple(f.name for f in fields(LockedDeb))
_WHEEL_KEYS = tuple(f.name for f in fields(LockedWheel))
_REWRITE = "run `hardflow lock` to rewrite the lock"


def _describe(value: object) -> str:
    kind = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        list: "array",
        dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


class _Object:
    """One JSON object of the lock, read key by key against its schema."""

    def __init__(self, origin: str, where: str, value: object, keys: Sequence[str]) -> None:
        self.origin = origin
        self.where = where
        if not isinstance(value, dict):
            raise LockError(
                f"{origin}: {where}: expected an object, found {_describe(value)}", hint=_REWRITE
            )
        self.data: dict[str, object] = value
        unknown = sorted(str(k) for k in value if k not in keys)
        if unknown:
            raise LockError(
                f"{origin}: {where}: unknown key {unknown[0]!r}",
                hint=f"allowed keys here: {', '.join(keys)}; {_REWRITE}",
            )

    def fail(self, key: str, expected: str, found: object) -> LockError:
        return LockError(
            f"{self.origin}: {self.where}: key {key!r}: expected {expected}, "
            f"found {_describe(found)}",
            hint=_REWRITE,
        )

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str) -> object:
        if key not in self.data:
            raise LockError(f"{self.origin}: {self.where}: missing key {key!r}", hint=_REWRITE)
        return self.data[key]

    def string(self, key: str, pattern: str, expected: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise self.fail(key, expected, value)
        return value

    def integer(self, key: str, expected: str = "a non-negative integer") -> int:
        value = self._get(key)
        # bool is an int subclass in Python; JSON's true is not a size
        if type(value) is not int or value < 0:
            raise self.fail(key, expected, value)
        return value

    def array(self, key: str) -> list[object]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self.fail(key, "an array", value)
        return value


def _label(kind: str, index: int, value: object) -> str:
    """``debs[3] (libc6)``: the entry's position and, when it has a plain one, its name."""
    name = value.get("name") if isinstance(value, dict) else None
    if isinstance(name, str) and name.isprintable() and len(name) <= 80:
        return f"{kind}[{index}] ({name})"
    return f"{kind}[{index}]"


def _suite(origin: str, index: int, value: object) -> LockedSuite:
    entry = _Object(origin, _label("suites", index, value), value, _SUITE_KEYS)
    return LockedSuite(
        name=entry.string("name", _SUITE, "a suite name such as 'trixie-security'"),
        date=entry.string("date", _DATE, "a Release date (one line of text)"),
        epoch=entry.integer("epoch", "a Unix timestamp (a non-negative integer)"),
    )


def _deb(origin: str, index: int, value: object) -> LockedDeb:
    entry = _Object(origin, _label("debs", index, value), value, _DEB_KEYS)
    return LockedDeb(
        name=entry.string("name", _DEB_NAME, "a Debian package name"),
        version=entry.string("version", _DEB_VERSION, "a Debian version"),
        architecture=entry.string("architecture", _DEB_ARCH, "a Debian architecture"),
        suite=entry.string("suite", _SUITE, "a suite name such as 'trixie-security'"),
        filename=entry.string(
            "filename",
            _POOL_FILE,
            "a path below the archive root ('pool/...', no '..' or empty components)",
        ),
        sha256=entry.string("sha256", _HEX64, "a sha256 digest (64 lowercase hex digits)"),
        size=entry.integer("size"),
        source=entry.string("source", _DEB_NAME, "a Debian source package name"),
        source_version=entry.string("source_version", _DEB_VERSION, "a Debian version"),
        platforms=_platforms(entry),
    )


def _wheel(origin: str, index: int, value: object) -> LockedWheel:
    entry = _Object(origin, _label("wheels", index, value), value, _WHEEL_KEYS)
    name = entry.string("name", _PYPI_NAME, "a canonical (PEP 503) project name")
    version = entry.string("version", r"[A-Za-z0-9][A-Za-z0-9.+!_\-]*", "a PEP 440 version")
    try:
        parsed_version = Version(version)
    except InvalidVersion:
        raise entry.fail("version", "a PEP 440 version", version) from None
    expected = f"a wheel file name of {name} {version} (a plain name, no '/')"
    filename = entry.string("filename", r"[A-Za-z0-9][A-Za-z0-9.+!_\-]*\.whl", expected)
    try:
        project, file_version, _, _ = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        raise entry.fail("filename", expected, filename) from None
    if project != name or file_version != parsed_version:
        raise entry.fail("filename", expected, filename)
    origin = ""
    if entry.has("origin"):  # absent: the package indexes
        origin = entry.string(
            "origin", re.escape(FIND_LINKS), f"{FIND_LINKS!r} (or no 'origin' key: an index)"
        )
    return LockedWheel(
        name=name,
        version=version,
        filename=filename,
        sha256=entry.string("sha256", _HEX64, "a sha256 digest (64 lowercase hex digits)"),
        size=entry.integer("size"),
        origin=origin,
        platforms=_platforms(entry),
    )


def _platforms(entry: _Object) -> tuple[str, ...]:
    """An entry's optional ``platforms``: Debian architectures, each once (absent: ())."""
    if not entry.has("platforms"):
        return ()
    return _arch_list(entry, "platforms")


def _arch_list(entry: _Object, key: str) -> tuple[str, ...]:
    values = entry.array(key)
    expected = "a non-empty array of distinct Debian architectures"
    if not values or not all(isinstance(v, str) and re.fullmatch(_DEB_ARCH, v) for v in values):
        raise entry.fail(key, expected, values)
    if len(set(values)) != len(values):
        raise entry.fail(key, expected, values)
    return tuple(str(v) for v in values)


def parse_lock(text: str, origin: str) -> Lock:
    """The lock in ``text`` (read from ``origin``), every field checked; LockError otherwise."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or a number too long
        raise LockError(f"{origin}: not valid JSON: {exc}", hint="run `hardflow lock`") from None
    version = data.get("lock_version") if isinstance(data, dict) else None
    if type(version) is not int or version != LOCK_VERSION:
        found = _describe(version) if isinstance(data, dict) else _describe(data)
        raise LockError(
            f"{origin}: expected an object with lock_version {LOCK_VERSION}, found {found}",
            hint="run `hardflow lock` to write a lock this version understands",
        )
    top = _Object(origin, "top level", data, _TOP_KEYS)
    lock = Lock(
        spec_checksum=top.string(
            "spec_checksum", _SPEC_CHECKSUM, "'sha256:' and 64 lowercase hex digits"
        ),
        suites=tuple(_suite(origin, i, v) for i, v in enumerate(top.array("suites"))),
        debs=tuple(_deb(origin, i, v) for i, v in enumerate(top.array("debs"))),
        wheels=tuple(_wheel(origin, i, v) for i, v in enumerate(top.array("wheels"))),
        architectures=_arch_list(top, "architectures") if top.has("architectures") else (),
    )
    _check_platforms(lock, origin)
    return lock


def _check_platforms(lock: Lock, origin: str) -> None:
    """Every entry's platforms are the lock's, and each platform holds a name once."""
    arches = lock.architectures
    entries: list[tuple[str, Sequence[LockedDeb | LockedWheel]]] = [
        ("debs", lock.debs), ("wheels", lock.wheels),
    ]  # fmt: skip
    for kind, items in entries:
        for i, item in enumerate(items):
            extra = [a for a in item.platforms if a not in arches]
            if extra:
                raise LockError(
                    f"{origin}: {kind}[{i}] ({item.name}): key 'platforms': expected "
                    f"architectures of the lock ({', '.join(arches) or 'none: it has one'}), "
                    f"found {extra[0]!r}",
                    hint=_REWRITE,
                )
    for arch in arches or ("",):
        view = lock.for_architecture(arch) if arch else lock
        for kind, names in (("debs", [d.name for d in view.debs]),
                            ("wheels", [w.name for w in view.wheels])):  # fmt: skip
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    where = f" for {arch}" if arch else ""
                    raise LockError(
                        f"{origin}: {kind}: expected each name once{where}, found {name!r} twice",
                        hint=_REWRITE,
                    )
                seen.add(name)


def read_lock(path: Path) -> Lock:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(f"no lock file at {path}", hint="run `hardflow lock` first") from None
    except OSError as exc:
        raise LockError(f"cannot read lock {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LockError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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
    """What moved from ``old`` to ``new``, by ``deb:NAME``/``pypi:NAME``. For a lock of several
    platforms, each platform is compared with its own view of ``old`` (a one-platform ``old``
    is the primary's); a difference every platform shares is named once, any other as
    ``deb:NAME [ARCH]``."""
    arches = new.architectures or ("",)
    per_arch: list[tuple[str, LockDiff]] = []
    for arch in arches:
        before: Lock | None = old
        if old is not None and arch and old.architectures:
            before = old.for_architecture(arch) if arch in old.architectures else None
        elif old is not None and arch and arch != arches[0]:
            before = None  # a platform the one-platform lock did not have
        per_arch.append((arch, _diff_one(before, new.for_architecture(arch) if arch else new)))
    if len(per_arch) == 1:
        return per_arch[0][1]

    def merged(kind: str) -> tuple[Any, ...]:
        items = [(arch, getattr(diff, kind)) for arch, diff in per_arch]
        shared = set.intersection(*(set(found) for _, found in items))
        out = sorted(shared)
        for arch, found in items:
            out += [(f"{e[0]} [{arch}]", *e[1:]) for e in found if e not in shared]
        return tuple(sorted(out))

    return LockDiff(merged("added"), merged("removed"), merged("changed"))


def _diff_one(old: Lock | None, new: Lock) -> LockDiff:
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
