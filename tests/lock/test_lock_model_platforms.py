"""Locks of several platforms: shared entries once, each platform's view exact, old locks
unchanged."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hardflow.errors import LockError
from hardflow.lock.model import (
    Lock,
    LockedDeb,
    LockedSuite,
    LockedWheel,
    diff_locks,
    merge_platforms,
    parse_lock,
    read_lock,
)

SPECS = Path(__file__).parents[2] / "src/hardflow/specs"


def deb(name: str, version: str, arch: str) -> LockedDeb:
    return LockedDeb(name, version, arch, "trixie", f"pool/main/x/{name}_{version}_{arch}.deb",
                     "0" * 64, 1, name, version)  # fmt: skip


def whl(name: str, version: str, tag: str = "py3-none-any") -> LockedWheel:
    return LockedWheel(name, version, f"{name.replace('-', '_')}-{version}-{tag}.whl", "1" * 64, 1)


X86 = "cp313-cp313-manylinux_2_17_x86_64"
ARM = "cp313-cp313-manylinux_2_17_aarch64"
AMD64 = (
    [deb("libc6", "2.41-12", "amd64"), deb("tzdata", "2025b", "all"), deb("libx", "1", "amd64")],
    [whl("numpy", "2.3.0", X86), whl("six", "1.17.0")],
)
ARM64 = (
    [deb("libc6", "2.41-12", "arm64"), deb("tzdata", "2025b", "all"), deb("liby", "1", "all")],
    [whl("numpy", "2.3.0", ARM), whl("six", "1.17.0"), whl("only-arm", "1.0")],
)


def multi() -> Lock:
    debs, wheels = merge_platforms([("amd64", *AMD64), ("arm64", *ARM64)])
    return Lock("sha256:" + "ab" * 32, (LockedSuite("trixie", "d", 1),), debs, wheels,
                architectures=("amd64", "arm64"))  # fmt: skip


def test_committed_locks_read_and_write_byte_for_byte() -> None:
    for path in sorted(SPECS.glob("*.lock.json")):
        lock = read_lock(path)
        if path.name != "airflow-multiplatform.lock.json":
            assert lock.architectures == () and lock.for_architecture("amd64") is lock
        assert lock.to_json() == path.read_text(), path.name


def test_the_multiplatform_default_is_the_default_on_amd64() -> None:
    """Its lock was made preferring the default's pins: on amd64 it is the default's lock
    (so the amd64 image shares every layer with the default image). Re-lock it with
    ``make_lock(spec, path, prefer=<default lock>)`` after re-locking the default."""
    multi = read_lock(SPECS / "airflow-multiplatform.lock.json")
    default = read_lock(SPECS / "default.lock.json")
    assert multi.architectures == ("amd64", "arm64")
    amd64 = multi.for_architecture("amd64")
    assert (set(amd64.debs), set(amd64.wheels)) == (set(default.debs), set(default.wheels))
    assert amd64.suites == default.suites
    arm64 = multi.for_architecture("arm64")
    assert {d.architecture for d in arm64.debs} == {"arm64", "all"}
    assert {(w.name, w.version) for w in arm64.wheels} == {
        (w.name, w.version) for w in default.wheels
    }  # the same versions on both platforms
    assert not any("x86_64" in w.filename for w in arm64.wheels)


def test_shared_entries_are_listed_once_and_each_view_is_exact() -> None:
    lock = multi()
    names = [(d.name, d.architecture, d.platforms) for d in lock.debs]
    assert names == [
        ("libc6", "amd64", ()), ("libc6", "arm64", ()), ("libx", "amd64", ()),
        ("liby", "all", ("arm64",)), ("tzdata", "all", ()),
    ]  # fmt: skip
    assert [(w.filename.split("-")[0], w.platforms) for w in lock.wheels] == [
        ("numpy", ("arm64",)), ("numpy", ("amd64",)), ("only_arm", ("arm64",)), ("six", ()),
    ]  # fmt: skip
    for arch, (debs, wheels) in (("amd64", AMD64), ("arm64", ARM64)):
        view = lock.for_architecture(arch)
        assert sorted(view.debs, key=lambda d: d.name) == sorted(debs, key=lambda d: d.name)
        assert sorted(view.wheels, key=lambda w: w.name) == sorted(wheels, key=lambda w: w.name)
        assert view.architectures == () and view.spec_checksum == lock.spec_checksum
    with pytest.raises(LockError, match="covers amd64, arm64, not riscv64"):
        lock.for_architecture("riscv64")


def test_a_multi_platform_lock_round_trips() -> None:
    lock = multi()
    text = lock.to_json()
    data = json.loads(text)
    assert data["architectures"] == ["amd64", "arm64"]
    assert "platforms" not in data["debs"][0] and data["debs"][3]["platforms"] == ["arm64"]
    assert parse_lock(text, "x.lock.json") == lock


def edit(text: str, change: dict[str, object], kind: str = "debs", index: int = 0) -> str:
    data = json.loads(text)
    data[kind][index].update(change)
    return json.dumps(data)


def test_hostile_platform_fields_are_refused() -> None:
    text = multi().to_json()
    with pytest.raises(LockError, match=r"debs\[0\] \(libc6\): key 'platforms': expected "
                       "architectures of the lock"):  # fmt: skip
        parse_lock(edit(text, {"platforms": ["s390x"]}), "x.lock.json")
    with pytest.raises(LockError, match="key 'platforms': expected a non-empty array"):
        parse_lock(edit(text, {"platforms": []}, "wheels"), "x.lock.json")
    with pytest.raises(LockError, match="key 'platforms': expected a non-empty array"):
        parse_lock(edit(text, {"platforms": ["../x"]}), "x.lock.json")
    # the x86_64 numpy wheel claimed for arm64 too: two numpys on arm64
    with pytest.raises(LockError, match="expected each name once for arm64, found 'numpy'"):
        parse_lock(edit(text, {"platforms": ["amd64", "arm64"]}, "wheels", 1), "x.lock.json")
    one = json.loads(read_lock(SPECS / "core.lock.json").to_json())
    one["debs"][0]["platforms"] = ["amd64"]
    with pytest.raises(LockError, match="expected architectures of the lock \\(none: it has one"):
        parse_lock(json.dumps(one), "core.lock.json")


def test_diff_names_an_entry_per_platform_only_when_the_platforms_differ() -> None:
    old = multi()
    numpy_arm = next(w for w in old.wheels if w.filename.endswith("aarch64.whl"))
    moved = replace(
        numpy_arm, version="2.3.1", filename=numpy_arm.filename.replace("2.3.0", "2.3.1")
    )
    new = replace(old, wheels=tuple(moved if w is numpy_arm else w for w in old.wheels))
    diff = diff_locks(old, new)
    assert diff.changed == (("pypi:numpy [arm64]", "2.3.0", "2.3.1"),)
    assert not diff.added and not diff.removed
    fresh = diff_locks(None, new)
    assert ("pypi:numpy [amd64]", "2.3.0") in fresh.added
    assert ("pypi:numpy [arm64]", "2.3.1") in fresh.added
    assert ("deb:liby [arm64]", "1") in fresh.added and ("deb:libx [amd64]", "1") in fresh.added
    assert ("deb:tzdata", "2025b") in fresh.added and ("deb:libc6", "2.41-12") in fresh.added
    # from a one-platform lock: the new platform's entries are added
    (amd64,) = [new.for_architecture("amd64")]
    grown = diff_locks(amd64, new)
    assert ("deb:libc6 [arm64]", "2.41-12") in grown.added and not grown.removed
    assert not diff_locks(new, new).added and diff_locks(new, new).empty
