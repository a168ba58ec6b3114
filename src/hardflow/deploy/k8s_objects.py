"""The building blocks of ``hardflow deploy k8s``: options, labels, security contexts, probes,
Deployments, Services and PersistentVolumeClaims.

Shared by :mod:`hardflow.deploy.k8s` (the Airflow topology) and
:mod:`hardflow.deploy.k8s_metrics` (``--metrics``), so every workload is made the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hardflow.deploy import metrics as met
from hardflow.deploy.topology import Topology
from hardflow.errors import HardflowError

EXECUTORS = {"celery": "CeleryExecutor", "kubernetes": "KubernetesExecutor"}
Doc = dict[str, Any]


@dataclass(frozen=True)
class K8sOptions:
    executor: str = "celery"  # "celery" or "kubernetes"
    namespace: str = "hardflow"
    storage_class: str = ""  # "" = the cluster's default
    postgres_storage: str = "8Gi"
    redis_storage: str = "1Gi"
    # Where components find each other; the defaults are the Services rendered here. An
    # external database: set postgres_host (the PostgreSQL Deployment is then left out).
    postgres_host: str = "postgres"
    redis_host: str = "redis"
    api_host: str = "api-server"
    statsd_host: str = met.EXPORTER  # --metrics: the StatsD exporter (StatsD and its /metrics)
    prometheus_storage: str = "8Gi"
    external_database: bool = False

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise HardflowError(
                f"executor {self.executor!r}: expected one of {', '.join(EXECUTORS)}"
            )

    @property
    def celery(self) -> bool:
        return self.executor == "celery"


def labels(top: Topology, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "hardflow",
        "app.kubernetes.io/instance": top.project,
        "app.kubernetes.io/component": component,
    }


def meta(top: Topology, opts: K8sOptions, name: str, component: str) -> Doc:
    return {"name": name, "namespace": opts.namespace, "labels": labels(top, component)}


def pod_security(uid: int, gid: int) -> Doc:
    """Pod-level securityContext that Pod Security "restricted" admits."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> Doc:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(top: Topology, kind: str) -> Doc:
    lim = top.limit(kind)
    return {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": f"{int(lim.cpus * 1000)}m", "memory": lim.memory_k8s},
    }


def exec_probe(command: list[str], initial: int, period: int = 30) -> Doc:
    return {
        "exec": {"command": command},
        "initialDelaySeconds": initial,
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": 5,
    }


def env_list(values: Mapping[str, str]) -> list[Doc]:
    return [{"name": k, "value": v} for k, v in values.items()]


def deployment(
    top: Topology, opts: K8sOptions, name: str, component: str, pod_spec: Doc, replicas: int = 1,
    recreate: bool = False,
) -> Doc:  # fmt: skip
    spec: Doc = {
        "replicas": replicas,
        "selector": {"matchLabels": labels(top, component)},
        "template": {"metadata": {"labels": labels(top, component)}, "spec": pod_spec},
    }
    if recreate:
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(top, opts, name, component),
        "spec": spec,
    }


def service(
    top: Topology, opts: K8sOptions, name: str, component: str, port: int,
    ports: list[Doc] | None = None,
) -> Doc:  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(top, opts, name, component),
        "spec": {
            "selector": labels(top, component),
            "ports": ports
            or [{"name": "tcp", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def pvc(top: Topology, opts: K8sOptions, name: str, component: str, size: str) -> Doc:
    spec: Doc = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if opts.storage_class:
        spec["storageClassName"] = opts.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(top, opts, name, component),
        "spec": spec,
    }
