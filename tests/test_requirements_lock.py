"""requirements/hardflow.lock.txt: hardflow's own Python dependencies, pinned with hashes.

scripts/setup.sh installs the lock with ``pip --require-hashes`` and hardflow itself with
``--no-deps``, so a requirement of pyproject.toml the lock does not satisfy would be missing
(or another version) on a fresh machine. ``requirements/update.sh`` regenerates the lock.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "hardflow.lock.txt"
BUILD_IN = ROOT / "requirements" / "build.in"
PYPROJECT = ROOT / "pyproject.toml"
PYTHON = "3.11"  # the lock's --python-version: Debian 12's Python
FIX = "run requirements/update.sh and commit requirements/hardflow.lock.txt"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


def lock_entries() -> list[tuple[str, str, list[str]]]:
    """(name, version, hashes) of each pinned requirement, continuation lines joined."""
    text = LOCK.read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    entries = []
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN.match(line)
        assert m, f"{LOCK}: not a pinned requirement: {line[:120]!r}"
        entries.append((m[1], m[2], _HASH.findall(line)))
    return entries


def pins() -> dict[NormalizedName, str]:
    return {canonicalize_name(name): version for name, version, _ in lock_entries()}


def project_requirements() -> Iterator[Requirement]:
    """Every requirement hardflow asks for: dependencies, every extra, the build tools."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    for line in project["dependencies"]:
        yield Requirement(line)
    for lines in project.get("optional-dependencies", {}).values():
        for line in lines:
            yield Requirement(line)
    for line in BUILD_IN.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield Requirement(line)


def applies(req: Requirement, extra: str = "") -> bool:
    if req.marker is None:
        return True
    env = {**default_environment(), "python_version": PYTHON, "extra": extra}
    return req.marker.evaluate(env)


def unsatisfied(req: Requirement, locked: dict[NormalizedName, str], who: str) -> str | None:
    name = canonicalize_name(req.name)
    if name not in locked:
        return f"{who} requires {req}; the lock has no {name}"
    if not req.specifier.contains(locked[name], prereleases=True):
        return f"{who} requires {req}; the lock pins {name}=={locked[name]}"
    return None


def test_every_pin_has_hashes_and_no_index() -> None:
    entries = lock_entries()
    assert len(entries) > 20
    names = [canonicalize_name(n) for n, _, _ in entries]
    assert len(names) == len(set(names)), f"{LOCK}: a package is pinned twice"
    assert not [n for n, _, h in entries if not h], f"{LOCK}: pins without --hash"
    text = LOCK.read_text(encoding="utf-8")
    # the index comes from the host's configuration, never from the lock
    assert not re.search(r"^\s*(--index-url|--extra-index-url|-i|--find-links|-f)\b", text, re.M)
    assert "://" not in text


def test_pyproject_and_the_lock_agree() -> None:
    locked = pins()
    problems = [
        p
        for req in project_requirements()
        if applies(req)
        and (p := unsatisfied(req, locked, PYPROJECT.name if req.name != "pip" else BUILD_IN.name))
    ]
    assert not problems, "\n".join([*problems, FIX])


def test_the_lock_is_closed_under_the_installed_metadata() -> None:
    """Each locked distribution's own requirements (with the extras asked for) are locked
    too, checked against the metadata of the installed distributions that are the lock's
    versions: a transitive dependency missing from the lock fails here."""
    locked = pins()
    todo: list[tuple[NormalizedName, frozenset[str]]] = [
        (canonicalize_name(r.name), frozenset(r.extras))
        for r in project_requirements()
        if applies(r)
    ]
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    problems: list[str] = []
    checked = 0
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if canonicalize_name(dist.metadata["Name"]) != name or dist.version != locked.get(name):
            continue  # this environment was not made from the lock: nothing to read
        checked += 1
        for line in dist.requires or ():
            req = Requirement(line)
            if not any(applies(req, extra) for extra in ("", *extras)):
                continue
            if problem := unsatisfied(req, locked, f"{name} {dist.version}"):
                problems.append(problem)
            else:
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    if checked == 0:
        pytest.skip("no installed distribution has the lock's version (venv not from the lock)")
    assert not problems, "\n".join([*problems, FIX])
