"""Unit tests of the in-image entrypoint (src/hardflow/image/entrypoint.py)."""

from __future__ import annotations

import base64
import configparser
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "image" / "entrypoint.py"
PASSWORD = "S3cr3t-p@ss/w0rd"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def empty_cfg() -> configparser.ConfigParser:
    return configparser.ConfigParser(interpolation=None)


# ---------------------------------------------------------------- command line → plan


@pytest.mark.parametrize(
    ("args", "role", "argv_tail", "wait_db"),
    [
        (["api-server"], "api-server", ("airflow", "api-server"), True),
        (["scheduler", "-n", "5"], "scheduler", ("airflow", "scheduler", "-n", "5"), True),
        (["dag-processor"], "dag-processor", ("airflow", "dag-processor"), True),
        (["triggerer"], "triggerer", ("airflow", "triggerer"), True),
        (["celery-worker"], "celery-worker", ("airflow", "celery", "worker"), True),
        (["celery-flower"], "celery-flower", ("airflow", "celery", "flower"), True),
        (["airflow", "celery", "worker"], "celery-worker", ("airflow", "celery", "worker"), True),
        (["airflow", "scheduler"], "scheduler", ("airflow", "scheduler"), True),
        (["airflow", "version"], "airflow", ("airflow", "version"), False),
        (["version"], "airflow", ("airflow", "version"), False),
        (["db", "migrate"], "airflow", ("airflow", "db", "migrate"), True),
        (["dags", "list", "--help"], "airflow", ("airflow", "dags", "list", "--help"), False),
        # bash and python wait for the database first, as in the official image
        (["bash", "-c", "echo hi"], "exec", ("bash", "-c", "echo hi"), True),
        (["python", "-V"], "exec", ("python", "-V"), True),
        (["/usr/bin/bash"], "exec", ("/usr/bin/bash",), False),
        (["/clean-logs"], "exec", ("/clean-logs",), False),
    ],
)
def test_plan_maps_roles_to_argv(
    ep: ModuleType, args: list[str], role: str, argv_tail: tuple[str, ...], wait_db: bool
) -> None:
    plan = ep.plan_command(args, {})
    assert plan.role == role
    assert plan.argv == argv_tail
    assert plan.wait_database is wait_db


def test_plan_standalone_runs_the_fork_server_launcher(ep: ModuleType) -> None:
    plan = ep.plan_command(["standalone"], {})
    assert plan.role == "standalone"
    assert plan.argv[1] == "-P"
    assert Path(plan.argv[2]).name == "standalone.py" and Path(plan.argv[2]).is_file()
    assert plan.argv[3:] == ("standalone",)
    assert plan.wait_database and not plan.wait_broker


def test_standalone_without_the_launcher_file_uses_the_inline_one(
    ep: ModuleType, tmp_path: Path
) -> None:
    argv = ep.standalone_argv(("standalone",), str(tmp_path))
    assert argv[1:3] == ("-P", "-c")
    assert "signal.SIGTERM" in argv[3] and "KeyboardInterrupt" in argv[3]
    assert argv[4:] == ("standalone",)


def test_plan_waits_for_broker_only_for_celery(ep: ModuleType) -> None:
    assert ep.plan_command(["celery-worker"], {}).wait_broker
    assert ep.plan_command(["celery-flower"], {}).wait_broker
    assert not ep.plan_command(["scheduler"], {}).wait_broker
    celery = {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}
    assert ep.plan_command(["scheduler"], celery).wait_broker
    assert not ep.plan_command(["api-server"], celery).wait_broker


def test_plan_reads_api_port_from_arguments(ep: ModuleType) -> None:
    assert ep.plan_command(["api-server", "--port", "9090"], {}).api_port == 9090
    assert ep.plan_command(["api-server", "--port=9091"], {}).api_port == 9091
    assert ep.plan_command(["api-server", "-p", "9092"], {}).api_port == 9092
    with pytest.raises(ep.EntrypointError, match="--port"):
        ep.plan_command(["api-server", "-p", "x"], {})


def test_plan_without_command_is_an_error(ep: ModuleType) -> None:
    with pytest.raises(ep.EntrypointError, match="no command"):
        ep.plan_command([], {})


# ---------------------------------------------------------------- *_FILE indirection


def test_file_variables_expand_and_strip_one_trailing_newline(
    ep: ModuleType, tmp_path: Path
) -> None:
    conn = tmp_path / "conn"
    conn.write_text("postgresql://u:p@db/airflow\n")
    password = tmp_path / "pw"
    password.write_text(" two words \n\n")
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_FILE": str(conn),
        "_AIRFLOW_WWW_USER_PASSWORD_FILE": str(password),
        "UNRELATED_FILE": str(conn),
    }
    assert ep.expand_file_variables(env) == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:p@db/airflow",
        "_AIRFLOW_WWW_USER_PASSWORD": " two words ",
    }


def test_file_variables_leave_real_file_options_alone(ep: ModuleType, tmp_path: Path) -> None:
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "missing.json"),
        "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": "/opt/airflow/pod.yaml",
    }
    assert ep.expand_file_variables(env) == {}


def test_file_variable_and_plain_variable_conflict(ep: ModuleType, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("x")
    env = {"AIRFLOW__CORE__FERNET_KEY": "a", "AIRFLOW__CORE__FERNET_KEY_FILE": str(key)}
    with pytest.raises(ep.EntrypointError, match="both AIRFLOW__CORE__FERNET_KEY and"):
        ep.expand_file_variables(env)


def test_missing_file_names_variable_and_path(ep: ModuleType, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ep.EntrypointError) as info:
        ep.expand_file_variables({"AIRFLOW__API__SECRET_KEY_FILE": str(missing)})
    assert "AIRFLOW__API__SECRET_KEY_FILE" in str(info.value)
    assert str(missing) in str(info.value)


def test_cmd_variables_run_without_shell(ep: ModuleType) -> None:
    cmd = f"{sys.executable} -c 'print(\"from-cmd\")'"
    assert ep.resolve_value({"X_CMD": cmd}, "X") == "from-cmd"
    assert ep.resolve_value({"X": "plain", "X_CMD": cmd}, "X") == "plain"
    assert ep.resolve_value({}, "X") is None


def test_failing_cmd_does_not_print_its_output(ep: ModuleType) -> None:
    cmd = f"{sys.executable} -c 'import sys; print(\"{PASSWORD}\"); sys.exit(3)'"
    with pytest.raises(ep.EntrypointError) as info:
        ep.resolve_value({"X_CMD": cmd}, "X")
    assert "status 3" in str(info.value)
    assert PASSWORD not in str(info.value)


# ---------------------------------------------------------------- secrets


def test_fernet_key_format(ep: ModuleType) -> None:
    key = ep.fernet_key()
    assert len(base64.urlsafe_b64decode(key.encode())) == 32
    assert key != ep.fernet_key()


def test_secrets_generated_once_mode_0600_and_reused(ep: ModuleType, tmp_path: Path) -> None:
    first = ep.secret_env({}, empty_cfg(), str(tmp_path))
    assert set(first) == {
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    }
    assert len(set(first.values())) == 3
    state = tmp_path / ".hardflow"
    for name in ("fernet_key", "api_secret_key", "jwt_secret"):
        assert mode(state / name) == 0o600
    second = ep.secret_env({}, empty_cfg(), str(tmp_path))
    assert second == first


def test_stored_secrets_win_over_airflow_generated_cfg(ep: ModuleType, tmp_path: Path) -> None:
    first = ep.secret_env({}, empty_cfg(), str(tmp_path))
    cfg = empty_cfg()
    cfg.read_string("[api]\nsecret_key = written-by-airflow\n[core]\nfernet_key =\n")
    assert ep.secret_env({}, cfg, str(tmp_path)) == first


def test_secrets_given_by_user_are_not_generated(ep: ModuleType, tmp_path: Path) -> None:
    env = {
        "AIRFLOW__CORE__FERNET_KEY": "given",
        "AIRFLOW__API__SECRET_KEY_CMD": "cat /run/secret",
        "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH": "/keys/jwt.pem",
    }
    assert ep.secret_env(env, empty_cfg(), str(tmp_path)) == {}
    assert not (tmp_path / ".hardflow").exists()


def test_secrets_in_user_cfg_before_first_start_are_kept(ep: ModuleType, tmp_path: Path) -> None:
    cfg = empty_cfg()
    cfg.read_string("[core]\nfernet_key = mine\n[api_auth]\njwt_secret_secret = backend\n")
    assert set(ep.secret_env({}, cfg, str(tmp_path))) == {"AIRFLOW__API__SECRET_KEY"}


def test_unreadable_secret_names_the_file(ep: ModuleType, tmp_path: Path) -> None:
    state = tmp_path / ".hardflow"
    state.mkdir()
    (state / "fernet_key").mkdir()  # reading a directory fails like a foreign 0600 file
    with pytest.raises(ep.EntrypointError, match="fernet_key"):
        ep.secret_env({}, empty_cfg(), str(tmp_path))


# ---------------------------------------------------------------- identity and root


def test_root_is_refused_unless_allowed(ep: ModuleType) -> None:
    with pytest.raises(ep.EntrypointError, match="refusing to run as root"):
        ep.refuse_root(0, {})
    with pytest.raises(ep.EntrypointError):
        ep.refuse_root(0, {"HARDFLOW_ALLOW_ROOT": "no"})
    ep.refuse_root(0, {"HARDFLOW_ALLOW_ROOT": "true"})
    ep.refuse_root(50000, {})
    ep.refuse_root(1234567, {})


@pytest.mark.skipif(os.getuid() != 0, reason="needs to run as root")
def test_entrypoint_as_root_exits_with_message(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "AIRFLOW_HOME": str(tmp_path)}
    done = run_entrypoint(["version"], env)
    assert done.returncode == 1
    assert "refusing to run as root" in done.stderr
    assert "HARDFLOW_ALLOW_ROOT" in done.stderr


def test_identity_for_unknown_uid(ep: ModuleType, tmp_path: Path) -> None:
    env = {"HOME": "/"}
    updates = ep.identity_env(env, 1234567, str(tmp_path))
    assert updates["USER"] == "airflow" and updates["LOGNAME"] == "airflow"
    assert updates["HOME"] == str(tmp_path)
    assert updates["PYTHONDONTWRITEBYTECODE"] == "1"
    assert updates["XDG_CACHE_HOME"].startswith("/tmp/")


def test_identity_keeps_what_is_set(ep: ModuleType, tmp_path: Path) -> None:
    env = {"USER": "u", "LOGNAME": "u", "HOME": str(tmp_path), "XDG_CACHE_HOME": "/x"}
    updates = ep.identity_env(env, os.getuid(), str(tmp_path))
    assert "USER" not in updates and "LOGNAME" not in updates and "HOME" not in updates
    assert "XDG_CACHE_HOME" not in updates


def test_identity_falls_back_to_tmp_when_home_not_writable(ep: ModuleType, tmp_path: Path) -> None:
    updates = ep.identity_env({}, 1234567, str(tmp_path / "missing"))
    assert updates["HOME"] == "/tmp"


def test_scheduler_role_enables_health_server(ep: ModuleType) -> None:
    plan = ep.plan_command(["scheduler"], {})
    assert ep.role_env(plan, {}) == {"AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True"}
    off = {"AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False"}
    assert ep.role_env(plan, off) == {}
    assert ep.role_env(ep.plan_command(["triggerer"], {}), {}) == {}


# ---------------------------------------------------------------- URL parsing and waiting


@pytest.mark.parametrize(
    ("url", "endpoints"),
    [
        ("postgresql+psycopg2://u:p@db:5433/airflow", [("db", 5433)]),
        ("postgresql://u:p@db/airflow", [("db", 5432)]),
        (
            f"postgresql://airflow:{PASSWORD}@pg.example:6543/af?sslmode=require",
            [("pg.example", 6543)],
        ),
        ("mysql+mysqldb://u:p@mysql/airflow", [("mysql", 3306)]),
        ("postgresql://u:p@[::1]:5432/airflow", [("::1", 5432)]),
        ("postgresql://u:p@h1:5432,h2:5433/airflow", [("h1", 5432), ("h2", 5433)]),
        ("redis://:p@redis:6379/0", [("redis", 6379)]),
        ("redis://redis", [("redis", 6379)]),
        ("amqp://guest:guest@rabbit//", [("rabbit", 5672)]),
        ("sentinel://s1:26379;sentinel://s2:26380", [("s1", 26379), ("s2", 26380)]),
    ],
)
def test_parse_service_url(ep: ModuleType, url: str, endpoints: list[tuple[str, int]]) -> None:
    target = ep.parse_service_url("db", url)
    assert [(e.host, e.port) for e in target.endpoints] == endpoints


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////opt/airflow/airflow.db",
        "postgresql://u:p@/airflow?host=/run/postgresql",
        "sqs://",
    ],
)
def test_parse_service_url_nothing_to_wait_for(ep: ModuleType, url: str) -> None:
    target = ep.parse_service_url("db", url)
    assert target.endpoints == ()
    assert target.skip_reason


def test_parse_errors_do_not_show_the_url(ep: ModuleType) -> None:
    with pytest.raises(ep.EntrypointError) as info:
        ep.parse_service_url("metadata database", f"airflow:{PASSWORD}@db/airflow")
    assert PASSWORD not in str(info.value)
    with pytest.raises(ep.EntrypointError) as info:
        ep.parse_service_url("metadata database", f"postgresql://a:{PASSWORD}@db:xx/airflow")
    assert PASSWORD not in str(info.value)
    # no '@': what looks like "host:port" is "user:password", and the port is not echoed
    secret = "OnlyLetters"  # a password without '@' or '/' in it
    with pytest.raises(ep.EntrypointError) as info:
        ep.parse_service_url("metadata database", f"postgresql://airflow:{secret}/airflow")
    assert secret not in str(info.value)
    assert "metadata database" in str(info.value) and "port" in str(info.value)


def test_wait_gives_up_with_host_port_and_error_but_no_password(ep: ModuleType) -> None:
    port = closed_port()
    url = f"postgresql://airflow:{PASSWORD}@127.0.0.1:{port}/airflow"
    target = ep.parse_service_url("metadata database", url)
    sleeps: list[float] = []
    with pytest.raises(ep.EntrypointError) as info:
        ep.wait_for(target, 3, 0.5, sleep=sleeps.append)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "3 attempts" in message
    assert "refused" in message.lower()
    assert PASSWORD not in message
    assert sleeps == [0.5, 0.5]


def test_wait_returns_when_listening(ep: ModuleType) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        target = ep.parse_service_url("db", f"postgresql://u:p@127.0.0.1:{port}/a")
        ep.wait_for(target, 1, 0)


def test_wait_zero_count_does_not_connect(ep: ModuleType) -> None:
    calls: list[object] = []
    target = ep.parse_service_url("db", "postgresql://u:p@db/a")
    ep.wait_for(target, 0, 1, connect=lambda *a: calls.append(a))
    assert calls == []


def test_database_url_from_cmd_and_cfg(ep: ModuleType, tmp_path: Path) -> None:
    cmd = f"{sys.executable} -c 'print(\"postgresql://u:p@fromcmd:1/a\")'"
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": cmd}
    assert ep.database_target(env, empty_cfg()).endpoints[0].host == "fromcmd"
    cfg = empty_cfg()
    cfg.read_string("[database]\nsql_alchemy_conn = mysql://u:p@fromcfg/a\n")
    assert ep.database_target({}, cfg).endpoints[0].host == "fromcfg"
    assert ep.database_target({}, empty_cfg()).endpoints == ()
    secret = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET": "conn"}
    assert "SECRET" in ep.database_target(secret, empty_cfg()).skip_reason
    assert ep.broker_target({}, empty_cfg()).endpoints[0].host == "redis"


# ---------------------------------------------------------------- users


def test_simple_auth_users_value(ep: ModuleType) -> None:
    assert ep.simple_auth_users_value(None, "admin", "admin") == "admin:admin"
    assert ep.simple_auth_users_value("admin:admin", "bob", "admin") == "bob:admin"
    assert ep.simple_auth_users_value("ann:viewer", "bob", "op") == "ann:viewer,bob:op"
    assert ep.simple_auth_users_value("ann:viewer,bob:admin", "bob", "op") == "ann:viewer,bob:admin"


def provision(ep: ModuleType, home: Path, env: dict[str, str]) -> dict[str, str]:
    plan = ep.plan_command(["api-server"], {})
    env = {"_AIRFLOW_WWW_USER_CREATE": "true", **env}
    result: dict[str, str] = ep.provision_user(plan, env, empty_cfg(), str(home))
    return result


def passwords(home: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (home / "simple_auth_manager_passwords.json.generated").read_text()
    )
    return loaded


def test_generated_password_is_stored_0600_and_never_printed(
    ep: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    updates = provision(ep, tmp_path, {})
    assert updates == {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin"}
    path = tmp_path / "simple_auth_manager_passwords.json.generated"
    assert mode(path) == 0o600
    generated = passwords(tmp_path)["admin"]
    assert len(generated) >= 16
    out = capsys.readouterr()
    assert generated not in out.out + out.err
    assert str(path) in out.err
    provision(ep, tmp_path, {})  # restart: the password is kept
    assert passwords(tmp_path)["admin"] == generated


def test_given_password_from_file_is_written(ep: ModuleType, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    env = ep.expand_file_variables(
        {"_AIRFLOW_WWW_USER_PASSWORD_FILE": str(secret), "_AIRFLOW_WWW_USER_USERNAME": "ops"}
    )
    env["_AIRFLOW_WWW_USER_USERNAME"] = "ops"
    updates = provision(ep, tmp_path, env)
    assert updates["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "ops:admin"
    assert passwords(tmp_path) == {"ops": PASSWORD}


def test_no_user_without_create_flag(ep: ModuleType, tmp_path: Path) -> None:
    plan = ep.plan_command(["api-server"], {})
    assert ep.provision_user(plan, {}, empty_cfg(), str(tmp_path)) == {}
    assert not (tmp_path / "simple_auth_manager_passwords.json.generated").exists()
    standalone = ep.plan_command(["standalone"], {})
    assert ep.provision_user(standalone, {}, empty_cfg(), str(tmp_path))


def test_fab_without_provider_is_a_clear_error(
    ep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ep, "fab_installed", lambda: False)
    env = {
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
        )
    }
    with pytest.raises(ep.EntrypointError, match="apache-airflow-providers-fab"):
        provision(ep, tmp_path, env)


# ---------------------------------------------------------------- health state


def test_health_state_urls(ep: ModuleType) -> None:
    plan = ep.plan_command(["api-server", "--port", "9000"], {})
    env = {"AIRFLOW__API__BASE_URL": "https://af.example.org/airflow/"}
    state = ep.health_state(plan, env, 42)
    assert state["role"] == "api-server" and state["pid"] == 42
    assert state["api_health_url"] == "http://127.0.0.1:9000/airflow/api/v2/monitor/health"
    env = {"AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": "9999"}
    state = ep.health_state(ep.plan_command(["scheduler"], {}), env, 1)
    assert state["scheduler_health_url"] == "http://127.0.0.1:9999/health"
    assert state["api_health_url"] == "http://127.0.0.1:8080/api/v2/monitor/health"


# ---------------------------------------------------------------- the whole script


def run_entrypoint(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/",
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "HARDFLOW_STATE_FILE": str(tmp_path / "role.json"),
        "HARDFLOW_ALLOW_ROOT": "true",
    }


def test_script_exits_nonzero_when_database_never_answers(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    port = closed_port()
    env = base_env(tmp_path) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql://airflow:{PASSWORD}@127.0.0.1:{port}/af",
        "CONNECTION_CHECK_MAX_COUNT": "2",
        "CONNECTION_CHECK_SLEEP_TIME": "0",
    }
    done = run_entrypoint(["scheduler"], env)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    state = json.loads((tmp_path / "role.json").read_text())
    assert state["role"] == "scheduler"


def test_script_execs_with_prepared_environment(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    probe = (
        "import getpass, json, os; print(json.dumps({'user': getpass.getuser(), "
        "'home': os.environ['HOME'], 'pid': os.getpid(), "
        "'fernet': os.environ.get('AIRFLOW__CORE__FERNET_KEY', '')}))"
    )
    env = base_env(tmp_path)
    env.pop("USER", None)
    # a key stored by an earlier start is used; a command needs none, so none is generated
    state_dir = tmp_path / "home" / ".hardflow"
    state_dir.mkdir()
    (state_dir / "fernet_key").write_text("stored-fernet\n")
    done = run_entrypoint([sys.executable, "-c", probe], env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["home"] == str(tmp_path / "home")
    assert seen["user"]
    assert (tmp_path / "home" / "logs").is_dir()
    assert seen["fernet"] == "stored-fernet"
    assert sorted(p.name for p in state_dir.iterdir()) == ["fernet_key"]
    # exec, not a child: the health state records the pid of the process that ran the probe
    state = json.loads((tmp_path / "role.json").read_text())
    assert state == state | {"role": "exec", "pid": seen["pid"]}


def test_script_reports_bad_file_variable(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path) | {"_AIRFLOW_WWW_USER_PASSWORD_FILE": str(tmp_path / "missing")}
    done = run_entrypoint(["version"], env)
    assert done.returncode == 1
    assert "_AIRFLOW_WWW_USER_PASSWORD_FILE" in done.stderr
    assert "Traceback" not in done.stderr
