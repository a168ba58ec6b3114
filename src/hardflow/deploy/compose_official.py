"""``hardflow deploy compose --official-override``: the official docker-compose.yaml on our images.

The official Apache Airflow ``docker-compose.yaml`` (Airflow 3.3) is where many users start. It
assumes the official images: ``curl`` and ``CMD-SHELL`` health checks, an ``airflow-init`` that
runs ``/bin/bash`` with coreutils (``id``, ``getconf``, ``df``, ``awk``, ``numfmt``, ``mkdir``,
``chown``) as root, and PostgreSQL and Redis images from a registry. This module renders an
override file that compose merges over it (``docker-compose.override.yaml`` is picked up
automatically next to ``docker-compose.yaml``; or pass both with ``-f``), leaving the official
file as it is. For every service it sets:

- hardflow's image (Airflow, PostgreSQL or Redis);
- a read-only root, all capabilities dropped, ``no-new-privileges`` and a tmpfs ``/tmp``;
- an exec-form health check the image has (``hardflow-health ROLE``, ``pg_isready``,
  ``hardflow-redis-health``), since the images have no shell and no curl;
- for ``airflow-init``: the image's own entrypoint with ``airflow version`` (the official
  entrypoint's init pattern: with ``_AIRFLOW_DB_MIGRATE`` and ``_AIRFLOW_WWW_USER_CREATE`` set,
  as the official file sets them, the entrypoint migrates and creates the user first), run as
  the Airflow user instead of root (the chown it did is not needed: the image runs as any uid
  in group 0);
- PostgreSQL and Redis as their image's non-root users; Redis gets a data volume (its root is
  read-only) and accepts the official file's password-less broker URL.

The official file's credentials (``airflow``/``airflow``, an empty broker password) are kept:
it is a local development setup, as its own header says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardflow.contract import HEALTH_COMMAND
from hardflow.deploy import secrets as sec
from hardflow.deploy.topology import Images
from hardflow.deploy.yamlout import Tagged, dump
from hardflow.errors import HardflowError
from hardflow.fsutil import atomic_write
from hardflow.spec import load_embedded

Doc = dict[str, Any]
OVERRIDE_FILE = "docker-compose.override.yaml"
OFFICIAL_FILE = "docker-compose.yaml"
OFFICIAL_AIRFLOW = "3.3"
# the official file's Airflow services → the image's health role for each
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery",  # the worker retitles itself: checked as a live process
    "airflow-triggerer": "triggerer",
    "airflow-init": "airflow",
    "airflow-cli": "airflow",
    "flower": "celery-flower",
}
REDIS_VOLUME = "hardflow-redis-data"
PG_READY = ("/usr/lib/postgresql/17/bin/pg_isready", "--host=/tmp", "--quiet")


def _hardening(user: str, tmp_size: str) -> Doc:
    return {
        "user": user,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "tmpfs": [f"/tmp:rw,nosuid,nodev,size={tmp_size},mode=1777"],
    }


# the official services without a health check: their test is new, not an override (podman-compose
# 1.6 cannot write out an !override that has nothing to override)
NO_OFFICIAL_HEALTHCHECK = ("airflow-init", "airflow-cli")


def _health(*test: str, start_period: str = "60s", override: bool = True) -> Doc:
    argv = ["CMD", *test]
    return {
        "healthcheck": {
            # !override: replaced, not appended to the official test (compose appends lists)
            "test": Tagged("!override", argv) if override else argv,
            "interval": "30s",
            "timeout": "10s",
            "retries": 5,
            "start_period": start_period,
        }
    }


def render_official_override(images: Images) -> Doc:
    """The override document for the official Airflow 3.3 docker-compose.yaml."""
    services: Doc = {
        "postgres": {
            "image": images.postgres,
            **_hardening(f"{sec.POSTGRES_UID}:{sec.POSTGRES_GID}", "64m"),
            "shm_size": "128m",
            "stop_signal": "SIGINT",
            **_health(*PG_READY, start_period="30s"),
        },
        "redis": {
            "image": images.redis,
            **_hardening(f"{sec.REDIS_UID}:{sec.REDIS_GID}", "16m"),
            # the official broker URL has no password (redis://:@redis:6379/0)
            "environment": {"REDIS_ALLOW_EMPTY_PASSWORD": "yes"},
            "volumes": [f"{REDIS_VOLUME}:/data"],
            **_health("/usr/bin/bash", "/usr/local/bin/hardflow-redis-health", start_period="10s"),
        },
    }
    # "${AIRFLOW_UID:-50000}" is the official file's own variable, interpolated by compose
    airflow_user = "${AIRFLOW_UID:-" + str(sec.AIRFLOW_UID) + "}:" + str(sec.AIRFLOW_GID)
    for name, role in AIRFLOW_SERVICES.items():
        services[name] = {
            "image": images.airflow,
            **_hardening(airflow_user, "256m"),
            **_health(
                *HEALTH_COMMAND,
                role,
                start_period="120s",
                override=name not in NO_OFFICIAL_HEALTHCHECK,
            ),
        }
    init = services["airflow-init"]
    init["entrypoint"] = list(load_embedded("default").entrypoint)
    init["command"] = ["airflow", "version"]
    init["restart"] = "on-failure"
    return {"services": services, "volumes": {REDIS_VOLUME: {}}}


@dataclass(frozen=True)
class OfficialOverride:
    path: Path
    services: tuple[str, ...]
    uncovered: tuple[str, ...]  # services of a docker-compose.yaml beside it we do not override


HEADER = f"""\
Rendered by `hardflow deploy compose --official-override`: runs the official Apache Airflow
{OFFICIAL_AIRFLOW} docker-compose.yaml, unchanged, on hardflow's images. Keep this file beside it
(compose merges docker-compose.override.yaml by itself), or pass both:
  docker compose -f docker-compose.yaml -f docker-compose.override.yaml up -d
podman-compose on podman 4.3 cannot start a service that requires the exited airflow-init
(depends_on becomes --requires): start airflow-init first, the rest with --no-deps:
  podman-compose up -d airflow-init && podman wait PROJECT_airflow-init_1
  podman-compose up -d --no-deps airflow-apiserver airflow-scheduler airflow-dag-processor \\
      airflow-triggerer airflow-worker
AIRFLOW_UID (.env) must not be 0, and dags/, logs/, plugins/, config/ writable by group 0.
Every service: hardflow's image, read-only root, no capabilities, no-new-privileges, tmpfs /tmp
and a health check the image has (no curl, no shell); airflow-init runs the image's entrypoint
(migrate, create the user, airflow version) as the Airflow user. The official file's local
credentials stay: it is a development setup."""


def official_services(path: Path) -> list[str]:
    """The service names of a compose file (to tell which ones the override does not cover)."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise HardflowError(f"cannot read {path}: {exc}") from None
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict):
        raise HardflowError(f"{path}: expected a compose file with a 'services' mapping")
    return [str(name) for name in services]


def write_official_override(images: Images, out_dir: Path) -> OfficialOverride:
    if out_dir.exists() and not out_dir.is_dir():
        raise HardflowError(f"--out {out_dir}: expected a directory, found a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = render_official_override(images)
    path = out_dir / OVERRIDE_FILE
    atomic_write(path, dump(doc, HEADER).encode())
    official = out_dir / OFFICIAL_FILE
    uncovered: list[str] = []
    if official.is_file():
        uncovered = [s for s in official_services(official) if s not in doc["services"]]
    return OfficialOverride(path=path, services=tuple(doc["services"]), uncovered=tuple(uncovered))
