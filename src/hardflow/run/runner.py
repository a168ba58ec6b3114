"""The host side of ``hardflow run | stop | logs``: start the image hardened, wait until it is
healthy, read the generated admin password, and drive a DAG run through Airflow's REST API.

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

The generated admin password is SimpleAuthManager's JSON file on Airflow 3, and the file the
hardflow entrypoint keeps for FAB users on Airflow 2 (plain text).

Only the standard library is used here: the host running ``hardflow`` may be any Python.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardflow.errors import EngineError
from hardflow.run import engine as eng
from hardflow.run.engine import BindMount, Engine, HealthCheck, PortMapping, RunOptions

Progress = Callable[[str], None]

AIRFLOW_HOME = "/opt/airflow"
DAGS_DIR = f"{AIRFLOW_HOME}/dags"
CONTAINER_PORT = 8080
# Written by the in-image entrypoint (SimpleAuthManager's own default location):
# JSON {"admin": "<password>"}.
PASSWORD_FILE = f"{AIRFLOW_HOME}/simple_auth_manager_passwords.json.generated"
# Airflow 2 (FAB users): the entrypoint's generated password, plain text.
FAB_PASSWORD_FILE = f"{AIRFLOW_HOME}/.hardflow/admin_password"
ADMIN_USER = "admin"
HEALTH_COMMAND: tuple[str, ...] = ("/usr/local/bin/hardflow-health",)
MANAGED_LABEL = "io.hardflow.managed"
LOG_TAIL_ON_ERROR = 30
_TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RunRequest:
    """What ``hardflow run`` asks for."""

    image: str
    dags: Path | None = None
    port: int = 8080
    detach: bool = False
    name: str = "hardflow"
    user: str = "50000:0"
    command: tuple[str, ...] = ("standalone",)
    env: Mapping[str, str] = field(default_factory=dict)
    health_timeout: float = 300.0
    # exec form; None (default): rely on the health check in the image config. Podman 4.3
    # turns a one-element JSON --health-cmd into CMD-SHELL, which needs /bin/sh (absent).
    health_command: tuple[str, ...] | None = None
    memory: str | None = "4g"
    pids_limit: int | None = 4096
    stop_timeout: int = 30


@dataclass(frozen=True)
class RunResult:
    name: str
    url: str
    volume: str
    username: str
    password: str | None  # None when no generated password file was found
    seconds_to_healthy: float

    @property
    def password_hint(self) -> str:
        if self.password is not None:
            return f"log in as {self.username} / {self.password}"
        return (
            f"log in as {self.username}; no generated password was found at {PASSWORD_FILE} "
            f"or {FAB_PASSWORD_FILE} (passwords set through the environment are not shown)"
        )


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
# naming and options (pure)


def volume_name(container: str) -> str:
    """The AIRFLOW_HOME volume that belongs to a container."""
    return f"{container}-home"


def run_options(req: RunRequest) -> RunOptions:
    """The hardened :class:`RunOptions` for a request (pure; validates the request)."""
    if not 1 <= req.port <= 65535:
        raise EngineError(f"port {req.port} is out of range: expected 1..65535")
    binds: tuple[BindMount, ...] = ()
    if req.dags is not None:
        dags = req.dags.expanduser().resolve()
        if not dags.is_dir():
            raise EngineError(f"DAG folder {req.dags} does not exist or is not a directory")
        binds = (BindMount(dags, DAGS_DIR, read_only=True),)
    health = None
    if req.health_command:
        health = HealthCheck(req.health_command, interval_s=10, timeout_s=30, retries=3,
                             start_period_s=120)  # fmt: skip
    return RunOptions(
        image=req.image,
        name=req.name,
        command=req.command,
        user=req.user,
        read_only=True,
        cap_drop_all=True,
        no_new_privileges=True,
        tmpfs=("/tmp",),
        volumes={volume_name(req.name): AIRFLOW_HOME},
        binds=binds,
        ports=(PortMapping(req.port, CONTAINER_PORT, "127.0.0.1"),),
        env=dict(req.env),
        labels={MANAGED_LABEL: "true"},
        detach=True,
        healthcheck=health,
        stop_timeout=req.stop_timeout,
        pids_limit=req.pids_limit,
        memory=req.memory,
    )


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# run / stop / logs


def start(engine: Engine, req: RunRequest, on_progress: Progress = _quiet) -> RunResult:
    """Start the container hardened and detached, wait until healthy, read the password.

    ``req.detach`` is for the caller: the container always runs detached; a foreground
    ``hardflow run`` follows :func:`show_logs` afterwards and calls :func:`stop_container` on
    Ctrl-C.
    """
    opts = run_options(req)
    if not eng.image_exists(engine, req.image):
        raise EngineError(
            f"image {req.image} is not in {engine.name}'s local storage",
            hint="build it with `hardflow build`, or load an archive with `podman load -i FILE`",
        )
    if eng.container_exists(engine, req.name):
        raise EngineError(
            f"a container named {req.name} already exists",
            hint=f"stop and remove it with `hardflow stop --name {req.name}`, or pick --name",
        )
    if not port_free(req.port):
        raise EngineError(
            f"port 127.0.0.1:{req.port} is already in use",
            hint="pick another one with --port",
        )
    volume = volume_name(req.name)
    if not eng.volume_exists(engine, volume):
        on_progress(f"creating volume {volume} for {AIRFLOW_HOME}")
        eng.volume_create(engine, volume, {MANAGED_LABEL: "true"})
    on_progress(f"starting {req.name} from {req.image}")
    eng.run_container(engine, opts)
    seconds = wait_healthy(engine, req.name, req.health_timeout, on_progress)
    password = admin_password(engine, req.name, missing_ok=True)
    return RunResult(
        name=req.name,
        url=f"http://127.0.0.1:{req.port}",
        volume=volume,
        username=ADMIN_USER,
        password=password,
        seconds_to_healthy=seconds,
    )


def _last_log_lines(engine: Engine, name: str, lines: int = LOG_TAIL_ON_ERROR) -> str:
    try:
        text = eng.logs(engine, name, tail=lines)
    except EngineError as exc:
        return f"(logs unavailable: {exc.message})"
    return text.rstrip() or "(no output)"


def wait_healthy(
    engine: Engine,
    name: str,
    timeout: float,
    on_progress: Progress = _quiet,
    *,
    interval: float = 2.0,
    fallback_command: tuple[str, ...] | None = HEALTH_COMMAND,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Seconds until the container reports healthy.

    The engine may not run health checks itself (podman without systemd never does), so each
    round runs the check by hand (:func:`hardflow.run.engine.probe_health`). A container without a
    health check is probed with ``fallback_command`` through ``exec``; without that either, it
    counts as healthy once running. "unhealthy" while starting is not fatal: the loop goes on
    until ``timeout``. The container exiting, or the timeout, raises EngineError with the last
    log lines.
    """
    started = clock()
    last = "starting"
    while True:
        elapsed = clock() - started
        st = eng.container_state(engine, name)
        if not st.running:
            oom = " (killed: out of memory)" if st.oom_killed else ""
            raise EngineError(
                f"container {name} stopped with exit code {st.exit_code}{oom} before it became "
                f"healthy; its last log lines:\n{_last_log_lines(engine, name)}",
                hint=f"see `hardflow logs --name {name}`; remove it with `hardflow stop`",
            )
        if st.health == "healthy":
            return elapsed
        probe = eng.probe_health(engine, name)
        if probe == "none":
            if fallback_command is None:
                return elapsed
            rc = eng.exec_in(engine, name, list(fallback_command), check=False).returncode
            probe = "healthy" if rc == 0 else "unhealthy"
        if probe == "healthy":
            return clock() - started
        last = probe
        if elapsed >= timeout:
            raise EngineError(
                f"container {name} did not become healthy within {timeout:.0f}s "
                f"(last health: {last}); its last log lines:\n{_last_log_lines(engine, name)}",
                hint=f"it is still running: `hardflow logs --name {name}`, `hardflow stop`",
            )
        on_progress(f"waiting for {name} to become healthy ({elapsed:.0f}s)")
        sleep(interval)


def parse_password(data: bytes, username: str = ADMIN_USER) -> str:
    """The password of ``username`` from SimpleAuthManager's generated JSON file."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{PASSWORD_FILE} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get(username), str):
        raise EngineError(f"{PASSWORD_FILE} has no password for user {username!r}")
    password: str = doc[username]
    return password


def parse_fab_password(data: bytes) -> str:
    """The password in the entrypoint's plain-text file for the FAB admin (Airflow 2)."""
    try:
        password = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise EngineError(f"{FAB_PASSWORD_FILE} is not UTF-8 text: {exc}") from exc
    if not password or "\n" in password:
        raise EngineError(f"{FAB_PASSWORD_FILE} does not hold one password")
    return password


def _missing(exc: EngineError) -> bool:
    msg = exc.message.lower()
    return any(s in msg for s in ("no such file", "could not find", "could not be found"))


def admin_password(
    engine: Engine, name: str, *, username: str = ADMIN_USER, missing_ok: bool = False
) -> str | None:
    """The generated admin password, read from the AIRFLOW_HOME volume through the engine.

    SimpleAuthManager's JSON file (Airflow 3) is tried first, then the FAB admin's file
    (Airflow 2). Uses ``cp NAME:FILE -`` so the image needs no ``cat``. ``missing_ok``: None
    when neither file exists (passwords set another way); otherwise that is an EngineError.
    """
    try:
        return parse_password(eng.read_file(engine, name, PASSWORD_FILE), username)
    except EngineError as exc:
        if not _missing(exc):
            raise
        first = exc
    try:
        return parse_fab_password(eng.read_file(engine, name, FAB_PASSWORD_FILE))
    except EngineError as exc:
        if missing_ok and _missing(exc):
            return None
        if _missing(exc):
            raise first from None
        raise


def stop_container(
    engine: Engine,
    name: str,
    *,
    timeout: int = 30,
    remove: bool = True,
    remove_volume: bool = False,
    on_progress: Progress = _quiet,
) -> int | None:
    """Stop (and by default remove) the container; return its exit code.

    ``remove_volume`` also deletes its AIRFLOW_HOME volume (metadata DB, logs, keys).
    """
    if not eng.container_exists(engine, name):
        raise EngineError(f"no container named {name}", hint="list containers with `podman ps -a`")
    st = eng.container_state(engine, name)
    if st.running:
        on_progress(f"stopping {name} (up to {timeout}s)")
        eng.stop(engine, name, timeout)
        st = eng.container_state(engine, name)
    if remove:
        on_progress(f"removing {name}")
        eng.remove(engine, name, force=True)
        if remove_volume and eng.volume_exists(engine, volume_name(name)):
            on_progress(f"removing volume {volume_name(name)}")
            eng.volume_remove(engine, volume_name(name))
    return st.exit_code


def attach(
    engine: Engine,
    name: str,
    *,
    stop_timeout: int = 30,
    remove: bool = True,
    on_progress: Progress = _quiet,
) -> int | None:
    """Foreground ``hardflow run``: stream the logs until the container ends or Ctrl-C.

    On Ctrl-C the container is stopped; either way it is removed (``remove``) while its
    AIRFLOW_HOME volume is kept. Returns the container's exit code.
    """
    try:
        eng.logs(engine, name, follow=True)
    except KeyboardInterrupt:
        on_progress(f"interrupted: stopping {name}")
    return stop_container(
        engine, name, timeout=stop_timeout, remove=remove, on_progress=on_progress
    )


def show_logs(engine: Engine, name: str, *, follow: bool = False, tail: int | None = None) -> str:
    """The container's logs; with ``follow`` they stream to stdout and "" is returned."""
    if not eng.container_exists(engine, name):
        raise EngineError(f"no container named {name}", hint="start one with `hardflow run`")
    return eng.logs(engine, name, follow=follow, tail=tail)


# ---------------------------------------------------------------------------------------------
# Airflow REST API (stdlib only)


class _Api:
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
            raise EngineError(f"{method} {url} failed: {getattr(exc, 'reason', exc)}") from exc
        text = raw.decode("utf-8", "replace")
        if status not in ok and status not in allow:
            detail = text.strip()[:500] or "(empty body)"
            raise EngineError(f"{method} {url} answered HTTP {status}: {detail}")
        if text_body and status in ok:
            return status, text
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError as exc:
            if status in allow:
                return status, None
            raise EngineError(f"{method} {url} did not return JSON: {text[:200]!r}") from exc


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


def login(api: _Api, username: str, password: str) -> str:
    _, doc = api.call(
        "POST", "/auth/token", {"username": username, "password": password}, ok=(200, 201)
    )
    token = doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise EngineError(f"POST {api.base}/auth/token returned no access_token")
    return token


def connect(api: _Api, username: str, password: str) -> str:
    """Authenticate ``api`` and return the REST prefix: ``/api/v2`` (Airflow 3, JWT from
    ``/auth/token``) or ``/api/v1`` (Airflow 2, basic auth; no ``/auth/token`` there)."""
    status, doc = api.call(
        "POST", "/auth/token", {"username": username, "password": password},
        ok=(200, 201), allow=(404,),
    )  # fmt: skip
    if status != 404:
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise EngineError(f"POST {api.base}/auth/token returned no access_token")
        api.token = token
        return "/api/v2"
    health_status, health = api.call("GET", "/api/v1/health", allow=(404,))
    if health_status != 200 or not isinstance(health, dict) or "metadatabase" not in health:
        raise EngineError(
            f"{api.base} is neither an Airflow 3 API server (no /auth/token) nor an "
            "Airflow 2 webserver (no /api/v1/health)"
        )
    api.basic = f"{username}:{password}"
    status, _ = api.call("GET", "/api/v1/dags?limit=1", allow=(401, 403))
    if status != 200:
        raise EngineError(
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
    api = _Api(base_url, request_timeout)
    prefix = connect(api, username, password)
    airflow2 = prefix == "/api/v1"
    dag_path = f"{prefix}/dags/{_q(dag_id)}"

    def remaining(what: str) -> None:
        if clock() - started >= timeout:
            raise EngineError(f"{what} within {timeout:.0f}s")

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
        raise EngineError(f"POST {dag_path}/dagRuns returned no dag_run_id: {run!r}")
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
