"""SPDX 2.3 JSON for an :class:`~hardflow.supply.sbom.inventory.Inventory`.

Deterministic: the namespace is derived from the image digest, ``created`` is the image's
creation time (SOURCE_DATE_EPOCH), packages and relationships are sorted, keys are sorted.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from hardflow.oci.writer import rfc3339
from hardflow.supply.sbom.inventory import DebPackage, Inventory, PyPackage, oci_purl
from hardflow.supply.sbom.licenses import NOASSERTION, collect_refs

SPDX_VERSION = "SPDX-2.3"
NAMESPACE_BASE = "https://hardflow.dev/spdx"
IMAGE_ID = "SPDXRef-Image"


def image_digest(inv: Inventory) -> str:
    return inv.image.manifest_digest or inv.image.config_digest


def document_uuid(inv: Inventory, kind: str) -> uuid.UUID:
    """A name-based UUID: the same image (digest) always gives the same one."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"hardflow:{kind}:{image_digest(inv)}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-") or "x"


def _purl_ref(purl: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    }


def _checksum(sha256: str) -> list[dict[str, str]]:
    return [{"algorithm": "SHA256", "checksumValue": sha256}]


def _deb(pkg: DebPackage, spdx_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "SPDXID": spdx_id,
        "name": pkg.name,
        "versionInfo": pkg.version,
        "packageFileName": pkg.filename.rsplit("/", 1)[-1],
        "supplier": "Organization: Debian",
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "checksums": _checksum(pkg.sha256),
        "sourceInfo": f"built from Debian source package {pkg.source} {pkg.source_version}",
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": pkg.license.expression,
        "copyrightText": NOASSERTION,
        "externalRefs": [_purl_ref(pkg.purl)],
        "primaryPackagePurpose": "LIBRARY",
        "comment": f"architecture {pkg.architecture}; licence from {pkg.license.source}",
    }
    if pkg.maintainer:
        doc["originator"] = _actor(pkg.maintainer)
    return doc


def _actor(maintainer: str) -> str:
    """'Name <mail>' → 'Organization: Name (mail)' (teams and people alike: it names who
    maintains the Debian package)."""
    m = re.fullmatch(r"\s*(.*?)\s*<([^>]*)>\s*", maintainer)
    if m:
        return f"Organization: {m.group(1)} ({m.group(2)})"
    return f"Organization: {maintainer.strip()}"


def _wheel(pkg: PyPackage, spdx_id: str) -> dict[str, Any]:
    return {
        "SPDXID": spdx_id,
        "name": pkg.name,
        "versionInfo": pkg.version,
        "packageFileName": pkg.filename,
        "supplier": NOASSERTION,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "checksums": _checksum(pkg.sha256),
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": pkg.license.expression,
        "copyrightText": NOASSERTION,
        "externalRefs": [_purl_ref(pkg.purl)],
        "primaryPackagePurpose": "LIBRARY",
        "comment": f"licence from {pkg.license.source}",
    }


def _ids(prefix: str, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = f"SPDXRef-{prefix}-{_slug(name)}"
        spdx_id, n = base, 1
        while spdx_id in used:
            n += 1
            spdx_id = f"{base}-{n}"
        used.add(spdx_id)
        out[name] = spdx_id
    return out


def spdx_document(inv: Inventory, tool: str) -> dict[str, Any]:
    """The SPDX 2.3 document as a JSON-ready dict. ``tool``: "hardflow-0.1.0"."""
    img = inv.image
    digest = image_digest(inv)
    deb_ids = _ids("deb", [p.name for p in inv.debs])
    py_ids = _ids("pypi", [p.key for p in inv.wheels])
    image_pkg: dict[str, Any] = {
        "SPDXID": IMAGE_ID,
        "name": img.name,
        "versionInfo": img.tag,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "checksums": _checksum(digest.split(":", 1)[1]),
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "externalRefs": [_purl_ref(oci_purl(img))],
        "primaryPackagePurpose": "CONTAINER",
        "releaseDate": rfc3339(img.created),
        "comment": (
            f"OCI image {img.reference}, manifest {img.manifest_digest or '(unknown)'}, "
            f"config {img.config_digest}, {img.os}/{img.architecture}"
        ),
    }
    packages = [image_pkg]
    packages += [_deb(p, deb_ids[p.name]) for p in inv.debs]
    packages += [_wheel(p, py_ids[p.key]) for p in inv.wheels]

    rels: list[dict[str, str]] = [_rel("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)]
    rels += [_rel(IMAGE_ID, "CONTAINS", deb_ids[p.name]) for p in inv.debs]
    rels += [_rel(IMAGE_ID, "CONTAINS", py_ids[p.key]) for p in inv.wheels]
    rels += [_rel(deb_ids[p.name], "DEPENDS_ON", deb_ids[d]) for p in inv.debs for d in p.depends]
    rels += [_rel(py_ids[p.key], "DEPENDS_ON", py_ids[d]) for p in inv.wheels for d in p.depends]

    doc: dict[str, Any] = {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{img.reference}@{digest}",
        "documentNamespace": (
            f"{NAMESPACE_BASE}/{_slug(img.reference)}-{document_uuid(inv, 'spdx')}"
        ),
        "creationInfo": {
            "created": rfc3339(img.created),
            "creators": [f"Tool: {tool}"],
            "comment": "Debian packages from dpkg status.d records, Python distributions from "
            ".dist-info/METADATA; .deb and wheel sha256 from the build lock.",
        },
        "packages": packages,
        "relationships": rels,
    }
    refs = collect_refs(inv.licenses)
    if refs:
        doc["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "name": ref.removeprefix("LicenseRef-"), "extractedText": text}
            for ref, text in refs
        ]
    return doc


def _rel(a: str, kind: str, b: str) -> dict[str, str]:
    return {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}
