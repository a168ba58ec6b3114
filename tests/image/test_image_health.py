"""Unit tests of the in-image health check (src/hardflow/image/health.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from helpers.loopback_http import serve

IMAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "image"
HEALTH = IMAGE_DIR / "health.py"

HEALTHY: dict[str, Any] = {
    "metadatabase": {"status": "healthy"},
    "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": "2026-01-01T00:00:00+00:00"},
    "triggerer": {"status": "healthy", "latest_triggerer_heartbeat": "2026-01-01T00:00:00+00:00"},
    "dag_processor": {
        "status": "healthy",
        "latest_dag_processor_heartbeat": "2026-01-01T00:00:00+00:00",
    },
}


class FakeAirflow:
    """What a local http.server answers: path → (status, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set_json(self, path: str, payload: Any, status: int = 200) -> None:
        self.routes[path] = (status, json.dumps(payload).encode())


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    state = FakeAirflow()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state.routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve(Handler) as port:
        state.port = port
        yield state


API = "/api/v2/monitor/health"


def test_standalone_needs_every_component(health: ModuleType, fake: FakeAirflow) -> None:
    fake.set_json(API, HEALTHY)
    state = {"api_health_url": fake.url(API)}
    reason = health.check("standalone", state, {}, 2)
    assert "dag_processor=healthy" in reason
    sick = json.loads(json.dumps(HEALTHY))
    sick["triggerer"]["status"] = "unhealthy"
    sick["dag_processor"]["status"] = None
    fake.set_json(API, sick)
    with pytest.raises(health.Unhealthy) as info:
        health.check("standalone", state, {}, 2)
    assert "triggerer=unhealthy" in str(info.value)
    assert "dag_processor=unknown" in str(info.value)


def test_api_server_needs_only_the_database(health: ModuleType, fake: FakeAirflow) -> None:
    payload = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "unhealthy"}}
    fake.set_json(API, payload)
    state = {"api_health_url": fake.url(API)}
    assert "metadatabase=healthy" in health.check("api-server", state, {}, 2)
    fake.set_json(API, {"metadatabase": {"status": "unhealthy"}})
    with pytest.raises(health.Unhealthy, match="metadatabase=unhealthy"):
        health.check("api-server", state, {}, 2)


def test_api_errors(health: ModuleType, fake: FakeAirflow) -> None:
    state = {"api_health_url": fake.url(API)}
    fake.set_json(API, HEALTHY, status=503)
    with pytest.raises(health.Unhealthy, match="HTTP 503"):
        health.check("api-server", state, {}, 2)
    fake.routes[API] = (200, b"<html>")
    with pytest.raises(health.Unhealthy, match="did not answer JSON"):
        health.check("api-server", state, {}, 2)
    fake.set_json(API, ["not", "an", "object"])
    with pytest.raises(health.Unhealthy, match="not a JSON object"):
        health.check("api-server", state, {}, 2)


def test_scheduler_and_flower_endpoints(health: ModuleType, fake: FakeAirflow) -> None:
    state = {"scheduler_health_url": fake.url("/health"), "flower_health_url": fake.url("/hc")}
    fake.routes["/health"] = (200, b"")
    fake.routes["/hc"] = (200, b"OK")
    assert "200" in health.check("scheduler", state, {}, 2)
    assert "200" in health.check("celery-flower", state, {}, 2)
    fake.routes["/health"] = (503, b"")
    with pytest.raises(health.Unhealthy, match="HTTP 503"):
        health.check("scheduler", state, {}, 2)


def test_nothing_listening(health: ModuleType, fake: FakeAirflow) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = {"scheduler_health_url": f"http://127.0.0.1:{port}/health"}
    with pytest.raises(health.Unhealthy, match="failed"):
        health.check("scheduler", state, {}, 2)


def fake_proc(root: Path, pid: int, state: str, cmdline: list[str]) -> None:
    entry = root / str(pid)
    entry.mkdir(parents=True)
    (entry / "stat").write_bytes(f"{pid} (airflow task) {state} 1 1 1".encode())
    (entry / "cmdline").write_bytes(b"\0".join(c.encode() for c in cmdline) + b"\0")


def test_process_checks(health: ModuleType, tmp_path: Path) -> None:
    fake_proc(tmp_path, 7, "S", ["/usr/bin/python3.13", "/usr/local/bin/airflow", "triggerer"])
    fake_proc(tmp_path, 8, "Z", ["/usr/bin/python3.13", "/usr/local/bin/airflow", "triggerer"])
    fake_proc(tmp_path, 9, "S", ["/usr/bin/bash"])
    markers = health.PROCESS_MARKERS["triggerer"]
    assert "running" in health.check_process(7, markers, str(tmp_path))
    with pytest.raises(health.Unhealthy, match="exited"):
        health.check_process(8, markers, str(tmp_path))
    with pytest.raises(health.Unhealthy, match="not the expected command"):
        health.check_process(9, markers, str(tmp_path))
    with pytest.raises(health.Unhealthy, match="gone"):
        health.check_process(10, markers, str(tmp_path))
    with pytest.raises(health.Unhealthy, match="no valid pid"):
        health.check_process(None, markers, str(tmp_path))


def test_process_role_uses_real_proc(health: ModuleType) -> None:
    assert "running" in health.check("exec", {"pid": os.getpid()}, {}, 2)


def test_triggerer_can_also_ask_the_api(
    health: ModuleType, fake: FakeAirflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "check_process", lambda pid, markers: "process 7 is running")
    sick = json.loads(json.dumps(HEALTHY))
    sick["triggerer"]["status"] = "unhealthy"
    fake.set_json(API, sick)
    env = {"HARDFLOW_HEALTH_API_URL": fake.url("")}
    with pytest.raises(health.Unhealthy, match="triggerer=unhealthy"):
        health.check("triggerer", {"pid": 7}, env, 2)
    assert "heartbeat healthy" in health.check("dag-processor", {"pid": 7}, env, 2)


def run_health(args: list[str], state_file: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HARDFLOW_STATE_FILE": str(state_file)}
    return subprocess.run(
        [sys.executable, "-I", "-S", str(HEALTH), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_script_exit_codes_and_one_line(fake: FakeAirflow, tmp_path: Path) -> None:
    state_file = tmp_path / "role.json"
    fake.set_json(API, HEALTHY)
    state_file.write_text(json.dumps({"role": "standalone", "api_health_url": fake.url(API)}))
    done = run_health([], state_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("healthy: standalone")
    fake.set_json(API, {"metadatabase": {"status": "unhealthy"}})
    done = run_health([], state_file)
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: API health: metadatabase=unhealthy")
    assert done.stderr == ""


def test_script_without_state_file(tmp_path: Path) -> None:
    done = run_health([], tmp_path / "missing")
    assert done.returncode == 1
    assert "entrypoint has not run" in done.stdout


def stdlib_only(path: Path) -> list[str]:
    """Top-level modules imported by ``path`` that are not in the standard library."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if n not in sys.stdlib_module_names and n != "__future__")


@pytest.mark.parametrize("name", ["entrypoint.py", "health.py"])
def test_image_scripts_import_only_the_standard_library(name: str) -> None:
    assert stdlib_only(IMAGE_DIR / name) == []


def test_celery_worker_marker_accepts_celerys_own_process_title(
    health: ModuleType, tmp_path: Path
) -> None:
    pid_dir = tmp_path / "77"
    pid_dir.mkdir()
    (pid_dir / "stat").write_bytes(b"77 (celeryd) S 1 77")
    (pid_dir / "cmdline").write_bytes(
        b"[celeryd: celery@abc:MainProcess] -active- (celery worker)\0"
    )
    reason = health.check_process(77, health.PROCESS_MARKERS["celery-worker"], str(tmp_path))
    assert "running" in reason


def test_main_reads_the_state_of_its_own_container(
    health: ModuleType,
    fake: FakeAirflow,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A pod's containers share /tmp: each reads the state keyed by its mount namespace."""
    monkeypatch.delenv("HARDFLOW_STATE_FILE", raising=False)
    monkeypatch.setattr(health, "DEFAULT_STATE_FILE", str(tmp_path / "hardflow-role"))
    fake.set_json("/healthcheck", {})
    (tmp_path / "hardflow-role-101").write_text(
        json.dumps({"role": "celery-flower", "flower_health_url": fake.url("/healthcheck")})
    )
    (tmp_path / "hardflow-role-202").write_text(json.dumps({"role": "scheduler"}))
    monkeypatch.setattr(health, "mount_namespace", lambda: "101")
    assert health.main([]) == 0
    assert capsys.readouterr().out.startswith("healthy: celery-flower")
    # the other container's file is not this one's; without one of its own it is unhealthy
    monkeypatch.setattr(health, "mount_namespace", lambda: "303")
    assert health.main([]) == 1
    assert "hardflow-role-303" in capsys.readouterr().out
