"""Run-time figures: time to healthy (first start, restart), example DAG, peak RSS.

Both images are probed the same way, from the host: ``GET /api/v2/monitor/health`` until the
metadata database, scheduler, triggerer and DAG processor all report ``healthy`` (what
``hardflow-health standalone`` checks inside hardflow images; the reference has no such
check). The clock starts just before ``podman run`` and stops at the first healthy answer.

Peak RSS is read from the host's ``/proc``: a sampler thread finds the container's processes
by its id in ``/proc/PID/cgroup`` and keeps, per process, the largest ``VmHWM`` (the kernel's
own peak resident set size) seen while the container runs. The images have no ``ps``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hardflow.contract import AIRFLOW_HOME, API_PORT
from hardflow.errors import EngineError
from hardflow.run import engine as eng
from hardflow.run.airflow_api import trigger_dag
from hardflow.run.engine import Engine, PortMapping, RunOptions
from hardflow.run.runner import admin_password

HEALTH_PATH = "/api/v2/monitor/health"
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
Say = Callable[[str], None]
_INTERPRETERS = ("python", "python3")


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RuntimeSample:
    first_start_s: float
    restart_s: float
    dag_s: float
    dag_state: str
    peak_rss: dict[str, int]  # process label -> largest VmHWM (bytes) of a process so labelled
    processes: int  # distinct processes seen

    def to_json(self) -> dict[str, object]:
        return {
            "first_start_s": round(self.first_start_s, 2),
            "restart_s": round(self.restart_s, 2),
            "dag_s": round(self.dag_s, 2),
            "dag_state": self.dag_state,
            "peak_rss_bytes": dict(sorted(self.peak_rss.items())),
            "processes": self.processes,
        }


# ---------------------------------------------------------------------------------------------
# pure functions


def components_healthy(doc: object) -> bool:
    """True when every standalone component reports ``healthy`` in the health JSON."""
    if not isinstance(doc, dict):
        return False
    for name in COMPONENTS:
        part = doc.get(name)
        if not isinstance(part, dict) or part.get("status") != "healthy":
            return False
    return True


def process_label(cmdline: bytes) -> str:
    """A label that means the same process in both images, from a /proc cmdline.

    ``airflow SUBCOMMAND`` for Airflow processes (whatever the interpreter or script path,
    and also for titles set with setproctitle), else the program's (or script's) base name.
    """
    args = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
    # one argument: a title set with setproctitle ("airflow scheduler -- ..."); split it
    words = args[0].split() if len(args) == 1 else args
    if not words:
        return "?"
    first = os.path.basename(words[0])
    if first.startswith(_INTERPRETERS) and "-c" in words[1:4]:
        i = words.index("-c")
        code, rest = (words[i + 1] if i + 1 < len(words) else ""), words[i + 2 :]
        if "airflow" in code:  # a launcher (hardflow's entrypoint runs standalone so)
            sub = next((w for w in rest if not w.startswith("-")), "")
            return f"airflow {sub}".strip()
        return "python -c"
    for i, word in enumerate(words):
        if os.path.basename(word) == "airflow":
            rest = [w for w in words[i + 1 : i + 3] if not w.startswith("-")]
            if rest[:1] == ["task"] or rest[:1] == ["tasks"]:
                return "airflow " + " ".join(rest[:2])
            return "airflow " + (rest[0].rstrip(":") if rest else "")
    if first.startswith(_INTERPRETERS) and len(words) > 1:
        script = next((w for w in words[1:] if not w.startswith("-")), first)
        return os.path.basename(script)
    return first.rstrip(":")


def peak_by_label(peaks: dict[int, tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for label, rss in peaks.values():
        out[label] = max(out.get(label, 0), rss)
    return out


def parse_vmhwm(status_text: str) -> int | None:
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else None
    return None


# ---------------------------------------------------------------------------------------------
# the I/O shell


def container_pids(container_id: str, proc: Path = Path("/proc")) -> list[int]:
    """Host PIDs whose cgroup path names the container id."""
    pids: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if container_id in (entry / "cgroup").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class RssSampler:
    """Polls the container's processes every ``interval`` seconds in a thread."""

    def __init__(self, container_id: str, interval: float = 0.5) -> None:
        self.container_id = container_id
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self) -> None:
        for pid in container_pids(self.container_id):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            rss = parse_vmhwm(status)
            if rss is None:
                continue
            label = process_label(cmdline)
            old = self.peaks.get(pid)
            self.peaks[pid] = (label, max(rss, old[1] if old else 0))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_api_healthy(
    engine: Engine, name: str, url: str, timeout: float, started: float
) -> float:
    """Seconds from ``started`` until the health JSON says every component is healthy."""
    last_check = 0.0
    while True:
        now = time.monotonic()
        try:
            with urllib.request.urlopen(url + HEALTH_PATH, timeout=5) as resp:
                if components_healthy(json.loads(resp.read())):
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if now - last_check > 5:
            last_check = now
            st = eng.container_state(engine, name)
            if not st.running:
                tail = eng.logs(engine, name, tail=30)
                raise EngineError(f"bench container {name} exited ({st.exit_code}):\n{tail}")
        if now - started > timeout:
            raise EngineError(f"bench container {name} not healthy within {timeout:.0f}s")
        time.sleep(0.25)


@dataclass(frozen=True)
class RunTarget:
    """One image to run and how (hardened for hardflow, as-is for the reference)."""

    image: str
    hardened: bool
    user: str | None
    env: dict[str, str] = field(default_factory=dict)

    def options(self, name: str, volume: str, port: int) -> RunOptions:
        return RunOptions(
            image=self.image,
            name=name,
            command=("standalone",),
            user=self.user,
            read_only=self.hardened,
            cap_drop_all=self.hardened,
            no_new_privileges=self.hardened,
            tmpfs=("/tmp",) if self.hardened else (),
            volumes={volume: AIRFLOW_HOME},
            ports=(PortMapping(port, API_PORT),),
            env=dict(self.env),
            labels={"io.hardflow.bench": "true"},
            stop_timeout=30,
            pids_limit=4096,
            memory="4g",
        )


def _cleanup(engine: Engine, names: Iterable[str], volume: str) -> None:
    for name in names:
        if eng.container_exists(engine, name):
            eng.remove(engine, name, force=True)
    if eng.volume_exists(engine, volume):
        eng.volume_remove(engine, volume, force=True)


def measure_runtime(
    engine: Engine,
    target: RunTarget,
    name: str,
    *,
    timeout: float = 600.0,
    dag_id: str = "example",
    say: Say = _quiet,
) -> RuntimeSample:
    """First start on an empty volume, the example DAG, then a restart on the same volume."""
    volume = f"{name}-home"
    _cleanup(engine, (name,), volume)
    eng.volume_create(engine, volume, {"io.hardflow.bench": "true"})
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        opts = target.options(name, volume, port)
        say(f"{name}: first start of {target.image}")
        t0 = time.monotonic()
        cid = eng.run_container(engine, opts)
        with RssSampler(cid) as sampler:
            first = wait_api_healthy(engine, name, url, timeout, t0)
            say(f"{name}: healthy in {first:.1f}s; running the example DAG")
            password = admin_password(engine, name)
            assert password is not None
            mark: dict[str, float] = {}

            def progress(msg: str) -> None:
                if msg.startswith("triggered ") and "t" not in mark:
                    mark["t"] = time.monotonic()

            run = trigger_dag(url, "admin", password, dag_id, timeout, poll_interval=0.5,
                              on_progress=progress)  # fmt: skip
            dag_s = time.monotonic() - mark.get("t", time.monotonic() - run.seconds)
            sampler.sample()
        peaks = dict(sampler.peaks)
        eng.stop(engine, name, 30)
        eng.remove(engine, name, force=True)
        say(f"{name}: restart on the existing volume")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        eng.run_container(engine, target.options(name, volume, port))
        restart = wait_api_healthy(engine, name, url, timeout, t0)
        eng.stop(engine, name, 30)
        return RuntimeSample(
            first_start_s=first,
            restart_s=restart,
            dag_s=dag_s,
            dag_state=run.state,
            peak_rss=peak_by_label(peaks),
            processes=len(peaks),
        )
    finally:
        _cleanup(engine, (name,), volume)
