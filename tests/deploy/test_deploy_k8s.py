"""`hardflow deploy k8s` and `helm-values`: schema-valid, Pod Security "restricted" manifests."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli.deploy import deploy
from hardflow.deploy.helm import write_helm_values
from hardflow.deploy.k8s import (
    K8sOptions,
    for_podman_play,
    podman_play_options,
    podman_play_volumes,
    render_manifests,
    render_secrets,
    write_k8s_project,
)
from hardflow.deploy.secrets import Credentials
from hardflow.deploy.topology import Images, Topology
from hardflow.errors import HardflowError

yaml = pytest.importorskip("yaml")

IMAGES = Images("localhost/a/airflow:1", "localhost/a/postgres:1", "localhost/a/redis:1")
TOP = Topology(IMAGES, workers=2, project="hf")
ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "StatefulSet"):
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            found.append((where, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            found.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
    return found


def assert_restricted(where: str, spec: dict[str, Any]) -> None:
    """Every control of Pod Security "restricted" (and baseline) on one pod spec."""
    pod = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), where
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= ALLOWED_VOLUMES, (where, volume)
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert not sc.get("privileged"), where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert not sc["capabilities"].get("add"), where
        assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
        assert sc.get("runAsUser", pod.get("runAsUser")) not in (None, 0), where
        profile = sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        assert profile in ("RuntimeDefault", "Localhost"), where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert not any("hostPort" in p for p in c.get("ports", [])), where
        assert c["resources"]["limits"]["memory"] and c["resources"]["limits"]["cpu"], where


@pytest.mark.parametrize("executor", ["celery", "kubernetes"])
def test_every_pod_is_restricted(executor: str) -> None:
    opts = K8sOptions(executor=executor)
    docs = render_manifests(TOP, opts)
    specs = pod_specs(docs)
    assert specs
    for where, spec in specs:
        assert_restricted(where, spec)
    ns = docs[0]
    assert ns["kind"] == "Namespace"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_celery_topology() -> None:
    docs = render_manifests(TOP, K8sOptions())
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for role in ("postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer"):
        assert ("Deployment", role) in names
    assert ("Service", "postgres") in names and ("Service", "redis") in names
    assert ("Job", "airflow-init") in names
    assert ("ConfigMap", "hf-airflow-config") in names
    assert sum(d["kind"] == "NetworkPolicy" for d in docs) >= 3
    worker = next(d for d in docs if d["metadata"]["name"] == "celery-worker")
    assert worker["spec"]["replicas"] == 2
    assert not any(d["kind"] == "Secret" for d in docs)  # secrets live in secrets.yaml only


def test_kubernetes_executor_has_pod_template_and_rbac() -> None:
    docs = render_manifests(TOP, K8sOptions(executor="kubernetes"))
    kinds = [d["kind"] for d in docs]
    assert "Role" in kinds and "RoleBinding" in kinds and "ServiceAccount" in kinds
    assert not any(d["metadata"]["name"] in ("redis", "celery-worker") for d in docs)
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    template = yaml.safe_load(config["data"]["pod_template.yaml"])
    assert template["kind"] == "Pod"
    assert template["spec"]["containers"][0]["name"] == "base"
    assert_restricted("pod template", template["spec"])
    scheduler = next(d for d in docs if d["metadata"]["name"] == "scheduler")
    spec = scheduler["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "hardflow-scheduler"
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["AIRFLOW__CORE__EXECUTOR"] == "KubernetesExecutor"
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"].endswith("pod_template.yaml")


def test_external_database_leaves_postgres_out() -> None:
    opts = K8sOptions(postgres_host="db.example.internal", external_database=True)
    docs = render_manifests(TOP, opts)
    assert not any(d["metadata"]["name"] == "postgres" for d in docs)
    secrets = render_secrets(TOP, opts, Credentials.generate())
    conn = secrets[0]["stringData"]["sql_alchemy_conn"]
    assert "@db.example.internal:5432/" in conn
    assert [s["metadata"]["name"] for s in secrets] == ["hf-airflow", "hf-redis"]


def test_schemas_validate(tmp_path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    for executor in ("celery", "kubernetes"):
        project = write_k8s_project(TOP, K8sOptions(executor=executor), tmp_path / executor)
        for path in (project.manifests, project.secrets):
            for doc in yaml.safe_load_all(path.read_text()):
                kv.validate(doc, "1.31", strict=True)


def test_schema_validation_would_catch_a_typo() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    doc = render_manifests(TOP, K8sOptions())[3]
    assert doc["kind"] == "Deployment"
    doc["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, "1.31", strict=True)


def test_written_files(tmp_path: Path) -> None:
    project = write_k8s_project(TOP, K8sOptions(), tmp_path, podman_play=True)
    assert stat.S_IMODE(project.secrets.stat().st_mode) == 0o600
    assert project.podman_play is not None
    assert stat.S_IMODE(project.podman_play.stat().st_mode) == 0o600
    secrets = list(yaml.safe_load_all(project.secrets.read_text()))
    values = [v for s in secrets for v in s["stringData"].values()]
    manifests = project.manifests.read_text()
    assert values and not any(v in manifests for v in values)
    again = write_k8s_project(TOP, K8sOptions(), tmp_path)
    assert again.secrets_reused
    assert list(yaml.safe_load_all(again.secrets.read_text())) == secrets


def test_podman_play_variant() -> None:
    opts = podman_play_options(K8sOptions())
    secrets = render_secrets(TOP, opts, Credentials.generate())
    docs = for_podman_play(secrets + render_manifests(TOP, opts))
    assert not any(d["kind"] == "Secret" for d in docs)
    cm = next(d for d in docs if d["metadata"]["name"] == "hf-airflow")
    assert cm["kind"] == "ConfigMap"
    assert "@postgres-pod-0:5432/" in cm["data"]["sql_alchemy_conn"]
    empty_dirs: list[str] = []
    for _, spec in pod_specs(docs):
        assert all("secret" not in v for v in spec.get("volumes", []))
        assert_restricted("podman", spec)
        names = {v["name"] for v in spec.get("volumes", [])}
        for container in (*spec.get("initContainers", []), *spec["containers"]):
            assert {m["name"] for m in container.get("volumeMounts", [])} <= names
            # podman 4.3 publishes a containerPort on the host: never in the played variant
            assert "ports" not in container, container["name"]
        empty_dirs += [v["name"] for v in spec.get("volumes", []) if "emptyDir" in v]
    # podman 4.3 plays an emptyDir as a host-wide volume named after it: names must be unique
    assert empty_dirs and len(set(empty_dirs)) == len(empty_dirs), empty_dirs
    assert set(empty_dirs) <= set(podman_play_volumes(docs))
    assert "hf-airflow" in podman_play_volumes(docs)


def test_passes_the_manifest_audit(tmp_path: Path) -> None:
    audit = pytest.importorskip("hardflow.audit.run")
    from hardflow.audit.model import Level

    for executor in ("celery", "kubernetes"):
        project = write_k8s_project(TOP, K8sOptions(executor=executor), tmp_path / executor)
        report = audit.audit_manifests([project.manifests])
        assert not report.fails(Level.WARN), executor


def test_helm_secrets_match_the_values(tmp_path: Path) -> None:
    project = write_helm_values(TOP, K8sOptions(), tmp_path)
    values = yaml.safe_load(project.values.read_text())
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(project.secrets.read_text())}
    assert stat.S_IMODE(project.secrets.stat().st_mode) == 0o600
    assert "connection" in secrets[values["data"]["metadataSecretName"]]["stringData"]
    assert "fernet-key" in secrets[values["fernetKeySecretName"]]["stringData"]
    assert "api-secret-key" in secrets[values["apiSecretKeySecretName"]]["stringData"]
    assert "jwt-secret" in secrets[values["jwtSecretName"]]["stringData"]


def test_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        deploy, ["k8s", "--out", str(tmp_path / "k"), "--executor", "kubernetes", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"Role"' in result.output
    result = CliRunner().invoke(deploy, ["helm-values", "--out", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(deploy, ["k8s", "--out", str(tmp_path / "x"), "--project", "A B"])
    assert isinstance(bad.exception, HardflowError)
