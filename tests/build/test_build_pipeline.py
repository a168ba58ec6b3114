"""The whole pipeline on fixture archives: a signed fake Debian repository and tiny wheels.

Bytecode is compiled by the host interpreter here (the fixture has no real CPython 3.13 to
chroot into); the real chroot compile is covered by the end-to-end tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hardflow.build.pipeline import BuildOptions, BuildResult, build
from hardflow.build.plan import layer_order, wheel_layer
from hardflow.errors import FetchError, LockError, TrustError
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.lock.resolve import make_lock
from hardflow.oci.layer import iter_tar_entries
from hardflow.spec import ImageSpec, load_spec
from helpers.compilers import host_compiler
from helpers.fixtures_debian import FakePackage, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index

TEST_KEY = b"-----BEGIN PRIVATE KEY-----\nMIIBVQ==\n-----END PRIVATE KEY-----\n"
PYVER = f"{sys.version_info.major}.{sys.version_info.minor}"
TAG = f"cpython-{sys.version_info.major}{sys.version_info.minor}"

SPEC = f"""
name = "test/tiny"
tag = "1"
[debian]
suites = ["trixie", "trixie-security"]
packages = ["python{PYVER}", "bash", "ca-certificates"]
excludes = ["debconf"]
[python]
version = "{PYVER}"
requirements = ["alpha"]
[image]
entrypoint = ["/usr/bin/bash"]
env = {{ AIRFLOW_HOME = "/opt/airflow" }}
[[files]]
dest = "/opt/airflow/dags/hello.py"
content = "print('hello')\\n"
"""


def packages(bash_version: str = "5.2") -> list[FakePackage]:
    return [
        FakePackage("libc6", "2.41", files={"usr/lib/x86_64-linux-gnu/libc.so.6": b"libc"}),
        FakePackage(
            "bash", bash_version, depends="libc6 (>= 2.40), debconf",
            files={
                "bin/bash": b"#!bash",  # lands in usr/bin via merged-/usr
                "usr/share/man/man1/bash.1.gz": b"man",
                "usr/share/doc/bash/copyright": b"GPL",
                "usr/share/doc/bash/README": b"docs",
                "usr/share/locale/de/LC_MESSAGES/bash.mo": b"mo",
            },
        ),
        FakePackage(
            "passwd", "1.0", depends="libc6",
            files={"usr/bin/chsh": b"setuid!"}, modes={"usr/bin/chsh": 0o4755},
        ),
        FakePackage(
            f"python{PYVER}", "3.0", depends="libc6, passwd",
            files={
                f"usr/bin/python{PYVER}": b"#!fake interpreter",
                f"usr/lib/python{PYVER}/os_fake.py": b"X = 1\n",
            },
        ),
        FakePackage(
            "ca-certificates", "2025", suites=("trixie-security",), depends="debconf",
            files={
                "usr/share/ca-certificates/mozilla/B.crt": b"-----CERT B-----\n",
                "usr/share/ca-certificates/mozilla/A.crt": b"-----CERT A-----\n",
            },
        ),
        FakePackage("debconf", "1.5", depends="perl-base"),
    ]


class World:
    def __init__(self, root: Path, index: IndexServer) -> None:
        self.root = root
        self.index = index
        self.spec_path = root / "tiny.toml"
        self.lock_path = root / "tiny.lock.json"

    @property
    def spec(self) -> ImageSpec:
        return load_spec(self.spec_path)

    def build(self, name: str, **kw: object) -> BuildResult:
        options = BuildOptions(
            out_dir=self.root / name / "out",
            cache=Cache(self.root / "cache", offline=bool(kw.pop("offline", False))),
            work_dir=self.root / name / "work",
            compiler=host_compiler,
        )
        options = replace(options, **kw)  # type: ignore[arg-type]
        return build(self.spec, read_lock(self.lock_path), self.lock_path, options)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    repo = build_repo(tmp_path / "repo", packages(), suites=("trixie", "trixie-security"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    built = [
        build_wheel(wheels, "alpha", "1.0", requires=["beta"],
                    console_scripts={"alpha": "alpha:main"},
                    files={"alpha/__init__.py": b"def main():\n    return 0\n",
                           "alpha/tests/server.key": TEST_KEY}),
        build_wheel(wheels, "beta", "2.0"),
    ]  # fmt: skip
    index_root = write_index(tmp_path / "index", built)
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    monkeypatch.setenv("HARDFLOW_DEBIAN_SECURITY_MIRROR", repo.base_url)
    with IndexServer(index_root) as server:
        monkeypatch.setenv("UV_DEFAULT_INDEX", server.url)
        monkeypatch.setenv("UV_NO_CACHE", "1")
        w = World(tmp_path, server)
        w.spec_path.write_text(SPEC.replace("/usr/share/keyrings", "x"))
        text = w.spec_path.read_text().replace(
            "[python]", f'keyring = "{repo.keyring}"\n[python]'
        )
        w.spec_path.write_text(text)
        make_lock(w.spec, w.lock_path)
        yield w


def members(result: BuildResult) -> dict[str, tarfile.TarInfo]:
    out: dict[str, tarfile.TarInfo] = {}
    for layer in result.image.layers:
        for info in iter_tar_entries(layer.path):
            out[info.name.rstrip("/")] = info
    return out


def read_member(result: BuildResult, name: str) -> bytes:
    for layer in reversed(result.image.layers):
        with tarfile.open(layer.path) as tar:
            try:
                f = tar.extractfile(name)
            except KeyError:
                continue
            if f is not None:
                return f.read()
    raise KeyError(name)


def test_lock_pins_closure_and_wheels(world: World) -> None:
    lock = read_lock(world.lock_path)
    assert [d.name for d in lock.debs] == ["bash", "ca-certificates", "libc6", "passwd",
                                            f"python{PYVER}"]  # fmt: skip
    assert {d.name: d.suite for d in lock.debs}["ca-certificates"] == "trixie-security"
    assert [(w.name, w.version) for w in lock.wheels] == [("alpha", "1.0"), ("beta", "2.0")]
    assert "http" not in world.lock_path.read_text()  # no host names in a lock


def test_two_builds_one_digest(world: World) -> None:
    a = world.build("a")
    b = world.build("b")
    assert a.image.manifest_digest == b.image.manifest_digest
    assert [x.digest for x in a.image.layers] == [x.digest for x in b.image.layers]
    c = world.build("c", source_date_epoch=a.source_date_epoch + 1)
    assert c.image.manifest_digest != a.image.manifest_digest


def test_image_tree_is_hardened(world: World) -> None:
    result = world.build("a")
    m = members(result)
    assert "usr/bin/bash" in m and m["bin"].issym() and m["bin"].linkname == "usr/bin"
    assert not m["usr/bin/chsh"].mode & 0o6000
    assert result.setuid_cleared == ("usr/bin/chsh",)
    assert "usr/share/doc/bash/copyright" in m
    for gone in ("usr/share/doc/bash/README", "usr/share/man/man1/bash.1.gz",
                 "usr/share/locale/de/LC_MESSAGES/bash.mo"):  # fmt: skip
        assert gone not in m
    assert "var/lib/dpkg/status.d/bash" in m
    status = read_member(result, "var/lib/dpkg/status.d/bash").decode()
    assert "Package: bash\nStatus: install ok installed\n" in status
    assert "debconf" not in {n.split("/")[-1] for n in m if "status.d" in n}
    bundle = read_member(result, "etc/ssl/certs/ca-certificates.crt")
    assert bundle == b"-----CERT A-----\n-----CERT B-----\n"
    passwd = read_member(result, "etc/passwd").decode()
    assert "airflow:x:50000:0:" in passwd
    home = m["opt/airflow"]
    assert (home.uid, home.gid, home.mode & 0o777) == (50000, 0, 0o775)
    assert (m["opt/airflow/dags/hello.py"].uid, m["tmp"].mode & 0o7777) == (50000, 0o1777)
    script = read_member(result, "usr/local/bin/alpha")
    assert script.startswith(f"#!/usr/bin/python{PYVER}".encode())
    site = f"usr/local/lib/python{PYVER}/dist-packages"
    assert f"{site}/alpha/__pycache__/__init__.{TAG}.pyc" in m
    assert f"{site}/alpha-1.0.dist-info/RECORD" in m
    assert f"usr/lib/python{PYVER}/__pycache__/os_fake.{TAG}.pyc" in m
    osr = read_member(result, "etc/os-release") if not m["etc/os-release"].issym() else (
        read_member(result, "usr/lib/os-release"))
    assert b"ID=debian" in osr and b'VERSION_ID="13"' in osr
    # layers: stable to volatile, each file in exactly one
    names = [layer.name for layer in result.image.layers]
    alpha, beta = wheel_layer("alpha"), wheel_layer("beta")
    wheel_layers = sorted({alpha, beta}, key=layer_order().index)
    assert names == ["debian-base", "python-runtime", *wheel_layers, "hardflow"]
    by_layer = {
        layer.name: {i.name for i in iter_tar_entries(layer.path) if i.isfile()}
        for layer in result.image.layers
    }
    assert f"usr/bin/python{PYVER}" in by_layer["python-runtime"]
    assert f"{site}/beta/__init__.py" in by_layer[beta]
    assert f"{site}/alpha/__init__.py" in by_layer[alpha]
    assert "etc/passwd" in by_layer["hardflow"]
    files = [name for layer in by_layer.values() for name in layer]
    assert len(files) == len(set(files))  # each file in exactly one layer
    # a private key shipped as a package's test data is not in any layer
    assert f"{site}/alpha/tests/server.key" not in m
    key = f"/{site}/alpha/tests/server.key"
    assert result.notes == (f"removed private key shipped as test data: {key}",)
    summary = json.loads((world.root / "a/out/build.json").read_text())
    assert summary["manifest_digest"] == result.image.manifest_digest


def test_lock_spec_mismatch_says_run_lock(world: World) -> None:
    world.spec_path.write_text(
        world.spec_path.read_text().replace('"ca-certificates"]', '"ca-certificates", "libc6"]')
    )
    with pytest.raises(LockError) as exc:
        world.build("a")
    assert "hardflow lock" in exc.value.diagnostics()
    assert not (world.root / "a/out").exists()


def test_tampered_cache_entry_is_refetched_and_tampered_mirror_stops(world: World) -> None:
    world.build("a")
    lock = read_lock(world.lock_path)
    bash = next(d for d in lock.debs if d.name == "bash")
    cache = Cache(world.root / "cache")
    cache.path_for(bash.sha256).write_bytes(b"bitrot")
    world.build("b")  # a corrupted cache entry is detected and fetched again
    cache.path_for(bash.sha256).unlink()
    (world.root / "repo" / bash.filename).write_bytes(b"evil deb")
    with pytest.raises(TrustError) as exc:
        world.build("c")
    msg = exc.value.diagnostics()
    assert "bash_5.2_amd64.deb" in msg and bash.sha256 in msg
    assert not (world.root / "c/out").exists()


def test_offline_uses_the_cache_alone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FetchError, match="--offline"):
        world.build("a", offline=True)
    world.build("b")
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", "file:///nonexistent")
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")
    assert world.build("c", offline=True).image.manifest_digest


def test_locked_file_gone_from_mirror(world: World) -> None:
    lock = read_lock(world.lock_path)
    libc = next(d for d in lock.debs if d.name == "libc6")
    (world.root / "repo" / libc.filename).unlink()
    with pytest.raises(FetchError) as exc:
        world.build("a")
    text = exc.value.diagnostics()
    assert "libc6" in text and "no longer served" in text and "lock --update" in text


def test_lock_update_reports_upgrades(world: World) -> None:
    build_repo(world.root / "repo", packages(bash_version="5.3"),
               suites=("trixie", "trixie-security"))  # fmt: skip
    same = make_lock(world.spec, world.lock_path)
    assert same.up_to_date
    outcome = make_lock(world.spec, world.lock_path, update=True)
    assert ("deb:bash", "5.2", "5.3") in outcome.diff.changed
    assert read_lock(world.lock_path).debs[0].version == "5.3"


def test_cli_bad_spec_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntag = "1"\ncolour = "red"\n')
    r = subprocess.run(
        [sys.executable, "-m", "hardflow.cli", "build", "--spec", str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert str(bad) in r.stderr and "colour" in r.stderr
