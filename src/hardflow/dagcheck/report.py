"""Text rendering of a :class:`CheckReport`: grouped by file, then a summary line (pure).

Each line comes with a style name (``error``, ``warning``, ``fix``, ``file``, ``ok``,
``fail``, ``dim`` or None) that the command maps to colours; the text itself is plain.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from hardflow.dagcheck.model import CheckReport, Finding, Severity, sort_findings


@dataclass(frozen=True)
class Line:
    text: str
    style: str | None = None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _where(f: Finding) -> str:
    if f.line is None:
        return "-"
    return f"{f.line}:{f.column}" if f.column else str(f.line)


def header(report: CheckReport) -> str:
    rules = (
        f"ruff {report.ruff_version} AIR3 rules" if report.airflow3_rules else "no AIR3 rules"
    )
    if report.airflow3_rules and report.ruff_version is None:
        rules = "AIR3 rules"
    return (
        f"{report.folder}: Airflow {report.airflow_version} ({report.image}), "
        f"DagBag load + {rules}"
    )


def summary(report: CheckReport) -> str:
    verdict = "OK" if report.ok else "FAILED"
    parts = [
        _plural(len(report.errors), "error"),
        _plural(len(report.warnings), "warning"),
    ]
    files = report.files
    where = f" in {_plural(len(files), 'file')}" if files else ""
    fixed = f", {report.fixed} fixed" if report.fixed else ""
    tasks = sum(d.tasks for d in report.dags)
    return (
        f"{verdict}: {', '.join(parts)}{where}{fixed}; "
        f"{_plural(len(report.dags), 'DAG')} ({_plural(tasks, 'task')}) loaded"
    )


def finding_lines(f: Finding, width: int) -> list[Line]:
    tag = "ERROR" if f.severity is Severity.ERROR else "warn"
    style = "error" if f.severity is Severity.ERROR else "warning"
    lines = [Line(f"  {tag:<5}  {_where(f):>7}  {f.rule:<{width}}  {f.message}", style)]
    indent = " " * (2 + 5 + 2 + 7 + 2 + width + 2)
    if f.suggestion or f.change:
        words = (f.suggestion or "").rstrip(". ")
        if f.change and f.change not in words:
            words = f"{words}: {f.change}" if words else f.change
        kind = f" ({f.fix_applicability} fix)" if f.fix_applicability else ""
        lines.append(Line(f"{indent}→ {words}{kind}", "fix"))
    return lines


def render_text(report: CheckReport, *, verbose: bool = False) -> list[Line]:
    lines = [Line(header(report), "dim")]
    findings = sort_findings(report.findings)
    width = max((len(f.rule) for f in findings), default=6)
    for file, group in groupby(findings, key=lambda f: f.file):
        lines.append(Line(file or "(DAG folder)", "file"))
        for f in group:
            lines.extend(finding_lines(f, width))
            if verbose and f.detail:
                lines.extend(Line(f"      {ln}", "dim") for ln in f.detail.splitlines())
    if report.dags:
        listed = ", ".join(
            f"{d.dag_id} ({d.file}, {_plural(d.tasks, 'task')})" for d in report.dags
        )
        lines.append(Line(f"DAGs: {listed}", "dim"))
    lines.extend(Line(note, "dim") for note in report.notes)
    lines.append(Line(summary(report), "ok" if report.ok else "fail"))
    return lines
