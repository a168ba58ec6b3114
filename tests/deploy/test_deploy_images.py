"""The hardflow PostgreSQL and Redis images under the hardened run settings."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from deploy_helpers import podman

from hardflow.deploy.secrets import POSTGRES_UID, REDIS_UID

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

HARDENED = (
    "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
)  # fmt: skip


def _secret(tmp_path: Path, value: str, uid: int) -> Path:
    import os

    path = tmp_path / f"secret-{uuid.uuid4().hex[:6]}"
    path.write_text(value)
    path.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
    return path


def test_postgres_needs_a_password_file(deploy_images: dict[str, str]) -> None:
    done = subprocess.run(
        ["podman", "run", "--rm", *HARDENED, deploy_images["postgres"]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD_FILE is not set" in done.stderr


def test_postgres_initialises_and_keeps_its_data(
    deploy_images: dict[str, str], tmp_path: Path
) -> None:
    name, volume = f"hfdpg-{uuid.uuid4().hex[:6]}", f"hfdpg-{uuid.uuid4().hex[:6]}"
    pw = _secret(tmp_path, "s3cret-value", POSTGRES_UID)
    run = [
        "run", "-d", "--name", name, *HARDENED, "-v", f"{volume}:/var/lib/postgresql",
        "-v", f"{pw}:/run/secrets/pw:ro", "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw",
        "-e", "POSTGRES_USER=airflow", "-e", "POSTGRES_DB=airflow", deploy_images["postgres"],
    ]  # fmt: skip
    try:
        podman(*run)
        _wait(name)
        assert podman("exec", name, "id", check=False) == ""  # no coreutils in the image
        sql = ["psql", "-h", "127.0.0.1", "-U", "airflow", "-d", "airflow", "-tAc"]
        env = ["-e", "PGPASSWORD=s3cret-value"]
        podman("exec", *env, name, *sql, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        bad = subprocess.run(
            ["podman", "exec", "-e", "PGPASSWORD=wrong", name, *sql, "SELECT 1"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert bad.returncode != 0 and "password authentication failed" in bad.stderr
        podman("rm", "-f", name)
        podman(*run)
        _wait(name)
        assert podman("exec", *env, name, *sql, "SELECT v FROM kept").strip() == "7"
        user = podman("inspect", name, "--format", "{{.Config.User}}").strip()
        assert user.split(":")[0] == str(POSTGRES_UID) and POSTGRES_UID >= 10000
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "volume", "rm", "-f", volume], capture_output=True)


def test_redis_requires_its_password(deploy_images: dict[str, str], tmp_path: Path) -> None:
    name = f"hfdredis-{uuid.uuid4().hex[:6]}"
    pw = _secret(tmp_path, "redis-pass-1", REDIS_UID)
    try:
        podman(
            "run", "-d", "--name", name, *HARDENED, "-v", f"{pw}:/run/secrets/pw:ro",
            "-v", f"{name}:/data",
            "-e", "REDIS_PASSWORD_FILE=/run/secrets/pw", deploy_images["redis"],
        )  # fmt: skip
        _wait(name, ["/usr/bin/bash", "/usr/local/bin/hardflow-redis-health"])
        anonymous = podman("exec", name, "redis-cli", "ping", check=False)
        assert "NOAUTH" in anonymous
        authed = podman("exec", "-e", "REDISCLI_AUTH=redis-pass-1", name, "redis-cli", "ping")
        assert authed.strip() == "PONG"
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "volume", "rm", "-f", name], capture_output=True)


def test_postgres_takes_the_official_password_variable(deploy_images: dict[str, str]) -> None:
    """The official docker-compose.yaml sets POSTGRES_PASSWORD: initdb reads it on stdin, the
    server does not keep it in its environment."""
    name = f"hfdpgenv-{uuid.uuid4().hex[:6]}"
    try:
        podman(
            "run", "-d", "--name", name, *HARDENED, "--user", f"{POSTGRES_UID}:{POSTGRES_UID}",
            "-v", f"{name}:/var/lib/postgresql/data", "-e", "POSTGRES_USER=airflow",
            "-e", "POSTGRES_PASSWORD=airflow", "-e", "POSTGRES_DB=airflow",
            deploy_images["postgres"],
        )  # fmt: skip
        _wait(name)
        sql = ["psql", "-h", "127.0.0.1", "-U", "airflow", "-d", "airflow", "-tAc", "SELECT 1"]
        assert podman("exec", "-e", "PGPASSWORD=airflow", name, *sql).strip() == "1"
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        assert "prefer POSTGRES_PASSWORD_FILE" in logs.stderr + logs.stdout
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "volume", "rm", "-f", name], capture_output=True)


def test_postgres_names_a_data_directory_of_another_user(deploy_images: dict[str, str]) -> None:
    """A data directory the running uid does not own (e.g. one initialised by the earlier image,
    uid 999) gets a message naming the uid and the chown, not PostgreSQL's crash loop."""
    volume = f"hfdpgold-{uuid.uuid4().hex[:6]}"
    try:
        done = subprocess.run(
            ["podman", "run", "--rm", *HARDENED, "--user", "999:999",
             "-v", f"{volume}:/var/lib/postgresql", "-e", "PGDATA=/var/lib/postgresql",
             deploy_images["postgres"]],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode != 0
        assert "is not owned by uid 999" in done.stderr and "chown" in done.stderr, done.stderr
    finally:
        subprocess.run(["podman", "volume", "rm", "-f", volume], capture_output=True)


def test_redis_allows_an_empty_password_only_when_asked(deploy_images: dict[str, str]) -> None:
    name = f"hfdredisopen-{uuid.uuid4().hex[:6]}"
    try:
        podman(
            "run", "-d", "--name", name, *HARDENED, "-v", f"{name}:/data",
            "-e", "REDIS_ALLOW_EMPTY_PASSWORD=yes", deploy_images["redis"],
        )  # fmt: skip
        _wait(name, ["/usr/bin/bash", "/usr/local/bin/hardflow-redis-health"])
        config = podman("exec", name, "redis-cli", "config", "get", "protected-mode")
        assert config.split() == ["protected-mode", "no"]
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "volume", "rm", "-f", name], capture_output=True)


def _wait(name: str, argv: list[str] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    args = ["healthcheck", "run", name] if argv is None else ["exec", name, *argv]
    while subprocess.run(["podman", *args], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, subprocess.run(
            ["podman", "logs", name], capture_output=True, text=True
        ).stderr[-2000:]
        time.sleep(1)
