"""Static image figures from layer tars: sizes, files, packages, set-id files, PATH binaries."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from hardflow.bench.metrics import (
    Node,
    apply_layer,
    count_dpkg_stanzas,
    image_path_env,
    measure_layers,
    path_binaries,
    resolve,
)


def _tar(entries: list[tuple[str, str, int, bytes | str]], gz: bool, path: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, mode, payload in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = str(payload)
                tar.addfile(info)
            else:
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


STATUS = (
    "Package: bash\nStatus: install ok installed\nVersion: 5\n\n"
    "Package: gone\nStatus: deinstall ok config-files\n\n"
    "Package: tini\nStatus: install ok installed\n"
)


def test_measure_layers_reads_both_gzip_and_plain_layers(tmp_path: Path) -> None:
    base = _tar(
        [
            ("usr", "dir", 0o755, b""),
            ("usr/bin", "dir", 0o755, b""),
            ("bin", "sym", 0o777, "usr/bin"),
            ("usr/bin/bash", "file", 0o755, b"\x7fELF" + b"x" * 1000),
            ("usr/bin/su", "file", 0o4755, b"su"),
            ("usr/bin/wall", "file", 0o2755, b"wall"),
            ("usr/bin/readme", "file", 0o644, b"not executable"),
            ("usr/bin/sh", "sym", 0o777, "bash"),
            ("usr/bin/dangling", "sym", 0o777, "/nowhere"),
            ("var/lib/dpkg/status", "file", 0o644, STATUS),
            ("var/lib/dpkg/status.d/python3.13", "file", 0o644, "Package: python3.13\n"),
            ("opt/venv/lib/python3.13/site-packages/a-1.dist-info", "dir", 0o755, b""),
            ("opt/venv/lib/python3.13/site-packages/b-2.dist-info", "dir", 0o755, b""),
        ],
        gz=True,
        path=tmp_path / "base.tar.gz",
    )
    top = _tar(
        [
            ("usr/bin/.wh.wall", "file", 0o644, b""),
            ("usr/local/bin", "dir", 0o755, b""),
            ("usr/local/bin/airflow", "file", 0o755, b"#!python"),
        ],
        gz=False,
        path=tmp_path / "top.tar",
    )
    m = measure_layers([base, top], "/usr/local/bin:/usr/bin:/bin:/sbin")
    assert m.layers == 2
    assert m.files == 6  # bash su readme status status.d/python3.13 airflow
    assert m.setid_files == ("usr/bin/su",)  # wall was whited out by the top layer
    assert m.path_binaries == ("airflow", "bash", "sh", "su")  # bin is usr/bin: counted once
    assert m.debian_packages == 3  # bash, tini (installed), python3.13 (status.d)
    assert m.python_distributions == 2
    assert m.uncompressed_bytes > 4 * 512
    assert 0 < m.gzip_bytes < m.uncompressed_bytes
    assert 0 < m.zstd_bytes < m.uncompressed_bytes
    assert m.to_json()["setid_files"] == 1


def test_whiteouts_and_opaque_directories() -> None:
    tree: dict[str, Node] = {}
    apply_layer(tree, [("a", Node("dir", 0o755, 0)), ("a/x", Node("file", 0o644, 1)),
                       ("a/y", Node("file", 0o644, 1)), ("b", Node("file", 0o644, 1))])
    apply_layer(tree, [("a/.wh..wh..opq", Node("file", 0, 0)), ("a/z", Node("file", 0, 1)),
                       ("./.wh.b", Node("file", 0, 0))])
    assert sorted(tree) == ["a", "a/z"]


def test_resolve_follows_relative_absolute_and_nested_links() -> None:
    tree = {
        "usr": Node("dir", 0o755, 0),
        "usr/bin": Node("dir", 0o755, 0),
        "usr/bin/python3.13": Node("file", 0o755, 1),
        "usr/bin/python3": Node("symlink", 0o777, 0, "python3.13"),
        "bin": Node("symlink", 0o777, 0, "/usr/bin"),
        "loop": Node("symlink", 0o777, 0, "loop"),
    }
    assert resolve(tree, "bin/python3") == "usr/bin/python3.13"
    assert resolve(tree, "loop") is None
    assert resolve(tree, "bin/missing") is None
    assert path_binaries(tree, "/bin:/usr/bin") == ("python3", "python3.13")


def test_dpkg_counting_and_path_env() -> None:
    assert count_dpkg_stanzas(STATUS, need_status=True) == 2
    assert count_dpkg_stanzas("Package: x\n", need_status=True) == 0
    assert count_dpkg_stanzas("Package: x\n", need_status=False) == 1
    assert image_path_env(["A=1", "PATH=/x:/y"]) == "/x:/y"
    assert image_path_env([]) == "/usr/local/bin:/usr/bin:/bin"
