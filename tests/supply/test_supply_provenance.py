"""DSSE envelopes, the SLSA provenance statement, the build-time supply-chain files, and
signing + attaching them (with the signing module's ECDSA signer)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_supply_sbom import SbomWorld, world  # noqa: F401  (the fixture)

from hardflow.errors import TrustError
from hardflow.supply.dsse import (
    PAYLOAD_TYPE,
    envelope,
    pae,
    parse_envelope,
    sign_envelope,
    verify_envelope,
)
from hardflow.supply.provenance import (
    ATTESTATION_FILES,
    PROVENANCE_FILE,
    SLSA_PROVENANCE,
    attest,
    provenance_statement,
    signed_attestations,
    write_supply_chain,
)
from hardflow.supply.sbom import read_image

# --------------------------------------------------------------------------------------------
# DSSE


def test_pae_known_vector() -> None:
    # the worked example of the DSSE v1 protocol description
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    # lengths are bytes, not characters
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"
    assert pae(PAYLOAD_TYPE, b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "


def test_unsigned_envelope() -> None:
    data = envelope(b'{"a":1}', None)
    doc = json.loads(data)
    assert list(doc) == ["payloadType", "payload", "signatures"]
    assert doc == {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(b'{"a":1}').decode(),
                   "signatures": []}  # fmt: skip
    with pytest.raises(TrustError, match="not signed"):
        verify_envelope(data, [lambda m, s: True])


def test_signer_sees_the_pae_and_keyid_is_kept() -> None:
    seen: list[bytes] = []

    def fake_signer(message: bytes) -> bytes:
        seen.append(message)
        return b"sig:" + hashlib.sha256(message).digest()

    data = envelope(b"payload", fake_signer, keyid="k1")
    assert seen == [pae(PAYLOAD_TYPE, b"payload")]
    env = parse_envelope(data)
    assert env.signatures[0].keyid == "k1"
    assert env.signatures[0].sig == b"sig:" + hashlib.sha256(seen[0]).digest()


def test_ecdsa_signed_envelope_verifies() -> None:
    sign = pytest.importorskip("hardflow.supply.sign")
    key = sign.generate_key()
    other = sign.generate_key()

    def verifier(k: Any) -> Any:
        return lambda message, sig: sign.verify_bytes(k, message, sig)

    data = envelope(b'{"x":1}', sign.signer(key))
    assert verify_envelope(data, [verifier(key.public_key())]) == b'{"x":1}'
    with pytest.raises(TrustError, match="none of its 1 signature"):
        verify_envelope(data, [verifier(other.public_key())])
    doc = json.loads(data)
    doc["payload"] = base64.b64encode(b'{"x":2}').decode()
    with pytest.raises(TrustError, match="none of its"):
        verify_envelope(json.dumps(doc).encode(), [verifier(key.public_key())])
    # an unsigned build-time envelope signed later verifies too
    later = sign_envelope(envelope(b"p", None), sign.signer(key), keyid="me")
    assert verify_envelope(later, [verifier(key.public_key())]) == b"p"


def test_malformed_envelopes() -> None:
    for bad in (b"nope", b"[]", b'{"payload":"AA=="}',
                b'{"payloadType":"t","payload":"***","signatures":[]}'):  # fmt: skip
        with pytest.raises(TrustError):
            parse_envelope(bad)
    with pytest.raises(TrustError, match="payloadType is 'x'"):
        verify_envelope(envelope(b"p", lambda m: b"s", payload_type="x"), [lambda m, s: True])


# --------------------------------------------------------------------------------------------
# provenance


def _payload(path: Path) -> dict[str, Any]:
    return dict(json.loads(parse_envelope(path.read_bytes()).payload))


def test_provenance_lists_every_input(world: SbomWorld) -> None:  # noqa: F811
    result = world.build("a")
    lock, spec = world.lock, world.spec
    image = read_image(result.image.layout_dir).subject
    stmt = json.loads(provenance_statement(image, spec, lock, result.source_date_epoch,
                                           "debian-13"))  # fmt: skip
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == SLSA_PROVENANCE
    assert stmt["subject"] == [
        {"name": "test/sbom", "digest": {"sha256": result.image.manifest_digest[7:]}}
    ]
    build_def = stmt["predicate"]["buildDefinition"]
    params = build_def["externalParameters"]
    assert params["spec"]["checksum"] == spec.checksum()
    assert params["spec"]["lockChecksum"] == spec.lock_checksum() == lock.spec_checksum
    assert params["lock"]["sha256"] == hashlib.sha256(world.lock_path.read_bytes()).hexdigest()
    assert params["sourceDateEpoch"] == result.source_date_epoch
    deps = build_def["resolvedDependencies"]
    digests = {d["digest"]["sha256"] for d in deps}
    assert {d.sha256 for d in lock.debs} <= digests
    assert {w.sha256 for w in lock.wheels} <= digests
    assert len(deps) == 1 + len(lock.debs) + len(lock.wheels)
    by_name = {d["name"]: d for d in deps}
    libfoo = next(d for d in lock.debs if d.name == "libfoo1")
    assert by_name[libfoo.filename]["uri"] == (
        "pkg:deb/debian/libfoo1@1.0-1%2Bb1?arch=amd64&distro=debian-13"
    )
    builder = stmt["predicate"]["runDetails"]["builder"]
    assert builder["id"].startswith("https://") and builder["version"]["hardflow"]


def test_write_supply_chain(world: SbomWorld) -> None:  # noqa: F811
    result = world.build("a")
    out = result.image.layout_dir.parent
    paths = write_supply_chain(result.image, result.source_date_epoch, world.lock, world.spec, out)
    assert {k: p.name for k, p in paths.items()} == {
        "spdx": "sbom.spdx.json",
        "cyclonedx": "sbom.cdx.json",
        "provenance": PROVENANCE_FILE,
        "spdx-attestation": ATTESTATION_FILES["spdx"],
        "cyclonedx-attestation": ATTESTATION_FILES["cyclonedx"],
    }
    assert all(p.parent == out for p in paths.values())
    prov = _payload(paths["provenance"])
    assert prov["predicateType"] == SLSA_PROVENANCE
    assert json.loads(paths["provenance"].read_bytes())["signatures"] == []
    spdx_att = _payload(paths["spdx-attestation"])
    assert spdx_att["predicateType"] == "https://spdx.dev/Document"
    assert spdx_att["predicate"] == json.loads(paths["spdx"].read_bytes())
    cdx_att = _payload(paths["cyclonedx-attestation"])
    assert cdx_att["predicateType"] == "https://cyclonedx.org/bom"
    assert cdx_att["predicate"] == json.loads(paths["cyclonedx"].read_bytes())
    for att in (prov, spdx_att, cdx_att):
        assert att["subject"][0]["digest"]["sha256"] == result.image.manifest_digest[7:]
    # same build, same bytes — here and in another output directory
    before = {k: p.read_bytes() for k, p in paths.items()}
    again = write_supply_chain(result.image, result.source_date_epoch, world.lock, world.spec, out)
    assert {k: p.read_bytes() for k, p in again.items()} == before
    other = world.build("b")
    elsewhere = write_supply_chain(
        other.image, other.source_date_epoch, world.lock, world.spec, other.image.layout_dir.parent
    )
    assert {k: p.read_bytes() for k, p in elsewhere.items()} == before


def test_attest_signs_and_attaches(world: SbomWorld) -> None:  # noqa: F811
    sign = pytest.importorskip("hardflow.supply.sign")
    result = world.build("a")
    layout = result.image.layout_dir
    write_supply_chain(
        result.image, result.source_date_epoch, world.lock, world.spec, layout.parent
    )
    key = sign.generate_key()
    sign.sign_layout(layout, key)
    attest(layout, sign.signer(key))
    report = sign.verify_layout(layout, key.public_key())
    # as cosign stores them: each layer has the (empty) signature annotation besides the type,
    # without which `cosign verify-attestation` finds no attestation
    from hardflow.oci.attach import ATT_SUFFIX, SIGNATURE_ANNOTATION
    from hardflow.supply.verify import attachment

    stored = attachment(layout, result.image.manifest_digest, ATT_SUFFIX)
    assert stored is not None and len(stored[1]) == 3
    assert all(layer.annotations.get(SIGNATURE_ANNOTATION) == "" for layer in stored[1])
    assert report.ok, report.problems
    assert sorted(a.predicate_type for a in report.attestations if a.ok) == sorted(
        [SLSA_PROVENANCE, "https://spdx.dev/Document", "https://cyclonedx.org/bom"]
    )
    # the SBOM of a signed layout (index.json now names .sig/.att manifests) still works
    assert read_image(layout).subject.manifest_digest == result.image.manifest_digest
    # attestations written for another image are refused, not signed
    with pytest.raises(TrustError, match="not the image sha256:00"):
        signed_attestations("sha256:" + "00" * 32, sign.signer(key), layout_dir=layout)
