"""Manifest checks: Compose files and Kubernetes YAML (Helm output included).

Two catalogues:

* CIS Docker Benchmark v1.6 §5 — the container-runtime recommendations a manifest decides
  (5.4 capabilities … 5.32 docker socket), for Compose services and Kubernetes containers;
* the Kubernetes Pod Security Standards — every *baseline* control (``PSS-B-*``, FATAL: known
  privilege escalations) and every *restricted* control (``PSS-R-*``, WARN: hardening best
  practice), per container including init and ephemeral containers.

Items are named ``Kind/name`` (pod level) or ``Kind/name/container`` and ``service/NAME``
(Compose), located in the file they came from, so ignore files can match them with globs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardflow.audit.model import AuditError, Check, Finding, Item, Level, judge, skipped

CIS5 = "CIS Docker Benchmark v1.6 §5 (container runtime)"
PSS_B = "Kubernetes Pod Security Standards: baseline"
PSS_R = "Kubernetes Pod Security Standards: restricted"

W, F = Level.WARN, Level.FATAL


def _c(id_: str, level: Level, group: str, title: str, fix: str, *refs: str) -> Check:
    return Check(id_, level, title, fix, group, tuple(refs))


CHECKS: dict[str, Check] = {
    c.id: c
    for c in (
        _c("5.4", W, CIS5, "Ensure that Linux kernel capabilities are restricted within "
           "containers", "Drop ALL capabilities (cap_drop: [ALL] / capabilities.drop: [ALL]) "
           "and add back at most NET_BIND_SERVICE.", "PSS-R-Capabilities"),
        _c("5.5", F, CIS5, "Ensure that privileged containers are not used",
           "Remove `privileged: true`.", "PSS-B-Privileged"),
        _c("5.6", W, CIS5, "Ensure sensitive host system directories are not mounted on "
           "containers", "Do not mount /, /boot, /dev, /etc, /lib, /proc, /sys or /usr from "
           "the host; use volumes.", "PSS-B-HostPathVolumes"),
        _c("5.8", W, CIS5, "Ensure that privileged ports are not mapped within containers",
           "Publish on host ports of 1024 and above."),
        _c("5.10", W, CIS5, "Ensure that the host's network namespace is not shared",
           "Remove network_mode: host / hostNetwork: true.", "PSS-B-HostNamespaces"),
        _c("5.11", W, CIS5, "Ensure that the memory usage for containers is limited",
           "Set mem_limit (Compose) or resources.limits.memory (Kubernetes)."),
        _c("5.12", W, CIS5, "Ensure that CPU priority is set appropriately on containers",
           "Set cpus/cpu_shares (Compose) or resources.limits.cpu/requests.cpu (Kubernetes)."),
        _c("5.13", W, CIS5, "Ensure that the container's root filesystem is mounted as read "
           "only", "Set read_only: true / readOnlyRootFilesystem: true; mount writable "
           "volumes or tmpfs where needed."),
        _c("5.14", W, CIS5, "Ensure that incoming container traffic is bound to a specific "
           "host interface", "Publish ports as HOST_IP:HOST_PORT:PORT (e.g. 127.0.0.1) or set "
           "hostIP."),
        _c("5.16", W, CIS5, "Ensure that the host's process namespace is not shared",
           "Remove pid: host / hostPID: true.", "PSS-B-HostNamespaces"),
        _c("5.17", W, CIS5, "Ensure that the host's IPC namespace is not shared",
           "Remove ipc: host / hostIPC: true.", "PSS-B-HostNamespaces"),
        _c("5.21", W, CIS5, "Ensure that the host's UTS namespace is not shared",
           "Remove uts: host (Kubernetes shares UTS with hostNetwork).",
           "PSS-B-HostNamespaces"),
        _c("5.22", W, CIS5, "Ensure the default seccomp profile is not disabled",
           "Keep the runtime's default seccomp profile (seccompProfile: RuntimeDefault); never "
           "seccomp:unconfined.", "PSS-R-Seccomp"),
        _c("5.26", W, CIS5, "Ensure that the container is restricted from acquiring "
           "additional privileges", "Set security_opt: [no-new-privileges:true] / "
           "allowPrivilegeEscalation: false.", "PSS-R-PrivilegeEscalation"),
        _c("5.27", W, CIS5, "Ensure that container health is checked at runtime",
           "Define a healthcheck (Compose) or liveness/readiness probes (Kubernetes)."),
        _c("5.29", W, CIS5, "Ensure that the PIDs cgroup limit is used",
           "Set pids_limit (Compose) or deploy.resources.limits.pids."),
        _c("5.32", F, CIS5, "Ensure that the Docker socket is not mounted inside any "
           "containers", "Never mount docker.sock or podman.sock into a container."),
        # PSS baseline
        _c("PSS-B-HostProcess", F, PSS_B, "HostProcess: Windows HostProcess containers are "
           "not allowed", "Remove windowsOptions.hostProcess: true."),
        _c("PSS-B-HostNamespaces", F, PSS_B, "Host namespaces: hostNetwork, hostPID and "
           "hostIPC must be unset or false", "Remove hostNetwork, hostPID and hostIPC."),
        _c("PSS-B-Privileged", F, PSS_B, "Privileged containers are not allowed",
           "Remove securityContext.privileged: true."),
        _c("PSS-B-Capabilities", F, PSS_B, "Capabilities: only the baseline set may be added",
           "Add no capability beyond AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, "
           "MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT."),
        _c("PSS-B-HostPathVolumes", F, PSS_B, "HostPath volumes are not allowed",
           "Use persistentVolumeClaim, emptyDir, configMap or secret volumes."),
        _c("PSS-B-HostPorts", F, PSS_B, "Host ports are not allowed",
           "Remove hostPort; expose the pod through a Service."),
        _c("PSS-B-AppArmor", F, PSS_B, "AppArmor: the profile may not be overridden to "
           "unconfined", "Use RuntimeDefault or a Localhost profile (or leave it unset)."),
        _c("PSS-B-SELinux", F, PSS_B, "SELinux: no custom type, user or role",
           "Leave seLinuxOptions unset, or use type container_t/container_init_t/"
           "container_kvm_t/container_engine_t without user or role."),
        _c("PSS-B-ProcMount", F, PSS_B, "/proc mount type must be Default",
           "Remove procMount (or set Default)."),
        _c("PSS-B-Seccomp", F, PSS_B, "Seccomp: the profile may not be Unconfined",
           "Set seccompProfile.type: RuntimeDefault."),
        _c("PSS-B-Sysctls", F, PSS_B, "Sysctls: only the safe set may be set",
           "Set only kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, "
           "net.ipv4.ip_local_reserved_ports, net.ipv4.ip_unprivileged_port_start, "
           "net.ipv4.tcp_syncookies, net.ipv4.ping_group_range, net.ipv4.tcp_keepalive_time, "
           "net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl, "
           "net.ipv4.tcp_keepalive_probes."),
        # PSS restricted
        _c("PSS-R-VolumeTypes", W, PSS_R, "Volume types: only configMap, csi, downwardAPI, "
           "emptyDir, ephemeral, persistentVolumeClaim, projected and secret",
           "Replace other volume types with a persistentVolumeClaim."),
        _c("PSS-R-PrivilegeEscalation", W, PSS_R, "Privilege escalation: "
           "allowPrivilegeEscalation must be false", "Set "
           "securityContext.allowPrivilegeEscalation: false in every container."),
        _c("PSS-R-RunAsNonRoot", W, PSS_R, "Running as non-root: runAsNonRoot must be true",
           "Set securityContext.runAsNonRoot: true (pod or every container)."),
        _c("PSS-R-RunAsUser", W, PSS_R, "Running as non-root user: runAsUser must not be 0",
           "Set runAsUser to a non-zero UID (hardflow images: 50000) or leave it unset."),
        _c("PSS-R-Seccomp", W, PSS_R, "Seccomp: the profile must be RuntimeDefault or "
           "Localhost", "Set securityContext.seccompProfile.type: RuntimeDefault (pod level)."),
        _c("PSS-R-Capabilities", W, PSS_R, "Capabilities: drop ALL, add at most "
           "NET_BIND_SERVICE", "Set capabilities.drop: [ALL] in every container."),
    )
}  # fmt: skip

BASELINE_CAPS = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
     "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip
RESTRICTED_CAPS = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
     "net.ipv4.ip_local_reserved_ports", "net.ipv4.ip_unprivileged_port_start",
     "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.tcp_keepalive_time",
     "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
     "net.ipv4.tcp_keepalive_probes"}
)  # fmt: skip
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
     "projected", "secret"}
)  # fmt: skip
SENSITIVE_HOST_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
_SOCKETS = ("docker.sock", "podman.sock", "containerd.sock", "crio.sock")
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

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
            for n, spec in enumerate(_list(self.spec.get(key))):
                if isinstance(spec, dict):
                    out.append(Container(kind, str(spec.get("name") or f"{kind}-{n}"), spec))
        return out

    @property
    def security(self) -> Mapping[str, Any]:
        return _map(self.spec.get("securityContext"))

    @property
    def windows(self) -> bool:
        return str(_map(self.spec.get("os")).get("name", "")).lower() == "windows"

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
class Manifests:
    files: tuple[str, ...]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]
    other: tuple[str, ...]  # non-workload Kubernetes objects seen ("Service/airflow")


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
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
    for path in expand_paths(paths):
        label = str(path)
        files.append(label)
        docs = _documents(path)
        understood = False
        for n, doc in enumerate(docs, 1):
            if _is_compose(doc):
                understood = True
                for name, spec in sorted(doc["services"].items()):
                    services.append(Service(label, str(name), _map(spec)))
            elif _is_k8s(doc):
                understood = True
                for obj in _k8s_objects(doc):
                    kind = str(obj.get("kind"))
                    name = str(_map(obj.get("metadata")).get("name") or f"(document {n})")
                    spec_path = _POD_PATHS.get(kind)
                    spec = _dig(obj, spec_path) if spec_path else None
                    if spec is None:
                        other.append(f"{kind}/{name}")
                        continue
                    meta = _dig(obj, _POD_META.get(kind, ("spec", "template", "metadata")))
                    annotations = _map(_map(meta).get("annotations"))
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
    return Manifests(tuple(files), tuple(pods), tuple(services), tuple(other))


# ---------------------------------------------------------------------------------------------
# Kubernetes helpers


def _sc(container: Container) -> Mapping[str, Any]:
    return _map(container.spec.get("securityContext"))


def _caps(container: Container) -> tuple[set[str], set[str]]:
    caps = _map(_sc(container).get("capabilities"))
    add = {str(c).upper().removeprefix("CAP_") for c in _list(caps.get("add"))}
    drop = {str(c).upper().removeprefix("CAP_") for c in _list(caps.get("drop"))}
    return add, drop


def _effective(pod: Pod, container: Container, key: str) -> Any:
    value = _sc(container).get(key)
    return pod.security.get(key) if value is None else value


def _seccomp_type(pod: Pod, container: Container) -> str | None:
    profile = _map(_sc(container).get("seccompProfile")) or _map(pod.security.get("seccompProfile"))
    value = profile.get("type")
    return str(value) if value is not None else None


def _host_paths(pod: Pod) -> list[tuple[str, str]]:
    out = []
    for volume in _list(pod.spec.get("volumes")):
        host = _map(_map(volume).get("hostPath"))
        if host:
            out.append((str(_map(volume).get("name")), str(host.get("path", ""))))
    return out


def _is_sensitive(path: str) -> bool:
    clean = posixpath.normpath(path) if path else ""
    return any(clean == d or (d != "/" and clean.startswith(d + "/")) for d in SENSITIVE_HOST_DIRS)


def _is_socket(path: str) -> bool:
    return posixpath.basename(path.rstrip("/")) in _SOCKETS


def _ports(container: Container) -> list[Mapping[str, Any]]:
    return [_map(p) for p in _list(container.spec.get("ports"))]


def _each(manifests: Manifests) -> Iterator[tuple[Pod, Container]]:
    for pod in manifests.pods:
        for container in pod.containers:
            yield pod, container


# ---------------------------------------------------------------------------------------------
# Compose helpers


def _compose_volumes(service: Service) -> list[tuple[str, str]]:
    """(host source, target) of every bind mount of a service."""
    out = []
    for volume in _list(service.spec.get("volumes")):
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
    for port in _list(service.spec.get("ports")):
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


def _security_opts(service: Service) -> list[str]:
    return [str(o).replace("=", ":").lower() for o in _list(service.spec.get("security_opt"))]


def _deploy_limits(service: Service) -> Mapping[str, Any]:
    return _map(_map(_map(service.spec.get("deploy")).get("resources")).get("limits"))


# ---------------------------------------------------------------------------------------------
# the checks: each returns items (or None when it does not apply to anything)

Rule = Callable[[Manifests], list[Item]]


def cis_capabilities(m: Manifests) -> list[Item]:
    items = []
    for pod, c in _each(m):
        if pod.windows:
            continue
        add, drop = _caps(c)
        if "ALL" not in drop:
            items.append(pod.item("capabilities.drop does not include ALL", c))
        if add - RESTRICTED_CAPS:
            items.append(pod.item(f"adds {', '.join(sorted(add - RESTRICTED_CAPS))}", c))
    for s in m.services:
        add = {str(x).upper().removeprefix("CAP_") for x in _list(s.spec.get("cap_add"))}
        drop = {str(x).upper().removeprefix("CAP_") for x in _list(s.spec.get("cap_drop"))}
        if "ALL" not in drop:
            items.append(s.item("cap_drop does not include ALL"))
        if add - RESTRICTED_CAPS:
            items.append(s.item(f"cap_add {', '.join(sorted(add - RESTRICTED_CAPS))}"))
    return items


def privileged(m: Manifests) -> list[Item]:
    items = [pod.item("privileged: true", c) for pod, c in _each(m) if _sc(c).get("privileged")]
    items += [s.item("privileged: true") for s in m.services if s.spec.get("privileged")]
    return items


def _host_mounts(m: Manifests, matches: Callable[[str], bool], show_target: bool) -> list[Item]:
    """hostPath volumes and compose bind mounts whose host path ``matches``."""
    items = [
        pod.item(f"hostPath {path} (volume {name})")
        for pod in m.pods
        for name, path in _host_paths(pod)
        if matches(path)
    ]
    items += [
        s.item(f"bind mount {src} -> {dst}" if show_target else f"bind mount {src}")
        for s in m.services
        for src, dst in _compose_volumes(s)
        if matches(src)
    ]
    return items


def sensitive_mounts(m: Manifests) -> list[Item]:
    return _host_mounts(m, _is_sensitive, show_target=True)


def privileged_ports(m: Manifests) -> list[Item]:
    items = []
    for pod, c in _each(m):
        for port in _ports(c):
            host = port.get("hostPort")
            if isinstance(host, int) and 0 < host < 1024:
                items.append(pod.item(f"hostPort {host}", c))
    for s in m.services:
        for p in compose_ports(s):
            if p.host_port is not None and 0 < p.host_port < 1024:
                items.append(s.item(f"publishes host port {p.host_port}"))
    return items


def _compose_mode(key: str) -> Callable[[Manifests], list[Item]]:
    def rule(m: Manifests) -> list[Item]:
        return [s.item(f"{key}: host") for s in m.services if str(s.spec.get(key)) == "host"]

    return rule


def host_network(m: Manifests) -> list[Item]:
    items = [pod.item("hostNetwork: true") for pod in m.pods if pod.spec.get("hostNetwork")]
    return items + _compose_mode("network_mode")(m)


def host_pid(m: Manifests) -> list[Item]:
    items = [pod.item("hostPID: true") for pod in m.pods if pod.spec.get("hostPID")]
    return items + _compose_mode("pid")(m)


def host_ipc(m: Manifests) -> list[Item]:
    items = [pod.item("hostIPC: true") for pod in m.pods if pod.spec.get("hostIPC")]
    return items + _compose_mode("ipc")(m)


def host_uts(m: Manifests) -> list[Item]:
    items = [
        pod.item("hostNetwork: true shares the host's UTS namespace")
        for pod in m.pods
        if pod.spec.get("hostNetwork")
    ]
    return items + _compose_mode("uts")(m)


def _k8s_resource(c: Container, *keys: tuple[str, str]) -> bool:
    resources = _map(c.spec.get("resources"))
    return any(_map(resources.get(group)).get(name) is not None for group, name in keys)


def memory_limit(m: Manifests) -> list[Item]:
    items = [
        pod.item("no resources.limits.memory", c)
        for pod, c in _each(m)
        if c.kind != "ephemeralContainer" and not _k8s_resource(c, ("limits", "memory"))
    ]
    items += [
        s.item("no mem_limit")
        for s in m.services
        if not s.spec.get("mem_limit") and not _deploy_limits(s).get("memory")
    ]
    return items


def cpu_limit(m: Manifests) -> list[Item]:
    items = [
        pod.item("no resources.limits.cpu or requests.cpu", c)
        for pod, c in _each(m)
        if c.kind != "ephemeralContainer"
        and not _k8s_resource(c, ("limits", "cpu"), ("requests", "cpu"))
    ]
    keys = ("cpus", "cpu_shares", "cpu_quota")
    items += [
        s.item("no cpus or cpu_shares")
        for s in m.services
        if not any(s.spec.get(k) for k in keys) and not _deploy_limits(s).get("cpus")
    ]
    return items


def read_only_root(m: Manifests) -> list[Item]:
    items = [
        pod.item("readOnlyRootFilesystem is not true", c)
        for pod, c in _each(m)
        if _sc(c).get("readOnlyRootFilesystem") is not True
    ]
    items += [
        s.item("read_only is not true") for s in m.services if s.spec.get("read_only") is not True
    ]
    return items


def bind_address(m: Manifests) -> list[Item]:
    items = []
    for pod, c in _each(m):
        for port in _ports(c):
            if port.get("hostPort") and not port.get("hostIP"):
                items.append(pod.item(f"hostPort {port.get('hostPort')} without hostIP", c))
    for s in m.services:
        for p in compose_ports(s):
            if p.host_ip in (None, "0.0.0.0", "::"):
                where = p.host_port if p.host_port is not None else "an ephemeral port"
                items.append(
                    s.item(
                        f"port {p.container_port} published on all interfaces (host port {where})"
                    )
                )
    return items


def seccomp_cis(m: Manifests) -> list[Item]:
    items = []
    for pod, c in _each(m):
        if pod.windows:
            continue
        kind = _seccomp_type(pod, c)
        if kind is None:
            items.append(pod.item("no seccompProfile: the kubelet default is Unconfined", c))
        elif kind == "Unconfined":
            items.append(pod.item("seccompProfile Unconfined", c))
    for s in m.services:
        if any(o in ("seccomp:unconfined", "seccomp=unconfined") for o in _security_opts(s)):
            items.append(s.item("security_opt seccomp:unconfined"))
    return items


def no_new_privileges(m: Manifests) -> list[Item]:
    items = [
        pod.item("allowPrivilegeEscalation is not false", c)
        for pod, c in _each(m)
        if not pod.windows and _sc(c).get("allowPrivilegeEscalation") is not False
    ]
    for s in m.services:
        opts = _security_opts(s)
        if not any(o in ("no-new-privileges", "no-new-privileges:true") for o in opts):
            items.append(s.item("no security_opt no-new-privileges:true"))
    return items


def health(m: Manifests) -> list[Item]:
    items = [
        pod.item("no livenessProbe or readinessProbe", c)
        for pod, c in _each(m)
        if c.kind == "container"
        and not (c.spec.get("livenessProbe") or c.spec.get("readinessProbe"))
    ]
    for s in m.services:
        check = s.spec.get("healthcheck")
        if not isinstance(check, dict):
            items.append(s.item("no healthcheck"))
        elif check.get("disable") or [str(t).upper() for t in _list(check.get("test"))][:1] == [
            "NONE"
        ]:
            items.append(s.item("healthcheck disabled"))
    return items


def pids_limit(m: Manifests) -> list[Item]:
    return [
        s.item("no pids_limit")
        for s in m.services
        if not s.spec.get("pids_limit") and not _deploy_limits(s).get("pids")
    ]


def docker_socket(m: Manifests) -> list[Item]:
    return _host_mounts(m, _is_socket, show_target=False)


# PSS baseline


def pss_host_process(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        if _map(pod.security.get("windowsOptions")).get("hostProcess"):
            items.append(pod.item("securityContext.windowsOptions.hostProcess: true"))
        for c in pod.containers:
            if _map(_sc(c).get("windowsOptions")).get("hostProcess"):
                items.append(pod.item("windowsOptions.hostProcess: true", c))
    return items


def pss_host_namespaces(m: Manifests) -> list[Item]:
    return [
        pod.item(f"{key}: true")
        for pod in m.pods
        for key in ("hostNetwork", "hostPID", "hostIPC")
        if pod.spec.get(key)
    ]


def pss_privileged(m: Manifests) -> list[Item]:
    return [pod.item("privileged: true", c) for pod, c in _each(m) if _sc(c).get("privileged")]


def pss_capabilities_baseline(m: Manifests) -> list[Item]:
    items = []
    for pod, c in _each(m):
        extra = _caps(c)[0] - BASELINE_CAPS
        if extra:
            items.append(pod.item(f"adds {', '.join(sorted(extra))}", c))
    return items


def pss_host_path(m: Manifests) -> list[Item]:
    return [
        pod.item(f"hostPath {path} (volume {name})")
        for pod in m.pods
        for name, path in _host_paths(pod)
    ]


def pss_host_ports(m: Manifests) -> list[Item]:
    return [
        pod.item(f"hostPort {port.get('hostPort')}", c)
        for pod, c in _each(m)
        for port in _ports(c)
        if port.get("hostPort") not in (None, 0)
    ]


def pss_apparmor(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        for key, value in sorted(pod.annotations.items()):
            if str(key).startswith(_APPARMOR_PREFIX):
                text = str(value)
                if text != "runtime/default" and not text.startswith("localhost/"):
                    items.append(pod.item(f"annotation {key}: {text}"))
        profiles: list[tuple[Container | None, Mapping[str, Any]]] = [
            (None, _map(pod.security.get("appArmorProfile")))
        ]
        profiles += [(c, _map(_sc(c).get("appArmorProfile"))) for c in pod.containers]
        for container, profile in profiles:
            kind = profile.get("type")
            if kind is not None and kind not in ("RuntimeDefault", "Localhost"):
                items.append(pod.item(f"appArmorProfile.type {kind}", container))
    return items


def pss_selinux(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        contexts: list[tuple[Container | None, Mapping[str, Any]]] = [
            (None, _map(pod.security.get("seLinuxOptions")))
        ]
        contexts += [(c, _map(_sc(c).get("seLinuxOptions"))) for c in pod.containers]
        for container, options in contexts:
            kind = str(options.get("type") or "")
            if kind not in SELINUX_TYPES:
                items.append(pod.item(f"seLinuxOptions.type {kind}", container))
            for key in ("user", "role"):
                if options.get(key):
                    items.append(pod.item(f"seLinuxOptions.{key} is set", container))
    return items


def pss_proc_mount(m: Manifests) -> list[Item]:
    return [
        pod.item(f"procMount {_sc(c).get('procMount')}", c)
        for pod, c in _each(m)
        if _sc(c).get("procMount") not in (None, "Default")
    ]


def pss_seccomp_baseline(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        if _map(pod.security.get("seccompProfile")).get("type") == "Unconfined":
            items.append(pod.item("seccompProfile Unconfined"))
        for c in pod.containers:
            if _map(_sc(c).get("seccompProfile")).get("type") == "Unconfined":
                items.append(pod.item("seccompProfile Unconfined", c))
    return items


def pss_sysctls(m: Manifests) -> list[Item]:
    return [
        pod.item(f"sysctl {_map(s).get('name')}")
        for pod in m.pods
        for s in _list(pod.security.get("sysctls"))
        if str(_map(s).get("name")) not in SAFE_SYSCTLS
    ]


# PSS restricted


def pss_volume_types(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        for volume in _list(pod.spec.get("volumes")):
            kinds = [k for k in _map(volume) if k != "name"]
            bad = [k for k in kinds if k not in RESTRICTED_VOLUMES]
            if bad:
                name = _map(volume).get("name")
                items.append(pod.item(f"volume {name}: {', '.join(bad)}"))
    return items


def pss_privilege_escalation(m: Manifests) -> list[Item]:
    return [
        pod.item("allowPrivilegeEscalation is not false", c)
        for pod, c in _each(m)
        if not pod.windows and _sc(c).get("allowPrivilegeEscalation") is not False
    ]


def pss_run_as_non_root(m: Manifests) -> list[Item]:
    return [
        pod.item("runAsNonRoot is not true (pod or container)", c)
        for pod, c in _each(m)
        if _effective(pod, c, "runAsNonRoot") is not True
    ]


def pss_run_as_user(m: Manifests) -> list[Item]:
    items = [pod.item("runAsUser: 0") for pod in m.pods if pod.security.get("runAsUser") == 0]
    items += [pod.item("runAsUser: 0", c) for pod, c in _each(m) if _sc(c).get("runAsUser") == 0]
    return items


def pss_seccomp(m: Manifests) -> list[Item]:
    items = []
    for pod, c in _each(m):
        if pod.windows:
            continue
        kind = _seccomp_type(pod, c)
        if kind not in ("RuntimeDefault", "Localhost"):
            items.append(pod.item(f"seccompProfile.type is {kind or 'unset'}", c))
    return items


def pss_capabilities(m: Manifests) -> list[Item]:
    items = []
    for pod, c in _each(m):
        if pod.windows:
            continue
        add, drop = _caps(c)
        if "ALL" not in drop:
            items.append(pod.item("capabilities.drop does not include ALL", c))
        if add - RESTRICTED_CAPS:
            items.append(pod.item(f"adds {', '.join(sorted(add - RESTRICTED_CAPS))}", c))
    return items


_CIS_RULES: dict[str, Rule] = {
    "5.4": cis_capabilities,
    "5.5": privileged,
    "5.6": sensitive_mounts,
    "5.8": privileged_ports,
    "5.10": host_network,
    "5.11": memory_limit,
    "5.12": cpu_limit,
    "5.13": read_only_root,
    "5.14": bind_address,
    "5.16": host_pid,
    "5.17": host_ipc,
    "5.21": host_uts,
    "5.22": seccomp_cis,
    "5.26": no_new_privileges,
    "5.27": health,
    "5.29": pids_limit,
    "5.32": docker_socket,
}
_PSS_RULES: dict[str, Rule] = {
    "PSS-B-HostProcess": pss_host_process,
    "PSS-B-HostNamespaces": pss_host_namespaces,
    "PSS-B-Privileged": pss_privileged,
    "PSS-B-Capabilities": pss_capabilities_baseline,
    "PSS-B-HostPathVolumes": pss_host_path,
    "PSS-B-HostPorts": pss_host_ports,
    "PSS-B-AppArmor": pss_apparmor,
    "PSS-B-SELinux": pss_selinux,
    "PSS-B-ProcMount": pss_proc_mount,
    "PSS-B-Seccomp": pss_seccomp_baseline,
    "PSS-B-Sysctls": pss_sysctls,
    "PSS-R-VolumeTypes": pss_volume_types,
    "PSS-R-PrivilegeEscalation": pss_privilege_escalation,
    "PSS-R-RunAsNonRoot": pss_run_as_non_root,
    "PSS-R-RunAsUser": pss_run_as_user,
    "PSS-R-Seccomp": pss_seccomp,
    "PSS-R-Capabilities": pss_capabilities,
}


def run_manifest_checks(m: Manifests) -> list[Finding]:
    findings = []
    nothing = "no Compose services and no Kubernetes workloads in the input"
    for check_id, rule in _CIS_RULES.items():
        check = CHECKS[check_id]
        if not m.pods and not m.services:
            findings.append(skipped(check, nothing))
        elif check_id == "5.29" and not m.services:
            findings.append(
                skipped(check, "Kubernetes sets PID limits per node (kubelet podPidsLimit)")
            )
        else:
            note = (
                "Kubernetes workloads not checked: PID limits are per node"
                if check_id == "5.29" and m.pods
                else ""
            )
            findings.append(judge(check, rule(m), note))
    for check_id, rule in _PSS_RULES.items():
        check = CHECKS[check_id]
        if not m.pods:
            findings.append(skipped(check, "no Kubernetes workloads in the input"))
        else:
            findings.append(judge(check, rule(m)))
    return findings


def manifest_facts(m: Manifests) -> list[tuple[str, str]]:
    return [
        ("files", ", ".join(m.files)),
        ("kubernetes workloads", ", ".join(p.label for p in m.pods) or "(none)"),
        ("compose services", ", ".join(s.name for s in m.services) or "(none)"),
        ("other objects", str(len(m.other))),
    ]
