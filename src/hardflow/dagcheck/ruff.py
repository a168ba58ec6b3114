"""ruff's Airflow 3 migration rules (``AIR3xx``) over a DAG folder, as findings.

ruff runs on the host (``ruff check --isolated --preview --select AIR3 --output-format json``):
``--isolated`` so a project's own ruff configuration cannot switch the rules off or change
them, ``--preview`` so the preview rules of the family (AIR304, AIR321 in ruff 0.17) run too.
Syntax errors (``code: null``) are left out: the in-image load reports them.

Severity: :data:`hardflow.dagcheck.model.ERROR_RULES` are errors, other AIR3 rules warnings.
Rules about a later 3.x release than the target (:data:`MIN_AIRFLOW`) are dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hardflow.dagcheck.model import (
    ERROR_RULES,
    DagCheckInputError,
    Edit,
    Finding,
    Severity,
    version_tuple,
)
from hardflow.errors import HardflowError

RUFF_ENV = "HARDFLOW_RUFF"
SELECT = "AIR3"
# Rules that only apply from a later Airflow release than 3.0.
MIN_AIRFLOW: dict[str, tuple[int, int]] = {"AIR321": (3, 1)}
_TIMEOUT = 300.0


def find_ruff() -> str:
    """The ruff executable: ``$HARDFLOW_RUFF``, else beside this Python, else on PATH."""
    explicit = os.environ.get(RUFF_ENV)
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise DagCheckInputError(f"{RUFF_ENV}={explicit} is not an executable")
        return found
    beside = shutil.which("ruff", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("ruff")
    if found is None:
        raise DagCheckInputError(
            "ruff is not installed: it provides the Airflow 3 migration rules (AIR3xx)",
            hint=f"pip install ruff (into hardflow's environment), or set {RUFF_ENV}",
        )
    return found


def ruff_argv(
    ruff: str, folder: Path, *, fix: bool = False, unsafe_fixes: bool = False
) -> list[str]:
    argv = [
        ruff, "check", "--isolated", "--no-cache", "--preview",
        "--select", SELECT, "--output-format", "json", "--exit-zero",
    ]  # fmt: skip
    if fix:
        argv.append("--fix")
        if unsafe_fixes:
            argv.append("--unsafe-fixes")
    return [*argv, "--", str(folder)]


def _run(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HardflowError(f"cannot run {argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise HardflowError(
            f"`{' '.join(argv[:2])} …` failed with exit status {proc.returncode}:\n{tail}"
        )
    return proc.stdout


def ruff_version(ruff: str) -> str:
    """"0.17.5" from ``ruff --version`` ("ruff 0.17.5")."""
    text = _run([ruff, "--version"]).strip()
    return text.split()[-1] if text else "unknown"


def run_ruff(
    ruff: str, folder: Path, *, fix: bool = False, unsafe_fixes: bool = False
) -> list[dict[str, Any]]:
    """ruff's JSON diagnostics for ``folder`` (after applying fixes when ``fix``)."""
    text = _run(ruff_argv(ruff, folder, fix=fix, unsafe_fixes=unsafe_fixes))
    return parse_ruff_output(text)


def parse_ruff_output(text: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise HardflowError(f"ruff's JSON output could not be read: {exc}") from exc
    if not isinstance(doc, list):
        raise HardflowError("ruff's JSON output is not a list of diagnostics")
    return [d for d in doc if isinstance(d, dict)]


# ---------------------------------------------------------------------------------------------
# pure: diagnostics → findings


def offset_of(text: str, line: int, column: int) -> int:
    """Character offset of a 1-based (line, column) in ``text``; past the end clamps."""
    lines = text.splitlines(keepends=True)
    if line > len(lines):
        return len(text)
    start = sum(len(ln) for ln in lines[: line - 1])
    return min(start + column - 1, start + len(lines[line - 1]))


def _location(doc: Any) -> tuple[int, int]:
    if not isinstance(doc, dict):
        return (0, 0)
    return int(doc.get("row") or 0), int(doc.get("column") or 0)


def _edit(raw: dict[str, Any], source: str | None) -> Edit:
    line, column = _location(raw.get("location"))
    end_line, end_column = _location(raw.get("end_location"))
    content = str(raw.get("content") or "")
    original = None
    if source is not None:
        original = source[offset_of(source, line, column) : offset_of(source, end_line, end_column)]
    return Edit(line, column, end_line, end_column, content, original)


def _one_line(code: str) -> str:
    return "; ".join(ln.strip() for ln in code.strip().splitlines() if ln.strip())


def describe_edits(edits: Sequence[Edit]) -> str | None:
    """A short rendering of a fix: "`old` → `new`", "remove `old`", "add `new`"."""
    parts: list[str] = []
    for e in edits:
        new = _one_line(e.content)
        if e.original is None:
            where = f"{e.line}:{e.column}"
            parts.append(f"at {where}: `{new}`" if new else f"delete from {where}")
            continue
        old = _one_line(e.original)
        if old and new:
            parts.append(f"`{old}` → `{new}`")
        elif old:
            parts.append(f"remove `{old}`")
        elif new:
            parts.append(f"add `{new}`")
    return "; ".join(parts) or None


def relative_file(filename: str, folder: Path) -> str:
    path = Path(filename)
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def severity_of(code: str) -> Severity:
    return Severity.ERROR if code in ERROR_RULES else Severity.WARNING


def applies_to(code: str, airflow_version: str) -> bool:
    needed = MIN_AIRFLOW.get(code)
    return needed is None or version_tuple(airflow_version) >= needed


def diagnostics_to_findings(
    diagnostics: Sequence[dict[str, Any]],
    folder: Path,
    airflow_version: str,
    read_source: Callable[[Path], str | None],
) -> list[Finding]:
    """Findings from ruff's JSON diagnostics; ``read_source`` gives a file's text (or None)
    so that fixes can show the text they replace."""
    findings: list[Finding] = []
    sources: dict[str, str | None] = {}
    for d in diagnostics:
        code = d.get("code")
        if not isinstance(code, str) or not code.startswith("AIR"):
            continue
        if not applies_to(code, airflow_version):
            continue
        filename = str(d.get("filename") or "")
        if filename not in sources:
            sources[filename] = read_source(Path(filename)) if filename else None
        line, column = _location(d.get("location"))
        fix = d.get("fix") if isinstance(d.get("fix"), dict) else None
        edits: tuple[Edit, ...] = ()
        suggestion = None
        applicability = None
        if fix is not None:
            raw_edits = [e for e in fix.get("edits") or [] if isinstance(e, dict)]
            edits = tuple(_edit(e, sources[filename]) for e in raw_edits)
            suggestion = str(fix.get("message") or "") or None
            applicability = str(fix.get("applicability") or "") or None
        findings.append(
            Finding(
                file=relative_file(filename, folder),
                line=line or None,
                column=column or None,
                rule=code,
                severity=severity_of(code),
                message=str(d.get("message") or ""),
                source="ruff",
                suggestion=suggestion,
                change=describe_edits(edits),
                fix_applicability=applicability,
                edits=edits,
                url=str(d.get("url") or "") or None,
            )
        )
    return findings


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
