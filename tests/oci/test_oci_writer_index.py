"""A multi-platform OCI layout: index.json -> image index -> one manifest per platform."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_oci_writer import (
    ANNOTATIONS,
    REFERENCE,
    SDE,
    blob,
    image_config,
    load_json,
    make_layers,
)

from hardflow.build.layers import LayerSpec, write_layer
from hardflow.errors import BuildError
from hardflow.oci.reader import Platform, open_image
from hardflow.oci.writer import (
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    PlatformImage,
    write_oci_index,
    write_oci_layout,
)


def two_platforms(tmp_path: Path) -> list[PlatformImage]:
    amd = make_layers(tmp_path, "amd")
    arm = make_layers(tmp_path, "arm")
    # the app layer of both is the same tar: one blob in the layout
    assert amd[1].digest == arm[1].digest
    (tmp_path / "root-arm/bin/tool").write_bytes(b"#!/bin/sh\n# arm\n")
    base = LayerSpec("base", ("bin", "bin/tool"))
    arm[0] = write_layer(tmp_path / "root-arm", base, {}, SDE, tmp_path / "layers-arm2")
    assert arm[0].digest != amd[0].digest
    return [
        PlatformImage(tuple(amd), image_config(architecture="amd64"), ANNOTATIONS),
        PlatformImage(tuple(arm), image_config(architecture="arm64"), ANNOTATIONS),
    ]


def test_the_index_lists_one_manifest_per_platform(tmp_path: Path) -> None:
    images = two_platforms(tmp_path)
    result = write_oci_index(images, REFERENCE, tmp_path / "img")
    layout = result.layout_dir
    top = load_json(layout / "index.json")
    (entry,) = top["manifests"]
    assert entry["mediaType"] == MEDIA_INDEX and entry["digest"] == result.index_digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "3.0.1"
    index = load_json(blob(layout, result.index_digest))
    assert index["annotations"] == ANNOTATIONS
    assert [(m["mediaType"], m["platform"]) for m in index["manifests"]] == [
        (MEDIA_MANIFEST, {"architecture": "amd64", "os": "linux"}),
        (MEDIA_MANIFEST, {"architecture": "arm64", "os": "linux"}),
    ]
    assert [m["digest"] for m in index["manifests"]] == [r.manifest_digest for r in result.images]
    # the reader finds each platform by its platform, every digest checked
    with open_image(layout) as reader:
        refs = reader.manifests()
        assert [str(r.platform) for r in refs] == ["linux/amd64", "linux/arm64"]
        for image, want in zip(result.images, ("amd64", "arm64"), strict=True):
            read = reader.image(platform=Platform("linux", want))
            assert read.manifest_digest == image.manifest_digest
            assert read.config["architecture"] == want
            assert [layer.digest for layer in read.layers] == [x.digest for x in image.layers]
    # a platform's manifest is the one a one-platform layout of it has
    single = write_oci_layout(list(images[1].layers), images[1].config, ANNOTATIONS,
                              REFERENCE, tmp_path / "single")  # fmt: skip
    assert single.manifest_digest == result.images[1].manifest_digest


def test_the_index_is_deterministic_and_shared_blobs_are_stored_once(tmp_path: Path) -> None:
    images = two_platforms(tmp_path)
    a = write_oci_index(images, REFERENCE, tmp_path / "a")
    b = write_oci_index(images, REFERENCE, tmp_path / "b")
    assert a.index_digest == b.index_digest
    names = sorted(p.name for p in (a.layout_dir / "blobs/sha256").iterdir())
    # 3 distinct layers (base x2, app shared), 2 configs, 2 manifests, the index
    assert len(names) == 8
    swapped = write_oci_index(images[::-1], REFERENCE, tmp_path / "c")
    assert swapped.index_digest != a.index_digest


def test_bad_indexes_are_refused(tmp_path: Path) -> None:
    images = two_platforms(tmp_path)
    with pytest.raises(BuildError, match="platform linux/amd64 is given twice"):
        write_oci_index([images[0], images[0]], REFERENCE, tmp_path / "x")
    with pytest.raises(BuildError, match="needs at least one platform"):
        write_oci_index([], REFERENCE, tmp_path / "x")
    with pytest.raises(BuildError, match="linux/arm64: an image needs at least one layer"):
        write_oci_index([images[0], dataclasses.replace(images[1], layers=())], REFERENCE,
                        tmp_path / "x")  # fmt: skip
    assert not (tmp_path / "x").exists()
    assert json.loads(json.dumps(REFERENCE))  # the reference is checked before writing
    with pytest.raises(BuildError, match="is not of the form"):
        write_oci_index(images, "bad ref", tmp_path / "x")
