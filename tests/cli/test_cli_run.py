"""`hardflow run | stop | logs | password` parse their options into the runner's calls and
print its results; the engine and the runner are replaced by fakes that record the calls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli import cli
from hardflow.contract import API_PORT, DAGS_DIR, local_reference
from hardflow.run.engine import Engine
from hardflow.run.runner import RunRequest, RunResult
from hardflow.spec import load_embedded

ENGINE = Engine("podman", "/usr/bin/podman")


@dataclass
class FakeRunner:
    requests: list[RunRequest] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def start(self, engine: Engine, req: RunRequest, on_progress: Any = None) -> RunResult:
        assert engine == ENGINE
        self.requests.append(req)
        if on_progress is not None:
            on_progress("waiting for [health]")
        return RunResult(
            name=req.name, url=f"http://127.0.0.1:{req.port}", volume=f"{req.name}-home",
            username="admin", password="s3cret", seconds_to_healthy=12.345,
        )  # fmt: skip

    def attach(self, engine: Engine, name: str, **kw: Any) -> int | None:
        self.calls.append(("attach", {"name": name}))
        return 3

    def stop_container(self, engine: Engine, name: str, **kw: Any) -> int | None:
        self.calls.append(("stop", {"name": name, **kw}))
        return 0

    def show_logs(self, engine: Engine, name: str, **kw: Any) -> str:
        self.calls.append(("logs", {"name": name, **kw}))
        return "[INFO] plain [bold]text[/bold]\n"

    def admin_password(self, engine: Engine, name: str) -> str | None:
        return None if name == "nopw" else "s3cret"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    fake = FakeRunner()
    monkeypatch.setattr("hardflow.run.engine.detect_engine", lambda *_a: ENGINE)
    for name in ("start", "attach", "stop_container", "show_logs", "admin_password"):
        monkeypatch.setattr(f"hardflow.run.runner.{name}", getattr(fake, name))
    return fake


def test_run_defaults_come_from_the_contract_and_the_default_spec(runner: FakeRunner) -> None:
    result = CliRunner().invoke(cli, ["run", "--detach", "--json"])
    assert result.exit_code == 0, result.output
    (req,) = runner.requests
    assert req.image == local_reference(load_embedded().reference)
    assert req.image.startswith("localhost/")
    assert req.port == API_PORT and req.name == "hardflow" and req.detach
    assert req.command == ("standalone",) and req.dags is None
    assert json.loads(result.stdout) == {
        "name": "hardflow", "url": f"http://127.0.0.1:{API_PORT}", "volume": "hardflow-home",
        "username": "admin", "seconds_to_healthy": 12.35,
    }  # fmt: skip
    assert result.stderr == ""  # --json: no status line
    assert runner.calls == []  # detached: not attached


def test_run_in_the_foreground_attaches_and_exits_with_the_containers_code(
    runner: FakeRunner, tmp_path: Path
) -> None:
    args = ["run", "--image", "localhost/x:1", "--dags", str(tmp_path), "--port", "18080",
            "--name", "af", "airflow", "version"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3
    (req,) = runner.requests
    assert req.image == "localhost/x:1" and req.port == 18080 and req.name == "af"
    assert req.dags == tmp_path.resolve() and req.command == ("airflow", "version")
    assert runner.calls == [("attach", {"name": "af"})]
    assert "healthy in 12.3s: http://127.0.0.1:18080" in result.stdout
    assert "`hardflow password --name af`" in result.stdout
    assert "· waiting for [health]" in result.stderr  # the message, not rich markup


def test_stop_logs_and_password(runner: FakeRunner) -> None:
    stopped = CliRunner().invoke(cli, ["stop", "--name", "af", "--volume", "--timeout", "5"])
    assert stopped.exit_code == 0 and stopped.stdout == "af stopped (exit code 0)\n"
    assert runner.calls[-1][1]["remove_volume"] is True and runner.calls[-1][1]["timeout"] == 5
    logs = CliRunner().invoke(cli, ["logs", "--tail", "7"])
    assert logs.stdout == "[INFO] plain [bold]text[/bold]\n"  # written as is, not as markup
    assert runner.calls[-1] == ("logs", {"name": "hardflow", "follow": False, "tail": 7})
    assert CliRunner().invoke(cli, ["password"]).stdout == "s3cret\n"
    assert CliRunner().invoke(cli, ["password", "--name", "nopw"]).stdout == "\n"


def test_help_names_the_contracts_port_and_dag_folder() -> None:
    text = CliRunner().invoke(cli, ["run", "--help"]).output
    assert f"mounted read-only at {DAGS_DIR}." in text
    assert f"[default: {API_PORT}]" in text
    demo = CliRunner().invoke(cli, ["demo", "--help"]).output
    assert f"[default: {API_PORT}]" in demo and "[default: hardflow-demo]" in demo
