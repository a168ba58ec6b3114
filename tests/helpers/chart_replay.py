"""Replay the official Helm chart's container contracts without helm or a cluster.

``tests/deploy/fixtures/chart-<version>/contracts.yaml`` is a hand transcription of what the
chart's templates put into each container (command, args, env names, probes, mounts, security
contexts), naming every values key a template reads. :func:`render` applies a values document
(what ``hardflow deploy helm-values`` writes) the way those templates do, and
:func:`container_argv` turns one rendered container into the ``podman run`` arguments that
behave like the kubelet starting it: ``command`` replaces the image's entrypoint, ``args`` its
command, every emptyDir is a per-pod volume, the config map is mounted file by file.

Pure functions only: the podman calls live in the test (tests/deploy/test_deploy_chart_replay.py).
"""

from __future__ import annotations

import configparser
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "deploy" / "fixtures"
MISSING: Any = object()
PLACEHOLDER = re.compile(r"<<([A-Za-z]+)>>")

# Values keys that change nothing a container runs or is given, so the replay may leave them
# unread: scheduling, sizing, images (the replay runs the image under test), objects other than
# the Airflow containers (bundled databases, statsd, network policies), claims (a replayed pod
# always starts on fresh volumes).
IRRELEVANT = (
    re.compile(r"^(airflowVersion|defaultAirflow\w+|images\..*|postgresql\..*|redis\..*)$"),
    re.compile(r"^(pgbouncer|statsd|networkPolicies|ingress|flower|cleanup)\..*$"),
    # uid and gid are the chart's fallback when no pod securityContext is given (read then)
    re.compile(r"^(uid|gid)$"),
    re.compile(
        r"^(\w+\.)+(resources|replicas|revisionHistoryLimit|strategy|updateStrategy|persistence|"
        r"serviceAccount|podDisruptionBudget|service|keda|hpa|labels|annotations|podAnnotations|"
        r"nodeSelector|affinity|tolerations|topologySpreadConstraints|priorityClassName|"
        r"safeToEvict|terminationGracePeriodSeconds)(\..*)?$"
    ),
)


class Values:
    """A values document with dotted look-ups; records every key read."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.read: set[str] = set()

    def get(self, key: str, default: Any = MISSING) -> Any:
        self.read.add(key)
        node: Any = self.doc
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return default if node is None else node

    def first(self, keys: Iterable[str], default: Any = MISSING) -> Any:
        for key in keys:
            found = self.get(key)
            if found is not MISSING:
                return found
        return default

    def unread(self) -> list[str]:
        """Leaf keys of the document that no look-up covered and that may change a container."""
        leaves: list[str] = []

        def walk(node: Any, prefix: str) -> None:
            if isinstance(node, Mapping) and node:
                for k, v in node.items():
                    walk(v, f"{prefix}.{k}" if prefix else str(k))
            else:
                leaves.append(prefix)

        walk(self.doc, "")
        return [
            leaf
            for leaf in leaves
            if not any(leaf == r or leaf.startswith(r + ".") for r in self.read)
            and not any(p.match(leaf) for p in IRRELEVANT)
        ]


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    secret: tuple[str, str] | None = None  # (Secret name, key)


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class Probe:
    kind: str  # livenessProbe, readinessProbe, startupProbe
    exec: tuple[str, ...] = ()
    http_path: str = ""
    http_port: int = 0
    timeout: int = 1
    period: int = 10
    failures: int = 3


@dataclass(frozen=True)
class Container:
    name: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: tuple[EnvVar, ...]
    mounts: tuple[Mount, ...]
    security: Mapping[str, Any]
    probes: tuple[Probe, ...] = ()
    sidecar: bool = False


@dataclass(frozen=True)
class Pod:
    name: str
    kind: str
    template: str
    section: str
    security: Mapping[str, Any]
    volumes: Mapping[str, Mapping[str, Any]]
    init_containers: tuple[Container, ...]
    containers: tuple[Container, ...]
    after: str = ""
    grace_seconds: int = 30
    ports: tuple[int, ...] = ()

    @property
    def main(self) -> Container:
        return self.containers[0]


@dataclass(frozen=True)
class Rendered:
    chart_version: str
    release: str
    pods: tuple[Pod, ...]
    files: Mapping[str, str] = field(default_factory=dict)  # config map key -> content
    unread_values: tuple[str, ...] = ()

    def pod(self, name: str) -> Pod:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(
            f"no pod {name!r} in the rendered chart (have {[p.name for p in self.pods]})"
        )


def load_contracts(version: str) -> dict[str, Any]:
    path = FIXTURES / f"chart-{version}" / "contracts.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and doc["chart"]["version"] == version, path
    return doc


def chart_versions() -> list[str]:
    return sorted(p.name.removeprefix("chart-") for p in FIXTURES.glob("chart-*") if p.is_dir())


# ---------------------------------------------------------------------------------------------
# rendering


def _placeholders(contracts: Mapping[str, Any], values: Values) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, spec in contracts["placeholders"].items():
        value = values.first(spec["keys"], spec["default"])
        found[name] = ("True" if value else "False") if isinstance(value, bool) else str(value)
    return found


def _fill(text: str, slots: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: slots[m.group(1)], text)


def _enabled(keys: Sequence[str], values: Values) -> bool:
    return all(values.get(key) is not False for key in keys)


def _conditions(values: Values) -> dict[str, bool]:
    executor = str(values.get("executor", "CeleryExecutor"))
    return {
        "celery": "Celery" in executor,
        "result_backend_secret": values.get("data.resultBackendSecretName") is not MISSING
        or values.get("data.resultBackendConnection") is not MISSING,
    }


def _env(
    entries: Sequence[Any], groups: Mapping[str, Any], values: Values, conds: Mapping[str, bool]
) -> list[EnvVar]:
    out: list[EnvVar] = []
    for entry in entries:
        if isinstance(entry, str):  # a group (standard_airflow_environment, jwt)
            out.extend(_env(groups[entry], groups, values, conds))
            continue
        if not all(conds[c] for c in entry.get("when", ())):
            continue
        gate = entry.get("gate")
        if gate and values.get(f"enableBuiltInSecretEnvVars.{gate}") is False:
            continue
        if "secret" in entry:
            ref = entry["secret"]
            name = values.first(ref["name_keys"], ref["default"])
            out.append(EnvVar(entry["name"], secret=(str(name), ref["key"])))
        elif "value_keys" in entry:
            out.append(
                EnvVar(entry["name"], str(values.first(entry["value_keys"], entry["default"])))
            )
        else:
            out.append(EnvVar(entry["name"], str(entry["value"])))
    return out


def _custom_env(values: Values) -> list[EnvVar]:
    """define "custom_airflow_environment": `env`, `secret` and `extraEnv` of the values."""
    out = [EnvVar(e["name"], str(e["value"])) for e in values.get("env", [])]
    for s in values.get("secret", []):
        out.append(EnvVar(s["envName"], secret=(s["secretName"], s.get("secretKey", "value"))))
    extra = values.get("extraEnv")
    if extra is not MISSING:
        for e in yaml.safe_load(extra) or []:
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                out.append(EnvVar(e["name"], secret=(ref["name"], ref["key"])))
            else:
                out.append(EnvVar(e["name"], str(e["value"])))
    return out


def _container_security(key: str, values: Values) -> dict[str, Any]:
    """define "containerSecurityContext": the local value, the global one, or the default."""
    local = values.get(key, {})
    if local:
        return dict(local)
    shared = values.get("securityContexts.containers", {})
    if shared:
        return dict(shared)
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _pod_security(section: str, values: Values) -> dict[str, Any]:
    """define "airflowPodSecurityContext"."""
    for key in (
        f"{section}.securityContexts.pod",
        f"{section}.securityContext",
        "securityContexts.pod",
        "securityContext",
    ):
        found = values.get(key, {})
        if found:
            return dict(found)
    return {"runAsUser": values.get("uid", 50000), "fsGroup": values.get("gid", 0)}


def _mounts(raw: Iterable[Mapping[str, Any]]) -> list[Mount]:
    return [
        Mount(m["name"], m["mountPath"], m.get("subPath", ""), bool(m.get("readOnly", False)))
        for m in raw
    ]


def _probes(raw: Mapping[str, Any], values: Values, slots: Mapping[str, str]) -> list[Probe]:
    out: list[Probe] = []
    for kind, spec in raw.items():
        if not _enabled(spec.get("enabled_keys", ()), values):
            continue
        timing = dict(spec["timing"])
        for t in ("initialDelaySeconds", "timeoutSeconds", "failureThreshold", "periodSeconds"):
            override = values.get(f"{spec['timing_key']}.{t}")
            if override is not MISSING:
                timing[t] = override
        common = {
            "timeout": int(timing.get("timeoutSeconds", 1)),
            "period": int(timing.get("periodSeconds", 10)),
            "failures": int(timing.get("failureThreshold", 3)),
        }
        if "http" in spec:
            out.append(
                Probe(
                    kind,
                    http_path=spec["http"]["path"],
                    http_port=int(spec["http"]["port"]),
                    **common,
                )
            )
            continue
        command = spec["exec"]
        if "command_key" in spec:
            command = values.get(spec["command_key"], command)
        out.append(Probe(kind, exec=tuple(_fill(str(a), slots) for a in command), **common))
    return out


def _container(
    spec: Mapping[str, Any],
    section: str,
    contracts: Mapping[str, Any],
    values: Values,
    slots: Mapping[str, str],
    *,
    airflow_env: bool,
) -> Container | None:
    if not _enabled(spec.get("enabled_keys", ()), values):
        return None
    gate = spec.get("persistence_gate")
    claimless = bool(gate) and values.get(gate["persistence"]) is False
    if claimless and values.get(gate["opt_out"]) is not False:
        return None  # the worker's log groomer: only beside a logs claim unless opted out
    conds = _conditions(values)
    command = values.get(spec["command_key"], None) if "command_key" in spec else None
    args: Any = spec.get("args")
    if "args_key" in spec:
        args = values.get(spec["args_key"], args)
    env = _custom_env(values) if airflow_env else []
    env += _env(spec.get("env", ()), contracts["env_groups"], values, conds)
    if "env_key" in spec:
        env += [EnvVar(e["name"], str(e["value"])) for e in values.get(spec["env_key"], [])]
    mounts = _mounts(spec.get("mounts", ()))
    mounts += _mounts(values.get("volumeMounts", []))
    if "extra_mounts_key" in spec:
        mounts += _mounts(values.get(spec["extra_mounts_key"], []))
    return Container(
        name=spec["name"],
        command=None if command is None else tuple(_fill(str(a), slots) for a in command),
        args=None if args is None else tuple(_fill(str(a), slots) for a in args),
        env=tuple(env),
        mounts=tuple(mounts),
        security=_container_security(spec["security_key"], values),
        probes=tuple(_probes(spec.get("probes", {}), values, slots)),
        sidecar=bool(spec.get("sidecar", False)),
    )


def _airflow_cfg(contracts: Mapping[str, Any], values: Values, slots: Mapping[str, str]) -> str:
    merged: dict[str, dict[str, str]] = {
        section: {k: _fill(str(v), slots) for k, v in options.items()}
        for section, options in contracts["config"].items()
    }
    for section, options in (values.get("config", {}) or {}).items():
        for k, v in (options or {}).items():
            merged.setdefault(section, {})[k] = str(v)
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    for section, options in merged.items():
        parser[section] = options
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def render(contracts: Mapping[str, Any], values_doc: Mapping[str, Any]) -> Rendered:
    """The chart's containers with ``values_doc`` applied as the templates apply it."""
    values = Values(values_doc)
    slots = _placeholders(contracts, values)
    conds = _conditions(values)
    pods: list[Pod] = []
    for spec in contracts["pods"]:
        if not _enabled(spec.get("enabled_keys", ()), values):
            continue
        if not all(conds[c] for c in spec.get("when", ())):
            continue
        section = spec["section"]
        inits = [
            _container(c, section, contracts, values, slots, airflow_env=True)
            for c in spec.get("init_containers", ())
        ]
        mains = [
            _container(c, section, contracts, values, slots, airflow_env=not c.get("sidecar"))
            for c in spec["containers"]
        ]
        volumes = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in spec["volumes"]}
        for v in values.get("volumes", []):
            volumes[v["name"]] = {k: x for k, x in v.items() if k != "name"}
        for v in values.get(f"{section}.extraVolumes", []):
            volumes[v["name"]] = {k: x for k, x in v.items() if k != "name"}
        pods.append(
            Pod(
                name=spec["name"],
                kind=spec["kind"],
                template=spec["template"],
                section=section,
                security=_pod_security(section, values),
                volumes=volumes,
                init_containers=tuple(c for c in inits if c is not None),
                containers=tuple(c for c in mains if c is not None),
                after=spec.get("after", ""),
                grace_seconds=int(spec.get("termination_grace_seconds", 30)),
                ports=tuple(spec.get("ports", ())),
            )
        )
    # every key of `config` ends up in airflow.cfg
    values.read.add("config")
    files = {
        "airflow.cfg": _airflow_cfg(contracts, values, slots),
        "airflow_local_settings.py": str(contracts.get("local_settings", "")),
    }
    return Rendered(
        chart_version=str(contracts["chart"]["version"]),
        release=str(contracts["chart"]["release"]),
        pods=tuple(pods),
        files=files,
        unread_values=tuple(values.unread()),
    )


# ---------------------------------------------------------------------------------------------
# Pod Security "restricted" and the podman arguments


def restricted_gaps(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    """What a pod/container security context pair lacks for Pod Security "restricted" plus a
    read-only root (the controls the issue asks of every container)."""

    def pick(key: str) -> Any:
        return container.get(key, pod.get(key))

    gaps = []
    if container.get("allowPrivilegeEscalation") is not False:
        gaps.append("allowPrivilegeEscalation is not false")
    if "ALL" not in (container.get("capabilities") or {}).get("drop", []):
        gaps.append("capabilities.drop lacks ALL")
    if set((container.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
        gaps.append("capabilities.add beyond NET_BIND_SERVICE")
    if pick("runAsNonRoot") is not True:
        gaps.append("runAsNonRoot is not true")
    if pick("runAsUser") == 0:
        gaps.append("runAsUser is 0")
    seccomp = (pick("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        gaps.append("seccompProfile is not RuntimeDefault")
    if container.get("privileged"):
        gaps.append("privileged")
    if container.get("readOnlyRootFilesystem") is not True:
        gaps.append("readOnlyRootFilesystem is not true")
    return gaps


@dataclass(frozen=True)
class RunIdentity:
    """Who the replay runs a container as: the rendered user unless overridden."""

    uid: int
    gid: int


def identity(
    pod: Mapping[str, Any], container: Mapping[str, Any], default_gid: int = 0
) -> RunIdentity:
    uid = container.get("runAsUser", pod.get("runAsUser"))
    gid = container.get("runAsGroup", pod.get("runAsGroup", default_gid))
    assert uid is not None, "the rendered security contexts name no runAsUser"
    return RunIdentity(int(uid), int(gid))


# Whatever the values say, the replay runs every container at least this hardened: the issue's
# "restricted, read-only" floor. Gaps in the values are reported by restricted_gaps.
FLOOR = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
)


def security_flags(
    pod: Mapping[str, Any], container: Mapping[str, Any], who: RunIdentity
) -> list[str]:
    flags = [*FLOOR, "--user", f"{who.uid}:{who.gid}"]
    fs_group = pod.get("fsGroup")
    if fs_group is not None and int(fs_group) != who.gid:
        flags += ["--group-add", str(fs_group)]
    for group in pod.get("supplementalGroups", []) or []:
        flags += ["--group-add", str(group)]
    for cap in (container.get("capabilities") or {}).get("add", []) or []:
        flags += ["--cap-add", str(cap)]
    return flags


@dataclass(frozen=True)
class PodVolumes:
    """How the replay backs one pod's volumes: emptyDirs are podman volumes (one per pod),
    the config map is a host directory of rendered files."""

    named: Mapping[str, str]  # pod volume name -> podman volume name
    config_dir: Path


def mount_flags(c: Container, volumes: PodVolumes) -> list[str]:
    flags: list[str] = []
    for m in c.mounts:
        if m.volume in volumes.named:
            if m.sub_path:
                raise AssertionError(f"{c.name}: subPath of an emptyDir is not replayed ({m})")
            # an emptyDir starts empty: no copy of the image's files at that path
            options = "ro,nocopy" if m.read_only else "nocopy"
            spec = f"{volumes.named[m.volume]}:{m.path}:{options}"
        elif m.volume == "config":
            source = volumes.config_dir / m.sub_path
            spec = f"{source}:{m.path}:ro"
        else:
            raise AssertionError(f"{c.name}: mount of an unknown volume {m.volume!r}")
        flags += ["--volume", spec]
    return flags


def container_argv(
    c: Container,
    *,
    name: str,
    pod: str,
    image: str,
    security: Sequence[str],
    volumes: PodVolumes,
    env_file: Path,
    detach: bool,
) -> list[str]:
    """``podman run`` arguments starting ``c`` as the kubelet would."""
    argv = [
        "run",
        "--name",
        name,
        "--pod",
        pod,
        "--pull=never",
        *security,
        *mount_flags(c, volumes),
        "--env-file",
        str(env_file),
    ]
    argv += ["--detach"] if detach else []
    if c.command is not None:
        argv += ["--entrypoint", json.dumps(list(c.command))]
    argv.append(image)
    if c.args is not None:
        argv += list(c.args)
    return argv


def env_lines(c: Container, secrets: Mapping[tuple[str, str], str]) -> list[str]:
    """NAME=VALUE lines of an env file (podman reads it literally); fails on a secret the
    replay was not given."""
    lines = []
    for e in c.env:
        if e.secret is not None:
            if e.secret not in secrets:
                raise AssertionError(
                    f"{c.name}: {e.name} reads Secret {e.secret[0]} key "
                    f"{e.secret[1]}, which the values do not provide"
                )
            value = secrets[e.secret]
        else:
            value = e.value or ""
        if "\n" in value:
            raise AssertionError(f"{c.name}: {e.name} has a newline; an env file cannot hold it")
        lines.append(f"{e.name}={value}")
    return lines
