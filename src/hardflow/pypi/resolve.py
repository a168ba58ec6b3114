"""Locking the Python set: uv resolves, we pick one wheel per package for the target.

uv (``uv pip compile --format pylock.toml``) resolves the requirements for the *target*
interpreter and platform, binary wheels only, and lists every wheel of each pinned version that
fits the platform. Then :func:`select_wheel` picks the single most specific one with
``packaging.tags``, in the order the target interpreter itself would prefer.

Previous pins are kept (unless ``upgrade``) by writing them as the existing output file:
uv prefers the versions it finds in the ``-o`` file it is about to rewrite; ``upgrade_packages``
frees just those (uv's ``--upgrade-package``), the others move only when they must.

Local wheel folders (the spec's ``[python] find-links``) are offered to uv next to the host's
indexes; a wheel picked from one is hashed here and locked by file name with the origin
``find-links``, never by its host path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from hardflow.errors import ResolveError
from hardflow.lock.model import FIND_LINKS, LockedWheel
from hardflow.pypi.checks import no_wheel_error, sdist_only_error
from hardflow.pypi.index import IndexConfig, uv_binary

log = logging.getLogger(__name__)

# Legacy manylinux aliases (PEP 600): the glibc minor each one stands for.
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
# The oldest glibc each architecture has manylinux tags for.
_MIN_GLIBC_MINOR = {"x86_64": 5, "i686": 5, "aarch64": 17, "ppc64le": 17, "s390x": 17}


def normalize_arch(arch: str) -> str:
    """Python's machine name for a Debian or Python architecture name."""
    return _ARCH_ALIASES.get(arch, arch)


def _parse_version(text: str, what: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    if not m:
        raise ResolveError(f"{what}: expected MAJOR.MINOR (like 3.13 or 2.41), found {text!r}")
    return int(m[1]), int(m[2])


def manylinux_platforms(glibc: str, arch: str) -> list[str]:
    """Platform tags for a glibc, newest first, with the legacy aliases; never ``linux_*``."""
    major, minor = _parse_version(glibc, "glibc version")
    machine = normalize_arch(arch)
    if major != 2:
        raise ResolveError(f"glibc version: expected 2.x, found {glibc!r}")
    out: list[str] = []
    for m in range(minor, _MIN_GLIBC_MINOR.get(machine, 17) - 1, -1):
        out.append(f"manylinux_2_{m}_{machine}")
        if m in _LEGACY_MANYLINUX:
            out.append(f"{_LEGACY_MANYLINUX[m]}_{machine}")
    return out


def target_tags(python_version: str, glibc: str, arch: str) -> tuple[Tag, ...]:
    """The wheel tags the target CPython accepts, most specific first.

    ``cp313-cp313-<plat>``, then ``cp313-abi3-<plat>`` and older ``cp3X-abi3``, ``cp313-none``,
    then ``py3*-none-<plat>`` and finally the pure ``*-none-any`` tags.
    """
    major, minor = _parse_version(python_version, "python version")
    platforms = manylinux_platforms(glibc, arch)
    abi = f"cp{major}{minor}"
    tags = list(cpython_tags((major, minor), abis=[abi], platforms=platforms))
    tags += compatible_tags((major, minor), interpreter=abi, platforms=platforms)
    return tuple(dict.fromkeys(tags))


def wheel_rank(filename: str, ranks: dict[Tag, int]) -> tuple[int, int] | None:
    """(tag rank, -build number) of a wheel, lower is better; None if it does not fit."""
    try:
        _, _, build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    best = min((ranks[t] for t in tags if t in ranks), default=None)
    if best is None:
        return None
    return best, -(build[0] if build else 0)


def select_wheel(name: str, filenames: Sequence[str], tags: Sequence[Tag]) -> str:
    """The single best wheel of ``filenames`` for the target ``tags``; ResolveError if none."""
    ranks = {tag: i for i, tag in enumerate(tags)}
    ranked = [(r, f) for f in filenames if (r := wheel_rank(f, ranks)) is not None]
    if not ranked:
        available = ", ".join(sorted(filenames)) or "no wheel files at all"
        raise ResolveError(
            f"{name}: no binary wheel fits the target ({tags[0]} and compatible); "
            f"available: {available}",
            hint="pin another version that ships a compatible wheel, or drop the requirement",
        )
    return min(ranked)[1]


# --------------------------------------------------------------------------- pylock.toml


@dataclass(frozen=True)
class PylockWheel:
    filename: str
    sha256: str
    size: int
    location: str = ""  # the url or path uv wrote


@dataclass(frozen=True)
class PylockPackage:
    name: str
    version: str
    wheels: tuple[PylockWheel, ...]
    has_sdist: bool


def _wheel_filename(entry: dict[str, Any]) -> str:
    if entry.get("name"):
        return str(entry["name"])
    location = str(entry.get("url") or entry.get("path") or "")
    return unquote(urlparse(location).path.rsplit("/", 1)[-1])


def parse_pylock(text: str, origin: str = "pylock.toml") -> list[PylockPackage]:
    """Packages of a PEP 751 lock file (the subset uv writes for a platform-specific resolve)."""
    try:
        data = tomllib.loads(text)
        out = []
        for pkg in data.get("packages", []):
            wheels = tuple(
                PylockWheel(
                    filename=_wheel_filename(w),
                    sha256=str(w.get("hashes", {}).get("sha256", "")),
                    size=int(w.get("size", 0) or 0),
                    location=str(w.get("url") or w.get("path") or ""),
                )
                for w in pkg.get("wheels", [])
            )
            out.append(
                PylockPackage(
                    name=canonicalize_name(str(pkg["name"])),
                    version=str(pkg.get("version", "")),
                    wheels=wheels,
                    has_sdist="sdist" in pkg,
                )
            )
        return out
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResolveError(f"{origin}: cannot read uv's output ({exc})") from None


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these values


def preferences_txt(previous: Sequence[LockedWheel]) -> str:
    """The previous pins as a requirements.txt, which uv reads as preferences when it is the
    existing output file. (A pylock.toml without wheel entries is taken as "no wheels" by uv.)"""
    return "".join(f"{w.name}=={w.version}\n" for w in sorted(previous, key=lambda w: w.name))


def _local_file(location: str) -> Path | None:
    """The local file a pylock wheel entry names (``file://`` URL or path), None if remote."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and location:
        return Path(location)
    return None


def _find_links_file(wheel: PylockWheel, folders: Sequence[str]) -> Path | None:
    """The file of ``wheel`` when it comes from one of the spec's find-links ``folders``."""
    local = _local_file(wheel.location)
    if local is None or not folders:
        return None
    for folder in folders:
        base = Path(folder).resolve()
        candidate = local if local.is_absolute() else base / local
        if candidate.name == wheel.filename and candidate.parent.resolve() == base:
            return base / wheel.filename
    return None


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ResolveError(f"cannot read local wheel {path}: {exc.strerror or exc}") from None
    return digest.hexdigest(), size


def pick_wheels(
    packages: Sequence[PylockPackage],
    tags: Sequence[Tag],
    find_links: Sequence[str] = (),
    target: tuple[str, str] = ("", ""),
    direct: Collection[str] = (),
) -> tuple[LockedWheel, ...]:
    """One LockedWheel per resolved package, sorted by name.

    A wheel taken from one of the ``find_links`` folders is hashed here (uv's digest must
    agree) and locked with the origin ``find-links``. ``target`` (python version, platform)
    and ``direct`` (the direct requirements' names) shape the no-wheel message.
    """
    out = []
    for pkg in packages:
        by_name = {w.filename: w for w in pkg.wheels}
        if not by_name:
            if pkg.has_sdist:
                raise sdist_only_error(pkg.name, pkg.version, *target, direct=direct)
            raise ResolveError(
                f"{pkg.name} {pkg.version}: uv listed no files for it; a binary wheel is required",
                hint="pin another version that ships a wheel, or drop the requirement",
            )
        chosen = by_name[select_wheel(f"{pkg.name} {pkg.version}", list(by_name), tags)]
        local = _find_links_file(chosen, find_links)
        if local is not None:
            sha256, size = _hash_file(local)
            if chosen.sha256 and chosen.sha256 != sha256:
                raise ResolveError(
                    f"{local}: changed while it was locked (uv read sha256 {chosen.sha256}, "
                    f"now {sha256})",
                    hint="run `hardflow lock` again once the wheel folder is stable",
                )
            chosen = replace(chosen, sha256=sha256, size=size)
        if not re.fullmatch(r"[0-9a-f]{64}", chosen.sha256):
            raise ResolveError(f"{chosen.filename}: uv reported no sha256 for it")
        out.append(
            LockedWheel(
                pkg.name, pkg.version, chosen.filename, chosen.sha256, chosen.size,
                origin=FIND_LINKS if local is not None else "",
            )
        )  # fmt: skip
    return tuple(sorted(out, key=lambda w: w.name))


# --------------------------------------------------------------------------- uv


@functools.lru_cache(maxsize=4)
def _uv_platforms(uv: str) -> tuple[str, ...]:
    try:
        proc = subprocess.run(
            [uv, "pip", "compile", "--help"], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ResolveError(f"cannot run uv ({uv}): {exc}") from None
    return tuple(dict.fromkeys(re.findall(r"[a-z0-9_]+-manylinux_2_\d+", proc.stdout)))


def uv_platform(glibc: str, arch: str) -> str:
    """uv's ``--python-platform``: the newest ``ARCH-manylinux_2_XX`` uv knows with XX <= glibc."""
    _, minor = _parse_version(glibc, "glibc version")
    machine = normalize_arch(arch)
    known = {
        int(p.rsplit("_", 1)[1]): p
        for p in _uv_platforms(uv_binary())
        if p.startswith(f"{machine}-manylinux_2_")
    }
    usable = [m for m in known if m <= minor]
    if not usable:
        raise ResolveError(
            f"uv knows no {machine} manylinux platform for glibc {glibc} "
            f"(it knows: {', '.join(known[m] for m in sorted(known)) or 'none'})"
        )
    return known[max(usable)]


def _check_requirements(requirements: Sequence[str]) -> list[str]:
    out = []
    for text in requirements:
        try:
            out.append(str(Requirement(text)))
        except InvalidRequirement as exc:
            raise ResolveError(f"invalid Python requirement {text!r}: {exc}") from None
    return out


def exclude_overrides(excludes: Sequence[str]) -> str:
    """uv overrides that drop ``excludes`` from a resolution: a marker no platform matches."""
    return "".join(f"{canonicalize_name(n)} ; sys_platform == 'never'\n" for n in excludes)


def check_excludes(requirements: Sequence[str], excludes: Sequence[str]) -> None:
    """An excluded distribution may not be asked for directly."""
    wanted = {canonicalize_name(Requirement(r).name) for r in requirements}
    for name in excludes:
        if canonicalize_name(name) in wanted:
            raise ResolveError(
                f"python.excludes names {name!r}, which python.requirements asks for",
                hint="remove it from one of the two lists",
            )


def _trim(stderr: str, limit: int = 3000) -> str:
    text = "\n".join(line for line in stderr.strip().splitlines() if line.strip())
    return text if len(text) <= limit else "…" + text[-limit:]


def run_uv_compile(
    requirements: Sequence[str],
    python_version: str,
    platform: str,
    config: IndexConfig,
    *,
    upgrade: bool,
    preferences: str | None,
    excludes: Sequence[str] = (),
    find_links: Sequence[str] = (),
    upgrade_packages: Sequence[str] = (),
    direct: Collection[str] = (),
) -> str:
    """Run ``uv pip compile`` and return the pylock.toml text it wrote.

    ``upgrade_packages`` (with ``preferences``): those distributions are resolved afresh,
    the others stay at their preferred versions unless the new ones force them to move.
    """
    with tempfile.TemporaryDirectory(prefix="hardflow-lock-") as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        out = Path(tmp) / "pylock.toml"
        common = [
            "--no-header", "--quiet", "--no-progress",
            "--color", "never", "--only-binary", ":all:",
            "--python-version", python_version, "--python-platform", platform,
            "--python", sys.executable, "--no-python-downloads",
            *config.uv_args(),
        ]  # fmt: skip
        for folder in find_links:
            common += ["--find-links", folder]
        if excludes:
            overrides = Path(tmp) / "excludes.txt"
            overrides.write_text(exclude_overrides(excludes), encoding="utf-8")
            common += ["--override", str(overrides)]
        extra: list[str] = []
        if preferences is not None:
            # Pass 1: resolve to requirements.txt, preferring the previous pins; pass 2 below
            # turns those exact versions into a pylock with every file's hash.
            pins = Path(tmp) / "pins.txt"
            pins.write_text(preferences, encoding="utf-8")
            frees = [arg for name in upgrade_packages for arg in ("--upgrade-package", name)]
            _run_uv(
                [uv_binary(), "pip", "compile", str(req), "--output-file", str(pins),
                 "--format", "requirements.txt", *common, *frees],
                tmp, python_version, platform, direct,
            )  # fmt: skip
            extra = ["--constraint", str(pins)]
        cmd = [
            uv_binary(), "pip", "compile", str(req), "--output-file", str(out),
            "--format", "pylock.toml", *common, *extra,
        ]  # fmt: skip
        if upgrade:
            cmd.append("--upgrade")
        _run_uv(cmd, tmp, python_version, platform, direct)
        return out.read_text(encoding="utf-8")


def _run_uv(
    cmd: list[str], tmp: str, python_version: str, platform: str, direct: Collection[str] = ()
) -> None:
    log.debug("running %s", " ".join(cmd))
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
    except OSError as exc:
        raise ResolveError(f"cannot run uv ({cmd[0]}): {exc}") from None
    log.debug("uv pip compile took %.1fs", time.monotonic() - started)
    if proc.returncode != 0:
        no_wheel = no_wheel_error(proc.stderr, python_version, platform, direct)
        if no_wheel is not None:
            raise no_wheel
        raise ResolveError(
            f"uv could not resolve the Python requirements for Python {python_version} "
            f"on {platform}:\n{_trim(proc.stderr)}",
            hint="check the [python] requirements and the index configuration "
            "(uv.toml, UV_* or pip.conf/PIP_*)",
        )


def resolve(
    requirements: Sequence[str],
    python_version: str,
    glibc: str,
    arch: str,
    config: IndexConfig,
    upgrade: bool = False,
    previous: Sequence[LockedWheel] = (),
    excludes: Sequence[str] = (),
    find_links: Sequence[str] = (),
    upgrade_packages: Sequence[str] = (),
) -> tuple[LockedWheel, ...]:
    """Lock ``requirements`` for CPython ``python_version`` on ``arch`` with ``glibc``.

    Returns one wheel per package of the resolution, sorted by name. Previous pins are
    preferred unless ``upgrade``; ``upgrade_packages`` are moved to their newest versions
    while the other previous pins are kept where they still fit. Distributions in
    ``excludes`` are left out even when a requirement depends on them. Wheels in the
    ``find_links`` folders are offered next to the indexes. A distribution without a wheel
    for the target raises :class:`LockError` naming it and the ways out.
    """
    reqs = _check_requirements(requirements)
    if not reqs:
        return ()
    check_excludes(reqs, excludes)
    for folder in find_links:
        if not Path(folder).is_dir():
            raise ResolveError(
                f"python.find-links: {folder} is not a folder",
                hint="create it and put the wheels in it, or remove it from [python] find-links",
            )
    direct = {canonicalize_name(Requirement(r).name) for r in reqs}
    tags = target_tags(python_version, glibc, arch)
    platform = uv_platform(glibc, arch)
    prefs = preferences_txt(previous) if previous and not upgrade else None
    text = run_uv_compile(
        reqs, python_version, platform, config, upgrade=upgrade, preferences=prefs,
        excludes=excludes, find_links=find_links,
        upgrade_packages=[canonicalize_name(n) for n in upgrade_packages], direct=direct,
    )  # fmt: skip
    return pick_wheels(
        parse_pylock(text), tags, find_links, target=(python_version, platform), direct=direct
    )
