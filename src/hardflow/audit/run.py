"""The audit runs: read the input, run the checks, apply accepted findings, return a Report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hardflow.audit.ignore import IgnoreRule, apply_rules, hardflow_exceptions, load_ignore_file
from hardflow.audit.image_checks import NO_SIGNATURE, SignatureResult, image_facts, run_image_checks
from hardflow.audit.image_source import ImageData, Saver, read_image
from hardflow.audit.manifest_checks import load_manifests, manifest_facts, run_manifest_checks
from hardflow.audit.model import Report
from hardflow.errors import HardflowError

HARDFLOW_LABEL = "dev.hardflow.builder"


def is_hardflow_image(image: ImageData) -> bool:
    labels = image.runtime.get("Labels") or {}
    return isinstance(labels, dict) and HARDFLOW_LABEL in labels


def verify_signature(image: ImageData, key: Path | None) -> SignatureResult:
    """Verify the image's cosign-style signature with ``key`` (a public key file).

    Signatures travel as attachments in an OCI layout (see :mod:`hardflow.supply.sign`), so only a
    layout directory can be verified; other sources are reported as unchecked.
    """
    if key is None:
        return NO_SIGNATURE
    if image.kind != "oci-layout":
        return SignatureResult(
            "unchecked",
            f"signatures are attached to OCI layouts; {image.kind} input cannot carry one "
            "(audit the OCI layout directory to verify it)",
        )
    try:
        from hardflow.supply import sign
    except ImportError as exc:  # pragma: no cover - depends on optional crypto libraries
        return SignatureResult("unchecked", f"signature verification is unavailable: {exc}")
    try:
        public = sign.load_public_key(key)
        result = sign.verify_layout(Path(image.source), public)
    except HardflowError as exc:
        return SignatureResult("failed", exc.message)
    if not result.ok:
        return SignatureResult("failed", "; ".join(result.problems))
    return SignatureResult("verified", f"signature verified with key {result.key_id}")


def _rules(
    user_rules: Sequence[IgnoreRule], ignore_files: Sequence[Path], builtin: bool
) -> tuple[list[IgnoreRule], tuple[str, ...]]:
    """The shipped exceptions (when ``builtin``) followed by the user's rules."""
    rules: list[IgnoreRule] = []
    sources: list[str] = []
    if builtin:
        shipped = hardflow_exceptions()
        rules.extend(shipped)
        sources.append(shipped[0].source if shipped else "hardflow exceptions")
    rules.extend(user_rules)
    sources.extend(str(p) for p in ignore_files)
    return rules, tuple(sources)


def _load(ignore_files: Sequence[Path]) -> list[IgnoreRule]:
    return [rule for path in ignore_files for rule in load_ignore_file(path)]


def audit_image(
    image: str,
    *,
    ignore_files: Sequence[Path] = (),
    hardflow_exceptions_mode: bool | None = None,
    key: Path | None = None,
    engine: str | None = None,
    saver: Saver | None = None,
) -> Report:
    """Audit an image path (OCI layout, oci-archive, docker-archive) or a local reference.

    ``hardflow_exceptions_mode``: None applies the shipped exceptions to images built by
    hardflow (label ``dev.hardflow.builder``); True/False force them on or off.
    """
    user_rules = _load(ignore_files)  # a bad ignore file fails before the image is read
    data = read_image(image, engine=engine, saver=saver)
    builtin = (
        is_hardflow_image(data) if hardflow_exceptions_mode is None else hardflow_exceptions_mode
    )
    rules, sources = _rules(user_rules, ignore_files, builtin)
    findings = apply_rules(run_image_checks(data, verify_signature(data, key)), rules)
    return Report(
        kind="image",
        target=image,
        findings=tuple(findings),
        facts=tuple(image_facts(data)),
        exceptions_applied=sources,
    )


def audit_manifests(paths: Sequence[Path], *, ignore_files: Sequence[Path] = ()) -> Report:
    """Audit Compose files and Kubernetes YAML (files or directories of them)."""
    rules, sources = _rules(_load(ignore_files), ignore_files, False)
    manifests = load_manifests(paths)
    findings = apply_rules(run_manifest_checks(manifests), rules)
    return Report(
        kind="manifests",
        target=", ".join(str(p) for p in paths),
        findings=tuple(findings),
        facts=tuple(manifest_facts(manifests)),
        exceptions_applied=sources,
        artifacts=manifests.files,
    )
