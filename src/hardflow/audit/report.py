"""Report formats: docker-bench-like text, JSON, and SARIF 2.1.0.

All three are pure functions of a :class:`Report`; the command decides where they go.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hardflow import __version__
from hardflow.audit.model import Finding, Level, Report

TOOL = "hardflow-audit"
FORMATS = ("text", "json", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {Level.FATAL: "error", Level.WARN: "warning", Level.INFO: "note"}
_TAG = {
    Level.PASS: "PASS",
    Level.SKIP: "SKIP",
    Level.INFO: "INFO",
    Level.WARN: "WARN",
    Level.FATAL: "FATAL",
}
ACCEPTED_TAG = "ACPT"


def printable(text: str) -> str:
    """``text`` with unprintable characters escaped (``\\n``, ``\\x1b``, ``\\udcff``).

    Item subjects come from the audited input (member names, env, labels, history): a name
    from a hostile image must not start a report line of its own or drive the terminal.
    """
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def tag(finding: Finding) -> str:
    return ACCEPTED_TAG if finding.is_accepted else _TAG[finding.level]


def _groups(report: Report) -> Iterator[tuple[str, list[Finding]]]:
    order: dict[str, list[Finding]] = {}
    for finding in report.findings:
        order.setdefault(finding.check.group, []).append(finding)
    yield from order.items()


def summary_line(report: Report) -> str:
    counts = report.counts()
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def render_text(report: Report, exit_level: Level | None = Level.WARN) -> str:
    lines = [f"hardflow audit {report.kind}: {printable(report.target)}"]
    for key, value in report.facts:
        lines.append(f"  {key}: {printable(value)}")
    for source in report.exceptions_applied:
        lines.append(f"  accepted findings from: {printable(source)}")
    for group, findings in _groups(report):
        lines.append("")
        lines.append(f"[INFO] {group}")
        for finding in findings:
            lines.append(f"[{tag(finding)}] {finding.id} - {finding.check.title}")
            pad = " " * (len(tag(finding)) + 3)
            for item in finding.items:
                where = f" [{printable(item.location)}]" if item.location else ""
                lines.append(f"{pad}* {printable(str(item))}{where}")
            by_reason: dict[str, list[str]] = {}
            for acc in finding.accepted:
                where = f" [{printable(acc.item.location)}]" if acc.item.location else ""
                by_reason.setdefault(acc.reason, []).append(f"{printable(str(acc.item))}{where}")
            for reason, accepted in by_reason.items():
                lines.extend(f"{pad}~ {text}" for text in accepted)
                lines.append(f"{pad}  accepted: {printable(reason)}")
            if finding.note and (finding.level != Level.PASS or finding.accepted):
                lines.append(f"{pad}  {printable(finding.note)}")
            if finding.items:
                lines.append(f"{pad}  fix: {finding.check.remediation}")
    lines.append("")
    lines.append("== Summary ==")
    lines.append(summary_line(report))
    threshold = exit_level.name if exit_level else "never"
    verdict = "FAILED" if report.fails(exit_level) else "passed"
    lines.append(f"exit level {threshold}: {verdict}")
    return "\n".join(lines) + "\n"


def _item_json(finding: Finding) -> list[dict[str, str]]:
    return [
        {"subject": i.subject, "detail": i.detail, "location": i.location} for i in finding.items
    ]


def to_json(report: Report, exit_level: Level | None = Level.WARN) -> dict[str, Any]:
    return {
        "tool": TOOL,
        "version": __version__,
        "kind": report.kind,
        "target": report.target,
        "facts": dict(report.facts),
        "exceptions": list(report.exceptions_applied),
        "exit_level": exit_level.name if exit_level else "NEVER",
        "failed": report.fails(exit_level),
        "summary": report.counts(),
        "findings": [
            {
                "id": f.id,
                "level": f.level.name,
                "accepted": f.is_accepted,
                "group": f.check.group,
                "title": f.check.title,
                "items": _item_json(f),
                "accepted_items": [
                    {
                        "subject": a.item.subject,
                        "detail": a.item.detail,
                        "location": a.item.location,
                        "reason": a.reason,
                        "source": a.source,
                    }
                    for a in f.accepted
                ],
                "note": f.note,
                "remediation": f.check.remediation,
                "references": list(f.check.references),
            }
            for f in report.findings
        ],
    }


def render_json(report: Report, exit_level: Level | None = Level.WARN) -> str:
    return json.dumps(to_json(report, exit_level), indent=2, sort_keys=False) + "\n"


def _location(report: Report, location: str, subject: str) -> dict[str, Any]:
    return {
        "physicalLocation": {"artifactLocation": {"uri": location or report.target}},
        "logicalLocations": [{"name": subject, "kind": "object"}],
    }


def to_sarif(report: Report) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    for finding in report.findings:
        check = finding.check
        if check.id not in index:
            index[check.id] = len(rules)
            rules.append(
                {
                    "id": check.id,
                    "name": check.title,
                    "shortDescription": {"text": check.title},
                    "fullDescription": {"text": f"{check.group}: {check.title}"},
                    "help": {"text": check.remediation},
                    "defaultConfiguration": {"level": _SARIF_LEVEL.get(check.level, "note")},
                    "properties": {"tags": [check.group, *check.references]},
                }
            )
        if not finding.failed:
            continue
        level = _SARIF_LEVEL[finding.level]
        for item in finding.items:
            results.append(
                {
                    "ruleId": check.id,
                    "ruleIndex": index[check.id],
                    "level": level,
                    "message": {"text": f"{check.title}: {item}"},
                    "locations": [_location(report, item.location, item.subject)],
                }
            )
        for acc in finding.accepted:
            results.append(
                {
                    "ruleId": check.id,
                    "ruleIndex": index[check.id],
                    "level": level,
                    "message": {"text": f"{check.title}: {acc.item}"},
                    "locations": [_location(report, acc.item.location, acc.item.subject)],
                    "suppressions": [
                        {"kind": "external", "status": "accepted", "justification": acc.reason}
                    ],
                }
            )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": TOOL, "version": __version__, "rules": rules}},
                "automationDetails": {"id": f"hardflow-audit/{report.kind}"},
                "results": results,
                "properties": {"target": report.target, "summary": report.counts()},
            }
        ],
    }


def render_sarif(report: Report) -> str:
    return json.dumps(to_sarif(report), indent=2) + "\n"


def render(report: Report, fmt: str, exit_level: Level | None = Level.WARN) -> str:
    if fmt == "json":
        return render_json(report, exit_level)
    if fmt == "sarif":
        return render_sarif(report)
    return render_text(report, exit_level)
