"""SBOMs of built images: SPDX 2.3 and CycloneDX 1.6 JSON, byte-identical for one image.

Flow: :func:`~hardflow.supply.sbom.image.read_image` (the few files an SBOM needs, from an
OCI layout or a docker-archive) → :func:`~hardflow.supply.sbom.inventory.inventory` (joined with
the lock, which holds the ``.deb``/wheel sha256) → :func:`render` of :func:`spdx_document` or
:func:`cyclonedx_document`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from hardflow import __version__
from hardflow.errors import LockError
from hardflow.lock.model import Lock, parse_lock
from hardflow.spec import SPECS_PACKAGE
from hardflow.supply.sbom.cyclonedx import cyclonedx_document
from hardflow.supply.sbom.image import ImageFiles, ImageSubject, read_image
from hardflow.supply.sbom.inventory import (
    DebPackage,
    Inventory,
    PyPackage,
    deb_purl,
    inventory,
    pypi_purl,
)
from hardflow.supply.sbom.spdx import spdx_document

Format = Literal["spdx", "cyclonedx"]
FORMATS: tuple[Format, ...] = ("spdx", "cyclonedx")
FILE_NAMES: dict[Format, str] = {"spdx": "sbom.spdx.json", "cyclonedx": "sbom.cdx.json"}
LOCK_LABEL = "dev.hardflow.lock.checksum"
TOOL_NAME = "hardflow"

__all__ = [
    "FILE_NAMES",
    "FORMATS",
    "DebPackage",
    "Format",
    "ImageFiles",
    "ImageSubject",
    "Inventory",
    "PyPackage",
    "Sbom",
    "cyclonedx_document",
    "deb_purl",
    "document",
    "embedded_lock_for",
    "inventory",
    "pypi_purl",
    "read_image",
    "render",
    "sbom_from_image",
    "spdx_document",
]


def render(doc: Any) -> bytes:
    """Indented, key-sorted UTF-8 JSON with a final newline: the bytes that are written."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def document(inv: Inventory, fmt: Format) -> dict[str, Any]:
    if fmt == "spdx":
        return spdx_document(inv, f"{TOOL_NAME}-{__version__}")
    if fmt == "cyclonedx":
        return cyclonedx_document(inv, TOOL_NAME, __version__)
    raise ValueError(f"unknown SBOM format {fmt!r}")


def embedded_lock_for(subject: ImageSubject) -> Lock:
    """The embedded lock whose ``spec_checksum`` the image's lock label names."""
    wanted = subject.labels.get(LOCK_LABEL, "")
    if not wanted:
        raise LockError(
            f"image {subject.reference} has no {LOCK_LABEL} label, so its lock is unknown",
            hint="pass the lock file it was built from with --lock",
        )
    folder = resources.files(SPECS_PACKAGE)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".lock.json"):
            lock = parse_lock(entry.read_text(encoding="utf-8"), f"<embedded:{entry.name}>")
            if lock.spec_checksum == wanted:
                return lock
    raise LockError(
        f"image {subject.reference} was built from a lock for spec {wanted[:19]}…, "
        "which is not one of hardflow's embedded locks",
        hint="pass the lock file it was built from with --lock",
    )


@dataclass(frozen=True)
class Sbom:
    """An SBOM document (the bytes to write) and the inventory it was rendered from."""

    inventory: Inventory
    format: Format
    data: bytes


def sbom_from_image(
    path: Path, lock: Lock | None, fmt: Format, *, platform: str | None = None
) -> Sbom:
    """The SBOM of the image at ``path`` (OCI layout dir, build output dir or docker-archive),
    joined with ``lock`` (default: the embedded lock the image's lock label names)."""
    files = read_image(path, platform=platform)
    chosen = lock if lock is not None else embedded_lock_for(files.subject)
    inv = inventory(files, chosen)
    return Sbom(inv, fmt, render(document(inv, fmt)))
