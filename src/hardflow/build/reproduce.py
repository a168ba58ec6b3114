"""Reproducibility proof: build twice, apart, and compare every digest.

The two builds get separate working and output directories (and, when asked, a second empty
download cache, so the second build fetches and verifies everything again). Equal manifest
digests mean bit-for-bit equal images. When they differ, the report names what differs: the
config (the first differing JSON key) and, for each differing layer, the first tar entry whose
header or content differs, found by walking both layers' entries in order.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardflow.build.pipeline import BuildOptions, BuildResult
from hardflow.build.platforms import build_image
from hardflow.errors import BuildError, ImageError
from hardflow.lock.fetch import Cache
from hardflow.lock.model import Lock
from hardflow.oci.blobs import STREAM_ERRORS, load_json
from hardflow.oci.reader import layout_blob_path, read_layout_blob
from hardflow.oci.stream import open_layer_file
from hardflow.progress import Progress
from hardflow.spec import ImageSpec

_CHUNK = 1 << 20
_HEADER_FIELDS = ("type", "mode", "uid", "gid", "uname", "gname", "size", "mtime", "linkname",
                  "devmajor", "devminor")  # fmt: skip


@dataclass(frozen=True)
class EntryDifference:
    index: int  # position of the entry in the tar stream (0-based)
    path: str  # the entry's path in build A (or B when only B has it)
    what: str  # human-readable: which field differs, with both values


@dataclass(frozen=True)
class LayerComparison:
    name: str
    digest_a: str
    digest_b: str
    diff_id_a: str
    diff_id_b: str
    first_difference: EntryDifference | None = None

    @property
    def same(self) -> bool:
        return self.digest_a == self.digest_b


@dataclass(frozen=True)
class ReproReport:
    manifest_a: str
    manifest_b: str
    config_a: str
    config_b: str
    layers: tuple[LayerComparison, ...]
    config_difference: str | None
    separate_caches: bool
    seconds: tuple[float, float]
    # a multi-platform build: the two index digests and each other platform's comparison
    # (the fields above compare the docker-archive's platform)
    index: tuple[str, str] = ("", "")
    platforms: tuple[tuple[str, ReproReport], ...] = ()

    @property
    def reproducible(self) -> bool:
        return (
            self.manifest_a == self.manifest_b
            and self.index[0] == self.index[1]
            and all(r.reproducible for _, r in self.platforms)
        )

    def to_json(self) -> dict[str, Any]:
        data = self._json()
        if self.platforms:  # added with multi-platform builds
            data["index_digest"] = list(self.index)
            data["platforms"] = {p: r._json() for p, r in self.platforms}
        return data

    def _json(self) -> dict[str, Any]:
        return {
            "reproducible": self.reproducible,
            "separate_caches": self.separate_caches,
            "manifest_digest": [self.manifest_a, self.manifest_b],
            "config_digest": [self.config_a, self.config_b],
            "config_difference": self.config_difference,
            "layers": [
                {
                    "name": c.name,
                    "same": c.same,
                    "digest": [c.digest_a, c.digest_b],
                    "diff_id": [c.diff_id_a, c.diff_id_b],
                    "first_difference": None
                    if c.first_difference is None
                    else {
                        "index": c.first_difference.index,
                        "path": c.first_difference.path,
                        "what": c.first_difference.what,
                    },
                }
                for c in self.layers
            ],
            "build_seconds": [round(s, 2) for s in self.seconds],
        }


# ---------------------------------------------------------------------------------------------
# finding the first difference


def first_json_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first place (dotted path) where two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                return f"{where}: only in build {'A' if key in a else 'B'}"
            found = first_json_difference(a[key], b[key], where)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_json_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path}: {len(a)} items in build A, {len(b)} in build B"
        return None
    if a != b:
        return f"{path or '(root)'}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"
    return None


def _entries(layer_path: Path) -> Iterator[tuple[tarfile.TarInfo, str | None]]:
    """(header, sha256 of the content for regular files) in stream order, through the image
    reader (gzip, zstd or plain layers)."""
    with open_layer_file(layer_path) as layer:
        for info in layer:
            content: str | None = None
            if info.isreg():
                h = hashlib.sha256()
                try:
                    with layer.open_member(info) as f:
                        while chunk := f.read(_CHUNK):
                            h.update(chunk)
                except STREAM_ERRORS as exc:
                    raise ImageError(f"cannot read layer {layer_path}: {exc}") from None
                content = h.hexdigest()
            yield info, content


def _header_difference(a: tarfile.TarInfo, b: tarfile.TarInfo) -> str | None:
    if a.name != b.name:
        return f"path {a.name!r} in build A, {b.name!r} in build B"
    for name in _HEADER_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x != y:
            if name == "mode":
                return f"mode {x:o} != {y:o}"
            return f"{name} {x!r} != {y!r}"
    if a.pax_headers != b.pax_headers:
        return f"PAX records {dict(a.pax_headers)!r} != {dict(b.pax_headers)!r}"
    return None


def first_difference(layer_a: Path, layer_b: Path) -> EntryDifference | None:
    """The first tar entry of two layers (gzip, zstd or plain) whose header or content
    differs (or None)."""
    it_a, it_b = _entries(layer_a), _entries(layer_b)
    index = 0
    while True:
        a = next(it_a, None)
        b = next(it_b, None)
        if a is None and b is None:
            return None
        if a is None or b is None:
            only, which = (b, "B") if a is None else (a, "A")
            assert only is not None
            return EntryDifference(index, only[0].name, f"only in build {which}")
        what = _header_difference(a[0], b[0])
        if what is None and a[1] != b[1]:
            what = f"content sha256 {str(a[1])[:16]}… != {str(b[1])[:16]}…"
        if what is not None:
            return EntryDifference(index, a[0].name, what)
        index += 1


# ---------------------------------------------------------------------------------------------
# comparing two builds


def compare_builds(
    a: BuildResult, b: BuildResult, separate_caches: bool, seconds: tuple[float, float]
) -> ReproReport:
    ia, ib = a.image, b.image
    config_difference = None
    if ia.config_digest != ib.config_digest:
        config_a = _config(ia.layout_dir, ia.config_digest)
        config_b = _config(ib.layout_dir, ib.config_digest)
        # the diff_ids follow the layers, which are compared below: look past them first
        config_difference = first_json_difference(
            {k: v for k, v in config_a.items() if k != "rootfs"},
            {k: v for k, v in config_b.items() if k != "rootfs"},
        ) or first_json_difference(config_a, config_b)
        if config_difference and config_difference.startswith("rootfs.diff_ids"):
            config_difference = "only rootfs.diff_ids (they follow the layers)"
        config_difference = config_difference or "the config bytes differ"
    layers: list[LayerComparison] = []
    count = max(len(ia.layers), len(ib.layers))
    for i in range(count):
        la = ia.layers[i] if i < len(ia.layers) else None
        lb = ib.layers[i] if i < len(ib.layers) else None
        if la is None or lb is None:
            present = la or lb
            assert present is not None
            layers.append(LayerComparison(
                present.name, la.digest if la else "-", lb.digest if lb else "-",
                la.diff_id if la else "-", lb.diff_id if lb else "-",
                EntryDifference(0, "", f"layer only in build {'A' if la else 'B'}"),
            ))  # fmt: skip
            continue
        diff = None
        if la.digest != lb.digest:
            diff = first_difference(
                _blob(ia.layout_dir, la.digest), _blob(ib.layout_dir, lb.digest)
            )
            if diff is None:
                diff = EntryDifference(
                    -1,
                    "",
                    "same tar entries; the compressed bytes differ (gzip settings?)"
                    if la.diff_id == lb.diff_id
                    else "same entries; the tar framing differs",
                )
        layers.append(LayerComparison(la.name, la.digest, lb.digest, la.diff_id, lb.diff_id, diff))
    return ReproReport(
        manifest_a=ia.manifest_digest,
        manifest_b=ib.manifest_digest,
        config_a=ia.config_digest,
        config_b=ib.config_digest,
        layers=tuple(layers),
        config_difference=config_difference,
        separate_caches=separate_caches,
        seconds=seconds,
    )


def _blob(layout: Path, digest: str) -> Path:
    return layout_blob_path(layout, digest)


def _config(layout: Path, digest: str) -> Any:
    """An image config, read through the reader (bounded, checked against its digest)."""
    what = "image config"
    return load_json(read_layout_blob(layout, digest, what=what), f"{layout}: {what} {digest}")


def check_reproducible(
    spec: ImageSpec,
    lock: Lock,
    lock_path: Path,
    base_options: BuildOptions,
    separate_caches: bool,
    progress: Progress | None = None,
) -> ReproReport:
    """Build twice in separate directories (the second with an empty cache when
    ``separate_caches``) and compare. Nothing is written to ``base_options.out_dir``.

    Both builds make every layer anew (no layer cache): reusing a finished layer would prove
    nothing about the steps that made it."""
    parent = base_options.work_dir or base_options.out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=".hardflow-repro-", dir=parent))
    try:
        results: list[BuildResult] = []
        seconds: list[float] = []
        for name in ("a", "b"):
            cache = base_options.cache
            if separate_caches and name == "b":
                if base_options.cache.offline:
                    raise BuildError(
                        "--check-reproducible with separate caches downloads everything "
                        "again; it cannot run --offline"
                    )
                cache = Cache(root / "cache-b")
            options = replace(
                base_options,
                out_dir=root / name / "out",
                work_dir=root / name / "work",
                cache=cache,
                docker_archive=False,
                layer_cache=False,
            )
            started = time.monotonic()
            results.append(build_image(spec, lock, lock_path, options, progress))
            seconds.append(time.monotonic() - started)
        a, b = results
        report = compare_builds(a, b, separate_caches, (seconds[0], seconds[1]))
        if not a.platforms:
            return report
        others = [
            (platform, compare_builds(one, dict(b.platforms)[platform], separate_caches, (0, 0)))
            for platform, one in a.platforms
            if one.image.manifest_digest != a.image.manifest_digest and platform in
            dict(b.platforms)
        ]  # fmt: skip
        return replace(report, index=(a.index_digest, b.index_digest), platforms=tuple(others))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def render_report(report: ReproReport) -> list[str]:
    """Plain text lines (no markup) for the CLI to print."""
    lines: list[str] = []
    caches = "separate caches" if report.separate_caches else "one shared cache"
    if report.reproducible:
        lines.append(f"REPRODUCIBLE: two builds ({caches}) gave {report.manifest_a}")
    else:
        lines.append(f"NOT REPRODUCIBLE: two builds ({caches}) differ")
        lines.append(f"  manifest  A {report.manifest_a}")
        lines.append(f"            B {report.manifest_b}")
    same_config = report.config_a == report.config_b
    lines.append(f"  config    {'same' if same_config else 'DIFFERS'}  {report.config_a}")
    if report.config_difference:
        lines.append(f"            first difference: {report.config_difference}")
    for layer in report.layers:
        mark = "same" if layer.same else "DIFFERS"
        lines.append(f"  layer {layer.name:<16} {mark:<7}  {layer.digest_a}")
        if not layer.same:
            lines.append(f"        {'':<16} {'':<7}  {layer.digest_b} (B)")
            d = layer.first_difference
            if d is not None:
                where = f"entry #{d.index} {d.path!r}: " if d.path else ""
                lines.append(f"        first difference: {where}{d.what}")
    if report.platforms:
        same = report.index[0] == report.index[1]
        lines.append(f"  index     {'same' if same else 'DIFFERS'}  {report.index[0]}")
        for platform, sub in report.platforms:
            lines.append(f"  platform {platform}:")
            lines += ["  " + line for line in render_report(sub)[1:-1]]
    a, b = report.seconds
    lines.append(f"  build times: {a:.1f}s and {b:.1f}s")
    return lines
