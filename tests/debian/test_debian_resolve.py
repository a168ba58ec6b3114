"""The dependency closure."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardflow.debian.repo import PackageRecord, SuiteIndex, load_suite
from hardflow.debian.resolve import parse_relations, resolve_closure, version_satisfies
from hardflow.errors import ResolveError
from helpers.fixtures_debian import FakePackage, SigningKey, build_repo, file_downloader


def rec(
    name: str,
    version: str = "1.0",
    *,
    depends: str = "",
    pre_depends: str = "",
    provides: str = "",
    suite: str = "trixie",
    arch: str = "amd64",
    essential: bool = False,
    priority: str = "optional",
) -> PackageRecord:
    return PackageRecord(
        name=name,
        version=version,
        architecture=arch,
        suite=suite,
        filename=f"pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb",
        sha256="0" * 64,
        size=1,
        source=name,
        source_version=version,
        depends=depends,
        pre_depends=pre_depends,
        provides=provides,
        essential=essential,
        priority=priority,
    )


def index(*records: PackageRecord, suite: str = "trixie") -> SuiteIndex:
    return SuiteIndex(suite, "Sat, 10 May 2025 10:00:00 UTC", 1746871200, tuple(records))


def names(result: list[PackageRecord]) -> list[str]:
    return [r.name for r in result]


def closure(
    records: list[PackageRecord], wanted: list[str], excludes: tuple[str, ...] = ()
) -> list[PackageRecord]:
    return resolve_closure([index(*records)], wanted, excludes, "amd64")


def test_depends_and_pre_depends_are_followed_transitively() -> None:
    records = [
        rec("app", depends="libfoo, libbar"),
        rec("libfoo", pre_depends="libc6"),
        rec("libbar", depends="libbaz (>= 1)"),
        rec("libbaz", "2"),
        rec("libc6"),
        rec("unrelated", depends="app"),
    ]
    result = closure(records, ["app"])
    assert names(result) == ["app", "libbar", "libbaz", "libc6", "libfoo"]


def test_essential_and_required_packages_are_not_added() -> None:
    records = [
        rec("app"),
        rec("bash", essential=True, priority="required"),
        rec("coreutils", priority="required"),
    ]
    assert names(closure(records, ["app"])) == ["app"]


def test_dependency_cycles_terminate() -> None:
    records = [rec("a", depends="b"), rec("b", depends="a")]
    assert names(closure(records, ["a"])) == ["a", "b"]


def test_first_satisfiable_alternative_is_chosen() -> None:
    records = [rec("app", depends="missing | second | third"), rec("second"), rec("third")]
    assert names(closure(records, ["app"])) == ["app", "second"]


def test_already_wanted_alternative_is_preferred() -> None:
    records = [rec("app", depends="first | second"), rec("first"), rec("second")]
    assert names(closure(records, ["app", "second"])) == ["app", "second"]
    assert names(closure(records, ["app"])) == ["app", "first"]


def test_alternative_selected_through_another_path_is_preferred() -> None:
    records = [
        rec("app", depends="libz, mta-a | mta-b"),
        rec("libz", pre_depends="mta-b"),
        rec("mta-a"),
        rec("mta-b"),
    ]
    # libz's dependencies are followed first, so when app's group is looked at, mta-b is
    # already in and meets it: mta-a is not added.
    result = closure(records, ["libz", "app"])
    assert names(result) == ["app", "libz", "mta-b"]


def test_alternative_with_unmet_version_falls_through() -> None:
    records = [rec("app", depends="libold (>= 2) | libnew"), rec("libold", "1"), rec("libnew")]
    assert names(closure(records, ["app"])) == ["app", "libnew"]


def test_virtual_package_is_met_by_a_provider() -> None:
    records = [
        rec("app", depends="awk"),
        rec("gawk", provides="awk"),
        rec("mawk", provides="awk", priority="required"),
        rec("original-awk", provides="awk"),
    ]
    # apt's choice: the provider of highest Priority, not the alphabetical first
    assert names(closure(records, ["app"])) == ["app", "mawk"]


def test_selected_provider_is_reused() -> None:
    records = [
        rec("app", depends="awk"),
        rec("gawk", provides="awk"),
        rec("mawk", provides="awk", priority="required"),
    ]
    assert names(closure(records, ["gawk", "app"])) == ["app", "gawk"]


def test_versioned_provides() -> None:
    records = [
        rec("app", depends="libapi (>= 2)"),
        rec("impl-old", provides="libapi (= 1)"),
        rec("impl-new", provides="libapi (= 2.1)"),
        rec("impl-unversioned", provides="libapi"),
    ]
    assert names(closure(records, ["app"])) == ["app", "impl-new"]


def test_unversioned_provides_does_not_meet_versioned_dependency() -> None:
    records = [rec("app", depends="libapi (>= 1)"), rec("impl", provides="libapi")]
    with pytest.raises(ResolveError, match="impl provides libapi unversioned"):
        closure(records, ["app"])


def test_highest_version_across_suites_wins() -> None:
    trixie = index(rec("app", depends="libssl3"), rec("libssl3", "3.0.1-1"))
    security = index(
        rec("libssl3", "3.0.1-1+deb13u1", suite="trixie-security"), suite="trixie-security"
    )
    for order in ([trixie, security], [security, trixie]):
        result = resolve_closure(order, ["app"], (), "amd64")
        chosen = {r.name: r for r in result}["libssl3"]
        assert (chosen.version, chosen.suite) == ("3.0.1-1+deb13u1", "trixie-security")


@pytest.mark.parametrize(
    ("constraint", "version", "suite"),
    [
        ("(>= 3.1)", "3.1-1", "trixie-security"),
        ("(>> 3.0-1)", "3.1-1", "trixie-security"),
        ("(<< 3.1)", "3.0-1", "trixie"),
        ("(<= 3.0-1)", "3.0-1", "trixie"),
        ("(= 3.0-1)", "3.0-1", "trixie"),
        ("(= 3.1-1)", "3.1-1", "trixie-security"),
    ],
)
def test_version_constraints_choose_across_suites(
    constraint: str, version: str, suite: str
) -> None:
    trixie = index(rec("app", depends=f"libssl {constraint}"), rec("libssl", "3.0-1"))
    security = index(rec("libssl", "3.1-1", suite="trixie-security"), suite="trixie-security")
    result = resolve_closure([trixie, security], ["app"], (), "amd64")
    chosen = {r.name: r for r in result}["libssl"]
    assert (chosen.version, chosen.suite) == (version, suite)


def test_epochs_and_tildes_compare_like_dpkg() -> None:
    assert version_satisfies("1:1.0", ">>", "9.9")
    assert version_satisfies("2.0~rc1", "<<", "2.0")
    assert version_satisfies("1.3.dfsg+really1.3.1-1", ">=", "1.3.dfsg")
    records = [rec("app", depends="zlib (>= 1:1.2)"), rec("zlib", "1:1.3"), rec("zlib", "1.9")]
    result = closure(records, ["app"])
    assert {r.name: r.version for r in result}["zlib"] == "1:1.3"


def test_arch_qualifiers_and_restrictions() -> None:
    records = [
        rec(
            "app",
            depends="python3:any, libc6:amd64, winonly [i386], linonly [!i386], "
            "both [amd64 arm64], libfoo:native",
        ),
        rec("python3"),
        rec("libc6"),
        rec("winonly"),
        rec("linonly"),
        rec("both"),
        rec("libfoo"),
        rec("libarm", arch="arm64"),
    ]
    assert names(closure(records, ["app"])) == [
        "app",
        "both",
        "libc6",
        "libfoo",
        "linonly",
        "python3",
    ]


def test_foreign_architecture_records_are_ignored() -> None:
    records = [rec("app", depends="libarm"), rec("libarm", arch="arm64")]
    with pytest.raises(ResolveError, match="libarm: not in trixie"):
        closure(records, ["app"])


def test_foreign_arch_qualifier_cannot_be_met() -> None:
    records = [rec("app", depends="libc6:i386"), rec("libc6")]
    with pytest.raises(ResolveError, match="cannot be met on amd64"):
        closure(records, ["app"])


def test_arch_all_packages_are_candidates() -> None:
    records = [rec("app", depends="tzdata"), rec("tzdata", arch="all")]
    assert names(closure(records, ["app"])) == ["app", "tzdata"]


def test_excluded_dependency_is_skipped() -> None:
    records = [
        rec("ca-certificates", depends="openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0"),
        rec("openssl", "3.5", depends="libssl3"),
        rec("libssl3"),
        rec("debconf", provides="debconf-2.0", depends="perl-base"),
        rec("cdebconf", provides="debconf-2.0", depends="libnewt"),
        rec("libnewt"),
        rec("perl-base"),
    ]
    full = closure(records, ["ca-certificates"])
    assert names(full) == ["ca-certificates", "debconf", "libssl3", "openssl", "perl-base"]
    # an excluded package counts as present: neither it nor a replacement is pulled in
    trimmed = closure(records, ["ca-certificates"], ("debconf", "openssl"))
    assert names(trimmed) == ["ca-certificates"]


def test_excluded_virtual_name_skips_every_provider() -> None:
    records = [rec("base-files", pre_depends="awk"), rec("mawk", provides="awk")]
    assert names(closure(records, ["base-files"], ("awk",))) == ["base-files"]
    assert names(closure(records, ["base-files"], ("mawk",))) == ["base-files"]


def test_wanted_and_excluded_is_an_error() -> None:
    with pytest.raises(ResolveError, match="bash: wanted and excluded"):
        closure([rec("bash")], ["bash"], ("bash",))


def test_unknown_wanted_package_names_the_suites() -> None:
    trixie = index(rec("bash"))
    security = index(suite="trixie-security")
    with pytest.raises(ResolveError) as err:
        resolve_closure([trixie, security], ["bash", "nosuchpkg"], (), "amd64")
    assert str(err.value) == "nosuchpkg: not in trixie, trixie-security (wanted)"


def test_unsatisfiable_dependency_names_the_chain() -> None:
    records = [
        rec("python3.13", depends="libpython3.13-stdlib"),
        rec("libpython3.13-stdlib", depends="libc6, libfoo (>= 2)"),
        rec("libc6"),
        rec("libfoo", "1.5"),
    ]
    with pytest.raises(ResolveError) as err:
        closure(records, ["python3.13"])
    assert str(err.value) == (
        "python3.13 → libpython3.13-stdlib → libfoo (>= 2): only libfoo 1.5 (trixie) available"
    )


def test_missing_dependency_names_the_chain_and_suites() -> None:
    records = [rec("a", depends="b"), rec("b", pre_depends="c | d (>= 1)")]
    with pytest.raises(ResolveError) as err:
        closure(records, ["a"])
    message = str(err.value)
    assert message.startswith("a → b → c | d (>= 1): none can be met")
    assert "c: not in trixie" in message and "d (>= 1): not in trixie" in message


def test_version_clash_with_selected_package_is_reported() -> None:
    trixie = index(rec("app", depends="libx (<< 2)"), rec("libx", "1"))
    security = index(rec("libx", "2", suite="trixie-security"), suite="trixie-security")
    with pytest.raises(ResolveError, match=r"libx 2 is already selected \(for libx\)"):
        resolve_closure([trixie, security], ["libx", "app"], (), "amd64")


def test_result_is_sorted_and_deterministic() -> None:
    records = [
        rec("zeta", depends="alpha, mid"),
        rec("alpha", depends="omega"),
        rec("mid"),
        rec("omega"),
    ]
    first = closure(records, ["zeta"])
    second = closure(list(reversed(records)), ["zeta"])
    assert names(first) == ["alpha", "mid", "omega", "zeta"]
    assert first == second


def test_parse_relations_drops_other_arch_alternatives() -> None:
    groups = parse_relations("a [i386] | b, c (< 2), d [i386]", "amd64", "test")
    assert [[str(alt) for alt in g] for g in groups] == [["b"], ["c (<= 2)"]]


def test_closure_from_a_signed_fake_archive(tmp_path: Path, signing_key: SigningKey) -> None:
    """End to end: two signed suites, loaded and resolved."""
    packages = [
        FakePackage("app", "1.0", depends="libssl3 (>= 3.0.2), debconf | debconf-2.0"),
        FakePackage("libssl3", "3.0.1", depends="libc6"),
        FakePackage("libssl3", "3.0.2", depends="libc6", suites=("trixie-security",)),
        FakePackage("libc6", "2.41", suites=("trixie", "trixie-security")),
        FakePackage("debconf", "1.5", architecture="all"),
    ]
    repo = build_repo(tmp_path, packages, ("trixie", "trixie-security"), key=signing_key)
    indices = [
        load_suite(repo.base_url, s, ["main"], "amd64", repo.keyring, file_downloader)
        for s in ("trixie", "trixie-security")
    ]
    result = resolve_closure(indices, ["app"], ["debconf"], "amd64")
    assert [(r.name, r.version, r.suite) for r in result] == [
        ("app", "1.0", "trixie"),
        ("libc6", "2.41", "trixie"),
        ("libssl3", "3.0.2", "trixie-security"),
    ]
