"""The audit's image source on the one image reader: member issues, error types, bounded
reads of account files, and the platform it picks from an index with several."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from audit_fixtures import MakeImage, RawEntry

from hardflow.audit.image_source import CONTENT_LIMIT, ImageReadError, read_image_path
from hardflow.audit.model import AuditError
from hardflow.errors import ImageError


def test_unsafe_members_become_member_issues(make_image: MakeImage, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    layout = make_image(
        raw=[[RawEntry("../../victim.txt", b"pwned"), RawEntry("opt/out", link="../../../x")]]
    )
    image = read_image_path(layout)
    found = {(i.path, i.kind) for i in image.member_issues}
    assert found == {("../../victim.txt", "traversal"), ("opt/out", "escaping-link")}
    assert {i.layer for i in image.member_issues} == {image.layers[2].blob}
    assert victim.read_text() == "untouched"


def test_clean_image_has_no_member_issues(make_image: MakeImage) -> None:
    assert read_image_path(make_image()).member_issues == ()


def test_reader_failures_are_image_errors_and_audit_errors(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("[]")
    with pytest.raises(ImageReadError) as info:
        read_image_path(tmp_path)
    assert isinstance(info.value, ImageError) and isinstance(info.value, AuditError)
    assert "index.json is a list" in info.value.message


def test_oversized_account_file_is_skipped_not_read(make_image: MakeImage) -> None:
    huge = "root:x:0:0::/root:/bin/sh\n" * ((4 * CONTENT_LIMIT) // 26)
    layout = make_image(files={"etc/passwd": huge})
    tracemalloc.start()
    try:
        image = read_image_path(layout)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.files["etc/passwd"].size > 4 * CONTENT_LIMIT - 100
    assert "etc/passwd" not in image.contents and "etc/group" in image.contents
    assert peak < 2 * CONTENT_LIMIT + (4 << 20)  # never the whole 16 MiB file


def test_index_with_several_platforms_audits_amd64(make_image: MakeImage) -> None:
    layout = make_image()
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    (entry,) = index["manifests"]
    arm = {**entry, "platform": {"os": "linux", "architecture": "arm64"},
           "digest": "sha256:" + "0" * 64}  # fmt: skip
    index["manifests"] = [arm, entry]  # the arm64 entry first, and its blob is missing
    index_path.write_text(json.dumps(index))
    image = read_image_path(layout)
    assert image.config["architecture"] == "amd64"
