"""Findings, levels and check definitions shared by the image and manifest audits.

A *check* is a rule with a stable ID (``4.1``, ``CIS-DI-0001``, ``PSS-R-RunAsNonRoot``…), the
level it fails with, a title and a remediation. Running a check gives one :class:`Finding`:
its level (the check's level when it fails, PASS when it holds, SKIP when it cannot be decided)
and the offending :class:`Item` s. An ignore file can *accept* items; a finding whose items are
all accepted no longer counts towards the exit status, and the report prints the reasons.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from hardflow.errors import HardflowError


class AuditError(HardflowError):
    """An audit input (image, manifest, ignore file) is not what it claims to be."""


class Level(enum.IntEnum):
    """Ordered so that ``level >= threshold`` means "at least this bad"."""

    PASS = 1
    SKIP = 2
    INFO = 3
    WARN = 4
    FATAL = 5

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(m.name.lower() for m in cls)
            raise AuditError(f"unknown level {text!r}: expected one of {names}") from None


@dataclass(frozen=True)
class Check:
    """A rule: stable ID, the level it fails with, what it asks and how to fix a failure."""

    id: str
    level: Level
    title: str
    remediation: str
    group: str  # report section, e.g. "CIS Docker Benchmark 4"
    references: tuple[str, ...] = ()  # other catalogues' IDs for the same idea


@dataclass(frozen=True)
class Item:
    """One offending thing: a path, an env name, a container; ``detail`` says why."""

    subject: str
    detail: str = ""
    location: str = ""  # the file it was found in (manifests); "" for the audited target

    def __str__(self) -> str:
        return f"{self.subject} ({self.detail})" if self.detail else self.subject


@dataclass(frozen=True)
class Accepted:
    """An item an ignore file accepted, with the reason it gave."""

    item: Item
    reason: str
    source: str  # the ignore file


@dataclass(frozen=True)
class Finding:
    check: Check
    level: Level  # PASS / SKIP, or the check's level when it failed
    items: tuple[Item, ...] = ()  # still failing
    note: str = ""  # why SKIP, or extra context
    accepted: tuple[Accepted, ...] = ()

    @property
    def id(self) -> str:
        return self.check.id

    @property
    def failed(self) -> bool:
        return self.level >= Level.INFO

    @property
    def is_accepted(self) -> bool:
        """Failed, but every offending item was accepted by an ignore file."""
        return self.failed and not self.items and bool(self.accepted)

    @property
    def effective_level(self) -> Level:
        """The level that counts for the exit status: accepted findings count as PASS."""
        return Level.PASS if self.is_accepted else self.level


def passed(check: Check, note: str = "") -> Finding:
    return Finding(check, Level.PASS, note=note)


def skipped(check: Check, why: str) -> Finding:
    return Finding(check, Level.SKIP, note=why)


def judge(check: Check, items: Iterable[Item], note: str = "") -> Finding:
    """PASS without items, else the check's level with the items (deduplicated, in order)."""
    unique = tuple(dict.fromkeys(items))
    if not unique:
        return Finding(check, Level.PASS, note=note)
    return Finding(check, check.level, unique, note=note)


@dataclass(frozen=True)
class Report:
    """The result of one audit run."""

    kind: str  # "image" or "manifests"
    target: str  # what was audited (path or reference)
    findings: tuple[Finding, ...]
    facts: tuple[tuple[str, str], ...] = ()  # ("reference", "…"), ("layers", "5")…
    exceptions_applied: tuple[str, ...] = ()  # ignore files used
    artifacts: tuple[str, ...] = field(default_factory=tuple)  # files read (manifests)

    def counts(self) -> dict[str, int]:
        out = {level.name: 0 for level in sorted(Level, reverse=True)}
        out["ACCEPTED"] = 0
        for finding in self.findings:
            if finding.is_accepted:
                out["ACCEPTED"] += 1
            else:
                out[finding.level.name] += 1
        return out

    def worst(self) -> Level:
        return max((f.effective_level for f in self.findings), default=Level.PASS)

    def fails(self, threshold: Level | None) -> bool:
        """Whether a finding at or above ``threshold`` remains (None: never fail)."""
        if threshold is None:
            return False
        return any(f.effective_level >= threshold for f in self.findings)

    def with_findings(self, findings: Sequence[Finding]) -> Report:
        return replace(self, findings=tuple(findings))
