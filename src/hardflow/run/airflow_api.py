"""A small Airflow REST client (stdlib only): log in, trigger a DAG, wait for the run, fetch
the task logs. :mod:`hardflow.run.runner` starts the container; this module only talks HTTP.

Airflow 3 REST flow used by :func:`trigger_dag` (checked against apache-airflow-core 3.3.2):

1. ``POST /auth/token`` with JSON ``{"username", "password"}`` (SimpleAuthManager) →
   201 ``{"access_token": JWT}``; every later call sends ``Authorization: Bearer JWT``.
2. ``GET /api/v2/dags/{dag_id}`` until it answers 200 (404 while the DAG processor has not
   parsed the file yet).
3. ``PATCH /api/v2/dags/{dag_id}`` with ``{"is_paused": false}``.
4. ``POST /api/v2/dags/{dag_id}/dagRuns`` with ``{"logical_date": null}`` (the field is required,
   null is allowed) → ``{"dag_run_id", "state", ...}``.
5. ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}`` until ``state`` is ``success`` or ``failed``.
6. ``GET .../dagRuns/{run_id}/taskInstances`` → ``{"task_instances": [{task_id, state,
   try_number, map_index}], ...}``; then for each ``.../taskInstances/{task_id}/logs/{try}``
   with ``Accept: application/json`` → ``{"content": [{"event", "timestamp", ...}] | [str],
   "continuation_token"}``.

Airflow 2 images (checked against apache-airflow 2.11.2 with the FAB provider) have no
``/auth/token`` (404): the same steps then use the stable REST API ``/api/v1`` with HTTP basic
auth, which the hardflow Airflow 2 image enables (``[api] auth_backends`` includes FAB's
``basic_auth``). ``POST .../dagRuns`` takes ``{}``; task logs are fetched as ``text/plain``
(their JSON form is a Python repr of (host, text) pairs).

Only the standard library is used here: the host running ``hardflow`` may be any Python. URLs in
error messages are redacted (:func:`hardflow.run.redact.redact_userinfo`).
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hardflow.errors import EngineError
from hardflow.run.redact import redact_userinfo

Progress = Callable[[str], None]

_TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    state: str | None
    try_number: int
    log: str


@dataclass(frozen=True)
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    tasks: tuple[TaskResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.state == "success"


# ---------------------------------------------------------------------------------------------
# HTTP


def _error(message: str, *, hint: str | None = None) -> EngineError:
    """An EngineError whose text shows no URL password (a base URL may carry userinfo, an
    error body may echo a connection string)."""
    return EngineError(redact_userinfo(message), hint=hint)


class AirflowApi:
    """One Airflow web server: base URL, timeout and the credentials once connected."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.token: str | None = None
        self.basic: str | None = None  # "user:password" for Airflow 2's basic auth

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok: tuple[int, ...] = (200,),
        allow: tuple[int, ...] = (),
        text_body: bool = False,
    ) -> tuple[int, Any]:
        """(status, JSON document); with ``text_body`` the document is the plain text."""
        url = self.base + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "text/plain" if text_body else "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.basic:
            encoded = base64.b64encode(self.basic.encode("utf-8")).decode("ascii")
            headers["Authorization"] = f"Basic {encoded}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise _error(f"{method} {url} failed: {getattr(exc, 'reason', exc)}") from exc
        except (ValueError, http.client.HTTPException) as exc:
            # InvalidURL for a malformed URL (a userinfo part, a bad port): its text quotes the
            # URL's pieces without their scheme, out of the redaction's reach, so only its type
            raise _error(f"{method} {url} failed: {type(exc).__name__}") from None
        text = raw.decode("utf-8", "replace")
        if status not in ok and status not in allow:
            detail = text.strip()[:500] or "(empty body)"
            raise _error(f"{method} {url} answered HTTP {status}: {detail}")
        if text_body and status in ok:
            return status, text
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError as exc:
            if status in allow:
                return status, None
            raise _error(f"{method} {url} did not return JSON: {text[:200]!r}") from exc


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def render_log(content: Any) -> str:
    """Task log text from the logs endpoint's ``content`` (structured events or plain lines)."""
    if not isinstance(content, list):
        return ""
    lines: list[str] = []
    for item in content:
        if isinstance(item, str):
            lines.append(item)
        elif isinstance(item, dict):
            event = str(item.get("event", ""))
            prefix = ""
            if item.get("timestamp"):
                prefix += f"[{item['timestamp']}] "
            if item.get("level"):
                prefix += f"{str(item['level']).upper()} - "
            lines.append(prefix + event)
    return "\n".join(lines)


def login(api: AirflowApi, username: str, password: str) -> str:
    _, doc = api.call(
        "POST", "/auth/token", {"username": username, "password": password}, ok=(200, 201)
    )
    token = doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise _error(f"POST {api.base}/auth/token returned no access_token")
    return token


def connect(api: AirflowApi, username: str, password: str) -> str:
    """Authenticate ``api`` and return the REST prefix: ``/api/v2`` (Airflow 3, JWT from
    ``/auth/token``) or ``/api/v1`` (Airflow 2, basic auth; no ``/auth/token`` there)."""
    status, doc = api.call(
        "POST", "/auth/token", {"username": username, "password": password},
        ok=(200, 201), allow=(404,),
    )  # fmt: skip
    if status != 404:
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise _error(f"POST {api.base}/auth/token returned no access_token")
        api.token = token
        return "/api/v2"
    health_status, health = api.call("GET", "/api/v1/health", allow=(404,))
    if health_status != 200 or not isinstance(health, dict) or "metadatabase" not in health:
        raise _error(
            f"{api.base} is neither an Airflow 3 API server (no /auth/token) nor an "
            "Airflow 2 webserver (no /api/v1/health)"
        )
    api.basic = f"{username}:{password}"
    status, _ = api.call("GET", "/api/v1/dags?limit=1", allow=(401, 403))
    if status != 200:
        raise _error(
            f"GET {api.base}/api/v1/dags answered HTTP {status} with basic auth for "
            f"{username!r}: wrong password, or [api] auth_backends lacks basic_auth",
            hint="AIRFLOW__API__AUTH_BACKENDS=airflow.providers.fab.auth_manager.api.auth."
            "backend.basic_auth,airflow.api.auth.backend.session",
        )
    return "/api/v1"


def trigger_dag(
    base_url: str,
    username: str,
    password: str,
    dag_id: str,
    timeout: float,
    *,
    poll_interval: float = 2.0,
    on_progress: Progress = _quiet,
    request_timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DagRunResult:
    """Unpause ``dag_id``, trigger one run, wait for it to finish, fetch each task's log.

    Raises EngineError if the login fails, the DAG never shows up, or ``timeout`` passes.
    A run that ends ``failed`` is returned (check :attr:`DagRunResult.ok`), not raised.
    """
    started = clock()
    api = AirflowApi(base_url, request_timeout)
    prefix = connect(api, username, password)
    airflow2 = prefix == "/api/v1"
    dag_path = f"{prefix}/dags/{_q(dag_id)}"

    def remaining(what: str) -> None:
        if clock() - started >= timeout:
            raise _error(f"{what} within {timeout:.0f}s")

    while True:
        status, _ = api.call("GET", dag_path, allow=(404,))
        if status == 200:
            break
        remaining(f"DAG {dag_id} did not appear in the API (is it in the DAG folder and parsed?)")
        on_progress(f"waiting for the DAG processor to parse {dag_id}")
        sleep(poll_interval)

    api.call("PATCH", dag_path, {"is_paused": False})
    trigger_body: dict[str, Any] = {} if airflow2 else {"logical_date": None}
    _, run = api.call("POST", f"{dag_path}/dagRuns", trigger_body, ok=(200, 201))
    run_id = run.get("dag_run_id") if isinstance(run, dict) else None
    if not isinstance(run_id, str):
        raise _error(f"POST {dag_path}/dagRuns returned no dag_run_id: {run!r}")
    on_progress(f"triggered {dag_id} run {run_id}")
    run_path = f"{dag_path}/dagRuns/{_q(run_id)}"

    state = str(run.get("state"))
    while state not in _TERMINAL_RUN_STATES:
        remaining(f"DAG run {run_id} of {dag_id} did not finish (state {state})")
        sleep(poll_interval)
        _, doc = api.call("GET", run_path)
        state = str(doc.get("state")) if isinstance(doc, dict) else "unknown"
        on_progress(f"{dag_id} run {run_id}: {state}")

    _, tis = api.call("GET", f"{run_path}/taskInstances")
    tasks: list[TaskResult] = []
    for ti in (tis or {}).get("task_instances", []):
        task_id = str(ti.get("task_id"))
        try_number = int(ti.get("try_number") or 0)
        log = ""
        if try_number >= 1:
            path = f"{run_path}/taskInstances/{_q(task_id)}/logs/{try_number}"
            map_index = ti.get("map_index", -1)
            if isinstance(map_index, int) and map_index >= 0:
                path += f"?map_index={map_index}"
            if airflow2:
                _, text = api.call("GET", path, allow=(404,), text_body=True)
                log = text if isinstance(text, str) else ""
            else:
                _, doc = api.call("GET", path, allow=(404,))
                log = render_log(doc.get("content") if isinstance(doc, dict) else None)
        tasks.append(TaskResult(task_id, ti.get("state"), try_number, log))
    return DagRunResult(dag_id, run_id, state, tuple(tasks), clock() - started)
