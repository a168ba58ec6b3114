"""The image contract in one place: what every hardflow Airflow image provides and promises.

The runner, the deployments, the DAG checker and the bench all talk to the image through these
names; the in-image scripts (``hardflow/image/``, stdlib only, they cannot import this module)
hold the same values, and ``tests/test_contract.py`` checks that the two agree.
"""

from __future__ import annotations

AIRFLOW_HOME = "/opt/airflow"
"""The only writable place in the image besides ``/tmp`` (a volume in production)."""
DAGS_DIR = f"{AIRFLOW_HOME}/dags"
LOGS_DIR = f"{AIRFLOW_HOME}/logs"
PLUGINS_DIR = f"{AIRFLOW_HOME}/plugins"
CONFIG_DIR = f"{AIRFLOW_HOME}/config"
STATE_DIR = f"{AIRFLOW_HOME}/.hardflow"
"""Where the entrypoint keeps generated keys and the admin password (mode 0600)."""

API_PORT = 8080
"""The port the API server (webserver on Airflow 2) listens on inside the container."""

USER_UID = 50000
USER_GID = 0

HEALTH_COMMAND: tuple[str, ...] = ("/usr/local/bin/hardflow-health",)
"""Exec-form health command; a role name may follow (``scheduler``, ``api-server`` ...)."""

ENGINE_STORAGE_PREFIX = "localhost/"


def local_reference(reference: str) -> str:
    """The name ``podman load`` gives an image built as ``NAME:TAG``: ``localhost/NAME:TAG``."""
    if reference.startswith(ENGINE_STORAGE_PREFIX):
        return reference
    return f"{ENGINE_STORAGE_PREFIX}{reference}"
