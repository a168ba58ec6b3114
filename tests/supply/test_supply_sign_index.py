"""Signing and verifying a multi-platform image (an OCI image index), as ``cosign sign
--recursive`` does: the index and every platform's manifest are signed, each platform's SBOMs
and provenance are attached to its own manifest, and verification names the platform whose
manifest is unsigned, tampered with or mis-attested.

The image is the two-platform fixture build (``helpers.multiplatform``), built once per module;
each test works on its own copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.build.pipeline import BuildResult
from hardflow.cli.sign import sign, verify
from hardflow.errors import TrustError
from hardflow.oci.attach import SIGNATURE_ANNOTATION
from hardflow.oci.writer import canonical_json, sha256_digest
from hardflow.supply.provenance import ATTESTATION_FILES, PROVENANCE_FILE
from hardflow.supply.sign import (
    generate_key,
    sign_image,
    sign_layout,
    verify_layout,
    write_key_pair,
)
from hardflow.supply.verify import VerifyError, parse_simple_signing
from helpers.multiplatform import PLATFORMS, requires_amd64_host, shared_two_platforms

pytestmark = requires_amd64_host
KEY = generate_key()
REPO = "hardflow-test/multi"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return shared_two_platforms(tmp_path_factory)


@pytest.fixture
def out(built: BuildResult, tmp_path: Path) -> Path:
    """A fresh copy of the build output (oci/, the attestations, platforms/)."""
    source = built.image.layout_dir.parent
    return Path(shutil.copytree(source, tmp_path / "out", symlinks=True))


def manifests(built: BuildResult) -> dict[str, str]:
    return {p: r.image.manifest_digest for p, r in built.platforms}


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs/sha256" / digest.removeprefix("sha256:")


def tags(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_bytes())
    return {
        e["annotations"]["org.opencontainers.image.ref.name"]: e["digest"]
        for e in index["manifests"]
    }


def drop_tag(layout: Path, tag: str) -> None:
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"] = [
        e for e in index["manifests"]
        if e["annotations"]["org.opencontainers.image.ref.name"] != tag
    ]  # fmt: skip
    (layout / "index.json").write_bytes(canonical_json(index))


def sig_tag(digest: str, suffix: str = "sig") -> str:
    return digest.replace(":", "-") + "." + suffix


def test_sign_covers_the_index_and_every_platform_with_its_own_attestations(
    built: BuildResult, out: Path
) -> None:
    layout = out / "oci"
    per = manifests(built)
    result = sign_image(layout, KEY)
    assert result.manifest_digest == built.index_digest
    assert result.identity == REPO
    assert [(p.platform, p.manifest_digest) for p in result.platforms] == list(per.items())
    assert result.attestation_manifest is None  # the index has no statement of its own
    stored = tags(layout)
    for digest in (built.index_digest, *per.values()):
        sig_manifest = json.loads(blob(layout, stored[sig_tag(digest)]).read_bytes())
        (layer,) = sig_manifest["layers"]
        payload = parse_simple_signing(blob(layout, layer["digest"]).read_bytes())
        assert (payload.manifest_digest, payload.identity) == (digest, REPO)
    assert sig_tag(built.index_digest, "att") not in stored
    for p in result.platforms:
        assert p.attestation_manifest == stored[sig_tag(p.manifest_digest, "att")]
        att = json.loads(blob(layout, p.attestation_manifest).read_bytes())
        # cosign's attestation layers: the empty signature annotation, the predicate type
        assert sorted(x["annotations"]["predicateType"] for x in att["layers"]) == [
            "https://cyclonedx.org/bom", "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document",
        ]  # fmt: skip
        assert all(x["annotations"][SIGNATURE_ANNOTATION] == "" for x in att["layers"])
    report = verify_layout(layout, KEY.public_key(), identity=REPO)
    assert report.manifest_digest == built.index_digest and report.signatures[0].ok
    assert [(p.platform, p.manifest_digest) for p in report.platforms] == list(per.items())
    for p in report.platforms:
        assert len(p.attestations) == 3 and all(a.ok for a in p.attestations)
        assert all(s.ok for s in p.signatures)
    data = report.to_json()
    assert [p["platform"] for p in data["platforms"]] == list(PLATFORMS)
    # idempotent: signing again stores nothing new
    before = (layout / "index.json").read_bytes()
    sign_image(layout, KEY)
    assert (layout / "index.json").read_bytes() == before


def test_an_unsigned_platform_is_named(built: BuildResult, out: Path) -> None:
    layout = out / "oci"
    sign_layout(layout, KEY)
    arm = manifests(built)["linux/arm64"]
    drop_tag(layout, sig_tag(arm))
    with pytest.raises(VerifyError) as exc:
        verify_layout(layout, KEY.public_key())
    (problem,) = exc.value.report.problems
    assert problem.startswith(f"platform linux/arm64: no signature for the manifest {arm}")
    assert "linux/amd64" not in exc.value.message


def test_a_platform_signed_by_another_key_is_named(built: BuildResult, out: Path) -> None:
    layout = out / "oci"
    sign_layout(layout, KEY)
    arm = manifests(built)["linux/arm64"]
    drop_tag(layout, sig_tag(arm))
    sign_layout(layout, generate_key())  # the index and amd64: ours and theirs; arm64: theirs
    with pytest.raises(VerifyError) as exc:
        verify_layout(layout, KEY.public_key())
    (problem,) = exc.value.report.problems
    assert problem.startswith(f"platform linux/arm64: none of the 1 signature(s) of {arm}")
    assert problem.endswith("signature does not verify under this key")


def test_a_tampered_platform_manifest_or_layer_is_named(built: BuildResult, out: Path) -> None:
    layout = out / "oci"
    sign_layout(layout, KEY)
    arm = manifests(built)["linux/arm64"]
    path = blob(layout, arm)
    original = path.read_bytes()
    doc = json.loads(original)
    doc["annotations"]["org.example.tampered"] = "yes"
    path.write_bytes(canonical_json(doc))
    with pytest.raises(TrustError, match=r"\(platform linux/arm64: its manifest\)"):
        verify_layout(layout, KEY.public_key())
    path.write_bytes(original)
    verify_layout(layout, KEY.public_key())
    amd = json.loads(blob(layout, manifests(built)["linux/amd64"]).read_bytes())
    shared = {x["digest"] for x in amd["layers"]}
    own = [x["digest"] for x in doc["layers"] if x["digest"] not in shared]
    layer = blob(layout, own[0])
    data = bytearray(layer.read_bytes())
    data[-9] ^= 0xFF
    layer.write_bytes(bytes(data))
    with pytest.raises(TrustError) as exc:
        verify_layout(layout, KEY.public_key())
    assert "platform linux/arm64: its config or a layer" in exc.value.message
    assert "linux/amd64" not in exc.value.message


def test_a_platform_changed_and_reindexed_after_signing_is_named(
    built: BuildResult, out: Path
) -> None:
    """The arm64 manifest replaced and the index rewritten to list it (then index.json):
    every blob matches its name, but neither the new index nor the new manifest is signed."""
    layout = out / "oci"
    sign_layout(layout, KEY)
    arm = manifests(built)["linux/arm64"]
    doc = json.loads(blob(layout, arm).read_bytes())
    doc["annotations"]["org.example.tampered"] = "yes"
    data = canonical_json(doc)
    new_arm = sha256_digest(data)
    blob(layout, new_arm).write_bytes(data)
    index = json.loads(blob(layout, built.index_digest).read_bytes())
    for entry in index["manifests"]:
        if entry["digest"] == arm:
            entry.update(digest=new_arm, size=len(data))
    index_data = canonical_json(index)
    new_index = sha256_digest(index_data)
    blob(layout, new_index).write_bytes(index_data)
    top = json.loads((layout / "index.json").read_bytes())
    for entry in top["manifests"]:
        if entry["digest"] == built.index_digest:
            entry.update(digest=new_index, size=len(index_data))
    (layout / "index.json").write_bytes(canonical_json(top))
    with pytest.raises(VerifyError) as exc:
        verify_layout(layout, KEY.public_key())
    problems = exc.value.report.problems
    assert problems[0].startswith(f"no signature for the image index {new_index}")
    assert problems[1].startswith(f"platform linux/arm64: no signature for the manifest {new_arm}")
    assert len(problems) == 2  # amd64 is unchanged and still signed


def test_an_attestation_of_another_platform_is_named(built: BuildResult, out: Path) -> None:
    layout = out / "oci"
    per = manifests(built)
    sign_image(layout, KEY)
    stored = tags(layout)
    # arm64's .att tag pointing at amd64's attestations
    top = json.loads((layout / "index.json").read_bytes())
    for entry in top["manifests"]:
        if entry["annotations"]["org.opencontainers.image.ref.name"] == sig_tag(
            per["linux/arm64"], "att"
        ):
            amd_att = stored[sig_tag(per["linux/amd64"], "att")]
            entry.update(digest=amd_att, size=blob(layout, amd_att).stat().st_size)
    (layout / "index.json").write_bytes(canonical_json(top))
    with pytest.raises(VerifyError) as exc:
        verify_layout(layout, KEY.public_key())
    problems = exc.value.report.problems
    assert len(problems) == 3
    assert all(p.startswith("platform linux/arm64: attestation ") for p in problems)
    assert all(f"its subject is not the manifest {per['linux/arm64']}" in p for p in problems)


def test_attestations_must_match_their_platform(built: BuildResult, out: Path) -> None:
    """amd64's statements in arm64's folder: refused before anything is written."""
    layout = out / "oci"
    arm_dir = out / "platforms/linux-arm64"
    for name in (PROVENANCE_FILE, *ATTESTATION_FILES.values()):
        shutil.copyfile(out / name, arm_dir / name)
    before = (layout / "index.json").read_bytes()
    with pytest.raises(TrustError, match="not the image " + manifests(built)["linux/arm64"]):
        sign_image(layout, KEY)
    assert (layout / "index.json").read_bytes() == before


def test_cli_sign_and_verify_an_index(built: BuildResult, out: Path, tmp_path: Path) -> None:
    write_key_pair(tmp_path / "k", b"")
    env = {"COSIGN_PASSWORD": ""}
    layout = str(out / "oci")
    runner = CliRunner()
    signed = runner.invoke(sign, ["--key", str(tmp_path / "k.key"), layout], env=env)
    assert signed.exit_code == 0, signed.output
    assert f"signed image index {built.index_digest}" in signed.output
    for platform, digest in manifests(built).items():
        assert f"platform {platform}: signed {digest} + provenance and SBOM" in signed.output
    checked = runner.invoke(verify, ["--key", str(tmp_path / "k.pub"), layout])
    assert checked.exit_code == 0, checked.output
    assert "platform linux/arm64: " in checked.output and "3 attestation(s)" in checked.output
    drop_tag(out / "oci", sig_tag(manifests(built)["linux/arm64"]))
    failed = runner.invoke(verify, ["--key", str(tmp_path / "k.pub"), "--json", layout])
    assert failed.exit_code == 1
    data = json.loads(failed.output)
    assert data["ok"] is False and len(data["problems"]) == 1
    assert data["problems"][0].startswith("platform linux/arm64: no signature")
    assert [p["platform"] for p in data["platforms"]] == list(PLATFORMS)


def rewrite_index(layout: Path, index_digest: str, change: Callable[[Any], Any]) -> None:
    """Replace the image index with ``change(its JSON)`` and point index.json at it."""
    doc = change(json.loads(blob(layout, index_digest).read_bytes()))
    data = json.dumps(doc).encode()
    digest = sha256_digest(data)
    blob(layout, digest).write_bytes(data)
    top = json.loads((layout / "index.json").read_bytes())
    top["manifests"][0].update(digest=digest, size=len(data))
    (layout / "index.json").write_bytes(canonical_json(top))


def _first(index: Any, **changes: Any) -> Any:
    first = {**index["manifests"][0], **changes}
    return {**index, "manifests": [first, *index["manifests"][1:]]}


HOSTILE_INDEXES: list[tuple[str, Callable[[Any], Any], str]] = [
    ("no manifests", lambda i: {**i, "manifests": []}, "lists no manifest"),
    ("manifests an object", lambda i: {**i, "manifests": {}}, r"manifests is an object"),
    ("nested index", lambda i: _first(i, mediaType="application/vnd.oci.image.index.v1+json"),
     "nested indexes are not supported"),
    ("no platform", lambda i: {**i, "manifests": [
        {k: v for k, v in m.items() if k != "platform"} for m in i["manifests"]]},
     r"manifests\[0\]\.platform is missing"),
    ("platform twice", lambda i: {**i, "manifests": [i["manifests"][0]] * 2},
     "platform linux/amd64 is listed twice"),
    ("odd architecture", lambda i: _first(i, platform={"os": "linux", "architecture": "a/b"}),
     "expected OS/ARCHITECTURE"),
    ("size a string", lambda i: _first(i, size="12"), r"manifests\[0\]\.size is a string"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "change", "message"), HOSTILE_INDEXES, ids=[c[0] for c in HOSTILE_INDEXES]
)
def test_a_malformed_index_is_a_trust_error_and_nothing_is_written(
    built: BuildResult, out: Path, case: str, change: Callable[[Any], Any], message: str
) -> None:
    layout = out / "oci"
    rewrite_index(layout, built.index_digest, change)
    before = sorted((p.name, p.stat().st_size) for p in layout.rglob("*"))
    with pytest.raises(TrustError, match=message):
        sign_image(layout, KEY)
    assert sorted((p.name, p.stat().st_size) for p in layout.rglob("*")) == before
    with pytest.raises(TrustError, match=message):
        verify_layout(layout, KEY.public_key())
