"""Values of ``hardflow check-dags``: findings, loaded DAGs and the whole report.

A :class:`Finding` comes from one of two sources:

- ``airflow``: Airflow's own DagBag, run inside the target image, could not load a file
  (rules ``import-error``, ``syntax-error``, ``import-timeout``, ``cycle``,
  ``duplicate-dag-id``; all errors) or warned while loading it (rule ``airflow-warning``).
- ``ruff``: ruff's Airflow 3 migration rules (``AIR3xx``), run on the host for Airflow 3
  targets. Severity: see :data:`ERROR_RULES`.

Paths in findings are relative to the checked DAG folder (POSIX separators), so a report
reads the same on every machine.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hardflow.errors import HardflowError


class DagCheckInputError(HardflowError):
    """The DAG folder or the image to check with is not usable (exit status 2)."""


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


# Rules of the in-image load.
RULE_IMPORT_ERROR = "import-error"
RULE_SYNTAX_ERROR = "syntax-error"
RULE_IMPORT_TIMEOUT = "import-timeout"
RULE_CYCLE = "cycle"
RULE_DUPLICATE_DAG_ID = "duplicate-dag-id"
RULE_AIRFLOW_WARNING = "airflow-warning"

# ruff rules that are errors: code that does not load, or fails at run time, on Airflow 3 —
# names removed in 3.0 (AIR301), names that moved to a provider package (AIR302: the old
# import path is gone), calls whose signature changed (AIR303). Every other AIR3 rule
# (AIR311/AIR312 "still works in 3.0 but deprecated", AIR304 dynamic DAG values, AIR321 moved
# in 3.1) is a warning: the DAG loads today but should change.
ERROR_RULES = frozenset({"AIR301", "AIR302", "AIR303"})


@dataclass(frozen=True)
class Edit:
    """One text replacement of a fix: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int
    content: str
    original: str | None = None  # the replaced text, when the host file could be read


@dataclass(frozen=True)
class Finding:
    file: str  # relative to the DAG folder; "" when not tied to one file
    line: int | None
    column: int | None
    rule: str
    severity: Severity
    message: str
    source: str  # "airflow" or "ruff"
    suggestion: str | None = None  # what to change, in words
    change: str | None = None  # the change itself, e.g. "`schedule_interval` → `schedule`"
    fix_applicability: str | None = None  # from ruff: safe, unsafe, display-only
    edits: tuple[Edit, ...] = ()
    detail: str | None = None  # full traceback for load errors
    url: str | None = None

    @property
    def sort_key(self) -> tuple[str, int, int, int, str]:
        rank = 0 if self.source == "airflow" else 1
        return (self.file, self.line or 0, rank, self.column or 0, self.rule)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity.value,
            "message": self.message,
            "source": self.source,
            "suggestion": self.suggestion,
            "change": self.change,
            "fix_applicability": self.fix_applicability,
            "edits": [
                {
                    "line": e.line,
                    "column": e.column,
                    "end_line": e.end_line,
                    "end_column": e.end_column,
                    "content": e.content,
                    "original": e.original,
                }
                for e in self.edits
            ],
            "detail": self.detail,
            "url": self.url,
        }


@dataclass(frozen=True)
class DagInfo:
    dag_id: str
    file: str  # relative to the DAG folder
    tasks: int


@dataclass(frozen=True)
class LoadResult:
    """What the in-image DagBag load found (paths already mapped to the host folder)."""

    airflow_version: str
    python_version: str | None
    dagbag: str | None  # the module DagBag came from
    dags: tuple[DagInfo, ...]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class CheckReport:
    folder: str  # the DAG folder as given (for display)
    image: str
    airflow_version: str
    dags: tuple[DagInfo, ...]
    findings: tuple[Finding, ...]
    airflow3_rules: bool  # whether ruff's AIR3 rules were run
    ruff_version: str | None = None
    fixed: int = 0  # findings fixed by --fix before this report
    notes: tuple[str, ...] = field(default=())

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted({f.file for f in self.findings}))

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "image": self.image,
            "airflow_version": self.airflow_version,
            "airflow3_rules": self.airflow3_rules,
            "ruff_version": self.ruff_version,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "fixed": self.fixed,
            "dags": [{"dag_id": d.dag_id, "file": d.file, "tasks": d.tasks} for d in self.dags],
            "findings": [f.to_json() for f in sort_findings(self.findings)],
            "notes": list(self.notes),
        }


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: f.sort_key)


def is_airflow3(version: str) -> bool:
    """Whether an Airflow version string names 3.x or later ("3.3.2", "3.1.0rc1")."""
    return version_tuple(version) >= (3, 0)


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a version string; (0, 0) when it has no leading number."""
    parts: list[int] = []
    for piece in version.strip().split(".")[:2]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]
