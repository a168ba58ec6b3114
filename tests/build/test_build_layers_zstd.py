"""zstd layers, recompression and unpacking of layer blobs."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import zstandard

from hardflow.build.layers import LayerSpec, extract_layer, recompress, write_layer
from hardflow.errors import BuildError
from hardflow.oci.layer import iter_tar_entries, layer_compression, open_layer
from hardflow.oci.writer import (
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_ZSTD,
    ImageConfig,
    manifest_document,
    write_docker_archive,
    write_oci_layout,
)

SDE = 1_700_000_000


def tree(root: Path) -> LayerSpec:
    files = {"etc/a.conf": b"a\n" * 5000, "usr/bin/tool": os.urandom(70_000), "x/y/z.txt": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.symlink("tool", root / "usr/bin/alias")
    return LayerSpec("t", (*sorted(files), "usr/bin/alias"))


def config() -> ImageConfig:
    return ImageConfig(user="1:0", env=(), entrypoint=("/x",), cmd=(), workdir="/",
                       exposed_ports=(), labels={}, stop_signal="SIGTERM", healthcheck=None,
                       volumes=(), created=SDE)  # fmt: skip


def test_zstd_layer_is_deterministic_and_holds_the_gzip_tar(tmp_path: Path) -> None:
    spec = tree(tmp_path / "root")
    gz = write_layer(tmp_path / "root", spec, {}, SDE, tmp_path / "gz")
    zs = write_layer(tmp_path / "root", spec, {}, SDE, tmp_path / "zs", compression="zstd")
    zs2 = write_layer(tmp_path / "root", spec, {}, SDE, tmp_path / "zs2", compression="zstd")
    assert zs.digest == zs2.digest and zs.path.read_bytes() == zs2.path.read_bytes()
    assert zs.path.name.endswith(".tar.zst") and gz.path.name.endswith(".tar.gz")
    assert zs.diff_id == gz.diff_id and zs.digest != gz.digest
    assert layer_compression(zs.path.read_bytes()[:4]) == "zstd"
    with open_layer(gz.path) as a, open_layer(zs.path) as b:
        tar = a.read()
        assert b.read() == tar
    # one frame, no content size in its header (unknown when the frame starts)
    params = zstandard.get_frame_parameters(zs.path.read_bytes())
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN and params.has_checksum
    names = [e.name for e in iter_tar_entries(gz.path)]
    assert [e.name for e in iter_tar_entries(zs.path)] == names
    # recompressing gives byte for byte what writing with the other compression gives
    back = recompress(zs, "gzip", tmp_path / "back")
    assert back.path.read_bytes() == gz.path.read_bytes() and back.digest == gz.digest
    assert recompress(zs, "zstd", tmp_path / "same") is zs


def test_manifest_media_types_follow_the_compression(tmp_path: Path) -> None:
    spec = tree(tmp_path / "root")
    gz = write_layer(tmp_path / "root", spec, {}, SDE, tmp_path / "b")
    zs = write_layer(tmp_path / "root", spec, {}, SDE, tmp_path / "b", compression="zstd")
    doc = manifest_document([gz, zs], "sha256:" + "0" * 64, 2, {})
    assert [x["mediaType"] for x in doc["layers"]] == [MEDIA_LAYER_GZIP, MEDIA_LAYER_ZSTD]
    image = write_oci_layout([zs], config(), {}, "t/x:1", tmp_path / "oci")
    with pytest.raises(BuildError, match="gzip layers only"):
        write_docker_archive(image, tmp_path / "d.tar")
    archive = write_docker_archive(image, tmp_path / "d.tar", [gz])
    assert archive.is_file()
    with pytest.raises(BuildError, match="diff_ids"):
        write_docker_archive(image, tmp_path / "e.tar", [replace(gz, diff_id="sha256:00")])


def test_extract_layer_rebuilds_the_tree_and_checks_the_diff_id(tmp_path: Path) -> None:
    spec = tree(tmp_path / "root")
    zs = write_layer(tmp_path / "root", spec, {}, SDE, tmp_path / "b", compression="zstd")
    extract_layer(zs, tmp_path / "out")
    assert (tmp_path / "out/etc/a.conf").read_bytes() == b"a\n" * 5000
    assert os.readlink(tmp_path / "out/usr/bin/alias") == "tool"
    with pytest.raises(BuildError, match="diff_id"):
        extract_layer(replace(zs, diff_id="sha256:" + "1" * 64), tmp_path / "out2")
    broken = tmp_path / "broken.tar.zst"
    broken.write_bytes(zs.path.read_bytes()[:100])
    with pytest.raises(BuildError, match="cannot unpack"):
        extract_layer(replace(zs, path=broken), tmp_path / "out3")


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    spec = tree(tmp_path / "root")
    with pytest.raises(BuildError, match="not supported"):
        write_layer(tmp_path / "root", spec, {}, SDE, tmp_path / "b",
                    compression="xz")  # type: ignore[arg-type]  # fmt: skip
