"""Ignore files: findings a team has accepted, each with the reason the report prints.

TOML::

    [[ignore]]
    id = "4.3"                     # or a list: ["4.3", "CIS-DI-0003"]
    reason = "BashOperator runs bash -c"
    items = ["usr/bin/bash"]       # optional fnmatch patterns on the item subjects

YAML: the same entries under ``ignore:`` (or a top-level list). Without ``items`` a rule
accepts every item of the finding. Unknown keys and missing reasons are errors: an accepted
risk without a written reason is not accepted.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from hardflow.audit.model import Accepted, AuditError, Finding

HARDFLOW_EXCEPTIONS = "hardflow-exceptions.toml"
_KEYS = {"id", "reason", "items"}


@dataclass(frozen=True)
class IgnoreRule:
    ids: tuple[str, ...]
    reason: str
    items: tuple[str, ...]  # empty: every item
    source: str

    def matches(self, subject: str) -> bool:
        return not self.items or any(fnmatch.fnmatchcase(subject, p) for p in self.items)


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise AuditError(f"{where}: {what} must be a string or a list of strings, got {value!r}")


def parse_rules(data: Any, source: str) -> tuple[IgnoreRule, ...]:
    """Rules from the parsed document (TOML table or YAML mapping/list)."""
    if isinstance(data, dict):
        extra = set(data) - {"ignore"}
        if extra:
            raise AuditError(f"{source}: unknown top-level keys {sorted(extra)}; expected 'ignore'")
        entries = data.get("ignore", [])
    else:
        entries = data
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise AuditError(f"{source}: expected a list of ignore entries (id, reason, items)")
    rules = []
    for n, entry in enumerate(entries, 1):
        where = f"{source}: ignore entry {n}"
        if not isinstance(entry, dict):
            raise AuditError(f"{where} is not a table/mapping")
        unknown = set(entry) - _KEYS
        if unknown:
            raise AuditError(f"{where}: unknown keys {sorted(unknown)}; expected id, reason, items")
        if "id" not in entry:
            raise AuditError(f"{where}: missing 'id'")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise AuditError(f"{where}: missing 'reason' — every accepted finding needs one")
        items = _strings(entry.get("items", []), "items", where)
        rules.append(IgnoreRule(_strings(entry["id"], "id", where), reason.strip(), items, source))
    return tuple(rules)


def _parse_text(text: str, source: str, suffix: str) -> Any:
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AuditError(f"{source}: not valid TOML: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AuditError(f"{source}: not valid YAML: {exc}") from None


def load_ignore_file(path: Path) -> tuple[IgnoreRule, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read ignore file {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise AuditError(f"ignore file {path}: expected a .toml, .yaml or .yml file")
    return parse_rules(_parse_text(text, str(path), suffix), str(path))


def hardflow_exceptions() -> tuple[IgnoreRule, ...]:
    """The exceptions shipped for hardflow's own images (bash for BashOperator, …)."""
    text = resources.files("hardflow.audit").joinpath(HARDFLOW_EXCEPTIONS).read_text("utf-8")
    source = f"hardflow:{HARDFLOW_EXCEPTIONS}"
    return parse_rules(_parse_text(text, source, ".toml"), source)


def apply_rules(findings: Sequence[Finding], rules: Iterable[IgnoreRule]) -> list[Finding]:
    """Move the items the rules accept from ``items`` to ``accepted`` (first rule wins)."""
    rule_list = list(rules)
    out = []
    for finding in findings:
        applicable = [r for r in rule_list if finding.id in r.ids]
        if not applicable or not finding.failed:
            out.append(finding)
            continue
        remaining = []
        accepted = list(finding.accepted)
        for item in finding.items:
            rule = next((r for r in applicable if r.matches(item.subject)), None)
            if rule is None:
                remaining.append(item)
            else:
                accepted.append(Accepted(item, rule.reason, rule.source))
        out.append(replace(finding, items=tuple(remaining), accepted=tuple(accepted)))
    return out
