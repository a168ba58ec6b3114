"""The reader against crafted hostile images: every case gives an ImageError that names the
artifact, quickly and in bounded memory, never a hang, a traceback or a read outside the image.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from oci_fixtures import (
    Member,
    compress,
    digest,
    docker_archive,
    dumps,
    layout,
    named,
    put_blob,
    put_image,
    tar_of,
    write_index,
)

from hardflow.errors import ImageError
from hardflow.oci import blobs
from hardflow.oci.reader import open_image
from hardflow.oci.stream import open_layer_file

LAYER = tar_of([Member("etc/passwd", b"root:x:0:0::/:/bin/sh\n"), Member("usr/bin/x", b"x")])


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A case that would block (a FIFO, /dev/zero) fails the test instead of hanging it."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError("the reader blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def read_all(path: Path) -> None:
    """Everything a consumer does: list, pick, read every layer to the end."""
    with open_image(path) as reader:
        image = reader.image()
        for layer in image.layers:
            with reader.open_layer(layer) as stream:
                for info in stream:
                    if info.isreg() and info.size < 1 << 20:
                        stream.read(info, 1 << 20)


def good(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    root = tmp_path / "oci"
    written = layout(root, [LAYER])
    return root, {"manifest": written.manifest, "config": written.config,
                  "descriptor": written.descriptor}  # fmt: skip


def blob(root: Path, d: str) -> Path:
    return root / "blobs" / "sha256" / d[7:]


def manifest_digest(root: Path) -> str:
    return str(json.loads((root / "index.json").read_bytes())["manifests"][0]["digest"])


# ---------------------------------------------------------------------------------------------
# blobs that are not regular files


@pytest.mark.parametrize("which", ["layer", "manifest", "config", "index"])
def test_blob_symlinked_to_dev_zero_is_refused_at_once(tmp_path: Path, which: str) -> None:
    root, parts = good(tmp_path)
    target = {
        "layer": lambda: blob(root, parts["manifest"]["layers"][0]["digest"]),
        "manifest": lambda: blob(root, manifest_digest(root)),
        "config": lambda: blob(root, parts["manifest"]["config"]["digest"]),
        "index": lambda: root / "index.json",
    }[which]()
    target.unlink()
    target.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="is a symlink; expected a regular file"):
        read_all(root)


@pytest.mark.parametrize("which", ["layer", "index"])
def test_blob_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path, which: str) -> None:
    root, parts = good(tmp_path)
    target = blob(root, parts["manifest"]["layers"][0]["digest"])
    target = root / "index.json" if which == "index" else target
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(ImageError, match="is a FIFO; expected a regular file"):
        read_all(root)


def test_blobs_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    root, _ = good(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(root / "blobs", elsewhere)
    (root / "blobs").symlink_to(elsewhere)
    with pytest.raises(ImageError, match="blobs is not a directory"):
        read_all(root)


# ---------------------------------------------------------------------------------------------
# digests and sizes


def test_size_that_differs_from_the_descriptor(tmp_path: Path) -> None:
    root, parts = good(tmp_path)
    path = blob(root, parts["manifest"]["layers"][0]["digest"])
    path.write_bytes(path.read_bytes() + b"\0" * 10)
    with pytest.raises(ImageError, match=r"layer 0 .* has \d+ bytes; its descriptor says \d+"):
        read_all(root)


@pytest.mark.parametrize("which", ["manifest", "config"])
def test_modified_manifest_or_config_is_refused(tmp_path: Path, which: str) -> None:
    root, parts = good(tmp_path)
    d = manifest_digest(root) if which == "manifest" else parts["manifest"]["config"]["digest"]
    data = bytearray(blob(root, d).read_bytes())
    data[data.index(b"{") + 1 : data.index(b"{") + 1] = b" "  # same JSON, other bytes
    blob(root, d).write_bytes(bytes(data)[:-1])  # size kept
    with pytest.raises(ImageError, match="does not match its digest: its content hashes to"):
        read_all(root)


def test_modified_layer_is_refused_by_its_digest(tmp_path: Path) -> None:
    root, parts = good(tmp_path)
    path = blob(root, parts["manifest"]["layers"][0]["digest"])
    data = bytearray(path.read_bytes())
    data[-9] ^= 0xFF  # inside the deflate stream's tail or the CRC
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"layer 0 .*(does not match its digest|diff_id)"):
        read_all(root)


def test_layer_that_differs_from_the_config_diff_id(tmp_path: Path) -> None:
    root = tmp_path / "oci"
    other = tar_of([Member("usr/bin/evil", b"evil")])
    written = put_image(root, [LAYER])
    # a manifest naming a consistent blob whose tar is not the one the config names
    evil = put_blob(root, compress(other, "gzip"))
    manifest = {**written.manifest, "layers": [{**written.manifest["layers"][0], **evil}]}
    write_index(root, [named({**written.descriptor, **put_blob(root, dumps(manifest))})])
    with pytest.raises(ImageError, match=r"uncompressed digest is .*the config's diff_id is"):
        read_all(root)


def test_docker_archive_layer_that_differs_from_the_config(tmp_path: Path) -> None:
    path = docker_archive(tmp_path / "a.tar", [LAYER])
    swapped = tmp_path / "swapped.tar"
    evil = tar_of([Member("usr/bin/evil", b"evil")])
    with tarfile.open(path) as src, tarfile.open(swapped, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member)
            payload = data.read() if data is not None else b""
            if member.name.endswith(".tar"):
                payload, member.size = evil, len(evil)
            dst.addfile(member, io.BytesIO(payload))
    with pytest.raises(ImageError, match="diff_id"):
        read_all(swapped)
    from hardflow.supply.sbom.image import read_image

    with pytest.raises(ImageError, match="diff_id"):  # the SBOM refuses it too
        read_image(swapped)


@pytest.mark.parametrize(
    "bad",
    ["sha256:../../../victim", "sha256:" + "A" * 64, "sha512:" + "a" * 128, "sha256:abc", 7, None],
)
def test_malformed_digest_never_becomes_a_path(tmp_path: Path, bad: object) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret")
    root = tmp_path / "img" / "oci"
    written = layout(root, [LAYER])
    manifest = {**written.manifest, "layers": [{**written.manifest["layers"][0], "digest": bad}]}
    write_index(root, [named({**written.descriptor, **put_blob(root, dumps(manifest))})])
    with pytest.raises(ImageError, match=r"layers\[0\].*not of the form sha256:<64 lowercase hex>"):
        read_all(root)
    assert victim.read_text() == "secret"


@pytest.mark.parametrize(
    ("field", "value"),
    [("Config", "../../victim"), ("Config", "/etc/passwd"), ("Layers", ["a/../../victim"]),
     ("Layers", [""]), ("Config", 12)],
)  # fmt: skip
def test_docker_archive_names_must_be_plain(tmp_path: Path, field: str, value: object) -> None:
    entry = {"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l.tar"], field: value}
    path = docker_archive(tmp_path / "a.tar", [LAYER], manifest=[entry])
    with pytest.raises(ImageError, match=f"manifest.json\\[0\\].{field}.*(plain relative|string)"):
        read_all(path)


def test_docker_archive_member_linked_out_of_the_archive(tmp_path: Path) -> None:
    link = tarfile.TarInfo("l.tar")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../etc/passwd"
    config = dumps({"rootfs": {"diff_ids": [digest(LAYER)]}, "created": "x"})
    conf = tarfile.TarInfo("c.json")
    conf.size = len(config)
    entry = {"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}
    path = docker_archive(tmp_path / "a.tar", [], manifest=[entry],
                          extra=[(link, None), (conf, config)])  # fmt: skip
    with pytest.raises(
        ImageError, match=r"link target is '\.\./\.\./\.\./etc/passwd'; expected a plain"
    ):
        read_all(path)


# ---------------------------------------------------------------------------------------------
# bounded reads


def peak_while(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
    except ImageError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_huge_index_json_is_refused_without_reading_it(tmp_path: Path) -> None:
    root, _ = good(tmp_path)
    with open(root / "index.json", "wb") as fh:
        fh.write(b'{"manifests": [], "padding": "')
        fh.truncate(64 << 20)  # 64 MiB (sparse)
    with pytest.raises(ImageError, match=f"larger than {blobs.MAX_JSON_BYTES} bytes"):
        read_all(root)
    assert peak_while(lambda: read_all(root)) < 2 * blobs.MAX_JSON_BYTES + (1 << 20)


def test_deeply_nested_json_is_an_image_error(tmp_path: Path) -> None:
    root, _ = good(tmp_path)
    (root / "index.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ImageError, match=r"index\.json is not valid JSON"):
        read_all(root)


def test_extended_tar_header_of_a_huge_size_is_refused(tmp_path: Path) -> None:
    # a PAX header claiming 64 MiB: tarfile alone would read it whole into memory
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 64 << 20
    raw = header.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * (64 << 20) + b"\0" * 1024
    path = tmp_path / "layer.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=1).compress(raw))

    def read() -> None:
        with open_layer_file(path) as stream:
            list(stream)

    with pytest.raises(ImageError, match="extended header of 67108864 bytes"):
        read()
    assert peak_while(read) < 8 << 20


def test_decompression_bomb_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "BOMB_FLOOR", 1 << 20)
    bomb = tar_of([Member("zeros", b"\0" * (32 << 20))])
    path = tmp_path / "bomb.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(bomb))
    assert path.stat().st_size < 32 << 10
    with pytest.raises(ImageError, match="refusing a decompression bomb"), \
            open_layer_file(path) as stream:  # fmt: skip
        list(stream)


def test_truncated_layer_names_it(tmp_path: Path) -> None:
    root, parts = good(tmp_path)
    path = blob(root, parts["manifest"]["layers"][0]["digest"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"layer 0 \(.*/blobs/sha256/[0-9a-f]{64}\) has \d+ bytes"):
        read_all(root)
    # without a size in the descriptor, the stream itself tells
    layers = [{k: v for k, v in parts["manifest"]["layers"][0].items() if k != "size"}]
    manifest = {**parts["manifest"], "layers": layers}
    write_index(root, [named({**parts["descriptor"], **put_blob(root, dumps(manifest))})])
    with pytest.raises(ImageError, match=r"layer 0 .*truncated or was modified"):
        read_all(root)


def test_compressed_or_junk_archives(tmp_path: Path) -> None:
    archive = docker_archive(tmp_path / "a.tar", [LAYER])
    gz = tmp_path / "a.tar.gz"
    gz.write_bytes(compress(archive.read_bytes(), "gzip"))
    with pytest.raises(ImageError, match="compressed tarball; decompress it first"):
        read_all(gz)
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ImageError, match="junk is not an image"):
        read_all(junk)
    with pytest.raises(ImageError, match="no such file"):
        read_all(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# JSON shapes


def _mutate_index(root: Path, doc: object) -> None:
    (root / "index.json").write_bytes(json.dumps(doc).encode())


SHAPES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("index is a list", lambda p: [], r"index.json is a list .*expected a JSON object"),
    ("no manifests", lambda p: {}, r"index.json.manifests is missing .*expected a JSON list"),
    ("entry is a string", lambda p: {"manifests": ["x"]}, r"manifests\[0\] is a string"),
    ("digest is a number", lambda p: {"manifests": [{**p["descriptor"], "digest": 5}]},
     r"manifests\[0\].digest: digest 5 is not"),
    ("size is negative", lambda p: {"manifests": [{**p["descriptor"], "size": -1}]},
     r"manifests\[0\].size is a number \(-1\)"),
    ("platform is a string", lambda p: {"manifests": [{**p["descriptor"], "platform": "x"}]},
     r"manifests\[0\].platform is a string"),
    ("annotation is a number",
     lambda p: {"manifests": [{**p["descriptor"], "annotations": {"a": 1}}]},
     r"annotations.a is a number"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "doc", "message"), SHAPES, ids=[s[0] for s in SHAPES])
def test_malformed_index_shapes(
    tmp_path: Path, case: str, doc: Callable[[dict[str, Any]], object], message: str
) -> None:
    root, parts = good(tmp_path)
    _mutate_index(root, doc(parts))
    with pytest.raises(ImageError, match=message):
        read_all(root)


MANIFEST_SHAPES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("manifest is a list", lambda m: [m], r"image manifest sha256:\S+ is a list"),
    ("no layers", lambda m: {k: v for k, v in m.items() if k != "layers"},
     r"\.layers is missing"),
    ("layers is an object", lambda m: {**m, "layers": {}}, r"\.layers is an object"),
    ("layer is a string", lambda m: {**m, "layers": ["x"]}, r"\.layers\[0\] is a string"),
    ("no config", lambda m: {**m, "config": None}, r"\.config is missing"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "doc", "message"), MANIFEST_SHAPES, ids=[s[0] for s in MANIFEST_SHAPES]
)
def test_malformed_manifest_shapes(
    tmp_path: Path, case: str, doc: Callable[[dict[str, Any]], object], message: str
) -> None:
    root, parts = good(tmp_path)
    desc = {**parts["descriptor"], **put_blob(root, dumps(doc(parts["manifest"])))}
    write_index(root, [named(desc)])
    with pytest.raises(ImageError, match=message):
        read_all(root)


@pytest.mark.parametrize(
    ("config", "message"),
    [([], r"image config sha256:\S+ is a list"),
     ({"rootfs": None}, r"image config rootfs is missing"),
     ({"rootfs": {"diff_ids": "x"}}, r"rootfs.diff_ids is a string"),
     ({"rootfs": {"diff_ids": []}}, r"the config lists 0 diff_ids for 1 layers"),
     ({"rootfs": {"diff_ids": [1]}}, r"rootfs.diff_ids\[0\]: digest 1 is not")],
)  # fmt: skip
def test_malformed_config_shapes(tmp_path: Path, config: object, message: str) -> None:
    root, parts = good(tmp_path)
    manifest = {**parts["manifest"], "config": put_blob(root, dumps(config))}
    write_index(root, [named({**parts["descriptor"], **put_blob(root, dumps(manifest))})])
    with pytest.raises(ImageError, match=message):
        read_all(root)


def test_indexes_nested_too_deep(tmp_path: Path) -> None:
    root, parts = good(tmp_path)
    desc = parts["descriptor"]
    for _ in range(6):
        inner = dumps({"schemaVersion": 2, "manifests": [desc]})
        desc = {"mediaType": "application/vnd.oci.image.index.v1+json", **put_blob(root, inner)}
    write_index(root, [desc])
    with pytest.raises(ImageError, match="image indexes nest more than 4 deep"):
        read_all(root)


def test_docker_manifest_shapes(tmp_path: Path) -> None:
    cases: list[tuple[object, str]] = [
        ({}, r"manifest.json is an object"),
        ([], "lists no image"),
        ([{"Config": "c", "Layers": "x"}], r"\[0\].Layers is a string"),
        ([{"Config": "c", "Layers": [], "RepoTags": [1]}], "RepoTags"),
    ]
    for doc, message in cases:
        path = docker_archive(tmp_path / "a.tar", [LAYER], manifest=doc)
        with pytest.raises(ImageError, match=message):
            read_all(path)
