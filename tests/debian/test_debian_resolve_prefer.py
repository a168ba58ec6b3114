"""The closure with preferred versions (an existing lock's pins, for ``lock --update --only``)."""

from __future__ import annotations

from hardflow.debian.repo import PackageRecord, SuiteIndex
from hardflow.debian.resolve import resolve_closure


def rec(name: str, version: str, depends: str = "", provides: str = "") -> PackageRecord:
    return PackageRecord(
        name=name, version=version, architecture="amd64", suite="trixie",
        filename=f"pool/main/{name[0]}/{name}/{name}_{version}_amd64.deb", sha256="0" * 64,
        size=1, source=name, source_version=version, depends=depends, pre_depends="",
        provides=provides, essential=False, priority="optional",
    )  # fmt: skip


def versions(
    records: list[PackageRecord], wanted: list[str], prefer: dict[str, str]
) -> dict[str, str]:
    index = SuiteIndex("trixie", "Sat, 10 May 2025 10:00:00 UTC", 1746871200, tuple(records))
    return {r.name: r.version for r in resolve_closure([index], wanted, (), "amd64", prefer)}


UNIVERSE = [
    rec("app", "1.0", depends="libfoo (>= 1)"),
    rec("app", "2.0", depends="libfoo (>= 2), libbar"),
    rec("libfoo", "1.5"),
    rec("libfoo", "2.1"),
    rec("libbar", "1.0"),
    rec("libbar", "1.1"),
    rec("tool", "1.0", depends="libbar"),
]


def test_without_preferences_everything_is_newest() -> None:
    assert versions(UNIVERSE, ["app", "tool"], {}) == {
        "app": "2.0",
        "libfoo": "2.1",
        "libbar": "1.1",
        "tool": "1.0",
    }


def test_preferred_versions_are_kept_where_they_fit() -> None:
    prefer = {"app": "1.0", "libfoo": "1.5", "libbar": "1.0", "tool": "1.0"}
    assert versions(UNIVERSE, ["app", "tool"], prefer) == prefer


def test_a_freed_package_moves_and_drags_what_it_needs() -> None:
    # app is freed (no preference): app 2.0 needs libfoo >= 2, so libfoo leaves its pin;
    # libbar 1.0 still fits and stays
    prefer = {"libfoo": "1.5", "libbar": "1.0", "tool": "1.0"}
    got = versions(UNIVERSE, ["app", "tool"], prefer)
    assert got == {"app": "2.0", "libfoo": "2.1", "libbar": "1.0", "tool": "1.0"}


def test_a_preference_for_a_vanished_version_falls_back_to_the_newest() -> None:
    got = versions(UNIVERSE, ["tool"], {"libbar": "0.9", "tool": "1.0"})
    assert got == {"tool": "1.0", "libbar": "1.1"}


def test_preferred_provider_version() -> None:
    records = [
        rec("mail", "1.0", depends="mta"),
        rec("exim", "4.0", provides="mta"),
        rec("exim", "4.1", provides="mta"),
    ]
    assert versions(records, ["mail"], {"exim": "4.0"})["exim"] == "4.0"
    assert versions(records, ["mail"], {})["exim"] == "4.1"


def test_a_pin_taken_early_that_no_longer_fits_is_moved() -> None:
    # lib-user selects libfoo at its pinned 1.5 first; app 2.0 (freed) then needs libfoo >= 2:
    # the closure is computed again without that pin, and only libfoo moves with app
    records = [*UNIVERSE, rec("lib-user", "1.0", depends="libfoo")]
    prefer = {"lib-user": "1.0", "libfoo": "1.5", "libbar": "1.0"}
    got = versions(records, ["lib-user", "app"], prefer)
    assert got == {"lib-user": "1.0", "app": "2.0", "libfoo": "2.1", "libbar": "1.0"}
