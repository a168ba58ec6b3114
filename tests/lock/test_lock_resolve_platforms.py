"""A lock of two platforms from one signed fake archive (binary-amd64 and binary-arm64) and a
loopback index of manylinux x86_64/aarch64 and pure wheels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from hardflow.lock.model import read_lock
from hardflow.lock.resolve import make_lock
from hardflow.pypi.index import IndexConfig
from hardflow.spec import DebianSpec, ImageSpec, PythonSpec
from helpers.fixtures_debian import FakePackage, FakeRepo, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index

X86 = "cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64"
ARM = "cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64"


def packages() -> list[FakePackage]:
    return [
        FakePackage("libc6", "2.41-12", architecture="amd64"),
        FakePackage("libc6", "2.41-12", architecture="arm64"),
        FakePackage("tzdata", "2025b-1", architecture="all"),
        FakePackage("app", "1.0", depends="libc6, tzdata, libbar", architecture="amd64"),
        FakePackage("app", "1.0", depends="libc6, tzdata, libbar, armhelper", architecture="arm64"),
        FakePackage("armhelper", "1.0", architecture="all"),
        FakePackage("libbar", "1.0", depends="libc6", architecture="amd64"),
        FakePackage("libbar", "1.0", depends="libc6", architecture="arm64"),
        # a newer build for arm64 alone: arm64 keeps the primary's version
        FakePackage("libbar", "1.1", depends="libc6", architecture="arm64"),
    ]


@dataclass
class World:
    root: Path
    repo: FakeRepo
    index: IndexServer
    lock_path: Path

    def spec(self, platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64")) -> ImageSpec:
        spec = ImageSpec(
            name="test/multi",
            tag="1",
            debian=DebianSpec(suites=("trixie",), packages=("app",),
                              keyring=str(self.repo.keyring)),
            python=PythonSpec(version="3.13", glibc="2.41", requirements=("alpha", "native")),
            base_dir=str(self.root),
        )  # fmt: skip
        if len(platforms) > 1:
            return replace(spec, platforms=platforms)
        arch = platforms[0].split("/")[1]
        return replace(spec, debian=replace(spec.debian, architecture=arch))

    def lock(self, spec: ImageSpec, **kw: object) -> None:
        make_lock(spec, self.lock_path, env={"HARDFLOW_DEBIAN_MIRROR": self.repo.base_url},
                  index_config=IndexConfig(index_url=self.index.url), **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL",
                 "UV_FIND_LINKS", "UV_OFFLINE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    repo = build_repo(tmp_path / "repo", packages(), arches=("amd64", "arm64"))
    out = tmp_path / "wheels"
    wheels = [
        build_wheel(out, "alpha", "1.0", requires=["armonly; platform_machine == 'aarch64'"]),
        build_wheel(out, "armonly", "1.0"),
        build_wheel(out, "native", "2.0", tag=X86),
        build_wheel(out, "native", "2.0", tag=ARM),
    ]
    with IndexServer(write_index(tmp_path / "index", wheels)) as server:
        yield World(tmp_path, repo, server, tmp_path / "multi.lock.json")


def test_one_lock_holds_both_platforms_and_shares_what_they_share(world: World) -> None:
    spec = world.spec()
    world.lock(spec)
    lock = read_lock(world.lock_path)
    assert lock.spec_checksum == spec.lock_checksum()
    assert lock.architectures == ("amd64", "arm64")
    debs = {(d.name, d.architecture, d.version, d.platforms) for d in lock.debs}
    assert debs == {
        ("app", "amd64", "1.0", ()), ("app", "arm64", "1.0", ()),
        ("armhelper", "all", "1.0", ("arm64",)),
        ("libbar", "amd64", "1.0", ()), ("libbar", "arm64", "1.0", ()),  # the primary's version
        ("libc6", "amd64", "2.41-12", ()), ("libc6", "arm64", "2.41-12", ()),
        ("tzdata", "all", "2025b-1", ()),  # Architecture: all, listed once
    }  # fmt: skip
    wheels = {(w.filename, w.platforms) for w in lock.wheels}
    assert wheels == {
        ("alpha-1.0-py3-none-any.whl", ()),
        ("armonly-1.0-py3-none-any.whl", ("arm64",)),  # a marker only aarch64 meets
        (f"native-2.0-{X86}.whl", ("amd64",)),
        (f"native-2.0-{ARM}.whl", ("arm64",)),
    }  # fmt: skip
    arm = lock.for_architecture("arm64")
    assert {d.name for d in arm.debs} == {"app", "armhelper", "libbar", "libc6", "tzdata"}
    assert {d.architecture for d in arm.debs} == {"arm64", "all"}
    assert all(d.filename.endswith(("_arm64.deb", "_all.deb")) for d in arm.debs)
    amd = lock.for_architecture("amd64")
    assert {w.name for w in amd.wheels} == {"alpha", "native"}
    # the .deb a platform gets is exactly the one binary-ARCH/Packages lists for it
    listed = (world.repo.dist("trixie") / "main/binary-arm64/Packages").read_text()
    for d in arm.debs:
        assert f"SHA256: {d.sha256}" in listed


def test_the_same_spec_for_one_platform_gives_that_platforms_view(world: World) -> None:
    world.lock(world.spec())
    multi = read_lock(world.lock_path)
    for platform in ("linux/amd64", "linux/arm64"):
        path = world.lock_path.with_name(platform.replace("/", "-") + ".lock.json")
        single = replace(world, lock_path=path)
        single.lock(single.spec((platform,)))
        one = read_lock(path)
        view = multi.for_architecture(platform.split("/")[1])
        assert one.architectures == () and "architectures" not in json.loads(path.read_text())
        assert set(one.wheels) == set(view.wheels)
        if platform == "linux/amd64":
            assert set(one.debs) == set(view.debs)
        else:  # alone, arm64 takes its newest libbar; in the pair it keeps the primary's
            assert {(d.name, d.version) for d in one.debs} - {
                (d.name, d.version) for d in view.debs
            } == {("libbar", "1.1")}


def test_update_only_moves_an_entry_on_every_platform(world: World) -> None:
    world.lock(world.spec())
    before = read_lock(world.lock_path)
    out = world.root / "wheels"
    wheels = [
        *sorted(out.glob("*.whl")),
        build_wheel(out, "native", "2.1", tag=X86),
        build_wheel(out, "native", "2.1", tag=ARM),
        build_wheel(out, "alpha", "1.1", requires=["armonly; platform_machine == 'aarch64'"]),
    ]
    write_index(world.root / "index", wheels)
    outcome = make_lock(world.spec(), world.lock_path, update=True, only=["native"],
                        env={"HARDFLOW_DEBIAN_MIRROR": world.repo.base_url},
                        index_config=IndexConfig(index_url=world.index.url))  # fmt: skip
    assert outcome.only == ("pypi:native",) and outcome.moved_along == ()
    assert outcome.diff.changed == (("pypi:native", "2.0", "2.1"),)
    after = read_lock(world.lock_path)
    moved = {(w.name, w.version, w.platforms) for w in after.wheels} - {
        (w.name, w.version, w.platforms) for w in before.wheels
    }
    assert moved == {("native", "2.1", ("amd64",)), ("native", "2.1", ("arm64",))}
    assert after.debs == before.debs


def test_only_after_adding_a_platform_never_keeps_another_platforms_wheel(world: World) -> None:
    world.lock(world.spec(("linux/amd64",)))  # the one-platform lock the spec started from
    out = world.root / "wheels"
    wheels = [*sorted(out.glob("*.whl")), build_wheel(out, "native", "2.1", tag=X86),
              build_wheel(out, "native", "2.1", tag=ARM)]  # fmt: skip
    write_index(world.root / "index", wheels)
    world.lock(world.spec(), update=True, only=["alpha"])
    lock = read_lock(world.lock_path)
    arm = lock.for_architecture("arm64")
    assert {w.filename for w in arm.wheels if w.name == "native"} == {f"native-2.0-{ARM}.whl"}
    amd = lock.for_architecture("amd64")
    assert {w.filename for w in amd.wheels if w.name == "native"} == {f"native-2.0-{X86}.whl"}
