"""A small two-platform image (linux/amd64 + linux/arm64) built from fixture archives.

The same fixture world as ``tests/build/test_build_platforms.py``: a signed fake Debian
repository with ``binary-amd64`` and ``binary-arm64`` indexes, manylinux x86_64/aarch64 wheels
on a loopback index, the host's Python as the bytecode compiler. A build takes a couple of
seconds and needs neither the network nor podman; its output is what ``hardflow build`` writes
for a multi-platform spec: ``oci/`` (an image index), the amd64 SBOMs and provenance beside it,
the arm64 ones under ``platforms/linux-arm64/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hardflow.build.bytecode import host_architecture
from hardflow.build.pipeline import BuildOptions, BuildResult
from hardflow.build.platforms import build_image
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.lock.resolve import make_lock
from hardflow.spec import load_spec
from helpers.compilers import host_compiler
from helpers.fixtures_debian import FakePackage, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index

PLATFORMS = ("linux/amd64", "linux/arm64")
# the fixture builds arm64 as the foreign platform: its bytecode is compiled by amd64's Python
requires_amd64_host = pytest.mark.skipif(
    host_architecture() != "amd64", reason="the two-platform fixture is built on amd64 hosts"
)

PYVER = f"{sys.version_info.major}.{sys.version_info.minor}"
_NODOT = PYVER.replace(".", "")
_TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
_WHEEL_TAGS = {
    "amd64": f"cp{_NODOT}-cp{_NODOT}-manylinux_2_17_x86_64",
    "arm64": f"cp{_NODOT}-cp{_NODOT}-manylinux_2_17_aarch64",
}


def _spec(name: str, tag: str, keyring: Path) -> str:
    return f"""
name = "{name}"
tag = "{tag}"
platforms = ["linux/amd64", "linux/arm64"]
[debian]
suites = ["trixie"]
packages = ["python{PYVER}", "tzdata"]
keyring = "{keyring}"
[python]
version = "{PYVER}"
requirements = ["native"]
"""


def _packages() -> list[FakePackage]:
    out = [FakePackage("tzdata", "2025b", architecture="all",
                       files={"usr/share/zoneinfo/UTC": b"TZif"})]  # fmt: skip
    for arch, triplet in _TRIPLETS.items():
        out += [
            FakePackage("libc6", "2.41", architecture=arch,
                        files={f"usr/lib/{triplet}/libc.so.6": f"libc {arch}".encode()}),
            FakePackage(f"python{PYVER}", "3.0", depends="libc6", architecture=arch, files={
                f"usr/bin/python{PYVER}": f"#!fake {arch} interpreter".encode(),
            }),
        ]  # fmt: skip
    return out


def build_two_platforms(
    root: Path, name: str = "hardflow-test/multi", tag: str = "1"
) -> BuildResult:
    """Build the two-platform image into ``root/out`` (its layout: ``root/out/oci``)."""
    repo = build_repo(root / "repo", _packages(), arches=("amd64", "arm64"))
    wheels = [
        build_wheel(root / "wheels", "native", "1.0", tag=wheel_tag,
                    files={"native/__init__.py": f"ARCH = {arch!r}\n".encode()})
        for arch, wheel_tag in _WHEEL_TAGS.items()
    ]  # fmt: skip
    spec_path, lock_path = root / "multi.toml", root / "multi.lock.json"
    spec_path.write_text(_spec(name, tag, repo.keyring))
    with (
        pytest.MonkeyPatch.context() as mp,
        IndexServer(write_index(root / "index", wheels)) as srv,
    ):
        mp.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
        mp.setenv("UV_DEFAULT_INDEX", srv.url)
        mp.setenv("UV_NO_CACHE", "1")
        spec = load_spec(spec_path)
        make_lock(spec, lock_path)
        options = BuildOptions(out_dir=root / "out", cache=Cache(root / "cache"),
                               work_dir=root / "work", compiler=host_compiler)  # fmt: skip
        return build_image(spec, read_lock(lock_path), lock_path, options)


_SHARED: dict[str, BuildResult] = {}


def shared_two_platforms(factory: pytest.TempPathFactory) -> BuildResult:
    """:func:`build_two_platforms` once per test session (tests that change the output copy
    it first: ``shutil.copytree(result.image.layout_dir.parent, ...)``)."""
    if "build" not in _SHARED:
        _SHARED["build"] = build_two_platforms(factory.mktemp("multi-platform"))
    return _SHARED["build"]
