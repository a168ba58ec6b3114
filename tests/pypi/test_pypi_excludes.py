"""``[python] excludes``: a declared dependency left out of the resolution (uv override)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.errors import ResolveError, SpecError
from hardflow.pypi.index import IndexConfig
from hardflow.pypi.resolve import exclude_overrides, resolve
from hardflow.spec import load_embedded, parse_spec
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index

ARGS = ("3.11", "2.36", "x86_64")


@pytest.fixture
def index_without_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[IndexServer]:
    """``app`` depends on ``chart``, which has no wheel at all (like python-nvd3)."""
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL",
                 "UV_FIND_LINKS", "UV_OFFLINE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    build = tmp_path / "build"
    wheels = [
        build_wheel(build, "app", "1.0", requires=["chart>=0.1", "util"]),
        build_wheel(build, "util", "1.0"),
    ]
    with IndexServer(write_index(tmp_path / "index", wheels)) as server:
        yield server


def test_overrides_text() -> None:
    assert exclude_overrides(["Python_NVD3"]) == "python-nvd3 ; sys_platform == 'never'\n"
    assert exclude_overrides([]) == ""


def test_unresolvable_without_exclude(index_without_wheel: IndexServer) -> None:
    with pytest.raises(ResolveError, match="chart"):
        resolve(["app"], *ARGS, IndexConfig(index_url=index_without_wheel.url))


def test_exclude_drops_the_dependency(index_without_wheel: IndexServer) -> None:
    config = IndexConfig(index_url=index_without_wheel.url)
    locked = resolve(["app"], *ARGS, config, excludes=["chart"])
    assert sorted(w.name for w in locked) == ["app", "util"]


def test_excluding_a_direct_requirement_is_an_error() -> None:
    with pytest.raises(ResolveError, match=r"python\.excludes names .app."):
        resolve(["app==1"], *ARGS, IndexConfig(index_url="http://127.0.0.1:9/"), excludes=["app"])


def _spec_data(**python: object) -> dict[str, object]:
    return {
        "name": "x/y",
        "tag": "1",
        "debian": {"suites": ["bookworm"], "packages": ["bash"]},
        "python": {"version": "3.11", **python},
    }


def test_spec_excludes_parsed_and_validated() -> None:
    spec = parse_spec(_spec_data(excludes=["python-nvd3"]), "t.toml")
    assert spec.python.excludes == ("python-nvd3",)
    with pytest.raises(SpecError, match=r"python\.excludes"):
        parse_spec(_spec_data(excludes=["not a name"]), "t.toml")


def test_spec_excludes_shape_the_lock_checksum_only_when_set() -> None:
    plain = parse_spec(_spec_data(), "t.toml")
    excluded = parse_spec(_spec_data(excludes=["chart"]), "t.toml")
    assert plain.lock_checksum() != excluded.lock_checksum()
    assert plain.checksum() != excluded.checksum()


def test_existing_locks_stay_valid() -> None:
    """Adding the key must not invalidate the locks of specs that do not use it."""
    from hardflow.lock.model import read_lock
    from hardflow.spec import resolve_spec_arg

    for name in ("default", "core", "airflow2"):
        spec, lock_path = resolve_spec_arg(name)
        assert read_lock(lock_path).spec_checksum == spec.lock_checksum(), name
    assert load_embedded("airflow2").python.excludes == ("python-nvd3",)
