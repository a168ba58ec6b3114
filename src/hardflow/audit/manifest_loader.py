"""Compose files and Kubernetes YAML (Helm output included), read into what the manifest rules
look at: Kubernetes pod specs with their containers (init and ephemeral included), Compose
services, and the other objects seen.

Besides loading, this module answers "what does the manifest say" for the rules: a
container's security context and capabilities, the seccomp profile in effect, host paths,
published ports, bind mounts. The rules (``manifest_cis``, ``manifest_pss``) judge it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardflow.audit.model import AuditError, Item

# kind -> path to the pod spec
_POD_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_POD_META: dict[str, tuple[str, ...]] = {
    "Pod": ("metadata",),
    "PodTemplate": ("template", "metadata"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "metadata"),
}


# ---------------------------------------------------------------------------------------------
# the model of what was read


@dataclass(frozen=True)
class Container:
    kind: str  # container, initContainer, ephemeralContainer
    name: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Pod:
    file: str
    label: str  # "Deployment/airflow"
    spec: Mapping[str, Any]
    annotations: Mapping[str, Any]

    @property
    def containers(self) -> list[Container]:
        out = []
        for key, kind in (
            ("initContainers", "initContainer"),
            ("containers", "container"),
            ("ephemeralContainers", "ephemeralContainer"),
        ):
            for n, spec in enumerate(as_list(self.spec.get(key))):
                if isinstance(spec, dict):
                    out.append(Container(kind, str(spec.get("name") or f"{kind}-{n}"), spec))
        return out

    @property
    def security(self) -> Mapping[str, Any]:
        return as_map(self.spec.get("securityContext"))

    @property
    def windows(self) -> bool:
        return str(as_map(self.spec.get("os")).get("name", "")).lower() == "windows"

    def item(self, detail: str, container: Container | None = None) -> Item:
        subject = self.label if container is None else f"{self.label}/{container.name}"
        if container is not None and container.kind != "container":
            detail = f"{container.kind}: {detail}"
        return Item(subject, detail, self.file)


@dataclass(frozen=True)
class Service:
    file: str
    name: str
    spec: Mapping[str, Any]

    def item(self, detail: str) -> Item:
        return Item(f"service/{self.name}", detail, self.file)


@dataclass(frozen=True)
class ConfigMap:
    file: str
    name: str
    data: Mapping[str, Any]  # key → text
    binary_data: Mapping[str, Any]  # key → base64

    def item(self, detail: str) -> Item:
        return Item(f"ConfigMap/{self.name}", detail, self.file)


@dataclass(frozen=True)
class Manifests:
    files: tuple[str, ...]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]
    other: tuple[str, ...]  # non-workload Kubernetes objects seen ("Service/airflow")
    config_maps: tuple[ConfigMap, ...] = ()  # also listed in ``other``


def as_map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dig(doc: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any] | None:
    current: object = doc
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current if isinstance(current, dict) else None


# ---------------------------------------------------------------------------------------------
# loading


def _is_compose(doc: object) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("services"), dict)


def _is_k8s(doc: object) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc


def _k8s_objects(doc: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            if _is_k8s(item):
                yield from _k8s_objects(item)
        return
    yield doc


def _documents(path: Path) -> list[Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read manifest {path}: {exc}") from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise AuditError(
            f"{path} is not valid YAML, expected a Compose file or Kubernetes manifests: {exc}"
        ) from None


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories expand to their *.yaml / *.yml files (recursively)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
            if not found:
                raise AuditError(f"{path}: no .yaml or .yml files in this directory")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise AuditError(f"{path}: no such file or directory")
    return out


def load_manifests(paths: Iterable[Path]) -> Manifests:
    files: list[str] = []
    pods: list[Pod] = []
    services: list[Service] = []
    other: list[str] = []
    config_maps: list[ConfigMap] = []
    for path in expand_paths(paths):
        label = str(path)
        files.append(label)
        docs = _documents(path)
        understood = False
        for n, doc in enumerate(docs, 1):
            if _is_compose(doc):
                understood = True
                for name, spec in sorted(doc["services"].items()):
                    services.append(Service(label, str(name), as_map(spec)))
            elif _is_k8s(doc):
                understood = True
                for obj in _k8s_objects(doc):
                    kind = str(obj.get("kind"))
                    name = str(as_map(obj.get("metadata")).get("name") or f"(document {n})")
                    spec_path = _POD_PATHS.get(kind)
                    spec = _dig(obj, spec_path) if spec_path else None
                    if spec is None:
                        other.append(f"{kind}/{name}")
                        if kind == "ConfigMap":
                            data, binary = as_map(obj.get("data")), as_map(obj.get("binaryData"))
                            config_maps.append(ConfigMap(label, name, data, binary))
                        continue
                    meta = _dig(obj, _POD_META.get(kind, ("spec", "template", "metadata")))
                    annotations = as_map(as_map(meta).get("annotations"))
                    pods.append(Pod(label, f"{kind}/{name}", spec, annotations))
            else:
                raise AuditError(
                    f"{path}: document {n} is not a manifest: expected a Compose file "
                    "(top-level 'services') or a Kubernetes object ('apiVersion' and 'kind')"
                )
        if not understood:
            raise AuditError(
                f"{path} holds no manifest: expected a Compose file or Kubernetes YAML"
            )
    return Manifests(tuple(files), tuple(pods), tuple(services), tuple(other), tuple(config_maps))


# ---------------------------------------------------------------------------------------------
# Kubernetes: what a pod or container says


def security_context(container: Container) -> Mapping[str, Any]:
    return as_map(container.spec.get("securityContext"))


def capabilities(container: Container) -> tuple[set[str], set[str]]:
    caps = as_map(security_context(container).get("capabilities"))
    add = {str(c).upper().removeprefix("CAP_") for c in as_list(caps.get("add"))}
    drop = {str(c).upper().removeprefix("CAP_") for c in as_list(caps.get("drop"))}
    return add, drop


def effective(pod: Pod, container: Container, key: str) -> Any:
    value = security_context(container).get(key)
    return pod.security.get(key) if value is None else value


def seccomp_type(pod: Pod, container: Container) -> str | None:
    profile = as_map(security_context(container).get("seccompProfile")) or as_map(
        pod.security.get("seccompProfile")
    )
    value = profile.get("type")
    return str(value) if value is not None else None


def host_paths(pod: Pod) -> list[tuple[str, str]]:
    out = []
    for volume in as_list(pod.spec.get("volumes")):
        host = as_map(as_map(volume).get("hostPath"))
        if host:
            out.append((str(as_map(volume).get("name")), str(host.get("path", ""))))
    return out


def container_ports(container: Container) -> list[Mapping[str, Any]]:
    return [as_map(p) for p in as_list(container.spec.get("ports"))]


def containers(manifests: Manifests) -> Iterator[tuple[Pod, Container]]:
    for pod in manifests.pods:
        for container in pod.containers:
            yield pod, container


def plain_env(container: Container) -> list[tuple[str, str]]:
    """A container's ``env`` entries set by ``value:`` (``valueFrom`` references left out)."""
    out = []
    for item in as_list(container.spec.get("env")):
        entry = as_map(item)
        if "value" in entry and "valueFrom" not in entry and entry.get("name"):
            value = entry["value"]
            out.append((str(entry["name"]), "" if value is None else str(value)))
    return out


# ---------------------------------------------------------------------------------------------
# Compose helpers


def bind_mounts(service: Service) -> list[tuple[str, str]]:
    """(host source, target) of every bind mount of a service."""
    out = []
    for volume in as_list(service.spec.get("volumes")):
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) >= 2 and parts[0].startswith(("/", ".", "~", "$")):
                out.append((parts[0], parts[1]))
        elif isinstance(volume, dict) and volume.get("type", "bind") == "bind":
            source = volume.get("source")
            if isinstance(source, str) and source.startswith(("/", ".", "~", "$")):
                out.append((source, str(volume.get("target", ""))))
    return out


@dataclass(frozen=True)
class Published:
    host_ip: str | None
    host_port: int | None  # None: an ephemeral host port
    container_port: str


def _port_number(text: str) -> int | None:
    first = text.split("-", 1)[0]
    return int(first) if first.isdigit() else None


def compose_ports(service: Service) -> list[Published]:
    out = []
    for port in as_list(service.spec.get("ports")):
        if isinstance(port, dict):
            published = port.get("published")
            out.append(
                Published(
                    str(port["host_ip"]) if port.get("host_ip") else None,
                    _port_number(str(published)) if published is not None else None,
                    str(port.get("target", "")),
                )
            )
            continue
        text = str(port).split("/", 1)[0]
        host_ip: str | None = None
        match = re.match(r"^\[([^\]]+)\]:(.*)$", text)  # [::1]:8080:80
        if match:
            host_ip, text = match.group(1), match.group(2)
        parts = text.split(":")
        if len(parts) == 3:
            host_ip, host, target = parts
        elif len(parts) == 2:
            host, target = parts
        else:
            host, target = "", parts[0]
        out.append(Published(host_ip or None, _port_number(host) if host else None, target))
    return out


def compose_environment(service: Service) -> list[tuple[str, str | None]]:
    """A service's ``environment`` as (name, value); None when the value comes from the
    host's environment (a bare ``NAME`` or ``NAME:`` with no value)."""
    env = service.spec.get("environment")
    if isinstance(env, dict):
        return [(str(k), None if v is None else str(v)) for k, v in env.items()]
    out: list[tuple[str, str | None]] = []
    for item in as_list(env):
        name, sep, value = str(item).partition("=")
        out.append((name, value if sep else None))
    return out


def security_opts(service: Service) -> list[str]:
    return [str(o).replace("=", ":").lower() for o in as_list(service.spec.get("security_opt"))]


def deploy_limits(service: Service) -> Mapping[str, Any]:
    return as_map(as_map(as_map(service.spec.get("deploy")).get("resources")).get("limits"))
