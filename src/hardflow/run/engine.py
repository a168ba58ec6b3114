"""The one place that talks to a container engine (podman first, docker second).

Every engine call goes through :func:`_call`, which names the command and the engine's own
(trimmed) error output in an :class:`EngineError` when it fails. Argument building is pure
(:func:`run_argv`) so tests can check every hardening flag without an engine.

Podman facts this module is built around (podman 4.3, rootful, no systemd as PID 1):

- Podman schedules health checks with systemd timers. Without systemd, ``podman run`` logs
  "unable to get systemd connection to add healthchecks" and exits 0, and the health status
  stays ``starting`` forever: nobody runs the check. ``podman healthcheck run NAME`` runs it
  once by hand: exit 0 (prints nothing) for healthy, exit 1 (prints ``unhealthy``) for
  unhealthy, exit 125 when the container has no health check or is not running. It updates
  ``State.Health`` in ``podman inspect``. :func:`probe_health` wraps that; the runner loops it.
- A string ``--health-cmd`` is run with ``/bin/sh -c``; a JSON array is run as is (``CMD``
  form). Images without ``/bin/sh`` need the JSON form, which is what :func:`run_argv` writes.
- When ``podman run`` fails after creating the container (a taken port, for instance) the
  container is left behind in state ``created``; :func:`run_container` removes it.
- ``podman load`` prints ``Loaded image: REF`` (or ``Loaded image(s): A,B``) on stdout.
- ``podman cp NAME:PATH -`` writes a tar stream to stdout, for running containers too, and
  needs no program inside the image (:func:`read_file`).

Names are hostile input (``--name=-l`` would reach podman as its "latest container" option):
every function that takes a container or volume name checks it with :func:`check_name` (podman's
own rule, bounded length) before anything runs, and every command line puts positional names and
image references after ``--``. Whether a container is one hardflow started is the runner's
question (:mod:`hardflow.run.runner`), answered from :func:`container_labels`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hardflow.errors import EngineError
from hardflow.run.redact import redact_userinfo

EngineName = Literal["podman", "docker"]
ENGINE_ENV = "HARDFLOW_ENGINE"
_ENGINE_ORDER: tuple[EngineName, ...] = ("podman", "docker")
_PROBE_TIMEOUT = 30.0
_DEFAULT_TIMEOUT = 300.0
_ERROR_LINES = 12
# Noise podman prints on every health-checked container when systemd is not PID 1.
_NOISE = re.compile(r"systemd connection|Removing timer for container")
# podman's rule for container and volume names, matched whole (a '$' would let a final newline
# through); the bound keeps names, and the volume named after a container, short.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_MAX = 128
# An image reference may hold '/', ':' and '@' but never starts like an option or holds blanks.
_IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]*")


@dataclass(frozen=True)
class Engine:
    """A usable container engine: its kind and the absolute path of its CLI."""

    name: EngineName
    path: str


@dataclass(frozen=True)
class BindMount:
    """A host directory mounted into the container."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class PortMapping:
    """``host_ip:host_port`` on the host forwarded to ``container_port`` (TCP)."""

    host_port: int
    container_port: int
    host_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class HealthCheck:
    """A health check override; ``command`` is exec form (no shell)."""

    command: tuple[str, ...]
    interval_s: int = 10
    timeout_s: int = 10
    retries: int = 3
    start_period_s: int = 0


@dataclass(frozen=True)
class RunOptions:
    """Everything :func:`run_argv` turns into a ``run`` command line.

    The hardening defaults match the image contract: read-only root, every capability
    dropped, no privilege escalation, a tmpfs ``/tmp``, and nothing pulled from a registry.
    """

    image: str
    name: str
    command: tuple[str, ...] = ()
    user: str | None = None
    read_only: bool = True
    cap_drop_all: bool = True
    no_new_privileges: bool = True
    tmpfs: tuple[str, ...] = ("/tmp",)
    volumes: Mapping[str, str] = field(default_factory=dict)  # named volume -> container path
    binds: tuple[BindMount, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    detach: bool = True
    remove: bool = False
    healthcheck: HealthCheck | None = None
    stop_timeout: int | None = None
    pids_limit: int | None = None
    memory: str | None = None
    workdir: str | None = None
    network: str | None = None  # e.g. "none": no network at all
    entrypoint: str | None = None  # one executable replacing the image's entrypoint


@dataclass(frozen=True)
class ContainerState:
    """What ``inspect`` says about a container."""

    name: str
    status: str  # created, running, paused, exited, stopped, ...
    running: bool
    exit_code: int | None  # None while it has not run to an end
    health: str | None  # healthy, unhealthy, starting, or None without a health check
    oom_killed: bool = False


TMPFS_OPTIONS = "rw,nosuid,nodev,mode=1777"


# ---------------------------------------------------------------------------------------------
# running the engine's CLI


def _trim(text: str, lines: int = _ERROR_LINES) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip() and not _NOISE.search(ln)]
    return redact_userinfo("\n".join(kept[-lines:]))


def _describe(argv: Sequence[str]) -> str:
    return shlex.join([os.path.basename(argv[0]), *argv[1:]])


def _call(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = _DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    text: bool = True,
    merge_stderr: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run an engine command, capturing its output; raise EngineError when it fails."""
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            text=text,
            errors="replace" if text else None,
            timeout=timeout,
            env=full_env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise EngineError(f"cannot run `{_describe(argv)}`: {argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`{_describe(argv)}` did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        raise EngineError(
            f"`{_describe(argv)}` failed with exit status {proc.returncode}:\n"
            f"{_trim(proc.stderr or proc.stdout or '') or '(no output)'}"
        )
    return proc


def _call_bytes(argv: Sequence[str], *, timeout: float = _DEFAULT_TIMEOUT) -> bytes:
    try:
        proc = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"cannot run `{_describe(argv)}`: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        raise EngineError(
            f"`{_describe(argv)}` failed with exit status {proc.returncode}:\n"
            f"{_trim(err) or '(no output)'}"
        )
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# finding an engine


def _probe(name: EngineName, path: str) -> str | None:
    """None when the engine answers; otherwise why it does not."""
    argv = [path, "info", "--format", "{{json .}}"] if name == "docker" else [path, "info"]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{name} info` could not run: {exc}"
    if proc.returncode != 0:
        return f"`{name} info` failed: {_trim(proc.stderr or proc.stdout, 3) or 'no output'}"
    return None


def detect_engine(preferred: str | None = None) -> Engine:
    """Find a usable engine: ``preferred``, else ``$HARDFLOW_ENGINE``, else podman, then docker.

    ``preferred`` is ``podman``, ``docker`` or a path to one of them. An engine counts as
    usable only when ``<engine> info`` succeeds (a docker CLI without a daemon does not).
    """
    choice = preferred or os.environ.get(ENGINE_ENV) or None
    if choice:
        base = os.path.basename(choice)
        kind: EngineName
        if base.startswith("podman"):
            kind = "podman"
        elif base.startswith("docker"):
            kind = "docker"
        else:
            raise EngineError(
                f"unknown container engine {choice!r}: expected podman or docker",
                hint=f"set {ENGINE_ENV}=podman or {ENGINE_ENV}=docker",
            )
        candidates: list[tuple[EngineName, str]] = [(kind, choice)]
    else:
        candidates = [(n, n) for n in _ENGINE_ORDER]

    reasons: list[str] = []
    for kind, cmd in candidates:
        path = shutil.which(cmd)
        if path is None:
            reasons.append(f"{cmd}: not found on PATH")
            continue
        why = _probe(kind, path)
        if why is None:
            return Engine(kind, path)
        reasons.append(f"{kind} ({path}): {why}")
    raise EngineError(
        "no usable container engine:\n  " + "\n  ".join(reasons),
        hint="install podman (Debian: apt-get install podman runc) or start the docker daemon; "
        f"choose one with {ENGINE_ENV}",
    )


# ---------------------------------------------------------------------------------------------
# images


def parse_loaded_ref(stdout: str) -> str:
    """The first image reference named in ``load`` output (podman and docker formats)."""
    for line in stdout.splitlines():
        m = re.match(r"^Loaded image(?:\(s\))?(?: ID)?:\s*(.+)$", line.strip())
        if m:
            return m.group(1).split(",")[0].strip()
    raise EngineError(f"could not find the loaded image in the engine's output:\n{_trim(stdout)}")


def load_archive(engine: Engine, archive: Path) -> str:
    """Load a docker-archive (or oci-archive with podman) and return its image reference."""
    if not archive.is_file():
        raise EngineError(f"image archive {archive} does not exist")
    proc = _call([engine.path, "load", "-i", str(archive)], timeout=1800)
    return parse_loaded_ref(proc.stdout)


def save_argv(engine: Engine, ref: str, dest: Path) -> list[str]:
    """The command line that writes ``ref`` from the local store as a docker-archive."""
    check_image_ref(ref)
    argv = [engine.path, "save", "--output", str(dest)]
    if engine.name == "podman":
        argv += ["--format", "docker-archive"]
    return [*argv, "--", ref]


def save_image(engine: Engine, ref: str, dest: Path) -> Path:
    """Write the local image ``ref`` to ``dest`` as a docker-archive (for audits)."""
    if not image_exists(engine, ref):
        raise EngineError(
            f"no image {ref!r} in the local {engine.name} store",
            hint="give a path to an OCI layout or an image archive, or load the image first",
        )
    _call(save_argv(engine, ref, dest), timeout=1800)
    return dest


def image_exists(engine: Engine, ref: str) -> bool:
    check_image_ref(ref)
    argv = [engine.path, "image", "inspect", "--format", "{{.Id}}", "--", ref]
    proc = _call(argv, check=False)
    return proc.returncode == 0


def load_layout(engine: Engine, layout: Path) -> str:
    """Load an OCI layout directory (podman only) and return the name podman gives it (from
    the directory's path). Layers already in the store are not copied again."""
    if engine.name != "podman":
        raise EngineError(f"{engine.name} cannot load an OCI layout directory ({layout})")
    return parse_loaded_ref(_call([engine.path, "load", "-i", str(layout)], timeout=1800).stdout)


def image_info(engine: Engine, ref: str) -> tuple[str, tuple[str, ...]] | None:
    """(ID, names) of the local image ``ref``; None when there is none."""
    fmt = "{{.Id}}{{range .RepoTags}} {{.}}{{end}}"
    argv = [engine.path, "image", "inspect", "--format", fmt, "--", check_image_ref(ref)]
    proc = _call(argv, check=False)
    parts = proc.stdout.split()
    return (parts[0], tuple(parts[1:])) if proc.returncode == 0 and parts else None


def remove_image(engine: Engine, ref: str) -> None:
    """Remove the name (or image ID) ``ref``; the image goes when nothing else names it."""
    _call([engine.path, "rmi", "--", check_image_ref(ref)])


# ---------------------------------------------------------------------------------------------
# containers


def check_name(name: str, what: str = "container", option: str | None = None) -> str:
    """``name`` if it is a valid container or volume name; EngineError naming it otherwise.

    ``what`` is "container" or "volume"; ``option`` the command-line option the name came from
    (``--name``), for the message.
    """
    given = f" given as {option}" if option else ""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or len(name) > NAME_MAX:
        raise EngineError(
            f"invalid {what} name {name!r}{given}: expected 1 to {NAME_MAX} letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return name


def check_image_ref(ref: str) -> str:
    """``ref`` if it can be an image reference (never an option); EngineError otherwise."""
    if not isinstance(ref, str) or not _IMAGE_RE.fullmatch(ref) or len(ref) > 1024:
        raise EngineError(
            f"invalid image reference {ref!r}: expected NAME[:TAG][@DIGEST], starting with a "
            "letter or digit, without blanks"
        )
    return ref


def _health_argv(engine: Engine, hc: HealthCheck) -> list[str]:
    # podman takes exec form as JSON (no /bin/sh needed in the image); docker's CLI only has
    # the shell form.
    cmd = json.dumps(list(hc.command)) if engine.name == "podman" else shlex.join(hc.command)
    return [
        "--health-cmd", cmd,
        "--health-interval", f"{hc.interval_s}s",
        "--health-timeout", f"{hc.timeout_s}s",
        "--health-retries", str(hc.retries),
        "--health-start-period", f"{hc.start_period_s}s",
    ]  # fmt: skip


def run_argv(engine: Engine, opts: RunOptions) -> list[str]:
    """The full ``run`` command line for ``opts`` (pure; env values are not in it).

    Environment variables are passed as ``--env NAME`` only: the engine takes the value from
    its own environment (see :func:`run_container`), so no value shows up in ``ps``.
    """
    check_name(opts.name, "container")
    check_image_ref(opts.image)
    argv = [engine.path, "run", "--name", opts.name, "--pull", "never"]
    if opts.detach:
        argv.append("--detach")
    if opts.remove:
        argv.append("--rm")
    if opts.user is not None:
        argv += ["--user", opts.user]
    if opts.read_only:
        argv.append("--read-only")
    if opts.cap_drop_all:
        argv.append("--cap-drop=ALL")
    if opts.no_new_privileges:
        argv += ["--security-opt", "no-new-privileges"]
    for path in opts.tmpfs:
        argv += ["--tmpfs", f"{path}:{TMPFS_OPTIONS}"]
    for volume, target in opts.volumes.items():
        check_name(volume, "volume")
        argv += ["--mount", f"type=volume,source={volume},target={target}"]
    for bind in opts.binds:
        src = str(bind.source)
        if not os.path.isabs(src) or "," in src or "," in bind.target:
            raise EngineError(f"bind mount source {src!r} must be an absolute path without ','")
        spec = f"type=bind,source={src},target={bind.target}"
        if bind.read_only:
            spec += ",readonly=true"
        argv += ["--mount", spec]
    for port in opts.ports:
        argv += ["--publish", f"{port.host_ip}:{port.host_port}:{port.container_port}/tcp"]
    for key in sorted(opts.env):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise EngineError(f"invalid environment variable name {key!r}")
        argv += ["--env", key]
    for key in sorted(opts.labels):
        argv += ["--label", f"{key}={opts.labels[key]}"]
    if opts.healthcheck is not None:
        argv += _health_argv(engine, opts.healthcheck)
    if opts.stop_timeout is not None:
        argv += ["--stop-timeout", str(opts.stop_timeout)]
    if opts.pids_limit is not None:
        argv += ["--pids-limit", str(opts.pids_limit)]
    if opts.memory is not None:
        argv += ["--memory", opts.memory]
    if opts.workdir is not None:
        argv += ["--workdir", opts.workdir]
    if opts.network is not None:
        argv.append(f"--network={opts.network}")
    if opts.entrypoint is not None:
        argv += ["--entrypoint", opts.entrypoint]
    argv += ["--", opts.image, *opts.command]
    return argv


def container_exists(engine: Engine, name: str) -> bool:
    check_name(name, "container")
    argv = [engine.path, "container", "inspect", "--format", "{{.Id}}", "--", name]
    return _call(argv, check=False).returncode == 0


def parse_labels(what: str, name: str, inspect_json: str) -> dict[str, str] | None:
    """The labels in ``container inspect`` (``Config.Labels``) or ``volume inspect``
    (``Labels``) JSON, podman or docker; {} for an object without labels.

    None when the object inspected is not named exactly ``name``: engines also resolve a
    container by a prefix of its id, and ``--name c`` must not mean "the container whose id
    starts with c".
    """
    try:
        data = json.loads(inspect_json)
    except json.JSONDecodeError as exc:
        raise EngineError(f"could not parse the engine's inspect output for {name}: {exc}") from exc
    if isinstance(data, list):
        if not data:
            return None
        data = data[0]
    if not isinstance(data, dict):
        raise EngineError(f"the engine's inspect output for {what} {name} is not an object")
    if str(data.get("Name", "")).lstrip("/") != name:  # docker writes container names as "/x"
        return None
    holder = data.get("Config") if what == "container" else data
    labels = holder.get("Labels") if isinstance(holder, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def container_labels(engine: Engine, name: str) -> dict[str, str] | None:
    """The labels of the container named exactly ``name``; None when there is none."""
    check_name(name, "container")
    proc = _call([engine.path, "container", "inspect", "--", name], check=False)
    if proc.returncode != 0:
        return None
    return parse_labels("container", name, proc.stdout)


def run_container(engine: Engine, opts: RunOptions) -> str:
    """Start a container and return its id (detached runs) or its output (attached runs).

    A container left in ``created`` by a failed start (a port in use, a bad mount) is removed
    so the name stays free.
    """
    argv = run_argv(engine, opts)
    existed = container_exists(engine, opts.name)
    proc = _call(argv, check=False, env=dict(opts.env), timeout=None if not opts.detach else 600)
    if proc.returncode != 0:
        if not existed and container_exists(engine, opts.name):
            _call([engine.path, "rm", "--force", "--", opts.name], check=False)
        raise EngineError(
            f"`{_describe(argv)}` failed with exit status {proc.returncode}:\n"
            f"{_trim(proc.stderr or proc.stdout or '') or '(no output)'}"
        )
    out = proc.stdout.strip()
    if opts.detach:
        return out.splitlines()[-1] if out else opts.name
    return out


def parse_state(name: str, inspect_json: str) -> ContainerState:
    """A :class:`ContainerState` from ``container inspect`` JSON (podman or docker)."""
    try:
        data = json.loads(inspect_json)
    except json.JSONDecodeError as exc:
        raise EngineError(f"could not parse the engine's inspect output for {name}: {exc}") from exc
    if isinstance(data, list):
        if not data:
            raise EngineError(f"no container named {name}")
        data = data[0]
    state = data.get("State") or {}
    status = str(state.get("Status") or "unknown").lower()
    running = bool(state.get("Running"))
    health_block = state.get("Health") or state.get("Healthcheck") or {}
    health = str(health_block.get("Status") or "").lower() or None
    exit_code: int | None = None
    if not running and status not in ("created", "configured", "initialized"):
        exit_code = int(state.get("ExitCode") or 0)
    return ContainerState(
        name=name,
        status=status,
        running=running,
        exit_code=exit_code,
        health=health,
        oom_killed=bool(state.get("OOMKilled")),
    )


def container_state(engine: Engine, name: str) -> ContainerState:
    check_name(name, "container")
    proc = _call([engine.path, "container", "inspect", "--", name], check=False)
    if proc.returncode != 0:
        raise EngineError(
            f"no container named {name} ({_trim(proc.stderr, 2) or 'inspect failed'})"
        )
    return parse_state(name, proc.stdout)


HealthProbe = Literal["healthy", "unhealthy", "none"]


def probe_health(engine: Engine, name: str) -> HealthProbe:
    """Run the container's health check once, by hand (podman), or read it (docker).

    ``none``: the container has no health check (podman), or docker has no status yet.
    Raises EngineError if the container is not running.
    """
    check_name(name, "container")
    if engine.name == "docker":
        st = container_state(engine, name)
        if not st.running:
            raise EngineError(f"container {name} is not running (status {st.status})")
        if st.health == "healthy":
            return "healthy"
        return "unhealthy" if st.health in ("unhealthy", "starting") else "none"
    proc = _call([engine.path, "healthcheck", "run", "--", name], check=False, timeout=120)
    if proc.returncode == 0:
        return "healthy"
    if proc.returncode == 1:
        return "unhealthy"
    err = _trim(proc.stderr or proc.stdout, 3)
    if "no defined healthcheck" in err:
        return "none"
    if "exceeded timeout" in err:  # a slow probe on a busy host: not healthy yet
        return "unhealthy"
    raise EngineError(f"`podman healthcheck run {name}` failed: {err or 'no output'}")


def exec_in(
    engine: Engine,
    name: str,
    argv: Sequence[str],
    user: str | None = None,
    *,
    check: bool = True,
    timeout: float | None = _DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    check_name(name, "container")
    cmd = [engine.path, "exec"]
    if user is not None:
        cmd += ["--user", user]
    cmd += ["--", name, *argv]
    return _call(cmd, check=check, timeout=timeout)


def read_file(engine: Engine, name: str, path: str) -> bytes:
    """A regular file's bytes from a (running or stopped) container, via ``cp NAME:PATH -``.

    Needs no program in the image.
    """
    check_name(name, "container")
    if not path.startswith("/"):
        raise EngineError(f"container path {path!r} must be absolute")
    data = _call_bytes([engine.path, "cp", "--", f"{name}:{path}", "-"])
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read()
    except tarfile.TarError as exc:
        raise EngineError(f"`cp {name}:{path}` did not return a tar stream: {exc}") from exc
    raise EngineError(f"{path} in container {name} is not a regular file")


def stop(engine: Engine, name: str, timeout: int = 30) -> None:
    check_name(name, "container")
    _call([engine.path, "stop", "--time", str(timeout), "--", name], timeout=timeout + 60)


def wait(engine: Engine, name: str, timeout: float = _DEFAULT_TIMEOUT) -> int:
    """Block until the container exits; return its exit code."""
    check_name(name, "container")
    proc = _call([engine.path, "wait", "--", name], timeout=timeout)
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise EngineError(f"`wait {name}` printed no exit code: {proc.stdout!r}") from exc


def remove(engine: Engine, name: str, *, force: bool = False) -> None:
    check_name(name, "container")
    argv = [engine.path, "rm"]
    if force:
        argv.append("--force")
    _call([*argv, "--", name])


def logs(engine: Engine, name: str, follow: bool = False, tail: int | None = None) -> str:
    """The container's output (stdout and stderr merged).

    With ``follow`` the output streams to this process's stdout until the container stops
    (or Ctrl-C), and an empty string is returned.
    """
    check_name(name, "container")
    argv = [engine.path, "logs"]
    if tail is not None:
        argv += ["--tail", str(tail)]
    if follow:
        argv += ["--follow", "--", name]
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode
        except FileNotFoundError as exc:
            raise EngineError(f"cannot run `{_describe(argv)}`: {exc}") from exc
        if rc != 0:
            raise EngineError(f"`{_describe(argv)}` failed with exit status {rc}")
        return ""
    return _call([*argv, "--", name], merge_stderr=True).stdout


# ---------------------------------------------------------------------------------------------
# volumes


def volume_exists(engine: Engine, name: str) -> bool:
    check_name(name, "volume")
    return _call([engine.path, "volume", "inspect", "--", name], check=False).returncode == 0


def volume_labels(engine: Engine, name: str) -> dict[str, str] | None:
    """The volume's labels; None when there is no such volume."""
    check_name(name, "volume")
    proc = _call([engine.path, "volume", "inspect", "--", name], check=False)
    if proc.returncode != 0:
        return None
    return parse_labels("volume", name, proc.stdout)


def volume_create(engine: Engine, name: str, labels: Mapping[str, str] | None = None) -> None:
    check_name(name, "volume")
    argv = [engine.path, "volume", "create"]
    for key in sorted(labels or {}):
        argv += ["--label", f"{key}={(labels or {})[key]}"]
    _call([*argv, "--", name])


def volume_remove(engine: Engine, name: str, *, force: bool = False) -> None:
    check_name(name, "volume")
    argv = [engine.path, "volume", "rm"]
    if force:
        argv.append("--force")
    _call([*argv, "--", name])
