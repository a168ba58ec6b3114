"""The host side of the in-image DAG load: read the loader's report, turn it into findings.

The loader (``hardflow/image/dagcheck_loader.py``) runs Airflow's DagBag over the DAG folder
mounted at :data:`CONTAINER_DAGS` and prints one marked JSON line. Everything here is pure:
parsing that line, classifying DagBag's import errors (which are plain strings: a traceback,
or ``ExceptionName: message`` for DAGs that imported but could not be bagged) and mapping
container paths back to paths relative to the host's DAG folder.
"""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path
from typing import Any

from hardflow.contract import DAGS_DIR
from hardflow.dagcheck.model import (
    RULE_AIRFLOW_WARNING,
    RULE_CYCLE,
    RULE_DUPLICATE_DAG_ID,
    RULE_IMPORT_ERROR,
    RULE_IMPORT_TIMEOUT,
    RULE_SYNTAX_ERROR,
    DagCheckInputError,
    DagInfo,
    Finding,
    LoadResult,
    Severity,
)
from hardflow.errors import EngineError

CONTAINER_DAGS = DAGS_DIR  # the host's DAG folder is mounted where the image expects DAGs
CONTAINER_LOADER = "/tmp/hardflow-dagcheck/loader.py"
MARKER = "HARDFLOW-DAGCHECK-REPORT "
SCHEMA = 1
LOADER_RESOURCE = "image/dagcheck_loader.py"

_FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+)')
_WARNING = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<category>[\w.]+): (?P<message>.*)$", re.S)
_MISSING_MODULE = re.compile(r"No module named '(?P<module>[^']+)'")
_CYCLE_TASK = re.compile(r"Faulty task: (?P<task>\S+)")


def loader_source() -> str:
    """The loader program's source."""
    return resources.files("hardflow").joinpath(LOADER_RESOURCE).read_text(encoding="utf-8")


def loader_path() -> AbstractContextManager[Path]:
    """The loader program as a file on the host, for the read-only bind mount."""
    return resources.as_file(resources.files("hardflow").joinpath(LOADER_RESOURCE))


def extract_report(stdout: str, image: str) -> dict[str, Any]:
    """The loader's JSON document from the container's stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                doc = json.loads(line[len(MARKER) :])
            except json.JSONDecodeError as exc:
                raise EngineError(
                    f"the DAG loader's report from {image} is not JSON: {exc}"
                ) from exc
            if not isinstance(doc, dict):
                raise EngineError(f"the DAG loader's report from {image} is not a JSON object")
            if doc.get("schema") != SCHEMA:
                raise EngineError(
                    f"the DAG loader's report from {image} has schema {doc.get('schema')!r}, "
                    f"expected {SCHEMA}"
                )
            return doc
    tail = "\n".join(stdout.strip().splitlines()[-5:]) or "(no output)"
    raise EngineError(
        f"the DAG loader in {image} printed no report; its last output:\n{tail}",
        hint="the image needs Airflow and a `python` on PATH (choose another with --python)",
    )


def to_relative(path: str, container_dags: str = CONTAINER_DAGS) -> str:
    """A container path (or a path relative to the DAG folder) as a folder-relative path.

    Paths outside the DAG folder (a module on ``sys.path``, say) are returned unchanged.
    """
    prefix = container_dags.rstrip("/") + "/"
    if path.startswith(prefix):
        return path[len(prefix) :]
    if path.startswith("/"):
        return path
    return path.removeprefix("./")


def relativize_text(text: str, container_dags: str = CONTAINER_DAGS) -> str:
    """``text`` with the container's DAG folder prefix removed from every path in it."""
    return text.replace(container_dags.rstrip("/") + "/", "")


def _summary_line(message: str) -> str:
    """The exception line of a traceback (its last non-indented line), or the message."""
    lines = [ln for ln in message.strip().splitlines() if ln.strip()]
    if not lines:
        return "(no message)"
    if not lines[0].startswith("Traceback"):
        return lines[0].strip()
    for ln in reversed(lines):
        if not ln.startswith((" ", "\t")):
            return ln.strip()
    return lines[-1].strip()


def error_line(message: str, file: str, container_dags: str = CONTAINER_DAGS) -> int | None:
    """The line in ``file`` (folder-relative) the traceback points at: the innermost frame in
    that file, else the innermost frame anywhere in the DAG folder, else None."""
    in_file: int | None = None
    in_folder: int | None = None
    for m in _FRAME.finditer(message):
        rel = to_relative(m.group("path"), container_dags)
        if rel == file:
            in_file = int(m.group("line"))
        if not rel.startswith("/") and not rel.startswith("<"):
            in_folder = int(m.group("line"))
    return in_file if in_file is not None else in_folder


def classify(message: str) -> str:
    """The rule of a DagBag import error."""
    summary = _summary_line(message)
    if "AirflowDagCycleException" in message or "Cycle detected in" in summary:
        return RULE_CYCLE
    if "AirflowDagDuplicatedIdException" in message or (
        "Ignoring DAG" in summary and "also found in" in summary
    ):
        return RULE_DUPLICATE_DAG_ID
    if summary.startswith(("SyntaxError", "IndentationError", "TabError")):
        return RULE_SYNTAX_ERROR
    if "AirflowTaskTimeout" in summary or "DagBag import timeout" in message:
        return RULE_IMPORT_TIMEOUT
    return RULE_IMPORT_ERROR


def suggestion_for(rule: str, summary: str) -> str | None:
    if rule == RULE_CYCLE:
        m = _CYCLE_TASK.search(summary)
        task = f" (the loop passes through task {m.group('task')})" if m else ""
        return f"remove the dependency that closes the loop{task}"
    if rule == RULE_DUPLICATE_DAG_ID:
        return "give one of the DAGs another dag_id: Airflow keeps only the first it finds"
    if rule == RULE_IMPORT_TIMEOUT:
        return "move slow work (network, heavy imports) out of the top level of the DAG file"
    m = _MISSING_MODULE.search(summary)
    if m and summary.startswith("ModuleNotFoundError"):
        return (
            f"module {m.group('module')!r} is not in the image: fix the import, or add the "
            "distribution that provides it to the image spec"
        )
    return None


def import_error_finding(
    path: str, message: str, container_dags: str = CONTAINER_DAGS
) -> Finding:
    file = to_relative(path, container_dags)
    rule = classify(message)
    summary = relativize_text(_summary_line(message), container_dags)
    detail = relativize_text(message.strip(), container_dags)
    return Finding(
        file=file,
        line=error_line(message, file, container_dags),
        column=None,
        rule=rule,
        severity=Severity.ERROR,
        message=summary,
        source="airflow",
        suggestion=suggestion_for(rule, summary),
        detail=detail if detail != summary else None,
    )


def warning_finding(
    path: str, text: str, container_dags: str = CONTAINER_DAGS
) -> Finding | None:
    """A warning DagBag captured while importing ``path`` ("FILE:LINE: Category: message").

    None for a warning raised from code outside the DAG folder (a library in the image
    complaining about its environment, say): nothing the DAG's author can change.
    """
    file = to_relative(path, container_dags)
    line: int | None = None
    message = text.strip()
    m = _WARNING.match(message)
    if m:
        origin = to_relative(m.group("path"), container_dags)
        if origin.startswith("/"):
            return None
        line = int(m.group("line")) if origin == file else None
        category = m.group("category").rsplit(".", 1)[-1]
        message = f"{category}: {m.group('message').strip()}"
        if origin != file:
            message = f"{origin}:{m.group('line')}: {message}"
    return Finding(
        file=file,
        line=line,
        column=None,
        rule=RULE_AIRFLOW_WARNING,
        severity=Severity.WARNING,
        message=relativize_text(message, container_dags),
        source="airflow",
    )


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def parse_load_report(
    doc: dict[str, Any], image: str, container_dags: str = CONTAINER_DAGS
) -> LoadResult:
    """A :class:`LoadResult` from the loader's JSON document.

    A ``fatal`` report (Airflow not importable, DagBag crashed) is an EngineError: nothing
    about the DAGs can be said; an unreadable DAG folder is a DagCheckInputError.
    """
    fatal = doc.get("fatal")
    if fatal and doc.get("fatal_kind") == "folder":
        raise DagCheckInputError(
            f"{image}: {str(fatal).strip()}",
            hint="the DAG folder is mounted read-only for a non-root user: make it readable "
            "by others (chmod -R a+rX DIR)",
        )
    if fatal:
        raise EngineError(
            f"{image} could not load DAGs: {str(fatal).strip()}",
            hint="check-dags needs an image with Apache Airflow installed",
        )
    version = _str(doc, "airflow_version")
    if not version:
        raise EngineError(f"the DAG loader's report from {image} names no Airflow version")
    dags = tuple(
        DagInfo(
            dag_id=_str(d, "dag_id"),
            file=to_relative(_str(d, "file"), container_dags),
            tasks=int(d.get("tasks") or 0),
        )
        for d in doc.get("dags") or []
        if isinstance(d, dict)
    )
    findings: list[Finding] = []
    for e in doc.get("import_errors") or []:
        if isinstance(e, dict):
            findings.append(
                import_error_finding(_str(e, "file"), _str(e, "message"), container_dags)
            )
    for w in doc.get("warnings") or []:
        if isinstance(w, dict):
            warning = warning_finding(_str(w, "file"), _str(w, "message"), container_dags)
            if warning is not None:
                findings.append(warning)
    return LoadResult(
        airflow_version=version,
        python_version=_str(doc, "python_version") or None,
        dagbag=_str(doc, "dagbag") or None,
        dags=tuple(sorted(dags, key=lambda d: (d.dag_id, d.file))),
        findings=tuple(findings),
    )
