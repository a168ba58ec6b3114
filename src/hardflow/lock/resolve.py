"""The ``lock`` stage: spec → verified indices → Debian closure + Python set → :class:`Lock`.

Also the two variations on it: ``lock --update --only NAME`` (move named entries, keep every
other pin where it still fits) and the lock of a one-off build (``build --with``), kept in the
download cache and reused while its spec is the same (:func:`ensure_lock`).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from hardflow.debian.repo import SuiteIndex, load_suite_arches
from hardflow.debian.resolve import resolve_closure
from hardflow.errors import LockError
from hardflow.lock.fetch import default_cache_dir, http_get
from hardflow.lock.mirrors import Mirrors, resolve_mirrors
from hardflow.lock.model import (
    Lock,
    LockDiff,
    LockedDeb,
    LockedSuite,
    LockedWheel,
    diff_locks,
    merge_platforms,
    read_lock,
    write_lock,
)
from hardflow.progress import NullProgress, Progress
from hardflow.pypi.checks import check_hashes
from hardflow.pypi.index import (
    IndexConfig,
    files_with_digests,
    index_config_from_host,
    urllib_download,
)
from hardflow.pypi.resolve import resolve, target_tags, wheel_rank
from hardflow.spec import ImageSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockOutcome:
    lock: Lock
    diff: LockDiff
    path: Path
    up_to_date: bool  # the existing lock already matched and --update was not asked
    mirrors: str  # where the Debian indices came from ("" when they were not read)
    only: tuple[str, ...] = ()  # --update --only: the entries asked for, as "deb:x"/"pypi:y"

    @property
    def moved_along(self) -> tuple[str, ...]:
        """With ``only``: entries that changed although not named (the update forced them)."""
        if not self.only:
            return ()
        names = [n for n, _ in self.diff.added] + [n for n, _ in self.diff.removed]
        names += [n for n, _, _ in self.diff.changed]
        # "pypi:x [arm64]": an entry of one platform of a multi-platform lock
        return tuple(sorted(n for n in set(names) if n.split(" [", 1)[0] not in self.only))


def load_indices(
    spec: ImageSpec, mirrors: Mirrors, progress: Progress
) -> dict[str, list[SuiteIndex]]:
    """The verified ``Packages`` indices of every suite, for each of the spec's architectures
    (``binary-ARCH``; one signed Release per suite covers them all)."""
    deb = spec.debian
    arches = spec.architectures
    task = progress.task("verify Debian indices", total=len(deb.suites))
    indices: dict[str, list[SuiteIndex]] = {arch: [] for arch in arches}
    for suite in deb.suites:
        found = load_suite_arches(
            mirrors.for_suite(suite), suite, deb.components, arches, Path(deb.keyring), http_get
        )
        for arch in arches:
            indices[arch].append(found[arch])
        task.advance()
    task.finish()
    return indices


def resolve_debs(
    spec: ImageSpec, indices: list[SuiteIndex], prefer: Mapping[str, str] | None = None
) -> tuple[LockedDeb, ...]:
    records = resolve_closure(
        indices,
        spec.debian.packages,
        set(spec.debian.excludes),
        spec.debian.architecture,
        prefer=prefer,
    )
    return tuple(
        LockedDeb(
            name=r.name,
            version=r.version,
            architecture=r.architecture,
            suite=r.suite,
            filename=r.filename,
            sha256=r.sha256,
            size=r.size,
            source=r.source,
            source_version=r.source_version,
        )
        for r in records
    )


# --------------------------------------------------------------------------- --update --only


@dataclass(frozen=True)
class OnlyTargets:
    """The lock entries ``--update --only`` frees: Debian package names, canonical wheel names."""

    debs: frozenset[str] = frozenset()
    wheels: frozenset[str] = frozenset()

    @property
    def keys(self) -> tuple[str, ...]:
        """As :func:`diff_locks` names entries: ``deb:NAME`` and ``pypi:NAME``."""
        return tuple(sorted({f"deb:{n}" for n in self.debs} | {f"pypi:{n}" for n in self.wheels}))


def match_only(lock: Lock, names: Sequence[str], lock_path: Path) -> OnlyTargets:
    """The entries of ``lock`` that ``names`` designate (Debian names, or PEP 503 names).

    A name may match both a Debian package and a Python distribution: both move. A name that
    matches neither is a LockError that suggests the closest names of the lock.
    """
    debs = {d.name for d in lock.debs}
    wheels = {w.name for w in lock.wheels}
    found_debs: set[str] = set()
    found_wheels: set[str] = set()
    for raw in names:
        name = raw.strip()
        deb, wheel = name.lower(), canonicalize_name(name)
        if deb in debs:
            found_debs.add(deb)
        if wheel in wheels:
            found_wheels.add(wheel)
        if deb not in debs and wheel not in wheels:
            close = difflib.get_close_matches(wheel, sorted(debs | wheels), n=3, cutoff=0.6)
            raise LockError(
                f"--only {name!r}: {lock_path} has no Debian package or Python distribution "
                "of that name",
                hint=(f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
                + "--only names an entry of the lock (see `hardflow lock --json` for its size, "
                "or the lock file itself)",
            )
    return OnlyTargets(frozenset(found_debs), frozenset(found_wheels))


# --------------------------------------------------------------------------- making a lock


def make_lock(
    spec: ImageSpec,
    lock_path: Path,
    update: bool = False,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
    index_config: IndexConfig | None = None,
    only: Sequence[str] = (),
    prefer: Lock | None = None,
) -> LockOutcome:
    """Resolve ``spec`` into the lock at ``lock_path`` (written atomically) unless it matches.

    ``update``: re-resolve everything to the newest versions. ``only`` (with ``update`` and an
    existing lock): move just those entries, keeping every other pin where it still fits.
    ``prefer``: pins to keep where they fit when there is no lock yet (a lock for a spec
    derived from another, so the two share their versions).
    """
    previous: Lock | None = read_lock(lock_path) if lock_path.is_file() else None
    return _make(spec, lock_path, previous, update, progress or NullProgress(), env,
                 index_config, only, prefer)  # fmt: skip


def _make(
    spec: ImageSpec,
    lock_path: Path,
    previous: Lock | None,
    update: bool,
    progress: Progress,
    env: Mapping[str, str] | None,
    index_config: IndexConfig | None,
    only: Sequence[str],
    prefer: Lock | None,
) -> LockOutcome:
    checksum = spec.lock_checksum()
    targets: OnlyTargets | None = None
    if only:
        if not update:
            raise LockError("--only moves named entries of the lock: it needs --update")
        if previous is None:
            raise LockError(
                f"--update --only needs an existing lock, and {lock_path} does not exist",
                hint="run `hardflow lock` first",
            )
        targets = match_only(previous, only, lock_path)
    elif previous is not None and previous.spec_checksum == checksum and not update:
        return LockOutcome(previous, diff_locks(previous, previous), lock_path, True, "")
    pins = previous if previous is not None else prefer
    same_spec = previous is not None and previous.spec_checksum == checksum

    # Python first: its failures (no wheel, a hash) come before the Debian index downloads
    if targets is not None and previous is not None and same_spec and not targets.wheels:
        wheels = previous.wheels  # nothing to move on the Python side
    else:
        wheels = _lock_all_wheels(spec, pins, update, targets, progress, index_config)
    suites, debs, origin = _lock_debs(spec, previous, pins, update, targets, same_spec,
                                      progress, env)  # fmt: skip
    arches = spec.architectures
    lock = Lock(spec_checksum=checksum, suites=suites, debs=debs, wheels=wheels,
                architectures=arches if len(arches) > 1 else ())  # fmt: skip
    write_lock(lock, lock_path)
    return LockOutcome(
        lock, diff_locks(previous, lock), lock_path, False, origin,
        only=targets.keys if targets else (),
    )  # fmt: skip


def _view(lock: Lock | None, arch: str) -> Lock | None:
    """``lock``'s entries for ``arch``: its view in a multi-platform lock (None when it lacks
    the platform); a one-platform lock as it is (its versions are good preferences)."""
    if lock is None or not lock.architectures:
        return lock
    return lock.for_architecture(arch) if arch in lock.architectures else None


def _lock_debs(
    spec: ImageSpec,
    previous: Lock | None,
    pins: Lock | None,
    update: bool,
    targets: OnlyTargets | None,
    same_spec: bool,
    progress: Progress,
    env: Mapping[str, str] | None,
) -> tuple[tuple[LockedSuite, ...], tuple[LockedDeb, ...], str]:
    """The suites and Debian closure of the lock, and where the indices came from.

    One closure per platform, from the same verified indices; the later platforms prefer the
    primary's versions, so the platforms move together where the archive lets them."""
    if targets is not None and previous is not None and same_spec and not targets.debs:
        return previous.suites, previous.debs, ""  # nothing to move on the Debian side
    mirrors = resolve_mirrors(spec.debian, env)
    indices = load_indices(spec, mirrors, progress)
    views: list[tuple[str, tuple[LockedDeb, ...], tuple[LockedWheel, ...]]] = []
    for arch in spec.architectures:
        before, held = _view(previous, arch), _view(pins, arch)
        if targets is not None and before is not None:
            prefer = {d.name: d.version for d in before.debs if d.name not in targets.debs}
        elif held is not None and previous is None and not update:
            prefer = {d.name: d.version for d in held.debs}
        else:
            prefer = {}
        if views:  # the primary's versions where they fit
            prefer.update({d.name: d.version for d in views[0][1]})
        debs = resolve_debs(spec.for_architecture(arch), indices[arch], prefer)
        views.append((arch, debs, ()))
    primary = indices[spec.architectures[0]]
    suites = tuple(LockedSuite(i.suite, i.date, i.epoch) for i in primary)
    if len(views) == 1:
        return suites, views[0][1], mirrors.origin
    return suites, merge_platforms(views)[0], mirrors.origin


def _lock_all_wheels(
    spec: ImageSpec,
    pins: Lock | None,
    update: bool,
    targets: OnlyTargets | None,
    progress: Progress,
    index_config: IndexConfig | None,
) -> tuple[LockedWheel, ...]:
    """The Python set of every platform: the primary's as asked; each other platform's
    prefers the primary's versions (then its own earlier pins), so they move together."""
    arches = spec.architectures
    if len(arches) == 1:  # a multi-platform lock's pins: this platform's
        return _lock_wheels(spec, _view(pins, arches[0]), update, targets, progress, index_config)
    views: list[tuple[str, tuple[LockedDeb, ...], tuple[LockedWheel, ...]]] = []
    for arch in arches:
        view, held = spec.for_architecture(arch), _view(pins, arch)
        if not views:
            wheels = _lock_wheels(view, held, update, targets, progress, index_config, arch)
        else:
            primary = {w.name: w for w in views[0][2]}
            own = {w.name: w for w in (held.wheels if held is not None else ())}
            prefer = Lock(spec_checksum="", suites=(), debs=(),
                          wheels=tuple({**own, **primary}.values()))  # fmt: skip
            wheels = _lock_wheels(view, prefer, False, targets, progress, index_config, arch,
                                  keep=held)  # fmt: skip
        views.append((arch, (), wheels))
    return merge_platforms(views)[1]


def _lock_wheels(
    spec: ImageSpec,
    pins: Lock | None,
    update: bool,
    targets: OnlyTargets | None,
    progress: Progress,
    index_config: IndexConfig | None,
    label: str = "",
    keep: Lock | None = None,
) -> tuple[LockedWheel, ...]:
    """The Python set: uv's resolution, one wheel each, checked against the spec's hashes.

    ``keep`` (default ``pins``): with ``targets``, the entries whose version did not move stay
    byte for byte what they were there."""
    py = spec.python
    arch = spec.debian.architecture
    config = index_config or index_config_from_host()
    title = "resolve Python requirements (uv)" + (f" for {label}" if label else "")
    task = progress.task(title, total=None)
    wheels = resolve(
        py.requirements,
        py.version,
        py.glibc,
        spec.debian.architecture,
        config,
        upgrade=update and targets is None,
        previous=pins.wheels if pins else (),
        excludes=py.excludes,
        find_links=py.find_links,
        upgrade_packages=sorted(targets.wheels) if targets else (),
    )
    task.finish()
    kept_from = keep if keep is not None else pins
    if targets is not None and kept_from is not None:
        # an entry whose version did not move stays byte for byte what it was (if it is a
        # wheel for this platform: the pins of another one may be offered)
        ranks = {t: i for i, t in enumerate(target_tags(py.version, py.glibc, arch))}
        kept = {
            (w.name, w.version): w
            for w in kept_from.wheels
            if w.name not in targets.wheels and wheel_rank(w.filename, ranks) is not None
        }
        wheels = tuple(kept.get((w.name, w.version), w) for w in wheels)  # fmt: skip
    check_hashes(
        wheels,
        py.hashes,
        py.requirements_file,
        f"CPython {py.version}, glibc {py.glibc}, {spec.debian.architecture}",
        identify=lambda name, digests: files_with_digests(config, name, digests, _quick_get),
    )
    return wheels


def _quick_get(url: str, headers: Mapping[str, str]) -> bytes:
    """One index page for a failure's hint: a short timeout, no retries."""
    return urllib_download(url, headers, timeout=15.0)


# --------------------------------------------------------------------------- one-off builds


def derived_lock_path(spec: ImageSpec, cache_root: Path | None = None) -> Path:
    """Where the lock of a one-off spec (``build --with/--debian``) lives: in the download
    cache, named by the spec and its lock checksum, so the same command finds it again."""
    root = cache_root or default_cache_dir()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", spec.name.replace("/", "_"))
    tag = re.sub(r"[^A-Za-z0-9._-]", "_", spec.tag)
    digest = spec.lock_checksum().removeprefix("sha256:")[:16]
    return root / "locks" / f"{name}-{tag}-{digest}.lock.json"


def ensure_lock(
    spec: ImageSpec,
    lock_path: Path,
    progress: Progress | None = None,
    *,
    prefer: Lock | None = None,
    env: Mapping[str, str] | None = None,
    index_config: IndexConfig | None = None,
) -> LockOutcome:
    """The lock at ``lock_path`` when it was made for ``spec`` (no network), else a new one.

    For locks hardflow keeps for itself (:func:`derived_lock_path`): an unreadable one is
    made again rather than reported. ``prefer``: the pins to keep where they fit (the lock of
    the spec this one derives from).
    """
    existing: Lock | None = None
    if lock_path.is_file():
        try:
            existing = read_lock(lock_path)
        except LockError as exc:
            log.warning("making %s again: %s", lock_path, exc.message)
    if existing is not None and existing.spec_checksum == spec.lock_checksum():
        return LockOutcome(existing, diff_locks(existing, existing), lock_path, True, "")
    return _make(spec, lock_path, None, False, progress or NullProgress(), env, index_config,
                 (), prefer)  # fmt: skip
