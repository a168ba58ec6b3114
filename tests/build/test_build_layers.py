"""Deterministic layer tarballs: bytes, names, owners, modes and the gzip frame."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from hardflow.build.layers import LayerSpec, list_tree, normalize_path, with_parents, write_layer
from hardflow.errors import BuildError
from hardflow.oci.layer import Layer, iter_tar_entries

SDE = 1_700_000_000
LONG_DIR = "d" * 60 + "/" + "e" * 60  # a 121-byte directory: needs the ustar prefix field
LONG_FILE = f"{LONG_DIR}/{'f' * 90}.txt"  # 216 bytes: ustar prefix + name
HUGE_COMPONENT = "g" * 150  # one 150-byte component: cannot be split, needs a PAX path
HUGE_FILE = f"{LONG_DIR}/{HUGE_COMPONENT}/{'h' * 120}"  # > 255 bytes
LONG_TARGET = "../" * 10 + "x" * 120  # a symlink target > 100 bytes: PAX linkpath
UNICODE_FILE = "usr/share/caf\u00e9/na\u00efve.txt"


def _tree_items() -> list[tuple[str, str, bytes | str]]:
    """(kind, path, content-or-target) in a fixed order; builders may shuffle it."""
    return [
        ("dir", "etc", b""),
        ("file", "etc/passwd", b"root:x:0:0::/root:/usr/sbin/nologin\n"),
        ("dir", "opt/airflow", b""),
        ("file", "opt/airflow/airflow.cfg", b"[core]\n"),
        ("file", "usr/bin/tool", b"#!/bin/sh\necho tool\n"),
        ("symlink", "usr/bin/alias", "tool"),
        ("symlink", "usr/lib/dangling", LONG_TARGET),
        ("dir", "tmp", b""),
        ("file", "empty", b""),
        ("file", "big.bin", bytes(range(256)) * 12_289),  # > 3 MiB, not block-aligned
        ("file", LONG_FILE, b"long name\n"),
        ("file", HUGE_FILE, b"huge name\n"),
        ("file", UNICODE_FILE, "caf\u00e9\n".encode()),
    ]


def make_tree(root: Path, *, reverse: bool = False, mtime: int | None = None) -> None:
    items = _tree_items()
    if reverse:
        items = list(reversed(items))
    for kind, rel, payload in items:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            path.mkdir(exist_ok=True)
        elif kind == "file":
            assert isinstance(payload, bytes)
            path.write_bytes(payload)
        else:
            assert isinstance(payload, str)
            path.symlink_to(payload)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o755)
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                os.chmod(p, 0o644)
    os.chmod(root / "usr/bin/tool", 0o755)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "opt/airflow", 0o775)
    if mtime is not None:
        for path in [root / p for p in list_tree(root)]:
            os.utime(path, (mtime, mtime), follow_symlinks=False)


OWNERS = {"/opt/airflow": (50000, 0), "opt/airflow/airflow.cfg": (50000, 0)}


def build(tmp: Path, name: str, *, sde: int = SDE, **tree: object) -> Layer:
    root = tmp / f"root-{name}"
    root.mkdir()
    make_tree(root, **tree)  # type: ignore[arg-type]
    spec = LayerSpec("test", list_tree(root))
    return write_layer(root, spec, OWNERS, sde, tmp / f"out-{name}")


def test_same_tree_same_sde_gives_identical_bytes(tmp_path: Path) -> None:
    first = build(tmp_path, "a", mtime=1_000_000)
    second = build(tmp_path, "b", reverse=True, mtime=1_900_000_000)
    assert first.path.parent != second.path.parent
    assert first.digest == second.digest
    assert first.diff_id == second.diff_id
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.name == first.digest.removeprefix("sha256:") + ".tar.gz"


def test_different_sde_gives_different_digest(tmp_path: Path) -> None:
    first = build(tmp_path, "a")
    second = build(tmp_path, "b", sde=SDE + 1)
    assert first.digest != second.digest
    assert first.diff_id != second.diff_id


def test_digests_sizes_and_counts_describe_the_blob(tmp_path: Path) -> None:
    layer = build(tmp_path, "a")
    blob = layer.path.read_bytes()
    tar = gzip.decompress(blob)
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert layer.size == len(blob)
    assert layer.uncompressed_size == len(tar)
    assert len(tar) % 512 == 0
    assert tar.endswith(b"\0" * 1024)
    assert layer.file_count == len(list(iter_tar_entries(layer.path)))
    assert stat.S_IMODE(layer.path.stat().st_mode) == 0o644
    assert not [p for p in layer.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_gzip_header_is_fixed(tmp_path: Path) -> None:
    head = build(tmp_path, "a").path.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no FNAME, no FEXTRA, no comment
    assert head[4:8] == b"\0\0\0\0"  # mtime 0
    assert head[9] == 255


def test_entries_round_trip(tmp_path: Path) -> None:
    root_name = "a"
    layer = build(tmp_path, root_name)
    root = tmp_path / f"root-{root_name}"
    entries = list(iter_tar_entries(layer.path))
    names = [e.name for e in entries]
    assert names == sorted(names, key=os.fsencode)
    assert len(set(names)) == len(names)
    by_name = {e.name: e for e in entries}

    for entry in entries:
        assert entry.mtime == SDE
        assert entry.uname == ""
        assert entry.gname == ""
        assert set(entry.pax_headers) <= {"path", "linkpath"}, entry.pax_headers

    assert by_name[LONG_FILE].isfile()
    assert len(LONG_FILE) > 100
    assert by_name[HUGE_FILE].isfile()
    assert len(HUGE_FILE) > 255
    assert by_name[HUGE_FILE].pax_headers == {"path": HUGE_FILE}
    assert by_name[UNICODE_FILE].isfile()
    assert by_name["usr/bin/alias"].issym()
    assert by_name["usr/bin/alias"].linkname == "tool"
    assert by_name["usr/lib/dangling"].linkname == LONG_TARGET
    assert by_name["usr/bin/tool"].mode == 0o755
    assert by_name["etc/passwd"].mode == 0o644
    assert by_name["tmp"].isdir()
    assert by_name["tmp"].mode == 0o1777
    assert by_name["opt/airflow"].mode == 0o775
    assert (by_name["opt/airflow"].uid, by_name["opt/airflow"].gid) == (50000, 0)
    assert (by_name["opt/airflow/airflow.cfg"].uid, by_name["opt"].uid) == (50000, 0)
    assert (by_name["etc/passwd"].uid, by_name["etc/passwd"].gid) == (0, 0)

    with tarfile.open(layer.path, "r:gz") as archive:
        for entry in entries:
            if entry.isfile():
                extracted = archive.extractfile(entry)
                assert extracted is not None
                assert extracted.read() == (root / entry.name).read_bytes(), entry.name


def test_gnu_tar_reads_the_layer(tmp_path: Path) -> None:
    """An independent reader extracts the same tree (names, symlinks, contents)."""
    if shutil.which("tar") is None:
        pytest.skip("no tar program on PATH")
    layer = build(tmp_path, "a")
    out = tmp_path / "extracted"
    out.mkdir()
    subprocess.run(
        ["tar", "-xzf", str(layer.path), "-C", str(out), "--no-same-owner"],
        check=True,
        capture_output=True,
    )
    root = tmp_path / "root-a"
    assert list_tree(out) == list_tree(root)
    for rel in list_tree(root):
        src, dst = root / rel, out / rel
        if src.is_symlink():
            assert os.readlink(dst) == os.readlink(src)
        elif src.is_file():
            assert dst.read_bytes() == src.read_bytes()


def test_parents_are_added_so_each_layer_stands_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_tree(root)
    layer = write_layer(
        root, LayerSpec("one", ("opt/airflow/airflow.cfg",)), OWNERS, SDE, tmp_path / "out"
    )
    names = [(e.name, e.type) for e in iter_tar_entries(layer.path)]
    assert names == [
        ("opt", tarfile.DIRTYPE),
        ("opt/airflow", tarfile.DIRTYPE),
        ("opt/airflow/airflow.cfg", tarfile.REGTYPE),
    ]
    assert layer.file_count == 3


@pytest.mark.parametrize("extra", range(0, 14))
def test_pax_record_lengths_around_digit_boundaries(tmp_path: Path, extra: int) -> None:
    # "x"*n + "é" is non-ASCII, so it always needs a PAX path record; its length crosses 100
    name = "x" * (84 + extra) + "\u00e9"
    root = tmp_path / "root"
    root.mkdir()
    (root / name).write_bytes(b"pax\n")
    layer = write_layer(root, LayerSpec("pax", (name,)), {}, SDE, tmp_path / "out")
    (entry,) = list(iter_tar_entries(layer.path))
    assert entry.name == name
    assert entry.size == 4


def test_progress_reports_every_uncompressed_byte(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_tree(root)
    seen: list[int] = []
    layer = write_layer(
        root, LayerSpec("p", list_tree(root)), OWNERS, SDE, tmp_path / "out", seen.append
    )
    assert len(seen) > 1
    assert sum(seen) == layer.uncompressed_size


@pytest.mark.parametrize("bits", [0o4755, 0o2755])
def test_setuid_and_setgid_are_refused(tmp_path: Path, bits: int) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin/su").write_bytes(b"x")
    os.chmod(root / "bin/su", bits)
    with pytest.raises(BuildError, match="setuid/setgid"):
        write_layer(root, LayerSpec("x", ("bin/su",)), {}, SDE, tmp_path / "out")
    out = tmp_path / "out"
    assert not out.exists() or not list(out.iterdir())


def test_setgid_parent_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    (root / "srv/file").write_bytes(b"x")
    os.chmod(root / "srv", 0o2775)
    with pytest.raises(BuildError, match="setuid/setgid"):
        write_layer(root, LayerSpec("x", ("srv/file",)), {}, SDE, tmp_path / "out")


def test_special_files_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(BuildError, match="neither a regular file"):
        write_layer(root, LayerSpec("x", ("pipe",)), {}, SDE, tmp_path / "out")


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(BuildError, match="layer 'x': path 'usr' is missing"):
        write_layer(root, LayerSpec("x", ("usr/nothing",)), {}, SDE, tmp_path / "out")


@pytest.mark.parametrize("bad", ["", "/", "a/../b", "./a", "a//b", ".."])
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(BuildError):
        normalize_path(bad)


def test_with_parents_sorts_directories_before_contents() -> None:
    assert with_parents(["a/b", "a-b", "/a/c/", "a.b/x"]) == [
        "a",
        "a-b",
        "a.b",
        "a.b/x",
        "a/b",
        "a/c",
    ]


def test_owner_out_of_range_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"")
    with pytest.raises(BuildError, match="uid"):
        write_layer(root, LayerSpec("x", ("f",)), {"f": (1 << 22, 0)}, SDE, tmp_path / "out")


def test_empty_layer_is_a_valid_tar(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    layer = write_layer(root, LayerSpec("empty", ()), {}, SDE, tmp_path / "out")
    assert list(iter_tar_entries(layer.path)) == []
    assert layer.uncompressed_size == 1024


def test_iter_tar_entries_reports_a_corrupt_blob(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(BuildError, match=r"bad\.tar\.gz"):
        list(iter_tar_entries(bad))
