"""The host side of ``hardflow run | stop | logs | password``: start the image hardened, wait
until it is healthy, read the generated admin password, stop and remove it.

Driving a DAG run over Airflow's REST API is :mod:`hardflow.run.airflow_api`.

Container names come from the command line and are hostile input. Every function here that
takes one checks it first (:func:`hardflow.run.engine.check_name`, naming the ``--name``
option), and only stops, removes, follows or reads containers and volumes that carry a label
hardflow puts on what it starts (:data:`MANAGED_LABEL`; the bench's :data:`BENCH_LABEL` also
counts): a container of the same name that someone else started is refused with an
EngineError that says so, before anything reaches it.

The generated admin password is SimpleAuthManager's JSON file on Airflow 3, and the file the
hardflow entrypoint keeps for FAB users on Airflow 2 (plain text).

Only the standard library is used here: the host running ``hardflow`` may be any Python.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hardflow.contract import AIRFLOW_HOME, API_PORT, DAGS_DIR, HEALTH_COMMAND, STATE_DIR
from hardflow.errors import EngineError
from hardflow.run import engine as eng

# Kept importable from here for modules that predate airflow_api (the CLI, the bench and
# run/demo.py import them from the runner); new code imports them from airflow_api.
from hardflow.run.engine import BindMount, Engine, HealthCheck, PortMapping, RunOptions
from hardflow.run.redact import redact_userinfo

Progress = Callable[[str], None]

# Written by the in-image entrypoint (SimpleAuthManager's own default location):
# JSON {"admin": "<password>"}.
PASSWORD_FILE = f"{AIRFLOW_HOME}/simple_auth_manager_passwords.json.generated"
# Airflow 2 (FAB users): the entrypoint's generated password, plain text.
FAB_PASSWORD_FILE = f"{STATE_DIR}/admin_password"
ADMIN_USER = "admin"
MANAGED_LABEL = "io.hardflow.managed"
# What `hardflow bench` puts on its containers and volumes: hardflow's too.
BENCH_LABEL = "io.hardflow.bench"
OWNER_LABELS = (MANAGED_LABEL, BENCH_LABEL)
NAME_OPTION = "--name"
VOLUME_SUFFIX = "-home"
LOG_TAIL_ON_ERROR = 30


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


# ---------------------------------------------------------------------------------------------
# naming and options (pure)


def volume_name(container: str) -> str:
    """The AIRFLOW_HOME volume that belongs to a container."""
    return f"{container}{VOLUME_SUFFIX}"


def check_container_name(name: str, option: str = NAME_OPTION) -> str:
    """``name`` if it is a valid container name whose volume name is valid too (pure).

    Raises EngineError naming ``option`` and the value: ``--name=-l`` must never reach the
    engine, where it would mean "the latest container".
    """
    eng.check_name(name, "container", option)
    if len(volume_name(name)) > eng.NAME_MAX:
        raise EngineError(
            f"invalid container name {name!r} given as {option}: at most "
            f"{eng.NAME_MAX - len(VOLUME_SUFFIX)} characters, so that its volume "
            f"{volume_name(name)!r} is a valid name too"
        )
    return name


def is_hardflows(labels: Mapping[str, str]) -> bool:
    """Whether a container or volume carries a label hardflow puts on what it creates."""
    return any(labels.get(key) == "true" for key in OWNER_LABELS)


def _not_ours(what: str, name: str) -> EngineError:
    return EngineError(
        f"{what} {name} exists but was not started by hardflow (it has no {MANAGED_LABEL}=true "
        f"label): hardflow does not stop, remove or read it",
        hint=f"pick another {NAME_OPTION}, or manage that {what} with the engine itself",
    )


def require_container(engine: Engine, name: str) -> None:
    """Check that ``name`` is a valid name of an existing container hardflow started."""
    check_container_name(name)
    labels = eng.container_labels(engine, name)
    if labels is None:
        raise EngineError(
            f"no container named {name}",
            hint="start one with `hardflow run`; list containers with `podman ps -a`",
        )
    if not is_hardflows(labels):
        raise _not_ours("container", name)


def require_volume_if_present(engine: Engine, name: str) -> bool:
    """Whether the volume exists; EngineError when it exists but hardflow did not create it."""
    labels = eng.volume_labels(engine, name)
    if labels is None:
        return False
    if not is_hardflows(labels):
        raise _not_ours("volume", name)
    return True


def run_options(req: RunRequest) -> RunOptions:
    """The hardened :class:`RunOptions` for a request (pure; validates the request)."""
    check_container_name(req.name)
    eng.check_image_ref(req.image)
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
        ports=(PortMapping(req.port, API_PORT, "127.0.0.1"),),
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
    # a volume someone else made would be mounted as AIRFLOW_HOME: refuse it
    if not require_volume_if_present(engine, volume):
        on_progress(f"creating volume {volume} for {AIRFLOW_HOME}")
        eng.volume_create(engine, volume, {MANAGED_LABEL: "true"})
    elif req.dags is None:
        # the engine copies the image's AIRFLOW_HOME (baked DAGs and plugins included) into a
        # volume only when it is first mounted: an existing one keeps what an earlier image had
        on_progress(
            f"reusing volume {volume}: DAGs and plugins baked into the image are the ones it was "
            f"made with (`hardflow stop --name {req.name} --volume` to start from the image's)"
        )
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
    # Airflow may log a connection string: its password stays out of the error message
    return redact_userinfo(text.rstrip()) or "(no output)"


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
    log lines. Only a container hardflow started is watched (:func:`require_container`).
    """
    require_container(engine, name)
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
    Only a container hardflow started is read (:func:`require_container`).
    """
    require_container(engine, name)
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

    ``remove_volume`` also deletes its AIRFLOW_HOME volume (metadata DB, logs, keys). Both
    must carry hardflow's label; that is checked before anything is stopped, so a refusal leaves
    everything as it was.
    """
    require_container(engine, name)
    volume = volume_name(name)
    drop_volume = remove and remove_volume and require_volume_if_present(engine, volume)
    st = eng.container_state(engine, name)
    if st.running:
        on_progress(f"stopping {name} (up to {timeout}s)")
        eng.stop(engine, name, timeout)
        st = eng.container_state(engine, name)
    if remove:
        on_progress(f"removing {name}")
        eng.remove(engine, name, force=True)
        if drop_volume:
            on_progress(f"removing volume {volume}")
            eng.volume_remove(engine, volume)
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
    require_container(engine, name)
    try:
        eng.logs(engine, name, follow=True)
    except KeyboardInterrupt:
        on_progress(f"interrupted: stopping {name}")
    return stop_container(
        engine, name, timeout=stop_timeout, remove=remove, on_progress=on_progress
    )


def show_logs(engine: Engine, name: str, *, follow: bool = False, tail: int | None = None) -> str:
    """The container's logs; with ``follow`` they stream to stdout and "" is returned.

    Only a container hardflow started is read (:func:`require_container`).
    """
    if tail is not None and tail < 0:
        raise EngineError(f"invalid --tail {tail}: expected a number of lines >= 0")
    require_container(engine, name)
    return eng.logs(engine, name, follow=follow, tail=tail)
