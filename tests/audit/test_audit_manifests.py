"""Manifest audit: a hardened Deployment and Compose file pass; each mutation breaks one control."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hardflow.audit.manifest_checks import (
    CHECKS,
    Service,
    compose_ports,
    load_manifests,
    run_manifest_checks,
)
from hardflow.audit.model import AuditError, Finding, Level

Doc = dict[str, Any]

SECURE_CONTAINER: Doc = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    },
    "resources": {"limits": {"memory": "2Gi", "cpu": "1"}},
}


def deployment() -> Doc:
    main = {
        "name": "scheduler",
        "image": "localhost/hardflow/airflow:3.3.2",
        "ports": [{"containerPort": 8080}],
        "livenessProbe": {"exec": {"command": ["/usr/local/bin/hardflow-health"]}},
        **copy.deepcopy(SECURE_CONTAINER),
    }
    init = {"name": "migrate", "image": "x:1", "args": ["db", "migrate"]}
    init.update(copy.deepcopy(SECURE_CONTAINER))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "airflow"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "airflow"}},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 50000,
                        "runAsGroup": 0,
                        "fsGroup": 0,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [init],
                    "containers": [main],
                    "volumes": [
                        {"name": "home", "persistentVolumeClaim": {"claimName": "airflow"}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory"}},
                        {"name": "dags", "configMap": {"name": "dags"}},
                    ],
                },
            }
        },
    }


SERVICE_DOC: Doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "airflow"},
                    "spec": {"ports": [{"port": 8080}]}}  # fmt: skip


def compose() -> Doc:
    return {
        "services": {
            "airflow": {
                "image": "localhost/hardflow/airflow:3.3.2",
                "user": "50000:0",
                "read_only": True,
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
                "tmpfs": ["/tmp"],
                "ports": ["127.0.0.1:8080:8080"],
                "mem_limit": "2g",
                "cpus": 2,
                "pids_limit": 512,
                "healthcheck": {"test": ["CMD", "/usr/local/bin/hardflow-health"]},
                "volumes": ["airflow-home:/opt/airflow", "./dags:/opt/airflow/dags:ro"],
            }
        },
        "volumes": {"airflow-home": {}},
    }


def write(tmp_path: Path, name: str, *docs: Doc) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run(*paths: Path) -> dict[str, Finding]:
    return {f.id: f for f in run_manifest_checks(load_manifests(paths))}


def failing(*paths: Path) -> dict[str, Finding]:
    return {k: f for k, f in run(*paths).items() if f.failed}


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def main_c(doc: Doc) -> Doc:
    container: Doc = pod_spec(doc)["containers"][0]
    return container


def init_c(doc: Doc) -> Doc:
    container: Doc = pod_spec(doc)["initContainers"][0]
    return container


def test_hardened_manifests_pass(tmp_path: Path) -> None:
    k8s = write(tmp_path, "k8s.yaml", deployment(), SERVICE_DOC)
    comp = write(tmp_path, "compose.yaml", compose())
    result = run(k8s, comp)
    assert sorted(result) == sorted(CHECKS)
    assert [(k, [str(i) for i in f.items]) for k, f in result.items() if f.failed] == []
    assert result["5.29"].note  # Kubernetes has no per-pod PID limit: said, not hidden


def test_helm_output_with_comments_and_empty_documents(tmp_path: Path) -> None:
    text = "---\n# Source: airflow/templates/svc.yaml\n" + yaml.safe_dump(SERVICE_DOC)
    text += "---\n# Source: airflow/templates/deploy.yaml\n" + yaml.safe_dump(deployment())
    text += "---\n"
    path = tmp_path / "rendered.yaml"
    path.write_text(text)
    manifests = load_manifests([path])
    assert [p.label for p in manifests.pods] == ["Deployment/airflow"]
    assert manifests.other == ("Service/airflow",)


def test_all_workload_kinds_are_found(tmp_path: Path) -> None:
    template = deployment()["spec"]["template"]
    docs = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": template["spec"]},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
         "spec": {"jobTemplate": {"spec": {"template": template}}}},
        {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
             "spec": {"template": template}}]},
    ]  # fmt: skip
    manifests = load_manifests([write(tmp_path, "kinds.yaml", *docs)])
    assert [p.label for p in manifests.pods] == ["Pod/p", "CronJob/c", "StatefulSet/s"]


Mutation = Callable[[Doc], None]


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted path below the main container (``c.``), init container (``i.``) or pod."""

    def mutate(doc: Doc) -> None:
        root, _, rest = path.partition(".")
        target = {"c": main_c(doc), "i": init_c(doc), "p": pod_spec(doc)}[root]
        keys = rest.split(".")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value

    return mutate


def _del(path: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        root, _, rest = path.partition(".")
        target = {"c": main_c(doc), "i": init_c(doc), "p": pod_spec(doc)}[root]
        keys = rest.split(".")
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return mutate


def _volume(volume: Doc) -> Mutation:
    def mutate(doc: Doc) -> None:
        pod_spec(doc)["volumes"].append(volume)

    return mutate


def _annotate(key: str, value: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        doc["spec"]["template"]["metadata"]["annotations"] = {key: value}

    return mutate


HOST_PATH = {"name": "h", "hostPath": {"path": "/var/data"}}
APPARMOR = "container.apparmor.security.beta.kubernetes.io/scheduler"

# (control, mutation, expected item subject)
K8S_CASES: list[tuple[str, Mutation, str]] = [
    ("PSS-B-HostProcess", _set("p.securityContext.windowsOptions", {"hostProcess": True}),
     "Deployment/airflow"),
    ("PSS-B-HostProcess", _set("i.securityContext.windowsOptions", {"hostProcess": True}),
     "Deployment/airflow/migrate"),
    ("PSS-B-HostNamespaces", _set("p.hostNetwork", True), "Deployment/airflow"),
    ("PSS-B-HostNamespaces", _set("p.hostPID", True), "Deployment/airflow"),
    ("PSS-B-HostNamespaces", _set("p.hostIPC", True), "Deployment/airflow"),
    ("PSS-B-Privileged", _set("i.securityContext.privileged", True),
     "Deployment/airflow/migrate"),
    ("PSS-B-Capabilities", _set("c.securityContext.capabilities.add", ["SYS_ADMIN"]),
     "Deployment/airflow/scheduler"),
    ("PSS-B-HostPathVolumes", _volume(HOST_PATH), "Deployment/airflow"),
    ("PSS-B-HostPorts", _set("c.ports", [{"containerPort": 8080, "hostPort": 8080}]),
     "Deployment/airflow/scheduler"),
    ("PSS-B-AppArmor", _annotate(APPARMOR, "unconfined"), "Deployment/airflow"),
    ("PSS-B-AppArmor", _set("c.securityContext.appArmorProfile", {"type": "Unconfined"}),
     "Deployment/airflow/scheduler"),
    ("PSS-B-SELinux", _set("p.securityContext.seLinuxOptions", {"type": "spc_t"}),
     "Deployment/airflow"),
    ("PSS-B-SELinux", _set("i.securityContext.seLinuxOptions", {"user": "system_u"}),
     "Deployment/airflow/migrate"),
    ("PSS-B-ProcMount", _set("c.securityContext.procMount", "Unmasked"),
     "Deployment/airflow/scheduler"),
    ("PSS-B-Seccomp", _set("p.securityContext.seccompProfile", {"type": "Unconfined"}),
     "Deployment/airflow"),
    ("PSS-B-Sysctls", _set("p.securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]),
     "Deployment/airflow"),
    ("PSS-R-VolumeTypes", _volume({"name": "n", "nfs": {"server": "x", "path": "/"}}),
     "Deployment/airflow"),
    ("PSS-R-PrivilegeEscalation", _del("i.securityContext.allowPrivilegeEscalation"),
     "Deployment/airflow/migrate"),
    ("PSS-R-RunAsNonRoot", _del("p.securityContext.runAsNonRoot"),
     "Deployment/airflow/migrate"),
    ("PSS-R-RunAsNonRoot", _set("c.securityContext.runAsNonRoot", False),
     "Deployment/airflow/scheduler"),
    ("PSS-R-RunAsUser", _set("i.securityContext.runAsUser", 0), "Deployment/airflow/migrate"),
    ("PSS-R-Seccomp", _del("p.securityContext.seccompProfile"),
     "Deployment/airflow/scheduler"),
    ("PSS-R-Capabilities", _set("i.securityContext.capabilities", {"drop": ["NET_RAW"]}),
     "Deployment/airflow/migrate"),
    ("PSS-R-Capabilities", _set("c.securityContext.capabilities.add", ["CHOWN"]),
     "Deployment/airflow/scheduler"),
    # CIS section 5 on Kubernetes
    ("5.4", _set("c.securityContext.capabilities.add", ["NET_ADMIN"]),
     "Deployment/airflow/scheduler"),
    ("5.5", _set("c.securityContext.privileged", True), "Deployment/airflow/scheduler"),
    ("5.6", _volume({"name": "etc", "hostPath": {"path": "/etc/kubernetes"}}),
     "Deployment/airflow"),
    ("5.8", _set("c.ports", [{"containerPort": 80, "hostPort": 80, "hostIP": "127.0.0.1"}]),
     "Deployment/airflow/scheduler"),
    ("5.10", _set("p.hostNetwork", True), "Deployment/airflow"),
    ("5.11", _del("c.resources.limits.memory"), "Deployment/airflow/scheduler"),
    ("5.12", _del("i.resources.limits.cpu"), "Deployment/airflow/migrate"),
    ("5.13", _set("i.securityContext.readOnlyRootFilesystem", False),
     "Deployment/airflow/migrate"),
    ("5.14", _set("c.ports", [{"containerPort": 8080, "hostPort": 8080}]),
     "Deployment/airflow/scheduler"),
    ("5.16", _set("p.hostPID", True), "Deployment/airflow"),
    ("5.17", _set("p.hostIPC", True), "Deployment/airflow"),
    ("5.21", _set("p.hostNetwork", True), "Deployment/airflow"),
    ("5.22", _set("c.securityContext.seccompProfile", {"type": "Unconfined"}),
     "Deployment/airflow/scheduler"),
    ("5.26", _set("c.securityContext.allowPrivilegeEscalation", True),
     "Deployment/airflow/scheduler"),
    ("5.27", _del("c.livenessProbe"), "Deployment/airflow/scheduler"),
    ("5.32", _volume({"name": "s", "hostPath": {"path": "/run/podman/podman.sock"}}),
     "Deployment/airflow"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("control", "mutate", "subject"),
    K8S_CASES,
    ids=[f"{c}-{n}" for n, (c, _, _) in enumerate(K8S_CASES)],
)
def test_kubernetes_control(tmp_path: Path, control: str, mutate: Mutation, subject: str) -> None:
    doc = deployment()
    mutate(doc)
    bad = failing(write(tmp_path, "deploy.yaml", doc))
    assert control in bad, sorted(bad)
    assert subject in [i.subject for i in bad[control].items]
    assert all(i.location.endswith("deploy.yaml") for i in bad[control].items)
    expected = Level.FATAL if control.startswith("PSS-B") else CHECKS[control].level
    assert bad[control].level == expected


def test_every_pss_control_has_a_failing_case() -> None:
    pss = {c for c in CHECKS if c.startswith("PSS-")}
    assert pss == {c for c, _, _ in K8S_CASES if c.startswith("PSS-")}


def _svc(**changes: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        service = doc["services"]["airflow"]
        for key, value in changes.items():
            if value is None:
                service.pop(key, None)
            else:
                service[key] = value

    return mutate


COMPOSE_CASES: list[tuple[str, Mutation]] = [
    ("5.4", _svc(cap_drop=None)),
    ("5.4", _svc(cap_add=["SYS_ADMIN"])),
    ("5.5", _svc(privileged=True)),
    ("5.6", _svc(volumes=["/etc:/host-etc:ro"])),
    ("5.8", _svc(ports=["127.0.0.1:80:8080"])),
    ("5.10", _svc(network_mode="host")),
    ("5.11", _svc(mem_limit=None)),
    ("5.12", _svc(cpus=None)),
    ("5.13", _svc(read_only=None)),
    ("5.14", _svc(ports=["8080:8080"])),
    ("5.14", _svc(ports=[{"target": 8080, "published": 8080}])),
    ("5.16", _svc(pid="host")),
    ("5.17", _svc(ipc="host")),
    ("5.21", _svc(uts="host")),
    ("5.22", _svc(security_opt=["no-new-privileges:true", "seccomp=unconfined"])),
    ("5.26", _svc(security_opt=None)),
    ("5.27", _svc(healthcheck=None)),
    ("5.27", _svc(healthcheck={"disable": True})),
    ("5.29", _svc(pids_limit=None)),
    ("5.32", _svc(volumes=[{"type": "bind", "source": "/var/run/docker.sock",
                            "target": "/var/run/docker.sock"}])),
]  # fmt: skip


@pytest.mark.parametrize(
    ("control", "mutate"), COMPOSE_CASES, ids=[f"{c}-{n}" for n, (c, _) in enumerate(COMPOSE_CASES)]
)
def test_compose_control(tmp_path: Path, control: str, mutate: Mutation) -> None:
    doc = compose()
    mutate(doc)
    bad = failing(write(tmp_path, "compose.yaml", doc))
    assert control in bad, sorted(bad)
    assert [i.subject for i in bad[control].items] == ["service/airflow"]


def test_compose_port_syntaxes() -> None:
    ports = ["8080", "127.0.0.1:8080:80", "[::1]:9000:90/udp", "8000-8001:80",
             {"target": 80, "published": "8081", "host_ip": "10.0.0.1"}]  # fmt: skip
    got = compose_ports(Service("f", "s", {"ports": ports}))
    assert [(p.host_ip, p.host_port, p.container_port) for p in got] == [
        (None, None, "8080"),
        ("127.0.0.1", 8080, "80"),
        ("::1", 9000, "90"),
        (None, 8000, "80"),
        ("10.0.0.1", 8081, "80"),
    ]


def test_pss_skipped_for_compose_only(tmp_path: Path) -> None:
    result = run(write(tmp_path, "compose.yaml", compose()))
    assert result["PSS-R-Seccomp"].level == Level.SKIP
    assert result["5.4"].level == Level.PASS


def test_directory_input(tmp_path: Path) -> None:
    (tmp_path / "chart").mkdir()
    write(tmp_path / "chart", "a.yaml", deployment())
    write(tmp_path / "chart", "b.yml", SERVICE_DOC)
    manifests = load_manifests([tmp_path / "chart"])
    assert len(manifests.files) == 2


def test_yaml_that_is_not_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("replicaCount: 2\nimage:\n  tag: 1.0\n")
    with pytest.raises(AuditError, match=r"values\.yaml: document 1 is not a manifest"):
        load_manifests([path])


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("services:\n  a: [unclosed\n")
    with pytest.raises(AuditError, match=r"broken\.yaml is not valid YAML"):
        load_manifests([path])


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    with pytest.raises(AuditError, match="holds no manifest"):
        load_manifests([path])


def test_compose_that_hardflow_generates_passes(tmp_path: Path) -> None:
    compose_mod = pytest.importorskip("hardflow.deploy.compose")
    topology_mod = pytest.importorskip("hardflow.deploy.topology")
    top = topology_mod.Topology(images=topology_mod.Images.default(), dags_dir=str(tmp_path))
    path = write(tmp_path, "compose.yaml", compose_mod.render_compose(top))
    result = run(path)
    assert [(k, [str(i) for i in f.items]) for k, f in result.items() if f.failed] == []
    assert result["5.13"].level == Level.PASS and result["5.29"].level == Level.PASS
