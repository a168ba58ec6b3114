"""Hostile trees and blobs in the build: layer extraction, the layer cache, the layer writer,
the staging tree and the spec's files. A *victim* directory outside every root must stay as
it was, whatever the input says."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from hardflow.build.layercache import LayerCache, StageOutput, stage_key
from hardflow.build.layers import LayerSpec, extract_layer, list_tree, write_layer
from hardflow.build.prune import prune
from hardflow.build.rootfs import StageTree, assemble_hardflow, finish
from hardflow.errors import ArchiveError, BuildError, HardflowError
from hardflow.lock.fetch import Cache
from hardflow.oci.layer import Layer
from hardflow.spec import ImageSpec, parse_spec


def state(path: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "d"
    return out


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.mkdir()
    (v / "passwd").write_text("root:x:0:0\n")
    return v


# --------------------------------------------------------------------------------------------
# crafted layers for extract_layer


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "",
           mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def crafted_layer(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Layer:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buf.getvalue()
    blob = gzip.compress(raw, mtime=0)
    path = tmp_path / "blobs" / f"{hashlib.sha256(blob).hexdigest()}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return Layer(
        name="crafted", path=path, digest="sha256:" + hashlib.sha256(blob).hexdigest(),
        diff_id="sha256:" + hashlib.sha256(raw).hexdigest(), size=len(blob),
        uncompressed_size=len(raw), file_count=len(members), compression="gzip",
    )  # fmt: skip


def hostile_layers(victim: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes]]]:
    return {
        "file-through-absolute-link": [
            member("usr/lib/x", tarfile.SYMTYPE, link=str(victim)),
            member("usr/lib/x/passwd", data=b"pwned"),
        ],
        "file-through-relative-link": [
            member("usr/x", tarfile.SYMTYPE, link="../../victim"),
            member("usr/x/passwd", data=b"pwned"),
        ],
        "dir-through-link": [
            member("etc", tarfile.SYMTYPE, link=str(victim)),
            member("etc/sub", tarfile.DIRTYPE, mode=0o777),
        ],
        "link-through-link": [
            member("etc", tarfile.SYMTYPE, link=str(victim)),
            member("etc/passwd", tarfile.SYMTYPE, link="/nowhere"),
        ],
        "hardlink-through-link": [
            member("a", data=b"A"),
            member("etc", tarfile.SYMTYPE, link=str(victim)),
            member("etc/passwd", tarfile.LNKTYPE, link="a"),
        ],
        "dotdot": [member("../victim/passwd", data=b"pwned")],
        "absolute": [member(str(victim / "passwd"), data=b"pwned")],
        "hardlink-escaping": [member("x", tarfile.LNKTYPE, link="../victim/passwd")],
        "hardlink-absolute": [member("x", tarfile.LNKTYPE, link=str(victim / "passwd"))],
        "device": [member("dev/null", tarfile.CHRTYPE)],
        "fifo": [member("run/fifo", tarfile.FIFOTYPE)],
    }


@pytest.mark.parametrize("case", sorted(hostile_layers(Path("/v"))))
def test_extract_layer_refuses_hostile_members(tmp_path: Path, victim: Path, case: str) -> None:
    before = state(victim)
    layer = crafted_layer(tmp_path, hostile_layers(victim)[case])
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract_layer(layer, dest)
    assert "layer crafted" in err.value.message and str(layer.path) in err.value.message
    assert state(victim) == before


def test_extract_layer_keeps_absolute_links_as_links(tmp_path: Path, victim: Path) -> None:
    before = state(victim)
    layer = crafted_layer(tmp_path, [
        member("usr", tarfile.DIRTYPE, mode=0o755),
        member("usr/lib", tarfile.DIRTYPE, mode=0o555),  # read-only: filled, then chmod'ed
        member("usr/lib/certs", tarfile.SYMTYPE, link="/etc/ssl/certs"),
        member("usr/lib/host", tarfile.SYMTYPE, link=str(victim / "passwd")),
        member("usr/lib/tool", data=b"tool", mode=0o4755),
        member("usr/lib/tool2", tarfile.LNKTYPE, link="usr/lib/tool"),
    ])  # fmt: skip
    dest = tmp_path / "dest"
    extract_layer(layer, dest)
    assert os.readlink(dest / "usr/lib/certs") == "/etc/ssl/certs"
    assert os.readlink(dest / "usr/lib/host") == str(victim / "passwd")
    assert (dest / "usr/lib/tool2").read_bytes() == b"tool"
    assert (dest / "usr/lib/tool").stat().st_mode & 0o7777 == 0o755  # no setuid
    assert (dest / "usr/lib").stat().st_mode & 0o777 == 0o555
    assert state(victim) == before


def test_extract_layer_over_a_tree_with_a_link_does_not_follow_it(
    tmp_path: Path, victim: Path
) -> None:
    """An earlier layer made ``etc`` a link; a later one cannot write through it."""
    before = state(victim)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "etc").symlink_to(victim)
    layer = crafted_layer(tmp_path, [member("etc/passwd", data=b"pwned")])
    with pytest.raises(ArchiveError, match="'etc' is a symlink"):
        extract_layer(layer, dest)
    assert state(victim) == before


def test_a_written_layer_round_trips_through_extract(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "usr/bin").mkdir(parents=True)
    (src / "usr/bin/tool").write_bytes(b"tool")
    (src / "bin").symlink_to("usr/bin")
    (src / "tmp").mkdir(mode=0o1777)
    os.chmod(src / "tmp", 0o1777)
    spec = LayerSpec("base", list_tree(src))
    layer = write_layer(src, spec, {}, 1_700_000_000, tmp_path / "blobs")
    dest = tmp_path / "dest"
    extract_layer(layer, dest)
    assert list_tree(dest) == list_tree(src)
    assert os.readlink(dest / "bin") == "usr/bin"
    assert (dest / "tmp").stat().st_mode & 0o7777 == 0o1777


# --------------------------------------------------------------------------------------------
# the layer writer never reads through a link


def test_write_layer_refuses_a_path_below_a_symlink(tmp_path: Path, victim: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc").symlink_to(victim)
    with pytest.raises(BuildError, match="below the symlink 'etc'"):
        write_layer(root, LayerSpec("x", ("etc/passwd",)), {}, 0, tmp_path / "blobs")
    assert not list(tmp_path.glob("blobs/*.tar.gz"))


# --------------------------------------------------------------------------------------------
# the layer cache: entries are input too


def test_a_cache_entry_naming_a_host_file_is_a_miss_and_deletes_nothing(
    tmp_path: Path, victim: Path
) -> None:
    before = state(victim)
    store = Cache(tmp_path / "cache")
    cache = LayerCache(store)
    key = stage_key({"stage": "x"})
    entry = cache.entry_path(key)
    entry.parent.mkdir(parents=True)
    for digest in ("sha256:../../../victim/passwd", str(victim / "passwd"), "sha256:" + "A" * 64):
        layer = {"name": "x", "digest": digest, "diff_id": "sha256:" + "0" * 64, "size": 1,
                 "uncompressed_size": 1, "file_count": 1, "compression": "gzip"}  # fmt: skip
        entry.write_text(json.dumps({"key": key, "layers": [layer]}))
        found = cache.get(key)
        assert found.output is None and found.problem and "unreadable" in found.problem
        assert not entry.exists()  # the bad entry is dropped; the victim is not
    assert state(victim) == before


@pytest.mark.parametrize("bad", ["[" * 50_000, "[]", '{"key": 1}', "null"])
def test_a_malformed_cache_entry_is_a_miss(tmp_path: Path, bad: str) -> None:
    cache = LayerCache(Cache(tmp_path / "cache"))
    key = stage_key({"stage": "y"})
    entry = cache.entry_path(key)
    entry.parent.mkdir(parents=True)
    entry.write_text(bad)
    assert cache.get(key).output is None


def test_a_cache_key_that_is_not_hex_is_refused(tmp_path: Path) -> None:
    cache = LayerCache(Cache(tmp_path / "cache"))
    with pytest.raises(BuildError, match="not a sha256"):
        cache.entry_path("../../etc/passwd")
    with pytest.raises(BuildError):
        cache.put(StageOutput(key="../x", layers=()))


# --------------------------------------------------------------------------------------------
# the staging tree and the passes after it


def test_stage_tree_refuses_writes_through_links(tmp_path: Path, victim: Path) -> None:
    before = state(victim)
    tree = StageTree.fresh(tmp_path / "stage")
    tree.symlink("usr/lib/x", str(victim), "debian-base")
    for write in (
        lambda: tree.file("usr/lib/x/passwd", b"pwned", 0o644, "debian-base"),
        lambda: tree.directory("usr/lib/x/d", 0o755, "debian-base"),
        lambda: tree.symlink("usr/lib/x/passwd", "/x", "debian-base"),
        lambda: tree.remove("usr/lib/x/passwd"),
        lambda: tree.file("../victim/passwd", b"pwned", 0o644, "debian-base"),
        lambda: tree.file("/victim/passwd", b"pwned", 0o644, "debian-base"),
    ):
        with pytest.raises(ArchiveError):
            write()
    # the link itself may be replaced, never followed
    tree.file("usr/lib/x", b"now a file", 0o644, "debian-base")
    assert (tree.root / "usr/lib/x").read_bytes() == b"now a file"
    assert state(victim) == before


def test_prune_never_deletes_through_a_link(tmp_path: Path, victim: Path) -> None:
    (victim / "libx.a").write_text("host")
    before = state(victim)
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/foo").symlink_to(victim)
    layer_of = {"usr/lib/foo/libx.a": "debian-base"}  # a stale record, as a buggy stage might
    with pytest.raises(HardflowError):
        prune(root, spec(), layer_of)
    assert state(victim) == before


def spec(dest: str = "/opt/airflow/dags/x.py") -> ImageSpec:
    return parse_spec(
        {"name": "t/x", "tag": "1", "debian": {"suites": ["trixie"], "packages": ["a1"]},
         "python": {"version": "3.13"}, "files": [{"dest": dest, "content": "x"}]},
        "hostile.toml",
    )  # fmt: skip


def test_a_spec_file_through_the_os_release_link_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        assemble_hardflow(spec("/etc/os-release/evil"), tmp_path / "stage")
    assert "hostile.toml" in err.value.message and "/etc/os-release/evil" in err.value.message
    assert "'etc/os-release' is a symlink" in err.value.message


def test_the_hardflow_stage_still_builds(tmp_path: Path) -> None:
    tree = assemble_hardflow(spec(), tmp_path / "stage")
    stage = finish(tree, ("hardflow",), 0)
    assert "opt/airflow/dags/x.py" in stage.layers[0].paths
    assert stage.owners["opt/airflow/dags/x.py"] == (50000, 0)
