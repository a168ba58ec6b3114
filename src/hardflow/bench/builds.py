"""hardflow's side of the build figures: cold build, warm rebuild, one-package change, one DAG
edited in a baked DAG folder."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from hardflow.build.pipeline import BuildOptions, BuildResult, build
from hardflow.build.platforms import build_image
from hardflow.errors import LockError
from hardflow.lock.fetch import Artifact, Cache
from hardflow.lock.model import Lock, LockedWheel, write_lock
from hardflow.oci.layer import Layer
from hardflow.pypi.index import ACCEPT, IndexFile, parse_project_page, urllib_download
from hardflow.spec import ImageSpec

Download = Callable[[str, dict[str, str]], bytes]


@dataclass(frozen=True)
class TimedBuild:
    seconds: float
    result: BuildResult


def layers_changed(before: Sequence[Layer], after: Sequence[Layer]) -> tuple[str, ...]:
    """Names of the layers whose digest differs (or that exist on one side only)."""
    old = {layer.name: layer.digest for layer in before}
    new = {layer.name: layer.digest for layer in after}
    return tuple(sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n)))


def timed_build(
    spec: ImageSpec,
    lock: Lock,
    lock_path: Path,
    out_dir: Path,
    cache: Cache,
    layer_cache_dir: Path | None = None,
) -> TimedBuild:
    """One build, timed. ``layer_cache_dir``: a layer cache of its own (the bench gives each
    run one, so "warm" means warm from that run's cold build and a changed package's layer is
    never found from an earlier run)."""
    t = time.monotonic()
    options = BuildOptions(out_dir=out_dir, cache=cache, layer_cache_dir=layer_cache_dir)
    result = build(spec, lock, lock_path, options)
    return TimedBuild(time.monotonic() - t, result)


def timed_index_build(
    spec: ImageSpec, lock: Lock, lock_path: Path, out_dir: Path, cache: Cache
) -> TimedBuild:
    """A multi-platform build (one image index), timed, with the shared layer cache."""
    t = time.monotonic()
    result = build_image(spec, lock, lock_path, BuildOptions(out_dir=out_dir, cache=cache))
    return TimedBuild(time.monotonic() - t, result)


def cold_build(
    spec: ImageSpec, lock: Lock, lock_path: Path, work: Path, layer_cache_dir: Path | None = None
) -> TimedBuild:
    """A build from an empty download cache (every .deb and wheel fetched and verified) and an
    empty layer cache (every layer made)."""
    cache_dir = Path(tempfile.mkdtemp(prefix="cold-cache-", dir=work))
    try:
        if layer_cache_dir is not None:
            shutil.rmtree(layer_cache_dir, ignore_errors=True)
        return timed_build(spec, lock, lock_path, work / "hardflow-cold", Cache(cache_dir),
                           layer_cache_dir)  # fmt: skip
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def with_wheel(lock: Lock, wheel: LockedWheel) -> Lock:
    """``lock`` with the wheel of the same project replaced by ``wheel``."""
    name = canonicalize_name(wheel.name)
    if not any(canonicalize_name(w.name) == name for w in lock.wheels):
        raise LockError(f"the lock has no wheel of {wheel.name!r} to replace")
    wheels = tuple(wheel if canonicalize_name(w.name) == name else w for w in lock.wheels)
    return replace(lock, wheels=wheels)


def pick_alternative(current: LockedWheel, files: Sequence[IndexFile]) -> IndexFile:
    """The newest release older than the locked one with a wheel of the same tags.

    Falls back to the oldest newer release; raises LockError when the index has none.
    """
    try:
        _, cur_version, _, cur_tags = parse_wheel_filename(current.filename)
    except ValueError as exc:
        raise LockError(f"{current.filename}: not a wheel file name ({exc})") from None
    candidates: list[tuple[Version, IndexFile]] = []
    for f in files:
        if not f.filename.endswith(".whl") or not f.sha256:
            continue
        try:
            _, version, _, tags = parse_wheel_filename(f.filename)
        except (ValueError, InvalidVersion):
            continue
        if tags == cur_tags and version != cur_version and not version.is_prerelease:
            candidates.append((version, f))
    older = sorted((c for c in candidates if c[0] < cur_version), key=lambda c: c[0])
    newer = sorted((c for c in candidates if c[0] > cur_version), key=lambda c: c[0])
    if older:
        return older[-1][1]
    if newer:
        return newer[0][1]
    raise LockError(
        f"the index lists no other release of {current.name} with a wheel tagged like "
        f"{current.filename}"
    )


def alternative_wheel(
    lock: Lock, name: str, index_url: str, cache: Cache, download: Download = urllib_download
) -> LockedWheel:
    """Another version of ``name``'s wheel as a LockedWheel, fetched into ``cache``."""
    project = canonicalize_name(name)
    current = next((w for w in lock.wheels if canonicalize_name(w.name) == project), None)
    if current is None:
        raise LockError(f"the lock has no wheel of {name!r}")
    page = index_url.rstrip("/") + f"/{project}/"
    chosen = pick_alternative(current, parse_project_page(download(page, {"Accept": ACCEPT}), page))
    data = download(chosen.url, {})
    sha = hashlib.sha256(data).hexdigest()
    if chosen.sha256 and sha != chosen.sha256.lower():
        raise LockError(f"{chosen.filename}: the index says sha256 {chosen.sha256}, got {sha}")
    cache.get(Artifact(chosen.filename, sha, len(data), lambda: [chosen.url]))
    _, version, _, _ = parse_wheel_filename(chosen.filename)
    return LockedWheel(current.name, str(version), chosen.filename, sha, len(data))


def write_changed_lock(lock: Lock, wheel: LockedWheel, directory: Path) -> tuple[Lock, Path]:
    changed = with_wheel(lock, wheel)
    path = directory / "changed.lock.json"
    write_lock(changed, path)
    return changed, path


def dag_edit_builds(
    spec: ImageSpec,
    lock: Lock,
    lock_path: Path,
    dag_source: bytes,
    work: Path,
    cache: Cache,
    layer_cache_dir: Path | None = None,
) -> tuple[TimedBuild, TimedBuild]:
    """The spec with the example DAG baked in (``[image] dags``; the lock stays the same, since
    a DAG folder never changes what is locked), built warm; then the DAG edited and built again.

    The second build is the figure: a DAG edit should rebuild the baked layer alone.
    """
    dags = work / "dag-edit" / "dags"
    shutil.rmtree(dags.parent, ignore_errors=True)
    dags.mkdir(parents=True)
    dag = dags / "example_dag.py"
    dag.write_bytes(dag_source)
    baked = replace(spec, dags=str(dags))
    first = timed_build(baked, lock, lock_path, work / "hardflow-dag", cache, layer_cache_dir)
    dag.write_bytes(dag_source + b"\n# edited by hardflow bench\n")
    edited = timed_build(
        baked, lock, lock_path, work / "hardflow-dag-edited", cache, layer_cache_dir
    )
    return first, edited
