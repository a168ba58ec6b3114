"""Parity of the in-image entrypoint with the official image's, and no writes into the image.

The entrypoint runs as a script, as in the image, against fakes: a dist-info that says which
Airflow (and whether FAB) is installed, an ``airflow`` package whose CLI ``main`` answers FAB's
``users create`` password prompts, and an ``airflow`` executable on PATH whose ``db check``
fails as often as a test asks. Every fake records its argv and environment.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

IMAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "image"
ENTRYPOINT = IMAGE_DIR / "entrypoint.py"
FAB_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
PASSWORD = "Adm1n-p@ss/w0rd"
DB_PASSWORD = "Db-S3cr3t-51ab"
SECRET_VARS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
)

RECORD = """
import getpass, json, os, sys
def record(kind, **extra):
    entry = {"kind": kind, "argv": sys.argv, "env": dict(os.environ), **extra}
    with open(os.environ["FAKE_AIRFLOW_RECORD"], "a") as out:
        out.write(json.dumps(entry) + "\\n")
"""
FAKE_MAIN = (
    RECORD
    + """
def main():
    first = getpass.getpass("Password:")
    second = getpass.getpass("Repeat for confirmation:")
    record("cli-main", password=first, confirmed=first == second)
    return 0
"""
)
# `airflow db check` fails while the counter file holds a number above 0 ("always": forever),
# printing what a refused login prints (with a URL, to check the redaction).
FAKE_EXECUTABLE = (
    RECORD
    + """
record("executable")
if sys.argv[1:3] == ["db", "check"]:
    path = os.environ.get("FAKE_DB_CHECK_FAILURES", "")
    left = open(path).read().strip() if path and os.path.exists(path) else "0"
    if left == "always" or int(left) > 0:
        if left != "always":
            open(path, "w").write(str(int(left) - 1))
        print("sqlalchemy.exc.OperationalError: password authentication failed for user "
              "'airflow' (postgresql://airflow:" + os.environ.get("FAKE_DB_PASSWORD", "") +
              "@db/airflow)", file=sys.stderr)
        sys.exit(1)
    print("Connection successful.")
"""
)


def dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port that accepts connections (the database's port is open)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def fake_airflow(tmp_path: Path, version: str = "3.3.2", fab: bool = False) -> dict[str, str]:
    site, bindir, home = tmp_path / "site", tmp_path / "bin", tmp_path / "home"
    for d in (site / "airflow", bindir, home):
        d.mkdir(parents=True)
    dist(site, "apache-airflow", version)
    if fab:
        dist(site, "apache-airflow-providers-fab", "3.0.0")
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
        "FAKE_DB_CHECK_FAILURES": str(tmp_path / "db-check-failures"),
        "FAKE_DB_PASSWORD": DB_PASSWORD,
        "CONNECTION_CHECK_SLEEP_TIME": "0",
    }


def db_url(port: int) -> str:
    return f"postgresql://airflow:{DB_PASSWORD}@127.0.0.1:{port}/airflow"


def run_entrypoint(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def records(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def calls(tmp_path: Path) -> list[list[str]]:
    """The argv (without the program) of every fake started, in order."""
    seen = records(tmp_path)
    return [r["argv"][1:] if r["kind"] == "executable" else ["<fab-cli>"] for r in seen]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def empty_cfg() -> configparser.ConfigParser:
    return configparser.ConfigParser(interpolation=None)


# --------------------------------------------------------------------------------------------
# waiting for the database: a real login (`airflow db check`), for the chart's forms too


@pytest.mark.parametrize(
    "command",
    [
        ["api-server"],
        ["scheduler"],
        ["dag-processor"],
        ["triggerer"],
        ["airflow", "triggerer"],
        # the official chart's forms
        ["bash", "-c", "exec airflow scheduler"],
        ["bash", "-c", "exec airflow api-server"],
        ["bash", "-c", "exec \\\nairflow dag-processor"],
    ],
)
def test_components_wait_for_a_database_login(
    tmp_path: Path, listening: int, command: list[str]
) -> None:
    env = fake_airflow(tmp_path) | {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(listening)}
    env |= {"AIRFLOW__CORE__FERNET_KEY": "f", "AIRFLOW__API__SECRET_KEY": "a"}
    env |= {"AIRFLOW__API_AUTH__JWT_SECRET": "j"}
    (tmp_path / "db-check-failures").write_text("2")  # the login fails twice, then succeeds
    done = run_entrypoint(command, env)
    assert done.returncode == 0, done.stderr
    seen = calls(tmp_path)
    assert seen[:3] == [["db", "check"]] * 3
    role = command[-1].split()[-1]
    assert seen[3][-1] == role and len(seen) == 4
    assert "waiting for the metadata database login (attempt 2/20)" in done.stderr


def test_login_that_never_succeeds_fails_with_the_last_output(
    tmp_path: Path, listening: int
) -> None:
    env = fake_airflow(tmp_path) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(listening),
        "CONNECTION_CHECK_MAX_COUNT": "3",
    }
    (tmp_path / "db-check-failures").write_text("always")
    done = run_entrypoint(["triggerer"], env)
    assert done.returncode == 1
    assert calls(tmp_path) == [["db", "check"]] * 3  # the triggerer never started
    assert "'airflow db check' failed 3 times" in done.stderr
    assert "password authentication failed" in done.stderr
    assert DB_PASSWORD not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_closed_port_fails_before_any_login(tmp_path: Path) -> None:
    port = closed_port()
    env = fake_airflow(tmp_path) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(port),
        "CONNECTION_CHECK_MAX_COUNT": "2",
    }
    done = run_entrypoint(["dag-processor"], env)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr
    assert calls(tmp_path) == []  # no Airflow import per attempt while the port is closed


@pytest.mark.parametrize(
    "command",
    [
        ["scheduler"],
        ["bash", "-c", "exec airflow scheduler"],
        ["airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"],
    ],
)
def test_zero_max_count_skips_every_wait(tmp_path: Path, command: list[str]) -> None:
    env = fake_airflow(tmp_path) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(closed_port()),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0",
        "CONNECTION_CHECK_MAX_COUNT": "0",
        "AIRFLOW__CORE__FERNET_KEY": "f",
        "AIRFLOW__API_AUTH__JWT_SECRET": "j",
    }
    done = run_entrypoint(command, env)
    assert done.returncode == 0, done.stderr
    assert ["db", "check"] not in calls(tmp_path)
    assert calls(tmp_path)[-1][-1] == command[-1].split()[-1]


def test_bash_and_python_wait_like_the_official_image(tmp_path: Path, listening: int) -> None:
    env = fake_airflow(tmp_path) | {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(listening)}
    done = run_entrypoint(["bash", "-c", "echo ran"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran"
    assert calls(tmp_path) == [["db", "check"]]
    # a program named by path (the log groomer's /clean-logs ...) does not wait
    (tmp_path / "record.jsonl").unlink()
    done = run_entrypoint([shutil.which("true") or "/bin/true"], env)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == []


def test_sqlite_has_nothing_to_log_in_to(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path) | {"AIRFLOW__API_AUTH__JWT_SECRET": "j"}
    env["AIRFLOW__CORE__FERNET_KEY"] = "f"
    assert run_entrypoint(["scheduler"], env).returncode == 0
    assert calls(tmp_path) == [["scheduler"]]


def test_secret_backend_url_is_checked_by_login_only(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path) | {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET": "sql_conn"}
    done = run_entrypoint(["triggerer"], env)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [["db", "check"], ["triggerer"]]


def test_db_check_child_gets_no_provisioning_secret(tmp_path: Path, listening: int) -> None:
    env = fake_airflow(tmp_path) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(listening),
        "_AIRFLOW_WWW_USER_PASSWORD": PASSWORD,
    }
    assert run_entrypoint(["triggerer"], env).returncode == 0
    check = records(tmp_path)[0]
    assert check["argv"][1:] == ["db", "check"]
    assert not [k for k in check["env"] if k.startswith("_AIRFLOW_WWW_USER_")]


# --------------------------------------------------------------------------------------------
# the chart's `bash -c "exec airflow ..."` is recognised as the component it starts


@pytest.mark.parametrize(
    ("script", "airflow_args"),
    [
        ("exec airflow scheduler", ("scheduler",)),
        ("exec \\\nairflow celery worker", ("celery", "worker")),
        ('exec airflow users create "$@"', ("users", "create", "$@")),
        ("exec /usr/local/bin/airflow triggerer  # comment", ("triggerer",)),
        ("airflow scheduler", None),
        ("exec airflow scheduler; echo done", None),
        ("exec airflow scheduler && echo done", None),
        ("echo hi", None),
        ("exec 'unbalanced", None),
    ],
)
def test_shell_airflow_args(
    ep: ModuleType, script: str, airflow_args: tuple[str, ...] | None
) -> None:
    assert ep.shell_airflow_args(["bash", "-c", script]) == airflow_args


def test_shell_form_plans_as_its_component(ep: ModuleType) -> None:
    args = ["bash", "-c", "exec airflow api-server --port 9000"]
    plan = ep.plan_command(args, {})
    assert (plan.role, plan.argv, plan.api_port, plan.wait_database) == (
        "api-server",
        tuple(args),
        9000,
        True,
    )
    assert ep.plan_command(["sh", "-c", "exec airflow celery worker"], {}).role == "celery-worker"
    assert ep.plan_command(["bash", "-c", "exec airflow version"], {}).role == "airflow"


# --------------------------------------------------------------------------------------------
# the Celery broker: whenever Airflow's configuration names a Celery executor


@pytest.mark.parametrize(
    ("value", "celery"),
    [
        ("CeleryExecutor", True),
        ("LocalExecutor,CeleryExecutor", True),
        (" LocalExecutor , CeleryExecutor ", True),
        ("airflow.providers.celery.executors.celery_executor.CeleryExecutor", True),
        ("fast:airflow.providers.celery.executors.celery_executor.CeleryExecutor", True),
        ("CeleryKubernetesExecutor", True),
        ("LocalExecutor", False),
        ("KubernetesExecutor,LocalExecutor", False),
        ("my.module.NotCeleryExecutor", False),
        ("", False),
        (None, False),
    ],
)
def test_celery_executor_values(ep: ModuleType, value: str | None, celery: bool) -> None:
    assert ep.celery_executor(value) is celery


def test_executor_from_a_mounted_airflow_cfg(ep: ModuleType, tmp_path: Path) -> None:
    cfg_file = tmp_path / "airflow.cfg"
    cfg_file.write_text("[core]\nexecutor = CeleryExecutor\n")
    cfg = ep.load_airflow_cfg({}, str(tmp_path))  # $AIRFLOW_HOME/airflow.cfg
    assert ep.plan_command(["scheduler"], {}, 3, cfg).wait_broker
    elsewhere = tmp_path / "conf" / "cfg.ini"
    elsewhere.parent.mkdir()
    elsewhere.write_text("[core]\nexecutor = airflow.providers.celery.executors.CeleryExecutor\n")
    cfg = ep.load_airflow_cfg({"AIRFLOW_CONFIG": str(elsewhere)}, str(tmp_path / "none"))
    assert ep.plan_command(["scheduler"], {}, 3, cfg).wait_broker
    assert ep.plan_command(["bash", "-c", "exec airflow scheduler"], {}, 3, cfg).wait_broker
    assert not ep.plan_command(["scheduler"], {}, 3, empty_cfg()).wait_broker
    assert not ep.plan_command(["triggerer"], {}, 3, cfg).wait_broker
    local = {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}  # the environment wins over the file
    assert not ep.plan_command(["scheduler"], local, 3, cfg).wait_broker


@pytest.mark.parametrize("command", [["scheduler"], ["bash", "-c", "exec airflow scheduler"]])
def test_scheduler_waits_for_the_broker_the_cfg_configures(
    tmp_path: Path, command: list[str]
) -> None:
    env = fake_airflow(tmp_path) | {"CONNECTION_CHECK_MAX_COUNT": "2"}
    env |= {"AIRFLOW__CORE__FERNET_KEY": "f", "AIRFLOW__API_AUTH__JWT_SECRET": "j"}
    port = closed_port()
    (tmp_path / "home" / "airflow.cfg").write_text(
        f"[core]\nexecutor = LocalExecutor,CeleryExecutor\n"
        f"[celery]\nbroker_url = redis://:pw@127.0.0.1:{port}/0\n"
    )
    done = run_entrypoint(command, env)
    assert done.returncode == 1
    assert f"Celery broker at 127.0.0.1:{port} is not reachable" in done.stderr
    assert calls(tmp_path) == []


# --------------------------------------------------------------------------------------------
# _AIRFLOW_DB_MIGRATE and the init pattern (`airflow version` with it set)


def test_init_pattern_migrates_then_runs_the_command(tmp_path: Path, listening: int) -> None:
    env = fake_airflow(tmp_path) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(listening),
        "_AIRFLOW_DB_MIGRATE": "true",
    }
    done = run_entrypoint(["airflow", "version"], env)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [["db", "check"], ["db", "migrate"], ["version"]]


def test_db_upgrade_is_deprecated_but_migrates(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path) | {"_AIRFLOW_DB_UPGRADE": "true"}
    done = run_entrypoint(["version"], env)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [["db", "migrate"], ["version"]]
    assert "_AIRFLOW_DB_UPGRADE is deprecated" in done.stderr
    assert "_AIRFLOW_DB_MIGRATE" in done.stderr


@pytest.mark.parametrize(("value", "migrates"), [("yes", True), ("1", True), ("false", False)])
def test_migrate_flag_values(tmp_path: Path, value: str, migrates: bool) -> None:
    env = fake_airflow(tmp_path) | {"_AIRFLOW_DB_MIGRATE": value}
    done = run_entrypoint(["version"], env)
    assert done.returncode == 0, done.stderr
    assert (["db", "migrate"] in calls(tmp_path)) is migrates


def test_failed_migration_stops_the_container(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path) | {"_AIRFLOW_DB_MIGRATE": "true"}
    bindir = tmp_path / "bin"
    (bindir / "airflow").write_text(f"#!{sys.executable}\nimport sys\nsys.exit(3)\n")
    done = run_entrypoint(["version"], env)
    assert done.returncode == 1
    assert "'airflow db migrate' failed with status 3" in done.stderr


def test_a_migration_that_lost_the_lock_race_is_retried(tmp_path: Path) -> None:
    """Several components migrating at once: the ones that time out on Airflow's migration lock
    try again (after CONNECTION_CHECK_SLEEP_TIME) instead of exiting into a restart loop."""
    env = fake_airflow(tmp_path) | {
        "_AIRFLOW_DB_MIGRATE": "true", "CONNECTION_CHECK_SLEEP_TIME": "0",
    }  # fmt: skip
    tries = tmp_path / "tries"
    (tmp_path / "bin" / "airflow").write_text(
        f"#!{sys.executable}\nimport pathlib, sys\n"
        f"t = pathlib.Path({str(tries)!r})\nn = int(t.read_text()) if t.exists() else 0\n"
        "t.write_text(str(n + 1))\n"
        "if sys.argv[1:3] == ['db', 'migrate'] and n < 2:\n"
        "    print('psycopg2.errors.LockNotAvailable: canceling statement due to lock timeout')\n"
        "    sys.exit(1)\n"
    )
    done = run_entrypoint(["version"], env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("could not take Airflow's migration lock") == 2
    assert "LockNotAvailable" in done.stdout  # Airflow's own output is passed through
    assert tries.read_text() == "4"  # three migrations, then `airflow version`


# --------------------------------------------------------------------------------------------
# _AIRFLOW_WWW_USER_* with FAB on Airflow 3


def fab_user_env(tmp_path: Path) -> dict[str, str]:
    return fake_airflow(tmp_path, fab=True) | {
        "_AIRFLOW_WWW_USER_CREATE": "true",
        "_AIRFLOW_WWW_USER_USERNAME": "ops",
        "_AIRFLOW_WWW_USER_PASSWORD": PASSWORD,
        "_AIRFLOW_DB_MIGRATE": "true",
    }


def test_fab_user_on_airflow_3_from_the_environment(tmp_path: Path) -> None:
    env = fab_user_env(tmp_path) | {"AIRFLOW__CORE__AUTH_MANAGER": FAB_MANAGER}
    done = run_entrypoint(["airflow", "version"], env)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [["db", "migrate"], ["<fab-cli>"], ["version"]]
    fab = records(tmp_path)[1]
    assert fab["password"] == PASSWORD and fab["confirmed"]
    assert fab["argv"][fab["argv"].index("--username") + 1] == "ops"
    assert not any(PASSWORD in a for r in records(tmp_path) for a in r["argv"])
    for entry in records(tmp_path):
        assert not [k for k in entry["env"] if k.startswith("_AIRFLOW_WWW_USER_")]
    assert not (tmp_path / "home" / "simple_auth_manager_passwords.json.generated").exists()


def test_fab_user_when_the_mounted_cfg_names_fab(tmp_path: Path) -> None:
    env = fab_user_env(tmp_path)
    (tmp_path / "home" / "airflow.cfg").write_text(f"[core]\nauth_manager = {FAB_MANAGER}\n")
    done = run_entrypoint(["version"], env)
    assert done.returncode == 0, done.stderr
    assert "<fab-cli>" in [c[0] for c in calls(tmp_path)]


def test_password_cmd_runs_through_bash_like_the_official_eval(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    env = fab_user_env(tmp_path) | {"AIRFLOW__CORE__AUTH_MANAGER": FAB_MANAGER}
    del env["_AIRFLOW_WWW_USER_PASSWORD"]
    # no coreutils in the image: the shell reads the file where `cat` would
    env["_AIRFLOW_WWW_USER_PASSWORD_CMD"] = f'printf %s "$(<{secret})"'
    done = run_entrypoint(["version"], env)
    assert done.returncode == 0, done.stderr
    (fab,) = [r for r in records(tmp_path) if r["kind"] == "cli-main"]
    assert fab["password"] == PASSWORD


def test_cmd_naming_a_missing_program_says_how_to_read_files(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    env = fab_user_env(tmp_path) | {"AIRFLOW__CORE__AUTH_MANAGER": FAB_MANAGER}
    del env["_AIRFLOW_WWW_USER_PASSWORD"]
    env["_AIRFLOW_WWW_USER_PASSWORD_CMD"] = "no-such-cat-program /run/secrets/pw"
    done = run_entrypoint(["version"], env)
    assert done.returncode == 1
    assert "_AIRFLOW_WWW_USER_PASSWORD_CMD: bash exited with status 127" in done.stderr
    assert '"$(<FILE)"' in done.stderr and "_FILE" in done.stderr


def test_airflow_option_cmd_runs_without_a_shell(ep: ModuleType, tmp_path: Path) -> None:
    # Airflow splits an option's _CMD and runs it without a shell: so does the entrypoint
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "printf %s $HOME"}
    value, _ = ep.lookup_option(env, empty_cfg(), "database", "sql_alchemy_conn")
    assert value == "$HOME"
    which = {"printf": "/usr/bin/printf"}.get
    warnings = ep.missing_cmd_programs(
        {"AIRFLOW__CORE__FERNET_KEY_CMD": "cat /run/secrets/fernet", **env}, which
    )
    assert len(warnings) == 1 and "AIRFLOW__CORE__FERNET_KEY_CMD runs 'cat'" in warnings[0]
    assert '"$(<FILE)"' in warnings[0]


# --------------------------------------------------------------------------------------------
# _PIP_ADDITIONAL_REQUIREMENTS and the group


def test_pip_additional_requirements_is_refused_with_how_to_build(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path) | {"_PIP_ADDITIONAL_REQUIREMENTS": "pandas lxml"}
    done = run_entrypoint(["scheduler"], env)
    assert done.returncode == 1
    assert "_PIP_ADDITIONAL_REQUIREMENTS is set ('pandas lxml')" in done.stderr
    assert "immutable" in done.stderr
    assert "[python] requirements" in done.stderr and "hardflow build --spec" in done.stderr
    assert records(tmp_path) == [] and tree(tmp_path / "home") == []


def test_group_warning(ep: ModuleType) -> None:
    assert ep.group_warning(50000, 0) is None
    assert ep.group_warning(1234567, 0) is None
    assert ep.group_warning(0, 5) is None  # root is refused elsewhere
    warning = ep.group_warning(50000, 50000)
    assert "gid 50000" in warning and "group 0" in warning
    assert ep.group_warning(1234567, 1000)


# --------------------------------------------------------------------------------------------
# nothing written into the image at start


def read_only_home(tmp_path: Path) -> Path:
    """An AIRFLOW_HOME the entrypoint cannot write: a read-only directory, or - as root, whom
    modes do not stop - a path below a regular file (nothing can be created there)."""
    if os.getuid() == 0:
        blocker = tmp_path / "ro"
        blocker.write_text("a file, not a directory\n")
        return blocker / "opt" / "airflow"
    home = tmp_path / "ro"
    home.mkdir()
    home.chmod(0o555)
    return home


@pytest.mark.parametrize(
    "command",
    [
        ["triggerer"],
        ["dag-processor"],
        ["celery-worker"],
        ["bash", "-c", "exec airflow celery worker"],
        ["airflow", "db", "check-migrations", "--migration-wait-timeout=60"],
        ["airflow", "jobs", "check", "--job-type", "TriggererJob", "--local"],
    ],
)
def test_roles_that_need_no_secret_start_on_a_read_only_home(
    tmp_path: Path, command: list[str]
) -> None:
    env = fake_airflow(tmp_path) | {"CONNECTION_CHECK_MAX_COUNT": "0"}
    env["AIRFLOW_HOME"] = str(read_only_home(tmp_path))
    before = tree(tmp_path)
    done = run_entrypoint(command, env)
    assert done.returncode == 0, done.stderr
    (started,) = records(tmp_path)
    assert not [k for k in started["env"] if k in SECRET_VARS]  # nothing generated
    written = set(tree(tmp_path)) - set(before)
    assert written <= {"record.jsonl", "role.json"}  # the fake's record and the health state


@pytest.mark.parametrize(
    ("command", "given", "named"),
    [
        (["api-server"], {}, SECRET_VARS),
        (["bash", "-c", "exec airflow api-server"], {}, SECRET_VARS),
        (["scheduler"], {}, ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")),
        # the chart gives every component the Fernet and API keys, the JWT secret only to
        # the API server and the scheduler
        (
            ["bash", "-c", "exec airflow scheduler"],
            {"AIRFLOW__CORE__FERNET_KEY": "f", "AIRFLOW__API__SECRET_KEY": "a"},
            ("AIRFLOW__API_AUTH__JWT_SECRET",),
        ),
    ],
)
def test_roles_that_need_a_secret_name_it_on_a_read_only_home(
    tmp_path: Path, command: list[str], given: dict[str, str], named: tuple[str, ...]
) -> None:
    env = fake_airflow(tmp_path) | {"CONNECTION_CHECK_MAX_COUNT": "0"} | given
    home = read_only_home(tmp_path)
    env["AIRFLOW_HOME"] = str(home)
    done = run_entrypoint(command, env)
    assert done.returncode == 1
    assert records(tmp_path) == []
    line = done.stderr.strip().splitlines()[-1]
    for var in SECRET_VARS:
        assert (var in line) is (var in named), line
    assert "not writable" in line and "_FILE" in line
    assert "Traceback" not in done.stderr
    assert not home.exists() or tree(home) == []


def test_role_given_its_secrets_starts_on_a_read_only_home(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path) | {"CONNECTION_CHECK_MAX_COUNT": "0"}
    env |= {"AIRFLOW__CORE__FERNET_KEY": "f", "AIRFLOW__API_AUTH__JWT_SECRET": "j"}
    env["AIRFLOW_HOME"] = str(read_only_home(tmp_path))
    done = run_entrypoint(["bash", "-c", "exec airflow scheduler"], env)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [["scheduler"]]


def test_fab_user_without_password_on_a_read_only_home(tmp_path: Path) -> None:
    env = fab_user_env(tmp_path) | {"AIRFLOW__CORE__AUTH_MANAGER": FAB_MANAGER}
    del env["_AIRFLOW_WWW_USER_PASSWORD"]
    env["AIRFLOW_HOME"] = str(read_only_home(tmp_path))
    done = run_entrypoint(["version"], env)
    assert done.returncode == 1
    assert "_AIRFLOW_WWW_USER_PASSWORD" in done.stderr.strip().splitlines()[-1]


def test_secret_needs_per_role_in_process(
    ep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert ep.secret_env({}, empty_cfg(), str(home), 3, "triggerer") == {}
    assert not (home / ".hardflow").exists()
    assert set(ep.secret_env({}, empty_cfg(), str(home), 3, "scheduler")) == {
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    }
    # what the scheduler generated into the shared home, the triggerer now uses
    shared = ep.secret_env({}, empty_cfg(), str(home), 3, "triggerer")
    assert set(shared) == {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"}
    # an existing but read-only home: access(2) says no, nothing is tried
    monkeypatch.setattr(ep, "writable_dir", lambda path: False)
    with pytest.raises(ep.EntrypointError, match="AIRFLOW__API__SECRET_KEY") as info:
        ep.secret_env({}, empty_cfg(), str(home), 3, "api-server")
    assert "AIRFLOW__CORE__FERNET_KEY" not in str(info.value)  # stored: used
    assert sorted(p.name for p in (home / ".hardflow").iterdir()) == ["fernet_key", "jwt_secret"]


def test_missing_logs_dir_on_a_read_only_home_is_not_created(
    ep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(ep, "writable_dir", lambda path: False)
    ep.ensure_logs_dir(str(tmp_path))
    assert not (tmp_path / "logs").exists()
    assert "not writable" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# the health state: one file per container, never overwritten by a probe


def test_two_containers_sharing_tmp_keep_one_state_file_each(
    ep: ModuleType, health: ModuleType, tmp_path: Path
) -> None:
    base = str(tmp_path / "hardflow-role")  # the pod's shared /tmp
    scheduler_ns, groomer_ns = (lambda: "4026532001"), (lambda: "4026532002")
    scheduler_file = ep.state_file_path({}, base, scheduler_ns)
    groomer_file = ep.state_file_path({}, base, groomer_ns)
    assert scheduler_file != groomer_file
    scheduler = ep.health_state(ep.plan_command(["scheduler"], {}), {}, 11)
    groomer = ep.health_state(ep.plan_command(["bash", "/clean-logs"], {}), {}, 12)
    ep.write_state(scheduler_file, scheduler)
    ep.write_state(groomer_file, groomer)  # the sidecar started last
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hardflow-role-4026532001",
        "hardflow-role-4026532002",
    ]
    # the health check in each container reads its own
    read_scheduler = health.load_state(health.state_file_path({}, base, scheduler_ns))
    assert (read_scheduler["role"], read_scheduler["pid"]) == ("scheduler", 11)
    assert health.load_state(health.state_file_path({}, base, groomer_ns))["role"] == "exec"


def test_state_file_names_agree_between_entrypoint_and_health(
    ep: ModuleType, health: ModuleType
) -> None:
    assert ep.state_file_path({}) == health.state_file_path({})
    namespace = ep.mount_namespace()
    if namespace:  # Linux: the real mount namespace
        assert namespace == health.mount_namespace()
        assert namespace == os.readlink("/proc/self/ns/mnt")[len("mnt:[") : -1]
        assert ep.state_file_path({}) == f"/tmp/hardflow-role-{namespace}"
    explicit = {"HARDFLOW_STATE_FILE": "/elsewhere/state.json"}
    assert (
        ep.state_file_path(explicit)
        == health.state_file_path(explicit)
        == explicit["HARDFLOW_STATE_FILE"]
    )
    assert ep.state_file_path({}, "/b", lambda: "") == "/b"


def test_probe_exec_does_not_overwrite_the_main_process_state(tmp_path: Path) -> None:
    env = fake_airflow(tmp_path) | {"CONNECTION_CHECK_MAX_COUNT": "0"}
    state = tmp_path / "role.json"
    main = {"role": "scheduler", "pid": os.getpid()}  # a live process: this test's
    state.write_text(json.dumps(main))
    probe = ["airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"]
    assert run_entrypoint(probe, env).returncode == 0
    assert json.loads(state.read_text()) == main
    # a state left by a process that has gone (a restarted container) is replaced
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    state.write_text(json.dumps({"role": "scheduler", "pid": int(gone.stdout)}))
    assert run_entrypoint(["triggerer"], env).returncode == 0
    assert json.loads(state.read_text())["role"] == "triggerer"


# --------------------------------------------------------------------------------------------
# run through the chart's /entrypoint link


def test_launchers_are_found_beside_the_real_file_through_a_link(tmp_path: Path) -> None:
    link = tmp_path / "entrypoint"
    link.symlink_to(ENTRYPOINT)
    code = (
        "import importlib.machinery, importlib.util, sys; "
        f"loader = importlib.machinery.SourceFileLoader('ep_link', {str(link)!r}); "
        "spec = importlib.util.spec_from_loader('ep_link', loader); "
        "m = importlib.util.module_from_spec(spec); sys.modules['ep_link'] = m; "
        "loader.exec_module(m); print(m.plan_command(['standalone'], {}).argv[2])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(IMAGE_DIR / "standalone.py")


def test_entrypoint_runs_through_a_link(tmp_path: Path) -> None:
    link = tmp_path / "entrypoint"
    link.symlink_to(ENTRYPOINT)
    env = fake_airflow(tmp_path) | {"CONNECTION_CHECK_MAX_COUNT": "0"}
    probe = ["airflow", "jobs", "check", "--job-type", "TriggererJob", "--local"]
    done = subprocess.run(
        [sys.executable, str(link), *probe],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [probe[1:]]


def test_missing_airflow_cfg_on_a_read_only_home_is_not_written(
    ep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow writes a default airflow.cfg when the file is missing: not into the image."""
    home = tmp_path / "home"
    home.mkdir()
    assert ep.config_file_env({}, str(home)) == {}  # writable: Airflow may write its default
    monkeypatch.setattr(ep, "writable_dir", lambda path: False)
    assert ep.config_file_env({}, str(home)) == {"AIRFLOW_CONFIG": os.devnull}
    (home / "airflow.cfg").write_text("[core]\n")  # mounted (the chart's configmap)
    assert ep.config_file_env({}, str(home)) == {}
    assert ep.config_file_env({"AIRFLOW_CONFIG": "/etc/af.cfg"}, str(tmp_path / "x")) == {}
