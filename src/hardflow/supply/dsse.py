"""DSSE envelopes (Dead Simple Signing Envelope, v1) for in-toto statements.

A signature covers the *pre-authentication encoding* (PAE) of the payload type and the payload,
never the JSON envelope itself::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the byte length in ASCII decimal. Signing is pluggable: pass any
``Callable[[bytes], bytes]`` that signs bytes (the signing module's ECDSA P-256 signer), or
``None`` for an unsigned envelope (build-time output, signed later).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hardflow.errors import TrustError

PAYLOAD_TYPE = "application/vnd.in-toto+json"

Signer = Callable[[bytes], bytes]
Verifier = Callable[[bytes, bytes], bool]  # (pae bytes, signature) → valid?


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...] = ()

    def to_json(self) -> bytes:
        """Compact JSON in the field order cosign writes (payloadType, payload, signatures)."""
        doc = {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def signed(self, signer: Signer, keyid: str = "") -> Envelope:
        """This envelope with one more signature over its PAE."""
        sig = Signature(keyid, signer(pae(self.payload_type, self.payload)))
        return Envelope(self.payload_type, self.payload, (*self.signatures, sig))


def envelope(
    statement: bytes,
    signer: Signer | None,
    keyid: str = "",
    payload_type: str = PAYLOAD_TYPE,
) -> bytes:
    """A DSSE envelope (JSON bytes) around ``statement``; unsigned when ``signer`` is None."""
    env = Envelope(payload_type, statement)
    if signer is not None:
        env = env.signed(signer, keyid)
    return env.to_json()


def _b64(value: object, what: str, origin: str) -> bytes:
    if not isinstance(value, str):
        raise TrustError(f"{origin}: DSSE {what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    if re.fullmatch(r"[A-Za-z0-9_\-]*={0,2}", value):  # the spec allows URL-safe base64 too
        try:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            pass
    raise TrustError(f"{origin}: DSSE {what} is not valid base64")


def parse_envelope(data: bytes, origin: str = "envelope") -> Envelope:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrustError(f"{origin}: not a DSSE envelope (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("payloadType"), str):
        raise TrustError(f"{origin}: not a DSSE envelope (no payloadType)")
    sigs = doc.get("signatures") or []
    if not isinstance(sigs, list) or not all(isinstance(s, dict) for s in sigs):
        raise TrustError(f"{origin}: DSSE signatures must be a list of objects")
    return Envelope(
        payload_type=doc["payloadType"],
        payload=_b64(doc.get("payload"), "payload", origin),
        signatures=tuple(
            Signature(str(s.get("keyid") or ""), _b64(s.get("sig"), "signature", origin))
            for s in sigs
        ),
    )


def verify_envelope(
    data: bytes,
    verifiers: Sequence[Verifier],
    payload_type: str = PAYLOAD_TYPE,
    origin: str = "envelope",
) -> bytes:
    """The payload, if at least one signature verifies with one of ``verifiers``."""
    env = parse_envelope(data, origin)
    if env.payload_type != payload_type:
        raise TrustError(
            f"{origin}: payloadType is {env.payload_type!r}, expected {payload_type!r}"
        )
    if not env.signatures:
        raise TrustError(f"{origin}: the envelope is not signed")
    message = pae(env.payload_type, env.payload)
    for sig in env.signatures:
        for verify in verifiers:
            if verify(message, sig.sig):
                return env.payload
    raise TrustError(
        f"{origin}: none of its {len(env.signatures)} signature(s) verifies with the given key(s)"
    )


def sign_envelope(data: bytes, signer: Signer, keyid: str = "", origin: str = "envelope") -> bytes:
    """Add a signature to an existing (e.g. unsigned build-time) envelope."""
    return parse_envelope(data, origin).signed(signer, keyid).to_json()
