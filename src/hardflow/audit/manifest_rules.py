"""The manifest rules table: CIS Docker Benchmark v1.6 §5 and the Kubernetes Pod Security
Standards, for Compose files and Kubernetes YAML.

* CIS §5 — the container-runtime recommendations a manifest decides (5.4 capabilities … 5.32
  docker socket), for Compose services and Kubernetes containers (``manifest_cis``);
* the Pod Security Standards — every *baseline* control (``PSS-B-*``, FATAL: known privilege
  escalations) and every *restricted* control (``PSS-R-*``, WARN: hardening best practice),
  per container including init and ephemeral containers (``manifest_pss``).
* hardflow's own: ``HF-M-0001`` (FATAL), a secret in a plain env value (Kubernetes
  ``value:``, Compose ``environment:``) or in a ConfigMap (``manifest_secrets``).

One row per rule, in report order. Adding a rule is a check function in one of those modules
and a row here.
"""

from __future__ import annotations

from hardflow.audit import manifest_cis as cis
from hardflow.audit import manifest_pss as pss
from hardflow.audit import manifest_secrets as secrets
from hardflow.audit.manifest_loader import Manifests
from hardflow.audit.model import Level, Rule

CIS5 = "CIS Docker Benchmark v1.6 §5 (container runtime)"
PSS_B = "Kubernetes Pod Security Standards: baseline"
PSS_R = "Kubernetes Pod Security Standards: restricted"
HF_SECRETS = "Secrets in manifests (hardflow)"

W, F = Level.WARN, Level.FATAL


def workloads(m: Manifests) -> str:
    """CIS §5 rules need a Compose service or a Kubernetes workload to look at."""
    if m.pods or m.services:
        return ""
    return "no Compose services and no Kubernetes workloads in the input"


def configuration(m: Manifests) -> str:
    """The secrets rule looks at workloads' environment and at ConfigMaps."""
    if m.pods or m.services or m.config_maps:
        return ""
    return "no Compose services, Kubernetes workloads or ConfigMaps in the input"


def kubernetes(m: Manifests) -> str:
    """Pod Security Standards rules need a Kubernetes workload to look at."""
    return "" if m.pods else "no Kubernetes workloads in the input"


MANIFEST_RULES: tuple[Rule[Manifests], ...] = (
    Rule("5.4", W, CIS5, "Ensure that Linux kernel capabilities are restricted within "
         "containers", "Drop ALL capabilities (cap_drop: [ALL] / capabilities.drop: [ALL]) "
         "and add back at most NET_BIND_SERVICE.", cis.cis_capabilities,
         ("PSS-R-Capabilities",), workloads),
    Rule("5.5", F, CIS5, "Ensure that privileged containers are not used",
         "Remove `privileged: true`.", cis.privileged, ("PSS-B-Privileged",), workloads),
    Rule("5.6", W, CIS5, "Ensure sensitive host system directories are not mounted on "
         "containers", "Do not mount /, /boot, /dev, /etc, /lib, /proc, /sys or /usr from "
         "the host; use volumes.", cis.sensitive_mounts, ("PSS-B-HostPathVolumes",),
         workloads),
    Rule("5.8", W, CIS5, "Ensure that privileged ports are not mapped within containers",
         "Publish on host ports of 1024 and above.", cis.privileged_ports, (), workloads),
    Rule("5.10", W, CIS5, "Ensure that the host's network namespace is not shared",
         "Remove network_mode: host / hostNetwork: true.", cis.host_network,
         ("PSS-B-HostNamespaces",), workloads),
    Rule("5.11", W, CIS5, "Ensure that the memory usage for containers is limited",
         "Set mem_limit (Compose) or resources.limits.memory (Kubernetes).", cis.memory_limit,
         (), workloads),
    Rule("5.12", W, CIS5, "Ensure that CPU priority is set appropriately on containers",
         "Set cpus/cpu_shares (Compose) or resources.limits.cpu/requests.cpu (Kubernetes).",
         cis.cpu_limit, (), workloads),
    Rule("5.13", W, CIS5, "Ensure that the container's root filesystem is mounted as read "
         "only", "Set read_only: true / readOnlyRootFilesystem: true; mount writable "
         "volumes or tmpfs where needed.", cis.read_only_root, (), workloads),
    Rule("5.14", W, CIS5, "Ensure that incoming container traffic is bound to a specific "
         "host interface", "Publish ports as HOST_IP:HOST_PORT:PORT (e.g. 127.0.0.1) or set "
         "hostIP.", cis.bind_address, (), workloads),
    Rule("5.16", W, CIS5, "Ensure that the host's process namespace is not shared",
         "Remove pid: host / hostPID: true.", cis.host_pid, ("PSS-B-HostNamespaces",),
         workloads),
    Rule("5.17", W, CIS5, "Ensure that the host's IPC namespace is not shared",
         "Remove ipc: host / hostIPC: true.", cis.host_ipc, ("PSS-B-HostNamespaces",),
         workloads),
    Rule("5.21", W, CIS5, "Ensure that the host's UTS namespace is not shared",
         "Remove uts: host (Kubernetes shares UTS with hostNetwork).", cis.host_uts,
         ("PSS-B-HostNamespaces",), workloads),
    Rule("5.22", W, CIS5, "Ensure the default seccomp profile is not disabled",
         "Keep the runtime's default seccomp profile (seccompProfile: RuntimeDefault); never "
         "seccomp:unconfined.", cis.seccomp_cis, ("PSS-R-Seccomp",), workloads),
    Rule("5.26", W, CIS5, "Ensure that the container is restricted from acquiring "
         "additional privileges", "Set security_opt: [no-new-privileges:true] / "
         "allowPrivilegeEscalation: false.", cis.no_new_privileges,
         ("PSS-R-PrivilegeEscalation",), workloads),
    Rule("5.27", W, CIS5, "Ensure that container health is checked at runtime",
         "Define a healthcheck (Compose) or liveness/readiness probes (Kubernetes).",
         cis.health, (), workloads),
    Rule("5.29", W, CIS5, "Ensure that the PIDs cgroup limit is used",
         "Set pids_limit (Compose) or deploy.resources.limits.pids.", cis.pids_limit, (),
         workloads),
    Rule("5.32", F, CIS5, "Ensure that the Docker socket is not mounted inside any "
         "containers", "Never mount docker.sock or podman.sock into a container.",
         cis.docker_socket, (), workloads),
    # PSS baseline
    Rule("PSS-B-HostProcess", F, PSS_B, "HostProcess: Windows HostProcess containers are "
         "not allowed", "Remove windowsOptions.hostProcess: true.", pss.pss_host_process, (),
         kubernetes),
    Rule("PSS-B-HostNamespaces", F, PSS_B, "Host namespaces: hostNetwork, hostPID and "
         "hostIPC must be unset or false", "Remove hostNetwork, hostPID and hostIPC.",
         pss.pss_host_namespaces, (), kubernetes),
    Rule("PSS-B-Privileged", F, PSS_B, "Privileged containers are not allowed",
         "Remove securityContext.privileged: true.", pss.pss_privileged, (), kubernetes),
    Rule("PSS-B-Capabilities", F, PSS_B, "Capabilities: only the baseline set may be added",
         "Add no capability beyond AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, "
         "MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT.",
         pss.pss_capabilities_baseline, (), kubernetes),
    Rule("PSS-B-HostPathVolumes", F, PSS_B, "HostPath volumes are not allowed",
         "Use persistentVolumeClaim, emptyDir, configMap or secret volumes.",
         pss.pss_host_path, (), kubernetes),
    Rule("PSS-B-HostPorts", F, PSS_B, "Host ports are not allowed",
         "Remove hostPort; expose the pod through a Service.", pss.pss_host_ports, (),
         kubernetes),
    Rule("PSS-B-AppArmor", F, PSS_B, "AppArmor: the profile may not be overridden to "
         "unconfined", "Use RuntimeDefault or a Localhost profile (or leave it unset).",
         pss.pss_apparmor, (), kubernetes),
    Rule("PSS-B-SELinux", F, PSS_B, "SELinux: no custom type, user or role",
         "Leave seLinuxOptions unset, or use type container_t/container_init_t/"
         "container_kvm_t/container_engine_t without user or role.", pss.pss_selinux, (),
         kubernetes),
    Rule("PSS-B-ProcMount", F, PSS_B, "/proc mount type must be Default",
         "Remove procMount (or set Default).", pss.pss_proc_mount, (), kubernetes),
    Rule("PSS-B-Seccomp", F, PSS_B, "Seccomp: the profile may not be Unconfined",
         "Set seccompProfile.type: RuntimeDefault.", pss.pss_seccomp_baseline, (),
         kubernetes),
    Rule("PSS-B-Sysctls", F, PSS_B, "Sysctls: only the safe set may be set",
         "Set only kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, "
         "net.ipv4.ip_local_reserved_ports, net.ipv4.ip_unprivileged_port_start, "
         "net.ipv4.tcp_syncookies, net.ipv4.ping_group_range, net.ipv4.tcp_keepalive_time, "
         "net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl, "
         "net.ipv4.tcp_keepalive_probes.", pss.pss_sysctls, (), kubernetes),
    # PSS restricted
    Rule("PSS-R-VolumeTypes", W, PSS_R, "Volume types: only configMap, csi, downwardAPI, "
         "emptyDir, ephemeral, persistentVolumeClaim, projected and secret",
         "Replace other volume types with a persistentVolumeClaim.", pss.pss_volume_types,
         (), kubernetes),
    Rule("PSS-R-PrivilegeEscalation", W, PSS_R, "Privilege escalation: "
         "allowPrivilegeEscalation must be false", "Set "
         "securityContext.allowPrivilegeEscalation: false in every container.",
         pss.pss_privilege_escalation, (), kubernetes),
    Rule("PSS-R-RunAsNonRoot", W, PSS_R, "Running as non-root: runAsNonRoot must be true",
         "Set securityContext.runAsNonRoot: true (pod or every container).",
         pss.pss_run_as_non_root, (), kubernetes),
    Rule("PSS-R-RunAsUser", W, PSS_R, "Running as non-root user: runAsUser must not be 0",
         "Set runAsUser to a non-zero UID (hardflow images: 50000) or leave it unset.",
         pss.pss_run_as_user, (), kubernetes),
    Rule("PSS-R-Seccomp", W, PSS_R, "Seccomp: the profile must be RuntimeDefault or "
         "Localhost", "Set securityContext.seccompProfile.type: RuntimeDefault (pod level).",
         pss.pss_seccomp, (), kubernetes),
    Rule("PSS-R-Capabilities", W, PSS_R, "Capabilities: drop ALL, add at most "
         "NET_BIND_SERVICE", "Set capabilities.drop: [ALL] in every container.",
         pss.pss_capabilities, (), kubernetes),
    # hardflow
    Rule("HF-M-0001", F, HF_SECRETS, "Secrets are not written in plain environment values or "
         "ConfigMaps", "Keep the value in a Secret (Compose: secrets:) and reference it: "
         "env valueFrom.secretKeyRef, a Secret volume, or Airflow's *_FILE / *_CMD / *_SECRET "
         "variables; a ConfigMap holds settings only.", secrets.plain_secrets, (),
         configuration),
)  # fmt: skip
