"""The audit runs: read the input, run the checks, apply accepted findings, return a Report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hardflow.audit.ignore import IgnoreRule, apply_rules, hardflow_exceptions, load_ignore_file
from hardflow.audit.image_checks import NO_SIGNATURE, SignatureResult, image_facts, run_image_checks
from hardflow.audit.image_source import ImageData, Saver, read_images
from hardflow.audit.manifest_checks import load_manifests, manifest_facts, run_manifest_checks
from hardflow.audit.model import Finding, Item, Report
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
    platforms = ", ".join(p.platform for p in result.platforms)
    return SignatureResult(
        "verified",
        f"signature verified with key {result.key_id}"
        + (f" (the image index and each platform: {platforms})" if platforms else ""),
    )


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


def _named(platform: str, item: Item) -> Item:
    return replace(item, subject=f"{platform}: {item.subject}")


def merge_platforms(per_platform: Sequence[tuple[str, Sequence[Finding]]]) -> list[Finding]:
    """One finding per rule for a multi-platform image: the worst level of any platform, the
    items (and accepted items) of each, named by their platform ("linux/arm64: usr/bin/su")."""
    by_rule: dict[str, list[tuple[str, Finding]]] = {}
    for platform, findings in per_platform:
        for finding in findings:
            by_rule.setdefault(finding.id, []).append((platform, finding))
    merged = []
    for found in by_rule.values():
        notes = [(p, f.note) for p, f in found if f.note]
        if len({n for _, n in notes}) == 1 and len(notes) == len(found):
            note = notes[0][1]  # the same on every platform
        else:
            note = "; ".join(f"{p}: {n}" for p, n in notes)
        merged.append(
            Finding(
                check=found[0][1].check,
                level=max(f.level for _, f in found),
                items=tuple(_named(p, i) for p, f in found for i in f.items),
                note=note,
                accepted=tuple(
                    replace(a, item=_named(p, a.item)) for p, f in found for a in f.accepted
                ),
            )
        )
    return merged


def _facts(images: Sequence[ImageData]) -> list[tuple[str, str]]:
    if len(images) == 1 and not images[0].platform:
        return image_facts(images[0])
    facts = [("platforms", ", ".join(d.platform for d in images))]
    for data in images:
        for key, value in image_facts(data):
            if key in ("source", "format", "reference"):
                if data is images[0]:
                    facts.append((key, value))
            else:
                facts.append((f"{key} ({data.platform})", value))
    return facts


def audit_image(
    image: str,
    *,
    ignore_files: Sequence[Path] = (),
    hardflow_exceptions_mode: bool | None = None,
    key: Path | None = None,
    engine: str | None = None,
    saver: Saver | None = None,
    platform: str | None = None,
) -> Report:
    """Audit an image path (OCI layout, oci-archive, docker-archive) or a local reference.

    A multi-platform image (an index of several platforms) is audited on every platform, or
    on ``platform`` only (``linux/arm64``); its findings name the platform of each item.
    ``hardflow_exceptions_mode``: None applies the shipped exceptions to images built by
    hardflow (label ``dev.hardflow.builder``); True/False force them on or off.
    """
    user_rules = _load(ignore_files)  # a bad ignore file fails before the image is read
    images = read_images(image, platform=platform, engine=engine, saver=saver)
    signature = verify_signature(images[0], key)  # an index: every platform's signature
    per_platform: list[tuple[str, Sequence[Finding]]] = []
    sources: tuple[str, ...] = ()
    for data in images:
        builtin = (
            is_hardflow_image(data)
            if hardflow_exceptions_mode is None
            else hardflow_exceptions_mode
        )
        rules, sources = _rules(user_rules, ignore_files, builtin)
        per_platform.append((data.platform, apply_rules(run_image_checks(data, signature), rules)))
    if len(images) == 1 and not images[0].platform:
        findings = list(per_platform[0][1])
    else:
        findings = merge_platforms(per_platform)
    return Report(
        kind="image",
        target=image,
        findings=tuple(findings),
        facts=tuple(_facts(images)),
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
