"""Check functions for the Kubernetes Pod Security Standards: every *baseline* control (known
privilege escalations) and every *restricted* control (hardening best practice), per
container including init and ephemeral containers.

Each is a pure function of the loaded :class:`Manifests` returning the offending items, named
``Kind/name`` (pod level) or ``Kind/name/container``, located in their file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hardflow.audit.manifest_loader import (
    Container,
    Manifests,
    as_list,
    as_map,
    capabilities,
    container_ports,
    containers,
    effective,
    host_paths,
    seccomp_type,
    security_context,
)
from hardflow.audit.model import Item

BASELINE_CAPS = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
     "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip
# the restricted profile lets a container add this capability and no other
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
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


# PSS baseline


def pss_host_process(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        if as_map(pod.security.get("windowsOptions")).get("hostProcess"):
            items.append(pod.item("securityContext.windowsOptions.hostProcess: true"))
        for c in pod.containers:
            if as_map(security_context(c).get("windowsOptions")).get("hostProcess"):
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
    return [
        pod.item("privileged: true", c)
        for pod, c in containers(m)
        if security_context(c).get("privileged")
    ]


def pss_capabilities_baseline(m: Manifests) -> list[Item]:
    items = []
    for pod, c in containers(m):
        extra = capabilities(c)[0] - BASELINE_CAPS
        if extra:
            items.append(pod.item(f"adds {', '.join(sorted(extra))}", c))
    return items


def pss_host_path(m: Manifests) -> list[Item]:
    return [
        pod.item(f"hostPath {path} (volume {name})")
        for pod in m.pods
        for name, path in host_paths(pod)
    ]


def pss_host_ports(m: Manifests) -> list[Item]:
    return [
        pod.item(f"hostPort {port.get('hostPort')}", c)
        for pod, c in containers(m)
        for port in container_ports(c)
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
            (None, as_map(pod.security.get("appArmorProfile")))
        ]
        profiles += [
            (c, as_map(security_context(c).get("appArmorProfile"))) for c in pod.containers
        ]
        for container, profile in profiles:
            kind = profile.get("type")
            if kind is not None and kind not in ("RuntimeDefault", "Localhost"):
                items.append(pod.item(f"appArmorProfile.type {kind}", container))
    return items


def pss_selinux(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        contexts: list[tuple[Container | None, Mapping[str, Any]]] = [
            (None, as_map(pod.security.get("seLinuxOptions")))
        ]
        contexts += [(c, as_map(security_context(c).get("seLinuxOptions"))) for c in pod.containers]
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
        pod.item(f"procMount {security_context(c).get('procMount')}", c)
        for pod, c in containers(m)
        if security_context(c).get("procMount") not in (None, "Default")
    ]


def pss_seccomp_baseline(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        if as_map(pod.security.get("seccompProfile")).get("type") == "Unconfined":
            items.append(pod.item("seccompProfile Unconfined"))
        for c in pod.containers:
            if as_map(security_context(c).get("seccompProfile")).get("type") == "Unconfined":
                items.append(pod.item("seccompProfile Unconfined", c))
    return items


def pss_sysctls(m: Manifests) -> list[Item]:
    return [
        pod.item(f"sysctl {as_map(s).get('name')}")
        for pod in m.pods
        for s in as_list(pod.security.get("sysctls"))
        if str(as_map(s).get("name")) not in SAFE_SYSCTLS
    ]


# PSS restricted


def pss_volume_types(m: Manifests) -> list[Item]:
    items = []
    for pod in m.pods:
        for volume in as_list(pod.spec.get("volumes")):
            kinds = [k for k in as_map(volume) if k != "name"]
            bad = [k for k in kinds if k not in RESTRICTED_VOLUMES]
            if bad:
                name = as_map(volume).get("name")
                items.append(pod.item(f"volume {name}: {', '.join(bad)}"))
    return items


def pss_privilege_escalation(m: Manifests) -> list[Item]:
    return [
        pod.item("allowPrivilegeEscalation is not false", c)
        for pod, c in containers(m)
        if not pod.windows and security_context(c).get("allowPrivilegeEscalation") is not False
    ]


def pss_run_as_non_root(m: Manifests) -> list[Item]:
    return [
        pod.item("runAsNonRoot is not true (pod or container)", c)
        for pod, c in containers(m)
        if effective(pod, c, "runAsNonRoot") is not True
    ]


def pss_run_as_user(m: Manifests) -> list[Item]:
    items = [pod.item("runAsUser: 0") for pod in m.pods if pod.security.get("runAsUser") == 0]
    items += [
        pod.item("runAsUser: 0", c)
        for pod, c in containers(m)
        if security_context(c).get("runAsUser") == 0
    ]
    return items


def pss_seccomp(m: Manifests) -> list[Item]:
    items = []
    for pod, c in containers(m):
        if pod.windows:
            continue
        kind = seccomp_type(pod, c)
        if kind not in ("RuntimeDefault", "Localhost"):
            items.append(pod.item(f"seccompProfile.type is {kind or 'unset'}", c))
    return items


def pss_capabilities(m: Manifests) -> list[Item]:
    items = []
    for pod, c in containers(m):
        if pod.windows:
            continue
        add, drop = capabilities(c)
        if "ALL" not in drop:
            items.append(pod.item("capabilities.drop does not include ALL", c))
        if add - RESTRICTED_CAPS:
            items.append(pod.item(f"adds {', '.join(sorted(add - RESTRICTED_CAPS))}", c))
    return items
