import json
from pathlib import Path

import pytest

from hardflow.errors import LockError
from hardflow.lock.model import (
    FIND_LINKS,
    Lock,
    LockedDeb,
    LockedSuite,
    LockedWheel,
    check_matches,
    diff_locks,
    read_lock,
    write_lock,
)


def deb(name: str, version: str) -> LockedDeb:
    return LockedDeb(
        name, version, "amd64", "trixie", f"pool/main/x/{name}.deb", "0" * 64, 1, name, version
    )


def whl(name: str, version: str) -> LockedWheel:
    return LockedWheel(name, version, f"{name}-{version}-py3-none-any.whl", "1" * 64, 1)


def lock(*items: object, checksum: str = "sha256:" + "ab" * 32) -> Lock:
    return Lock(
        spec_checksum=checksum,
        suites=(LockedSuite("trixie", "Sat, 15 Nov 2025 09:00:00 UTC", 1763197200),),
        debs=tuple(i for i in items if isinstance(i, LockedDeb)),
        wheels=tuple(i for i in items if isinstance(i, LockedWheel)),
    )


def test_roundtrip_and_sde(tmp_path: Path) -> None:
    lk = lock(deb("bash", "5.2"), whl("six", "1.0"))
    path = tmp_path / "x.lock.json"
    write_lock(lk, path)
    assert read_lock(path) == lk
    assert lk.source_date_epoch == 1763197200
    # deterministic text, no temp files left behind
    assert path.read_text() == lk.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["x.lock.json"]


def test_mismatch_says_run_lock(tmp_path: Path) -> None:
    with pytest.raises(LockError) as exc:
        check_matches(lock(), "sha256:other", tmp_path / "l.json")
    assert "hardflow lock" in exc.value.diagnostics()


def test_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="no lock file"):
        read_lock(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"lock_version": 1, "debs": []}')
    with pytest.raises(LockError, match="malformed"):
        read_lock(bad)
    bad.write_text("{")
    with pytest.raises(LockError, match="not valid JSON"):
        read_lock(bad)


def test_diff() -> None:
    old = lock(deb("bash", "5.2"), deb("tini", "0.19"), whl("six", "1.0"))
    new = lock(deb("bash", "5.3"), whl("six", "1.0"), whl("idna", "3.0"))
    d = diff_locks(old, new)
    assert d.added == (("pypi:idna", "3.0"),)
    assert d.removed == (("deb:tini", "0.19"),)
    assert d.changed == (("deb:bash", "5.2", "5.3"),)
    assert diff_locks(new, new).empty


EMBEDDED_LOCKS = sorted(
    p.name.removesuffix(".lock.json")
    for p in (Path(__file__).parents[2] / "src" / "hardflow" / "specs").glob("*.lock.json")
)


@pytest.mark.parametrize("name", EMBEDDED_LOCKS)
def test_the_embedded_locks_pass_the_strict_schema(name: str) -> None:
    from importlib import resources

    path = Path(str(resources.files("hardflow.specs").joinpath(f"{name}.lock.json")))
    lk = read_lock(path)
    assert lk.debs and lk.to_json() == path.read_text()  # nothing lost or reordered
    assert all(w.origin == "" for w in lk.wheels)  # index wheels: no origin key


def test_a_find_links_wheel_round_trips_with_its_origin_only(tmp_path: Path) -> None:
    local = LockedWheel("chart", "0.5", "chart-0.5-py3-none-any.whl", "2" * 64, 7, FIND_LINKS)
    lk = lock(local, whl("six", "1.0"))  # in the order the file sorts them
    data = json.loads(lk.to_json())
    assert data["wheels"][0] == {"name": "chart", "version": "0.5", "origin": "find-links",
                                 "filename": "chart-0.5-py3-none-any.whl", "sha256": "2" * 64,
                                 "size": 7}  # fmt: skip
    assert "origin" not in data["wheels"][1]
    path = tmp_path / "l.json"
    write_lock(lk, path)
    got = read_lock(path)
    assert got == lk and got.wheels[0].from_find_links and not got.wheels[1].from_find_links


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("origin", "/home/me/wheels", "'find-links'"),
        ("origin", "", "'find-links'"),
        ("origin", None, "'find-links'"),
        ("filename", "../chart-0.5-py3-none-any.whl", "a plain name"),
        ("filename", "wheels/chart-0.5-py3-none-any.whl", "a plain name"),
        ("filename", "/tmp/chart-0.5-py3-none-any.whl", "a plain name"),
    ],
)
def test_malformed_find_links_entries_are_refused(
    tmp_path: Path, key: str, value: object, expected: str
) -> None:
    local = LockedWheel("chart", "0.5", "chart-0.5-py3-none-any.whl", "2" * 64, 7, FIND_LINKS)
    data = json.loads(lock(local).to_json())
    data["wheels"][0][key] = value
    path = tmp_path / "l.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LockError, match=rf"wheels\[0\] \(chart\): key '{key}'") as info:
        read_lock(path)
    assert expected in info.value.message


def test_strict_types_bool_is_not_an_int(tmp_path: Path) -> None:
    lk = lock(deb("bash", "5.2"))
    data = json.loads(lk.to_json())
    data["debs"][0]["size"] = True
    path = tmp_path / "l.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LockError, match=r"debs\[0\] \(bash\): key 'size'.*found boolean True"):
        read_lock(path)
