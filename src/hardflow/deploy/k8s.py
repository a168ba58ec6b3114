"""``hardflow deploy k8s``: plain Kubernetes manifests for the hardflow images.

Pure part: :func:`render_manifests` returns the documents (Namespace with Pod Security
"restricted" enforced, Secrets, ConfigMap, PersistentVolumeClaims, Deployments, Services,
NetworkPolicies, the init Job and, for KubernetesExecutor, the RBAC and the worker pod
template). Secrets are rendered apart (:func:`render_secrets`) so that only ``secrets.yaml``
(mode 0600) holds secret values.

The metadata database runs as a single-replica Deployment (strategy Recreate) on a
PersistentVolumeClaim rather than a StatefulSet: ``podman kube play``, the consumer the tests use,
ignores StatefulSets. Point ``--postgres-host`` at an external database to leave it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from hardflow.contract import API_PORT, CONFIG_DIR, HEALTH_COMMAND, LOGS_DIR
from hardflow.deploy import metrics as met
from hardflow.deploy import oidc
from hardflow.deploy import secrets as sec
from hardflow.deploy.k8s_metrics import metrics_documents
from hardflow.deploy.k8s_objects import EXECUTORS as EXECUTORS  # re-exported (helm, cli)
from hardflow.deploy.k8s_objects import Doc
from hardflow.deploy.k8s_objects import K8sOptions as K8sOptions
from hardflow.deploy.k8s_objects import container_security as container_security
from hardflow.deploy.k8s_objects import deployment as _deployment
from hardflow.deploy.k8s_objects import env_list as _env
from hardflow.deploy.k8s_objects import exec_probe as _exec_probe
from hardflow.deploy.k8s_objects import labels as _labels
from hardflow.deploy.k8s_objects import meta as _meta
from hardflow.deploy.k8s_objects import pod_security as pod_security
from hardflow.deploy.k8s_objects import pvc as _pvc
from hardflow.deploy.k8s_objects import resources as _resources
from hardflow.deploy.k8s_objects import service as _service
from hardflow.deploy.podman_play import (  # re-exported: the k8s render's podman variant
    for_podman_play,
    podman_play_volumes,
    podman_pod_host,
)
from hardflow.deploy.topology import (
    AIRFLOW_CFG,
    AIRFLOW_ROLES,
    SECRETS_DIR,
    WORKER_ROLE,
    Topology,
    airflow_environment,
)
from hardflow.deploy.yamlout import dump, dump_all
from hardflow.errors import HardflowError
from hardflow.fsutil import atomic_write

POD_TEMPLATE_FILE = f"{CONFIG_DIR}/pod_template.yaml"
WORKER_LOG_PORT = 8793


def airflow_env(top: Topology, opts: K8sOptions) -> dict[str, str]:
    env = airflow_environment(top, EXECUTORS[opts.executor], opts.api_host)
    env.update(
        {var: f"{SECRETS_DIR}/airflow/{name}" for var, name in sec.AIRFLOW_FILE_VARIABLES.items()}
    )
    if not opts.celery:
        for var in ("AIRFLOW__CELERY__BROKER_URL_FILE", "AIRFLOW__CELERY__RESULT_BACKEND_FILE"):
            env.pop(var)
        env["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] = POD_TEMPLATE_FILE
        env["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"] = opts.namespace
        env["AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS"] = "True"
    if top.metrics:
        env.update(met.airflow_env(opts.statsd_host))
    if top.oidc:  # the rendered webserver_config.py is in the config ConfigMap
        env.update(oidc.airflow_env(oidc.CONFIG_PATH, None))
    # see compose.py: every component migrates (a no-op on a current schema) under the lock
    env["_AIRFLOW_DB_MIGRATE"] = "true"
    return env


def airflow_secret_names(opts: K8sOptions) -> list[str]:
    names = list(sec.AIRFLOW_FILE_VARIABLES.values())
    if not opts.celery:
        names = [n for n in names if n not in ("celery_broker_url", "celery_result_backend")]
    return names


def _airflow_volumes(top: Topology) -> tuple[list[Doc], list[Doc]]:
    volumes: list[Doc] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
        {"name": "logs", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "config", "configMap": {"name": f"{top.project}-airflow-config"}},
        {
            "name": "secrets",
            "secret": {"secretName": f"{top.project}-airflow", "defaultMode": 0o440},
        },
    ]
    mounts: list[Doc] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "logs", "mountPath": LOGS_DIR},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "secrets", "mountPath": f"{SECRETS_DIR}/airflow", "readOnly": True},
    ]
    return volumes, mounts


def _airflow_container(
    top: Topology, opts: K8sOptions, name: str, args: list[str], kind: str, health_role: str,
    extra_env: Mapping[str, str] | None = None,
) -> Doc:  # fmt: skip
    env = airflow_env(top, opts)
    env.update(extra_env or {})
    _, mounts = _airflow_volumes(top)
    container: Doc = {
        "name": name,
        "image": top.images.airflow,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": _env(env),
        "securityContext": container_security(),
        "resources": _resources(top, kind),
        "volumeMounts": mounts,
    }
    if health_role:
        probe = [*HEALTH_COMMAND, health_role]
        container["livenessProbe"] = _exec_probe(probe, 120)
        container["readinessProbe"] = _exec_probe(probe, 20, 15)
    return container


def _airflow_pod_spec(top: Topology, opts: K8sOptions, container: Doc, restart: str) -> Doc:
    volumes, _ = _airflow_volumes(top)
    spec: Doc = {
        "securityContext": pod_security(sec.AIRFLOW_UID, sec.AIRFLOW_GID),
        "automountServiceAccountToken": False,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": volumes,
    }
    if not opts.celery and container["name"] == "scheduler":
        spec["serviceAccountName"] = "hardflow-scheduler"
        spec["automountServiceAccountToken"] = True  # it creates the worker pods
    return spec


def _backing_pod(
    top: Topology, image: str, name: str, uid: int, gid: int, env: Mapping[str, str],
    secret: str, data_path: str, port: int, probe: list[str], kind: str,
) -> Doc:  # fmt: skip
    return {
        "securityContext": pod_security(uid, gid),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [
            {
                "name": name,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "env": _env(env),
                "ports": [{"containerPort": port, "name": "tcp"}],
                "securityContext": container_security(),
                "resources": _resources(top, kind),
                "livenessProbe": _exec_probe(probe, 30, 20),
                "readinessProbe": _exec_probe(probe, 5, 10),
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "data", "mountPath": data_path},
                    {"name": "secret", "mountPath": f"{SECRETS_DIR}/{name}", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": f"{top.project}-{name}-data"}},
            {"name": "secret", "secret": {"secretName": secret, "defaultMode": 0o440}},
        ],
    }


def _network_policies(top: Topology, opts: K8sOptions) -> list[Doc]:
    instance = {"app.kubernetes.io/instance": top.project}
    airflow_pods = {
        "matchExpressions": [
            {
                "key": "app.kubernetes.io/component",
                "operator": "In",
                "values": [
                    "airflow-init",
                    *AIRFLOW_ROLES,
                    WORKER_ROLE,
                    "airflow-worker",
                ],
            }
        ],
        "matchLabels": instance,
    }

    def policy(
        name: str, component: str, port: int, source: Doc | None, protocol: str = "TCP",
        more: tuple[Doc, ...] = (),
    ) -> Doc:  # fmt: skip
        rule: Doc = {"ports": [{"protocol": protocol, "port": port}]}
        if source is not None:
            rule["from"] = [{"podSelector": source}]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(top, opts, name, component),
            "spec": {
                "podSelector": {"matchLabels": _labels(top, component)},
                "policyTypes": ["Ingress"],
                "ingress": [rule, *more],
            },
        }

    docs: list[Doc] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(top, opts, "hardflow-default-deny", "network"),
            "spec": {"podSelector": {"matchLabels": instance}, "policyTypes": ["Ingress"]},
        },
        # the UI/REST API and the workers' execution API client
        policy("hardflow-api-server", "api-server", API_PORT, None),
    ]
    if not opts.external_database:
        docs.append(policy("hardflow-postgres", "postgres", 5432, airflow_pods))
    if opts.celery:
        docs.append(policy("hardflow-redis", "redis", 6379, airflow_pods))
        api = {"matchLabels": _labels(top, "api-server")}
        docs.append(policy("hardflow-worker-logs", WORKER_ROLE, WORKER_LOG_PORT, api))
    if top.metrics:
        # StatsD from every Airflow pod; /metrics for Prometheus; Prometheus's UI and API for the
        # pods of this deployment (kubectl port-forward reaches it too)
        prom = {"matchLabels": _labels(top, met.PROMETHEUS)}
        scrape: Doc = {"from": [{"podSelector": prom}],
                       "ports": [{"protocol": "TCP", "port": met.EXPORTER_PORT}]}  # fmt: skip
        docs.append(policy("hardflow-statsd-exporter", met.EXPORTER, met.STATSD_PORT,
                           airflow_pods, "UDP", (scrape,)))  # fmt: skip
        docs.append(policy("hardflow-prometheus", met.PROMETHEUS, met.PROMETHEUS_PORT,
                           {"matchLabels": instance}))  # fmt: skip
    return docs


def pod_template(top: Topology, opts: K8sOptions) -> Doc:
    """The KubernetesExecutor worker pod: container ``base`` (the name Airflow requires)."""
    container = _airflow_container(top, opts, "base", [], "airflow-worker", "")
    env = [e for e in container["env"] if e["name"] != "_AIRFLOW_DB_MIGRATE"]
    container["env"] = env
    container.pop("args")
    spec = _airflow_pod_spec(top, opts, container, "Never")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hardflow-worker", "labels": _labels(top, "airflow-worker")},
        "spec": spec,
    }


def _rbac(top: Topology, opts: K8sOptions) -> list[Doc]:
    meta = _meta(top, opts, "hardflow-scheduler", "scheduler")
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "verbs": ["create", "delete", "get", "list", "patch", "watch"],
                },
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "hardflow-scheduler",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": "hardflow-scheduler",
                    "namespace": opts.namespace,
                }
            ],
        },
    ]


def render_manifests(top: Topology, opts: K8sOptions) -> list[Doc]:
    """Every non-secret document, in the order ``kubectl apply -f`` should create them."""
    docs: list[Doc] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": opts.namespace,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            },
        }
    ]
    config: dict[str, str] = {"airflow.cfg": AIRFLOW_CFG}
    if top.oidc:
        config[oidc.CONFIG_NAME] = oidc.render_webserver_config(top.oidc)
    if not opts.celery:
        config["pod_template.yaml"] = dump(pod_template(top, opts))
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(top, opts, f"{top.project}-airflow-config", "config"),
            "data": config,
        }
    )
    if not opts.celery:
        docs.extend(_rbac(top, opts))
    ep = sec.Endpoints()
    if not opts.external_database:
        docs.append(
            _pvc(top, opts, f"{top.project}-postgres-data", "postgres", opts.postgres_storage)
        )
        pg_env = {
            "POSTGRES_USER": ep.db_user,
            "POSTGRES_DB": ep.database,
            "POSTGRES_PASSWORD_FILE": f"{SECRETS_DIR}/postgres/postgres_password",
        }
        pg = _backing_pod(
            top, top.images.postgres, "postgres", sec.POSTGRES_UID, sec.POSTGRES_GID, pg_env,
            f"{top.project}-postgres", "/var/lib/postgresql", 5432,
            ["/usr/lib/postgresql/17/bin/pg_isready", "--host=/tmp", "--quiet"], "postgres",
        )  # fmt: skip
        docs.append(_deployment(top, opts, "postgres", "postgres", pg, recreate=True))
        docs.append(_service(top, opts, "postgres", "postgres", 5432))
    if opts.celery:
        docs.append(_pvc(top, opts, f"{top.project}-redis-data", "redis", opts.redis_storage))
        rd_env = {"REDIS_PASSWORD_FILE": f"{SECRETS_DIR}/redis/redis_password"}
        rd = _backing_pod(
            top, top.images.redis, "redis", sec.REDIS_UID, sec.REDIS_GID, rd_env,
            f"{top.project}-redis", "/data", 6379,
            ["/usr/bin/bash", "/usr/local/bin/hardflow-redis-health"], "redis",
        )  # fmt: skip
        docs.append(_deployment(top, opts, "redis", "redis", rd, recreate=True))
        docs.append(_service(top, opts, "redis", "redis", 6379))
    if top.metrics:
        docs.extend(metrics_documents(top, opts))

    init = _airflow_container(
        top, opts, "airflow-init", ["airflow", "db", "check-migrations"], "airflow-init", "airflow",
        {"_AIRFLOW_WWW_USER_CREATE": "true"},
    )  # fmt: skip
    docs.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(top, opts, "airflow-init", "airflow-init"),
            "spec": {
                "backoffLimit": 5,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": _labels(top, "airflow-init")},
                    "spec": _airflow_pod_spec(top, opts, init, "OnFailure"),
                },
            },
        }
    )
    roles: list[tuple[str, int]] = [(role, 1) for role in AIRFLOW_ROLES]
    if opts.celery:
        roles.append((WORKER_ROLE, top.workers))
    health = {WORKER_ROLE: "celery"}
    for role, replicas in roles:
        extra = {"_AIRFLOW_WWW_USER_CREATE": "true"} if role == "api-server" else {}
        if role == "api-server" and top.oidc:
            extra[oidc.SECRET_ENV] = f"{OIDC_SECRET_DIR}/{oidc.SECRET_NAME}"
        c = _airflow_container(top, opts, role, [role], role, health.get(role, role), extra)
        if role == "api-server":
            c["ports"] = [{"containerPort": API_PORT, "name": "http"}]
        if role == WORKER_ROLE:
            c["ports"] = [{"containerPort": WORKER_LOG_PORT, "name": "logs"}]
        spec = _airflow_pod_spec(top, opts, c, "Always")
        if role == "api-server" and top.oidc:
            _add_oidc_secret(top, spec)
        docs.append(_deployment(top, opts, role, role, spec, replicas))
        if role == "api-server":
            docs.append(_service(top, opts, "api-server", "api-server", API_PORT))
    docs.extend(_network_policies(top, opts))
    return docs


OIDC_SECRET_DIR = f"{SECRETS_DIR}/oidc"


def oidc_secret_name(top: Topology) -> str:
    return f"{top.project}-oidc"


def _add_oidc_secret(top: Topology, spec: Doc) -> None:
    """The API server alone reads the OpenID Connect client secret: its own Secret, mounted."""
    spec["volumes"].append(
        {
            "name": "oidc",
            "secret": {"secretName": oidc_secret_name(top), "defaultMode": 0o440},
        }
    )
    mount = {"name": "oidc", "mountPath": OIDC_SECRET_DIR, "readOnly": True}
    spec["containers"][0]["volumeMounts"].append(mount)


def _secret(top: Topology, opts: K8sOptions, name: str, data: Mapping[str, str]) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(top, opts, name, "secrets"),
        "type": "Opaque",
        "stringData": dict(data),
    }


def render_secrets(top: Topology, opts: K8sOptions, creds: sec.Credentials) -> list[Doc]:
    ep = sec.Endpoints(postgres_host=opts.postgres_host, redis_host=opts.redis_host)
    files = {f.name: f.value for f in sec.secret_files(creds, ep)}
    docs = [
        _secret(
            top, opts, f"{top.project}-airflow", {n: files[n] for n in airflow_secret_names(opts)}
        )
    ]
    if not opts.external_database:
        docs.append(
            _secret(
                top,
                opts,
                f"{top.project}-postgres",
                {"postgres_password": files["postgres_password"]},
            )
        )
    if opts.celery:
        docs.append(
            _secret(top, opts, f"{top.project}-redis", {"redis_password": files["redis_password"]})
        )
    if top.oidc:
        value = oidc.read_client_secret(top.oidc.client_secret_file)
        docs.append(_secret(top, opts, oidc_secret_name(top), {oidc.SECRET_NAME: value}))
    return docs


def podman_play_options(opts: K8sOptions) -> K8sOptions:
    """The same topology with the endpoints podman's DNS knows (it ignores Services)."""
    return replace(
        opts,
        postgres_host=podman_pod_host("postgres")
        if not opts.external_database
        else opts.postgres_host,
        redis_host=podman_pod_host("redis"),
        api_host=podman_pod_host("api-server"),
        statsd_host=podman_pod_host(met.EXPORTER),
    )


@dataclass(frozen=True)
class K8sProject:
    directory: Path
    manifests: Path
    secrets: Path
    kinds: tuple[str, ...]
    secrets_reused: bool  # every credential kept from the earlier secrets.yaml
    podman_play: Path | None = field(default=None)
    secret_status: sec.SecretsOutcome = field(default_factory=sec.SecretsOutcome)

    @property
    def secrets_note(self) -> str:
        """Which secrets were kept and which were made anew, and why."""
        return self.secret_status.summary()


HEADER = """\
Rendered by `hardflow deploy k8s`. Apply secrets.yaml first, then this file:
  kubectl apply -f secrets.yaml -f manifests.yaml
Every pod passes Pod Security "restricted" (enforced on the namespace)."""
SECRETS_HEADER = """\
Secret values of a hardflow deployment (mode 0600): keep this file private; never commit it."""


def scan_existing_secrets(path: Path) -> dict[str, str]:
    """The credentials an earlier secrets.yaml holds: name → value ("" when empty)."""
    import json

    if not path.is_file():
        return {}
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep and key in sec.CREDENTIAL_FILES:
            try:
                text = json.loads(value) if value.startswith('"') else value
            except ValueError:
                text = ""  # unreadable: treated as empty, so it is made anew and said so
            found[key] = text.strip() if isinstance(text, str) else ""
    return found


def read_existing_secrets(path: Path) -> dict[str, str]:
    """Credential values from an earlier secrets.yaml (so a re-render keeps the passwords)."""
    return {k: v for k, v in scan_existing_secrets(path).items() if v}


def stored_credentials(docs: list[Doc]) -> list[str]:
    """The credentials (by name) the rendered Secrets hold as plain keys, in a stable order."""
    keys = {k for d in docs for k in d.get("stringData", {})}
    return [name for name in sec.CREDENTIAL_FILES if name in keys]


PODMAN_HEADER = """\
Rendered by `hardflow deploy k8s --podman-play`: the same manifests adapted to podman kube play
(secrets delivered as ConfigMaps, endpoints named after podman's pods). Holds secret values:
mode 0600. Run with: podman kube play --network NETWORK podman-play.yaml
Stop with: podman kube down podman-play.yaml; podman keeps the volumes, remove them with:
  podman volume rm {volumes}"""


def write_k8s_project(
    top: Topology, opts: K8sOptions, out_dir: Path, *, podman_play: bool = False
) -> K8sProject:
    if out_dir.exists() and not out_dir.is_dir():
        raise HardflowError(f"--out {out_dir}: expected a directory, found a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets_path = out_dir / "secrets.yaml"
    found = scan_existing_secrets(secrets_path)
    wanted = stored_credentials(render_secrets(top, opts, sec.Credentials.generate()))
    creds, status = sec.reuse_credentials(found, wanted, source=str(secrets_path))
    docs = render_manifests(top, opts)
    manifests = out_dir / "manifests.yaml"
    atomic_write(manifests, dump_all(docs, HEADER).encode())
    atomic_write(
        secrets_path, dump_all(render_secrets(top, opts, creds), SECRETS_HEADER).encode(), 0o600
    )
    play_path = None
    if podman_play:
        popts = podman_play_options(opts)
        play_docs = render_secrets(top, popts, creds) + render_manifests(top, popts)
        play_path = out_dir / "podman-play.yaml"
        played = for_podman_play(play_docs)
        header = PODMAN_HEADER.format(volumes=" ".join(podman_play_volumes(played)))
        atomic_write(play_path, dump_all(played, header).encode(), 0o600)
    return K8sProject(
        directory=out_dir,
        manifests=manifests,
        secrets=secrets_path,
        kinds=tuple(d["kind"] for d in docs),
        secrets_reused=status.all_kept,
        podman_play=play_path,
        secret_status=status,
    )
