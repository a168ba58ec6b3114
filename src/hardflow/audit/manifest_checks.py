"""Run the manifest rules (:mod:`hardflow.audit.manifest_rules`) on Compose files and
Kubernetes YAML.

Loading lives in ``manifest_loader``, the check functions in ``manifest_cis`` and
``manifest_pss``. This module is the manifest audit's entry for :mod:`hardflow.audit.run` and
keeps the names callers import from it.
"""

from __future__ import annotations

from hardflow.audit.manifest_loader import (
    Manifests,
    Published,
    Service,
    compose_ports,
    expand_paths,
    load_manifests,
)
from hardflow.audit.manifest_rules import MANIFEST_RULES
from hardflow.audit.model import Check, Finding, checks_by_id, run_rules

CHECKS: dict[str, Check] = checks_by_id(MANIFEST_RULES)


def run_manifest_checks(m: Manifests) -> list[Finding]:
    """Every manifest rule, in table order."""
    return run_rules(MANIFEST_RULES, m)


def manifest_facts(m: Manifests) -> list[tuple[str, str]]:
    return [
        ("files", ", ".join(m.files)),
        ("kubernetes workloads", ", ".join(p.label for p in m.pods) or "(none)"),
        ("compose services", ", ".join(s.name for s in m.services) or "(none)"),
        ("other objects", str(len(m.other))),
    ]


__all__ = [
    "CHECKS",
    "Manifests",
    "Published",
    "Service",
    "compose_ports",
    "expand_paths",
    "load_manifests",
    "manifest_facts",
    "run_manifest_checks",
]
