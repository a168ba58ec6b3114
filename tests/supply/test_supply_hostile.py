"""Signing and verifying layouts whose JSON was tampered with, and signing that must not
leave a layout half signed.

Every hostile layout is made here, in tmp_path, from a valid tiny one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_supply_sign import tiny_layout

from hardflow.errors import TrustError
from hardflow.oci.writer import ImageResult, canonical_json, sha256_digest
from hardflow.supply.dsse import envelope
from hardflow.supply.provenance import attest, attestation_files
from hardflow.supply.sign import generate_key, sign_image, sign_layout, signer, verify_layout

KEY = generate_key()


def snapshot(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def statement(digest: str, predicate: str) -> bytes:
    return canonical_json({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "img", "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": predicate,
        "predicate": {},
    })  # fmt: skip


def write_build_attestations(folder: Path, digest: str) -> None:
    """The three unsigned envelopes a build writes beside its layout, about ``digest``."""
    predicates = ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document",
                  "https://cyclonedx.org/bom"]  # fmt: skip
    for path, predicate in zip(attestation_files(folder), predicates, strict=True):
        path.write_bytes(envelope(statement(digest, predicate), None))


def two_image_layout(tmp: Path) -> tuple[Path, ImageResult, ImageResult]:
    """One layout holding two images, tagged "1" and "2"."""
    a = tiny_layout(tmp, b"a\n", name="hardflow-test/tiny:1", label="a")
    b = tiny_layout(tmp, b"b\n", name="hardflow-test/tiny:2", label="b")
    for blob in (b.layout_dir / "blobs/sha256").iterdir():
        target = a.layout_dir / "blobs/sha256" / blob.name
        if not target.exists():
            shutil.copyfile(blob, target)
    index = json.loads((a.layout_dir / "index.json").read_bytes())
    index["manifests"] += json.loads((b.layout_dir / "index.json").read_bytes())["manifests"]
    (a.layout_dir / "index.json").write_bytes(canonical_json(index))
    return a.layout_dir, a, b


# ---------------------------------------------------------------------------------------------
# all or nothing


def test_signing_with_attestations_for_another_image_writes_nothing(tmp_path: Path) -> None:
    layout, a, b = two_image_layout(tmp_path)
    write_build_attestations(layout.parent, a.manifest_digest)  # the build made image "1"
    before = snapshot(layout)
    with pytest.raises(TrustError, match=f"not the image {b.manifest_digest}"):
        sign_image(layout, KEY, tag="2")
    assert snapshot(layout) == before  # no .sig without its .att: never half signed
    with pytest.raises(TrustError, match="names 2 images"):
        sign_image(layout, KEY)  # which one? decided before anything is written
    assert snapshot(layout) == before
    with pytest.raises(TrustError, match=f"not the image {b.manifest_digest}"):
        attest(layout, signer(KEY), tag="2")
    assert snapshot(layout) == before


def test_sign_image_signs_and_attests_in_one_step(tmp_path: Path) -> None:
    layout, a, _ = two_image_layout(tmp_path)
    write_build_attestations(layout.parent, a.manifest_digest)
    result = sign_image(layout, KEY, tag="1")
    assert result.attestation_manifest is not None
    report = verify_layout(layout, KEY.public_key(), tag="1")
    assert sorted(x.predicate_type or "" for x in report.attestations if x.ok) == [
        "https://cyclonedx.org/bom", "https://slsa.dev/provenance/v1",
        "https://spdx.dev/Document",
    ]
    again = snapshot(layout)
    assert sign_image(layout, KEY, tag="1") == result  # deterministic: nothing new stored
    assert snapshot(layout) == again
    with pytest.raises(TrustError, match="no signature for the image manifest"):
        verify_layout(layout, KEY.public_key(), tag="2")


def test_malformed_build_attestation_beside_the_layout_writes_nothing(tmp_path: Path) -> None:
    result = tiny_layout(tmp_path)
    write_build_attestations(result.layout_dir.parent, result.manifest_digest)
    attestation_files(result.layout_dir.parent)[1].write_text('[{"payloadType": 1}]')
    before = snapshot(result.layout_dir)
    with pytest.raises(TrustError, match=r"sbom\.spdx\.intoto\.json"):
        sign_image(result.layout_dir, KEY)
    assert snapshot(result.layout_dir) == before


# ---------------------------------------------------------------------------------------------
# malformed JSON shapes: a TrustError naming the artifact and the field


def edit_index(layout: Path, change: Callable[[Any], Any]) -> None:
    doc = json.loads((layout / "index.json").read_bytes())
    (layout / "index.json").write_bytes(json.dumps(change(doc)).encode())


def set_entry(key: str, value: Any) -> Callable[[Any], Any]:
    def change(doc: Any) -> Any:
        doc["manifests"][0][key] = value
        return doc

    return change


INDEX_CASES: list[tuple[str, Callable[[Any], Any], str]] = [
    ("index is a list", lambda doc: [doc], "is a list|no manifests list"),
    ("entry is a list", lambda doc: {**doc, "manifests": [[1, 2]]}, r"manifests\[0\] is a list"),
    ("entry lacks digest", set_entry("digest", None), r"manifests\[0\]\.digest is missing"),
    ("digest is a path", set_entry("digest", "sha256:../../x"), r"manifests\[0\]\.digest"),
    ("size is a string", set_entry("size", "12"), r"manifests\[0\]\.size is a string"),
    ("size is negative", set_entry("size", -1), r"manifests\[0\]\.size"),
    ("annotations a list", set_entry("annotations", ["x"]), r"manifests\[0\]\.annotations"),
    ("annotation a number", set_entry("annotations", {"org.opencontainers.image.ref.name": 1}),
     r"annotations\.org\.opencontainers\.image\.ref\.name is a number"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "change", "field"), INDEX_CASES, ids=[c[0] for c in INDEX_CASES])
def test_malformed_index_is_a_trust_error(
    tmp_path: Path, case: str, change: Callable[[Any], Any], field: str
) -> None:
    layout = tiny_layout(tmp_path).layout_dir
    edit_index(layout, change)
    before = snapshot(layout)
    for attempt in (lambda: sign_layout(layout, KEY),
                    lambda: verify_layout(layout, KEY.public_key())):  # fmt: skip
        with pytest.raises(TrustError, match=field) as exc:
            attempt()
        assert "index.json" in exc.value.message
    assert snapshot(layout) == before


def replace_manifest(result: ImageResult, change: Callable[[Any], Any]) -> str:
    """Rewrite the image manifest (a new blob, re-pointed by the index); its new digest."""
    layout = result.layout_dir
    doc = json.loads((layout / "blobs/sha256" / result.manifest_digest[7:]).read_bytes())
    data = json.dumps(change(doc)).encode()
    digest = sha256_digest(data)
    (layout / "blobs/sha256" / digest[7:]).write_bytes(data)
    edit_index(layout, lambda idx: set_entry("size", len(data))(set_entry("digest", digest)(idx)))
    return digest


MANIFEST_CASES: list[tuple[str, Callable[[Any], Any], str]] = [
    ("manifest is a list", lambda m: [m], r"is a list \(.*\); expected a JSON object"),
    ("config missing", lambda m: {k: v for k, v in m.items() if k != "config"},
     "config is missing"),
    ("layers an object", lambda m: {**m, "layers": {}}, "layers is an object"),
    ("layer size a string", lambda m: {**m, "layers": [{**m["layers"][0], "size": "9"}]},
     r"layers\[0\]\.size is a string"),
    ("layer lacks mediaType", lambda m: {**m, "layers": [{"digest": m["layers"][0]["digest"],
     "size": m["layers"][0]["size"]}]}, r"layers\[0\]\.mediaType is missing"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "change", "field"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES]
)
def test_malformed_manifest_is_a_trust_error(
    tmp_path: Path, case: str, change: Callable[[Any], Any], field: str
) -> None:
    result = tiny_layout(tmp_path)
    digest = replace_manifest(result, change)
    before = snapshot(result.layout_dir)
    with pytest.raises(TrustError, match=field) as exc:
        sign_layout(result.layout_dir, KEY)
    assert f"manifest {digest}" in exc.value.message
    assert snapshot(result.layout_dir) == before
    with pytest.raises(TrustError, match=field):
        verify_layout(result.layout_dir, KEY.public_key())


def rewrite_attachment(layout: Path, suffix: str, change: Callable[[Any], Any]) -> None:
    """Replace the attachment manifest ``*.suffix`` with ``change(its JSON)``."""
    index = json.loads((layout / "index.json").read_bytes())
    tags = [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]]
    (entry,) = [e for e, tag in zip(index["manifests"], tags, strict=True) if tag.endswith(suffix)]
    doc = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    data = json.dumps(change(doc)).encode()
    entry.update(digest=sha256_digest(data), size=len(data))
    (layout / "blobs/sha256" / entry["digest"][7:]).write_bytes(data)
    (layout / "index.json").write_bytes(canonical_json(index))


def add_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = sha256_digest(data)
    (layout / "blobs/sha256" / digest[7:]).write_bytes(data)
    return {"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": digest,
            "size": len(data), "annotations": {"predicateType": "x"}}  # fmt: skip


def test_malformed_signature_manifest_is_a_trust_error(tmp_path: Path) -> None:
    layout = tiny_layout(tmp_path).layout_dir
    sign_layout(layout, KEY)
    rewrite_attachment(layout, ".sig", lambda m: {**m, "layers": [{"mediaType": 7}]})
    before = snapshot(layout)
    with pytest.raises(TrustError, match=r"\.sig: layers\[0\]\.mediaType is a number"):
        sign_layout(layout, KEY)  # merging with a malformed signature manifest: refused
    assert snapshot(layout) == before
    with pytest.raises(TrustError, match=r"\.sig: layers\[0\]\.mediaType"):
        verify_layout(layout, KEY.public_key())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "attestation is a list"),
        (b'{"payloadType": "t", "signatures": []}', "attestation: payload is missing"),
        (b'{"payloadType": "t", "payload": "!!", "signatures": []}', "payload is not valid base64"),
        (b'{"payloadType": "t", "payload": "e30=", "signatures": {}}', "signatures is an object"),
        (b'{"payloadType": "t", "payload": "e30=", "signatures": ["x"]}',
         r"signatures\[0\] is a string"),
        (b'{"payloadType": "t", "payload": "W10=", "signatures": []}', "payload is a list"),
        (b'{"payloadType": "t", "payload": "eyJzdWJqZWN0IjogW3siZGlnZXN0IjogMX1dfQ==",'
         b' "signatures": []}', r"subject\[0\]\.digest is a number"),
    ],
)  # fmt: skip
def test_malformed_attestation_layer_fails_verification_by_name(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    layout = tiny_layout(tmp_path).layout_dir
    sign_layout(layout, KEY)
    good = envelope(statement(json.loads((layout / "index.json").read_bytes())["manifests"][0]
                              ["digest"], "p"), signer(KEY))  # fmt: skip
    from hardflow.oci.attach import attach_attestations, image_entry

    attach_attestations(layout, image_entry(layout).digest, [good])
    rewrite_attachment(layout, ".att", lambda m: {**m, "layers": [add_blob(layout, body)]})
    with pytest.raises(TrustError, match=reason):
        verify_layout(layout, KEY.public_key())


# ---------------------------------------------------------------------------------------------
# any JSON in index.json: a verdict or a TrustError, never another exception

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.text(max_size=8)
    | st.sampled_from(["sha256:" + "0" * 64, "1", "sha256:../x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["digest", "size", "annotations", "mediaType",
                         "org.opencontainers.image.ref.name", "manifests"]), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@pytest.fixture(scope="module")
def base_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_layout(tmp_path_factory.mktemp("fuzz")).layout_dir


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entry=JSON)
def test_any_index_entry_gives_a_verdict_or_a_trust_error(base_layout: Path, entry: Any) -> None:
    original = (base_layout / "index.json").read_bytes()
    doc = json.loads(original)
    doc["manifests"].append(entry)
    (base_layout / "index.json").write_bytes(json.dumps(doc).encode())
    try:
        verify_layout(base_layout, KEY.public_key())
    except TrustError:
        pass
    finally:
        (base_layout / "index.json").write_bytes(original)
