"""Wheel selection for the target interpreter, and reading uv's pylock output."""

from __future__ import annotations

import pytest
from packaging.tags import Tag

from hardflow.errors import LockError, ResolveError
from hardflow.lock.model import LockedWheel
from hardflow.pypi.resolve import (
    manylinux_platforms,
    parse_pylock,
    pick_wheels,
    preferences_txt,
    select_wheel,
    target_tags,
    uv_platform,
)

TAGS = target_tags("3.13", "2.41", "x86_64")


def test_target_tags_order_and_content() -> None:
    strs = [str(t) for t in TAGS]
    assert strs[0] == "cp313-cp313-manylinux_2_41_x86_64"
    assert "cp313-cp313-manylinux2014_x86_64" in strs
    assert "cp313-cp313-manylinux1_x86_64" in strs
    assert "cp39-abi3-manylinux_2_17_x86_64" in strs
    assert strs[-1] == "py30-none-any"
    assert not any(t.platform == "linux_x86_64" for t in TAGS)
    assert not any("musllinux" in t.platform for t in TAGS)
    assert not any(t.platform.endswith("manylinux_2_42_x86_64") for t in TAGS)
    # the interpreter's own ABI beats abi3, which beats pure wheels
    assert strs.index("cp313-cp313-manylinux_2_17_x86_64") < strs.index(
        "cp313-abi3-manylinux_2_41_x86_64"
    )
    assert strs.index("cp38-abi3-manylinux1_x86_64") < strs.index("py3-none-any")
    assert Tag("cp313", "cp313", "manylinux_2_40_x86_64") in TAGS


def test_manylinux_platforms_with_aliases() -> None:
    plats = manylinux_platforms("2.17", "amd64")
    assert plats[:2] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert plats[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"]
    assert "manylinux2010_x86_64" in plats


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            [
                "pkg-1.0-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "pkg-1.0-cp313-cp313-manylinux_2_28_x86_64.whl",
                "pkg-1.0-cp313-cp313-musllinux_1_2_x86_64.whl",
                "pkg-1.0-cp312-cp312-manylinux_2_34_x86_64.whl",
                "pkg-1.0-cp313-cp313-linux_x86_64.whl",
                "pkg-1.0-cp313-cp313-manylinux_2_42_x86_64.whl",
                "pkg-1.0-py3-none-any.whl",
            ],
            "pkg-1.0-cp313-cp313-manylinux_2_28_x86_64.whl",
        ),
        (
            ["pkg-1.0-py3-none-any.whl", "pkg-1.0-cp39-abi3-manylinux2014_x86_64.whl"],
            "pkg-1.0-cp39-abi3-manylinux2014_x86_64.whl",
        ),
        (
            ["pkg-1.0-cp313-cp313t-manylinux_2_17_x86_64.whl", "pkg-1.0-py3-none-any.whl"],
            "pkg-1.0-py3-none-any.whl",
        ),
        (
            ["pkg-1.0-cp313-cp313-manylinux_2_17_aarch64.whl", "pkg-1.0-py2.py3-none-any.whl"],
            "pkg-1.0-py2.py3-none-any.whl",
        ),
        (
            ["pkg-1.0-1-py3-none-any.whl", "pkg-1.0-2-py3-none-any.whl"],
            "pkg-1.0-2-py3-none-any.whl",
        ),
    ],
)
def test_select_wheel_picks_most_specific(files: list[str], expected: str) -> None:
    assert select_wheel("pkg", files, TAGS) == expected


def test_select_wheel_none_compatible_names_package_and_files() -> None:
    files = ["pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "pkg-1.0-cp313-cp313-win_amd64.whl"]
    with pytest.raises(ResolveError) as info:
        select_wheel("pkg 1.0", files, TAGS)
    assert "pkg 1.0" in info.value.message
    for f in files:
        assert f in info.value.message


def test_uv_platform_is_highest_known_not_above_glibc() -> None:
    assert uv_platform("2.41", "x86_64") == "x86_64-manylinux_2_40"
    assert uv_platform("2.36", "amd64") == "x86_64-manylinux_2_36"
    with pytest.raises(ResolveError):
        uv_platform("2.10", "x86_64")
    with pytest.raises(ResolveError):
        uv_platform("two", "x86_64")


_URL = "https://idx.invalid/f/"
_NATIVE = "native_pkg-2.0-cp313-cp313-manylinux_2_{}_x86_64.whl"
PYLOCK = f"""
lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.13"

[[packages]]
name = "Native_Pkg"
version = "2.0"
wheels = [
    {{ url = "{_URL}{_NATIVE.format(17)}", hashes = {{ sha256 = "{"a" * 64}" }} }},
    {{ url = "{_URL}{_NATIVE.format(34)}", size = 42, hashes = {{ sha256 = "{"b" * 64}" }} }},
]

[[packages]]
name = "pure"
version = "1.0"
wheels = [{{ url = "{_URL}pure-1.0-py3-none-any.whl", hashes = {{ sha256 = "{"c" * 64}" }} }}]
"""


def test_pick_wheels_from_pylock() -> None:
    locked = pick_wheels(parse_pylock(PYLOCK), TAGS)
    assert locked == (
        LockedWheel("native-pkg", "2.0", _NATIVE.format(34), "b" * 64, 42),
        LockedWheel("pure", "1.0", "pure-1.0-py3-none-any.whl", "c" * 64, 0),
    )


def test_pick_wheels_sdist_only_is_an_error() -> None:
    text = '[[packages]]\nname = "src"\nversion = "1"\nsdist = { url = "x.tar.gz" }\n'
    with pytest.raises(LockError, match="src 1: no wheel for the target, only a source") as info:
        pick_wheels(parse_pylock(text), TAGS)
    assert 'excludes = ["src"]' in (info.value.hint or "")


def test_parse_pylock_garbage() -> None:
    with pytest.raises(ResolveError, match="cannot read"):
        parse_pylock("[[packages]\n")


def test_preferences_txt_pins_previous_versions() -> None:
    prev = [LockedWheel("b", "1.0", "b-1.0-py3-none-any.whl", "0" * 64, 0),
            LockedWheel("a", "2.0", "a-2.0-py3-none-any.whl", "1" * 64, 0)]  # fmt: skip
    assert preferences_txt(prev) == "a==2.0\nb==1.0\n"
