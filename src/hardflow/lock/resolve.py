"""The ``lock`` stage: spec → verified indices → Debian closure + Python set → :class:`Lock`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hardflow.debian.repo import SuiteIndex, load_suite
from hardflow.debian.resolve import resolve_closure
from hardflow.lock.fetch import http_get
from hardflow.lock.mirrors import Mirrors, resolve_mirrors
from hardflow.lock.model import (
    Lock,
    LockDiff,
    LockedDeb,
    LockedSuite,
    diff_locks,
    read_lock,
    write_lock,
)
from hardflow.progress import NullProgress, Progress
from hardflow.pypi.index import IndexConfig, index_config_from_host
from hardflow.pypi.resolve import resolve
from hardflow.spec import ImageSpec


@dataclass(frozen=True)
class LockOutcome:
    lock: Lock
    diff: LockDiff
    path: Path
    up_to_date: bool  # the existing lock already matched and --update was not asked
    mirrors: str


def load_indices(
    spec: ImageSpec, mirrors: Mirrors, progress: Progress
) -> list[SuiteIndex]:
    deb = spec.debian
    task = progress.task("verify Debian indices", total=len(deb.suites))
    indices = []
    for suite in deb.suites:
        indices.append(
            load_suite(
                mirrors.for_suite(suite),
                suite,
                deb.components,
                deb.architecture,
                Path(deb.keyring),
                http_get,
            )
        )
        task.advance()
    task.finish()
    return indices


def resolve_debs(spec: ImageSpec, indices: list[SuiteIndex]) -> tuple[LockedDeb, ...]:
    records = resolve_closure(
        indices, spec.debian.packages, set(spec.debian.excludes), spec.debian.architecture
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


def make_lock(
    spec: ImageSpec,
    lock_path: Path,
    update: bool = False,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
    index_config: IndexConfig | None = None,
) -> LockOutcome:
    progress = progress or NullProgress()
    previous: Lock | None = read_lock(lock_path) if lock_path.is_file() else None
    checksum = spec.lock_checksum()
    if previous is not None and previous.spec_checksum == checksum and not update:
        return LockOutcome(previous, diff_locks(previous, previous), lock_path, True, "")

    mirrors = resolve_mirrors(spec.debian, env)
    indices = load_indices(spec, mirrors, progress)
    debs = resolve_debs(spec, indices)

    task = progress.task("resolve Python requirements (uv)", total=None)
    wheels = resolve(
        spec.python.requirements,
        spec.python.version,
        spec.python.glibc,
        spec.debian.architecture,
        index_config or index_config_from_host(),
        upgrade=update,
        previous=previous.wheels if previous else (),
        excludes=spec.python.excludes,
    )
    task.finish()

    lock = Lock(
        spec_checksum=checksum,
        suites=tuple(LockedSuite(i.suite, i.date, i.epoch) for i in indices),
        debs=debs,
        wheels=wheels,
    )
    write_lock(lock, lock_path)
    return LockOutcome(lock, diff_locks(previous, lock), lock_path, False, mirrors.origin)
