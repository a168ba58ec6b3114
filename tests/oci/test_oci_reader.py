"""The one image reader on well-formed images: layouts (one or several platforms, nested
indexes, attachments), oci-archives, docker-archives, gzip/zstd/plain layers, whiteouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from oci_fixtures import (
    MEDIA_INDEX,
    REF_NAME,
    Member,
    docker_archive,
    dumps,
    layout,
    named,
    put_blob,
    put_image,
    tar_directory,
    tar_of,
    write_index,
)

from hardflow.errors import ImageError
from hardflow.oci.reader import Image, ImageReader, Platform, open_image
from hardflow.oci.stream import merge_layer, normalize_member, whiteout_target

BASE = tar_of([
    Member("etc", kind="dir", mode=0o755),
    Member("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
    Member("etc/app", kind="dir", mode=0o755),
    Member("etc/app/a.conf", b"a"),
    Member("etc/app/b.conf", b"b"),
    Member("usr/bin/tool", b"#!tool", mode=0o755),
    Member("usr/bin/alias", kind="symlink", link="tool"),
    Member("var/cache/x", b"cached"),
])  # fmt: skip
TOP = tar_of([
    Member("etc/app/.wh..wh..opq"),
    Member("etc/app/c.conf", b"c"),
    Member("var/.wh.cache"),
    Member("usr/bin/tool", b"#!tool v2", mode=0o755),
])  # fmt: skip


def merged(reader: ImageReader, image: Image) -> dict[str, bytes | str]:
    """The merged file system: file contents, "->target" for symlinks, "dir" for dirs."""
    tree: dict[str, bytes | str] = {}
    for layer in image.layers:
        entries: list[tuple[str, bytes | str]] = []
        whiteouts: list[str] = []
        with reader.open_layer(layer) as stream:
            for info in stream:
                path = normalize_member(info.name)
                if whiteout_target(path) is not None:
                    whiteouts.append(path)
                elif info.issym():
                    entries.append((path, "->" + info.linkname))
                elif info.isdir():
                    entries.append((path, "dir"))
                else:
                    entries.append((path, stream.read(info, 1 << 20)))
        merge_layer(tree, entries, whiteouts, lambda v: v == "dir")
    return tree


EXPECTED = {
    "etc": "dir",
    "etc/passwd": b"root:x:0:0::/:/bin/sh\n",
    "etc/app": "dir",
    "etc/app/c.conf": b"c",
    "usr/bin/tool": b"#!tool v2",
    "usr/bin/alias": "->tool",
}


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_layout_layers_in_every_compression_merge_with_whiteouts(
    tmp_path: Path, compression: str | None
) -> None:
    layout(tmp_path / "oci", [BASE, TOP], compression)
    with open_image(tmp_path / "oci") as reader:
        assert reader.kind == "oci-layout"
        (ref,) = reader.manifests()
        assert (ref.ref_name, ref.image_name, str(ref.platform)) == (
            "1.0", "test/app:1.0", "linux/amd64",
        )  # fmt: skip
        image = reader.image()
        assert image.config["architecture"] == "amd64"
        assert merged(reader, image) == EXPECTED
        with reader.open_layer(image.layers[0]) as stream:
            list(stream)
        assert stream.compression_name == (compression or "none")
        assert stream.diff_id == image.layers[0].diff_id
        assert stream.issues == []


def test_oci_archive_and_docker_archives_read_the_same(tmp_path: Path) -> None:
    layout(tmp_path / "oci", [BASE, TOP])
    sources = {
        "oci-archive": tar_directory(tmp_path / "oci", tmp_path / "oci.tar"),
        "docker-archive": docker_archive(tmp_path / "podman.tar", [BASE, TOP]),
    }
    gz = docker_archive(tmp_path / "gz.tar", [BASE, TOP], compression="gzip", digest_names=True)
    for kind, path in [*sources.items(), ("docker-archive", gz)]:
        with open_image(path) as reader:
            assert reader.kind == kind
            image = reader.image()
            assert merged(reader, image) == EXPECTED, path
    with open_image(gz) as reader:
        image = reader.image()
        assert image.manifest.tags == ("test/app:1.0",) and image.manifest_digest is None
        assert all(layer.digest is not None for layer in image.layers)  # named by digest


def test_index_with_several_platforms_lists_them_and_picks_one(tmp_path: Path) -> None:
    root = tmp_path / "oci"
    amd = put_image(root, [BASE], architecture="amd64")
    arm = put_image(root, [TOP], architecture="arm64")
    write_index(
        root, [named(amd.descriptor, "test/app:amd"), named(arm.descriptor, "test/app:arm")]
    )
    with open_image(root) as reader:
        listed = [(str(m.platform), m.ref_name) for m in reader.manifests()]
        assert listed == [("linux/amd64", "amd"), ("linux/arm64", "arm")]
        with pytest.raises(ImageError, match=r"holds 2 images .*linux/amd64.*linux/arm64"):
            reader.select()
        arm64 = reader.image(platform=Platform.parse("linux/arm64"))
        assert arm64.config["architecture"] == "arm64"
        assert reader.image(ref_name="test/app:amd").config["architecture"] == "amd64"
        assert reader.image(ref_name="arm").config["architecture"] == "arm64"
        assert reader.select(prefer=Platform("linux", "amd64")).ref_name == "amd"
        with pytest.raises(ImageError, match="no image with platform linux/s390x"):
            reader.select(platform=Platform("linux", "s390x"))


def test_nested_index_keeps_the_top_level_name(tmp_path: Path) -> None:
    root = tmp_path / "oci"
    amd = put_image(root, [BASE], architecture="amd64")
    arm = put_image(root, [TOP], architecture="arm64")
    inner = dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                   "manifests": [amd.descriptor, arm.descriptor]})  # fmt: skip
    write_index(root, [named({"mediaType": MEDIA_INDEX, **put_blob(root, inner)})])
    with open_image(root) as reader:
        refs = reader.manifests()
        assert [(str(m.platform), m.image_name) for m in refs] == [
            ("linux/amd64", "test/app:1.0"), ("linux/arm64", "test/app:1.0"),
        ]  # fmt: skip
        image = reader.image(platform=Platform("linux", "arm64"))
        assert merged(reader, image)["etc/app/c.conf"] == b"c"


def test_attachments_are_listed_but_never_chosen(tmp_path: Path) -> None:
    root = tmp_path / "oci"
    image = put_image(root, [BASE])
    sig = put_image(root, [TOP])
    tag = f"sha256-{image.descriptor['digest'][7:]}.sig"
    signature = {**sig.descriptor, "annotations": {REF_NAME: tag}}
    write_index(root, [named(image.descriptor), signature])
    with open_image(root) as reader:
        assert [m.attachment for m in reader.manifests()] == [False, True]
        assert reader.select().digest == image.descriptor["digest"]


def test_whiteouts_hide_lower_layers_only_and_files_replace_directories() -> None:
    tree: dict[str, str] = {"a": "dir", "a/x": "f", "a/y": "f", "b": "f", "ab": "f"}
    merge_layer(tree, [("a/z", "f")], ["a/.wh..wh..opq", ".wh.b"], lambda v: v == "dir")
    assert tree == {"a": "dir", "a/z": "f", "ab": "f"}  # a/z of the same layer stays
    merge_layer(tree, [("a", "f")], [], lambda v: v == "dir")
    assert tree == {"a": "f", "ab": "f"}
    merge_layer(tree, [], [".wh..wh..opq"], lambda v: v == "dir")
    assert tree == {}


def test_member_reads_are_capped(tmp_path: Path) -> None:
    layout(tmp_path / "oci", [tar_of([Member("big", b"x" * 5000), Member("small", b"s")])])
    with open_image(tmp_path / "oci") as reader:
        image = reader.image()
        with reader.open_layer(image.layers[0]) as stream:
            for info in stream:
                if info.name == "big":
                    with pytest.raises(ImageError, match=r"/big has 5000 bytes; at most 100"):
                        stream.read(info, 100)
                else:
                    assert stream.read(info, 100) == b"s"


def test_unsafe_members_are_recorded_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    hostile = tar_of([
        Member("../../victim", b"overwritten"),
        Member("/abs", b"x"),
        Member("link", kind="symlink", link="../../../victim"),
        Member("hard", kind="hardlink", link="/etc/shadow"),
        Member("dev/null", kind="char"),
        Member("pipe", kind="fifo"),
        Member("fine", b"ok"),
    ])  # fmt: skip
    root = tmp_path / "img" / "oci"
    layout(root, [hostile])
    with open_image(root) as reader:
        image = reader.image()
        with reader.open_layer(image.layers[0]) as stream:
            names = [info.name for info in stream]
    assert "fine" in names
    kinds = {(i.path, i.kind) for i in stream.issues}
    assert kinds == {("../../victim", "traversal"), ("/abs", "absolute"),
                     ("link", "escaping-link"), ("hard", "escaping-link"),
                     ("dev/null", "device"), ("pipe", "fifo")}  # fmt: skip
    assert all(i.layer == image.layers[0].digest for i in stream.issues)
    assert victim.read_text() == "untouched"
    assert sorted(p.name for p in root.iterdir()) == ["blobs", "index.json", "oci-layout"]
