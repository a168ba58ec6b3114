"""cosign-compatible key-based signatures of OCI images (ECDSA P-256, SHA-256).

Keys (what ``cosign generate-key-pair`` writes):

* the public key: PEM ``PUBLIC KEY`` (PKIX SubjectPublicKeyInfo);
* the private key: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` whose body is a JSON document
  ``{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":B64},
  "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}`` — scrypt derives a
  32-byte key from the password and a 32-byte salt, NaCl secretbox (XSalsa20-Poly1305) with a
  24-byte nonce seals the PKCS#8 DER private key. ``ENCRYPTED COSIGN PRIVATE KEY`` (cosign's
  older name) is read too; scrypt parameters other than the three sets cosign's library knows
  are refused (a tampered key must not make us burn memory).

Signatures (what ``cosign sign --key`` stores, and what podman's ``sigstoreSigned`` policy
checks): the payload is the "simple signing" JSON naming the image's manifest digest and a
docker reference; the signature is ECDSA over the exact payload bytes, DER-encoded, and stored
base64 in the annotation ``dev.cosignproject.cosign/signature`` of the payload layer of the
``sha256-<hex>.sig`` manifest (see :mod:`hardflow.oci.attach`). We sign deterministically
(RFC 6979), so signing the same image with the same key and identity twice stores nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hardflow.errors import TrustError
from hardflow.fsutil import atomic_write
from hardflow.oci.attach import (
    ATT_SUFFIX,
    MEDIA_DSSE,
    MEDIA_SIMPLESIGNING,
    SIG_SUFFIX,
    SIGNATURE_ANNOTATION,
    ImageEntry,
    attach_signature,
    attached_layers,
    blob_digests,
    entry_tag,
    image_entry,
    is_attachment_tag,
    read_blob,
    read_index,
)
from hardflow.supply.dsse import pae

SIGSTORE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM = "ENCRYPTED COSIGN PRIVATE KEY"
SIGNATURE_TYPE = "cosign container image signature"
PASSWORD_ENV = "COSIGN_PASSWORD"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
# the parameter sets cosign's key library accepts (legacy, standard, OWASP)
SCRYPT_ACCEPTED = ((32768, 8, 1), (65536, 8, 1), (131072, 8, 1))
SALT_SIZE = 32
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_SCRYPT_MAXMEM = 256 * 1024 * 1024


class KeyFileError(TrustError):
    """A key file is missing, malformed, or its password is wrong."""


# ---------------------------------------------------------------------------------------------
# keys


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_encode(kind: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"".join(
        [f"-----BEGIN {kind}-----\n".encode(), *(line + b"\n" for line in lines),
         f"-----END {kind}-----\n".encode()]
    )  # fmt: skip


def _pem_decode(data: bytes, what: str) -> tuple[str, bytes]:
    match = _PEM.search(data)
    if match is None:
        raise KeyFileError(f"{what} is not a PEM file (no -----BEGIN …----- block)")
    try:
        body = base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except ValueError:
        raise KeyFileError(f"{what}: the PEM body is not base64") from None
    return match.group(1).decode("ascii"), body


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, dklen=nacl.secret.SecretBox.KEY_SIZE,
        maxmem=_SCRYPT_MAXMEM,
    )  # fmt: skip


def encrypt_private_key(
    key: ec.EllipticCurvePrivateKey,
    password: bytes,
    *,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """The private key as cosign's ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = salt if salt is not None else os.urandom(SALT_SIZE)
    nonce = nonce if nonce is not None else os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(der, nonce).ciphertext
    # the field order of cosign's JSON (Go struct order), compact
    body = json.dumps(
        {
            "kdf": {
                "name": "scrypt",
                "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": base64.b64encode(salt).decode(),
            },
            "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
            "ciphertext": base64.b64encode(sealed).decode(),
        },
        separators=(",", ":"),
    ).encode()
    return _pem_encode(SIGSTORE_PEM, body)


def decrypt_secret(body: bytes, password: bytes, what: str) -> bytes:
    """The plaintext of cosign's encrypted JSON document (scrypt + nacl/secretbox)."""
    try:
        doc = json.loads(body)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(doc["ciphertext"], validate=True)
        kdf_name, cipher_name = kdf["name"], cipher["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{what}: the encrypted key document is malformed ({exc})") from None
    if kdf_name != "scrypt" or cipher_name != "nacl/secretbox":
        raise KeyFileError(
            f"{what}: unsupported encryption {kdf_name!r}/{cipher_name!r}; "
            "expected scrypt/nacl/secretbox"
        )
    if (n, r, p) not in SCRYPT_ACCEPTED:
        raise KeyFileError(f"{what}: unsupported scrypt parameters N={n} r={r} p={p}")
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyFileError(f"{what}: the nonce has {len(nonce)} bytes; expected 24")
    box = nacl.secret.SecretBox(_scrypt(password, salt, n, r, p))
    try:
        return box.decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise KeyFileError(
            f"{what}: decryption failed: wrong password (or the key file was changed)",
            hint=f"the password comes from ${PASSWORD_ENV} or --password-file",
        ) from None


def decrypt_private_key(
    pem: bytes, password: bytes, what: str = "private key"
) -> ec.EllipticCurvePrivateKey:
    kind, body = _pem_decode(pem, what)
    if kind not in (SIGSTORE_PEM, COSIGN_PEM):
        raise KeyFileError(
            f"{what} is a PEM {kind!r}; expected {SIGSTORE_PEM!r} (a cosign or hardflow key)"
        )
    der = decrypt_secret(body, password, what)
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{what}: the decrypted key is not PKCS#8 DER: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyFileError(f"{what} is not an ECDSA P-256 key; hardflow signs with P-256 only")
    return key


def load_private_key(path: Path, password: bytes) -> ec.EllipticCurvePrivateKey:
    """Read and decrypt a cosign-format private key file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the private key {path}: {exc.strerror}") from None
    return decrypt_private_key(data, password, str(path))


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_public_key(pem: bytes, what: str = "public key") -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise KeyFileError(f"{what} is not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise KeyFileError(f"{what} is not an ECDSA P-256 public key")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the public key {path}: {exc.strerror}") from None
    return parse_public_key(data, str(path))


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """A short fingerprint for messages: sha256 of the DER public key."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str


def write_key_pair(prefix: Path, password: bytes, *, force: bool = False) -> KeyPair:
    """``PREFIX.key`` (mode 0600) and ``PREFIX.pub``, like ``cosign generate-key-pair``."""
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise KeyFileError(
                    f"{path} already exists; refusing to overwrite a key",
                    hint="pass --force to replace it, or choose another --output-key-prefix",
                )
    key = generate_key()
    atomic_write(private_path, encrypt_private_key(key, password), mode=0o600)
    atomic_write(public_path, public_key_pem(key))
    return KeyPair(private_path, public_path, key_id(key.public_key()))


def read_password(password_file: Path | None, env: Mapping[str, str]) -> bytes | None:
    """The key password: ``--password-file`` (one trailing newline dropped), else
    ``$COSIGN_PASSWORD`` (empty is allowed, as in cosign), else None (ask the user)."""
    if password_file is not None:
        try:
            text = password_file.read_bytes()
        except OSError as exc:
            raise KeyFileError(
                f"cannot read the password file {password_file}: {exc.strerror}"
            ) from None
        return text[:-1] if text.endswith(b"\n") else text
    value = env.get(PASSWORD_ENV)
    return value.encode("utf-8") if value is not None else None


# ---------------------------------------------------------------------------------------------
# signing


def signer(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """``data → DER ECDSA P-256/SHA-256 signature``, deterministic (RFC 6979)."""
    algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)

    def sign(data: bytes) -> bytes:
        return key.sign(data, algorithm)

    return sign


def verify_bytes(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def simple_signing_payload(docker_reference: str, manifest_digest: str) -> bytes:
    """cosign's payload, byte for byte: compact JSON, ``"optional":null``."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


def repository_of(reference: str) -> str:
    """``host:5000/org/name:tag`` → ``host:5000/org/name`` (cosign signs the repository)."""
    ref = reference.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def default_identity(entry: ImageEntry) -> str:
    if entry.name:
        return repository_of(entry.name)
    raise TrustError(
        "the OCI layout does not name its image (no io.containerd.image.name annotation)",
        hint="pass --identity REGISTRY/REPOSITORY",
    )


@dataclass(frozen=True)
class SignResult:
    manifest_digest: str
    identity: str
    signature_manifest: str  # digest of the sha256-<hex>.sig manifest
    tag: str
    key_id: str


def sign_layout(
    layout_dir: Path,
    key: ec.EllipticCurvePrivateKey,
    identity: str | None = None,
    tag: str | None = None,
) -> SignResult:
    """Sign the layout's image: a ``sha256-<hex>.sig`` manifest in the same layout.

    ``identity`` is the docker reference the signature names (cosign's convention: the
    repository the image is pulled from, without tag — podman's ``matchRepository``);
    default: the repository in the layout's ``io.containerd.image.name``.
    """
    verify_blobs(layout_dir)
    entry = image_entry(layout_dir, tag)
    read_blob(layout_dir, entry.digest, entry.size)
    ident = identity or default_identity(entry)
    payload = simple_signing_payload(ident, entry.digest)
    digest = attach_signature(layout_dir, entry.digest, payload, signer(key)(payload))
    return SignResult(
        manifest_digest=entry.digest,
        identity=ident,
        signature_manifest=digest,
        tag=entry.digest.replace(":", "-") + "." + SIG_SUFFIX,
        key_id=key_id(key.public_key()),
    )


# ---------------------------------------------------------------------------------------------
# verifying


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    identity: str | None
    reason: str  # "ok" or why not


@dataclass(frozen=True)
class AttestationCheck:
    ok: bool
    predicate_type: str | None
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    layout_dir: Path
    manifest_digest: str
    key_id: str
    blobs_checked: int
    signatures: tuple[SignatureCheck, ...]
    attestations: tuple[AttestationCheck, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "layout": str(self.layout_dir),
            "manifest_digest": self.manifest_digest,
            "key_id": self.key_id,
            "blobs_checked": self.blobs_checked,
            "signatures": [
                {"ok": s.ok, "identity": s.identity, "reason": s.reason} for s in self.signatures
            ],
            "attestations": [
                {"ok": a.ok, "predicate_type": a.predicate_type, "reason": a.reason}
                for a in self.attestations
            ],
            "problems": list(self.problems),
        }


def verify_blobs(layout_dir: Path) -> int:
    """Every blob's content must hash to its file name; returns how many were checked."""
    checked = blob_digests(layout_dir)
    changed = [
        f"{path.name[:12]}… now hashes to {digest[:19]}…"
        for path, digest in checked
        if digest != "sha256:" + path.name
    ]
    if changed:
        raise TrustError(
            f"{layout_dir}: {len(changed)} blob(s) were changed after they were written: "
            + "; ".join(changed[:5]),
            hint="a layer, config or manifest was modified; rebuild the image",
        )
    return len(checked)


def check_signature(
    key: ec.EllipticCurvePublicKey,
    manifest_digest: str,
    payload: bytes,
    annotations: Mapping[str, str],
    identity: str | None = None,
) -> SignatureCheck:
    """One simple-signing layer: the signature over the payload, then what the payload says."""
    encoded = annotations.get(SIGNATURE_ANNOTATION)
    if not encoded:
        return SignatureCheck(False, None, f"no {SIGNATURE_ANNOTATION} annotation")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError:
        return SignatureCheck(False, None, "the signature annotation is not base64")
    if not verify_bytes(key, payload, signature):
        return SignatureCheck(False, None, "signature does not verify under this key")
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        signed_type = critical["type"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        signed_identity = critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError) as exc:
        return SignatureCheck(False, None, f"signed payload is not simple signing JSON: {exc}")
    if signed_type != SIGNATURE_TYPE:
        return SignatureCheck(False, signed_identity, f"signed payload type is {signed_type!r}")
    if signed_digest != manifest_digest:
        return SignatureCheck(
            False, signed_identity, f"signature is for manifest {signed_digest}, not this one"
        )
    if identity is not None and signed_identity not in (identity, repository_of(identity)):
        return SignatureCheck(
            False, signed_identity, f"signature names {signed_identity!r}, expected {identity!r}"
        )
    return SignatureCheck(True, signed_identity, "ok")


def check_attestation(
    key: ec.EllipticCurvePublicKey, manifest_digest: str, envelope: bytes
) -> AttestationCheck:
    try:
        doc = json.loads(envelope)
        payload_type = doc["payloadType"]
        payload = base64.b64decode(doc["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in doc["signatures"]]
    except (ValueError, KeyError, TypeError) as exc:
        return AttestationCheck(False, None, f"not a DSSE envelope: {exc}")
    try:
        statement = json.loads(payload)
        predicate: str | None = statement.get("predicateType")
        subjects = statement.get("subject") or []
        subject_digests = {
            "sha256:" + str(s.get("digest", {}).get("sha256")) for s in subjects
        }
    except (ValueError, AttributeError, TypeError) as exc:
        return AttestationCheck(False, None, f"payload is not an in-toto statement: {exc}")
    message = pae(str(payload_type), payload)
    if not any(verify_bytes(key, message, sig) for sig in signatures):
        return AttestationCheck(
            False, predicate, f"none of its {len(signatures)} signature(s) verifies under this key"
        )
    if manifest_digest not in subject_digests:
        return AttestationCheck(
            False, predicate, f"its subject is not the manifest {manifest_digest}"
        )
    return AttestationCheck(True, predicate, "ok")


def verify_layout(
    layout_dir: Path,
    key: ec.EllipticCurvePublicKey,
    identity: str | None = None,
    tag: str | None = None,
) -> VerifyReport:
    """Check the blobs, the signatures and the attestations; raise :class:`TrustError` with
    every reason when the image is not signed by ``key`` (or anything was changed)."""
    layout_dir = layout_dir.absolute()
    blobs = verify_blobs(layout_dir)
    entry = image_entry(layout_dir, tag)
    manifest = json.loads(read_blob(layout_dir, entry.digest, entry.size))
    for desc in [manifest.get("config", {}), *manifest.get("layers", [])]:
        read_blob(layout_dir, str(desc.get("digest")), desc.get("size"))
    kid = key_id(key)
    problems: list[str] = []

    sig = attached_layers(layout_dir, entry.digest, SIG_SUFFIX)
    checks: list[SignatureCheck] = []
    if sig is None:
        others = _signed_digests(layout_dir)
        problems.append(
            f"no signature for the image manifest {entry.digest}"
            + (
                f" (the layout has signatures for {', '.join(others)}: was the image changed "
                "and re-indexed after signing?)"
                if others
                else ""
            )
        )
    else:
        checks = [
            check_signature(key, entry.digest, layer.data, layer.annotations, identity)
            for layer in sig[1]
            if layer.media_type == MEDIA_SIMPLESIGNING
        ]
        if not any(c.ok for c in checks):
            reasons = "; ".join(sorted({c.reason for c in checks})) or "no signature layers"
            problems.append(
                f"none of the {len(checks)} signature(s) of {entry.digest} verifies under "
                f"key {kid}: {reasons}"
            )

    att = attached_layers(layout_dir, entry.digest, ATT_SUFFIX)
    attestations: list[AttestationCheck] = []
    if att is not None:
        attestations = [
            check_attestation(key, entry.digest, layer.data)
            for layer in att[1]
            if layer.media_type == MEDIA_DSSE
        ]
        problems.extend(
            f"attestation {a.predicate_type or '?'}: {a.reason}"
            for a in attestations
            if not a.ok
        )
    report = VerifyReport(
        layout_dir=layout_dir,
        manifest_digest=entry.digest,
        key_id=kid,
        blobs_checked=blobs,
        signatures=tuple(checks),
        attestations=tuple(attestations),
        problems=tuple(problems),
    )
    if problems:
        raise VerifyError(report)
    return report


class VerifyError(TrustError):
    """The image does not verify; ``report`` says why."""

    def __init__(self, report: VerifyReport) -> None:
        lines = "\n  ".join(report.problems)
        super().__init__(
            f"{report.layout_dir} does not verify under key {report.key_id}:\n  {lines}"
        )
        self.report = report


def _signed_digests(layout_dir: Path) -> list[str]:
    out: list[str] = []
    for entry in read_index(layout_dir)["manifests"]:
        tag = entry_tag(entry) if isinstance(entry, dict) else None
        if is_attachment_tag(tag) and str(tag).endswith("." + SIG_SUFFIX):
            out.append(str(tag).removesuffix("." + SIG_SUFFIX).replace("-", ":", 1))
    return out
