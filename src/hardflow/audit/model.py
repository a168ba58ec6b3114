"""Rules, findings and levels shared by the image and manifest audits.

A :class:`Rule` is one row of an audit kind's table (``image_rules``, ``manifest_rules``): a
stable ID (``4.1``, ``CIS-DI-0001``, ``PSS-R-RunAsNonRoot``…), the level it fails with, a
title, a remediation, the IDs other catalogues give the same idea, and the check function that
looks at the audited subject. The report-facing part of a rule is its :class:`Check`.
Running a rule gives one :class:`Finding`: its level (the rule's level when it fails, PASS
when it holds, SKIP when it cannot be decided) and the offending :class:`Item` s. An ignore
file can *accept* items; a finding whose items are all accepted no longer counts towards the
exit status, and the report prints the reasons.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeAlias, TypeVar

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
class Outcome:
    """What a check function found, when a bare list of items does not say it all."""

    items: tuple[Item, ...] = ()
    note: str = ""  # context printed with the finding
    skip: str = ""  # non-empty: the rule cannot be decided for this subject, and why


# a check function returns the offending items (none: the rule holds) or an Outcome
Verdict: TypeAlias = Outcome | Sequence[Item]
Subject = TypeVar("Subject")


@dataclass(frozen=True)
class Rule(Generic[Subject]):
    """One row of an audit table: what the rule is called and the function that decides it."""

    id: str
    level: Level  # the level a failure gets
    group: str  # report section, e.g. "CIS Docker Benchmark 4"
    title: str
    remediation: str
    evaluate: Callable[[Subject], Verdict]
    references: tuple[str, ...] = ()  # other catalogues' IDs for the same idea
    # why the rule cannot be decided for a subject ("" when it can): SKIP without evaluating
    precondition: Callable[[Subject], str] | None = None

    @property
    def check(self) -> Check:
        return Check(self.id, self.level, self.title, self.remediation, self.group, self.references)


def always_skip(why: str) -> Callable[[object], Outcome]:
    """A check function for a rule this tool cannot decide (it needs a scanner, a database…)."""

    def evaluate(_subject: object) -> Outcome:
        return Outcome(skip=why)

    return evaluate


def decide(check: Check, verdict: Verdict) -> Finding:
    """The finding a check function's verdict gives."""
    if not isinstance(verdict, Outcome):
        return judge(check, verdict)
    if verdict.skip:
        return skipped(check, verdict.skip)
    return judge(check, verdict.items, verdict.note)


def run_rules(rules: Sequence[Rule[Subject]], subject: Subject) -> list[Finding]:
    """Every rule on ``subject``, in table order.

    Several catalogues ask the same question under different IDs, so their rows share one check
    function: it runs once per subject and every row gets its own finding from the result.
    """
    verdicts: dict[Callable[[Subject], Verdict], Outcome] = {}
    findings = []
    for rule in rules:
        why = rule.precondition(subject) if rule.precondition is not None else ""
        if why:
            findings.append(skipped(rule.check, why))
            continue
        if rule.evaluate not in verdicts:
            verdict = rule.evaluate(subject)
            # kept as an Outcome so that every row sharing the function sees the same items
            verdicts[rule.evaluate] = (
                verdict if isinstance(verdict, Outcome) else Outcome(tuple(verdict))
            )
        findings.append(decide(rule.check, verdicts[rule.evaluate]))
    return findings


def checks_by_id(rules: Iterable[Rule[Subject]]) -> dict[str, Check]:
    """The report-facing checks of a table, by ID, in table order; IDs must be unique."""
    out: dict[str, Check] = {}
    for rule in rules:
        if rule.id in out:
            raise ValueError(f"audit rule {rule.id!r} is listed twice in its table")
        out[rule.id] = rule.check
    return out


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
