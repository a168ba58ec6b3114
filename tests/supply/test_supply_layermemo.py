"""The SBOM reader's per-layer memo: unchanged layers are not read again, and a bad entry is a
miss, never a wrong SBOM input."""

from __future__ import annotations

import json
from pathlib import Path

from test_supply_sign import SDE, tiny_config

from hardflow.build.layers import LayerSpec, write_layer
from hardflow.oci.writer import ImageResult, write_oci_layout
from hardflow.supply.sbom.image import read_image
from hardflow.supply.sbom.layermemo import DiskLayerMemo

METADATA = "usr/local/lib/python3.13/dist-packages/alpha-1.0.dist-info/METADATA"


def layout(tmp: Path, greeting: bytes = b"hi\n") -> ImageResult:
    root = tmp / "root"
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/os-release").write_bytes(b"ID=debian\n")
    (root / METADATA).parent.mkdir(parents=True, exist_ok=True)
    (root / METADATA).write_bytes(b"Name: alpha\nVersion: 1.0\n")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/greeting").write_bytes(greeting)
    base = write_layer(root, LayerSpec("base", ("usr/lib/os-release", METADATA)), {}, SDE,
                       tmp / "blobs")  # fmt: skip
    top = write_layer(root, LayerSpec("top", ("etc/greeting",)), {}, SDE, tmp / "blobs")
    return write_oci_layout([base, top], tiny_config(), {}, "hardflow-test/memo:1", tmp / "oci")


def test_a_second_read_takes_the_layers_from_the_memo(tmp_path: Path) -> None:
    image = layout(tmp_path)
    memo = DiskLayerMemo(tmp_path / "memo")
    plain = read_image(image.layout_dir)
    first = read_image(image.layout_dir, memo=memo)
    assert first == plain
    assert len(list((tmp_path / "memo").rglob("*.json"))) == 2
    # the memo stands in for the blobs: with them unreadable, the same facts come back
    blob_dir = image.layout_dir / "blobs/sha256"
    for layer in image.layers:
        (blob_dir / layer.digest.split(":")[1]).write_bytes(b"not a layer any more")
    again = read_image(image.layout_dir, memo=memo)
    assert again == plain
    assert METADATA in again.files and again.files["usr/lib/os-release"] == b"ID=debian\n"


def test_a_bad_memo_entry_is_a_miss(tmp_path: Path) -> None:
    image = layout(tmp_path)
    memo = DiskLayerMemo(tmp_path / "memo")
    plain = read_image(image.layout_dir, memo=memo)
    entries = sorted((tmp_path / "memo").rglob("*.json"))
    doc = json.loads(entries[0].read_text())
    doc["read"][0] = "sha256:" + "0" * 64  # claims to describe another layer
    entries[0].write_text(json.dumps(doc))
    entries[1].write_text("{not json")
    assert read_image(image.layout_dir, memo=memo) == plain
    doc = json.loads(entries[0].read_text())
    doc["version"] = "another reader"
    entries[0].write_text(json.dumps(doc))
    assert [memo.get(x.digest) is None for x in plain.layers].count(True) == 1
    assert read_image(image.layout_dir, memo=memo) == plain


def test_a_docker_archive_is_always_read(tmp_path: Path) -> None:
    """The memo serves layouts only: an archive's manifest digest needs every blob read."""
    from hardflow.oci.writer import write_docker_archive

    image = layout(tmp_path)
    archive = write_docker_archive(image, tmp_path / "image.tar")
    memo = DiskLayerMemo(tmp_path / "memo")
    assert read_image(archive, memo=memo) == read_image(archive)
    assert not (tmp_path / "memo").exists()
