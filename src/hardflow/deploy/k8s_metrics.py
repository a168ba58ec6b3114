"""``hardflow deploy k8s --metrics``: the StatsD exporter and Prometheus as Kubernetes objects.

Built from the same pieces (:mod:`hardflow.deploy.k8s_objects`) as every other workload of
:mod:`hardflow.deploy.k8s` (Pod Security "restricted", probes, limits, no service account
token); what they run is in
:mod:`hardflow.deploy.metrics`. The exporter's Service carries StatsD (UDP) and its /metrics
(TCP); Prometheus keeps its time-series database on a PersistentVolumeClaim and reads its
configuration (the scrape job and the Airflow name mapping) from a ConfigMap.
"""

from __future__ import annotations

from pathlib import Path

from hardflow.deploy import metrics as met
from hardflow.deploy.k8s_objects import (
    Doc,
    K8sOptions,
    container_security,
    deployment,
    exec_probe,
    meta,
    pod_security,
    pvc,
    resources,
    service,
)
from hardflow.deploy.topology import Topology


def _metrics_container(
    top: Topology, name: str, image: str, ports: list[Doc], probe: tuple[str, ...],
    mounts: list[Doc],
) -> Doc:  # fmt: skip
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": ports,
        "securityContext": container_security(),
        "resources": resources(top, name),
        "livenessProbe": exec_probe(list(probe), 30, 20),
        "readinessProbe": exec_probe(list(probe), 5, 10),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
    }


def _metrics_pod(uid: int, gid: int, container: Doc, volumes: list[Doc]) -> Doc:
    tmp = {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    return {
        "securityContext": pod_security(uid, gid),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": [tmp, *volumes],
    }


def metrics_documents(top: Topology, opts: K8sOptions) -> list[Doc]:
    """--metrics: the StatsD exporter and Prometheus (config, volume, Deployments, Services)."""
    exp, prom = met.EXPORTER, met.PROMETHEUS
    exporter_ports = [
        {"name": "statsd", "port": met.STATSD_PORT, "targetPort": met.STATSD_PORT,
         "protocol": "UDP"},
        {"name": "metrics", "port": met.EXPORTER_PORT, "targetPort": met.EXPORTER_PORT,
         "protocol": "TCP"},
    ]  # fmt: skip
    container_ports = [
        {"containerPort": p["port"], "name": p["name"], "protocol": p["protocol"]}
        for p in exporter_ports
    ]
    exporter = _metrics_container(top, exp, top.images.statsd_exporter, container_ports,
                                  met.EXPORTER_HEALTH, [])  # fmt: skip
    config = f"{top.project}-prometheus-config"
    server = _metrics_container(
        top, prom, top.images.prometheus,
        [{"containerPort": met.PROMETHEUS_PORT, "name": "http"}], met.PROMETHEUS_HEALTH,
        [{"name": "data", "mountPath": met.PROMETHEUS_DATA},
         {"name": "config", "mountPath": str(Path(met.PROMETHEUS_CONFIG).parent),
          "readOnly": True}],
    )  # fmt: skip
    server["args"] = met.prometheus_args()
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": f"{top.project}-prometheus-data"}},
        {"name": "config", "configMap": {"name": config}},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(top, opts, config, prom),
            "data": {met.PROMETHEUS_CONFIG_NAME: met.prometheus_config_text(opts.statsd_host)},
        },
        pvc(top, opts, f"{top.project}-prometheus-data", prom, opts.prometheus_storage),
        deployment(
            top, opts, exp, exp, _metrics_pod(met.EXPORTER_UID, met.EXPORTER_GID, exporter, [])
        ),
        service(top, opts, exp, exp, 0, exporter_ports),
        deployment(
            top,
            opts,
            prom,
            prom,
            _metrics_pod(met.PROMETHEUS_UID, met.PROMETHEUS_GID, server, volumes),
            recreate=True,
        ),
        service(top, opts, prom, prom, met.PROMETHEUS_PORT),
    ]
