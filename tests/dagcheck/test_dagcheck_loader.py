"""The in-image loader, run on the host against a stand-in airflow package, and the host's
parsing of its report (classification, lines, path mapping)."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from fake_airflow import make_fake_airflow

from hardflow.dagcheck import loader
from hardflow.dagcheck.model import DagCheckInputError, Severity
from hardflow.errors import EngineError

IMPORT_DAG = """\
try:
    from airflow.dag_processing.dagbag import DAG
except ImportError:
    from airflow.models.dagbag import DAG
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _run_loader(pythonpath: Path | None, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    with loader.loader_path() as script:
        return subprocess.run(
            [sys.executable, str(script), str(folder)],
            capture_output=True, text=True, env=env, check=False, timeout=60,
        )  # fmt: skip


@pytest.fixture
def dag_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    _write(folder, "good.py", IMPORT_DAG + 'print("noise from a DAG file")\ndag = DAG("ok", 2)\n')
    _write(folder, "boom.py", IMPORT_DAG + 'raise ValueError("boom")\n')
    _write(folder, "syntax.py", "x = (\n")
    _write(folder, "twin_a.py", IMPORT_DAG + 'dag = DAG("twin")\n')
    _write(folder, "twin_b.py", IMPORT_DAG + 'dag = DAG("twin")\n')
    _write(
        folder,
        "old.py",
        "import warnings\n" + IMPORT_DAG + 'warnings.warn("old thing", DeprecationWarning)\n'
        'dag = DAG("old")\n',
    )
    return folder


@pytest.mark.parametrize("layout", ["3", "2"])
def test_loader_reports_dags_errors_and_warnings(
    tmp_path: Path, dag_folder: Path, layout: str
) -> None:
    fake = make_fake_airflow(tmp_path / "fake", version="3.3.2" if layout == "3" else "2.11.2",
                             layout=layout)
    proc = _run_loader(fake, dag_folder)
    assert proc.returncode == 0, proc.stderr
    # stdout carries the report alone; what DAG files print goes to stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith(loader.MARKER)
    assert "noise from a DAG file" in proc.stderr
    doc = loader.extract_report(proc.stdout, "img")
    expected_module = (
        "airflow.dag_processing.dagbag" if layout == "3" else "airflow.models.dagbag"
    )
    assert doc["dagbag"] == expected_module
    result = loader.parse_load_report(doc, "img", container_dags=str(dag_folder))
    assert result.airflow_version == ("3.3.2" if layout == "3" else "2.11.2")
    assert [(d.dag_id, d.file, d.tasks) for d in result.dags] == [
        ("ok", "good.py", 2), ("old", "old.py", 1), ("twin", "twin_a.py", 1)
    ]
    by_file = {f.file: f for f in result.findings}
    boom = by_file["boom.py"]
    assert (boom.rule, boom.line, boom.message) == ("import-error", 5, "ValueError: boom")
    assert boom.severity is Severity.ERROR
    assert boom.detail is not None and "Traceback" in boom.detail
    assert str(dag_folder) not in boom.detail  # container paths are made relative
    syntax = by_file["syntax.py"]
    assert (syntax.rule, syntax.line) == ("syntax-error", 1)
    twin = by_file["twin_b.py"]
    assert twin.rule == "duplicate-dag-id"
    assert "twin_a.py" in twin.message and str(dag_folder) not in twin.message
    old = by_file["old.py"]
    assert (old.rule, old.severity, old.line) == ("airflow-warning", Severity.WARNING, 6)
    assert old.message == "DeprecationWarning: old thing"


def test_loader_without_airflow_is_fatal(tmp_path: Path, dag_folder: Path) -> None:
    proc = _run_loader(None, dag_folder)
    assert proc.returncode == 0
    doc = loader.extract_report(proc.stdout, "img")
    assert "cannot import airflow" in doc["fatal"]
    with pytest.raises(EngineError, match="img could not load DAGs"):
        loader.parse_load_report(doc, "img")


def test_unreadable_folder_is_bad_input(tmp_path: Path) -> None:
    fake = make_fake_airflow(tmp_path / "fake")
    doc = loader.extract_report(_run_loader(fake, tmp_path / "absent").stdout, "img")
    assert doc["fatal_kind"] == "folder"
    with pytest.raises(DagCheckInputError, match="cannot read the DAG folder") as info:
        loader.parse_load_report(doc, "img")
    assert "chmod" in info.value.diagnostics()


def test_loader_with_broken_airflow_is_fatal(tmp_path: Path, dag_folder: Path) -> None:
    fake = make_fake_airflow(tmp_path / "fake", broken=True)
    doc = loader.extract_report(_run_loader(fake, dag_folder).stdout, "img")
    assert "this airflow cannot be imported" in doc["fatal"]


def test_marker_matches_the_loader_program() -> None:
    assert f'MARKER = "{loader.MARKER}"' in loader.loader_source()
    assert f"SCHEMA = {loader.SCHEMA}" in loader.loader_source()


def test_extract_report_errors() -> None:
    with pytest.raises(EngineError, match="printed no report"):
        loader.extract_report("some log line\n", "img")
    with pytest.raises(EngineError, match="not JSON"):
        loader.extract_report(loader.MARKER + "{nope\n", "img")
    with pytest.raises(EngineError, match="schema"):
        loader.extract_report(loader.MARKER + '{"schema": 99}\n', "img")
    doc = loader.extract_report("log\n" + loader.MARKER + '{"schema": 1, "x": 2}\n', "img")
    assert doc["x"] == 2


def _traceback_of(source: str, filename: str) -> str:
    try:
        exec(compile(source, filename, "exec"), {})
    except Exception:
        return traceback.format_exc()
    raise AssertionError("the source did not raise")


def test_error_line_prefers_the_failing_file() -> None:
    helper = "/opt/airflow/dags/common/helpers.py"
    message = (
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/dags/main.py", line 7, in <module>\n    helpers.f()\n'
        f'  File "{helper}", line 3, in f\n    raise KeyError("k")\n'
        "KeyError: 'k'\n"
    )
    assert loader.error_line(message, "main.py") == 7
    assert loader.error_line(message, "elsewhere.py") == 3
    assert loader.error_line("AirflowDagCycleException: Cycle detected", "x.py") is None


def test_real_tracebacks_are_classified() -> None:
    missing = _traceback_of("x = 1\nimport no_such_module_hf\n", "/opt/airflow/dags/m.py")
    f = loader.import_error_finding("/opt/airflow/dags/m.py", missing)
    assert (f.rule, f.line, f.file) == ("import-error", 2, "m.py")
    assert f.suggestion is not None and "'no_such_module_hf' is not in the image" in f.suggestion
    indent = _traceback_of("if True:\nx = 1\n", "/opt/airflow/dags/i.py")
    assert loader.classify(indent) == "syntax-error"
    cycle = loader.import_error_finding(
        "/opt/airflow/dags/c.py",
        "AirflowDagCycleException: Cycle detected in Dag: cyclic. Faulty task: b",
    )
    assert cycle.rule == "cycle" and cycle.line is None
    assert cycle.suggestion is not None and "task b" in cycle.suggestion
    timeout = loader.classify(
        "Traceback (most recent call last):\n  File \"x\", line 1\n"
        "airflow.exceptions.AirflowTaskTimeout: DagBag import timeout for x.py after 30.0s."
    )
    assert timeout == "import-timeout"


def test_warnings_from_outside_the_folder_are_dropped() -> None:
    library = "/usr/lib/python3/dist-packages/lib.py:72: UserWarning: No system locale set."
    assert loader.warning_finding("/opt/airflow/dags/a.py", library) is None
    own = loader.warning_finding(
        "/opt/airflow/dags/a.py", "/opt/airflow/dags/a.py:3: airflow.X.RemovedWarning: old"
    )
    assert own is not None and (own.line, own.message) == (3, "RemovedWarning: old")
    helper = loader.warning_finding(
        "/opt/airflow/dags/a.py", "/opt/airflow/dags/lib/h.py:9: UserWarning: from a helper"
    )
    assert helper is not None and (helper.file, helper.line) == ("a.py", None)
    assert helper.message == "lib/h.py:9: UserWarning: from a helper"


def test_paths() -> None:
    assert loader.to_relative("/opt/airflow/dags/a/b.py") == "a/b.py"
    assert loader.to_relative("a/b.py") == "a/b.py"
    assert loader.to_relative("/usr/lib/x.py") == "/usr/lib/x.py"
    assert loader.relativize_text('File "/opt/airflow/dags/a.py"') == 'File "a.py"'
