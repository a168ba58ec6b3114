"""Reproducible across machines: the session's builds of the embedded default and of
``airflow-multiplatform`` give exactly the digests the README states for the committed locks.

The README's section "Reproducible across machines" holds two tables: the expected digests
(the default's manifest; the multi-platform index and each platform's manifest) and what else
the bytes depend on, each with the provenance field that records it. When a digest differs,
the failure names the recorded values that differ from the README's (a builder dependency, the
umask); when none does, the inputs changed (a lock, a spec, hardflow's image files) and the
message prints the new table rows for the README.

The builds are the session fixtures ``default_build`` and ``multiplatform_build``
(tests/conftest.py); the multi-platform one makes every layer anew, so its amd64 layers are a
second, independent build of the default's (the same lock view).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from hardflow.build.pipeline import BuildResult
from hardflow.lock.model import read_lock
from hardflow.spec import resolve_spec_arg
from hardflow.supply.dsse import parse_envelope
from hardflow.supply.provenance import PROVENANCE_FILE, build_umask, builder_versions

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LOCK = ROOT / "requirements" / "hardflow.lock.txt"
SECTION = "Reproducible across machines"
INDEX = "image index"
# what the README must state for each build: (spec, what) rows of its digest table
ROWS = (
    ("default", "linux/amd64"),
    ("airflow-multiplatform", INDEX),
    ("airflow-multiplatform", "linux/amd64"),
    ("airflow-multiplatform", "linux/arm64"),
)
# the provenance fields the README's dependency table must name
RECORDED = (
    "runDetails.builder.version.zlib",
    "runDetails.builder.version.libzstd",
    "runDetails.builder.version.zstandard",
    "runDetails.builder.version.installer",
    "runDetails.builder.version.python",
    "buildDefinition.internalParameters.umask",
)
_DIGEST_ROW = re.compile(r"^\| `([\w.-]+)` \| ([^|]+?) \| `(sha256:[0-9a-f]{64})` \|$")
_DEPENDS_ROW = re.compile(
    r"^\| ([^|]+?) \| `([^`]+)` \| `((?:runDetails|buildDefinition)[\w.]+)` \|$"
)


def readme_section() -> list[str]:
    """The lines of the README's section, up to the next heading of its level or above."""
    lines = README.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.lstrip("#").strip() == SECTION]
    assert len(starts) == 1, f"{README}: expected one heading {SECTION!r}, found {len(starts)}"
    level = len(lines[starts[0]]) - len(lines[starts[0]].lstrip("#"))
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        depth = len(line) - len(line.lstrip("#"))
        if 0 < depth <= level and line[depth : depth + 1] == " ":
            break
        body.append(line)
    return body


def readme_digests() -> dict[tuple[str, str], str]:
    return {
        (m[1], m[2]): m[3] for line in readme_section() if (m := _DIGEST_ROW.match(line.strip()))
    }


def readme_depends() -> dict[str, tuple[str, str]]:
    """provenance field → (what, the value the README's digests were made with)."""
    return {
        m[3]: (m[1], m[2]) for line in readme_section() if (m := _DEPENDS_ROW.match(line.strip()))
    }


def provenance_predicate(result: BuildResult) -> Any:
    path = result.image.layout_dir.parent / PROVENANCE_FILE
    statement = json.loads(parse_envelope(path.read_bytes(), str(path)).payload)
    return statement["predicate"]


def field(predicate: Any, dotted: str) -> str:
    value = predicate
    for key in dotted.split("."):
        value = value.get(key, "(not recorded)") if isinstance(value, dict) else value
    return str(value)


def same_value(readme: str, recorded: str) -> bool:
    """``3.11`` in the README matches a recorded ``3.11.2`` (Python: its minor version)."""
    return recorded == readme or recorded.startswith(readme + ".")


def environment_differences(result: BuildResult) -> list[str]:
    predicate = provenance_predicate(result)
    return [
        f"{dotted.rsplit('.', 1)[1]}: README {want}, this build {field(predicate, dotted)} "
        f"(provenance {dotted})"
        for dotted, (_, want) in readme_depends().items()
        if not same_value(want, field(predicate, dotted))
    ]


def check_digests(actual: dict[tuple[str, str], str], builds: list[BuildResult]) -> None:
    expected = readme_digests()
    wrong = {row: digest for row, digest in actual.items() if expected.get(row) != digest}
    if not wrong:
        return
    differences = [d for b in builds for d in environment_differences(b)]
    lines = [f"{README.name} '{SECTION}' states other digests than this build gave:"]
    lines += [f"  {s} {w}: README {expected.get((s, w), '(none)')}, build {d}"
              for (s, w), d in wrong.items()]  # fmt: skip
    if differences:
        lines.append("This machine differs from the one the README's digests were made on:")
        lines += [f"  {d}" for d in sorted(set(differences))]
        lines.append("Follow the Quick start (scripts/setup.sh) on Debian 12 to get them.")
    else:
        lines.append(
            "The recorded builder versions and umask are the README's: the inputs changed "
            "(a lock, a spec, hardflow's image files). If that is intended, update README.md's "
            f"'{SECTION}' table with these rows:"
        )
        lines += [f"| `{s}` | {w} | `{d}` |" for (s, w), d in actual.items()]
    pytest.fail("\n".join(lines), pytrace=False)


# ---------------------------------------------------------------------------------------------
# the README itself (no build)


def test_the_readme_states_every_digest_and_what_they_depend_on() -> None:
    digests = readme_digests()
    assert sorted(digests) == sorted(ROWS), f"{README} '{SECTION}': digest rows {digests}"
    depends = readme_depends()
    assert sorted(depends) == sorted(RECORDED), f"{README} '{SECTION}': dependency rows {depends}"


def test_the_readmes_library_versions_are_the_locks() -> None:
    """The zstandard and installer versions the README names are those the lock installs."""
    pins = dict(
        (canonicalize_name(m[1]), m[2])
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), re.M)
    )
    depends = readme_depends()
    for name in ("zstandard", "installer"):
        _, version = depends[f"runDetails.builder.version.{name}"]
        assert pins[name] == version, f"{README}: {name} {version}; {LOCK}: {pins[name]}"


def test_the_provenance_records_what_the_bytes_depend_on() -> None:
    versions = builder_versions()
    for key in ("zlib", "libzstd", "zstandard", "installer", "python"):
        assert re.fullmatch(r"\d+(\.\d+)+\S*", versions[key]), (key, versions[key])
    mask = os.umask(0o022)
    os.umask(mask)
    assert build_umask() == f"{mask:04o}"


# ---------------------------------------------------------------------------------------------
# the session's builds


@pytest.mark.network
@pytest.mark.slow
def test_the_default_build_gives_the_readmes_digest(default_build: BuildResult) -> None:
    actual = {("default", "linux/amd64"): default_build.image.manifest_digest}
    check_digests(actual, [default_build])


@pytest.mark.network
@pytest.mark.slow
def test_the_multiplatform_build_gives_the_readmes_digests(
    multiplatform_build: BuildResult,
) -> None:
    actual = {("airflow-multiplatform", INDEX): multiplatform_build.index_digest}
    for platform, result in multiplatform_build.platforms:
        actual[("airflow-multiplatform", platform)] = result.image.manifest_digest
    check_digests(actual, [multiplatform_build])


@pytest.mark.network
@pytest.mark.slow
def test_two_builds_of_the_same_inputs_give_the_same_layers(
    default_build: BuildResult, multiplatform_build: BuildResult
) -> None:
    """The multi-platform lock's amd64 view is the default lock, so every layer below the
    spec's own (``hardflow``: name, tag) is the same bytes in the two builds; the
    multi-platform one made them anew, without the layer cache."""
    _, default_lock = resolve_spec_arg(None)
    _, multi_lock = resolve_spec_arg("airflow-multiplatform")
    view, lock = read_lock(multi_lock).for_architecture("amd64"), read_lock(default_lock)
    assert (set(view.debs), set(view.wheels), view.suites) == (
        set(lock.debs),
        set(lock.wheels),
        lock.suites,
    ), f"{multi_lock}'s amd64 view is no longer {default_lock}: relock them together"
    amd64 = dict(multiplatform_build.platforms)["linux/amd64"].image
    theirs = {layer.name: layer for layer in amd64.layers}
    shared = [layer for layer in default_build.image.layers if layer.name != "hardflow"]
    assert [layer.name for layer in shared] == [n for n in theirs if n != "hardflow"]
    differ = [
        f"{layer.name}: {layer.digest} (default) != {theirs[layer.name].digest}"
        for layer in shared
        if (layer.digest, layer.diff_id) != (theirs[layer.name].digest, theirs[layer.name].diff_id)
    ]
    assert not differ, "two builds of the same inputs differ:\n" + "\n".join(differ)
