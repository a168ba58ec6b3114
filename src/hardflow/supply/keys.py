"""Keys in cosign's formats: generation, key files, passwords.

* the public key: PEM ``PUBLIC KEY`` (PKIX SubjectPublicKeyInfo);
* the private key: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` whose body is a JSON document
  ``{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":B64},
  "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}`` — scrypt derives a
  32-byte key from the password and a 32-byte salt, NaCl secretbox (XSalsa20-Poly1305) with a
  24-byte nonce seals the PKCS#8 DER private key. ``ENCRYPTED COSIGN PRIVATE KEY`` (cosign's
  older name) is read too; scrypt parameters other than the three sets cosign's library knows
  are refused (a tampered key must not make us burn memory).

Only ECDSA P-256 keys are made or accepted (what ``cosign generate-key-pair`` writes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hardflow.errors import TrustError
from hardflow.fsutil import atomic_write

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
