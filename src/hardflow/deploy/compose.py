"""``hardflow deploy compose``: a hardened compose project (PostgreSQL, Redis, Celery workers).

Pure part: :func:`render_compose` turns a :class:`Topology` into the compose document. The shell
(:func:`write_compose_project`) writes it with the generated secret files and the airflow.cfg.
The same file runs with ``docker compose`` and ``podman-compose``: only keys both implement are
used (``deploy.resources.limits`` for memory, CPUs and PIDs; long-form ``depends_on``; file
secrets; exec-form health checks, since the images have no /bin/sh).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hardflow.contract import API_PORT, DAGS_DIR, HEALTH_COMMAND, LOGS_DIR
from hardflow.deploy import metrics as met
from hardflow.deploy import oidc
from hardflow.deploy import secrets as sec
from hardflow.deploy.topology import (
    AIRFLOW_CFG,
    AIRFLOW_ROLES,
    CONFIG_FILE,
    SECRETS_DIR,
    WORKER_ROLE,
    Topology,
    airflow_environment,
)
from hardflow.deploy.yamlout import dump
from hardflow.errors import HardflowError
from hardflow.fsutil import atomic_write

COMPOSE_FILE = "compose.yaml"
SECRETS_SUBDIR = "secrets"
CONFIG_SUBDIR = "config"
AIRFLOW_SECRETS = tuple(sec.AIRFLOW_FILE_VARIABLES.values())
OIDC_SECRET_PATH = f"{SECRETS_DIR}/{oidc.SECRET_NAME}"


def worker_names(top: Topology) -> list[str]:
    return [f"{WORKER_ROLE}-{i}" for i in range(1, top.workers + 1)]


def service_names(top: Topology) -> list[str]:
    extra = [met.EXPORTER, met.PROMETHEUS] if top.metrics else []
    return ["postgres", "redis", *extra, "airflow-init", *AIRFLOW_ROLES, *worker_names(top)]


def _hardening(user: str, tmp_size: str) -> dict[str, object]:
    return {
        "user": user,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "tmpfs": [f"/tmp:rw,nosuid,nodev,size={tmp_size},mode=1777"],
    }


def _limits(top: Topology, kind: str) -> dict[str, object]:
    lim = top.limit(kind)
    return {
        "deploy": {
            "resources": {
                "limits": {"cpus": f"{lim.cpus:g}", "memory": lim.memory, "pids": lim.pids}
            }
        }
    }


def _health(test: tuple[str, ...], start_period: str, interval: str = "30s") -> dict[str, object]:
    return {
        "healthcheck": {
            "test": ["CMD", *test],
            "interval": interval,
            "timeout": "10s",
            "retries": 5,
            "start_period": start_period,
        }
    }


def _postgres(top: Topology) -> dict[str, object]:
    ep = sec.Endpoints()
    return {
        "image": top.images.postgres,
        **_hardening(f"{sec.POSTGRES_UID}:{sec.POSTGRES_GID}", "64m"),
        "environment": {
            "POSTGRES_USER": ep.db_user,
            "POSTGRES_DB": ep.database,
            "POSTGRES_PASSWORD_FILE": f"{SECRETS_DIR}/postgres_password",
        },
        "secrets": ["postgres_password"],
        "volumes": ["postgres-data:/var/lib/postgresql"],
        "shm_size": "128m",
        "stop_signal": "SIGINT",
        "stop_grace_period": "60s",
        **_health(
            ("/usr/lib/postgresql/17/bin/pg_isready", "--host=/tmp", "--quiet"), "30s", "10s"
        ),
        "restart": "unless-stopped",
        **_limits(top, "postgres"),
    }


def _redis(top: Topology) -> dict[str, object]:
    return {
        "image": top.images.redis,
        **_hardening(f"{sec.REDIS_UID}:{sec.REDIS_GID}", "16m"),
        "environment": {"REDIS_PASSWORD_FILE": f"{SECRETS_DIR}/redis_password"},
        "secrets": ["redis_password"],
        "volumes": ["redis-data:/data"],
        **_health(("/usr/bin/bash", "/usr/local/bin/hardflow-redis-health"), "10s", "10s"),
        "restart": "unless-stopped",
        **_limits(top, "redis"),
    }


def _statsd_exporter(top: Topology) -> dict[str, object]:
    return {
        "image": top.images.statsd_exporter,
        **_hardening(f"{met.EXPORTER_UID}:{met.EXPORTER_GID}", "16m"),
        **_health(met.EXPORTER_HEALTH, "10s", "15s"),
        "restart": "unless-stopped",
        **_limits(top, met.EXPORTER),
    }


def _prometheus(top: Topology) -> dict[str, object]:
    config = f"./{CONFIG_SUBDIR}/{met.PROMETHEUS_CONFIG_NAME}:{met.PROMETHEUS_CONFIG}:ro"
    return {
        "image": top.images.prometheus,
        **_hardening(f"{met.PROMETHEUS_UID}:{met.PROMETHEUS_GID}", "16m"),
        "command": met.prometheus_args(),
        "volumes": ["prometheus-data:/prometheus", config],
        "ports": [f"127.0.0.1:{top.prometheus_port}:{met.PROMETHEUS_PORT}"],
        "stop_grace_period": "60s",  # the TSDB head is written out on a clean stop
        **_health(met.PROMETHEUS_HEALTH, "30s", "15s"),
        "restart": "unless-stopped",
        **_limits(top, met.PROMETHEUS),
    }


def _airflow(top: Topology, kind: str, command: list[str], health_role: str) -> dict[str, object]:
    env = airflow_environment(top, "CeleryExecutor", "api-server")
    if top.metrics:
        env.update(met.airflow_env(met.EXPORTER))
        env["AIRFLOW__METRICS__STATSD_CUSTOM_CLIENT_PATH"] = met.STATSD_CLIENT_CLASS
    env.update({var: f"{SECRETS_DIR}/{name}" for var, name in sec.AIRFLOW_FILE_VARIABLES.items()})
    # Every component brings the schema to head before it starts, under Airflow's migration
    # lock: on a current schema this is a quick no-op, on a new one the first container migrates
    # while the others wait on the lock. This is the ordering depends_on would give (see below).
    env["_AIRFLOW_DB_MIGRATE"] = "true"
    volumes = [f"airflow-logs:{LOGS_DIR}", f"./{CONFIG_SUBDIR}/airflow.cfg:{CONFIG_FILE}:ro"]
    if top.metrics:
        volumes.append(f"./{CONFIG_SUBDIR}/{met.STATSD_CLIENT_NAME}:{met.STATSD_CLIENT_PATH}:ro")
    if top.dags_dir:
        volumes.append(f"{top.dags_dir}:{DAGS_DIR}:ro")
    secrets = list(AIRFLOW_SECRETS)
    if top.oidc:
        # the FAB auth manager everywhere; the client secret for the API server alone (the one
        # component that logs users in)
        login = kind == "api-server"
        env.update(oidc.airflow_env(oidc.CONFIG_PATH, OIDC_SECRET_PATH if login else None))
        volumes.append(f"./{CONFIG_SUBDIR}/{oidc.CONFIG_NAME}:{oidc.CONFIG_PATH}:ro")
        if login:
            secrets.append(oidc.SECRET_NAME)
    return {
        "image": top.images.airflow,
        **_hardening(f"{sec.AIRFLOW_UID}:{sec.AIRFLOW_GID}", "256m"),
        "command": command,
        "environment": env,
        "secrets": secrets,
        "volumes": volumes,
        **_health((*HEALTH_COMMAND, health_role), "120s"),
        "restart": "unless-stopped",
        **_limits(top, kind),
    }


# Health check roles (an argument is always given: podman 4.3 turns a one-element exec-form
# test into CMD-SHELL, and the images have no /bin/sh). The Celery worker retitles its process
# ("[celeryd: ...]"), so the image's celery-worker marker check cannot match it: "celery" is
# checked as a plain live process.
HEALTH_ROLES = {
    "airflow-init": "airflow",
    "api-server": "api-server",
    "scheduler": "scheduler",
    "dag-processor": "dag-processor",
    "triggerer": "triggerer",
    WORKER_ROLE: "celery",
}


def render_compose(top: Topology) -> dict[str, object]:
    """The compose document of ``top`` (a plain dict, ready for :func:`yamlout.dump`).

    No service has ``depends_on``: podman-compose turns it into ``podman --requires``, and
    podman (4.3) then never applies the restart policy to the dependent container (a SIGKILLed
    scheduler stays down), nor can it start a dependent of an exited one-shot job. The order
    comes from the containers instead: the Airflow entrypoint waits for the database and the
    broker (CONNECTION_CHECK_*) and migrates under Airflow's lock before it starts the component.
    """
    services: dict[str, object] = {
        "postgres": _postgres(top),
        "redis": _redis(top),
    }
    volumes: dict[str, object] = {"postgres-data": {}, "redis-data": {}, "airflow-logs": {}}
    if top.metrics:
        services[met.EXPORTER] = _statsd_exporter(top)
        services[met.PROMETHEUS] = _prometheus(top)
        volumes["prometheus-data"] = {}
    init = _airflow(top, "airflow-init", ["airflow", "db", "check-migrations"], "airflow")
    init["environment"]["_AIRFLOW_WWW_USER_CREATE"] = "true"  # type: ignore[index]
    # a one-shot job: retried when the database was not ready yet, never restarted after success
    init["restart"] = "on-failure:5"
    services["airflow-init"] = init
    for role in AIRFLOW_ROLES:
        svc = _airflow(top, role, [role], HEALTH_ROLES[role])
        if role == "api-server":
            # SimpleAuthManager's users file lives in the API server's private /tmp, written by
            # its entrypoint from the admin password secret at every start.
            svc["environment"]["_AIRFLOW_WWW_USER_CREATE"] = "true"  # type: ignore[index]
            svc["ports"] = [f"127.0.0.1:{top.api_port}:{API_PORT}"]
        services[role] = svc
    for name in worker_names(top):
        svc = _airflow(top, WORKER_ROLE, [WORKER_ROLE], HEALTH_ROLES[WORKER_ROLE])
        svc["hostname"] = name  # task logs are served from, and named after, this host
        svc["stop_grace_period"] = "120s"  # Celery's warm shutdown lets running tasks finish
        services[name] = svc
    secret_names = ["postgres_password", "redis_password", *AIRFLOW_SECRETS]
    if top.oidc:
        secret_names.append(oidc.SECRET_NAME)
    return {
        "name": top.project,
        "services": services,
        "volumes": volumes,
        "secrets": {name: {"file": f"./{SECRETS_SUBDIR}/{name}"} for name in secret_names},
    }


@dataclass(frozen=True)
class ComposeProject:
    directory: Path
    compose_file: Path
    secret_files: tuple[Path, ...]
    services: tuple[str, ...]
    secrets_reused: bool  # every credential kept from an earlier render (none made anew)
    secrets_owned: bool  # each secret file chowned to the user id that reads it
    secret_status: sec.SecretsOutcome = field(default_factory=sec.SecretsOutcome)

    @property
    def secrets_note(self) -> str:
        """Which secrets were kept and which were made anew, and why."""
        return self.secret_status.summary()


HEADER = """\
Rendered by `hardflow deploy compose`. Start with `docker compose up -d` or `podman-compose up -d`.
Every container: read-only root, no capabilities, no-new-privileges, non-root, tmpfs /tmp,
health check, restart policy, memory/CPU/PIDs limits; only the API server (and, with --metrics,
Prometheus) publishes a port, on 127.0.0.1. Secrets are the files in ./secrets (mode 0600), read
through *_FILE variables."""


def write_compose_project(
    top: Topology, out_dir: Path, *, chown: bool | None = None
) -> ComposeProject:
    """Render into ``out_dir``: compose.yaml, config/airflow.cfg and secrets/ (kept if present)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise HardflowError(f"--out {out_dir}: expected a directory, found a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir = out_dir / SECRETS_SUBDIR
    found = sec.scan_existing(secrets_dir) if secrets_dir.is_dir() else {}
    creds, status = sec.reuse_credentials(found, source=f"{secrets_dir}/")
    files = sec.secret_files(creds, sec.Endpoints())
    if top.oidc:
        files += (oidc_secret_file(top.oidc),)
    written = sec.write_secret_files(secrets_dir, files, chown=chown)
    config_dir = out_dir / CONFIG_SUBDIR
    config_dir.mkdir(exist_ok=True)
    atomic_write(config_dir / "airflow.cfg", AIRFLOW_CFG.encode())
    (config_dir / "airflow.cfg").chmod(0o644)
    if top.oidc:
        text = oidc.render_webserver_config(top.oidc)
        atomic_write(config_dir / oidc.CONFIG_NAME, text.encode(), 0o644)
    if top.metrics:
        prometheus_yml = config_dir / met.PROMETHEUS_CONFIG_NAME
        atomic_write(prometheus_yml, met.prometheus_config_text(met.EXPORTER).encode(), 0o644)
        atomic_write(config_dir / met.STATSD_CLIENT_NAME, met.statsd_client_source(), 0o644)
    compose_file = out_dir / COMPOSE_FILE
    atomic_write(compose_file, dump(render_compose(top), HEADER).encode())
    return ComposeProject(
        directory=out_dir,
        compose_file=compose_file,
        secret_files=tuple(written),
        services=tuple(service_names(top)),
        secrets_reused=status.all_kept,
        secrets_owned=chown if chown is not None else _is_root(),
        secret_status=status,
    )


def oidc_secret_file(settings: oidc.OidcSettings) -> sec.SecretFile:
    """The client secret, copied from --oidc-client-secret-file into the deployment's secrets."""
    value = oidc.read_client_secret(settings.client_secret_file)
    return sec.SecretFile(oidc.SECRET_NAME, value, sec.AIRFLOW)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0
