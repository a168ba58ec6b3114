"""Locking with uv against a local fixture index (no real network), plus one real-index test."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.errors import LockError, ResolveError
from hardflow.lock.model import FIND_LINKS, LockedWheel
from hardflow.pypi.index import IndexConfig, index_config_from_host
from hardflow.pypi.resolve import resolve, target_tags, wheel_rank
from helpers.fixtures_wheels import IndexServer, build_wheel, sha256_file, write_index

ARGS = ("3.13", "2.41", "x86_64")


@pytest.fixture
def isolated_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uv without the host's configuration and with a fresh cache."""
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL",
                 "UV_FIND_LINKS", "UV_OFFLINE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fixture_index(tmp_path: Path, isolated_uv: None) -> Iterator[tuple[IndexServer, Path]]:
    build = tmp_path / "build"
    wheels = [
        build_wheel(build, "alpha", "1.0",
                    requires=["beta>=1", 'gamma; extra == "fast"', 'delta; python_version < "3"'],
                    files={"alpha/__init__.py": b""}),
        build_wheel(build, "beta", "1.0"),
        build_wheel(build, "beta", "2.0"),
        build_wheel(build, "beta", "2.0", tag="cp313-cp313-manylinux_2_17_x86_64"),
        build_wheel(build, "beta", "2.0", tag="cp313-cp313-musllinux_1_2_x86_64"),
        build_wheel(build, "gamma", "0.5"),
        build_wheel(build, "native", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64"),
    ]  # fmt: skip
    root = write_index(tmp_path / "index", wheels)
    with IndexServer(root) as server:
        yield server, root / "files"


def _by_name(locked: tuple[LockedWheel, ...]) -> dict[str, LockedWheel]:
    return {w.name: w for w in locked}


def test_resolve_two_packages_with_dependency(fixture_index: tuple[IndexServer, Path]) -> None:
    server, files = fixture_index
    config = IndexConfig(index_url=server.url)
    locked = resolve(["alpha"], *ARGS, config)
    got = _by_name(locked)
    assert sorted(got) == ["alpha", "beta"]
    assert got["alpha"].version == "1.0"
    assert got["beta"].version == "2.0"
    # the most specific wheel for cp313/manylinux, not the pure or musl one
    assert got["beta"].filename == "beta-2.0-cp313-cp313-manylinux_2_17_x86_64.whl"
    for w in locked:
        assert w.sha256 == sha256_file(files / w.filename)
    assert [w.name for w in locked] == sorted(w.name for w in locked)


def test_resolve_extras_and_markers(fixture_index: tuple[IndexServer, Path]) -> None:
    server, _ = fixture_index
    locked = resolve(["alpha[fast]"], *ARGS, IndexConfig(index_url=server.url))
    assert sorted(_by_name(locked)) == ["alpha", "beta", "gamma"]  # delta's marker is false


def test_resolve_keeps_previous_pins_unless_upgrade(
    fixture_index: tuple[IndexServer, Path],
) -> None:
    server, files = fixture_index
    config = IndexConfig(index_url=server.url)
    previous = [
        LockedWheel("alpha", "1.0", "alpha-1.0-py3-none-any.whl", "0" * 64, 0),
        LockedWheel("beta", "1.0", "beta-1.0-py3-none-any.whl", "0" * 64, 0),
    ]
    kept = _by_name(resolve(["alpha"], *ARGS, config, previous=previous))
    assert kept["beta"].version == "1.0"
    assert kept["beta"].sha256 == sha256_file(files / "beta-1.0-py3-none-any.whl")
    upgraded = _by_name(resolve(["alpha"], *ARGS, config, upgrade=True, previous=previous))
    assert upgraded["beta"].version == "2.0"
    # a pin that no longer satisfies the requirements is dropped, not an error
    moved = _by_name(resolve(["alpha", "beta>=2"], *ARGS, config, previous=previous))
    assert moved["beta"].version == "2.0"


def test_resolve_no_compatible_wheel_names_package(
    fixture_index: tuple[IndexServer, Path],
) -> None:
    server, _ = fixture_index
    with pytest.raises(LockError) as info:  # only a cp311 wheel: none for CPython 3.13
        resolve(["native"], *ARGS, IndexConfig(index_url=server.url))
    assert info.value.message.startswith("native 1.0: no wheel for CPython 3.13")
    assert "find-links" in (info.value.hint or "")


def add_sdist(root: Path, name: str, version: str) -> None:
    """List a source distribution (and no wheel) for ``name`` in a write_index tree."""
    sdist = root / "files" / f"{name}-{version}.tar.gz"
    sdist.write_bytes(b"not really a tarball")
    digest = sha256_file(sdist)
    page = root / "simple" / name
    page.mkdir(parents=True, exist_ok=True)
    href = f"../../files/{sdist.name}"
    (page / "index.html").write_text(f'<a href="{href}#sha256={digest}">{sdist.name}</a>\n')
    (page / "index.json").write_text(json.dumps({
        "meta": {"api-version": "1.1"}, "name": name, "versions": [version],
        "files": [{"filename": sdist.name, "url": href, "hashes": {"sha256": digest}}],
    }))  # fmt: skip


@pytest.fixture
def sdist_index(tmp_path: Path, isolated_uv: None) -> Iterator[IndexServer]:
    """``dash`` 1.0 depends on ``chart``, which has a source distribution only (python-nvd3)."""
    build = tmp_path / "build"
    wheels = [build_wheel(build, "dash", "1.0", requires=["chart>=0.1"])]
    root = write_index(tmp_path / "index", wheels)
    add_sdist(root, "chart", "0.5")
    with IndexServer(root) as server:
        yield server


def test_a_transitive_sdist_only_dependency_is_a_clear_lock_error(
    sdist_index: IndexServer,
) -> None:
    with pytest.raises(LockError) as info:
        resolve(["dash"], *ARGS, IndexConfig(index_url=sdist_index.url))
    err = info.value
    assert err.message.startswith("chart")
    assert "no wheel for CPython 3.13" in err.message
    assert "dash" in err.message  # uv's derivation: who needs it
    hint = err.hint or ""
    assert 'find-links = ["wheels/"]' in hint and 'excludes = ["chart"]' in hint
    assert "Traceback" not in err.diagnostics()


def test_a_local_wheel_folder_answers_the_missing_wheel(
    sdist_index: IndexServer, tmp_path: Path
) -> None:
    folder = tmp_path / "spec" / "wheels"
    local = build_wheel(folder, "chart", "0.5")
    locked = _by_name(resolve(["dash"], *ARGS, IndexConfig(index_url=sdist_index.url),
                              find_links=[str(folder)]))  # fmt: skip
    chart = locked["chart"]
    assert chart.origin == FIND_LINKS
    assert chart.filename == local.name  # a file name, never the host path
    assert (chart.sha256, chart.size) == (sha256_file(local), local.stat().st_size)
    assert locked["dash"].origin == ""  # from the index, as before


def test_upgrade_packages_frees_only_those(fixture_index: tuple[IndexServer, Path]) -> None:
    server, _ = fixture_index
    config = IndexConfig(index_url=server.url)
    previous = [
        LockedWheel("alpha", "1.0", "alpha-1.0-py3-none-any.whl", "0" * 64, 0),
        LockedWheel("beta", "1.0", "beta-1.0-py3-none-any.whl", "0" * 64, 0),
        LockedWheel("gamma", "0.5", "gamma-0.5-py3-none-any.whl", "0" * 64, 0),
    ]
    got = _by_name(resolve(["alpha[fast]"], *ARGS, config, previous=previous,
                           upgrade_packages=["Beta"]))  # fmt: skip
    assert got["beta"].version == "2.0"
    assert (got["alpha"].version, got["gamma"].version) == ("1.0", "0.5")


def test_resolve_unsatisfiable_reports_uv_message(
    fixture_index: tuple[IndexServer, Path],
) -> None:
    server, _ = fixture_index
    with pytest.raises(ResolveError) as info:
        resolve(["alpha==9"], *ARGS, IndexConfig(index_url=server.url))
    assert "alpha" in info.value.message and "9" in info.value.message
    assert info.value.hint


def test_resolve_rejects_bad_requirement(isolated_uv: None) -> None:
    with pytest.raises(ResolveError, match="invalid Python requirement"):
        resolve(["--index-url http://127.0.0.1:9/"], *ARGS, IndexConfig())


def test_resolve_nothing() -> None:
    assert resolve([], *ARGS, IndexConfig()) == ()


@pytest.mark.network
def test_python_nvd3_has_no_wheel_for_python_3_13() -> None:
    """The real case, against the host's index: an sdist-only distribution."""
    with pytest.raises(LockError) as info:
        resolve(["python-nvd3"], *ARGS, index_config_from_host())
    assert info.value.message.startswith("python-nvd3")
    assert "no wheel for CPython 3.13" in info.value.message
    assert "find-links" in (info.value.hint or "")


@pytest.mark.network
def test_resolve_real_airflow() -> None:
    started = time.monotonic()
    locked = resolve(["apache-airflow==3.3.2"], *ARGS, index_config_from_host())
    elapsed = time.monotonic() - started
    print(f"resolved {len(locked)} wheels in {elapsed:.1f}s")
    names = {w.name for w in locked}
    assert len(locked) > 100
    assert {"apache-airflow", "apache-airflow-core"} <= names
    ranks = {t: i for i, t in enumerate(target_tags(*ARGS))}
    for w in locked:
        assert wheel_rank(w.filename, ranks) is not None, w.filename
        assert len(w.sha256) == 64


def test_a_find_links_folder_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(ResolveError, match=r"python\.find-links: .*/nowhere is not a folder"):
        resolve(["alpha"], *ARGS, IndexConfig(), find_links=[str(tmp_path / "nowhere")])
