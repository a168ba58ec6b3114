"""Image references pinned by digest: what a cluster pulls is exactly what hardflow built.

A tag can be moved; a manifest digest cannot. Kubernetes manifests and Helm values therefore
name every image as ``NAME:TAG@sha256:…`` (the tag stays for the reader; the runtime pulls by
the digest). Where the digest comes from, in order:

1. a reference given already pinned (``--airflow-image NAME@sha256:…``) is used as is;
2. an image hardflow built itself: the ``manifest_digest`` of its build record
   (``out/NAME-TAG/build.json``, written by ``hardflow build``). That is the digest of the OCI
   manifest, which ``hardflow push`` copies with ``--preserve-digests``, so it is the digest the
   registry serves;
3. nothing else. The digest an engine reports for a loaded archive is of a manifest the engine
   wrote itself on load, which no registry holds, so it is never used. Such a reference stays a
   tag, and the render says so by name (:attr:`Pinning.unpinned`).

``podman kube play`` and compose resolve images in the local store by name: a loaded archive's
store entry does not carry the OCI manifest's digest, so those renders keep the tag
(:func:`unpinned`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hardflow.errors import HardflowError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_PINNED = re.compile(r"(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})")


def is_pinned(reference: str) -> bool:
    return _PINNED.fullmatch(reference) is not None


def split_pinned(reference: str) -> tuple[str, str]:
    """``(NAME[:TAG], DIGEST)``; the digest is "" when the reference is not pinned."""
    match = _PINNED.fullmatch(reference)
    if match is None:
        if "@" in reference:
            raise HardflowError(
                f"image reference {reference!r}: expected NAME[:TAG]@sha256:<64 hex digits> "
                "after '@'"
            )
        return reference, ""
    return match["name"], match["digest"]


def unpinned(reference: str) -> str:
    """The reference without its digest (for consumers that resolve local images by name)."""
    return split_pinned(reference)[0]


def pin(reference: str, digest: str) -> str:
    if not DIGEST.fullmatch(digest):
        raise HardflowError(f"digest {digest!r}: expected sha256:<64 hex digits>")
    name, current = split_pinned(reference)
    if current and current != digest:
        raise HardflowError(f"image {reference!r} is already pinned to another digest ({digest})")
    return f"{name}@{digest}"


def build_record_digest(record: Path, reference: str) -> str:
    """The manifest digest ``record`` (a build.json) holds for ``reference``; "" when the record
    is missing or describes another image. A record that cannot be read is an error: it would
    otherwise be skipped silently and the render would fall back to a tag."""
    if not record.is_file():
        return ""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HardflowError(
            f"build record {record}: cannot be read ({exc})",
            hint="rebuild the image with `hardflow build`, or pass the image as NAME@sha256:…",
        ) from None
    if not isinstance(data, dict):
        raise HardflowError(f"build record {record}: expected a JSON object")
    built, digest = data.get("reference"), data.get("manifest_digest")
    if not isinstance(built, str) or _bare(built) != _bare(reference):
        return ""
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise HardflowError(
            f"build record {record}: manifest_digest {digest!r} is not sha256:<64 hex digits>"
        )
    return digest


def _bare(reference: str) -> str:
    """``NAME:TAG`` without the engine's ``localhost/`` prefix (build.json has none)."""
    return reference.removeprefix("localhost/")


@dataclass(frozen=True)
class Pinning:
    """Each role's reference as rendered, and where its digest came from."""

    references: Mapping[str, str]
    sources: Mapping[str, str] = field(default_factory=dict)  # role → "given" | record path
    unpinned: tuple[str, ...] = ()  # roles left as tags

    def note(self) -> str:
        if not self.unpinned:
            return "every image pinned by digest"
        names = ", ".join(self.unpinned)
        return (
            f"not pinned by digest: {names} (no build record of that image; build it with "
            "`hardflow build`, or pass NAME@sha256:…)"
        )


def pin_images(references: Mapping[str, str], records: Mapping[str, Path]) -> Pinning:
    """Pin each role's reference from its build record (``records``, by role) when it is not
    pinned already."""
    out: dict[str, str] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    for role, reference in references.items():
        if is_pinned(reference):
            out[role], sources[role] = reference, "given"
            continue
        split_pinned(reference)  # a malformed '@' part is an error, not a tag
        record = records.get(role)
        digest = build_record_digest(record, reference) if record else ""
        if digest:
            out[role], sources[role] = pin(reference, digest), str(record)
        else:
            out[role] = reference
            missing.append(role)
    return Pinning(references=out, sources=sources, unpinned=tuple(missing))
