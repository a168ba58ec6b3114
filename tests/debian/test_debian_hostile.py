"""Hostile .deb files: whatever a package holds, nothing is written outside the image tree.

Each test builds its packages byte by byte in tmp_path and unpacks them with the Debian stage
(:func:`hardflow.build.rootfs.assemble_debian`); a *victim* directory outside the staging root
is reachable only through the links the packages make, and must be left untouched.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardflow.build.rootfs import DebInput, StageTree, assemble_debian, bytecode_sources
from hardflow.debian.deb import read_deb
from hardflow.errors import ArchiveError, HardflowError
from hardflow.lock.model import LockedDeb
from hardflow.spec import ImageSpec, parse_spec
from helpers.fixtures_debian import TarEntry, ar_archive, build_deb

PYVER = "3.13"


def spec() -> ImageSpec:
    return parse_spec(
        {"name": "t/x", "tag": "1", "debian": {"suites": ["trixie"], "packages": ["a1"]},
         "python": {"version": PYVER}},
        "hostile.toml",
    )  # fmt: skip


def deb_input(tmp_path: Path, name: str, entries: list[TarEntry]) -> DebInput:
    path = build_deb(
        tmp_path / "debs" / f"{name}.deb",
        {"Package": name, "Version": "1.0", "Architecture": "all"},
        entries,
    )
    locked = LockedDeb(name, "1.0", "all", "trixie", f"pool/main/x/{name}.deb", "0" * 64, 1,
                       name, "1.0")  # fmt: skip
    return DebInput(locked, path)


def interpreter(tmp_path: Path) -> DebInput:
    return deb_input(tmp_path, "python3.13", [
        TarEntry(f"./usr/bin/python{PYVER}", data=b"#!fake", mode=0o755),
    ])  # fmt: skip


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    (v / "__pycache__").mkdir(parents=True)
    (v / "passwd").write_text("root:x:0:0\n")
    (v / "secret.crt").write_text("HOST SECRET\n")
    (v / "__pycache__" / "x.pyc").write_bytes(b"pyc")
    return v


def state(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b""
            for p in path.rglob("*")}  # fmt: skip


def assemble(tmp_path: Path, *debs: DebInput) -> Path:
    staging = tmp_path / "stage"
    assemble_debian(spec(), [interpreter(tmp_path), *debs], staging)
    return staging


def test_a_file_through_an_earlier_symlink_to_a_host_dir_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    """The report's case: ``usr/lib/x -> /host/dir`` then ``usr/lib/x/f``."""
    before = state(victim)
    evil = deb_input(tmp_path, "evil", [
        TarEntry("./usr/lib/x", "symlink", link=str(victim)),
        TarEntry("./usr/lib/x/passwd", data=b"pwned"),
    ])  # fmt: skip
    with pytest.raises(ArchiveError) as err:
        assemble(tmp_path, evil)
    message = err.value.message
    assert str(evil.path) in message and "evil 1.0" in message
    assert "member 'usr/lib/x/passwd'" in message and "'usr/lib/x' is a symlink" in message
    assert state(victim) == before


def test_the_symlink_may_come_from_another_package(tmp_path: Path, victim: Path) -> None:
    before = state(victim)
    first = deb_input(tmp_path, "aa-links", [TarEntry("./etc", "symlink", link=str(victim))])
    second = deb_input(tmp_path, "zz-files", [TarEntry("./etc/passwd", data=b"pwned")])
    with pytest.raises(ArchiveError, match="zz-files"):
        assemble(tmp_path, first, second)
    assert state(victim) == before


def test_a_relative_link_climbing_out_is_refused_when_read(tmp_path: Path, victim: Path) -> None:
    before = state(victim)
    evil = deb_input(tmp_path, "evil", [
        TarEntry("./usr/lib/x", "symlink", link="../../../victim"),
        TarEntry("./usr/lib/x/passwd", data=b"pwned"),
    ])  # fmt: skip
    with pytest.raises(ArchiveError, match="points outside the root"):
        assemble(tmp_path, evil)
    assert state(victim) == before


@pytest.mark.parametrize(
    "entry",
    [
        TarEntry("../victim/passwd", data=b"pwned"),
        TarEntry("./../../victim/passwd", data=b"pwned"),
        TarEntry("/victim/passwd", data=b"pwned"),
        TarEntry("./usr/bin/pw", "hardlink", link="../victim/passwd"),
        TarEntry("./usr/bin/pw", "hardlink", link="/etc/passwd"),
        TarEntry("./usr/bin/pw", "hardlink", link="./usr/lib/host"),  # a link to a symlink
    ],
    ids=["dotdot", "dot-dotdot", "absolute", "hardlink-dotdot", "hardlink-absolute",
         "hardlink-to-symlink"],
)  # fmt: skip
def test_escaping_members_are_refused(tmp_path: Path, victim: Path, entry: TarEntry) -> None:
    before = state(victim)
    evil = deb_input(tmp_path, "evil", [
        TarEntry("./usr/lib/host", "symlink", link=str(victim / "passwd")), entry,
    ])  # fmt: skip
    with pytest.raises(ArchiveError) as err:
        assemble(tmp_path, evil)
    assert str(evil.path) in err.value.message
    assert state(victim) == before


def test_an_etc_symlink_does_not_make_the_identity_pass_delete_host_files(
    tmp_path: Path, victim: Path
) -> None:
    """The Debian stage removes etc/passwd (the hardflow layer writes it): never on the host."""
    before = state(victim)
    evil = deb_input(tmp_path, "evil", [TarEntry("./etc", "symlink", link=str(victim))])
    with pytest.raises(ArchiveError, match="'etc' is a symlink"):
        assemble(tmp_path, evil)
    assert state(victim) == before


def test_host_files_never_enter_the_ca_bundle(tmp_path: Path, victim: Path) -> None:
    certs = deb_input(tmp_path, "ca-certificates", [
        TarEntry("./usr/share/ca-certificates/mozilla/A.crt", data=b"-----CERT A-----\n"),
        TarEntry("./usr/share/ca-certificates/mozilla/host.crt", "symlink",
                 link=str(victim / "secret.crt")),
    ])  # fmt: skip
    staging = assemble(tmp_path, certs)
    bundle = (staging / "etc/ssl/certs/ca-certificates.crt").read_bytes()
    assert bundle == b"-----CERT A-----\n"
    assert b"HOST SECRET" not in bundle


def test_absolute_links_are_kept_in_the_image_and_never_followed(
    tmp_path: Path, victim: Path
) -> None:
    before = state(victim)
    links = deb_input(tmp_path, "links", [
        TarEntry("./usr/lib/ssl/openssl.cnf", "symlink", link="/etc/ssl/openssl.cnf"),
        TarEntry("./var/run", "symlink", link=str(victim)),  # absolute: fine as a link
        TarEntry(f"./usr/lib/python{PYVER}", "symlink", link=str(victim)),
    ])  # fmt: skip
    staging = assemble(tmp_path, links)
    assert os.readlink(staging / "usr/lib/ssl/openssl.cnf") == "/etc/ssl/openssl.cnf"
    assert os.readlink(staging / "var/run") == str(victim)
    # the bytecode pass removes packaged __pycache__ dirs: never in a linked host directory
    tree = StageTree(staging.resolve())
    assert bytecode_sources(tree, spec()) == []
    assert state(victim) == before


def test_a_directory_replaced_by_a_file_then_a_link_leaves_no_stale_paths(
    tmp_path: Path, victim: Path
) -> None:
    """Paths recorded below a replaced directory are forgotten, so the prune pass (which
    deletes static libraries) cannot reach through the link that later takes its place."""
    (victim / "libx.a").write_text("host library")
    before = state(victim)
    first = deb_input(tmp_path, "a-dir", [TarEntry("./usr/lib/foo/libx.a", data=b"ar")])
    second = deb_input(tmp_path, "b-file", [TarEntry("./usr/lib/foo", data=b"a file now")])
    third = deb_input(tmp_path, "c-link", [TarEntry("./usr/lib/foo", "symlink",
                                                    link=str(victim))])  # fmt: skip
    staging = assemble(tmp_path, first, second, third)
    assert os.readlink(staging / "usr/lib/foo") == str(victim)
    assert state(victim) == before


# --------------------------------------------------------------------------------------------
# properties: read_deb on anything, and unpacking whatever it accepts

_NAMES = st.lists(st.sampled_from(["usr", "lib", "etc", "x", "..", ".", "", "victim"]),
                  min_size=1, max_size=4).map("/".join)  # fmt: skip
_ENTRY = st.builds(
    TarEntry,
    path=st.one_of(_NAMES, _NAMES.map(lambda p: "./" + p), _NAMES.map(lambda p: "/" + p)),
    kind=st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "chardev"]),
    data=st.binary(max_size=8),
    mode=st.sampled_from([0o644, 0o755, 0o4755, 0o1777, 0o000]),
    link=st.one_of(_NAMES, st.sampled_from(["/victim", "../victim", "/", ""])),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=st.lists(_ENTRY, max_size=8))
def test_any_member_list_is_read_or_refused_and_never_escapes(
    tmp_path_factory: pytest.TempPathFactory, entries: list[TarEntry]
) -> None:  # fmt: skip
    base = tmp_path_factory.mktemp("deb")
    victim = base / "victim"
    victim.mkdir()
    (victim / "x").write_text("victim")
    (base / "stage").mkdir()
    evil = deb_input(base, "evil", entries)
    try:
        read_deb(evil.path)
        assemble_debian(spec(), [interpreter(base), evil], base / "stage" / "root")
    except HardflowError:
        pass
    assert state(victim) == {"x": b"victim"}
    outside = {p.name for p in base.iterdir()}
    assert outside <= {"victim", "stage", "debs"}


def _blob() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("./usr/bin/tool", b"tool"), ("./etc/conf", b"c")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w") as tar:
        text = b"Package: tool\nVersion: 1\nArchitecture: all\n"
        info = tarfile.TarInfo("./control")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return ar_archive([("debian-binary", b"2.0\n"), ("control.tar", control.getvalue()),
                       ("data.tar", buf.getvalue())])  # fmt: skip


_GOOD = _blob()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)),
                      max_size=16),
       cut=st.integers(0, len(_GOOD)))  # fmt: skip
def test_any_corruption_of_a_deb_is_an_archive_error(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, int]], cut: int
) -> None:
    blob = bytearray(_GOOD)
    for at, value in edits:
        blob[at] = value
    path = tmp_path_factory.mktemp("corrupt") / "x.deb"
    path.write_bytes(bytes(blob[:cut]))
    try:
        contents = read_deb(path)
    except ArchiveError:
        return
    for m in contents.members:  # what is accepted is safe to hand to a writer
        assert not m.path.startswith("/") and ".." not in m.path.split("/")
        assert m.kind in ("file", "dir", "symlink", "hardlink")
        assert stat.S_IMODE(m.mode) == m.mode & 0o7777
