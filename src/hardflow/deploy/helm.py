"""``hardflow deploy helm-values``: values for the official Apache Airflow Helm chart.

The chart runs the hardflow image with the hardened pod and container security contexts, its
bundled PostgreSQL and Redis turned off (they need images from a registry; use the hardflow
PostgreSQL/Redis of ``hardflow deploy k8s`` or your own), every secret read from Secrets
rendered apart (``helm-secrets.yaml``, mode 0600), and the probes replaced by the image's health
command: the chart's default probes run ``sh -c ... /entrypoint``, which the image does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from hardflow.contract import HEALTH_COMMAND
from hardflow.deploy import secrets as sec
from hardflow.deploy.k8s import EXECUTORS, K8sOptions, container_security, pod_security
from hardflow.deploy.topology import WORKER_ROLE, Topology
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
    secret_status: sec.SecretsOutcome = field(default_factory=sec.SecretsOutcome)

    @property
    def secrets_note(self) -> str:
        """Which secrets were kept and which were made anew, and why."""
        return self.secret_status.summary()


HEADER = """\
Values for the official Apache Airflow Helm chart, rendered by `hardflow deploy helm-values`.
  kubectl apply -n NAMESPACE -f helm-secrets.yaml
  helm install airflow apache-airflow/airflow -n NAMESPACE -f values.yaml
The database and broker are not deployed by the chart: the connection Secrets point at the
PostgreSQL and Redis Services of `hardflow deploy k8s` (or --postgres-host/--redis-host)."""


def helm_credentials(opts: K8sOptions) -> list[str]:
    """The credentials the chart's Secrets carry (some inside connection URLs)."""
    names = ["postgres_password", "fernet_key", "api_secret_key", "jwt_secret"]
    if opts.celery:
        names.insert(1, "redis_password")
    return names


def write_helm_values(top: Topology, opts: K8sOptions, out_dir: Path) -> HelmProject:
    from hardflow.deploy.k8s import scan_existing_secrets

    if out_dir.exists() and not out_dir.is_dir():
        raise HardflowError(f"--out {out_dir}: expected a directory, found a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets_path = out_dir / "helm-secrets.yaml"
    # keep the passwords of a k8s render in the same directory (same database)
    k8s_path = out_dir / "secrets.yaml"
    found, source = scan_existing_secrets(k8s_path), k8s_path
    if not any(found.values()):
        found, source = _existing_helm(top, secrets_path), secrets_path
    wanted = helm_credentials(opts)
    found = {k: v for k, v in found.items() if k in wanted}
    creds, status = sec.reuse_credentials(found, wanted, source=str(source))
    values_path = out_dir / "values.yaml"
    atomic_write(values_path, dump(render_helm_values(top, opts), HEADER).encode())
    docs = render_helm_secrets(top, opts, creds)
    atomic_write(secrets_path, dump_all(docs, "Secret values: keep private.").encode(), 0o600)
    return HelmProject(values=values_path, secrets=secrets_path, secret_status=status)


def _existing_helm(top: Topology, path: Path) -> dict[str, str]:
    """The credentials an earlier helm-secrets.yaml holds: name → value ("" when empty).

    The database and broker passwords live inside the connection URLs; they are read back
    from there, so a re-render does not change them under a database initialised with them.
    """
    import yaml

    if not path.is_file():
        return {}
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise HardflowError(
            f"cannot read the earlier {path}: {exc}",
            hint="fix or remove it (new secrets are then generated)",
        ) from None
    names = secret_names(top)
    by_secret: dict[str, dict[str, object]] = {}
    for doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
            data = doc.get("stringData")
            by_secret[str(doc["metadata"].get("name"))] = data if isinstance(data, dict) else {}
    plain = {"fernet": ("fernet-key", "fernet_key"), "api_secret": ("api-secret-key",
             "api_secret_key"), "jwt": ("jwt-secret", "jwt_secret")}  # fmt: skip
    found: dict[str, str] = {}
    for secret, (key, credential) in plain.items():
        if names[secret] in by_secret:
            value = by_secret[names[secret]].get(key)
            found[credential] = value.strip() if isinstance(value, str) else ""
    for secret, credential in (("metadata", "postgres_password"), ("broker_url", "redis_password")):
        if names[secret] in by_secret:
            found[credential] = _url_password(by_secret[names[secret]].get("connection"))
    return found


def _url_password(url: object) -> str:
    if not isinstance(url, str):
        return ""
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""
