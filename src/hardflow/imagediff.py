"""``hardflow diff A B``: what changed between two images, by package and by layer.

Each image is read once, through the SBOM's image reader (:func:`hardflow.supply.sbom.image.
read_image`: every layer streamed and digest-checked, whiteouts applied), into a
:class:`Snapshot`: its Debian packages (dpkg ``status.d`` records) and Python distributions
(``*.dist-info/METADATA``) as :mod:`hardflow.supply.sbom.inventory` lists them, and its layers
with their digests and sizes. An image in the local podman/docker store is saved to a
temporary docker-archive first, as the audit does (:func:`hardflow.audit.image_source.
local_image`). :func:`compare` then tells, for Debian and Python separately, which packages
were added, removed or changed version, and which layers are identical (same uncompressed
content), changed, added or removed.

Layers are matched by name when both images name every layer uniquely (hardflow records each
layer's name in the config's history: ``hardflow 0.1.0: python-runtime (633 entries)``), and
by position otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from packaging.version import InvalidVersion, Version

from hardflow.audit.image_source import Saver, local_image
from hardflow.errors import HardflowError, ImageError
from hardflow.supply.sbom.image import ImageFiles, read_image
from hardflow.supply.sbom.inventory import installed_debs, installed_dists

PackageKind = Literal["debian", "python"]
PACKAGE_KINDS: tuple[PackageKind, ...] = ("debian", "python")
PackageStatus = Literal["added", "removed", "changed"]
LayerStatus = Literal["identical", "changed", "added", "removed"]
LAYER_STATUSES: tuple[LayerStatus, ...] = ("identical", "changed", "added", "removed")

# what hardflow's writer records per layer: "hardflow: NAME" or "hardflow 0.1.0: NAME (N entries)"
_HARDFLOW_HISTORY = re.compile(r"hardflow(?: \S+)?: (?P<name>\S+)(?: \(\d+ entries\))?")
# config keys a layer comparison already covers
_LAYER_KEYS = frozenset({"rootfs", "history"})


class DiffError(ImageError):
    """An image to compare cannot be read: names the argument and what was found."""


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Layer:
    """One layer of one image."""

    index: int  # 0 = the bottom layer
    name: str | None  # from the config's history (hardflow images), else None
    digest: str  # the blob's sha256
    diff_id: str  # the uncompressed tar's sha256
    size: int  # blob bytes
    uncompressed_size: int

    @property
    def label(self) -> str:
        return self.name or f"layer {self.index}"


@dataclass(frozen=True)
class Snapshot:
    """What a comparison needs of one image."""

    argument: str  # as the user gave it
    reference: str
    manifest_digest: str  # "" for a docker-archive not written by hardflow
    config_digest: str
    config: Mapping[str, Any]
    debs: Mapping[str, str]  # package → version
    dists: Mapping[str, tuple[str, str]]  # canonical name → (name as spelled, version)
    layers: tuple[Layer, ...]

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed_size for layer in self.layers)


@dataclass(frozen=True)
class PackageChange:
    kind: PackageKind
    name: str
    status: PackageStatus
    old: str | None  # the version in A (None: added)
    new: str | None  # the version in B (None: removed)


@dataclass(frozen=True)
class LayerChange:
    status: LayerStatus
    a: Layer | None  # None: added
    b: Layer | None  # None: removed

    @property
    def label(self) -> str:
        layer = self.b or self.a
        assert layer is not None
        return layer.label

    @property
    def recompressed(self) -> bool:
        """Same content, different blob (another compression, or an uncompressed save)."""
        return (
            self.status == "identical"
            and self.a is not None
            and self.b is not None
            and self.a.digest != self.b.digest
        )


@dataclass(frozen=True)
class ImageDiff:
    a: Snapshot
    b: Snapshot
    packages: tuple[PackageChange, ...]
    layers: tuple[LayerChange, ...]
    matched_by: Literal["name", "position"]
    config_changes: tuple[str, ...]  # e.g. "created", "config.Env[AIRFLOW__CORE__X]"

    @property
    def differs(self) -> bool:
        return bool(
            self.packages
            or self.config_changes
            or any(change.status != "identical" for change in self.layers)
        )

    def packages_of(self, kind: PackageKind, status: PackageStatus) -> list[PackageChange]:
        return [p for p in self.packages if p.kind == kind and p.status == status]

    def layer_counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.layers if c.status == s) for s in LAYER_STATUSES}

    def to_json(self) -> dict[str, Any]:
        packages: dict[str, Any] = {}
        for kind in PACKAGE_KINDS:
            packages[kind] = {
                "added": [{"name": p.name, "version": p.new}
                          for p in self.packages_of(kind, "added")],
                "removed": [{"name": p.name, "version": p.old}
                            for p in self.packages_of(kind, "removed")],
                "changed": [{"name": p.name, "old": p.old, "new": p.new}
                            for p in self.packages_of(kind, "changed")],
            }  # fmt: skip
        return {
            "a": _image_json(self.a),
            "b": _image_json(self.b),
            "differs": self.differs,
            "packages": packages,
            "layers": [
                {
                    "name": change.label,
                    "status": change.status,
                    "recompressed": change.recompressed,
                    "a": _layer_json(change.a),
                    "b": _layer_json(change.b),
                }
                for change in self.layers
            ],
            "layers_matched_by": self.matched_by,
            "config_changes": list(self.config_changes),
            "summary": {
                "layers": self.layer_counts(),
                "size": _change(self.a.size, self.b.size),
                "uncompressed_size": _change(self.a.uncompressed_size, self.b.uncompressed_size),
            },
        }


def _change(a: int, b: int) -> dict[str, int]:
    return {"a": a, "b": b, "change": b - a}


def _image_json(snap: Snapshot) -> dict[str, Any]:
    return {
        "argument": snap.argument,
        "reference": snap.reference,
        "manifest_digest": snap.manifest_digest or None,
        "config_digest": snap.config_digest,
        "layers": len(snap.layers),
        "size": snap.size,
        "uncompressed_size": snap.uncompressed_size,
        "debian_packages": len(snap.debs),
        "python_packages": len(snap.dists),
    }


def _layer_json(layer: Layer | None) -> dict[str, Any] | None:
    if layer is None:
        return None
    return {
        "index": layer.index,
        "digest": layer.digest,
        "diff_id": layer.diff_id,
        "size": layer.size,
        "uncompressed_size": layer.uncompressed_size,
    }


# ---------------------------------------------------------------------------------------------
# one image


def layer_names(config: Mapping[str, Any], count: int) -> tuple[str | None, ...]:
    """The name hardflow's history gives each of ``count`` layers (None where it gives none,
    or for every layer when the history does not list one entry per layer)."""
    history = config.get("history")
    entries = [
        e for e in (history if isinstance(history, list) else [])
        if isinstance(e, dict) and not e.get("empty_layer")
    ]  # fmt: skip
    if len(entries) != count:
        return (None,) * count
    names: list[str | None] = []
    for entry in entries:
        match = _HARDFLOW_HISTORY.fullmatch(str(entry.get("created_by") or ""))
        names.append(match.group("name") if match else None)
    return tuple(names)


def snapshot(files: ImageFiles, argument: str) -> Snapshot:
    """The packages and layers of an image read by the SBOM's reader."""
    names = layer_names(files.config, len(files.layers))
    layers = tuple(
        Layer(i, names[i], r.digest, r.diff_id, r.size, r.uncompressed_size)
        for i, r in enumerate(files.layers)
    )
    dists = {
        key: (str(metadata["Name"]), str(metadata["Version"]))
        for key, (metadata, _python) in installed_dists(files).items()
    }
    return Snapshot(
        argument=argument,
        reference=files.subject.reference,
        manifest_digest=files.subject.manifest_digest,
        config_digest=files.subject.config_digest,
        config=files.config,
        debs={name: fields["Version"] for name, fields in installed_debs(files).items()},
        dists=dists,
        layers=layers,
    )


def read_snapshot(
    argument: str,
    which: str = "",
    *,
    engine: str | None = None,
    platform: str | None = None,
    saver: Saver | None = None,
) -> Snapshot:
    """Read ``argument``: an OCI layout (or a build output directory), an oci-archive or
    docker-archive, or a reference in the local podman/docker store. ``which`` ("A", "B")
    names it in errors."""
    label = f"image {which} ({argument})" if which else f"image {argument}"
    try:
        with local_image(argument, engine=engine, saver=saver) as (path, from_engine):
            files = read_image(path, platform=platform)
        snap = snapshot(files, argument)
    except HardflowError as exc:
        raise DiffError(f"cannot read {label}: {exc.message}", hint=exc.hint) from None
    if from_engine:
        # the temporary archive's name means nothing: the reference the user gave does
        return Snapshot(argument, argument, snap.manifest_digest, snap.config_digest,
                        snap.config, snap.debs, snap.dists, snap.layers)  # fmt: skip
    return snap


# ---------------------------------------------------------------------------------------------
# the comparison


def _same_version(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def compare_packages(
    kind: PackageKind, a: Mapping[str, str], b: Mapping[str, str], names: Mapping[str, str]
) -> list[PackageChange]:
    """Added, removed and changed packages between two name → version maps (sorted by
    name); ``names`` spells a key for display."""
    out: list[PackageChange] = []
    for key in sorted(a.keys() | b.keys()):
        name = names.get(key, key)
        old, new = a.get(key), b.get(key)
        if old is None:
            out.append(PackageChange(kind, name, "added", None, new))
        elif new is None:
            out.append(PackageChange(kind, name, "removed", old, None))
        elif not _same_version(old, new):
            out.append(PackageChange(kind, name, "changed", old, new))
    return out


def _status(a: Layer, b: Layer) -> LayerStatus:
    return "identical" if a.diff_id == b.diff_id else "changed"


def _unique_names(layers: Sequence[Layer]) -> bool:
    names = [layer.name for layer in layers]
    return all(names) and len(set(names)) == len(names)


def compare_layers(
    a: Sequence[Layer], b: Sequence[Layer]
) -> tuple[list[LayerChange], Literal["name", "position"]]:
    """Layer changes in B's order (a removed layer follows the layer it sat on), matched by
    name when both images name every layer uniquely, else by position."""
    if not (a and b and _unique_names(a) and _unique_names(b)):
        out = [LayerChange(_status(x, y), x, y) for x, y in zip(a, b, strict=False)]
        out += [LayerChange("removed", x, None) for x in a[len(b) :]]
        out += [LayerChange("added", None, y) for y in b[len(a) :]]
        return out, "position"
    in_b = {layer.name: layer for layer in b}
    in_a = {layer.name: layer for layer in a}
    keyed: list[tuple[float, LayerChange]] = []
    for y in b:
        x = in_a.get(y.name)
        keyed.append((y.index, LayerChange("added", None, y) if x is None
                      else LayerChange(_status(x, y), x, y)))  # fmt: skip
    below = -1.0  # B's index of the last layer of A that B also has
    for x in a:
        if x.name in in_b:
            below = float(in_b[x.name].index)
        else:
            keyed.append((below + 0.5 + x.index / 1e6, LayerChange("removed", x, None)))
    return [change for _, change in sorted(keyed, key=lambda kc: kc[0])], "name"


def _env(runtime: Mapping[str, Any]) -> dict[str, str]:
    env = runtime.get("Env")
    out = {}
    for item in env if isinstance(env, list) else []:
        name, _, value = str(item).partition("=")
        out[name] = value
    return out


def _keyed_changes(prefix: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [f"{prefix}[{k}]" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def config_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The config fields that differ (layers aside): top-level keys, the runtime ``config``'s
    keys, and each environment variable and label by name."""
    out: list[str] = []
    for key in sorted((a.keys() | b.keys()) - _LAYER_KEYS):
        if key == "config":
            continue
        if a.get(key) != b.get(key):
            out.append(key)
    run_a, run_b = a.get("config") or {}, b.get("config") or {}
    run_a = run_a if isinstance(run_a, dict) else {}
    run_b = run_b if isinstance(run_b, dict) else {}
    for key in sorted(run_a.keys() | run_b.keys()):
        if run_a.get(key) == run_b.get(key):
            continue
        if key == "Env":
            out += _keyed_changes("config.Env", _env(run_a), _env(run_b))
        elif (
            key == "Labels"
            and isinstance(run_a.get(key, {}), dict)
            and isinstance(run_b.get(key, {}), dict)
        ):
            out += _keyed_changes("config.Labels", run_a.get(key) or {}, run_b.get(key) or {})
        else:
            out.append(f"config.{key}")
    return out


def compare(a: Snapshot, b: Snapshot) -> ImageDiff:
    """What changed from A to B."""
    spelled = {k: n for snap in (a, b) for k, (n, _v) in snap.dists.items()}
    packages = compare_packages("debian", a.debs, b.debs, {}) + compare_packages(
        "python",
        {k: v for k, (_n, v) in a.dists.items()},
        {k: v for k, (_n, v) in b.dists.items()},
        spelled,
    )
    layers, matched_by = compare_layers(a.layers, b.layers)
    return ImageDiff(a, b, tuple(packages), tuple(layers), matched_by,
                     tuple(config_changes(a.config, b.config)))  # fmt: skip


def diff_images(
    a: str,
    b: str,
    *,
    engine: str | None = None,
    platform: str | None = None,
    saver: Saver | None = None,
) -> ImageDiff:
    """Compare image A with image B (paths or references in the local engine store)."""
    first = read_snapshot(a, "A", engine=engine, platform=platform, saver=saver)
    second = read_snapshot(b, "B", engine=engine, platform=platform, saver=saver)
    return compare(first, second)


__all__ = [
    "DiffError",
    "ImageDiff",
    "Layer",
    "LayerChange",
    "PackageChange",
    "Snapshot",
    "compare",
    "compare_layers",
    "compare_packages",
    "config_changes",
    "diff_images",
    "layer_names",
    "read_snapshot",
    "snapshot",
]
