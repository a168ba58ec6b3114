# ruff: noqa: E501  (uv's messages below are quoted verbatim, long lines included)
"""The no-wheel answer (from uv's derivation) and the requirements file's hashes."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest

from hardflow.errors import LockError
from hardflow.lock.model import LockedWheel
from hardflow.pypi.checks import MissingWheel, check_hashes, missing_wheels, no_wheel_error

# What uv 0.13 prints (verbatim shapes) for the cases the lock meets.
UV_ALL_VERSIONS = """error: No solution found when resolving dependencies
  cause: Because all versions of python-nvd3 have no usable wheels and you require python-nvd3, we can conclude that your requirements are unsatisfiable.

hint: Wheels are required for `python-nvd3` because building from source is disabled for all packages (i.e., with `--no-build`)
"""
UV_TRANSITIVE = """error: No solution found when resolving dependencies
  cause: Because python-nvd3>=0.15.0 has no usable wheels and apache-airflow==2.10.5 depends on python-nvd3>=0.15.0, we can conclude that apache-airflow==2.10.5 cannot be used.
         And because you require apache-airflow==2.10.5, we can conclude that your requirements are unsatisfiable.

hint: Wheels are required for `python-nvd3` because building from source is disabled for all packages (i.e., with `--no-build`)
"""
UV_PINNED = """  cause: Because numpy==1.26.4 has no usable wheels and you require numpy==1.26.4, we can conclude that your requirements are unsatisfiable."""
UV_PLATFORMS = """error: No solution found when resolving dependencies
  cause: Because pywin32<=306 has no wheels with a matching Python ABI tag (e.g., `cp313`) and only the following versions of pywin32 are available:
             pywin32<=306
             pywin32>=307
         we can conclude that pywin32<307 cannot be used.
         And because pywin32>=307 has no wheels with a matching platform tag (e.g., `manylinux_2_40_x86_64`) and you require pywin32, we can conclude that your requirements are unsatisfiable.
"""
UV_CONFLICT = """error: No solution found when resolving dependencies
  cause: Because you require alpha==9 and there is no version of alpha==9, we can conclude that your requirements are unsatisfiable.
"""


def test_missing_wheels_are_read_from_uv_derivations() -> None:
    assert missing_wheels(UV_ALL_VERSIONS) == [MissingWheel("python-nvd3", "")]
    assert missing_wheels(UV_TRANSITIVE) == [MissingWheel("python-nvd3", ">=0.15.0")]
    assert missing_wheels(UV_PINNED) == [MissingWheel("numpy", "==1.26.4")]
    assert [m.name for m in missing_wheels(UV_PLATFORMS)] == ["pywin32"]
    assert missing_wheels(UV_CONFLICT) == []
    assert str(MissingWheel("numpy", "==1.26.4")) == "numpy 1.26.4"
    assert str(MissingWheel("python-nvd3", ">=0.15.0")) == "python-nvd3 (>=0.15.0)"


def test_no_wheel_error_names_the_distribution_and_the_ways_out() -> None:
    err = no_wheel_error(UV_TRANSITIVE, "3.13", "x86_64-manylinux_2_40", {"apache-airflow"})
    assert isinstance(err, LockError)
    assert err.message.startswith("python-nvd3 (>=0.15.0): no wheel for CPython 3.13")
    assert "apache-airflow==2.10.5 depends on python-nvd3" in err.message  # uv's why
    hint = err.hint or ""
    assert 'find-links = ["wheels/"]' in hint
    assert 'excludes = ["python-nvd3"]' in hint


def test_a_direct_requirement_is_not_offered_as_an_exclude() -> None:
    err = no_wheel_error(UV_ALL_VERSIONS, "3.13", "x86_64-manylinux_2_40", {"python-nvd3"})
    assert err is not None
    hint = err.hint or ""
    assert "excludes" not in hint
    assert 'drop "python-nvd3" from [python] requirements' in hint
    assert "find-links" in hint


def test_other_failures_are_not_dressed_as_missing_wheels() -> None:
    assert no_wheel_error(UV_CONFLICT, "3.13", "x86_64-manylinux_2_40") is None


# --------------------------------------------------------------------------- hashes

WHEEL = LockedWheel("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "a" * 64, 11)
OTHER = LockedWheel("idna", "3.10", "idna-3.10-py3-none-any.whl", "c" * 64, 12)


def test_hashes_allow_the_locked_wheel() -> None:
    check_hashes([WHEEL, OTHER], {"six": ("sha256:" + "0" * 64, "sha256:" + "a" * 64)},
                 "reqs.txt", "CPython 3.13")  # fmt: skip
    check_hashes([WHEEL], {}, "", "CPython 3.13")
    # names are compared canonically; a hashed name the lock does not have is not an error
    check_hashes([WHEEL], {"Six": ("sha256:" + "a" * 64,), "absent": ("sha256:" + "1" * 64,)},
                 "reqs.txt", "CPython 3.13")  # fmt: skip


def test_a_wheel_outside_the_hashes_fails_naming_everything() -> None:
    allowed = ("sha256:" + "b" * 64, "sha256:" + "d" * 64)
    with pytest.raises(LockError) as info:
        check_hashes([OTHER, WHEEL], {"six": allowed}, "requirements.txt", "CPython 3.13, x")
    msg = info.value.message
    assert msg.startswith("requirements.txt: six 1.17.0:")
    assert WHEEL.filename in msg
    assert "sha256:" + "a" * 64 in msg  # found
    assert allowed[0] in msg and allowed[1] in msg  # expected
    assert "another platform" in (info.value.hint or "")


def test_the_hint_says_which_file_the_allowed_hashes_are_of() -> None:
    def identify(name: str, digests: Collection[str]) -> Mapping[str, str]:
        assert name == "six"
        files = {"b" * 64: "six-1.17.0.tar.gz", "d" * 64: "six-1.17.0-cp311-cp311-win_amd64.whl"}
        return {d: files[d] for d in digests if d in files}

    allowed = ("sha256:" + "b" * 64, "sha256:" + "d" * 64)
    with pytest.raises(LockError) as info:
        check_hashes([WHEEL], {"six": allowed}, "reqs.txt", "CPython 3.13", identify=identify)
    hint = info.value.hint or ""
    assert "six-1.17.0.tar.gz (the 1.17.0 source distribution)" in hint
    assert "win_amd64" in hint


def test_an_unreachable_index_only_makes_the_hint_generic() -> None:
    def identify(name: str, digests: Collection[str]) -> Mapping[str, str]:
        raise OSError("offline")

    with pytest.raises(LockError, match=r"six 1\.17\.0"):
        check_hashes([WHEEL], {"six": ("sha256:" + "b" * 64,)}, "r.txt", "x", identify=identify)
