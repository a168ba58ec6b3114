"""Secrets in the in-image entrypoint and health check: no password on a command line, no
provisioning secret in the environment Airflow inherits, file-given sensitive options handed to
Airflow as ``_CMD``, and no URL password in anything printed.

The entrypoint runs as a script, as in the image, against a fake Airflow: a dist-info that says
which version is installed, an ``airflow`` package whose CLI ``main`` records what it was given
(the FAB user launcher imports it), and an ``airflow`` executable on PATH (``db migrate`` and
the exec'd role). Every fake records its own ``/proc/self/cmdline`` - the argv anyone could read
with ``ps`` - and its environment.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

IMAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "image"
ENTRYPOINT = IMAGE_DIR / "entrypoint.py"
HEALTH = IMAGE_DIR / "health.py"
PASSWORD = "Adm1n-p@ss/w0rd:x"
DB_PASSWORD = "Db-S3cr3t-9f2c"

# What every fake records: where it was started from, its argv as the kernel shows it, and env.
RECORD = """
import getpass, json, os, sys
def record(kind, **extra):
    with open("/proc/self/cmdline", "rb") as handle:
        cmdline = [a.decode() for a in handle.read().split(b"\\0") if a]
    entry = {"kind": kind, "argv": sys.argv, "cmdline": cmdline, "env": dict(os.environ), **extra}
    with open(os.environ["FAKE_AIRFLOW_RECORD"], "a") as out:
        out.write(json.dumps(entry) + "\\n")
"""

FAKE_MAIN = (
    RECORD
    + """
def main():
    # like FAB's `users create` without --password: ask twice
    first = getpass.getpass("Password:")
    second = getpass.getpass("Repeat for confirmation:")
    record("cli-main", password=first, confirmed=first == second)
    return 0
"""
)

FAKE_EXECUTABLE = RECORD + '\nrecord("executable")\n'


def dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def fake_airflow(tmp_path: Path, version: str, fab: bool) -> dict[str, str]:
    """A site dir and a bin dir with the fakes; the base environment for the entrypoint."""
    site, bindir, home = tmp_path / "site", tmp_path / "bin", tmp_path / "home"
    for d in (site / "airflow", bindir, home):
        d.mkdir(parents=True)
    dist(site, "apache-airflow", version)
    if fab:
        dist(site, "apache-airflow-providers-fab", "1.5.4")
    (site / "airflow" / "__init__.py").write_text("")
    (site / "airflow" / "__main__.py").write_text(FAKE_MAIN)
    exe = bindir / "airflow"
    exe.write_text(f"#!{sys.executable}\n{FAKE_EXECUTABLE}")
    exe.chmod(0o755)
    return {
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(site),
        "AIRFLOW_HOME": str(home),
        "HARDFLOW_STATE_FILE": str(tmp_path / "role.json"),
        "HARDFLOW_ALLOW_ROOT": "true",
        "FAKE_AIRFLOW_RECORD": str(tmp_path / "record.jsonl"),
        "CONNECTION_CHECK_MAX_COUNT": "0",
    }


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value + "\n")
    return str(path)


def run_entrypoint(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def records(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def airflow_cmd_value(command: str) -> str:
    """What Airflow's ``run_command`` makes of a ``_CMD`` value: split, no shell, stdout."""
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, check=True)
    return done.stdout


# --------------------------------------------------------------------------------------------
# Airflow 2: FAB user, db migrate, webserver


@pytest.fixture
def airflow2_run(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    env = fake_airflow(tmp_path, "2.11.2", fab=True) | {
        "_AIRFLOW_WWW_USER_CREATE": "true",
        "_AIRFLOW_WWW_USER_USERNAME": "ops",
        "_AIRFLOW_WWW_USER_PASSWORD_FILE": secret_file(tmp_path, "admin", PASSWORD),
        "_AIRFLOW_DB_MIGRATE": "true",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_FILE": secret_file(
            tmp_path, "db", f"postgresql://airflow:{DB_PASSWORD}@db.invalid:5432/af"
        ),
        "AIRFLOW__WEBSERVER__SECRET_KEY_FILE": secret_file(tmp_path, "web", "web-key-1234"),
    }
    done = run_entrypoint(["webserver"], env)
    assert done.returncode == 0, done.stderr
    return done, records(tmp_path)


def test_airflow_2_every_process_started_has_no_password_in_its_argv(
    airflow2_run: tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]],
) -> None:
    done, seen = airflow2_run
    kinds = [(r["kind"], r["argv"][1:3]) for r in seen]
    assert kinds == [
        ("executable", ["db", "migrate"]),
        ("cli-main", ["users", "create"]),
        ("executable", ["webserver"]),
    ]
    for entry in seen:
        for secret in (PASSWORD, DB_PASSWORD):
            assert not any(secret in arg for arg in entry["cmdline"]), entry["cmdline"]
    assert PASSWORD not in done.stdout + done.stderr
    assert DB_PASSWORD not in done.stdout + done.stderr


def test_airflow_2_fab_user_gets_its_password_from_a_pipe(
    airflow2_run: tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]],
) -> None:
    _, seen = airflow2_run
    (cli,) = [r for r in seen if r["kind"] == "cli-main"]
    assert cli["password"] == PASSWORD and cli["confirmed"]
    argv = cli["argv"]
    assert argv[argv.index("--username") + 1] == "ops"
    assert "--password" not in argv and "-p" not in argv


def test_airflow_2_no_process_inherits_provisioning_secrets(
    airflow2_run: tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]],
) -> None:
    _, seen = airflow2_run
    for entry in seen:
        env: dict[str, str] = entry["env"]
        assert not [k for k in env if k.startswith("_AIRFLOW_WWW_USER_")], entry["kind"]
        assert not any(PASSWORD in v for v in env.values()), entry["kind"]
        # the file-given DB URL and webserver key are commands that read the file, not values
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
        assert not any(DB_PASSWORD in v for v in env.values()), entry["kind"]
        assert "AIRFLOW__WEBSERVER__SECRET_KEY" not in env
    handed = seen[-1]["env"]
    assert airflow_cmd_value(handed["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]) == (
        f"postgresql://airflow:{DB_PASSWORD}@db.invalid:5432/af"
    )
    assert airflow_cmd_value(handed["AIRFLOW__WEBSERVER__SECRET_KEY_CMD"]) == "web-key-1234"


# --------------------------------------------------------------------------------------------
# Airflow 3: SimpleAuthManager, api-server


def test_airflow_3_environment_handed_to_airflow(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path, "3.3.2", fab=False) | {
        "_AIRFLOW_WWW_USER_CREATE": "true",
        "_AIRFLOW_WWW_USER_PASSWORD_FILE": secret_file(tmp_path, "admin", PASSWORD),
        "_AIRFLOW_WWW_USER_EMAIL": "ops@example.org",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_FILE": secret_file(
            tmp_path, "db", f"postgresql://airflow:{DB_PASSWORD}@db.invalid/af"
        ),
        "AIRFLOW__API_AUTH__JWT_SECRET_FILE": secret_file(tmp_path, "jwt", "jwt $HOME ~ x"),
        # not sensitive in Airflow's core config: exported as a value (module docstring)
        "AIRFLOW__CORE__PARALLELISM_FILE": secret_file(tmp_path, "par", "7"),
        "AIRFLOW__CELERY__BROKER_URL_FILE": secret_file(tmp_path, "broker", "redis://r:6379/0"),
    }
    done = run_entrypoint(["api-server"], env)
    assert done.returncode == 0, done.stderr
    (handed,) = records(tmp_path)
    assert handed["argv"][1:] == ["api-server"]
    env_seen: dict[str, str] = handed["env"]
    assert not [k for k in env_seen if k.startswith("_AIRFLOW_WWW_USER_")]
    assert not any(PASSWORD in v or DB_PASSWORD in v for v in env_seen.values())
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env_seen
    assert "AIRFLOW__API_AUTH__JWT_SECRET" not in env_seen
    conn = airflow_cmd_value(env_seen["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"])
    assert conn == f"postgresql://airflow:{DB_PASSWORD}@db.invalid/af"
    # taken literally: no $VAR or ~ expansion, no trailing newline
    assert airflow_cmd_value(env_seen["AIRFLOW__API_AUTH__JWT_SECRET_CMD"]) == "jwt $HOME ~ x"
    assert env_seen["AIRFLOW__CORE__PARALLELISM"] == "7"
    assert env_seen["AIRFLOW__CELERY__BROKER_URL"] == "redis://r:6379/0"
    # provisioning still happened: the given password is in SimpleAuthManager's file
    stored = json.loads(
        (tmp_path / "home" / "simple_auth_manager_passwords.json.generated").read_text()
    )
    assert stored == {"admin": PASSWORD}
    assert env_seen["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"


def test_file_and_cmd_for_the_same_option_is_an_error(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path, "3.3.2", fab=False) | {
        "AIRFLOW__CORE__FERNET_KEY_FILE": secret_file(tmp_path, "fernet", "k"),
        "AIRFLOW__CORE__FERNET_KEY_CMD": "echo other",
    }
    done = run_entrypoint(["version"], env)
    assert done.returncode == 1
    assert "both AIRFLOW__CORE__FERNET_KEY_CMD and AIRFLOW__CORE__FERNET_KEY_FILE" in done.stderr
    assert records(tmp_path) == []


def test_unreadable_secret_file_fails_the_cmd_without_its_content(
    ep: ModuleType, tmp_path: Path
) -> None:
    command = ep.file_command(str(tmp_path / "gone"))
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "cannot read" in done.stderr and "FileNotFoundError" in done.stderr
    assert "Traceback" not in done.stderr


def test_handover_changes_are_pure_and_per_version(ep: ModuleType) -> None:
    env = {
        "_AIRFLOW_WWW_USER_PASSWORD_CMD": "cat /run/pw",
        "_AIRFLOW_WWW_USER_ROLE": "Admin",
        "_AIRFLOW_DB_MIGRATE": "true",
        "AIRFLOW__SMTP__SMTP_PASSWORD_FILE": "/run/smtp",
        "AIRFLOW__SMTP__SMTP_PASSWORD": "mail-pw",
    }
    expanded = {"AIRFLOW__SMTP__SMTP_PASSWORD": "mail-pw"}
    sets2, removes2 = ep.handover_changes(env, expanded, 2)
    assert set(sets2) == {"AIRFLOW__SMTP__SMTP_PASSWORD_CMD"}  # sensitive in Airflow 2's core
    assert removes2 == {
        "_AIRFLOW_WWW_USER_PASSWORD_CMD", "_AIRFLOW_WWW_USER_ROLE", "AIRFLOW__SMTP__SMTP_PASSWORD",
    }  # fmt: skip
    sets3, removes3 = ep.handover_changes(env, expanded, 3)
    assert sets3 == {}  # a provider option on Airflow 3: exported as its value
    assert "AIRFLOW__SMTP__SMTP_PASSWORD" not in removes3
    assert "_AIRFLOW_DB_MIGRATE" not in removes3  # a flag, not a secret
    assert ep.option_of("AIRFLOW__API_AUTH__JWT_SECRET") == ("api_auth", "jwt_secret")
    assert ep.option_of("AIRFLOW__X") is None


# --------------------------------------------------------------------------------------------
# URLs in messages


def test_malformed_database_url_error_does_not_echo_the_password(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path, "3.3.2", fab=False) | {
        # no '@': the "host:port" the parser sees is really "user:password"
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql://airflow:{DB_PASSWORD}/airflow",
        "CONNECTION_CHECK_MAX_COUNT": "1",
    }
    done = run_entrypoint(["scheduler"], env)
    assert done.returncode == 1
    assert "metadata database" in done.stderr and "port" in done.stderr
    assert DB_PASSWORD not in done.stdout + done.stderr
    assert records(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("x postgresql://u:pw@h:5432/db y", "x postgresql://u:***@h:5432/db y"),
        ("'redis://:pw@redis:6379/0'", "'redis://:***@redis:6379/0'"),
        ("mysql://u:p@ss/w0rd@h/db", "mysql://u:***@h/db"),
        ("http://user@host/x", "http://user@host/x"),
        ("no url here: a:b@c", "no url here: a:b@c"),
    ],
)
def test_redaction_is_the_same_in_both_scripts(
    ep: ModuleType, health: ModuleType, text: str, shown: str
) -> None:
    from hardflow.run.redact import redact_userinfo

    assert ep.redact_userinfo(text) == shown
    assert health.redact_userinfo(text) == shown
    assert redact_userinfo(text) == shown


def test_entrypoint_log_redacts_urls(ep: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    ep.log(f"cannot use postgresql://airflow:{DB_PASSWORD}@db/af")
    err = capsys.readouterr().err
    assert DB_PASSWORD not in err and "postgresql://airflow:***@db/af" in err


@pytest.mark.parametrize("port_text", ["{port}", "notaport"])
def test_health_output_hides_a_url_password(tmp_path: Path, port_text: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://probe:{DB_PASSWORD}@127.0.0.1:{port_text.format(port=port)}/health"
    state = tmp_path / "role.json"
    state.write_text(json.dumps({"role": "scheduler", "scheduler_health_url": url}))
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(HEALTH)],
        env={"HARDFLOW_STATE_FILE": str(state), "HARDFLOW_HEALTH_TIMEOUT": "2"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: GET http://probe:***@127.0.0.1:")
    assert DB_PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
