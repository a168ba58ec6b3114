"""The host side against Airflow 2: /api/v1 with basic auth, FAB password file."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from hardflow.errors import EngineError
from hardflow.run import airflow_api, runner
from hardflow.run.engine import Engine
from helpers.loopback_http import serve

RUN_ID = "manual__2026-01-01T00:00:00+00:00"
LOG_TEXT = "[2026-01-01] {subprocess.py:106} INFO - hello\n"


@dataclass
class FakeAirflow2:
    """The parts of an Airflow 2.11 webserver that trigger_dag uses."""

    password: str = "pw"
    basic_auth: bool = True  # [api] auth_backends includes basic_auth
    parse_after: int = 1
    states: list[str] = field(default_factory=lambda: ["queued", "running", "success"])
    paused: bool = True
    calls: list[tuple[str, str, Any, str | None, str | None]] = field(default_factory=list)

    def handle(
        self, method: str, path: str, body: Any, auth: str | None, accept: str | None
    ) -> tuple[int, Any, str]:
        self.calls.append((method, path, body, auth, accept))
        dag = "/api/v1/dags/example"
        run = f"{dag}/dagRuns/{RUN_ID}"
        if path == "/api/v1/health":
            return 200, {"metadatabase": {"status": "healthy"}}, "application/json"
        if path.startswith("/api/v1/"):
            good = "Basic " + base64.b64encode(f"admin:{self.password}".encode()).decode()
            if not self.basic_auth or auth != good:
                return 401, {"title": "Unauthorized"}, "application/problem+json"
        if path == "/api/v1/dags" and method == "GET":
            return 200, {"dags": [], "total_entries": 0}, "application/json"
        if path == dag and method == "GET":
            if self.parse_after > 0:
                self.parse_after -= 1
                return 404, {"title": "DAG not found"}, "application/problem+json"
            return 200, {"dag_id": "example", "is_paused": self.paused}, "application/json"
        if path == dag and method == "PATCH":
            self.paused = bool(body["is_paused"])
            return 200, {"dag_id": "example", "is_paused": self.paused}, "application/json"
        if path == f"{dag}/dagRuns" and method == "POST":
            if self.paused or body != {}:
                return 400, {"title": "bad trigger"}, "application/problem+json"
            return 200, {"dag_run_id": RUN_ID, "state": "queued"}, "application/json"
        if path == run and method == "GET":
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return 200, {"dag_run_id": RUN_ID, "state": state}, "application/json"
        if path == f"{run}/taskInstances":
            tis = [{"task_id": "say", "state": "success", "try_number": 1, "map_index": -1}]
            return 200, {"task_instances": tis, "total_entries": 1}, "application/json"
        if path == f"{run}/taskInstances/say/logs/1":
            if accept == "text/plain":
                return 200, LOG_TEXT, "text/plain"
            return 200, {"content": repr([("host", LOG_TEXT)])}, "application/json"
        return 404, {"title": f"no route {method} {path}"}, "application/problem+json"


@pytest.fixture
def fake2() -> Iterator[tuple[str, FakeAirflow2]]:
    fake = FakeAirflow2()

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = unquote(urlsplit(self.path).path)
            status, doc, kind = fake.handle(
                self.command, path, body, self.headers.get("Authorization"),
                self.headers.get("Accept"),
            )  # fmt: skip
            data = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _do

        def log_message(self, *args: Any) -> None:
            pass

    with serve(Handler) as port:
        yield f"http://127.0.0.1:{port}", fake


def _no_sleep(_: float) -> None:
    pass


def test_trigger_dag_on_airflow_2(fake2: tuple[str, FakeAirflow2]) -> None:
    url, fake = fake2
    result = airflow_api.trigger_dag(url, "admin", "pw", "example", timeout=30, sleep=_no_sleep)
    assert result.ok and result.run_id == RUN_ID
    (task,) = result.tasks
    assert (task.task_id, task.state, task.log) == ("say", "success", LOG_TEXT)
    assert not fake.paused
    paths = [(m, p) for m, p, *_ in fake.calls]
    assert paths[0] == ("POST", "/auth/token")  # Airflow 3 first: 404 here
    assert paths.index(("PATCH", "/api/v1/dags/example")) < paths.index(
        ("POST", "/api/v1/dags/example/dagRuns")
    )
    assert not any(p.startswith("/api/v2") for _, p in paths)
    log_call = next(c for c in fake.calls if c[1].endswith("/logs/1"))
    assert log_call[4] == "text/plain"


def test_trigger_dag_on_airflow_2_wrong_password(fake2: tuple[str, FakeAirflow2]) -> None:
    url, _ = fake2
    with pytest.raises(EngineError, match="HTTP 401 with basic auth"):
        airflow_api.trigger_dag(url, "admin", "nope", "example", timeout=30, sleep=_no_sleep)


def test_trigger_dag_on_airflow_2_without_basic_auth(fake2: tuple[str, FakeAirflow2]) -> None:
    url, fake = fake2
    fake.basic_auth = False
    with pytest.raises(EngineError) as info:
        airflow_api.trigger_dag(url, "admin", "pw", "example", timeout=30, sleep=_no_sleep)
    assert "auth_backends" in str(info.value.message)
    assert "basic_auth" in str(info.value.hint)


def test_trigger_dag_on_something_else(fake2: tuple[str, FakeAirflow2]) -> None:
    url, fake = fake2
    fake.handle = lambda *a: (404, {"title": "nothing"}, "application/json")  # type: ignore[method-assign]
    with pytest.raises(EngineError, match="neither an Airflow 3 API server"):
        airflow_api.trigger_dag(url, "admin", "pw", "example", timeout=30, sleep=_no_sleep)


# --------------------------------------------------------------------------------------------
# the admin password: SimpleAuthManager JSON (3.x) first, then the FAB file (2.x)


def _missing(path: str) -> EngineError:
    return EngineError(f"podman cp: could not find {path}: no such file or directory")


def test_admin_password_falls_back_to_the_fab_file(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {runner.FAB_PASSWORD_FILE: b"fab-secret\n"}

    def read_file(engine: Engine, name: str, path: str) -> bytes:
        if path not in files:
            raise _missing(path)
        return files[path]

    monkeypatch.setattr(runner.eng, "read_file", read_file)
    monkeypatch.setattr(runner.eng, "container_labels", lambda e, n: {runner.MANAGED_LABEL: "true"})
    engine = Engine("podman", "/usr/bin/podman")
    assert runner.admin_password(engine, "c") == "fab-secret"
    files[runner.PASSWORD_FILE] = b'{"admin": "simple-secret"}'
    assert runner.admin_password(engine, "c") == "simple-secret"
    files.clear()
    assert runner.admin_password(engine, "c", missing_ok=True) is None
    with pytest.raises(EngineError, match="could not find"):
        runner.admin_password(engine, "c")


def test_parse_fab_password() -> None:
    assert runner.parse_fab_password(b"abc\n") == "abc"
    with pytest.raises(EngineError, match="one password"):
        runner.parse_fab_password(b"\n")
    with pytest.raises(EngineError, match="one password"):
        runner.parse_fab_password(b"a\nb\n")
