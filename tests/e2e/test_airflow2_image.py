"""End to end: the Airflow 2.11 image (embedded spec ``airflow2``) runs the classic Airflow 2 DAG,
verbatim, under the hardened settings as an arbitrary UID with group 0.

The image is built and loaded unless podman already has it with the current spec (its
``org.opencontainers.image.revision`` label is the spec's checksum).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.run import engine as eng
from hardflow.run.airflow_api import trigger_dag
from hardflow.run.engine import Engine
from hardflow.run.runner import RunRequest, RunResult, start, stop_container
from helpers.classic_dag import CLASSIC_DAG
from helpers.loaded_images import LoadedImage
from helpers.podman import HARDENED, free_port

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

ARBITRARY_USER = "123456:0"


@pytest.fixture(scope="module")
def image2(loaded_image: LoadedImage) -> str:
    return loaded_image("airflow2")


def _run(image: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [
        "podman", "run", "--rm", "--pull=never", *HARDENED, "--user", ARBITRARY_USER,
        # notmpcopyup: podman copies the image's /opt/airflow into a tmpfs without its group bits
        "--tmpfs", "/tmp", "--tmpfs", "/opt/airflow:notmpcopyup,mode=0770", image, *argv,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_image_runs_airflow_2_11_on_python_3_11_only(image2: str) -> None:
    version = _run(image2, ["version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().splitlines()[-1].startswith("2.11.")
    probe = _run(
        image2,
        ["bash", "-c",
         "shopt -s nullglob; echo /usr/bin/python3.1[2-9]* /usr/lib/python3.1[2-9]* "
         "/usr/local/lib/python3.1[2-9]*; /usr/bin/python3 -c "
         "'import sys; print(\"%d.%d\" % sys.version_info[:2])'"],
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["3.11"], "no other Python than 3.11 in the image"


@pytest.fixture(scope="module")
def classic_dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dags = tmp_path_factory.mktemp("classic-dags")
    (dags / "example.py").write_text(CLASSIC_DAG)
    dags.chmod(0o755)
    (dags / "example.py").chmod(0o644)
    return dags


@pytest.fixture(scope="module")
def standalone2(podman: Engine, image2: str, classic_dags: Path) -> Iterator[RunResult]:
    name = f"hardflow-e2e-af2-{uuid.uuid4().hex[:8]}"
    request = RunRequest(
        image=image2, dags=classic_dags, port=free_port(), name=name, user=ARBITRARY_USER,
        # The DAG starts in 2020 and Airflow 2 catches up by default: without this, unpausing
        # it would queue years of daily runs ahead of the one the test triggers.
        env={"AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT": "False"},
        health_timeout=240,
    )  # fmt: skip
    try:
        result = start(podman, request)
        print(f"\nAirflow 2 standalone healthy in {result.seconds_to_healthy:.1f}s")
        yield result
    finally:
        if eng.container_exists(podman, name):
            stop_container(podman, name, remove=True, remove_volume=True)


def test_standalone_is_hardened_as_arbitrary_uid(podman: Engine, standalone2: RunResult) -> None:
    done = subprocess.run(
        ["podman", "inspect", "--format",
         "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} "
         "{{.HostConfig.SecurityOpt}}", standalone2.name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    user, read_only, *rest = done.stdout.split()
    assert (user, read_only) == (ARBITRARY_USER, "true")
    assert "no-new-privileges" in " ".join(rest)
    assert standalone2.password, "the generated FAB admin password is readable by the host"


def test_classic_dag_runs_to_success(standalone2: RunResult) -> None:
    assert standalone2.password is not None
    run = trigger_dag(
        standalone2.url, standalone2.username, standalone2.password, "example", 300
    )
    assert run.ok, f"run {run.run_id} ended {run.state}: {run.tasks}"
    (task,) = run.tasks
    assert (task.task_id, task.state) == ("say", "success")
    assert any(line.rstrip().endswith("INFO - hello") for line in task.log.splitlines()), task.log
