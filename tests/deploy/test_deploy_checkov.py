"""checkov, an outside judge, on what `hardflow deploy` renders for Kubernetes.

It reads the manifests of `deploy k8s` (both executors) and the pods the official chart makes of
our `deploy helm-values` (replayed by hardflow.deploy.chart, both executors). Every check must
pass except the ones listed in ALLOWED, each with the reason it is left failing on purpose (the
README's "Production topologies" section says the same). The list is exact: a check that starts
passing must leave it, so the documented exceptions stay true.

checkov lives in a virtualenv of its own (scripts/setup.sh makes .venv-checkov when
HARDFLOW_SETUP_TESTS=1; HARDFLOW_CHECKOV names another binary). It runs offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.deploy.chart import chart_documents
from hardflow.deploy.helm import render_helm_values
from hardflow.deploy.k8s import K8sOptions, render_manifests
from hardflow.deploy.topology import Images, Topology
from hardflow.deploy.yamlout import dump_all

REPO = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "c3" * 32
# hardflow knows what it built: every image is rendered pinned (see hardflow.deploy.pinning)
TOP = Topology(
    Images(
        f"localhost/hardflow/airflow:3.3.2@{DIGEST}",
        f"localhost/hardflow/postgres:17@{DIGEST}",
        f"localhost/hardflow/redis:8@{DIGEST}",
        prometheus=f"localhost/hardflow/prometheus:2@{DIGEST}",
        statsd_exporter=f"localhost/hardflow/statsd-exporter:5@{DIGEST}",
    ),
    metrics=True,  # deploy k8s --metrics: the exporter and Prometheus are judged too
)
CHART_WORKLOADS = {
    "Deployment.airflow.airflow-scheduler", "Deployment.airflow.airflow-dag-processor",
    "StatefulSet.airflow.airflow-triggerer", "Deployment.airflow.airflow-api-server",
    "Job.airflow.airflow-run-airflow-migrations", "Job.airflow.airflow-create-user",
}  # fmt: skip
CELERY_WORKER = "Deployment.airflow.airflow-worker"
POD_TEMPLATE = "Pod.airflow.airflow-worker-pod-template"
GROOMED = {"Deployment.airflow.airflow-scheduler", "Deployment.airflow.airflow-dag-processor",
           "StatefulSet.airflow.airflow-triggerer"}  # fmt: skip

# (render, check) → (why it is left failing, the resources it fails on)
ALLOWED: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("k8s-kubernetes", "CKV_K8S_38"): (
        "KubernetesExecutor: the scheduler creates, watches and deletes the task pods through "
        "the API, so it keeps its service account token (its Role allows pods, pods/log and "
        "events in the namespace only)",
        {"Deployment.hardflow.scheduler"},
    ),
}
for executor, extra in (("celery", {CELERY_WORKER}), ("kubernetes", {POD_TEMPLATE})):
    render = f"chart-{executor}"
    ALLOWED[(render, "CKV_K8S_35")] = (
        "chart: the official chart hands the connection, Fernet key, API secret key and JWT "
        "secret to Airflow as secretKeyRef environment variables; no value makes them files",
        CHART_WORKLOADS | extra,
    )
    ALLOWED[(render, "CKV_K8S_38")] = (
        "chart: the official chart leaves automountServiceAccountToken unset on its pods",
        CHART_WORKLOADS | extra,
    )
    ALLOWED[(render, "CKV_K8S_8")] = (
        "chart: the log-groomer sidecars have no probes in the chart (a loop that sleeps), and "
        "a KubernetesExecutor task pod runs one task and ends",
        GROOMED | (extra if executor == "celery" else {POD_TEMPLATE}),
    )
    ALLOWED[(render, "CKV_K8S_9")] = (
        "chart: readiness gates Service traffic, and only the API server takes any; the chart "
        "gives the others liveness (and startup) probes only",
        GROOMED | extra,
    )
    ALLOWED[(render, "CKV2_K8S_6")] = (
        "replay: the chart renders its NetworkPolicies (networkPolicies.enabled is on in our "
        "values) from templates the replay does not reproduce; it replays the workloads only",
        {"*"},
    )


def _checkov() -> str:
    for candidate in (
        os.environ.get("HARDFLOW_CHECKOV", ""),
        str(REPO / ".venv-checkov" / "bin" / "checkov"),
        shutil.which("checkov") or "",
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("CI"):
        pytest.fail(
            "checkov is not installed: scripts/setup.sh installs it with HARDFLOW_SETUP_TESTS=1"
        )
    pytest.skip("checkov is not installed (HARDFLOW_SETUP_TESTS=1 scripts/setup.sh)")


def _renders() -> Iterator[tuple[str, list[dict[str, object]]]]:
    for executor in ("celery", "kubernetes"):
        opts = K8sOptions(executor=executor)
        yield f"k8s-{executor}", render_manifests(TOP, opts)
        yield f"chart-{executor}", chart_documents(render_helm_values(TOP, opts))


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """render → failed check → resources; every render passed a good number of checks."""
    checkov = _checkov()
    directory = tmp_path_factory.mktemp("checkov")
    for name, docs in _renders():
        (directory / f"{name}.yaml").write_text(dump_all(docs))
    done = subprocess.run(
        [checkov, "-d", str(directory), "--framework", "kubernetes", "--skip-download",
         "--compact", "--quiet", "-o", "json"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    assert report["summary"]["passed"] > 1000, report["summary"]  # it did judge them
    failed: dict[str, dict[str, set[str]]] = {name: {} for name, _ in _renders()}
    for check in report["results"]["failed_checks"]:
        render = Path(check["file_path"]).stem
        failed[render].setdefault(check["check_id"], set()).add(check["resource"])
    return failed


def test_deploy_k8s_fails_no_check(verdicts: dict[str, dict[str, set[str]]]) -> None:
    """Pinned images, uid >= 10000 for PostgreSQL and Redis: the 18 failures of before are gone
    (CKV_K8S_15 pull policy, CKV_K8S_40 high uid, CKV_K8S_43 digest)."""
    assert verdicts["k8s-celery"] == {}
    for check in ("CKV_K8S_15", "CKV_K8S_40", "CKV_K8S_43"):
        assert check not in verdicts["k8s-kubernetes"]


@pytest.mark.parametrize("render", ["k8s-celery", "k8s-kubernetes", "chart-celery",
                                    "chart-kubernetes"])  # fmt: skip
def test_only_documented_checks_fail(verdicts: dict[str, dict[str, set[str]]], render: str) -> None:
    allowed = {check: ok for (name, check), (_, ok) in ALLOWED.items() if name == render}
    for check, resources in verdicts[render].items():
        assert check in allowed, f"{render}: {check} fails on {sorted(resources)}"
        if "*" not in allowed[check]:
            assert resources <= allowed[check], (render, check, resources - allowed[check])
    stale = set(allowed) - set(verdicts[render])
    assert not stale, f"{render}: allowed but passing now, remove from ALLOWED: {stale}"


def test_the_hardening_checks_pass_on_the_chart(verdicts: dict[str, dict[str, set[str]]]) -> None:
    """What our values set is judged too: none of these may be in the allow-list."""
    ours = {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_31", "CKV_K8S_37",
            "CKV_K8S_40", "CKV_K8S_43", "CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13",
            "CKV_K8S_15"}  # fmt: skip
    for render in ("chart-celery", "chart-kubernetes"):
        assert not ours & set(verdicts[render]), (render, ours & set(verdicts[render]))
