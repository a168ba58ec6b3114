"""End to end: the default image's entrypoint on a read-only root writes nothing at start.

The official chart's ``wait-for-airflow-migrations`` init containers run
``airflow db check-migrations`` through the image's entrypoint with no secret but the database
URL and Fernet key; the root file system is read-only and ``$AIRFLOW_HOME`` is not a volume.
The entrypoint must hand over to Airflow without trying to write a key anywhere. The
session's default image is reused (``loaded_image``); nothing here builds another copy.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from hardflow.run.engine import Engine
from helpers.loaded_images import LoadedImage
from helpers.podman import HARDENED

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

# A PostgreSQL URL nobody answers: the container's own loopback, port 1.
NO_DATABASE = "postgresql+psycopg2://airflow:not-a-secret@127.0.0.1:1/airflow"


@pytest.fixture
def container_name(podman: Engine) -> Iterator[str]:
    name = f"hardflow-parity-{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(["podman", "rm", "--force", "--ignore", name], capture_output=True, check=False)


def run_read_only(
    image: str, name: str, env: dict[str, str], argv: list[str]
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a hardened container with a read-only root and only a /tmp tmpfs (no
    volume at $AIRFLOW_HOME); the container is kept for ``podman diff``."""
    flags = [f"--env={key}={value}" for key, value in env.items()]
    cmd = [
        "podman", "run", "--name", name, "--pull=never", *HARDENED, "--user", "50000:0",
        "--tmpfs", "/tmp", "--network", "none", *flags, image, *argv,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_check_migrations_on_a_read_only_root_hands_over_without_writing(
    loaded_image: LoadedImage, container_name: str
) -> None:
    image = loaded_image("default")
    env = {
        "CONNECTION_CHECK_MAX_COUNT": "0",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": NO_DATABASE,
        "AIRFLOW__CORE__FERNET_KEY": "Y2hhcnQtZmVybmV0LWtleS1mb3ItdGhlLXRlc3QtMDA=",
    }
    argv = ["airflow", "db", "check-migrations", "--migration-wait-timeout=5"]
    done = run_read_only(image, container_name, env, argv)
    output = done.stdout + done.stderr
    # Airflow itself ran and failed on the missing database, not on the read-only root
    assert done.returncode != 0
    assert "hardflow-entrypoint: error" not in output, output
    assert "Read-only file system" not in output, output
    assert "port 1 failed: Connection refused" in output, output
    # no airflow.cfg written into the image (Airflow writes one when it is missing) ...
    assert "AIRFLOW_CONFIG=/dev/null" in output, output
    # ... and no key generated for the init container
    assert ".hardflow" not in output and "generated" not in output, output
    diff = subprocess.run(
        ["podman", "diff", container_name], capture_output=True, text=True, check=True
    )
    changed = [line.split(maxsplit=1)[-1] for line in diff.stdout.splitlines() if line.strip()]
    # podman itself mounts /etc/hosts and friends; nothing else may change
    assert all(path == "/etc" or path.startswith("/etc/") for path in changed), diff.stdout


def test_api_server_without_its_secrets_names_them(
    loaded_image: LoadedImage, container_name: str
) -> None:
    image = loaded_image("default")
    env = {"CONNECTION_CHECK_MAX_COUNT": "0", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": NO_DATABASE}
    done = run_read_only(image, container_name, env, ["api-server"])
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hardflow-entrypoint: error: api-server needs"), done.stderr
    for variable in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    ):
        assert variable in last
    assert "not writable" in last
