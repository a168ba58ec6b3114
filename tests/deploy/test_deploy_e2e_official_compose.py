"""End to end: the official Airflow 3.3 docker-compose.yaml, fully up on our images.

The official file (the transcription in fixtures/, naming its source) is the user's world; the
only files added are what a user adds: the override `hardflow deploy compose --official-override`
writes, the `.env` and folders the official guide asks for, a DAG in `./dags`, and (a test's own
need) a third file publishing the API server on a free loopback port instead of the official
0.0.0.0:8080, which the README's demo may hold. Under podman-compose:

- airflow-init (the image's entrypoint: migrate, create the official `airflow` user, `airflow
  version`) exits 0 before the rest starts (two `up -d` steps, as the README says for podman
  4.3: podman-compose's `--requires` on the exited init would fail `podman start`);
- the API server, scheduler, DAG processor, triggerer and the Celery worker become healthy with
  the override's health checks (run with `podman healthcheck run`, as podman 4.3 does not wait on
  them itself), PostgreSQL and Redis too;
- the example DAG, triggered through the published port as the official user, succeeds on the
  Celery worker;
- PostgreSQL and Redis, on our images, take the official credentials and the password-less
  broker URL, as their images' non-root users;
- `down -v` stops and removes every container, the network and the volumes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_helpers import memory_by_container, podman, record_metrics, wait_healthy

from hardflow.deploy.compose_official import (
    AIRFLOW_SERVICES,
    OVERRIDE_FILE,
    write_official_override,
)
from hardflow.deploy.topology import Images
from hardflow.run.airflow_api import AirflowApi, connect, trigger_dag
from helpers.podman import free_port

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

OFFICIAL = Path(__file__).parent / "fixtures" / "official-docker-compose-airflow-3.3.yaml"
EXAMPLE_DAG = Path(__file__).parents[2] / "src" / "hardflow" / "examples" / "example_dag.py"
PORTS_FILE = "docker-compose.ports.yaml"
# the official file's user (its _AIRFLOW_WWW_USER_USERNAME / _PASSWORD defaults)
OFFICIAL_USER = ("airflow", "airflow")
# the long-running services `up` starts without a profile
SERVICES = (
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
HEALTH_TIMEOUT = 600
DAG_TIMEOUT = 300


@dataclass(frozen=True)
class Project:
    directory: Path
    name: str
    base: tuple[str, ...]  # podman-compose -p NAME -f ... (every call)
    api_port: int

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args], cwd=self.directory, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip


def _user_setup(directory: Path) -> None:
    """What the official guide has a user do next to docker-compose.yaml: the folders it mounts
    (writable by the Airflow user, group 0, as the official airflow-init's chown made them), the
    `.env` with AIRFLOW_UID, and a DAG in ./dags."""
    shutil.copy(OFFICIAL, directory / "docker-compose.yaml")
    for folder in ("dags", "logs", "plugins", "config"):
        (directory / folder).mkdir()
        (directory / folder).chmod(0o775)
    shutil.copy(EXAMPLE_DAG, directory / "dags" / "example_dag.py")
    (directory / "dags" / "example_dag.py").chmod(0o644)
    (directory / ".env").write_text("AIRFLOW_UID=50000\n")


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, deploy_images: dict[str, str], podman_compose: str
) -> Iterator[Project]:
    directory = tmp_path_factory.mktemp("official-compose")
    _user_setup(directory)
    images = Images(deploy_images["default"], deploy_images["postgres"], deploy_images["redis"])
    write_official_override(images, directory)
    port = free_port()
    # compose appends lists: !override replaces the official "8080:8080"
    (directory / PORTS_FILE).write_text(
        f'services:\n  airflow-apiserver:\n    ports: !override ["127.0.0.1:{port}:8080"]\n'
    )
    name = f"hfoc{uuid.uuid4().hex[:6]}"
    files = ("-f", "docker-compose.yaml", "-f", OVERRIDE_FILE, "-f", PORTS_FILE)
    proj = Project(directory, name, (podman_compose, "-p", name, *files), port)
    try:
        yield proj
    finally:
        proj.compose("down", "-v", "-t", "10", timeout=600)
        subprocess.run(["podman", "pod", "rm", "-f", f"pod_{name}"], capture_output=True)


def _state(container: str) -> str:
    fmt = "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}"
    done = subprocess.run(
        ["podman", "inspect", container, "--format", fmt], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "missing"


def test_the_official_compose_file_runs_on_our_images(project: Project) -> None:
    metrics: dict[str, object] = {}
    t0 = time.monotonic()
    # podman-compose turns depends_on into `podman --requires`, and podman 4.3 cannot start a
    # container that requires an exited one (airflow-init, service_completed_successfully):
    # airflow-init (with PostgreSQL and Redis) first, the rest once it is done, without
    # --requires. `docker compose up -d` does this in one step.
    init = project.container("airflow-init")
    up = project.compose("up", "-d", "airflow-init")
    assert up.returncode == 0, f"up airflow-init: {up.stderr[-3000:]}"
    code = podman("wait", init, timeout=900).strip()
    metrics["init_done_seconds"] = round(time.monotonic() - t0, 1)

    # airflow-init: migrated, created the official user, printed the version, exited 0 once
    status, _, restarts = _state(init).split()
    init_logs = subprocess.run(["podman", "logs", init], capture_output=True, text=True)
    init_out = init_logs.stdout + init_logs.stderr
    assert (status, code, restarts) == ("exited", "0", "0"), init_out[-3000:]
    assert 'User "airflow" created' in init_out and "3.3" in init_out, init_out[-3000:]

    airflow = [s for s in SERVICES if s.startswith("airflow-")]
    up = project.compose("up", "-d", "--no-deps", *airflow)
    metrics["up_command_seconds"] = round(time.monotonic() - t0, 1)
    assert up.returncode == 0, f"up: {up.stderr[-3000:]}"

    # every long-running service healthy by the override's own health checks
    checks = {project.container(s): None for s in SERVICES}
    metrics["healthy_after_seconds"] = round(
        time.monotonic() - t0 + wait_healthy(checks, HEALTH_TIMEOUT), 1
    )
    for service in SERVICES:
        test = podman("inspect", project.container(service), "--format", "{{.Config.Healthcheck}}")
        assert "curl" not in test and "CMD-SHELL" not in test, (service, test)
        if service in AIRFLOW_SERVICES:  # the image's own check of this service's role
            assert AIRFLOW_SERVICES[service] in test, (service, test)
    metrics["memory"] = memory_by_container(list(checks))
    # the backing services as the official file wires them: its credentials log in, the
    # password-less broker answers, both run as their image's non-root user
    pg = project.container("postgres")
    sql = ["psql", "-h", "127.0.0.1", "-U", "airflow", "-d", "airflow", "-tAc", "SELECT 1"]
    assert podman("exec", "-e", "PGPASSWORD=airflow", pg, *sql).strip() == "1"
    redis = project.container("redis")
    assert podman("exec", redis, "/usr/bin/redis-cli", "-h", "redis", "ping").strip() == "PONG"
    assert podman("inspect", "--format", "{{.Config.User}}", redis).strip() == "16379:16379"
    assert not podman("inspect", "--format", "{{.Config.User}}", pg).startswith("0")

    # the example DAG, through the published port as the official user, on the Celery worker
    base = f"http://127.0.0.1:{project.api_port}"
    t1 = time.monotonic()
    result = trigger_dag(base, *OFFICIAL_USER, "example", DAG_TIMEOUT, request_timeout=120)
    metrics["dag_run_seconds"] = round(time.monotonic() - t1, 1)
    worker = project.container("airflow-worker")
    assert result.ok, (result.state, [t.log[-1500:] for t in result.tasks], podman("logs", worker))
    api = AirflowApi(base, 120)
    prefix = connect(api, *OFFICIAL_USER)
    _, tis = api.call("GET", f"{prefix}/dags/example/dagRuns/{result.run_id}/taskInstances")
    hosts = {t["task_id"]: t.get("hostname") for t in (tis or {}).get("task_instances", [])}
    worker_host = podman("inspect", worker, "--format", "{{.Config.Hostname}}").strip()
    assert str(hosts.get("say") or "").split(".")[0] == worker_host, (hosts, worker_host)
    for service in SERVICES:  # nothing crashed and came back along the way
        assert _state(project.container(service)).split()[0] == "running", service

    # down: every container, the network and the named volumes go
    t2 = time.monotonic()
    down = project.compose("down", "-v", "-t", "30", timeout=600)
    metrics["down_seconds"] = round(time.monotonic() - t2, 1)
    assert down.returncode == 0, down.stderr[-3000:]
    left = podman("ps", "-a", "--filter", f"name={project.name}_", "--format", "{{.Names}}")
    assert left.strip() == "", left
    volumes = podman("volume", "ls", "--format", "{{.Name}}").split()
    assert not [v for v in volumes if v.startswith(f"{project.name}_")], volumes
    metrics["wall_seconds"] = round(time.monotonic() - t0, 1)
    record_metrics("deploy-official-compose", metrics)
