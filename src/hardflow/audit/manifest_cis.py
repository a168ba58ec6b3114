"""Check functions for the CIS Docker Benchmark v1.6 §5 rules a manifest decides (5.4
capabilities … 5.32 docker socket), for Compose services and Kubernetes containers alike.

Each is a pure function of the loaded :class:`Manifests` returning the offending items, named
``Kind/name`` (pod level), ``Kind/name/container`` or ``service/NAME``, located in their file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from hardflow.audit.manifest_loader import (
    Container,
    Manifests,
    as_list,
    as_map,
    bind_mounts,
    capabilities,
    compose_ports,
    container_ports,
    containers,
    deploy_limits,
    host_paths,
    seccomp_type,
    security_context,
    security_opts,
)
from hardflow.audit.manifest_pss import RESTRICTED_CAPS
from hardflow.audit.model import Item, Outcome

SENSITIVE_HOST_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
_SOCKETS = ("docker.sock", "podman.sock", "containerd.sock", "crio.sock")


def _is_sensitive(path: str) -> bool:
    clean = posixpath.normpath(path) if path else ""
    return any(clean == d or (d != "/" and clean.startswith(d + "/")) for d in SENSITIVE_HOST_DIRS)


def _is_socket(path: str) -> bool:
    return posixpath.basename(path.rstrip("/")) in _SOCKETS


def cis_capabilities(m: Manifests) -> list[Item]:
    items = []
    for pod, c in containers(m):
        if pod.windows:
            continue
        add, drop = capabilities(c)
        if "ALL" not in drop:
            items.append(pod.item("capabilities.drop does not include ALL", c))
        if add - RESTRICTED_CAPS:
            items.append(pod.item(f"adds {', '.join(sorted(add - RESTRICTED_CAPS))}", c))
    for s in m.services:
        add = {str(x).upper().removeprefix("CAP_") for x in as_list(s.spec.get("cap_add"))}
        drop = {str(x).upper().removeprefix("CAP_") for x in as_list(s.spec.get("cap_drop"))}
        if "ALL" not in drop:
            items.append(s.item("cap_drop does not include ALL"))
        if add - RESTRICTED_CAPS:
            items.append(s.item(f"cap_add {', '.join(sorted(add - RESTRICTED_CAPS))}"))
    return items


def privileged(m: Manifests) -> list[Item]:
    items = [
        pod.item("privileged: true", c)
        for pod, c in containers(m)
        if security_context(c).get("privileged")
    ]
    items += [s.item("privileged: true") for s in m.services if s.spec.get("privileged")]
    return items


def _host_mounts(m: Manifests, matches: Callable[[str], bool], show_target: bool) -> list[Item]:
    """hostPath volumes and compose bind mounts whose host path ``matches``."""
    items = [
        pod.item(f"hostPath {path} (volume {name})")
        for pod in m.pods
        for name, path in host_paths(pod)
        if matches(path)
    ]
    items += [
        s.item(f"bind mount {src} -> {dst}" if show_target else f"bind mount {src}")
        for s in m.services
        for src, dst in bind_mounts(s)
        if matches(src)
    ]
    return items


def sensitive_mounts(m: Manifests) -> list[Item]:
    return _host_mounts(m, _is_sensitive, show_target=True)


def privileged_ports(m: Manifests) -> list[Item]:
    items = []
    for pod, c in containers(m):
        for port in container_ports(c):
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
    resources = as_map(c.spec.get("resources"))
    return any(as_map(resources.get(group)).get(name) is not None for group, name in keys)


def memory_limit(m: Manifests) -> list[Item]:
    items = [
        pod.item("no resources.limits.memory", c)
        for pod, c in containers(m)
        if c.kind != "ephemeralContainer" and not _k8s_resource(c, ("limits", "memory"))
    ]
    items += [
        s.item("no mem_limit")
        for s in m.services
        if not s.spec.get("mem_limit") and not deploy_limits(s).get("memory")
    ]
    return items


def cpu_limit(m: Manifests) -> list[Item]:
    items = [
        pod.item("no resources.limits.cpu or requests.cpu", c)
        for pod, c in containers(m)
        if c.kind != "ephemeralContainer"
        and not _k8s_resource(c, ("limits", "cpu"), ("requests", "cpu"))
    ]
    keys = ("cpus", "cpu_shares", "cpu_quota")
    items += [
        s.item("no cpus or cpu_shares")
        for s in m.services
        if not any(s.spec.get(k) for k in keys) and not deploy_limits(s).get("cpus")
    ]
    return items


def read_only_root(m: Manifests) -> list[Item]:
    items = [
        pod.item("readOnlyRootFilesystem is not true", c)
        for pod, c in containers(m)
        if security_context(c).get("readOnlyRootFilesystem") is not True
    ]
    items += [
        s.item("read_only is not true") for s in m.services if s.spec.get("read_only") is not True
    ]
    return items


def bind_address(m: Manifests) -> list[Item]:
    items = []
    for pod, c in containers(m):
        for port in container_ports(c):
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
    for pod, c in containers(m):
        if pod.windows:
            continue
        kind = seccomp_type(pod, c)
        if kind is None:
            items.append(pod.item("no seccompProfile: the kubelet default is Unconfined", c))
        elif kind == "Unconfined":
            items.append(pod.item("seccompProfile Unconfined", c))
    for s in m.services:
        if any(o in ("seccomp:unconfined", "seccomp=unconfined") for o in security_opts(s)):
            items.append(s.item("security_opt seccomp:unconfined"))
    return items


def no_new_privileges(m: Manifests) -> list[Item]:
    items = [
        pod.item("allowPrivilegeEscalation is not false", c)
        for pod, c in containers(m)
        if not pod.windows and security_context(c).get("allowPrivilegeEscalation") is not False
    ]
    for s in m.services:
        opts = security_opts(s)
        if not any(o in ("no-new-privileges", "no-new-privileges:true") for o in opts):
            items.append(s.item("no security_opt no-new-privileges:true"))
    return items


def health(m: Manifests) -> list[Item]:
    items = [
        pod.item("no livenessProbe or readinessProbe", c)
        for pod, c in containers(m)
        if c.kind == "container"
        and not (c.spec.get("livenessProbe") or c.spec.get("readinessProbe"))
    ]
    for s in m.services:
        check = s.spec.get("healthcheck")
        if not isinstance(check, dict):
            items.append(s.item("no healthcheck"))
        elif check.get("disable") or [str(t).upper() for t in as_list(check.get("test"))][:1] == [
            "NONE"
        ]:
            items.append(s.item("healthcheck disabled"))
    return items


def pids_limit(m: Manifests) -> Outcome:
    if not m.services:
        return Outcome(skip="Kubernetes sets PID limits per node (kubelet podPidsLimit)")
    items = tuple(
        s.item("no pids_limit")
        for s in m.services
        if not s.spec.get("pids_limit") and not deploy_limits(s).get("pids")
    )
    note = "Kubernetes workloads not checked: PID limits are per node" if m.pods else ""
    return Outcome(items, note)


def docker_socket(m: Manifests) -> list[Item]:
    return _host_mounts(m, _is_socket, show_target=False)
