"""What every rendered topology shares: images, roles, resources and the Airflow environment."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# The image contract's names, re-exported: compose, k8s and helm import them from here too.
from hardflow.contract import (
    AIRFLOW_HOME,
    API_PORT,
    CONFIG_DIR,
    DAGS_DIR,
    HEALTH_COMMAND,
    LOGS_DIR,
    local_reference,
)
from hardflow.deploy.oidc import OidcSettings
from hardflow.errors import HardflowError
from hardflow.spec import load_embedded

__all__ = [
    "AIRFLOW_CFG", "AIRFLOW_HOME", "AIRFLOW_ROLES", "API_PORT", "CONFIG_DIR", "CONFIG_FILE",
    "DAGS_DIR", "DEFAULT_LIMITS", "HEALTH_COMMAND", "LOGS_DIR", "PASSWORDS_FILE", "SECRETS_DIR",
    "WORKER_ROLE", "Images", "Limits", "Topology", "airflow_environment", "embedded_reference",
]  # fmt: skip

SECRETS_DIR = "/run/secrets"
CONFIG_FILE = f"{CONFIG_DIR}/airflow.cfg"
# SimpleAuthManager opens its passwords file for writing: the API server's entrypoint writes
# it from the admin password secret at every start, into its private /tmp.
PASSWORDS_FILE = "/tmp/simple_auth_manager_passwords.json"

# Long-running Airflow components (container command = the image entrypoint's role name).
AIRFLOW_ROLES = ("api-server", "scheduler", "dag-processor", "triggerer")
WORKER_ROLE = "celery-worker"


def embedded_reference(spec_name: str) -> str:
    """``localhost/NAME:TAG`` of an embedded spec: what ``hardflow build --load`` loads."""
    return local_reference(load_embedded(spec_name).reference)


def _embedded(spec_name: str) -> Callable[[], str]:
    return lambda: embedded_reference(spec_name)


@dataclass(frozen=True)
class Images:
    airflow: str
    postgres: str
    redis: str
    # the metrics services (``--metrics``): hardflow's own builds unless given
    prometheus: str = field(default_factory=_embedded("prometheus"))
    statsd_exporter: str = field(default_factory=_embedded("statsd-exporter"))

    @classmethod
    def default(cls) -> Images:
        return cls(
            airflow=embedded_reference("default"),
            postgres=embedded_reference("postgres"),
            redis=embedded_reference("redis"),
        )


@dataclass(frozen=True)
class Limits:
    """Per-container limits: memory (compose notation, e.g. "1g"), CPUs and PIDs."""

    memory: str
    cpus: float
    pids: int

    @property
    def memory_k8s(self) -> str:
        number, unit = re.fullmatch(r"(\d+)([kmg])", self.memory).groups()  # type: ignore[union-attr]
        return number + {"k": "Ki", "m": "Mi", "g": "Gi"}[unit]


DEFAULT_LIMITS: Mapping[str, Limits] = MappingProxyType(
    {
        "postgres": Limits("1g", 1.0, 256),
        "redis": Limits("256m", 0.5, 64),
        "airflow-init": Limits("1g", 1.0, 256),
        "api-server": Limits("2g", 1.0, 512),
        "scheduler": Limits("1g", 1.0, 512),
        "dag-processor": Limits("1g", 1.0, 512),
        "triggerer": Limits("1g", 0.5, 512),
        WORKER_ROLE: Limits("2g", 1.0, 1024),
        "airflow-worker": Limits("2g", 1.0, 1024),  # a KubernetesExecutor task pod
        "prometheus": Limits("1g", 0.5, 256),  # --metrics
        "statsd-exporter": Limits("128m", 0.25, 64),
    }
)


def _check_memory(value: str) -> None:
    if not re.fullmatch(r"\d+[kmg]", value):
        raise HardflowError(f"memory limit {value!r}: expected a number and k, m or g (e.g. 1g)")


@dataclass(frozen=True)
class Topology:
    """The choices a user makes about a deployment."""

    images: Images
    workers: int = 1
    project: str = "hardflow"
    admin_user: str = "admin"
    api_port: int = API_PORT  # host port (compose), bound to 127.0.0.1
    worker_concurrency: int = 4
    api_workers: int = 2
    dags_dir: str = ""  # host directory mounted read-only at /opt/airflow/dags (compose)
    limits: Mapping[str, Limits] = field(default_factory=lambda: DEFAULT_LIMITS)
    # --metrics: a StatsD exporter and Prometheus (hardflow.deploy.metrics); the host port of
    # Prometheus's UI and API (compose), bound to 127.0.0.1
    metrics: bool = False
    prometheus_port: int = 9090
    # --oidc-issuer ...: log in through OpenID Connect (hardflow.deploy.oidc), FAB auth manager
    oidc: OidcSettings | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise HardflowError(f"--workers must be from 1 to 64, found {self.workers}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,40}", self.project):
            raise HardflowError(
                f"project name {self.project!r}: expected lower-case letters, digits, '-' "
                "and '_' (at most 41 characters, starting with a letter or digit)"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", self.admin_user):
            raise HardflowError(f"admin user name {self.admin_user!r}: expected [A-Za-z0-9_.@-]")
        if not 1 <= self.api_port <= 65535:
            raise HardflowError(f"API port must be from 1 to 65535, found {self.api_port}")
        if not 1 <= self.prometheus_port <= 65535:
            raise HardflowError(
                f"Prometheus port must be from 1 to 65535, found {self.prometheus_port}"
            )
        if self.metrics and self.prometheus_port == self.api_port:
            raise HardflowError(
                f"the Prometheus port and the API port are both {self.api_port}: expected two "
                "different host ports"
            )
        for limits in self.limits.values():
            _check_memory(limits.memory)

    def limit(self, service: str) -> Limits:
        return self.limits.get(service) or DEFAULT_LIMITS[service]


def airflow_environment(top: Topology, executor: str, api_host: str) -> dict[str, str]:
    """Non-secret Airflow settings shared by every component (secrets go through ``*_FILE``)."""
    env = {
        "AIRFLOW_HOME": AIRFLOW_HOME,
        "AIRFLOW_CONFIG": CONFIG_FILE,
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_host}:{API_PORT}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{top.admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": PASSWORDS_FILE,
        "AIRFLOW__API__WORKERS": str(top.api_workers),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # A scheduler killed between queueing a task and handing it to the executor leaves it
        # 'queued' with no worker; the next scheduler resets it at its orphan check, every 300 s
        # by default. Every 60 s, a run survives a scheduler crash with about a minute's delay.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "60",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": LOGS_DIR,
        "AIRFLOW__CORE__DAGS_FOLDER": DAGS_DIR,
        "_AIRFLOW_WWW_USER_USERNAME": top.admin_user,
        "CONNECTION_CHECK_MAX_COUNT": "60",
        "CONNECTION_CHECK_SLEEP_TIME": "2",
        "HARDFLOW_HEALTH_API_URL": f"http://{api_host}:{API_PORT}",
    }
    if executor == "CeleryExecutor":
        env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(top.worker_concurrency)
    if top.oidc:  # the FAB auth manager (hardflow.deploy.oidc.airflow_env), not the simple one
        del env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
        del env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    return env


AIRFLOW_CFG = """\
# airflow.cfg of a hardflow topology. Every setting comes from the environment (AIRFLOW__*)
# and the secret files (AIRFLOW__*_FILE); this file exists so that Airflow does not try to write
# a default one into AIRFLOW_HOME, which is on the read-only root file system.
[core]
"""
