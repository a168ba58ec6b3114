#!/usr/bin/python3 -IS
"""Health check of hardflow images (stdlib only, never imports Airflow; Python 3.11+).

The shebang names ``/usr/bin/python3``, the alias every hardflow image has for its one
interpreter (python3.13 in Airflow 3 images, python3.11 in Airflow 2 images).

Run as ``python3 -I -S health.py [ROLE]`` (the image's ``hardflow-health``) by HEALTHCHECK,
compose and Kubernetes probes.  The entrypoint records the container's role, the PID of the
Airflow process (the entrypoint execs it, so the PID is the entrypoint's) and the URLs to probe
in a small JSON state file: ``/tmp/hardflow-role-<mount namespace id>``, or
``$HARDFLOW_STATE_FILE``. The mount namespace is the container's own - an ``exec`` into the
container (a probe, a HEALTHCHECK) joins it - so the containers of a pod sharing one ``/tmp``
each read their own state. ``hardflow-health ROLE`` without a state file probes the role's
default URLs, as before.

Per role:

- ``api-server``: GET ``/api/v2/monitor/health`` answers 200 and the metadata DB is healthy.
- ``standalone``: the same, plus scheduler, triggerer and dag_processor healthy in that JSON.
- ``scheduler``: the scheduler's own health server (``/health`` on port 8974) answers 200;
  the entrypoint turns it on with ``AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=True``.
- ``celery-flower``: Flower's ``/healthcheck`` answers 200.
- ``triggerer``, ``dag-processor``, ``celery-worker`` and any other command: Airflow 3 offers
  them no health endpoint, so the recorded process must be alive (not a zombie) and still be
  the command that was started.  With ``HARDFLOW_HEALTH_API_URL`` set (the base URL of an API
  server), triggerer and dag-processor also need their heartbeat to be healthy in its JSON.

Airflow 2 images (the state file says ``"airflow_major": 2``):

- ``webserver``: GET ``/health`` on the webserver (port 8080) answers 200 and the metadata DB
  is healthy.
- ``standalone``: the same, plus scheduler and triggerer healthy; ``dag_processor`` healthy
  or ``null`` (Airflow 2 reports null while no standalone DAG processor is configured).
- the other roles as above; ``HARDFLOW_HEALTH_API_URL`` is then the webserver's base URL.

Exit status 0 when healthy, 1 when not; one line saying why on stdout. A URL's password
(``scheme://user:password@``, e.g. in ``HARDFLOW_HEALTH_API_URL``) never shows in that line.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

DEFAULT_STATE_FILE = "/tmp/hardflow-role"
API_HEALTH_PATH = "/api/v2/monitor/health"
STANDALONE_COMPONENTS = ("scheduler", "triggerer", "dag_processor")
# Airflow 2: the webserver's health JSON, and the components its standalone must report.
WEBSERVER_HEALTH_PATH = "/health"
STANDALONE_COMPONENTS_2 = ("scheduler", "triggerer")
OPTIONAL_COMPONENTS_2 = ("dag_processor",)
API_COMPONENT_OF_ROLE = {"triggerer": "triggerer", "dag-processor": "dag_processor"}
# Words that must appear in the watched process's command line, per role.
PROCESS_MARKERS: dict[str, tuple[bytes, ...]] = {
    "triggerer": (b"airflow", b"triggerer"),
    "dag-processor": (b"airflow", b"dag-processor"),
    # celery retitles its process to "[celeryd: celery@HOST:MainProcess] ... (celery worker)"
    "celery-worker": (b"celery",),
    "airflow": (b"airflow",),
}


# The userinfo of a URL runs to the last '@' before a blank or a quote (a raw password may hold
# '@', '/' or '?'); redacting a little too much is the safe mistake.
USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>]*)@")


def redact_userinfo(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` shown as ``***``."""

    def replace(match: re.Match[str]) -> str:
        userinfo = match.group("userinfo")
        if ":" not in userinfo:
            return match.group(0)
        return f"{match.group('scheme')}{userinfo.split(':', 1)[0]}:***@"

    return USERINFO.sub(replace, text)


class Unhealthy(Exception):
    """The component is not healthy; the message says why, on one line."""


def mount_namespace() -> str:
    """This container's mount namespace id, "" if unknown (same as the entrypoint's)."""
    try:
        link = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return ""
    match = re.fullmatch(r"mnt:\[(\d+)\]", link)
    return match.group(1) if match else ""


def state_file_path(
    env: Mapping[str, str],
    base: str | None = None,
    namespace: Callable[[], str] | None = None,
) -> str:
    """The state file the entrypoint of this container wrote (see the entrypoint's
    ``state_file_path``: both must name the same file)."""
    explicit = env.get("HARDFLOW_STATE_FILE", "")
    if explicit:
        return explicit
    base = DEFAULT_STATE_FILE if base is None else base
    key = (namespace or mount_namespace)()
    return f"{base}-{key}" if key else base


def load_state(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        raise Unhealthy(f"no state file {path}: the entrypoint has not run yet") from None
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"cannot read state file {path}: {exc}") from None
    if not isinstance(state, dict) or not isinstance(state.get("role"), str):
        raise Unhealthy(f"state file {path} has no role")
    return state


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` without proxies; (status, body).  Loopback TLS is not verified."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read(1_000_000))
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unhealthy(f"GET {url} failed: {reason}") from None
    except (ValueError, http.client.HTTPException) as exc:  # InvalidURL: a userinfo, a bad port
        raise Unhealthy(f"GET {url} failed: {type(exc).__name__}") from None


def component_status(payload: Mapping[str, Any], name: str) -> str | None:
    entry = payload.get(name)
    if not isinstance(entry, Mapping):
        return None
    status = entry.get("status")
    return status if isinstance(status, str) else None


def evaluate_api_health(
    payload: Any, components: Sequence[str], optional: Sequence[str] = ()
) -> str:
    """Judge Airflow's health JSON: metadatabase and ``components`` must be "healthy";
    ``optional`` ones must be "healthy" or null (not running in this deployment)."""
    if not isinstance(payload, Mapping):
        raise Unhealthy("API health answer is not a JSON object")
    problems = []
    for name in ("metadatabase", *components):
        status = component_status(payload, name)
        if status != "healthy":
            problems.append(f"{name}={status or 'unknown'}")
    for name in optional:
        status = component_status(payload, name)
        if status not in ("healthy", None):
            problems.append(f"{name}={status}")
    if problems:
        raise Unhealthy("API health: " + ", ".join(problems))
    return "API health: " + ", ".join(f"{n}=healthy" for n in ("metadatabase", *components))


def check_api(
    url: str, components: Sequence[str], timeout: float, optional: Sequence[str] = ()
) -> str:
    status, body = http_get(url, timeout)
    if status != 200:
        raise Unhealthy(f"GET {url} answered HTTP {status}")
    try:
        payload = json.loads(body)
    except ValueError:
        raise Unhealthy(f"GET {url} did not answer JSON") from None
    return evaluate_api_health(payload, components, optional)


def check_http_ok(url: str, timeout: float) -> str:
    status, _ = http_get(url, timeout)
    if status != 200:
        raise Unhealthy(f"GET {url} answered HTTP {status}")
    return f"GET {url} answered 200"


def check_process(pid: object, markers: Sequence[bytes], proc_root: str = "/proc") -> str:
    """The process ``pid`` runs, is not a zombie, and its command line holds ``markers``."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise Unhealthy(f"state file holds no valid pid ({pid!r})")
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as handle:
            stat = handle.read()
        with open(f"{proc_root}/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        raise Unhealthy(f"process {pid} is gone") from None
    state = stat[stat.rfind(b")") + 2 :][:1]
    if state in (b"Z", b"X", b"x"):
        raise Unhealthy(f"process {pid} has exited (state {state.decode()})")
    words = cmdline.split(b"\0")
    missing = [m.decode() for m in markers if not any(m in w for w in words)]
    if missing:
        shown = b" ".join(words).decode("utf-8", "replace").strip()[:80]
        raise Unhealthy(f"process {pid} is not the expected command ({shown!r})")
    return f"process {pid} is running"


def airflow_major(state: Mapping[str, Any], role: str) -> int:
    """The Airflow major version the entrypoint recorded (3 for state files without it)."""
    major = state.get("airflow_major")
    if isinstance(major, int) and not isinstance(major, bool):
        return major
    return 2 if role == "webserver" else 3


def check(role: str, state: Mapping[str, Any], env: Mapping[str, str], timeout: float) -> str:
    """Return a one-line reason when healthy; raise Unhealthy otherwise."""
    major = airflow_major(state, role)
    if major == 2 and role in ("webserver", "standalone"):
        url = str(state.get("api_health_url") or f"http://127.0.0.1:8080{WEBSERVER_HEALTH_PATH}")
        if role == "standalone":
            return check_api(url, STANDALONE_COMPONENTS_2, timeout, OPTIONAL_COMPONENTS_2)
        return check_api(url, (), timeout)
    if role in ("api-server", "standalone"):
        url = str(state.get("api_health_url") or f"http://127.0.0.1:8080{API_HEALTH_PATH}")
        components = STANDALONE_COMPONENTS if role == "standalone" else ()
        return check_api(url, components, timeout)
    if role == "scheduler":
        url = state.get("scheduler_health_url") or "http://127.0.0.1:8974/health"
        return check_http_ok(str(url), timeout)
    if role == "celery-flower":
        url = state.get("flower_health_url") or "http://127.0.0.1:5555/healthcheck"
        return check_http_ok(str(url), timeout)
    reason = check_process(state.get("pid"), PROCESS_MARKERS.get(role, ()))
    api_base = env.get("HARDFLOW_HEALTH_API_URL", "").rstrip("/")
    if api_base and role in API_COMPONENT_OF_ROLE:
        path = WEBSERVER_HEALTH_PATH if major == 2 else API_HEALTH_PATH
        check_api(api_base + path, (API_COMPONENT_OF_ROLE[role],), timeout)
        reason += f", {API_COMPONENT_OF_ROLE[role]} heartbeat healthy"
    return reason


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ
    try:
        timeout = float(env.get("HARDFLOW_HEALTH_TIMEOUT", "5"))
    except ValueError:
        timeout = 5.0
    try:
        path = state_file_path(env)
        if args and not os.path.exists(path):
            state: dict[str, Any] = {}  # role given: probe the default URLs
        else:
            state = load_state(path)
        role = args[0] if args else str(state["role"])
        reason = check(role, state, env, timeout)
    except Unhealthy as exc:
        print(redact_userinfo(f"unhealthy: {exc}"), flush=True)
        return 1
    print(redact_userinfo(f"healthy: {role}: {reason}"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
