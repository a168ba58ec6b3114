"""CycloneDX 1.6 JSON for an :class:`~hardflow.supply.sbom.inventory.Inventory`.

Written by hand rather than with cyclonedx-python-lib: that library records *itself* (name and
version) in ``metadata.tools`` and draws random serial numbers unless told otherwise, so its
output changes with its own upgrades — two builds of one image on machines with different
library versions would give different bytes. Here the serial number is a name-based UUID of the
image digest and the timestamp is the image's creation time (SOURCE_DATE_EPOCH). The tests
validate the output with cyclonedx-python-lib's JSON-schema validator.
"""

from __future__ import annotations

from typing import Any

from hardflow.oci.writer import rfc3339
from hardflow.supply.sbom.inventory import DebPackage, Inventory, PyPackage, oci_purl
from hardflow.supply.sbom.licenses import License
from hardflow.supply.sbom.spdx import document_uuid, image_digest

SPEC_VERSION = "1.6"
SCHEMA = "http://cyclonedx.org/schema/bom-1.6.schema.json"


def _licenses(lic: License) -> list[dict[str, Any]]:
    if not lic.known:
        return []
    return [{"expression": lic.expression}]


def _hashes(sha256: str) -> list[dict[str, str]]:
    return [{"alg": "SHA-256", "content": sha256}]


def _props(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs if v]


def _deb(pkg: DebPackage) -> dict[str, Any]:
    comp: dict[str, Any] = {
        "type": "library",
        "bom-ref": pkg.purl,
        "name": pkg.name,
        "version": pkg.version,
        "purl": pkg.purl,
        "hashes": _hashes(pkg.sha256),
        "supplier": {"name": "Debian"},
        "properties": _props(
            [
                ("hardflow:deb:architecture", pkg.architecture),
                ("hardflow:deb:filename", pkg.filename),
                ("hardflow:deb:source", pkg.source),
                ("hardflow:deb:source_version", pkg.source_version),
                ("hardflow:license:source", pkg.license.source),
            ]
        ),
    }
    if lic := _licenses(pkg.license):
        comp["licenses"] = lic
    return comp


def _wheel(pkg: PyPackage) -> dict[str, Any]:
    comp: dict[str, Any] = {
        "type": "library",
        "bom-ref": pkg.purl,
        "name": pkg.name,
        "version": pkg.version,
        "purl": pkg.purl,
        "hashes": _hashes(pkg.sha256),
        "properties": _props(
            [
                ("hardflow:wheel:filename", pkg.filename),
                ("hardflow:license:source", pkg.license.source),
            ]
        ),
    }
    if lic := _licenses(pkg.license):
        comp["licenses"] = lic
    return comp


def cyclonedx_document(inv: Inventory, tool_name: str, tool_version: str) -> dict[str, Any]:
    img = inv.image
    digest = image_digest(inv)
    image_ref = oci_purl(img)
    image_component: dict[str, Any] = {
        "type": "container",
        "bom-ref": image_ref,
        "name": img.name,
        "version": img.tag,
        "purl": image_ref,
        "hashes": _hashes(digest.split(":", 1)[1]),
        "properties": _props(
            [
                ("hardflow:image:manifest_digest", img.manifest_digest),
                ("hardflow:image:config_digest", img.config_digest),
                ("hardflow:image:platform", f"{img.os}/{img.architecture}"),
            ]
        ),
    }
    deb_by_name = {p.name: p.purl for p in inv.debs}
    py_by_key = {p.key: p.purl for p in inv.wheels}
    components = [_deb(p) for p in inv.debs] + [_wheel(p) for p in inv.wheels]
    dependencies: list[dict[str, Any]] = [
        {"ref": image_ref, "dependsOn": sorted(c["bom-ref"] for c in components)}
    ]
    dependencies += [
        {"ref": p.purl, "dependsOn": sorted(deb_by_name[d] for d in p.depends)} for p in inv.debs
    ]
    dependencies += [
        {"ref": p.purl, "dependsOn": sorted(py_by_key[d] for d in p.depends)} for p in inv.wheels
    ]
    return {
        "$schema": SCHEMA,
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{document_uuid(inv, 'cyclonedx')}",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(img.created),
            "tools": {
                "components": [{"type": "application", "name": tool_name, "version": tool_version}]
            },
            "component": image_component,
        },
        "components": components,
        "dependencies": dependencies,
    }
