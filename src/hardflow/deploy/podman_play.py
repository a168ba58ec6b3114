"""``podman kube play`` of the rendered Kubernetes manifests: what podman 4.3 needs changed.

Kept apart from :mod:`hardflow.deploy.k8s` (which renders for a cluster): everything here adapts
a finished render, and nothing of it reaches ``manifests.yaml``.
"""

from __future__ import annotations

import copy
from typing import Any

from hardflow.deploy.pinning import unpinned

Doc = dict[str, Any]
__all__ = ["for_podman_play", "podman_play_volumes", "podman_pod_host"]


def podman_pod_host(name: str) -> str:
    """The DNS name ``podman kube play`` gives the first pod of Deployment ``name``."""
    return f"{name}-pod-0"


def for_podman_play(docs: list[Doc]) -> list[Doc]:
    """Adapt rendered documents to ``podman kube play`` (podman 4.3).

    Podman mounts a Secret's ``data`` values base64-encoded (not decoded) into secret volumes,
    ignores ``stringData`` and cannot resolve ``secretKeyRef`` to a played Secret; ConfigMap
    volumes are delivered verbatim. So each Secret becomes a ConfigMap of the same name and
    each ``secret`` volume a ``configMap`` volume.

    Podman 4.3 also plays an ``emptyDir`` as a host-wide named volume called after the pod's
    volume name, so every pod's ``tmp`` became one shared ``/tmp`` (each pod's health state
    file was overwritten by the pod started last). Each emptyDir is therefore renamed
    ``<project>-<workload>-<volume>``, which keeps pods apart; podman keeps those volumes
    after ``kube down`` (:func:`podman_play_volumes` lists them for removal).

    Podman 4.3 also publishes every ``containerPort`` on the host (on all addresses, the same
    port number), which Kubernetes never does: a played topology would take the host's port 8080
    and fail next to anything already listening there (``hardflow run`` or a second topology).
    Container ``ports`` are therefore dropped: the pods reach each other by pod name on the
    network given to ``podman kube play --network``, and the UI is reached the same way or with
    ``podman port`` after publishing it deliberately.

    Images are named by their tag, not their digest: podman looks a played image up in its
    local store, where a loaded archive is not recorded under the OCI manifest's digest the
    cluster manifests pin (see :mod:`hardflow.deploy.pinning`). Every other field
    is played as rendered (podman also ignores Namespace, Service, NetworkPolicy, Job and RBAC
    documents).
    """
    out: list[Doc] = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        if doc.get("kind") == "Secret":
            doc = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": doc["metadata"],
                "data": doc.get("stringData", {}),
            }
        for pod in _pod_specs(doc):
            renamed: dict[str, str] = {}
            for volume in pod.get("volumes", []):
                if "secret" in volume:
                    src = volume.pop("secret")
                    volume["configMap"] = {
                        "name": src["secretName"],
                        "defaultMode": src.get("defaultMode", 0o440),
                    }
                if "emptyDir" in volume:
                    meta = doc["metadata"]
                    instance = meta.get("labels", {}).get("app.kubernetes.io/instance")
                    prefix = f"{instance}-" if instance else ""
                    unique = f"{prefix}{meta['name']}-{volume['name']}"
                    renamed[volume["name"]] = unique
                    volume["name"] = unique
            for container in (*pod.get("initContainers", []), *pod.get("containers", [])):
                container.pop("ports", None)  # podman 4.3 would publish them on the host
                if isinstance(container.get("image"), str):
                    container["image"] = unpinned(container["image"])
                for mount in container.get("volumeMounts", []):
                    mount["name"] = renamed.get(mount["name"], mount["name"])
        out.append(doc)
    return out


def podman_play_volumes(docs: list[Doc]) -> list[str]:
    """Names of the volumes ``podman kube play`` creates for ``docs`` (a played variant):
    one per PersistentVolumeClaim and ConfigMap, and one per renamed emptyDir."""
    names = [d["metadata"]["name"] for d in docs if d.get("kind") in _PLAYED_VOLUME_KINDS]
    for doc in docs:
        for pod in _pod_specs(doc):
            names += [v["name"] for v in pod.get("volumes", []) if "emptyDir" in v]
    return names


_PLAYED_VOLUME_KINDS = ("ConfigMap", "PersistentVolumeClaim")


def _pod_specs(doc: Doc) -> list[Doc]:
    kind = doc.get("kind")
    if kind == "Pod":
        return [doc["spec"]]
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return [doc["spec"]["template"]["spec"]]
    return []
