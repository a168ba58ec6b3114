"""Path confinement (hardflow.fsutil): nothing is written outside a root or through a symlink.

Every test puts a *victim* directory beside the root, reachable only through symlinks that the
tree holds, and checks that it is untouched whatever is asked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardflow.errors import ArchiveError, HardflowError
from hardflow.fsutil import (
    ConfinementError,
    chmod_confined,
    confined,
    confined_parts,
    link_confined,
    lstat_confined,
    mkdirs_confined,
    open_confined,
    remove_confined,
    symlink_confined,
    unlink_confined,
    write_file_confined,
)


def snapshot(path: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry below ``path`` with its mode and content (or link target)."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st_ = p.lstat()
            if stat.S_ISLNK(st_.st_mode):
                out[str(p.relative_to(path))] = (st_.st_mode, os.readlink(p))
            elif stat.S_ISREG(st_.st_mode):
                out[str(p.relative_to(path))] = (st_.st_mode, p.read_bytes())
            else:
                out[str(p.relative_to(path))] = (st_.st_mode, b"")
    return out


@pytest.fixture
def rooted(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(root, victim): the root holds symlinks to the victim, absolute and relative."""
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "passwd").write_text("root:x:0:0\n")
    (victim / "sub" / "keep").write_text("keep\n")
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/abs").symlink_to(victim)  # absolute target
    (root / "usr/lib/rel").symlink_to("../../../victim")  # relative target, climbing out
    (root / "etc").symlink_to(victim)
    (root / "usr/lib/file").write_text("f")
    before = snapshot(victim)
    yield root, victim
    assert snapshot(victim) == before, "the victim outside the root was changed"


THROUGH_LINKS = ["usr/lib/abs/passwd", "usr/lib/rel/passwd", "etc/passwd", "etc/sub/keep",
                 "usr/lib/abs/sub/new", "etc/new"]  # fmt: skip
LEXICAL = ["/etc/passwd", "../victim/passwd", "usr/../../victim/passwd", "a/\0b"]


@pytest.mark.parametrize("rel", THROUGH_LINKS + LEXICAL)
def test_writers_refuse_paths_through_symlinks_or_outside(
    rooted: tuple[Path, Path], rel: str
) -> None:
    root, _ = rooted
    attempts = [
        lambda: write_file_confined(root, rel, b"pwned"),
        lambda: mkdirs_confined(root, rel),
        lambda: symlink_confined(root, rel, "/anything"),
        lambda: unlink_confined(root, rel),
        lambda: remove_confined(root, rel),
        lambda: chmod_confined(root, rel, 0o777),
        lambda: link_confined(root, rel, "usr/lib/file"),
        lambda: link_confined(root, "usr/lib/hard", rel),
        lambda: lstat_confined(root, rel),
        lambda: confined(root, rel),
    ]
    for attempt in attempts:
        with pytest.raises(ConfinementError) as err:
            attempt()
        assert isinstance(err.value, ArchiveError)  # one error root, an archive's fault
        assert repr(rel) in err.value.message or "link target" in err.value.message


def test_reasons_name_the_component(rooted: tuple[Path, Path]) -> None:
    root, _ = rooted
    with pytest.raises(ConfinementError, match="'usr/lib/abs' is a symlink"):
        write_file_confined(root, "usr/lib/abs/x", b"")
    with pytest.raises(ConfinementError, match="'usr/lib/file' is not a directory"):
        write_file_confined(root, "usr/lib/file/x", b"")
    with pytest.raises(ConfinementError, match="absolute"):
        confined_parts(root, "/x")
    with pytest.raises(ConfinementError, match=r"'\.\.' component"):
        confined_parts(root, "a/../b")
    with pytest.raises(ConfinementError, match="NUL"):
        confined_parts(root, "a\0")
    with pytest.raises(ConfinementError, match="root itself"):
        write_file_confined(root, "./", b"")
    assert confined_parts(root, "./a//b/./c/") == ("a", "b", "c")


def test_a_final_symlink_is_replaced_or_removed_never_followed(rooted: tuple[Path, Path]) -> None:
    root, victim = rooted
    write_file_confined(root, "usr/lib/abs", b"now a file", 0o600)
    assert (root / "usr/lib/abs").read_bytes() == b"now a file"
    assert stat.S_IMODE((root / "usr/lib/abs").lstat().st_mode) == 0o600
    symlink_confined(root, "usr/lib/rel", "/elsewhere", replace=True)
    assert os.readlink(root / "usr/lib/rel") == "/elsewhere"
    assert unlink_confined(root, "etc") and not (root / "etc").exists()
    assert not unlink_confined(root, "etc")  # missing: False, not an error
    (root / "etc").symlink_to(victim)
    assert remove_confined(root, "etc") and victim.is_dir()
    with pytest.raises(FileExistsError):  # no replace: an existing entry stays
        write_file_confined(root, "usr/lib/file", b"x", replace=False)


def test_remove_of_a_tree_holding_links_removes_the_links_only(
    rooted: tuple[Path, Path],
) -> None:
    root, _ = rooted
    assert remove_confined(root, "usr")
    assert not (root / "usr").exists()


def test_absolute_symlink_targets_may_be_created(tmp_path: Path) -> None:
    symlink_confined(tmp_path, "usr/lib/ssl/certs", "/etc/ssl/certs")
    assert os.readlink(tmp_path / "usr/lib/ssl/certs") == "/etc/ssl/certs"
    with pytest.raises(ConfinementError, match="empty"):
        symlink_confined(tmp_path, "x", "")


def test_modes_are_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        made = mkdirs_confined(tmp_path, "a/b/c", 0o755)
        with open_confined(tmp_path, "a/b/c/f", 0o644) as fh:
            fh.write(b"data")
        write_file_confined(tmp_path, "x/y", b"", 0o1755)
    finally:
        os.umask(old)
    assert made == ["a", "a/b", "a/b/c"]
    assert mkdirs_confined(tmp_path, "a/b/c") == []  # nothing new
    for d in made:
        assert stat.S_IMODE((tmp_path / d).stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a/b/c/f").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o755  # parents: 0755
    assert stat.S_IMODE((tmp_path / "x/y").stat().st_mode) == 0o1755


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), open_confined(tmp_path, "f") as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    assert not (tmp_path / "f").exists()


def test_hard_links_and_chmod_stay_inside(tmp_path: Path) -> None:
    write_file_confined(tmp_path, "a", b"A")
    link_confined(tmp_path, "dir/b", "a")
    assert (tmp_path / "dir/b").stat().st_ino == (tmp_path / "a").stat().st_ino
    os.symlink("a", tmp_path / "s")
    with pytest.raises(ConfinementError, match="not a regular file"):
        link_confined(tmp_path, "c", "s")  # a link to a symlink would be a link to its target
    with pytest.raises(ConfinementError, match="is a symlink"):
        chmod_confined(tmp_path, "s", 0o777)
    chmod_confined(tmp_path, "a", 0o600)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    assert lstat_confined(tmp_path, "missing/x") is None
    st_ = lstat_confined(tmp_path, "s")
    assert st_ is not None and stat.S_ISLNK(st_.st_mode)


# --------------------------------------------------------------------------------------------
# property: any sequence of operations on any names keeps the victim untouched

_NAMES = st.sampled_from(["a", "b", "..", ".", "", "etc", "abs", "/", "victim"])
_RELS = st.lists(_NAMES, min_size=1, max_size=4).map("/".join)
_TARGETS = st.sampled_from(["/", "..", "../..", "../../victim", "a", "/victim", "etc"])
_OPS = st.lists(
    st.tuples(st.sampled_from(["file", "dir", "link", "hard", "rm", "unlink", "chmod"]),
              _RELS, _TARGETS, _RELS),
    max_size=12,
)  # fmt: skip


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(ops=_OPS)
def test_no_sequence_of_operations_escapes(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, str, str]]
) -> None:
    base = tmp_path_factory.mktemp("prop")
    victim = base / "victim"
    victim.mkdir()
    (victim / "a").write_text("victim")
    root = base / "root"
    root.mkdir()
    (root / "abs").symlink_to(victim)
    (root / "etc").symlink_to("../victim")
    before = snapshot(victim)
    for kind, rel, target, other in ops:
        try:
            if kind == "file":
                write_file_confined(root, rel, b"x")
            elif kind == "dir":
                mkdirs_confined(root, rel)
            elif kind == "link":
                symlink_confined(root, rel, target, replace=True)
            elif kind == "hard":
                link_confined(root, rel, other, replace=True)
            elif kind == "rm":
                remove_confined(root, rel)
            elif kind == "unlink":
                unlink_confined(root, rel)
            else:
                chmod_confined(root, rel, 0o700)
        except HardflowError:
            pass
    assert snapshot(victim) == before
