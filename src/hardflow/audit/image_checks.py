"""Run the image rules (:mod:`hardflow.audit.image_rules`) on an image.

The check functions live by what they inspect: ``image_contents`` (file system, accounts,
runtime config), ``image_history`` (build steps), ``image_secrets`` and ``image_layers``
(reproducibility, unsafe members). This module is the image audit's entry for
:mod:`hardflow.audit.run` and keeps the names callers import from it.
"""

from __future__ import annotations

from collections.abc import Mapping

from hardflow.audit.image_contents import FORBIDDEN
from hardflow.audit.image_history import command_segments, history_command
from hardflow.audit.image_rules import IMAGE_RULES, NO_SIGNATURE, ImageAudit, SignatureResult
from hardflow.audit.image_secrets import secrets_in_text
from hardflow.audit.image_source import ImageData
from hardflow.audit.model import Check, Finding, checks_by_id, run_rules

CHECKS: dict[str, Check] = checks_by_id(IMAGE_RULES)


def run_image_checks(image: ImageData, signature: SignatureResult = NO_SIGNATURE) -> list[Finding]:
    """Every image rule, in table order."""
    return run_rules(IMAGE_RULES, ImageAudit(image, signature))


def image_facts(image: ImageData) -> list[tuple[str, str]]:
    runtime: Mapping[str, object] = image.runtime
    return [
        ("source", image.source),
        ("format", image.kind),
        ("reference", image.reference or "(none)"),
        ("user", str(runtime.get("User") or "(root)")),
        ("layers", str(len(image.layers))),
        ("files", str(len(image.files))),
    ]


__all__ = [
    "CHECKS",
    "FORBIDDEN",
    "NO_SIGNATURE",
    "SignatureResult",
    "command_segments",
    "history_command",
    "image_facts",
    "run_image_checks",
    "secrets_in_text",
]
