"""What the SBOM reader found in each layer, kept on disk by layer digest (a build's warm path).

Reading an image for its SBOM streams every layer through gzip and the tar parser: seconds for
an Airflow image, and the largest part of a rebuild after a DAG edit. What the reader keeps
from one layer (:class:`~hardflow.supply.sbom.image.LayerFacts`: its wanted files, links and
whiteouts, and how the blob read) is a pure function of the blob's bytes, so ``hardflow build``
keeps it beside its layer cache, keyed by the blob's digest and by the reader's version (the
paths it wants, its size cap, the entry format). A rebuild then reads only its new layers.

Only the build uses the memo, on the layout it has just written from layers whose digests it
computed or verified (the layer cache hashes every blob it hands out). The entries are input
all the same: one that does not parse into exactly the expected shape is a miss, and is
written again; entries are written atomically and a failed write costs time only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from hardflow.fsutil import atomic_write
from hardflow.supply.sbom.image import MAX_FILE, WANTED_PATTERN, LayerFacts, LayerRead, _Found

FORMAT = 1
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_KINDS = frozenset({"file", "link", "dir", "other"})


def reader_version() -> str:
    """Changes whenever what the reader keeps from a layer could change."""
    text = f"{FORMAT}\0{WANTED_PATTERN}\0{MAX_FILE}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _facts_json(facts: LayerFacts) -> dict[str, Any]:
    return {
        "entries": [
            [path, f.kind, base64.b64encode(f.data).decode(), f.link] for path, f in facts.entries
        ],
        "whiteouts": list(facts.whiteouts),
        "read": [
            facts.read.digest,
            facts.read.diff_id,
            facts.read.size,
            facts.read.uncompressed_size,
            facts.read.compression,
        ],
    }


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"expected a non-negative integer, found {value!r}")
    return value


def _facts_from_json(doc: Any, digest: str) -> LayerFacts:
    if not isinstance(doc, dict) or doc.get("version") != reader_version():
        raise ValueError("another reader version")
    entries: list[tuple[str, _Found]] = []
    for item in doc["entries"]:
        path, kind, data, link = item
        if _str(kind) not in _KINDS:
            raise ValueError(f"unknown entry kind {kind!r}")
        raw = base64.b64decode(_str(data), validate=True)
        if len(raw) > MAX_FILE:
            raise ValueError("an entry larger than the reader keeps")
        entries.append((_str(path), _Found(kind, raw, _str(link))))
    read_digest, diff_id, size, uncompressed, compression = doc["read"]
    if read_digest != digest or not _DIGEST.fullmatch(_str(diff_id)):
        raise ValueError("the entry belongs to another layer")
    read = LayerRead(digest, diff_id, _int(size), _int(uncompressed), _str(compression))
    return LayerFacts(tuple(entries), tuple(_str(w) for w in doc["whiteouts"]), read)


class DiskLayerMemo:
    """:class:`~hardflow.supply.sbom.image.LayerMemo` in a folder: ``<root>/<k[:2]>/<k>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path | None:
        if not _DIGEST.fullmatch(digest):
            return None
        key = hashlib.sha256(f"{reader_version()}\0{digest}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.json"

    def get(self, digest: str) -> LayerFacts | None:
        path = self._path(digest)
        if path is None or path.is_symlink():
            return None
        try:
            return _facts_from_json(json.loads(path.read_bytes()), digest)
        except (OSError, ValueError, KeyError, TypeError, RecursionError, binascii.Error):
            return None

    def put(self, digest: str, facts: LayerFacts) -> None:
        path = self._path(digest)
        if path is None:
            return
        doc = {"version": reader_version(), **_facts_json(facts)}
        with contextlib.suppress(OSError):  # a memo that cannot be written costs time only
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(doc, separators=(",", ":")).encode())
