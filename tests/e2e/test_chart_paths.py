"""End to end: what the official Helm chart calls exists in the default image and works under
the chart's restricted settings (read-only root, no capabilities, no-new-privileges, uid 50000
in gid 0): ``sh -c``, ``/entrypoint``, the ``bash /clean-logs`` log groomer and FAB's
``airflow users create``.

One container serves every check: it runs the log groomer, as the chart's sidecar does, and
the other commands are run in it with ``podman exec`` (the same root, mounts and user).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.run.engine import Engine
from helpers.loaded_images import LoadedImage
from helpers.podman import HARDENED

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

DAY = 86400
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
FAB_ENV = (
    "--env", f"AIRFLOW__CORE__AUTH_MANAGER={FAB_AUTH_MANAGER}",
    "--env", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:////opt/airflow/airflow.db",
)  # fmt: skip


def run_podman(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def in_container(name: str, *argv: str, env: tuple[str, ...] = (), timeout: int = 300) -> str:
    done = run_podman("exec", *env, name, *argv, timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The logs volume, with an expired task log, a fresh one and an old non-log file."""
    folder = tmp_path_factory.mktemp("chart-logs")
    folder.chmod(0o777)  # written by uid 50000 in the container
    files = {
        "dag_id=old/run_id=r/task_id=t/attempt=1.log": 30,
        "dag_id=new/run_id=r/task_id=t/attempt=1.log": 1,
        "dag_id=new/notes.txt": 30,
    }
    for rel, days in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(folder).parents:
            (folder / parent).chmod(0o777)
        path.write_text("line\n")
        when = time.time() - days * DAY
        os.utime(path, (when, when))
    return folder


@pytest.fixture(scope="module")
def groomer(podman: Engine, loaded_image: LoadedImage, logs: Path) -> Iterator[str]:
    """The default image running ``bash /clean-logs`` as the chart's sidecar does, with a
    writable AIRFLOW_HOME (a tmpfs in gid 0, as an emptyDir) and the logs volume in it."""
    del podman  # the fixture skips these tests when podman is missing
    image = loaded_image("default")
    name = f"hardflow-chart-paths-{uuid.uuid4().hex[:8]}"
    started = run_podman(
        "run", "-d", "--pull=never", "--name", name, *HARDENED, "--user", "50000:0",
        "--tmpfs", "/tmp",
        "--mount", "type=tmpfs,destination=/opt/airflow,tmpfs-mode=0775",
        "--volume", f"{logs}:/opt/airflow/logs",
        "--env", "AIRFLOW__LOG_RETENTION_DAYS=15",
        "--env", "AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES=15",
        image, "bash", "/clean-logs",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield name
    finally:
        run_podman("rm", "-f", "-t", "0", name)


def wait_for_log(name: str, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        done = run_podman("logs", name)
        text = done.stdout + done.stderr
        if needle in text:
            return text
        time.sleep(0.5)
    raise AssertionError(f"no {needle!r} in the container's output within {timeout}s:\n{text}")


def test_sh_is_the_image_bash(groomer: str) -> None:
    assert in_container(groomer, "sh", "-c", "echo ok") == "ok\n"
    # the chart's probe line starts with `sh -c`: the same bash, in POSIX mode
    assert in_container(groomer, "/bin/sh", "-c", 'echo "${BASH_VERSION:+bash}"') == "bash\n"


def test_hostname_answers_as_the_worker_probe_asks(groomer: str) -> None:
    # the chart's worker probe: `celery ... inspect ping -d celery@$(hostname)`
    inspected = run_podman("inspect", "--format", "{{.Config.Hostname}}", groomer)
    assert inspected.returncode == 0, inspected.stderr
    assert in_container(groomer, "sh", "-c", "echo celery@$(hostname)") == (
        f"celery@{inspected.stdout.strip()}\n"
    )


def test_entrypoint_runs_airflow_as_the_chart_probes_call_it(groomer: str) -> None:
    out = in_container(
        groomer, "sh", "-c",
        "CONNECTION_CHECK_MAX_COUNT=0 AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR "
        "exec /entrypoint airflow version",
    )  # fmt: skip
    assert out.strip().splitlines()[-1] == "3.3.2"


def test_clean_logs_removes_expired_logs_only(groomer: str, logs: Path) -> None:
    text = wait_for_log(groomer, "pass done")
    assert "removed file /opt/airflow/logs/dag_id=old/run_id=r/task_id=t/attempt=1.log" in text
    assert not (logs / "dag_id=old").exists()  # emptied folders go too
    assert (logs / "dag_id=new/run_id=r/task_id=t/attempt=1.log").exists()
    assert (logs / "dag_id=new/notes.txt").exists()


def test_fab_users_create_works_and_writes_no_webserver_config(groomer: str) -> None:
    in_container(groomer, "/entrypoint", "airflow", "db", "migrate", env=FAB_ENV, timeout=600)
    # the chart's create-user job: bash -c 'exec airflow users create "$@"' -- ARGS
    in_container(
        groomer, "/entrypoint", "bash", "-c", 'exec airflow users create "$@"', "--",
        "-r", "Admin", "-u", "admin", "-e", "admin@example.com", "-f", "Ad", "-l", "Min",
        "-p", "not-a-real-secret",
        env=FAB_ENV,
    )  # fmt: skip
    users = in_container(groomer, "/entrypoint", "airflow", "users", "list", env=FAB_ENV)
    assert "admin@example.com" in users
    # FAB read the image's webserver_config.py: none was written into AIRFLOW_HOME
    where = in_container(
        groomer, "bash", "-c",
        "[[ -e /opt/airflow/webserver_config.py ]] && echo written || echo none; "
        'echo "$AIRFLOW__FAB__CONFIG_FILE"',
    )  # fmt: skip
    assert where.split() == ["none", "/usr/local/lib/hardflow/webserver_config.py"]


def test_clean_logs_stops_on_sigterm_with_status_0(groomer: str) -> None:
    wait_for_log(groomer, "pass done")
    start = time.monotonic()
    stopped = run_podman("stop", "-t", "20", groomer, timeout=60)
    took = time.monotonic() - start
    assert stopped.returncode == 0, stopped.stderr
    code = run_podman("inspect", "--format", "{{.State.ExitCode}}", groomer).stdout.strip()
    assert code == "0"
    assert took < 10, f"podman stop took {took:.1f}s: SIGTERM was not honoured"
    assert "clean-logs: stopped" in wait_for_log(groomer, "clean-logs: stopped", 5)
