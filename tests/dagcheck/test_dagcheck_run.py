"""check-dags' shell: the hardened loader run, preflight, the whole flow and the command, with
the engine replaced by a runner that executes the loader on the host against a stand-in
airflow package (paths rewritten as the bind mount would show them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_airflow import make_fake_airflow

from hardflow.cli.checkdags import check_dags_cmd
from hardflow.dagcheck import run
from hardflow.dagcheck.loader import CONTAINER_DAGS, CONTAINER_LOADER
from hardflow.dagcheck.model import DagCheckInputError, Severity
from hardflow.run import engine as eng
from hardflow.run.engine import Engine, RunOptions
from helpers.classic_dag import CLASSIC_DAG

ENGINE = Engine("podman", "/usr/bin/podman")


class FakeEngine:
    """Stands in for ``engine.image_exists`` and ``engine.run_container``."""

    def __init__(self, fake_airflow: Path, images: tuple[str, ...]) -> None:
        self.fake_airflow = fake_airflow
        self.images = images
        self.runs: list[RunOptions] = []

    def image_exists(self, _engine: Engine, ref: str) -> bool:
        return ref in self.images

    def run_container(self, _engine: Engine, opts: RunOptions) -> str:
        self.runs.append(opts)
        bind, script = opts.binds
        assert bind.target == CONTAINER_DAGS and bind.read_only
        assert script.target == CONTAINER_LOADER and script.read_only
        assert opts.command == (CONTAINER_LOADER, CONTAINER_DAGS)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(self.fake_airflow)
        proc = subprocess.run(
            [sys.executable, str(script.source), str(bind.source)],
            capture_output=True, text=True, env=env, check=True, timeout=60,
        )  # fmt: skip
        return proc.stdout.replace(str(bind.source), CONTAINER_DAGS)


def _install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, layout: str = "3"
) -> FakeEngine:
    version = "3.3.2" if layout == "3" else "2.11.2"
    fake = FakeEngine(
        make_fake_airflow(tmp_path / "fake", version=version, layout=layout), ("img:1",)
    )
    monkeypatch.setattr(eng, "image_exists", fake.image_exists)
    monkeypatch.setattr(eng, "run_container", fake.run_container)
    monkeypatch.setattr(eng, "detect_engine", lambda _name=None: ENGINE)
    return fake


def _classic(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "example.py").write_text(CLASSIC_DAG)
    return folder


def test_loader_runs_hardened(tmp_path: Path) -> None:
    req = run.CheckRequest(folder=tmp_path, image="img:1")
    loader = tmp_path / "loader.py"
    opts = run.loader_run_options(req, tmp_path, "hf-dc-test", loader)
    argv = eng.run_argv(ENGINE, opts)
    joined = " ".join(argv)
    for flag in ("--read-only", "--cap-drop=ALL", "--network=none", "--rm", "--pull never"):
        assert flag in joined
    assert "--detach" not in argv
    assert argv[argv.index("--security-opt") + 1] == "no-new-privileges"
    assert argv[argv.index("--user") + 1] == "50000:0"
    assert argv[argv.index("--entrypoint") + 1] == "python"
    tmpfs = [argv[i + 1].split(":")[0] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert tmpfs == ["/tmp", "/opt/airflow"]
    assert f"type=bind,source={tmp_path},target={CONTAINER_DAGS},readonly=true" in argv
    assert f"type=bind,source={loader},target={CONTAINER_LOADER},readonly=true" in argv
    assert argv[-3:] == ["img:1", CONTAINER_LOADER, CONTAINER_DAGS]
    assert opts.env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert opts.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:////tmp/")


def test_preflight(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _install(monkeypatch, tmp_path)
    with pytest.raises(DagCheckInputError, match="does not exist"):
        run.preflight(ENGINE, run.CheckRequest(tmp_path / "nope", "img:1"))
    (tmp_path / "f.py").write_text("")
    with pytest.raises(DagCheckInputError, match="not a directory"):
        run.preflight(ENGINE, run.CheckRequest(tmp_path / "f.py", "img:1"))
    with pytest.raises(DagCheckInputError, match="other:2 is not in podman's") as info:
        run.preflight(ENGINE, run.CheckRequest(tmp_path, "other:2"))
    assert "hardflow build --load" in info.value.diagnostics()
    assert run.preflight(ENGINE, run.CheckRequest(tmp_path, "img:1")) == tmp_path.resolve()


def test_classic_dag_on_airflow3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _install(monkeypatch, tmp_path)
    report = run.check_dags(ENGINE, run.CheckRequest(_classic(tmp_path), "img:1"))
    assert report.airflow3_rules and not report.ok and report.dags == ()
    errors = {(f.rule, f.line) for f in report.errors}
    assert errors == {("import-error", 4), ("AIR301", 4)}
    assert {f.rule for f in report.warnings} == {"AIR311", "AIR312"}


def test_fix_then_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _install(monkeypatch, tmp_path)
    folder = _classic(tmp_path)
    report = run.check_dags(ENGINE, run.CheckRequest(folder, "img:1", fix=True))
    assert report.ok and report.fixed == 1
    assert [(d.dag_id, d.tasks) for d in report.dags] == [("example", 1)]
    assert len(fake.runs) == 2  # loaded again after the fix
    assert "schedule='@daily'" in (folder / "example.py").read_text()


def test_airflow2_target_has_no_air_findings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install(monkeypatch, tmp_path, layout="2")
    folder = _classic(tmp_path)
    report = run.check_dags(ENGINE, run.CheckRequest(folder, "img:1", fix=True))
    assert report.ok and not report.airflow3_rules and report.findings == ()
    assert report.airflow_version == "2.11.2"
    assert "schedule_interval" in (folder / "example.py").read_text()  # --fix did nothing
    assert any("--fix did nothing" in n for n in report.notes)
    forced = run.check_dags(ENGINE, run.CheckRequest(folder, "img:1", airflow3_rules=True))
    assert "AIR301" in {f.rule for f in forced.findings}


def test_command_exit_codes_and_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _install(monkeypatch, tmp_path)
    folder = _classic(tmp_path)
    runner = CliRunner()
    text = runner.invoke(check_dags_cmd, [str(folder), "--image", "img:1"])
    assert text.exit_code == 1, text.output
    assert "example.py" in text.output and "AIR301" in text.output
    assert "`schedule_interval` → `schedule`" in text.output
    assert "FAILED: 2 errors, 2 warnings in 1 file" in text.output
    as_json = runner.invoke(check_dags_cmd, [str(folder), "--image", "img:1", "--json"])
    assert as_json.exit_code == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["errors"] == 2
    air301 = next(f for f in doc["findings"] if f["rule"] == "AIR301")
    assert (air301["file"], air301["line"], air301["severity"]) == ("example.py", 4, "error")
    assert air301["change"] == "`schedule_interval` → `schedule`"
    fixed = runner.invoke(check_dags_cmd, [str(folder), "--image", "img:1", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert "OK: 0 errors" in fixed.output and "1 fixed" in fixed.output
    missing = runner.invoke(check_dags_cmd, [str(tmp_path / "nope"), "--image", "img:1"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    no_image = runner.invoke(check_dags_cmd, [str(folder), "--image", "absent:0"])
    assert no_image.exit_code == 2 and "hardflow build --load" in no_image.output


def test_severity_of_load_findings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _install(monkeypatch, tmp_path)
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "w.py").write_text("import warnings\nwarnings.warn('careful')\n")
    report = run.check_dags(ENGINE, run.CheckRequest(folder, "img:1"))
    assert report.ok
    assert [(f.rule, f.severity) for f in report.findings] == [
        ("airflow-warning", Severity.WARNING)
    ]
