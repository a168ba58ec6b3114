"""End to end: the rendered compose project on podman-compose (one stack, one run).

The example DAG runs on a Celery worker; the scheduler is SIGKILLed right after a run is
triggered and its restart policy brings it back, and that run and the next succeed; `down` then
`up` keeps the database volume and every earlier run is still listed.

The stack is rendered with ``--metrics``: after the first run, Prometheus's HTTP API answers
the scheduler heartbeat and the run's duration, which went Airflow → StatsD → the exporter →
Prometheus's scrape and its Airflow name mapping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import dagrun, memory_by_container, podman, record_metrics, wait_healthy

from hardflow.deploy import metrics as met
from hardflow.deploy.compose import service_names, write_compose_project
from hardflow.deploy.topology import Images, Topology
from hardflow.run.engine import Engine
from helpers.loaded_images import LoadedImage

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

HEALTH_TIMEOUT = 420
PASSWORD_FILE = "/run/secrets/admin_password"
METRICS_TIMEOUT = 180


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_query(port: int, promql: str) -> list[dict[str, object]]:
    """The result vector of an instant query of Prometheus's HTTP API (/api/v1/query)."""
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(promql)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]  # type: ignore[no-any-return]


EXPOSITION_SCRIPT = f"""
import socket
with socket.create_connection(("127.0.0.1", {met.EXPORTER_PORT}), timeout=10) as conn:
    conn.sendall(b"GET /metrics HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
print(data.decode(errors="replace"))
"""


def metrics_diagnosis(stack: Stack) -> str:
    """What each hop of Airflow → exporter → Prometheus shows, for a failure message."""
    parts = []
    port = stack.top.prometheus_port
    try:
        url = f"http://127.0.0.1:{port}/api/v1/targets"
        with urllib.request.urlopen(url, timeout=10) as resp:
            targets = json.loads(resp.read())["data"]["activeTargets"]
        for t in targets:
            parts.append(f"target {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')!r}")
    except (OSError, ValueError, KeyError) as exc:
        parts.append(f"Prometheus targets: {exc!r}")
    exporter = stack.container(met.EXPORTER)
    state = podman("inspect", exporter, "--format", "{{.State.Status}} {{.RestartCount}}",
                   check=False)  # fmt: skip
    parts.append(f"exporter state, restarts: {state.strip()}")
    exposition = podman("exec", exporter, "/usr/bin/python3.13", "-c", EXPOSITION_SCRIPT,
                        check=False)  # fmt: skip
    statsd = [line for line in exposition.splitlines() if "statsd=" in line]
    heartbeat = [line for line in statsd if "scheduler_heartbeat" in line]
    parts.append(f"exporter: {len(statsd)} statsd series; heartbeat: {heartbeat[:3]}")
    for service in ("scheduler", "dag-processor", "triggerer", "api-server"):
        log = subprocess.run(
            ["podman", "logs", stack.container(service)], capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        lines = [
            line for line in (log.stdout + log.stderr).splitlines()
            if "statsd" in line.lower() or "StatsClient" in line
        ]  # fmt: skip
        parts.append(f"{service} log on StatsD: {lines[-3:]}")
    return "\n".join(parts)


def wait_for_series(stack: Stack, promql: str, timeout: float = METRICS_TIMEOUT) -> list[dict]:
    """Poll until ``promql`` has at least one sample (the exporter flushes every 10 s and
    Prometheus scrapes every 15 s); on timeout, fail with what each hop shows."""
    port = stack.top.prometheus_port
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = prometheus_query(port, promql)
        except OSError:
            result = []
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"no sample of {promql} after {timeout:.0f}s\n{metrics_diagnosis(stack)}")
        time.sleep(3)


class Stack:
    def __init__(self, directory: Path, project: str, compose_bin: str, top: Topology) -> None:
        self.directory, self.project, self.bin, self.top = directory, project, compose_bin, top

    def compose(self, *args: str, timeout: float = 600) -> None:
        done = subprocess.run(
            [self.bin, *args], cwd=self.directory, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"podman-compose {args}: {done.stderr[-3000:]}"

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def long_running(self) -> list[str]:
        return [s for s in service_names(self.top) if s != "airflow-init"]

    def wait_healthy(self) -> float:
        return wait_healthy({self.container(s): None for s in self.long_running()}, HEALTH_TIMEOUT)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, podman_compose: str, loaded_image: LoadedImage,
    podman: Engine,
) -> Iterator[Stack]:  # fmt: skip
    project = f"hfde2e{uuid.uuid4().hex[:6]}"
    load = loaded_image
    airflow = load("default")
    images = Images(
        airflow, load("postgres"), load("redis"),
        prometheus=load("prometheus"), statsd_exporter=load("statsd-exporter"),
    )  # fmt: skip
    port = free_port()
    top = Topology(
        images,
        workers=1,
        project=project,
        api_port=port,
        metrics=True,
        prometheus_port=free_port(),
    )
    directory = tmp_path_factory.mktemp("compose")
    write_compose_project(top, directory)
    st = Stack(directory, project, podman_compose, top)
    try:
        yield st
    finally:
        subprocess.run(
            [podman_compose, "down", "-v", "-t", "10"], cwd=directory, capture_output=True,
            timeout=600, check=False,
        )  # fmt: skip
        subprocess.run(["podman", "pod", "rm", "-f", f"pod_{project}"], capture_output=True)


def test_compose_stack_end_to_end(stack: Stack) -> None:
    metrics: dict[str, object] = {}
    t0 = time.monotonic()
    stack.compose("up", "-d")
    metrics["up_command_seconds"] = round(time.monotonic() - t0, 1)
    up_seconds = time.monotonic() - t0
    metrics["healthy_after_seconds"] = round(up_seconds + stack.wait_healthy(), 1)
    names = [stack.container(s) for s in stack.long_running()]
    metrics["memory"] = memory_by_container(names)
    init = stack.container("airflow-init")
    assert podman("inspect", init, "--format", "{{.State.ExitCode}}").strip() == "0"
    api = stack.container("api-server")

    # 1. the example DAG runs on the Celery worker
    first = dagrun(api, PASSWORD_FILE, "trigger", "example")["run_id"]
    done = dagrun(api, PASSWORD_FILE, "wait", "example", first)
    assert done["state"] == "success", done
    assert done["hosts"]["say"] == "celery-worker-1", done

    # 1b. --metrics: Prometheus has the scheduler heartbeat and the run's duration
    t_run = time.monotonic()
    port = stack.top.prometheus_port
    beats = wait_for_series(stack, met.HEARTBEAT_METRIC)
    assert float(beats[0]["value"][1]) > 0, beats  # type: ignore[index]
    metrics["heartbeat_visible_after_run_seconds"] = round(time.monotonic() - t_run, 1)
    duration = f'{met.DAGRUN_DURATION_METRIC}{{dag_id="example",state="success"}}'
    series = wait_for_series(stack, duration)
    stats = {s["metric"]["stat"]: float(s["value"][1]) for s in series}  # type: ignore[index]
    assert set(stats) == set(met.TIMER_STATS), series
    assert 0 < stats["lower"] <= stats["average"] <= stats["upper"] < 600, stats
    metrics["dagrun_duration_visible_after_run_seconds"] = round(time.monotonic() - t_run, 1)
    metrics["dagrun_duration_seconds"] = stats["average"]
    # the task's tags became labels, and the legacy copy that holds them in its name is off
    # (Airflow still names a few DAG-level timings after the DAG whatever the setting, e.g.
    # dagrun.<dag_id>.first_task_scheduling_delay)
    finish = 'airflow_ti_finish_total{dag_id="example",task_id="say",state="success"}'
    assert float(wait_for_series(stack, finish)[0]["value"][1]) >= 1  # type: ignore[index]
    names = {s["metric"]["__name__"] for s in prometheus_query(port, '{__name__=~"airflow_.+"}')}
    assert not [n for n in names if n.startswith(("airflow_ti_finish_ex", "airflow_dag_ex"))]
    metrics["metric_names"] = sorted(names)

    # 2. SIGKILL the scheduler right after a run is triggered: the restart policy brings it back
    scheduler = stack.container("scheduler")
    second = dagrun(api, PASSWORD_FILE, "trigger", "example")["run_id"]
    pid = int(podman("inspect", scheduler, "--format", "{{.State.Pid}}").strip())
    assert pid > 1
    os.kill(pid, signal.SIGKILL)  # from the host, as the OOM killer would: not `podman kill`
    t_kill = time.monotonic()
    deadline = t_kill + 120
    while int(podman("inspect", scheduler, "--format", "{{.RestartCount}}").strip() or 0) < 1:
        assert time.monotonic() < deadline, "the SIGKILLed scheduler was not restarted"
        time.sleep(1)
    wait_healthy({scheduler: None}, HEALTH_TIMEOUT)
    metrics["scheduler_healthy_after_sigkill_seconds"] = round(time.monotonic() - t_kill, 1)
    done = dagrun(api, PASSWORD_FILE, "wait", "example", second)
    assert done["state"] == "success", done
    third = dagrun(api, PASSWORD_FILE, "trigger", "example")["run_id"]
    assert dagrun(api, PASSWORD_FILE, "wait", "example", third)["state"] == "success"

    # 3. down, then up: the database volume stays, every earlier run is still listed
    t0 = time.monotonic()
    stack.compose("down")
    metrics["down_seconds"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    stack.compose("up", "-d")
    stack.wait_healthy()
    metrics["second_up_healthy_seconds"] = round(time.monotonic() - t0, 1)
    runs = dagrun(api, PASSWORD_FILE, "list", "example")
    for run_id in (first, second, third):
        assert runs.get(run_id) == "success", runs
    record_metrics("deploy-compose", metrics)
