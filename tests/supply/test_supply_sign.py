"""Signatures in cosign's format: keys, payload, .sig/.att attachments, verification, CLI.

The cosign interoperability tests run the real cosign (Debian trixie's package, fetched and
verified through hardflow's own Debian trust chain when it is not installed; marked network).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hardflow.build.layers import LayerSpec, write_layer
from hardflow.cli.sign import keygen, sign, verify
from hardflow.errors import TrustError
from hardflow.oci.attach import (
    MEDIA_DSSE,
    MEDIA_SIMPLESIGNING,
    SIGNATURE_ANNOTATION,
    attach_attestations,
    image_entry,
    read_index,
)
from hardflow.oci.writer import (
    ImageConfig,
    ImageResult,
    canonical_json,
    sha256_digest,
    write_oci_layout,
)
from hardflow.supply.sign import (
    KeyFileError,
    decrypt_private_key,
    decrypt_secret,
    encrypt_private_key,
    generate_key,
    load_private_key,
    load_public_key,
    pae,
    public_key_pem,
    sign_layout,
    signer,
    simple_signing_payload,
    verify_layout,
    write_key_pair,
)

SDE = 1_700_000_000


def tiny_config(label: str = "x", cmd: tuple[str, ...] = ("/bin/true",)) -> ImageConfig:
    return ImageConfig(
        user="50000:0", env=("PATH=/bin",), entrypoint=(), cmd=cmd, workdir="/",
        exposed_ports=(), labels={"test.hardflow": label}, stop_signal="SIGTERM",
        healthcheck=None, volumes=(), created=SDE,
    )  # fmt: skip


def tiny_layout(tmp: Path, content: bytes = b"hello\n", name: str = "hardflow-test/tiny:1",
                label: str = "x") -> ImageResult:  # fmt: skip
    root = tmp / f"root-{label}"
    (root / "etc").mkdir(parents=True)
    (root / "etc/greeting").write_bytes(content)
    layer = write_layer(root, LayerSpec("etc", ("etc/greeting",)), {}, SDE, tmp / "blobs")
    return write_oci_layout([layer], tiny_config(label), {}, name, tmp / f"layout-{label}")


@pytest.fixture
def layout(tmp_path: Path) -> ImageResult:
    return tiny_layout(tmp_path)


# ---------------------------------------------------------------------------------------------
# keys


def test_private_key_round_trips_through_cosign_pem() -> None:
    key = generate_key()
    pem = encrypt_private_key(key, b"s3cret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    doc = json.loads(body)
    assert list(doc) == ["kdf", "cipher", "ciphertext"]  # cosign's field order
    assert doc["kdf"]["name"] == "scrypt"
    assert doc["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    again = decrypt_private_key(pem, b"s3cret")
    assert public_key_pem(again) == public_key_pem(key)


def test_wrong_password_and_tampered_key_are_refused() -> None:
    pem = encrypt_private_key(generate_key(), b"right")
    with pytest.raises(KeyFileError, match="wrong password"):
        decrypt_private_key(pem, b"wrong")
    body = json.loads(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
    sealed = bytearray(base64.b64decode(body["ciphertext"]))
    sealed[-1] ^= 1
    body["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    tampered = b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + base64.b64encode(
        json.dumps(body).encode()
    ) + b"\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    with pytest.raises(KeyFileError, match="decryption failed"):
        decrypt_private_key(tampered, b"right")


def test_unknown_scrypt_parameters_are_refused_before_any_work() -> None:
    body = json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": 1 << 24, "r": 8, "p": 1}, "salt": "AA=="},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(bytes(24)).decode()},
        "ciphertext": "AA==",
    }).encode()  # fmt: skip
    with pytest.raises(KeyFileError, match="unsupported scrypt parameters"):
        decrypt_secret(body, b"pw", "k")


def test_decrypts_the_go_library_test_vector() -> None:
    # published test vector of the Go library cosign uses for its keys (passphrase
    # "supersecret"; the plaintext is the JSON string of base64("reallyimportant"))
    vector = (
        b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6e'
        b'cG6GzaOuOy/ynG5+yRiFlNs="},"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2'
        b'gR9O2+IGQ8xJEuE"},"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}'
    )
    plain = decrypt_secret(vector, b"supersecret", "vector")
    assert base64.b64decode(json.loads(plain)) == b"reallyimportant"


def test_write_key_pair_modes_and_no_overwrite(tmp_path: Path) -> None:
    pair = write_key_pair(tmp_path / "k", b"pw")
    assert pair.private_path.stat().st_mode & 0o777 == 0o600
    assert load_public_key(pair.public_path).public_numbers() == (
        load_private_key(pair.private_path, b"pw").public_key().public_numbers()
    )
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_pair(tmp_path / "k", b"pw")


# ---------------------------------------------------------------------------------------------
# signing and verifying a layout


def test_payload_is_cosigns_simple_signing_json() -> None:
    digest = "sha256:" + "ab" * 32
    assert simple_signing_payload("reg.test/org/img", digest) == (
        b'{"critical":{"identity":{"docker-reference":"reg.test/org/img"},"image":'
        b'{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},"type":"cosign container '
        b'image signature"},"optional":null}'
    )


def test_sign_stores_a_cosign_signature_manifest(layout: ImageResult) -> None:
    key = generate_key()
    result = sign_layout(layout.layout_dir, key, identity="reg.test/hardflow-test/tiny")
    hexpart = layout.manifest_digest.removeprefix("sha256:")
    assert result.tag == f"sha256-{hexpart}.sig"
    index = read_index(layout.layout_dir)
    tags = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert tags == ["1", f"sha256-{hexpart}.sig"]
    sig_entry = index["manifests"][1]
    assert sig_entry["digest"] == result.signature_manifest
    manifest = json.loads(
        (layout.layout_dir / "blobs/sha256" / result.signature_manifest[7:]).read_bytes()
    )
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == MEDIA_SIMPLESIGNING
    payload = (layout.layout_dir / "blobs/sha256" / layer["digest"][7:]).read_bytes()
    assert payload == simple_signing_payload("reg.test/hardflow-test/tiny", layout.manifest_digest)
    signature = base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION])
    key.public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))  # raises if bad
    # the image itself is still what the index names first, untouched
    assert image_entry(layout.layout_dir).digest == layout.manifest_digest
    report = verify_layout(layout.layout_dir, key.public_key())
    assert report.ok and [s.identity for s in report.signatures] == [
        "reg.test/hardflow-test/tiny"
    ]


def test_signing_twice_is_idempotent_and_default_identity_is_the_repository(
    layout: ImageResult,
) -> None:
    key = generate_key()
    first = sign_layout(layout.layout_dir, key)
    index = (layout.layout_dir / "index.json").read_bytes()
    second = sign_layout(layout.layout_dir, key)
    assert first.identity == "hardflow-test/tiny"
    assert second.signature_manifest == first.signature_manifest
    assert (layout.layout_dir / "index.json").read_bytes() == index
    # another key adds a second signature layer; both verify under their own key
    other = generate_key()
    sign_layout(layout.layout_dir, other)
    assert verify_layout(layout.layout_dir, key.public_key()).ok
    report = verify_layout(layout.layout_dir, other.public_key())
    assert [s.ok for s in report.signatures] == [False, True]


def test_verify_refuses_a_changed_layer(layout: ImageResult) -> None:
    key = generate_key()
    sign_layout(layout.layout_dir, key)
    blob = layout.layout_dir / "blobs/sha256" / layout.layers[0].digest[7:]
    data = bytearray(blob.read_bytes())
    data[-9] ^= 0xFF
    blob.unlink()  # it is a hard link to the build's blob
    blob.write_bytes(bytes(data))
    with pytest.raises(TrustError, match=r"blob\(s\) were changed after they were written"):
        verify_layout(layout.layout_dir, key.public_key())


def test_verify_refuses_a_changed_and_reindexed_manifest(layout: ImageResult) -> None:
    key = generate_key()
    sign_layout(layout.layout_dir, key)
    d = layout.layout_dir
    manifest = json.loads((d / "blobs/sha256" / layout.manifest_digest[7:]).read_bytes())
    manifest["annotations"] = {"evil": "yes"}
    data = canonical_json(manifest)
    new_digest = sha256_digest(data)
    (d / "blobs/sha256" / new_digest[7:]).write_bytes(data)
    index = read_index(d)
    index["manifests"][0].update(digest=new_digest, size=len(data))
    (d / "index.json").write_bytes(canonical_json(index))
    with pytest.raises(TrustError) as info:
        verify_layout(d, key.public_key())
    text = str(info.value)
    assert f"no signature for the image manifest {new_digest}" in text
    assert layout.manifest_digest in text  # it says which manifest was signed


def test_verify_refuses_wrong_key_and_missing_signature(layout: ImageResult) -> None:
    key = generate_key()
    with pytest.raises(TrustError, match="no signature for the image manifest"):
        verify_layout(layout.layout_dir, key.public_key())
    sign_layout(layout.layout_dir, key)
    with pytest.raises(TrustError, match="does not verify under this key"):
        verify_layout(layout.layout_dir, generate_key().public_key())


def test_verify_checks_the_identity_when_asked(layout: ImageResult) -> None:
    key = generate_key()
    sign_layout(layout.layout_dir, key, identity="reg.test/a")
    assert verify_layout(layout.layout_dir, key.public_key(), identity="reg.test/a:1").ok
    with pytest.raises(TrustError, match=r"expected .reg\.test/b."):
        verify_layout(layout.layout_dir, key.public_key(), identity="reg.test/b")


def envelope(key_sign: Callable[[bytes], bytes], subject_digest: str, predicate: str) -> bytes:
    statement = canonical_json({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "img", "digest": {"sha256": subject_digest[7:]}}],
        "predicateType": predicate,
        "predicate": {"x": 1},
    })  # fmt: skip
    kind = "application/vnd.in-toto+json"
    sig = key_sign(pae(kind, statement))
    return canonical_json({
        "payloadType": kind,
        "payload": base64.b64encode(statement).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}],
    })  # fmt: skip


def test_attestations_are_attached_and_verified(layout: ImageResult) -> None:
    key = generate_key()
    sign_layout(layout.layout_dir, key)
    spdx = envelope(signer(key), layout.manifest_digest, "https://spdx.dev/Document")
    slsa = envelope(signer(key), layout.manifest_digest, "https://slsa.dev/provenance/v1")
    digest = attach_attestations(layout.layout_dir, layout.manifest_digest, [spdx, slsa])
    manifest = json.loads((layout.layout_dir / "blobs/sha256" / digest[7:]).read_bytes())
    assert [(x["mediaType"], x["annotations"]["predicateType"]) for x in manifest["layers"]] == [
        (MEDIA_DSSE, "https://spdx.dev/Document"),
        (MEDIA_DSSE, "https://slsa.dev/provenance/v1"),
    ]
    report = verify_layout(layout.layout_dir, key.public_key())
    assert [a.predicate_type for a in report.attestations if a.ok] == [
        "https://spdx.dev/Document", "https://slsa.dev/provenance/v1"
    ]
    # a new SPDX attestation replaces the old one; signed by another key it fails verify
    bad = envelope(signer(generate_key()), layout.manifest_digest, "https://spdx.dev/Document")
    attach_attestations(layout.layout_dir, layout.manifest_digest, [bad])
    with pytest.raises(TrustError, match=r"attestation https://spdx\.dev/Document: none of its"):
        verify_layout(layout.layout_dir, key.public_key())
    # one for another image is refused
    other = envelope(signer(key), "sha256:" + "00" * 32, "https://spdx.dev/Document")
    attach_attestations(layout.layout_dir, layout.manifest_digest, [other])
    with pytest.raises(TrustError, match="its subject is not the manifest"):
        verify_layout(layout.layout_dir, key.public_key())


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_keygen_sign_verify(layout: ImageResult, tmp_path: Path) -> None:
    runner = CliRunner()
    pw = tmp_path / "pw"
    pw.write_text("from-a-file\n")
    made = runner.invoke(
        keygen, ["--output-key-prefix", str(tmp_path / "k"), "--password-file", str(pw)]
    )
    assert made.exit_code == 0, made.output
    assert load_private_key(tmp_path / "k.key", b"from-a-file")
    signed = runner.invoke(
        sign, ["--key", str(tmp_path / "k.key"), "--json", str(layout.layout_dir)],
        env={"COSIGN_PASSWORD": "from-a-file"},
    )  # fmt: skip
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.output)["manifest_digest"] == layout.manifest_digest
    ok = runner.invoke(verify, ["--key", str(tmp_path / "k.pub"), str(layout.layout_dir)])
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output
    wrong = runner.invoke(
        sign, ["--key", str(tmp_path / "k.key"), str(layout.layout_dir)],
        env={"COSIGN_PASSWORD": "nope"},
    )  # fmt: skip
    assert isinstance(wrong.exception, TrustError)
    assert "wrong password" in str(wrong.exception)
    write_key_pair(tmp_path / "other", b"")
    bad = runner.invoke(
        verify, ["--key", str(tmp_path / "other.pub"), "--json", str(layout.layout_dir)]
    )
    assert bad.exit_code == 1
    assert json.loads(bad.output)["ok"] is False


# ---------------------------------------------------------------------------------------------
# the real cosign


def cosign_binary() -> Path:
    """cosign from $HARDFLOW_COSIGN, PATH, or Debian trixie's package (fetched, verified)."""
    for candidate in (os.environ.get("HARDFLOW_COSIGN"), shutil.which("cosign")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    from hardflow.debian.deb import read_deb
    from hardflow.debian.repo import load_suite
    from hardflow.lock.fetch import Artifact, Cache, default_cache_dir, http_get
    from hardflow.lock.mirrors import resolve_mirrors
    from hardflow.spec import load_embedded

    debian = load_embedded().debian
    mirrors = resolve_mirrors(debian)
    index = load_suite(
        mirrors.main, "trixie", ["main"], "amd64", Path(debian.keyring),
        lambda url: http_get(url),
    )  # fmt: skip
    (record,) = [p for p in index.packages if p.name == "cosign"]
    target = default_cache_dir() / "tools" / f"cosign-{record.sha256[:16]}"
    if not target.is_file():
        art = Artifact(record.filename.rsplit("/", 1)[-1], record.sha256, record.size,
                       lambda: [f"{mirrors.main}/{record.filename}"])  # fmt: skip
        deb = read_deb(Cache().get(art))
        (member,) = [m for m in deb.members if m.path == "usr/bin/cosign"]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(member.data)
        tmp.chmod(0o755)
        tmp.replace(target)
    return target


@pytest.fixture(scope="session")
def cosign() -> Path:
    try:
        return cosign_binary()
    except Exception as exc:  # no network, no mirror: the interop tests cannot run
        pytest.skip(f"cosign is not available: {exc}")


@pytest.mark.network
def test_cosign_reads_our_key_and_we_read_cosigns(cosign: Path, tmp_path: Path) -> None:
    pair = write_key_pair(tmp_path / "ours", b"pw1")
    shown = subprocess.run(
        [str(cosign), "public-key", "--key", str(pair.private_path)],
        capture_output=True, env={**os.environ, "COSIGN_PASSWORD": "pw1"}, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == pair.public_path.read_bytes()
    made = subprocess.run(
        [str(cosign), "generate-key-pair", "--output-key-prefix", str(tmp_path / "theirs")],
        capture_output=True, env={**os.environ, "COSIGN_PASSWORD": "pw2"}, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    theirs = load_private_key(tmp_path / "theirs.key", b"pw2")
    assert public_key_pem(theirs) == (tmp_path / "theirs.pub").read_bytes()


@pytest.mark.network
def test_cosign_verifies_our_payload_signature_as_a_blob(cosign: Path, tmp_path: Path) -> None:
    key = generate_key()
    (tmp_path / "k.pub").write_bytes(public_key_pem(key))
    payload = simple_signing_payload("reg.test/x", "sha256:" + "cd" * 32)
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig").write_bytes(base64.b64encode(signer(key)(payload)))
    done = subprocess.run(
        [str(cosign), "verify-blob", "--key", str(tmp_path / "k.pub"), "--signature",
         str(tmp_path / "sig"), "--insecure-ignore-tlog=true", str(tmp_path / "payload")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Verified OK" in done.stderr


def test_split_modules_and_the_names_sign_still_exports() -> None:
    from hardflow.supply import keys, sign, verify

    for name in ("PASSWORD_ENV", "read_password", "load_public_key", "load_private_key",
                 "write_key_pair"):  # fmt: skip
        assert getattr(sign, name) is getattr(keys, name)
    for name in ("VerifyError", "verify_layout", "repository_of"):
        assert getattr(sign, name) is getattr(verify, name)
    assert callable(sign.sign_layout) and callable(sign.signer) and callable(sign.sign_image)
