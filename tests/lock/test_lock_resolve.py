"""The lock stage on fixture archives: a signed fake Debian repository and a loopback index.

``lock --update --only`` (Python and Debian), the requirement hashes, find-links, and the
lock of a one-off build (``derived_lock_path``/``ensure_lock``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import hardflow.lock.resolve as lock_resolve
from hardflow.errors import LockError
from hardflow.lock.fetch import default_cache_dir
from hardflow.lock.model import FIND_LINKS, read_lock
from hardflow.lock.resolve import derived_lock_path, ensure_lock, make_lock
from hardflow.pypi.index import IndexConfig
from hardflow.spec import DebianSpec, ImageSpec, PythonSpec
from helpers.fixtures_debian import FakePackage, FakeRepo, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, sha256_file, write_index

PY = {"version": "3.13", "glibc": "2.41"}


def debs(extra: Sequence[FakePackage] = ()) -> list[FakePackage]:
    return [
        FakePackage("libc6", "2.41"),
        FakePackage("app", "1.0", depends="libc6, libbar (>= 1)"),
        FakePackage("libbar", "1.0", depends="libc6"),
        FakePackage("tool", "1.0", depends="libbar"),
        *extra,
    ]


@dataclass
class World:
    root: Path
    repo: FakeRepo
    index: IndexServer
    wheels_dir: Path
    lock_path: Path
    wheels: list[Path]

    def spec(self, **python: Any) -> ImageSpec:
        return ImageSpec(
            name="test/lock",
            tag="1",
            debian=DebianSpec(
                suites=("trixie",), packages=("app", "tool"), keyring=str(self.repo.keyring)
            ),
            python=PythonSpec(**{**PY, "requirements": ("alpha", "delta"), **python}),
            base_dir=str(self.root),
        )

    @property
    def env(self) -> dict[str, str]:
        return {"HARDFLOW_DEBIAN_MIRROR": self.repo.base_url}

    def lock(self, spec: ImageSpec | None = None, **kw: Any) -> lock_resolve.LockOutcome:
        config = IndexConfig(index_url=self.index.url)
        return make_lock(spec or self.spec(), self.lock_path, env=self.env,
                         index_config=config, **kw)  # fmt: skip

    def publish(self, *wheels: Path) -> None:
        self.wheels += wheels
        write_index(self.root / "index", self.wheels)

    def republish_debs(self, extra: Sequence[FakePackage]) -> None:
        self.repo = build_repo(self.root / "repo", debs(extra), key=self.repo.key)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL",
                 "UV_FIND_LINKS", "UV_OFFLINE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    repo = build_repo(tmp_path / "repo", debs())
    build = tmp_path / "build"
    wheels = [
        build_wheel(build, "alpha", "1.0", requires=["beta>=1"]),
        build_wheel(build, "beta", "1.0"),
        build_wheel(build, "delta", "1.0"),
    ]
    with IndexServer(write_index(tmp_path / "index", wheels)) as server:
        yield World(tmp_path, repo, server, build, tmp_path / "x.lock.json", wheels)


def entries(path: Path) -> dict[str, str]:
    """Each lock entry as its exact JSON text, by "deb:name"/"pypi:name"."""
    data = json.loads(path.read_text())
    out = {f"deb:{d['name']}": json.dumps(d, sort_keys=True) for d in data["debs"]}
    out.update({f"pypi:{w['name']}": json.dumps(w, sort_keys=True) for w in data["wheels"]})
    return out


# --------------------------------------------------------------------------- --update --only


def test_only_moves_the_named_distribution_and_keeps_the_rest_byte_for_byte(
    world: World,
) -> None:
    world.lock()
    before = entries(world.lock_path)
    text_before = world.lock_path.read_text()
    # newer versions of everything appear on the index and in the archive
    world.publish(
        build_wheel(world.wheels_dir, "alpha", "2.0", requires=["beta>=1"]),
        build_wheel(world.wheels_dir, "beta", "2.0"),
        build_wheel(world.wheels_dir, "delta", "2.0"),
    )
    world.republish_debs([FakePackage("app", "1.1", depends="libc6, libbar (>= 1)"),
                          FakePackage("libbar", "1.1", depends="libc6")])  # fmt: skip

    outcome = world.lock(update=True, only=["Alpha"])
    after = entries(world.lock_path)
    assert outcome.diff.changed == (("pypi:alpha", "1.0", "2.0"),)
    assert outcome.only == ("pypi:alpha",) and outcome.moved_along == ()
    assert {k for k in before if before[k] != after.get(k)} == {"pypi:alpha"}
    assert after.keys() == before.keys()
    # the Debian part was not even re-read: its suites are as they were
    assert json.loads(text_before)["suites"] == json.loads(world.lock_path.read_text())["suites"]
    assert outcome.mirrors == ""

    # a plain --update moves everything
    everything = world.lock(update=True)
    assert {c[0] for c in everything.diff.changed} == {
        "pypi:beta", "pypi:delta", "deb:app", "deb:libbar",
    }  # fmt: skip


def test_only_moves_what_the_new_version_forces_and_says_so(world: World) -> None:
    world.lock()
    before = entries(world.lock_path)
    world.publish(
        build_wheel(world.wheels_dir, "alpha", "3.0", requires=["beta>=2"]),
        build_wheel(world.wheels_dir, "beta", "2.0"),
        build_wheel(world.wheels_dir, "delta", "2.0"),
    )
    outcome = world.lock(update=True, only=["alpha"])
    assert set(outcome.diff.changed) == {("pypi:alpha", "1.0", "3.0"), ("pypi:beta", "1.0", "2.0")}
    assert outcome.moved_along == ("pypi:beta",)
    after = entries(world.lock_path)
    assert after["pypi:delta"] == before["pypi:delta"]
    assert all(after[k] == before[k] for k in before if k.startswith("deb:"))


def test_only_moves_a_debian_package_keeping_the_other_pins(world: World) -> None:
    world.lock()
    before = entries(world.lock_path)
    world.republish_debs([
        FakePackage("app", "1.1", depends="libc6, libbar (>= 1)"),
        FakePackage("libbar", "1.1", depends="libc6"),
        FakePackage("tool", "2.0", depends="libbar (>= 1.1)"),
    ])  # fmt: skip
    world.publish(build_wheel(world.wheels_dir, "delta", "2.0"))

    outcome = world.lock(update=True, only=["app"])
    assert outcome.diff.changed == (("deb:app", "1.0", "1.1"),)
    after = entries(world.lock_path)
    assert {k for k in before if before[k] != after[k]} == {"deb:app"}
    assert outcome.mirrors  # the Debian indices were read (and verified) again

    # tool 2.0 needs libbar >= 1.1: libbar moves with it, and is reported as such
    outcome = world.lock(update=True, only=["tool"])
    assert set(outcome.diff.changed) == {("deb:tool", "1.0", "2.0"), ("deb:libbar", "1.0", "1.1")}
    assert outcome.moved_along == ("deb:libbar",)
    assert entries(world.lock_path)["pypi:delta"] == before["pypi:delta"]


def test_only_errors(world: World) -> None:
    with pytest.raises(LockError, match="needs an existing lock"):
        world.lock(update=True, only=["alpha"])
    world.lock()
    with pytest.raises(LockError, match="needs --update"):
        world.lock(only=["alpha"])
    with pytest.raises(LockError) as info:
        world.lock(update=True, only=["alpah"])
    assert "'alpah'" in info.value.message and str(world.lock_path) in info.value.message
    assert "'alpha'" in (info.value.hint or "")  # difflib's close match
    with pytest.raises(LockError, match="'libbaz'") as info:
        world.lock(update=True, only=["libbaz"])
    assert "libbar" in (info.value.hint or "")


# --------------------------------------------------------------------------- hashes, find-links


def test_requirement_hashes_are_checked_against_the_locked_wheels(world: World) -> None:
    beta = world.root / "index" / "files" / "beta-1.0-py3-none-any.whl"
    good = f"sha256:{sha256_file(beta)}"
    outcome = world.lock(world.spec(hashes={"beta": ("sha256:" + "0" * 64, good)},
                                    requirements_file="requirements.txt"))  # fmt: skip
    assert [w.name for w in outcome.lock.wheels] == ["alpha", "beta", "delta"]
    written = world.lock_path.read_text()

    # the sdist's hash (what a requirements file made elsewhere may hold) is not the wheel's
    sdist = world.root / "index" / "files" / "beta-1.0.tar.gz"
    sdist.write_bytes(b"sdist")
    page = world.root / "index" / "simple" / "beta"
    data = json.loads((page / "index.json").read_text())
    data["files"].append({"filename": sdist.name, "url": f"../../files/{sdist.name}",
                          "hashes": {"sha256": sha256_file(sdist)}})  # fmt: skip
    (page / "index.json").write_text(json.dumps(data))
    spec = world.spec(hashes={"beta": (f"sha256:{sha256_file(sdist)}",)},
                      requirements_file="requirements.txt")  # fmt: skip
    with pytest.raises(LockError) as info:
        world.lock(spec)
    msg = info.value.message
    assert msg.startswith("requirements.txt: beta 1.0:")
    assert good in msg and f"sha256:{sha256_file(sdist)}" in msg
    assert "beta-1.0.tar.gz (the 1.0 source distribution)" in (info.value.hint or "")
    assert world.lock_path.read_text() == written  # the failed lock wrote nothing


def test_find_links_wheels_are_locked_portably_and_fetched_by_hash(
    world: World, tmp_path: Path
) -> None:
    from hardflow.build.pipeline import fetch_inputs
    from hardflow.errors import FetchError, TrustError
    from hardflow.lock.fetch import Cache
    from hardflow.progress import NullProgress

    folder = world.root / "wheels"
    local = build_wheel(folder, "epsilon", "0.1")  # on no index
    spec = world.spec(requirements=("alpha", "delta", "epsilon"), find_links=(str(folder),))
    outcome = world.lock(spec)
    eps = next(w for w in outcome.lock.wheels if w.name == "epsilon")
    assert eps.origin == FIND_LINKS and eps.filename == local.name
    assert (eps.sha256, eps.size) == (sha256_file(local), local.stat().st_size)
    text = world.lock_path.read_text()
    assert str(folder) not in text and str(tmp_path) not in text  # no host path
    assert read_lock(world.lock_path) == outcome.lock
    # entries from an index keep the old shape (no origin key): old locks stay as they are
    data = json.loads(text)
    assert [w.get("origin") for w in data["wheels"]] == [None, None, None, "find-links"]

    wheel_only = replace(outcome.lock, debs=(), wheels=(eps,))  # no index needed
    _, got = fetch_inputs(spec, wheel_only, Cache(tmp_path / "c1"), NullProgress())
    fetched = got[0].path
    assert fetched.read_bytes() == local.read_bytes()
    assert fetched.is_relative_to(tmp_path / "c1")

    local.write_bytes(local.read_bytes() + b"x")  # changed after the lock
    with pytest.raises(TrustError) as changed:
        fetch_inputs(spec, wheel_only, Cache(tmp_path / "c2"), NullProgress())
    assert str(local) in changed.value.message and eps.sha256 in changed.value.message
    local.unlink()
    with pytest.raises(FetchError) as gone:
        fetch_inputs(spec, wheel_only, Cache(tmp_path / "c3"), NullProgress())
    assert local.name in gone.value.message and "find-links" in gone.value.message


# --------------------------------------------------------------------------- one-off builds


def test_derived_lock_path_is_in_the_download_cache(tmp_path: Path) -> None:
    spec = ImageSpec("acme/airflow", "3.1", DebianSpec(("trixie",)), PythonSpec(**PY))
    path = derived_lock_path(spec, tmp_path)
    digest = spec.lock_checksum().removeprefix("sha256:")[:16]
    assert path == tmp_path / "locks" / f"acme_airflow-3.1-{digest}.lock.json"
    assert derived_lock_path(spec).parent == default_cache_dir() / "locks"
    other = replace(spec, python=PythonSpec(**PY, requirements=("six",)))
    assert derived_lock_path(other, tmp_path) != path


def test_ensure_lock_makes_once_then_reuses_without_resolving(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = world.spec()
    path = derived_lock_path(spec, world.root / "cache")
    config = IndexConfig(index_url=world.index.url)
    made = ensure_lock(spec, path, env=world.env, index_config=config)
    assert not made.up_to_date and path.is_file()

    def no_resolving(*args: object, **kwargs: object) -> None:
        raise AssertionError("ensure_lock resolved although the lock matched")

    monkeypatch.setattr(lock_resolve, "resolve", no_resolving)
    monkeypatch.setattr(lock_resolve, "load_indices", no_resolving)
    monkeypatch.setattr(lock_resolve, "resolve_mirrors", no_resolving)
    again = ensure_lock(spec, path)
    assert again.up_to_date and again.lock == made.lock

    # a damaged cached lock is made again rather than reported
    path.write_text("{")
    with pytest.raises(AssertionError, match="resolved although"):
        ensure_lock(spec, path)


def test_ensure_lock_prefers_the_base_lock_pins(world: World) -> None:
    base = world.lock().lock
    world.publish(build_wheel(world.wheels_dir, "delta", "2.0"))
    world.republish_debs([FakePackage("libbar", "1.1", depends="libc6")])
    derived = world.spec(requirements=("alpha", "delta", "gamma"))
    world.publish(build_wheel(world.wheels_dir, "gamma", "1.0"))
    path = derived_lock_path(derived, world.root / "cache")
    outcome = ensure_lock(derived, path, prefer=base, env=world.env,
                          index_config=IndexConfig(index_url=world.index.url))  # fmt: skip
    versions = {w.name: w.version for w in outcome.lock.wheels}
    assert versions == {"alpha": "1.0", "beta": "1.0", "delta": "1.0", "gamma": "1.0"}
    assert {d.name: d.version for d in outcome.lock.debs}["libbar"] == "1.0"


@pytest.mark.network
def test_python_nvd3_fails_the_lock_naming_it(tmp_path: Path) -> None:
    """The real case against the host's index: Airflow 2's chart library has no wheel."""
    spec = ImageSpec(
        "test/nvd3", "1", DebianSpec(("trixie",), packages=("bash",)),
        PythonSpec("3.13", requirements=("python-nvd3",), glibc="2.41"),
    )  # fmt: skip
    with pytest.raises(LockError) as info:
        make_lock(spec, tmp_path / "nvd3.lock.json")
    assert "python-nvd3" in info.value.message
    assert "no wheel for CPython 3.13" in info.value.message
    hint = info.value.hint or ""
    assert "find-links" in hint and "requirements" in hint
    assert not (tmp_path / "nvd3.lock.json").exists()
