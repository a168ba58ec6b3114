"""`hardflow deploy helm-values`: the pinned official chart's defaults, restricted and read-only.

There is no helm here: ``hardflow.deploy.chart`` replays what the chart makes of the values
(every container, sidecar, init container and job), and these tests judge that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli.deploy import deploy
from hardflow.deploy.chart import CHART_VERSION, airflow_image, chart_documents
from hardflow.deploy.helm import airflow_version, image_parts, render_helm_values
from hardflow.deploy.k8s import K8sOptions
from hardflow.deploy.topology import Images, Topology
from hardflow.deploy.yamlout import dump_all

yaml = pytest.importorskip("yaml")

DIGEST = "sha256:" + "5e" * 32
PINNED = Images(
    f"localhost/a/airflow:3.3.2@{DIGEST}", "localhost/a/postgres:1", "localhost/a/redis:1"
)
TOP = Topology(PINNED, workers=2, project="hf")
EXECUTORS = ("celery", "kubernetes")
# what the chart itself sets that the values must not take away (kept defaults)
CHART_OWNED = ("args", "command", "livenessProbe", "startupProbe", "readinessProbe", "enabled")


def containers(doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    return [(spec, c) for c in (*spec.get("initContainers", []), *spec["containers"])]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_the_chart_defaults_are_kept(executor: str) -> None:
    values = render_helm_values(TOP, K8sOptions(executor=executor))
    for section in ("scheduler", "dagProcessor", "triggerer", "apiServer", "workers",
                    "migrateDatabaseJob", "createUserJob"):  # fmt: skip
        part = values.get(section, {})
        assert not set(part) & set(CHART_OWNED), (section, part)
        for sub in ("logGroomerSidecar", "waitForMigrations"):
            assert not set(part.get(sub, {})) & set(CHART_OWNED), (section, sub)
    # FAB is the chart's (and now the image's) auth manager: the values leave it alone
    assert "auth_manager" not in values["config"].get("core", {})
    assert "webserver" not in values


def test_values_name_the_pinned_chart(tmp_path: Path) -> None:
    result = CliRunner().invoke(deploy, ["helm-values", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "values.yaml").read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert f"chart {CHART_VERSION}" in header and f"--version {CHART_VERSION}" in header
    assert f'"chart_version": "{CHART_VERSION}"' in result.output


def test_the_image_is_pinned_by_digest() -> None:
    values = render_helm_values(TOP, K8sOptions())
    image = values["images"]["airflow"]
    assert image == {
        "repository": "localhost/a/airflow", "tag": "3.3.2", "pullPolicy": "IfNotPresent",
        "digest": DIGEST,
    }  # fmt: skip
    assert values["images"]["pod_template"]["digest"] == DIGEST
    assert airflow_image(values) == f"localhost/a/airflow@{DIGEST}"
    assert values["airflowVersion"] == "3.3.2"
    unpinned = Topology(Images("localhost/a/airflow:3.3.2", "p", "r"))
    plain = render_helm_values(unpinned, K8sOptions())
    assert "digest" not in plain["images"]["airflow"]
    assert airflow_image(plain) == "localhost/a/airflow:3.3.2"


def test_image_parts_and_version() -> None:
    assert image_parts("registry:5000/x/airflow") == ("registry:5000/x/airflow", "", "")
    assert image_parts(f"x/airflow:3.3.2@{DIGEST}") == ("x/airflow", "3.3.2", DIGEST)
    assert image_parts(f"x/airflow@{DIGEST}") == ("x/airflow", "", DIGEST)
    # the chart switches templates on airflowVersion: a tag that is not a version is not used
    assert airflow_version("3.3.2") == "3.3.2"
    assert airflow_version("prod-2026").count(".") == 2


@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_container_is_hardened_with_its_own_tmp(executor: str) -> None:
    docs = chart_documents(render_helm_values(TOP, K8sOptions(executor=executor)))
    names = {c["name"] for d in docs for _, c in containers(d)}
    expected = {"wait-for-airflow-migrations", "scheduler", "scheduler-log-groomer",
                "dag-processor-log-groomer", "triggerer-log-groomer", "api-server",
                "run-airflow-migrations", "create-user"}  # fmt: skip
    expected |= {"worker", "worker-log-groomer"} if executor == "celery" else {"base"}
    assert expected <= names, expected - names
    for doc in docs:
        for pod, container in containers(doc):
            where = f"{doc['metadata']['name']}/{container['name']}"
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert ctx["runAsNonRoot"] is True and pod["securityContext"]["runAsNonRoot"], where
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert pod["securityContext"]["runAsUser"] == 50000, where
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1, where
            volume = next(v for v in pod["volumes"] if v["name"] == tmp[0]["name"])
            assert "emptyDir" in volume, where
            assert container["resources"]["limits"]["memory"], where
            assert container["image"] == f"localhost/a/airflow@{DIGEST}", where


@pytest.mark.parametrize("executor", EXECUTORS)
def test_the_replayed_chart_passes_pod_security_restricted(tmp_path: Path, executor: str) -> None:
    audit = pytest.importorskip("hardflow.audit.run")
    docs = chart_documents(render_helm_values(TOP, K8sOptions(executor=executor)))
    path = tmp_path / "chart.yaml"
    path.write_text(dump_all(docs))
    report = audit.audit_manifests([path])
    pss = [f for f in report.findings if f.id.startswith("PSS-")]
    assert {f.id for f in pss} >= {"PSS-R-RunAsNonRoot", "PSS-R-Capabilities", "PSS-R-Seccomp"}
    assert not [f.id for f in pss if f.failed], [str(f) for f in pss if f.failed]


def test_without_our_values_the_replay_fails_restricted(tmp_path: Path) -> None:
    """The judge can tell: the chart's own defaults (no seccomp, writable root) do not pass."""
    audit = pytest.importorskip("hardflow.audit.run")
    values = render_helm_values(TOP, K8sOptions())
    del values["securityContexts"]
    path = tmp_path / "chart.yaml"
    path.write_text(dump_all(chart_documents(values)))
    failed = {f.id for f in audit.audit_manifests([path]).findings if f.failed}
    assert {"PSS-R-RunAsNonRoot", "PSS-R-Seccomp"} <= failed


def test_the_replay_follows_the_chart_fallbacks() -> None:
    """A component's own container context wins over the global one, as in the chart."""
    values = render_helm_values(TOP, K8sOptions())
    values["scheduler"]["logGroomerSidecar"]["securityContexts"] = {"container": {"x": 1}}
    docs = {d["metadata"]["name"]: d for d in chart_documents(values)}
    pod = docs["airflow-scheduler"]["spec"]["template"]["spec"]
    groomer = next(c for c in pod["containers"] if c["name"] == "scheduler-log-groomer")
    assert groomer["securityContext"] == {"x": 1}
    assert pod["initContainers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    values["scheduler"]["logGroomerSidecar"]["enabled"] = False
    docs = {d["metadata"]["name"]: d for d in chart_documents(values)}
    pod = docs["airflow-scheduler"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["scheduler"]


def test_values_file_parses_back(tmp_path: Path) -> None:
    result = CliRunner().invoke(deploy, ["helm-values", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert values["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert values["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert values["scheduler"]["logGroomerSidecar"]["resources"]["limits"]["memory"]


def test_the_chart_contracts_the_model_keeps() -> None:
    """What chart 1.22.0 renders and the hardening model must mirror: the worker's log groomer
    beside an emptyDir only with requirePersistence false, the JWT secret in the API server's and
    scheduler's main containers only, the probes in the chart's own argument order."""
    values = render_helm_values(TOP, K8sOptions())
    assert values["workers"]["logGroomerSidecar"]["requirePersistence"] is False
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in chart_documents(values)}
    assert [c["name"] for c in pods["airflow-worker"]["containers"]] == [
        "worker",
        "worker-log-groomer",
    ]
    del values["workers"]["logGroomerSidecar"]["requirePersistence"]
    worker = next(d for d in chart_documents(values) if d["metadata"]["name"] == "airflow-worker")
    assert [c["name"] for c in worker["spec"]["template"]["spec"]["containers"]] == ["worker"]
    for name, pod in pods.items():
        jwt = [
            c["name"]
            for c in (*pod.get("initContainers", []), *pod["containers"])
            if any(e["name"] == "AIRFLOW__API_AUTH__JWT_SECRET" for e in c["env"])
        ]
        wanted = {"airflow-api-server": ["api-server"], "airflow-scheduler": ["scheduler"]}
        assert jwt == wanted.get(name, []), name
    probe = pods["airflow-dag-processor"]["containers"][0]["livenessProbe"]["exec"]["command"]
    assert probe[2].endswith("airflow jobs check --local --job-type DagProcessorJob")
    probe = pods["airflow-worker"]["containers"][0]["livenessProbe"]["exec"]["command"]
    assert "$(hostname)" not in probe[2] and "socket.gethostname()" in probe[2]
