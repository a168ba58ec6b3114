"""``hardflow deploy helm-values``: values for the official Apache Airflow Helm chart.

The chart runs the hardflow image with the hardened pod and container security contexts, its
bundled PostgreSQL and Redis turned off (they need images from a registry; use the hardflow
PostgreSQL/Redis of ``hardflow deploy k8s`` or your own), every secret read from Secrets
rendered apart (``helm-secrets.yaml``, mode 0600), and the probes replaced by the image's health
command: the chart's default probes run ``sh -c ... /entrypoint``, which the image does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardflow.deploy import secrets as sec
from hardflow.deploy.k8s import EXECUTORS, K8sOptions, container_security, pod_security
from hardflow.deploy.topology import HEALTH_COMMAND, WORKER_ROLE, Topology
from hardflow.deploy.yamlout import dump, dump_all
from hardflow.errors import HardflowError
from hardflow.fsutil import atomic_write

Doc = dict[str, Any]
# chart values section of each component (and the image entrypoint's role it runs)
CHART_SECTIONS = {
    "apiServer": "api-server",
    "scheduler": "scheduler",
    "dagProcessor": "dag-processor",
    "triggerer": "triggerer",
    "workers": WORKER_ROLE,
}
HEALTH_ROLE = {WORKER_ROLE: "celery"}


def _repo_tag(reference: str) -> tuple[str, str]:
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return name, tag


def _probe(role: str) -> Doc:
    return {"command": [*HEALTH_COMMAND, HEALTH_ROLE.get(role, role)]}


def secret_names(top: Topology) -> dict[str, str]:
    p = top.project
    return {
        "metadata": f"{p}-metadata",
        "result_backend": f"{p}-result-backend",
        "broker_url": f"{p}-broker-url",
        "fernet": f"{p}-fernet-key",
        "api_secret": f"{p}-api-secret-key",
        "jwt": f"{p}-jwt-secret",
    }


def render_helm_values(top: Topology, opts: K8sOptions) -> Doc:
    repo, tag = _repo_tag(top.images.airflow)
    names = secret_names(top)
    limits = {
        section: {
            "limits": {
                "cpu": f"{int(top.limit(role).cpus * 1000)}m",
                "memory": top.limit(role).memory_k8s,
            },
            "requests": {"cpu": "100m", "memory": "128Mi"},
        }
        for section, role in CHART_SECTIONS.items()
    }
    values: Doc = {
        "airflowVersion": tag,
        "defaultAirflowRepository": repo,
        "defaultAirflowTag": tag,
        "images": {
            "airflow": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
            "pod_template": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
            "useDefaultImageForMigration": False,
            "migrationsWaitTimeout": 300,
        },
        "executor": EXECUTORS[opts.executor],
        "uid": sec.AIRFLOW_UID,
        "gid": sec.AIRFLOW_GID,
        "securityContexts": {
            "pod": pod_security(sec.AIRFLOW_UID, sec.AIRFLOW_GID),
            "containers": container_security(),
        },
        # the root file system is read-only: /tmp on a memory-backed emptyDir everywhere
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "pgbouncer": {"enabled": False},
        "statsd": {"enabled": False},
        "networkPolicies": {"enabled": True},
        "data": {
            "metadataSecretName": names["metadata"],
            "resultBackendSecretName": names["result_backend"],
            "brokerUrlSecretName": names["broker_url"],
        },
        "fernetKeySecretName": names["fernet"],
        "apiSecretKeySecretName": names["api_secret"],
        "jwtSecretName": names["jwt"],
        "config": {
            "core": {"load_examples": "False"},
            "api": {"workers": str(top.api_workers)},
            "celery": {"worker_concurrency": str(top.worker_concurrency)},
            "scheduler": {"enable_health_check": "True"},
        },
    }
    if not opts.celery:
        values["data"].pop("resultBackendSecretName")
        values["data"].pop("brokerUrlSecretName")
    for section, role in CHART_SECTIONS.items():
        if section == "workers" and not opts.celery:
            continue
        part: Doc = {"args": [role], "resources": limits[section]}
        if section == "workers":
            part["replicas"] = top.workers
            part["persistence"] = {"enabled": False}  # logs on an emptyDir, served on 8793
        if section != "apiServer":  # the API server keeps the chart's HTTP probes
            part["livenessProbe"] = _probe(role)
        if section == "scheduler":
            part["startupProbe"] = _probe(role)
        values[section] = part
    return values


def render_helm_secrets(top: Topology, opts: K8sOptions, creds: sec.Credentials) -> list[Doc]:
    """The Secrets the values name, with the keys the chart reads."""
    ep = sec.Endpoints(postgres_host=opts.postgres_host, redis_host=opts.redis_host)
    names = secret_names(top)
    items = [
        (names["metadata"], "connection", sec.sql_alchemy_conn(creds, ep)),
        (names["fernet"], "fernet-key", creds.fernet_key),
        (names["api_secret"], "api-secret-key", creds.api_secret_key),
        (names["jwt"], "jwt-secret", creds.jwt_secret),
    ]
    if opts.celery:
        items.insert(1, (names["result_backend"], "connection", sec.result_backend(creds, ep)))
        items.insert(2, (names["broker_url"], "connection", sec.broker_url(creds, ep)))
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": opts.namespace},
            "type": "Opaque",
            "stringData": {key: value},
        }
        for name, key, value in items
    ]


@dataclass(frozen=True)
class HelmProject:
    values: Path
    secrets: Path


HEADER = """\
Values for the official Apache Airflow Helm chart, rendered by `hardflow deploy helm-values`.
  kubectl apply -n NAMESPACE -f helm-secrets.yaml
  helm install airflow apache-airflow/airflow -n NAMESPACE -f values.yaml
The database and broker are not deployed by the chart: the connection Secrets point at the
PostgreSQL and Redis Services of `hardflow deploy k8s` (or --postgres-host/--redis-host)."""


def write_helm_values(top: Topology, opts: K8sOptions, out_dir: Path) -> HelmProject:
    from hardflow.deploy.k8s import read_existing_secrets

    if out_dir.exists() and not out_dir.is_dir():
        raise HardflowError(f"--out {out_dir}: expected a directory, found a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets_path = out_dir / "helm-secrets.yaml"
    # keep the passwords of a k8s render in the same directory (same database)
    existing = read_existing_secrets(out_dir / "secrets.yaml")
    creds = sec.Credentials.generate(existing or _existing_helm(secrets_path))
    values_path = out_dir / "values.yaml"
    atomic_write(values_path, dump(render_helm_values(top, opts), HEADER).encode())
    docs = render_helm_secrets(top, opts, creds)
    atomic_write(secrets_path, dump_all(docs, "Secret values: keep private.").encode(), 0o600)
    return HelmProject(values=values_path, secrets=secrets_path)


def _existing_helm(path: Path) -> dict[str, str]:
    import json

    if not path.is_file():
        return {}
    keys = {
        "fernet-key": "fernet_key",
        "api-secret-key": "api_secret_key",
        "jwt-secret": "jwt_secret",
    }
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep and key in keys and value.startswith('"'):
            found[keys[key]] = json.loads(value)
    return found

