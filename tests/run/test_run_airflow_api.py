"""Tests for hardflow.run.airflow_api: the Airflow 3 REST flow against a fake API on 127.0.0.1,
and passwords in URLs kept out of its error messages."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from hardflow.errors import EngineError
from hardflow.run import airflow_api
from helpers.loopback_http import serve


def test_render_log_structured_and_plain() -> None:
    text = airflow_api.render_log(
        [{"event": "hello", "timestamp": "T1", "level": "info"}, {"event": "bye"}, "raw line"]
    )
    assert text.splitlines() == ["[T1] INFO - hello", "bye", "raw line"]
    assert airflow_api.render_log(None) == ""


# --------------------------------------------------------------------------------------------
# a fake Airflow 3 API


@dataclass
class FakeAirflow:
    password: str = "pw"
    dag_id: str = "example_dag"
    parse_after: int = 1  # GET /dags/{id} answers 404 this many times first
    states: list[str] = field(default_factory=lambda: ["queued", "running", "success"])
    calls: list[tuple[str, str, Any, str | None]] = field(default_factory=list)
    paused: bool = True
    token: str = "jwt-abc"

    def handle(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, Any]:
        self.calls.append((method, path, body, auth))
        run_id = "manual__2026-01-01T00:00:00+00:00"
        dag = f"/api/v2/dags/{self.dag_id}"
        run = f"{dag}/dagRuns/{run_id}"
        if path == "/auth/token" and method == "POST":
            if body != {"username": "admin", "password": self.password}:
                return 401, {"detail": "Invalid credentials"}
            return 201, {"access_token": self.token}
        if auth != f"Bearer {self.token}":
            return 401, {"detail": "Not authenticated"}
        if path == dag and method == "GET":
            if self.parse_after > 0:
                self.parse_after -= 1
                return 404, {"detail": "Dag not found"}
            return 200, {"dag_id": self.dag_id, "is_paused": self.paused}
        if path == dag and method == "PATCH":
            self.paused = bool(body["is_paused"])
            return 200, {"dag_id": self.dag_id, "is_paused": self.paused}
        if path == f"{dag}/dagRuns" and method == "POST":
            if self.paused or "logical_date" not in body or body["logical_date"] is not None:
                return 400, {"detail": "bad trigger"}
            return 200, {"dag_run_id": run_id, "state": "queued"}
        if path == run and method == "GET":
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return 200, {"dag_run_id": run_id, "state": state}
        if path == f"{run}/taskInstances":
            return 200, {
                "task_instances": [
                    {"task_id": "hello", "state": "success", "try_number": 1, "map_index": -1},
                    {"task_id": "skipped", "state": "upstream_failed", "try_number": 0},
                ],
                "total_entries": 2,
            }
        if path == f"{run}/taskInstances/hello/logs/1":
            return 200, {"content": [{"event": "Hello from hardflow"}], "continuation_token": None}
        return 404, {"detail": f"no route {method} {path}"}


@pytest.fixture
def fake_api() -> Iterator[tuple[str, FakeAirflow]]:
    fake = FakeAirflow()

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if raw and self.headers.get("Content-Type") != "application/json":
                self.send_response(415)
                self.end_headers()
                return
            body = json.loads(raw) if raw else None
            path = unquote(urlsplit(self.path).path)
            status, doc = fake.handle(self.command, path, body, self.headers.get("Authorization"))
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
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


def test_trigger_dag_full_flow(fake_api: tuple[str, FakeAirflow]) -> None:
    url, fake = fake_api
    seen: list[str] = []
    result = airflow_api.trigger_dag(
        url, "admin", "pw", "example_dag", timeout=30, sleep=_no_sleep, on_progress=seen.append
    )
    assert result.ok and result.state == "success"
    assert result.run_id == "manual__2026-01-01T00:00:00+00:00"
    assert [t.task_id for t in result.tasks] == ["hello", "skipped"]
    assert result.tasks[0].log == "Hello from hardflow"
    assert result.tasks[1].log == ""  # never ran: no log fetched
    assert not fake.paused
    methods = [(m, p) for m, p, _, _ in fake.calls]
    assert methods[0] == ("POST", "/auth/token")
    # unpaused before triggering
    assert methods.index(("PATCH", "/api/v2/dags/example_dag")) < methods.index(
        ("POST", "/api/v2/dags/example_dag/dagRuns")
    )
    assert all(auth == "Bearer jwt-abc" for _, p, _, auth in fake.calls if p != "/auth/token")
    assert any("parse" in s for s in seen)


def test_trigger_dag_failed_run_is_returned(fake_api: tuple[str, FakeAirflow]) -> None:
    url, fake = fake_api
    fake.states = ["running", "failed"]
    result = airflow_api.trigger_dag(url, "admin", "pw", "example_dag", timeout=30, sleep=_no_sleep)
    assert result.state == "failed" and not result.ok


def test_trigger_dag_bad_password(fake_api: tuple[str, FakeAirflow]) -> None:
    url, _ = fake_api
    with pytest.raises(EngineError, match=r"auth/token answered HTTP 401.*Invalid credentials"):
        airflow_api.trigger_dag(url, "admin", "wrong", "example_dag", timeout=30, sleep=_no_sleep)


def test_trigger_dag_times_out_when_dag_never_appears(fake_api: tuple[str, FakeAirflow]) -> None:
    url, fake = fake_api
    fake.parse_after = 10**6
    ticks = iter(range(0, 10**6, 5))
    with pytest.raises(EngineError, match="did not appear"):
        airflow_api.trigger_dag(
            url, "admin", "pw", "example_dag", timeout=20,
            sleep=_no_sleep, clock=lambda: float(next(ticks)),
        )  # fmt: skip


def test_trigger_dag_times_out_on_a_stuck_run(fake_api: tuple[str, FakeAirflow]) -> None:
    url, fake = fake_api
    fake.parse_after = 0
    fake.states = ["running"]
    ticks = iter(range(0, 10**6, 5))
    with pytest.raises(EngineError, match="did not finish"):
        airflow_api.trigger_dag(
            url, "admin", "pw", "example_dag", timeout=20,
            sleep=_no_sleep, clock=lambda: float(next(ticks)),
        )  # fmt: skip


def test_trigger_dag_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EngineError, match="failed"):
        airflow_api.trigger_dag(f"http://127.0.0.1:{port}", "admin", "pw", "d", timeout=5)


def test_unreachable_url_with_userinfo_does_not_show_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "Pa55-w0rd-in-url"
    bases = (
        f"http://admin:{secret}@127.0.0.1:{port}",
        f"http://admin:{secret}@127.0.0.1",  # http.client reads "{secret}@127.0.0.1" as a port
        f"http://127.0.0.1:{port}",
    )
    for base in bases:
        with pytest.raises(EngineError) as info:
            airflow_api.trigger_dag(base, "admin", secret, "d", timeout=5)
        assert secret not in info.value.diagnostics()
