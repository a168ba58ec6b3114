"""Property: whatever bytes an image holds, reading it gives a result or an ImageError, never
another exception, and quickly (random byte damage and random JSON documents)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oci_fixtures import Member, docker_archive, dumps, layout, named, put_blob, tar_of, write_index

from hardflow.errors import ImageError
from hardflow.oci.reader import open_image

LAYERS = [
    tar_of([Member("etc", kind="dir"), Member("etc/passwd", b"root:x:0:0::/:/bin/sh\n")]),
    tar_of([Member("etc/.wh.passwd"), Member("usr/bin/x", b"x" * 300)]),
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["manifests", "digest", "size", "mediaType", "layers", "config",
                         "rootfs", "diff_ids", "platform", "annotations", "Config", "Layers"]),
        inner, max_size=5,
    ),
    max_leaves=12,
)  # fmt: skip


def consume(path: Path) -> None:
    started = time.monotonic()
    try:
        with open_image(path) as reader:
            for ref in reader.manifests():
                image = reader.image(ref)
                for layer in image.layers:
                    with reader.open_layer(layer) as stream:
                        for info in stream:
                            if info.isreg() and info.size <= 4096:
                                stream.read(info, 4096)
    except ImageError:
        pass
    assert time.monotonic() - started < 10


def damaged(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 10), edits=EDITS, compression=st.sampled_from(["gzip", "zstd", None]))
def test_damaged_layout_files(which: int, edits: list[tuple[int, int]], compression: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "oci"
        layout(root, LAYERS, compression)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        target = files[which % len(files)]
        target.write_bytes(damaged(target.read_bytes(), edits))
        consume(root)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=JSON, which=st.sampled_from(["index", "manifest", "config"]))
def test_random_json_documents(doc: Any, which: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "oci"
        written = layout(root, LAYERS)
        data = json.dumps(doc).encode()
        if which == "index":
            (root / "index.json").write_bytes(data)
        elif which == "manifest":  # a consistent digest: the shape checks must catch it
            write_index(root, [named({**written.descriptor, **put_blob(root, data)})])
        else:
            manifest = {**written.manifest, "config": put_blob(root, data)}
            write_index(root, [named({**written.descriptor, **put_blob(root, dumps(manifest))})])
        consume(root)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS, manifest=st.none() | JSON)
def test_damaged_docker_archives(edits: list[tuple[int, int]], manifest: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = docker_archive(Path(tmp) / "a.tar", LAYERS, compression="gzip", manifest=manifest)
        path.write_bytes(damaged(path.read_bytes(), edits))
        consume(path)
