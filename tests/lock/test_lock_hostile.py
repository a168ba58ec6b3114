"""Hostile lock files: every field is checked before it can become a path, a URL or a number.

A lock may come from anywhere (a pull request, another machine). A digest that is a path, a
file name that climbs, a size that is not a number: each is a LockError that names the lock
file, the entry, the key, what was expected and what was found, and nothing outside the test's
directory is touched on the way.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardflow.errors import LockError
from hardflow.lock.model import Lock, parse_lock, read_lock

HEX = "ab" * 32


def valid() -> dict[str, Any]:
    return {
        "lock_version": 1,
        "spec_checksum": "sha256:" + "cd" * 32,
        "suites": [{"name": "trixie-security", "date": "Sat, 10 May 2025 10:00:00 UTC",
                    "epoch": 1746871200}],
        "debs": [
            {"name": "base-files", "version": "13.8", "architecture": "amd64", "suite": "trixie",
             "filename": "pool/main/b/base-files/base-files_13.8_amd64.deb", "sha256": HEX,
             "size": 10, "source": "base-files", "source_version": "13.8"},
            {"name": "libc6", "version": "2.41-12", "architecture": "amd64",
             "suite": "trixie-security",
             "filename": "pool/updates/main/g/glibc/libc6_2.41-12_amd64.deb", "sha256": HEX,
             "size": 10, "source": "glibc", "source_version": "1:2.41-12"},
        ],
        "wheels": [{"name": "typing-extensions", "version": "4.12.2",
                    "filename": "typing_extensions-4.12.2-py3-none-any.whl", "sha256": HEX,
                    "size": 0}],
    }  # fmt: skip


def with_field(section: str, index: int, key: str, value: object) -> dict[str, Any]:
    data = valid()
    data[section][index][key] = value
    return data


def test_the_valid_lock_parses() -> None:
    lock = parse_lock(json.dumps(valid()), "x.lock.json")
    assert [d.name for d in lock.debs] == ["base-files", "libc6"]
    assert lock.source_date_epoch == 1746871200


@pytest.mark.parametrize(
    ("section", "index", "key", "value", "expected"),
    [
        ("debs", 1, "sha256", "/etc/passwd", "64 lowercase hex"),
        ("debs", 1, "sha256", "../../../../etc/passwd", "64 lowercase hex"),
        ("debs", 1, "sha256", "ab/../../" + "a" * 56, "64 lowercase hex"),
        ("debs", 1, "sha256", 12345, "64 lowercase hex"),
        ("debs", 1, "sha256", HEX.upper(), "64 lowercase hex"),
        ("debs", 1, "sha256", HEX[:-2], "64 lowercase hex"),
        ("debs", 1, "sha256", HEX + "\n", "64 lowercase hex"),
        ("debs", 1, "sha256", None, "64 lowercase hex"),
        ("debs", 1, "filename", "../../etc/x", "pool/"),
        ("debs", 1, "filename", "pool/main/../../../etc/x.deb", "pool/"),
        ("debs", 1, "filename", "pool//main/x.deb", "pool/"),
        ("debs", 1, "filename", "/pool/main/x.deb", "pool/"),
        ("debs", 1, "filename", "pool/main/x.deb\0", "pool/"),
        ("debs", 1, "filename", "https://host.invalid/pool/x.deb", "pool/"),
        ("debs", 1, "size", True, "non-negative integer"),
        ("debs", 1, "size", -1, "non-negative integer"),
        ("debs", 1, "size", "10", "non-negative integer"),
        ("debs", 1, "size", 1.5, "non-negative integer"),
        ("debs", 1, "name", "../../etc/passwd", "Debian package name"),
        ("debs", 1, "name", "libc6/../x", "Debian package name"),
        ("debs", 1, "name", 6, "Debian package name"),
        ("debs", 1, "suite", "../trixie", "suite name"),
        ("debs", 1, "version", "1.0/../../x", "Debian version"),
        ("debs", 1, "architecture", "amd64/../..", "Debian architecture"),
        ("wheels", 0, "filename", "../x.whl", "wheel file name"),
        ("wheels", 0, "filename", "../../typing_extensions-4.12.2-py3-none-any.whl",
         "wheel file name"),
        ("wheels", 0, "filename", "/tmp/typing_extensions-4.12.2-py3-none-any.whl",
         "wheel file name"),
        ("wheels", 0, "filename", "typing_extensions-4.12.2-py3-none-any.tar.gz",
         "wheel file name"),
        ("wheels", 0, "filename", "other-4.12.2-py3-none-any.whl", "wheel file name"),
        ("wheels", 0, "filename", "typing_extensions-9.9-py3-none-any.whl", "wheel file name"),
        ("wheels", 0, "name", "Typing_Extensions", "canonical"),
        ("wheels", 0, "version", "not a version", "PEP 440"),
        ("wheels", 0, "sha256", "sha256:" + HEX, "64 lowercase hex"),
        ("wheels", 0, "size", False, "non-negative integer"),
        ("suites", 0, "epoch", "1746871200", "Unix timestamp"),
        ("suites", 0, "epoch", True, "Unix timestamp"),
        ("suites", 0, "name", "trixie/../../x", "suite name"),
        ("suites", 0, "date", "line\nbreak", "one line"),
    ],
)  # fmt: skip
def test_bad_fields_are_named_with_what_was_expected_and_found(
    section: str, index: int, key: str, value: object, expected: str
) -> None:
    with pytest.raises(LockError) as err:
        parse_lock(json.dumps(with_field(section, index, key, value)), "/srv/x.lock.json")
    message = err.value.message
    assert message.startswith("/srv/x.lock.json: ")
    assert f"{section}[{index}]" in message and f"key '{key}'" in message
    assert expected in message
    assert "found" in message and repr(value)[:20] in message
    assert "hardflow lock" in (err.value.hint or "")


def test_the_entry_is_named_by_position_and_name() -> None:
    with pytest.raises(LockError) as err:
        parse_lock(json.dumps(with_field("debs", 1, "sha256", "/etc/shadow")), "l.json")
    assert "debs[1] (libc6): key 'sha256'" in err.value.message
    assert "found string '/etc/shadow'" in err.value.message


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["debs"][0].update(extra=1), "unknown key 'extra'"),
        (lambda d: d.update(comment="x"), "unknown key 'comment'"),
        (lambda d: d["wheels"][0].pop("sha256"), "missing key 'sha256'"),
        (lambda d: d.update(debs={"a": 1}), "key 'debs': expected an array"),
        (lambda d: d["debs"].append("libc6"), r"debs\[2\]: expected an object"),
        (lambda d: d.update(lock_version=True), "lock_version 1"),
        (lambda d: d.update(lock_version="1"), "lock_version 1"),
        (lambda d: d.update(spec_checksum="sha256:abc"), "key 'spec_checksum'"),
    ],
)
def test_structure_errors(mutate: Any, expected: str) -> None:
    data = valid()
    mutate(data)
    with pytest.raises(LockError, match=expected):
        parse_lock(json.dumps(data), "l.json")


@pytest.mark.parametrize("text", ["[" * 100_000, "1" * 10_000, "\"x\"", "null", "[]", "{}"])
def test_pathological_json_is_a_lock_error(text: str) -> None:
    with pytest.raises(LockError):
        parse_lock(text, "l.json")


def test_read_lock_of_non_utf8_is_a_lock_error(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(LockError, match="not UTF-8"):
        read_lock(path)


def test_a_digest_that_is_a_path_never_reaches_the_cache(tmp_path: Path) -> None:
    """The report's case: a sha256 naming a host file would be 'corrupt' and deleted."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    cache = tmp_path / "cache"
    rel = Path("..") / ".." / ".." / "victim"  # from <cache>/sha256/<xx>/ up to tmp_path
    lock_path = tmp_path / "x.lock.json"
    lock_path.write_text(json.dumps(with_field("debs", 0, "sha256", str(rel))))
    with pytest.raises(LockError, match="sha256"):
        read_lock(lock_path)
    assert victim.read_text() == "precious"
    assert not cache.exists()


# --------------------------------------------------------------------------------------------
# property: whatever a lock holds, parse_lock returns a checked Lock or raises LockError

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["/etc/passwd", "../x.whl", "..", "pool/../x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip


def _checked(lock: Lock) -> None:
    """What a parsed lock guarantees to everything downstream."""
    for item in (*lock.debs, *lock.wheels):
        assert len(item.sha256) == 64 and set(item.sha256) <= set("0123456789abcdef")
        assert type(item.size) is int and item.size >= 0
    for d in lock.debs:
        assert d.filename.startswith("pool/") and ".." not in d.filename.split("/")
        assert "" not in d.filename.split("/")
    for w in lock.wheels:
        assert "/" not in w.filename and w.filename.endswith(".whl")
    for s in lock.suites:
        assert type(s.epoch) is int


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from([
        ("debs", 0, "sha256"), ("debs", 1, "filename"), ("debs", 0, "size"),
        ("debs", 1, "name"), ("wheels", 0, "filename"), ("wheels", 0, "version"),
        ("suites", 0, "epoch"), ("debs", 0, None), ("wheels", None, None), (None, None, None),
    ]),
    value=_JSON,
)  # fmt: skip
def test_any_field_value_gives_a_checked_lock_or_a_lock_error(
    path: tuple[str | None, int | None, str | None], value: object
) -> None:
    data: Any = copy.deepcopy(valid())
    section, index, key = path
    if section is None:
        data = value
    elif index is None:
        data[section] = value
    elif key is None:
        data[section][index] = value
    else:
        data[section][index][key] = value
    try:
        lock = parse_lock(json.dumps(data), "l.json")
    except LockError:
        return
    _checked(lock)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_lock_or_a_lock_error(text: str) -> None:
    with contextlib.suppress(LockError):
        _checked(parse_lock(text, "l.json"))
