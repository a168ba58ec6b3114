"""``hardflow deploy helm-values``: values for the official Apache Airflow Helm chart.

The values are written for one chart release, :data:`~hardflow.deploy.chart.CHART_VERSION`
(named in the file's header and in the install command). They keep the chart's own defaults
wherever the image supports them: the FAB auth manager and the create-user job, the log-groomer
sidecars (``bash /clean-logs``), the probes (``sh -c ... /entrypoint airflow jobs check``) and the
chart's commands (``bash -c "exec airflow ..."``). What they change, and why:

- every Airflow container and init container: read-only root file system, no privilege
  escalation, all capabilities dropped, seccomp ``RuntimeDefault``, non-root (uid 50000, gid 0),
  through the chart's ``securityContexts`` (which every Airflow container, sidecar and init
  container of the chart falls back to);
- a memory-backed ``/tmp`` emptyDir for every one of them (the chart's global ``volumes`` and
  ``volumeMounts``, which it adds to each), since the root is read-only;
- the image, pinned by digest when hardflow knows it (``images.airflow.digest``);
- the chart's PostgreSQL, Redis, PgBouncer and StatsD off: they need images from a registry
  that hardflow does not build; the connection Secrets point at the PostgreSQL and Redis of
  ``hardflow deploy k8s`` (or ``--postgres-host``);
- every secret read from Secrets rendered apart (``helm-secrets.yaml``, mode 0600), so the chart
  does not generate them at each upgrade;
- resources for every container (the sidecars and jobs have none by default);
- Celery workers keep their logs on an emptyDir rather than a claim (no storage class assumed),
  and keep their log groomer there (``workers.logGroomerSidecar.requirePersistence: false``: the
  chart renders the worker's groomer only beside a claim otherwise).

The result passes Pod Security "restricted": :func:`hardflow.deploy.chart.chart_documents`
replays what the chart makes of these values, and the tests audit that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from hardflow.deploy import oidc
from hardflow.deploy import secrets as sec
from hardflow.deploy.chart import CHART_REPOSITORY, CHART_VERSION
from hardflow.deploy.k8s import EXECUTORS, K8sOptions, container_security, pod_security
from hardflow.deploy.pinning import split_pinned
from hardflow.deploy.topology import WORKER_ROLE, Topology, embedded_reference
from hardflow.deploy.yamlout import dump, dump_all
from hardflow.errors import HardflowError
from hardflow.fsutil import atomic_write

Doc = dict[str, Any]
# chart values section of each component (and the topology's limits it takes)
CHART_SECTIONS = {
    "apiServer": "api-server",
    "scheduler": "scheduler",
    "dagProcessor": "dag-processor",
    "triggerer": "triggerer",
    "workers": WORKER_ROLE,
}
# the components the chart gives a log-groomer sidecar by default
LOG_GROOMED = ("scheduler", "dagProcessor", "triggerer", "workers")
GROOMER_RESOURCES: Doc = {
    "requests": {"cpu": "10m", "memory": "64Mi"},
    "limits": {"cpu": "200m", "memory": "256Mi"},
}


def image_parts(reference: str) -> tuple[str, str, str]:
    """``(repository, tag, digest)`` of a reference; tag "" or digest "" when absent."""
    name, digest = split_pinned(reference)
    repository, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "", digest
    return repository, tag, digest


def airflow_version(tag: str) -> str:
    """The chart's ``airflowVersion`` (it switches templates on it): the image tag when it is a
    version, else the Airflow version of hardflow's default spec."""
    if re.fullmatch(r"\d+\.\d+\.\d+", tag):
        return tag
    return image_parts(embedded_reference("default"))[1]


def _resources(top: Topology, role: str) -> Doc:
    lim = top.limit(role)
    return {
        "limits": {"cpu": f"{int(lim.cpus * 1000)}m", "memory": lim.memory_k8s},
        "requests": {"cpu": "100m", "memory": "128Mi"},
    }


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


def _image(repository: str, tag: str, digest: str) -> Doc:
    image: Doc = {"repository": repository, "tag": tag or None, "pullPolicy": "IfNotPresent"}
    if digest:
        image["digest"] = digest  # the chart then pulls repository@digest
    return image


def render_helm_values(top: Topology, opts: K8sOptions) -> Doc:
    repository, tag, digest = image_parts(top.images.airflow)
    version = airflow_version(tag)
    names = secret_names(top)
    values: Doc = {
        "airflowVersion": version,
        "defaultAirflowRepository": repository,
        "defaultAirflowTag": tag or version,
        "images": {
            "airflow": _image(repository, tag or version, digest),
            "pod_template": _image(repository, tag or version, digest),
        },
        "executor": EXECUTORS[opts.executor],
        "uid": sec.AIRFLOW_UID,
        "gid": sec.AIRFLOW_GID,
        # the chart's fallback for every Airflow container, sidecar, init container and job
        "securityContexts": {
            "pod": pod_security(sec.AIRFLOW_UID, sec.AIRFLOW_GID),
            "containers": {**container_security(), "runAsNonRoot": True},
        },
        # the root file system is read-only: /tmp on a memory-backed emptyDir, which the chart
        # adds to every Airflow container, sidecar, init container and job of a pod
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
            "api": {"workers": str(top.api_workers)},
            "celery": {"worker_concurrency": str(top.worker_concurrency)},
        },
    }
    if not opts.celery:
        values["data"].pop("resultBackendSecretName")
        values["data"].pop("brokerUrlSecretName")
        values["config"].pop("celery")
    for section, role in CHART_SECTIONS.items():
        if section == "workers" and not opts.celery:
            continue
        part: Doc = {"resources": _resources(top, role)}
        if section in LOG_GROOMED:
            part["logGroomerSidecar"] = {"resources": GROOMER_RESOURCES}
        if section == "workers":
            part["replicas"] = top.workers
            part["persistence"] = {"enabled": False}  # logs on an emptyDir, served on 8793
            # without a logs claim the chart drops the worker's log groomer unless told not to
            part["logGroomerSidecar"]["requirePersistence"] = False
        values[section] = part
    if not opts.celery:  # the chart's worker pod template takes the workers' resources
        values["workers"] = {"resources": _resources(top, "airflow-worker")}
    for job in ("migrateDatabaseJob", "createUserJob"):
        values[job] = {"resources": _resources(top, "airflow-init")}
    if top.oidc:
        _oidc_values(top, values)
    return values


OIDC_DIR = "/opt/airflow/oidc"  # the API server's rendered webserver_config.py
OIDC_SECRET_DIR = "/run/secrets/oidc"


def oidc_names(top: Topology) -> tuple[str, str]:
    """(ConfigMap, Secret) of the OpenID Connect login, both in helm-secrets.yaml."""
    return f"{top.project}-oidc-config", f"{top.project}-oidc"


def _oidc_values(top: Topology, values: Doc) -> None:
    """The API server logs users in through OpenID Connect: the FAB auth manager (every
    component, through airflow.cfg), the rendered config and the client secret mounted in the
    API server alone (its extraVolumes), found through its env."""
    config_map, secret = oidc_names(top)
    values["config"]["core"] = {"auth_manager": oidc.FAB_AUTH_MANAGER}
    api = values["apiServer"]
    api["env"] = [
        {"name": name, "value": value}
        for name, value in oidc.airflow_env(
            f"{OIDC_DIR}/{oidc.CONFIG_NAME}", f"{OIDC_SECRET_DIR}/{oidc.SECRET_NAME}"
        ).items()
        if name != "AIRFLOW__CORE__AUTH_MANAGER"
    ]
    api["extraVolumes"] = [
        {"name": "oidc-config", "configMap": {"name": config_map}},
        {"name": "oidc-secret", "secret": {"secretName": secret, "defaultMode": 0o440}},
    ]
    api["extraVolumeMounts"] = [
        {"name": "oidc-config", "mountPath": OIDC_DIR, "readOnly": True},
        {"name": "oidc-secret", "mountPath": OIDC_SECRET_DIR, "readOnly": True},
    ]


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
    if top.oidc:
        value = oidc.read_client_secret(top.oidc.client_secret_file)
        items.append((oidc_names(top)[1], oidc.SECRET_NAME, value))
    docs: list[Doc] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": opts.namespace},
            "type": "Opaque",
            "stringData": {key: value},
        }
        for name, key, value in items
    ]
    if top.oidc:  # not secret, but applied with the Secrets, before the chart is installed
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": oidc_names(top)[0], "namespace": opts.namespace},
                "data": {oidc.CONFIG_NAME: oidc.render_webserver_config(top.oidc)},
            }
        )
    return docs


@dataclass(frozen=True)
class HelmProject:
    values: Path
    secrets: Path
    secret_status: sec.SecretsOutcome = field(default_factory=sec.SecretsOutcome)

    @property
    def secrets_note(self) -> str:
        """Which secrets were kept and which were made anew, and why."""
        return self.secret_status.summary()


HEADER = f"""\
Values for the official Apache Airflow Helm chart {CHART_VERSION}, rendered by
`hardflow deploy helm-values`. Install that chart version:
  kubectl apply -n NAMESPACE -f helm-secrets.yaml
  helm install airflow {CHART_REPOSITORY} --version {CHART_VERSION} -n NAMESPACE -f values.yaml
The chart's defaults are kept (FAB auth manager, create-user job, log groomers, probes); what
differs: read-only root, no capabilities, seccomp RuntimeDefault and a /tmp emptyDir for every
container, the image pinned by digest when hardflow knows it, and the database and broker outside
the chart (the connection Secrets point at the PostgreSQL and Redis of `hardflow deploy k8s`).
Change the chart's default admin password (the create-user job's defaults) before exposing it."""


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
