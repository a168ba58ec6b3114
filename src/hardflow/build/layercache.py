"""The per-layer build cache: finished layer blobs keyed by everything that went into them.

A build is cut into *stages*; each stage makes one or more layers from its own inputs only
(see :mod:`hardflow.build.rootfs`): the Debian stage (``debian-base`` + ``python-runtime``) from
the ``.deb`` files, one stage per wheel layer from that layer's wheels, the ``hardflow`` stage from
the spec (without its baked folders), the ``baked`` stage from the bytes of the spec's DAG and
plugin folders (no lower layer: a DAG edit rebuilds that stage alone). A stage's *key* is the
sha256 of a canonical JSON document naming every input: the
artifacts' sha256s, the diff_ids of the tree it is compiled in, the spec fields it reads,
SOURCE_DATE_EPOCH, the compression, the bytecode compiler and a fingerprint of the builder's
own source (so a changed builder never reuses an old layer). Equal keys mean equal bytes, so a
cached layer can stand in for a rebuilt one and the image digest stays the same.

An entry is ``<cache>/layers/<k[:2]>/<key>.json`` (what the stage produced: its layers'
digests, diff_ids and sizes, and the figures the build reports); the blobs live in the
content-addressed store beside the downloads (``<cache>/sha256/…``). Both are written through a
temporary file renamed into place, the blob first, so an entry never names a missing blob. On
reuse every blob is hashed again; a blob that is missing or does not match its digest makes the
entry a miss (and is removed), so the stage is rebuilt.

Entries are read back from disk, so they are input like any other: keys and digests must be
``sha256`` hex before they become file names, and every path used is checked by
:func:`hardflow.fsutil.confined` (below the cache root, no symlinked component), so an edited
entry can neither make the cache read nor delete a file elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import zstandard

from hardflow import __version__
from hardflow.errors import BuildError
from hardflow.fsutil import ConfinementError, confined
from hardflow.lock.fetch import Cache, sha256_file
from hardflow.oci.layer import COMPRESSIONS, Compression, Layer

CACHE_FORMAT = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class StageOutput:
    """What a stage produced: its layers and the figures a build reports about them."""

    key: str
    layers: tuple[Layer, ...]
    files: tuple[str, ...] = ()  # regular files of the stage (to find two packages' clashes)
    setuid_cleared: tuple[str, ...] = ()
    pyc_compiled: int = 0
    dropped_files: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lookup:
    output: StageOutput | None
    problem: str | None = None  # why a present entry could not be used


def stage_key(parts: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``parts`` (plus the cache format)."""
    doc = {"format": CACHE_FORMAT, **parts}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


# The sources that decide what goes into a layer: the stages and their helpers. Editing any
# of them invalidates every cached layer; editing the CLI, the runner or the audit does not.
# The files the spec copies into the image (image/entrypoint.py, ...) are not here: their
# contents are part of the spec checksum in the hardflow layer's key.
BUILDER_SOURCES = (
    "__init__.py", "build/", "fsutil.py", "spec.py", "lock/model.py", "debian/", "pypi/",
    "oci/layer.py",
)  # fmt: skip


@cache
def builder_fingerprint() -> str:
    """sha256 over the hardflow version and the builder's Python sources (BUILDER_SOURCES).

    A change to the builder invalidates every cached layer: coarse, but a layer made by other
    code is never reused by mistake (hashing the sources takes milliseconds).
    """
    h = hashlib.sha256(f"hardflow {__version__}\n".encode())
    # libraries whose output lands in layers: the wheel installer, zlib, libzstd
    h.update(f"installer {metadata.version('installer')}\n".encode())
    h.update(f"zlib {zlib.ZLIB_RUNTIME_VERSION}\nzstd {zstandard.ZSTD_VERSION}\n".encode())
    root = resources.files("hardflow")
    base = Path(str(root))
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(base).as_posix()
        if not rel.startswith(BUILDER_SOURCES):
            continue
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _layer_json(layer: Layer) -> dict[str, Any]:
    return {
        "name": layer.name,
        "digest": layer.digest,
        "diff_id": layer.diff_id,
        "size": layer.size,
        "uncompressed_size": layer.uncompressed_size,
        "file_count": layer.file_count,
        "compression": layer.compression,
    }


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:  # bool is an int to Python, not to the cache
        raise ValueError(f"{what} is {value!r}, expected a non-negative integer")
    return value


def _digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ValueError(f"{what} is {value!r}, expected 'sha256:' and 64 lowercase hex digits")
    return value


def _layer_from_json(data: Mapping[str, Any], path: Path) -> Layer:
    compression = data["compression"]
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}")
    comp: Compression = "zstd" if compression == "zstd" else "gzip"
    return Layer(
        name=str(data["name"]),
        path=path,
        digest=_digest(data["digest"], "digest"),
        diff_id=_digest(data["diff_id"], "diff_id"),
        size=_count(data["size"], "size"),
        uncompressed_size=_count(data["uncompressed_size"], "uncompressed_size"),
        file_count=_count(data["file_count"], "file_count"),
        compression=comp,
    )


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".entry-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LayerCache:
    """Stage outputs stored in (and blobs shared with) a download :class:`Cache`."""

    def __init__(self, store: Cache) -> None:
        self.store = store
        self.root = store.root / "layers"

    def entry_path(self, key: str) -> Path:
        if not isinstance(key, str) or not _HEX64.fullmatch(key):
            raise BuildError(f"internal: layer cache key {key!r} is not a sha256 hex digest")
        return confined(self.store.root, f"layers/{key[:2]}/{key}.json")

    def blob_path(self, digest: str) -> Path:
        """The store's path for ``digest`` (``sha256:<hex>``); ValueError for anything else."""
        hex_ = _digest(digest, "layer digest").removeprefix("sha256:")
        path = self.store.path_for(hex_)
        return confined(self.store.root, path.relative_to(self.store.root).as_posix())

    def get(self, key: str) -> Lookup:
        """The stored output of the stage ``key``, its blobs verified; a miss otherwise."""
        try:
            entry = self.entry_path(key)
        except ConfinementError as exc:
            return Lookup(None, f"layer cache: {exc.message}; the stage was rebuilt")
        try:
            raw = entry.read_bytes()
        except FileNotFoundError:
            return Lookup(None)
        except OSError as exc:
            return Lookup(None, f"cannot read {entry}: {exc.strerror}")
        try:
            data = json.loads(raw)
            if data.get("key") != key:
                raise ValueError("the entry belongs to another key")
            layers = tuple(
                _layer_from_json(x, self.blob_path(x["digest"])) for x in data["layers"]
            )
            output = StageOutput(
                key=key,
                layers=layers,
                files=tuple(data.get("files", ())),
                setuid_cleared=tuple(data.get("setuid_cleared", ())),
                pyc_compiled=int(data.get("pyc_compiled", 0)),
                dropped_files=int(data.get("dropped_files", 0)),
                notes=tuple(data.get("notes", ())),
            )
        except (
            ValueError, KeyError, TypeError, AttributeError, RecursionError, ConfinementError
        ) as exc:
            entry.unlink(missing_ok=True)
            return Lookup(None, f"unreadable layer cache entry {entry} ({exc}); rebuilt")
        for layer in output.layers:
            problem = _check_blob(layer)
            if problem is not None:
                layer.path.unlink(missing_ok=True)
                entry.unlink(missing_ok=True)
                return Lookup(None, f"layer cache: {problem}; the layer was rebuilt")
        return Lookup(output)

    def put(self, output: StageOutput) -> StageOutput:
        """Store the output's blobs and entry; the returned layers point at the stored blobs."""
        stored: list[Layer] = []
        try:
            for layer in output.layers:
                target = self.blob_path(layer.digest)
                if not (target.is_file() and _check_blob(replace(layer, path=target)) is None):
                    _store_blob(layer.path, target)
                stored.append(replace(layer, path=target))
            entry = self.entry_path(output.key)
        except (ValueError, ConfinementError) as exc:
            raise BuildError(f"cannot store stage {output.key} in the layer cache: {exc}") from None
        result = replace(output, layers=tuple(stored))
        doc = {
            "key": output.key,
            "layers": [_layer_json(x) for x in result.layers],
            "files": list(output.files),
            "setuid_cleared": list(output.setuid_cleared),
            "pyc_compiled": output.pyc_compiled,
            "dropped_files": output.dropped_files,
            "notes": list(output.notes),
        }
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        try:
            _atomic_bytes(entry, data)
        except OSError as exc:
            raise BuildError(f"cannot write the layer cache entry {output.key}: {exc}") from None
        return result


def _check_blob(layer: Layer) -> str | None:
    try:
        size = layer.path.stat().st_size
    except OSError:
        return f"blob of layer {layer.name} ({layer.digest}) is missing"
    if size != layer.size:
        return f"blob {layer.path} of layer {layer.name} has {size} bytes, expected {layer.size}"
    actual = "sha256:" + sha256_file(layer.path)
    if actual != layer.digest:
        return (
            f"blob {layer.path} of layer {layer.name} has sha256 {actual}, "
            f"expected {layer.digest}"
        )
    return None


def _store_blob(source: Path, target: Path) -> None:
    """Hard-link (or copy) ``source`` to ``target`` through a temporary name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".layer-", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"cannot store layer blob {source} in the cache: {exc}") from None


def clashes(outputs: Sequence[StageOutput]) -> list[tuple[str, str, str]]:
    """(path, layer, other layer) for every regular file two stages both ship."""
    owner: dict[str, str] = {}
    found: list[tuple[str, str, str]] = []
    for out in outputs:
        name = out.layers[0].name if out.layers else out.key
        for path in out.files:
            other = owner.setdefault(path, name)
            if other != name:
                found.append((path, other, name))
    return found
