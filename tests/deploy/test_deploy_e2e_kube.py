"""End to end: `podman kube play` runs the rendered Kubernetes manifests (Celery topology).

podman 4.3 cannot deliver Secret values as files (see k8s.for_podman_play), ignores Services
(pods are reached by their pod names) and runs probes through /bin/sh, so the variant of
``--podman-play`` is played and the health commands are run with ``podman exec``.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import dagrun, podman, record_metrics, wait_healthy

from hardflow.deploy.k8s import K8sOptions, podman_play_volumes, write_k8s_project
from hardflow.deploy.topology import Images, Topology

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]
yaml = pytest.importorskip("yaml")

# pod (Deployment) name → health command of its one container
CHECKS = {
    "postgres": ["/usr/lib/postgresql/17/bin/pg_isready", "--host=/tmp", "--quiet"],
    "redis": ["/usr/bin/bash", "/usr/local/bin/hardflow-redis-health"],
    "api-server": ["/usr/local/bin/hardflow-health", "api-server"],
    "scheduler": ["/usr/local/bin/hardflow-health", "scheduler"],
    "dag-processor": ["/usr/local/bin/hardflow-health", "dag-processor"],
    "triggerer": ["/usr/local/bin/hardflow-health", "triggerer"],
    "celery-worker": ["/usr/local/bin/hardflow-health", "celery"],
}


@pytest.fixture(scope="module")
def played(
    tmp_path_factory: pytest.TempPathFactory, deploy_images: dict[str, str]
) -> Iterator[tuple[Path, float]]:
    suffix = uuid.uuid4().hex[:6]
    project, network = f"hfdk{suffix}", f"hfdk{suffix}-net"
    top = Topology(
        Images(deploy_images["default"], deploy_images["postgres"], deploy_images["redis"]),
        project=project,
    )
    directory = tmp_path_factory.mktemp("kube")
    result = write_k8s_project(top, K8sOptions(), directory, podman_play=True)
    assert result.podman_play is not None
    play = result.podman_play
    podman("network", "create", network)
    t0 = time.monotonic()
    try:
        podman("kube", "play", "--network", network, str(play), timeout=300)
        yield play, t0
    finally:
        subprocess.run(["podman", "kube", "down", str(play)], capture_output=True, timeout=300)
        volumes = podman_play_volumes(list(yaml.safe_load_all(play.read_text())))
        subprocess.run(["podman", "volume", "rm", "-f", *volumes], capture_output=True)
        subprocess.run(["podman", "network", "rm", "-f", network], capture_output=True)


def test_podman_kube_play_runs_the_example_dag(played: tuple[Path, float]) -> None:
    _, t0 = played
    checks = {f"{name}-pod-0-{name}": argv for name, argv in CHECKS.items()}
    wait_healthy(checks, 420)
    healthy_after = round(time.monotonic() - t0, 1)
    api = "api-server-pod-0-api-server"
    password = "/run/secrets/airflow/admin_password"
    run_id = dagrun(api, password, "trigger", "example")["run_id"]
    done = dagrun(api, password, "wait", "example", run_id)
    assert done["state"] == "success", done
    assert done["hosts"]["say"] == "celery-worker-pod-0", done
    record_metrics("deploy-kube-play", {"healthy_after_seconds": healthy_after})
