"""A two-platform build on fixture archives (binary-amd64 and binary-arm64 of one signed fake
repository, manylinux x86_64/aarch64 wheels): one image index, one layer set per platform,
no arm64 code run (the arm64 tree's bytecode compiled in the amd64 tree).

The fixture's interpreters are fake, so the compiler is the host's Python (helpers.compilers)
wrapped as the build wraps the image's: what is checked here is which tree compiles which
platform's files and that the bytes come back where they belong. The byte-for-byte comparison
with the arm64 interpreter under qemu-user is an end-to-end test.
"""

from __future__ import annotations

import json
import sys
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from hardflow.build.bytecode import host_architecture
from hardflow.build.pipeline import BuildOptions, BuildResult, build
from hardflow.build.platforms import build_image
from hardflow.build.reproduce import check_reproducible, render_report
from hardflow.errors import BuildError, SpecError
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.lock.resolve import make_lock
from hardflow.oci.layer import iter_tar_entries
from hardflow.oci.reader import Platform, open_image
from hardflow.spec import ImageSpec, load_spec
from helpers.compilers import host_compiler
from helpers.fixtures_debian import FakePackage, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index

pytestmark = pytest.mark.skipif(
    host_architecture() != "amd64", reason="the fixture builds arm64 as the foreign platform"
)

PYVER = f"{sys.version_info.major}.{sys.version_info.minor}"
TAG = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
NODOT = PYVER.replace(".", "")
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
WHEEL_TAGS = {
    "amd64": f"cp{NODOT}-cp{NODOT}-manylinux_2_17_x86_64",
    "arm64": f"cp{NODOT}-cp{NODOT}-manylinux_2_17_aarch64",
}

SPEC = f"""
name = "test/multi"
tag = "1"
platforms = ["linux/amd64", "linux/arm64"]
[debian]
suites = ["trixie"]
packages = ["python{PYVER}", "tzdata"]
keyring = "KEYRING"
[python]
version = "{PYVER}"
requirements = ["alpha", "native"]
"""


def packages() -> list[FakePackage]:
    out = [FakePackage("tzdata", "2025b", architecture="all",
                       files={"usr/share/zoneinfo/UTC": b"TZif"})]  # fmt: skip
    for arch, triplet in TRIPLETS.items():
        out += [
            FakePackage("libc6", "2.41", architecture=arch,
                        files={f"usr/lib/{triplet}/libc.so.6": f"libc {arch}".encode()}),
            FakePackage(f"python{PYVER}", "3.0", depends="libc6", architecture=arch, files={
                f"usr/bin/python{PYVER}": f"#!fake {arch} interpreter".encode(),
                f"usr/lib/python{PYVER}/os_fake.py": b"X = {'a', 'b'}\n",
            }),
        ]  # fmt: skip
    return out


class Recorder:
    """The host compiler, noting the compile root of each call."""

    def __init__(self) -> None:
        self.roots: list[Path] = []

    def __call__(self, root: Path, jobs: Sequence[tuple[str, str]], spec: ImageSpec) -> None:
        self.roots.append(root)
        host_compiler(root, jobs, spec)


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.spec_path = root / "multi.toml"
        self.lock_path = root / "multi.lock.json"
        self.compiler = Recorder()

    @property
    def spec(self) -> ImageSpec:
        return load_spec(self.spec_path)

    def options(self, name: str, **kw: object) -> BuildOptions:
        options = BuildOptions(
            out_dir=self.root / name / "out",
            cache=Cache(self.root / "cache"),
            work_dir=self.root / name / "work",
            compiler=self.compiler,
        )
        return replace(options, **kw)  # type: ignore[arg-type]

    def build(self, name: str, **kw: object) -> BuildResult:
        lock = read_lock(self.lock_path)
        return build_image(self.spec, lock, self.lock_path, self.options(name, **kw))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    repo = build_repo(tmp_path / "repo", packages(), arches=("amd64", "arm64"))
    wheels = tmp_path / "wheels"
    built = [
        build_wheel(wheels, "alpha", "1.0", files={"alpha/__init__.py": b"A = 1\n"}),
        *(build_wheel(wheels, "native", "1.0", tag=tag,
                      files={"native/__init__.py": f"ARCH = {arch!r}\n".encode()})
          for arch, tag in WHEEL_TAGS.items()),
    ]  # fmt: skip
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    with IndexServer(write_index(tmp_path / "index", built)) as server:
        monkeypatch.setenv("UV_DEFAULT_INDEX", server.url)
        monkeypatch.setenv("UV_NO_CACHE", "1")
        w = World(tmp_path)
        w.spec_path.write_text(SPEC.replace("KEYRING", str(repo.keyring)))
        make_lock(w.spec, w.lock_path)
        yield w


def files(result: BuildResult) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for layer in result.image.layers:
        with tarfile.open(layer.path) as tar:
            for info in tar:
                f = tar.extractfile(info) if info.isfile() else None
                if f is not None:
                    out[info.name] = f.read()
    return out


def test_one_index_one_layer_set_per_platform(world: World) -> None:
    result = world.build("a")
    layout = world.root / "a/out/oci"
    assert [p for p, _ in result.platforms] == ["linux/amd64", "linux/arm64"]
    per = dict(result.platforms)
    with open_image(layout) as reader:
        listed = [(str(m.platform), m.digest) for m in reader.manifests()]
        assert listed == [(p, r.image.manifest_digest) for p, r in result.platforms]
        for platform, want in (("linux/amd64", "amd64"), ("linux/arm64", "arm64")):
            image = reader.image(platform=Platform.parse(platform))
            assert image.config["architecture"] == want
            labels = image.config["config"]["Labels"]
            assert labels["org.opencontainers.image.revision"] == world.spec.checksum()
    amd, arm = files(per["linux/amd64"]), files(per["linux/arm64"])
    interp = f"usr/bin/python{PYVER}"
    assert amd[interp] == b"#!fake amd64 interpreter"
    assert arm[interp] == b"#!fake arm64 interpreter"
    assert "usr/lib/aarch64-linux-gnu/libc.so.6" in arm
    assert not any("x86_64" in name for name in arm)
    assert not any("aarch64" in name for name in amd)
    assert amd["usr/share/zoneinfo/UTC"] == arm["usr/share/zoneinfo/UTC"]  # Architecture: all
    site = f"usr/local/lib/python{PYVER}/dist-packages"
    assert arm[f"{site}/native/__init__.py"] == b"ARCH = 'arm64'\n"
    assert amd[f"{site}/native/__init__.py"] == b"ARCH = 'amd64'\n"
    # the arm64 tree's bytecode: compiled in the amd64 tree, with the image's paths
    for pyc in (f"usr/lib/python{PYVER}/__pycache__/os_fake.{TAG}.pyc",
                f"{site}/alpha/__pycache__/__init__.{TAG}.pyc"):  # fmt: skip
        assert arm[pyc] == amd[pyc]
    assert (
        f"/{site}/native/__init__.py".encode()
        in arm[f"{site}/native/__pycache__/__init__.{TAG}.pyc"]
    )
    cross = world.root / "a/work"
    foreign = [r for r in world.compiler.roots if r.name != "base"]
    assert foreign and all(r.name == "cross-compiler" and cross in r.parents for r in foreign)
    # the docker-archive holds the host's platform; SBOMs for every platform
    with tarfile.open(result.image.archive_path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["Config"].endswith(per["linux/amd64"].image.config_digest.split(":")[1])
    out = world.root / "a/out"
    assert (out / "sbom.spdx.json").is_file()
    arm_sbom = json.loads((out / "platforms/linux-arm64/sbom.spdx.json").read_text())
    assert per["linux/arm64"].image.manifest_digest.split(":")[1] in json.dumps(arm_sbom)
    summary = json.loads((out / "build.json").read_text())
    assert summary["index_digest"] == result.index_digest
    assert set(summary["platforms"]) == {"linux/amd64", "linux/arm64"}


def test_the_index_is_reproducible_and_platforms_can_be_chosen(world: World) -> None:
    a = world.build("a")
    b = world.build("b", layer_cache=False)
    assert a.index_digest == b.index_digest
    assert [r.image.manifest_digest for _, r in a.platforms] == [
        r.image.manifest_digest for _, r in b.platforms
    ]
    # arm64 alone: the same manifest as in the pair; the amd64 compiler comes from the cache
    arm = world.build("c", architectures=("arm64",))
    assert [p for p, _ in arm.platforms] == ["linux/arm64"]
    assert arm.image.manifest_digest == dict(a.platforms)["linux/arm64"].image.manifest_digest
    # ... and with an empty layer cache: the amd64 Debian stage is built for its interpreter
    world.compiler.roots.clear()
    fresh = world.build("e", architectures=("arm64",), layer_cache_dir=world.root / "lc-e")
    assert fresh.image.manifest_digest == arm.image.manifest_digest
    host_base = world.root / "e/work"
    assert any(r.name == "base" and r.parent.name == "host-amd64" for r in world.compiler.roots)
    assert any(r.name == "cross-compiler" and host_base in r.parents for r in world.compiler.roots)
    with pytest.raises(SpecError, match="expected one of the spec's platforms"):
        world.build("d", architectures=("riscv64",))


def test_a_one_platform_spec_builds_as_before(world: World) -> None:
    multi = dict(world.build("multi").platforms)["linux/amd64"]
    # pipeline.build() refuses a spec of several platforms rather than build one of them
    with pytest.raises(BuildError, match=r"built by hardflow\.build\.platforms\.build_image"):
        build(world.spec, read_lock(world.lock_path), world.lock_path, world.options("x"))
    world.spec_path.write_text(world.spec_path.read_text().replace(
        'platforms = ["linux/amd64", "linux/arm64"]', 'platforms = ["linux/amd64"]'))  # fmt: skip
    make_lock(world.spec, world.lock_path)
    one = world.build("one")
    assert one.platforms == () and one.index_digest == ""
    layout = json.loads((world.root / "one/out/oci/index.json").read_text())
    assert layout["manifests"][0]["digest"] == one.image.manifest_digest
    assert "platforms" not in json.loads((world.root / "one/out/build.json").read_text())
    # the amd64 platform of the index has the one-platform image's layers (only the labels
    # naming the spec and the lock differ)
    assert [x.digest for x in one.image.layers] == [x.digest for x in multi.image.layers]
    assert one.image.config_digest != multi.image.config_digest
    assert {i.name for layer in one.image.layers for i in iter_tar_entries(layer.path)}


def test_check_reproducible_compares_the_index_and_every_platform(world: World) -> None:
    report = check_reproducible(world.spec, read_lock(world.lock_path), world.lock_path,
                                world.options("r"), separate_caches=False)  # fmt: skip
    assert report.reproducible and report.index[0] == report.index[1] != ""
    assert [p for p, _ in report.platforms] == ["linux/arm64"]
    data = report.to_json()
    assert data["platforms"]["linux/arm64"]["reproducible"] is True
    lines = render_report(report)
    assert any(line.strip().startswith("platform linux/arm64") for line in lines)
