"""ruff's AIR3 diagnostics → findings: the real ruff of this environment on generated DAG files,
and the pure helpers on diagnostics built by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hardflow.dagcheck import ruff
from hardflow.dagcheck.model import Edit, Severity
from hardflow.errors import HardflowError
from helpers.classic_dag import CLASSIC_DAG


@pytest.fixture(scope="module")
def ruff_bin() -> str:
    return ruff.find_ruff()


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "dags"
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def test_classic_dag_findings(tmp_path: Path, ruff_bin: str) -> None:
    folder = _folder(tmp_path, {"sub/example.py": CLASSIC_DAG})
    diagnostics = ruff.run_ruff(ruff_bin, folder)
    findings = ruff.diagnostics_to_findings(
        diagnostics, folder, "3.3.2", ruff.read_text_or_none
    )
    by_rule = {f.rule: f for f in findings}
    air301 = by_rule["AIR301"]
    assert (air301.file, air301.line, air301.column) == ("sub/example.py", 4, 52)
    assert air301.severity is Severity.ERROR
    assert "schedule_interval" in air301.message
    assert air301.change == "`schedule_interval` → `schedule`"
    assert air301.fix_applicability == "safe"
    assert air301.edits == (Edit(4, 52, 4, 69, "schedule", "schedule_interval"),)
    # the moved names: still loading on 3.x, so warnings
    assert by_rule["AIR311"].severity is Severity.WARNING
    assert by_rule["AIR311"].line == 4
    assert "from airflow.sdk import DAG" in (by_rule["AIR311"].change or "")
    assert by_rule["AIR312"].severity is Severity.WARNING
    assert by_rule["AIR312"].line == 5


def test_fix_applies_the_schedule_rename(tmp_path: Path, ruff_bin: str) -> None:
    folder = _folder(tmp_path, {"example.py": CLASSIC_DAG})
    remaining = ruff.run_ruff(ruff_bin, folder, fix=True)
    text = (folder / "example.py").read_text()
    assert "schedule='@daily'" in text and "schedule_interval" not in text
    assert "from airflow import DAG" in text  # unsafe fixes stay off
    assert "AIR301" not in {d.get("code") for d in remaining}
    ruff.run_ruff(ruff_bin, folder, fix=True, unsafe_fixes=True)
    assert "from airflow.sdk import DAG" in (folder / "example.py").read_text()


def test_clean_and_syntax_error_files(tmp_path: Path, ruff_bin: str) -> None:
    folder = _folder(tmp_path, {
        "new.py": "from airflow.sdk import DAG\nwith DAG('n', schedule=None):\n    pass\n",
        "broken.py": "x = (\n",
    })  # fmt: skip
    diagnostics = ruff.run_ruff(ruff_bin, folder)
    assert any(d.get("code") is None for d in diagnostics)  # ruff's own syntax error
    assert ruff.diagnostics_to_findings(diagnostics, folder, "3.3.2", lambda _p: None) == []


def _diag(code: str | None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "code": code,
        "filename": "/dags/a.py",
        "location": {"row": 2, "column": 5},
        "end_location": {"row": 2, "column": 8},
        "message": f"{code} says so",
        "fix": None,
        "url": None,
    }
    doc.update(extra)
    return doc


def test_min_airflow_version_and_severity() -> None:
    diags = [_diag("AIR321"), _diag("AIR302"), _diag("AIR303"), _diag("AIR304"), _diag("E501")]
    on_30 = ruff.diagnostics_to_findings(diags, Path("/dags"), "3.0.6", lambda _p: None)
    assert [f.rule for f in on_30] == ["AIR302", "AIR303", "AIR304"]
    assert [f.severity for f in on_30] == [Severity.ERROR, Severity.ERROR, Severity.WARNING]
    on_31 = ruff.diagnostics_to_findings(diags, Path("/dags"), "3.1.0", lambda _p: None)
    assert [f.rule for f in on_31] == ["AIR321", "AIR302", "AIR303", "AIR304"]
    assert on_31[0].file == "a.py"


def test_edits_without_source_and_insertions() -> None:
    fix = {
        "applicability": "unsafe",
        "message": "Move it.",
        "edits": [
            {"content": "", "location": {"row": 1, "column": 1},
             "end_location": {"row": 2, "column": 1}},
            {"content": "import b\n", "location": {"row": 3, "column": 1},
             "end_location": {"row": 3, "column": 1}},
        ],
    }  # fmt: skip
    source = "import a\nx = 1\ny = 2\n"
    [with_src] = ruff.diagnostics_to_findings(
        [_diag("AIR311", fix=fix)], Path("/dags"), "3.3.2", lambda _p: source
    )
    assert with_src.change == "remove `import a`; add `import b`"
    [without] = ruff.diagnostics_to_findings(
        [_diag("AIR311", fix=fix)], Path("/dags"), "3.3.2", lambda _p: None
    )
    assert without.change == "delete from 1:1; at 3:1: `import b`"
    assert without.suggestion == "Move it."


def test_offset_of() -> None:
    text = "ab\ncdé\n"
    assert text[ruff.offset_of(text, 2, 3) :] == "é\n"
    assert ruff.offset_of(text, 3, 1) == len(text)
    assert ruff.offset_of(text, 1, 99) == 3  # clamped to the line's end


def test_argv_and_output_parsing(tmp_path: Path) -> None:
    argv = ruff.ruff_argv("ruff", tmp_path, fix=True, unsafe_fixes=True)
    for flag in ("--isolated", "--preview", "--exit-zero", "--fix", "--unsafe-fixes"):
        assert flag in argv
    assert argv[argv.index("--select") + 1] == "AIR3"
    assert argv[-2:] == ["--", str(tmp_path)]
    assert "--fix" not in ruff.ruff_argv("ruff", tmp_path)
    assert ruff.parse_ruff_output(json.dumps([_diag("AIR301"), 3])) == [_diag("AIR301")]
    with pytest.raises(HardflowError, match="not a list"):
        ruff.parse_ruff_output("{}")
    with pytest.raises(HardflowError, match="could not be read"):
        ruff.parse_ruff_output("[")


def test_find_ruff_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ruff.RUFF_ENV, str(tmp_path / "no-ruff"))
    with pytest.raises(HardflowError, match="not an executable"):
        ruff.find_ruff()
