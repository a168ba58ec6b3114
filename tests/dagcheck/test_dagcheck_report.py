"""Text rendering and JSON of a check-dags report."""

from __future__ import annotations

from typing import Any

from hardflow.dagcheck.model import (
    CheckReport,
    DagInfo,
    Finding,
    Severity,
    is_airflow3,
    version_tuple,
)
from hardflow.dagcheck.report import render_text, summary


def _finding(file: str, line: int | None, rule: str, severity: Severity, **kw: Any) -> Finding:
    return Finding(
        file=file, line=line, column=None, rule=rule, severity=severity,
        message=f"{rule} message", source="ruff" if rule.startswith("AIR") else "airflow",
        **kw,
    )  # fmt: skip


def _report(*findings: Finding) -> CheckReport:
    return CheckReport(
        folder="dags",
        image="img:1",
        airflow_version="3.3.2",
        dags=(DagInfo("ok", "b.py", 3),),
        findings=findings,
        airflow3_rules=True,
        ruff_version="0.17.5",
    )


def test_grouped_by_file_sorted_by_line() -> None:
    report = _report(
        _finding("b.py", 9, "AIR311", Severity.WARNING, suggestion="Use this.",
                 change="`a` → `b`"),
        _finding("a.py", 4, "AIR301", Severity.ERROR),
        _finding("a.py", 4, "import-error", Severity.ERROR, detail="Traceback\n  boom"),
        _finding("a.py", 1, "airflow-warning", Severity.WARNING),
    )  # fmt: skip
    lines = [ln.text for ln in render_text(report)]
    assert lines[0] == "dags: Airflow 3.3.2 (img:1), DagBag load + ruff 0.17.5 AIR3 rules"
    a, b = lines.index("a.py"), lines.index("b.py")
    assert a < b
    rules = [ln.split()[2] for ln in lines[a + 1 : b]]
    assert rules == ["airflow-warning", "import-error", "AIR301"]
    assert lines[b + 2].strip() == "→ Use this: `a` → `b`"
    assert lines[-1] == "FAILED: 2 errors, 2 warnings in 2 files; 1 DAG (3 tasks) loaded"
    assert "boom" not in "\n".join(lines)
    assert any("boom" in ln.text for ln in render_text(report, verbose=True))


def test_ok_summary_and_json() -> None:
    report = _report(_finding("a.py", 2, "AIR312", Severity.WARNING))
    assert report.ok
    assert summary(report) == "OK: 0 errors, 1 warning in 1 file; 1 DAG (3 tasks) loaded"
    doc = report.to_json()
    assert doc["ok"] is True and doc["warnings"] == 1 and doc["errors"] == 0
    assert doc["findings"][0]["severity"] == "warning"
    assert doc["dags"] == [{"dag_id": "ok", "file": "b.py", "tasks": 3}]


def test_versions() -> None:
    assert version_tuple("3.1.0rc1") == (3, 1)
    assert version_tuple("2.11.2") == (2, 11)
    assert version_tuple("unknown") == (0, 0)
    assert is_airflow3("3.0.0") and is_airflow3("3.3.2") and not is_airflow3("2.11.2")
