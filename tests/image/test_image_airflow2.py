"""Airflow 2 behaviour of the in-image entrypoint and health check (same files as for 3.x)."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from helpers.loopback_http import serve

IMAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "image"
ENTRYPOINT = IMAGE_DIR / "entrypoint.py"
HEALTH = IMAGE_DIR / "health.py"


def empty_cfg() -> configparser.ConfigParser:
    return configparser.ConfigParser(interpolation=None)


# ---------------------------------------------------------------- version detection


def test_major_version_from_metadata(ep: ModuleType) -> None:
    assert ep.airflow_major(lambda name: "2.11.2") == 2
    assert ep.airflow_major(lambda name: "3.3.2") == 3


def test_major_version_defaults_to_3_without_airflow(ep: ModuleType) -> None:
    def missing(name: str) -> str:
        from importlib.metadata import PackageNotFoundError

        raise PackageNotFoundError(name)

    assert ep.airflow_major(missing) == 3
    assert ep.airflow_major(lambda name: "garbage") == 3


def test_major_version_reads_only_dist_info(ep: ModuleType, tmp_path: Path) -> None:
    """A bare dist-info directory is enough: no airflow package is imported."""
    fake_dist(tmp_path, "2.11.2")
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('ep', {str(ENTRYPOINT)!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['ep'] = m; "
        "spec.loader.exec_module(m); print(m.airflow_major(), 'airflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["2", "False"]


def fake_dist(site: Path, version: str) -> None:
    dist = site / f"apache_airflow-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: apache-airflow\nVersion: {version}\n"
    )


# ---------------------------------------------------------------- command line → plan


@pytest.mark.parametrize(
    ("args", "role", "argv"),
    [
        (["webserver"], "webserver", ("airflow", "webserver")),
        (["webserver", "-p", "9000"], "webserver", ("airflow", "webserver", "-p", "9000")),
        (["airflow", "webserver"], "webserver", ("airflow", "webserver")),
        (["scheduler"], "scheduler", ("airflow", "scheduler")),
        (["triggerer"], "triggerer", ("airflow", "triggerer")),
        (["dag-processor"], "dag-processor", ("airflow", "dag-processor")),
        (["celery-worker"], "celery-worker", ("airflow", "celery", "worker")),
        (["celery-flower"], "celery-flower", ("airflow", "celery", "flower")),
        (["db", "migrate"], "airflow", ("airflow", "db", "migrate")),
        (["users", "list"], "airflow", ("airflow", "users", "list")),
        (["python3.11", "-V"], "exec", ("python3.11", "-V")),
    ],
)
def test_plan_roles_on_airflow_2(
    ep: ModuleType, args: list[str], role: str, argv: tuple[str, ...]
) -> None:
    plan = ep.plan_command(args, {}, 2)
    assert (plan.role, plan.argv, plan.airflow_major) == (role, argv, 2)
    assert not plan.note


@pytest.mark.parametrize("args", [["api-server"], ["airflow", "api-server"]])
def test_api_server_on_airflow_2_runs_the_webserver(ep: ModuleType, args: list[str]) -> None:
    plan = ep.plan_command([*args, "--port", "9100"], {}, 2)
    assert plan.role == "webserver"
    assert plan.argv == ("airflow", "webserver", "--port", "9100")
    assert plan.api_port == 9100
    assert "webserver" in plan.note and "api-server" in plan.note
    assert plan.wait_database


def test_airflow_3_plans_are_unchanged(ep: ModuleType) -> None:
    plan = ep.plan_command(["api-server"], {})
    assert (plan.role, plan.argv, plan.airflow_major, plan.note) == (
        "api-server",
        ("airflow", "api-server"),
        3,
        "",
    )
    # "webserver" is no role of Airflow 3: passed to its CLI, which says so
    assert ep.plan_command(["webserver"], {}).role == "airflow"


def test_standalone_on_airflow_2_uses_the_launcher(ep: ModuleType) -> None:
    plan = ep.plan_command(["standalone"], {}, 2)
    assert plan.role == "standalone"
    assert plan.argv[1] == "-P" and plan.argv[2].endswith("standalone.py")
    assert plan.argv[-1] == "standalone"


# ---------------------------------------------------------------- secrets


def test_airflow_2_secrets_are_fernet_and_webserver_key(ep: ModuleType, tmp_path: Path) -> None:
    updates = ep.secret_env({}, empty_cfg(), str(tmp_path), 2)
    assert set(updates) == {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__WEBSERVER__SECRET_KEY"}
    stored = tmp_path / ".hardflow" / "webserver_secret_key"
    assert stored.read_text().strip() == updates["AIRFLOW__WEBSERVER__SECRET_KEY"]
    assert stored.stat().st_mode & 0o777 == 0o600
    # restart: the same keys
    assert ep.secret_env({}, empty_cfg(), str(tmp_path), 2) == updates


def test_airflow_2_webserver_key_given_by_user_is_kept(ep: ModuleType, tmp_path: Path) -> None:
    env = {"AIRFLOW__WEBSERVER__SECRET_KEY_CMD": "echo x"}
    updates = ep.secret_env(env, empty_cfg(), str(tmp_path), 2)
    assert "AIRFLOW__WEBSERVER__SECRET_KEY" not in updates
    assert not (tmp_path / ".hardflow" / "webserver_secret_key").exists()


# ---------------------------------------------------------------- admin user through FAB


@dataclass
class FabCall:
    args: list[str]
    stdin: str | None
    env: dict[str, str]


@pytest.fixture
def fab_calls(ep: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[FabCall]:
    calls: list[FabCall] = []

    def fake_run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(FabCall(list(args), kw.get("input"), dict(kw.get("env") or {})))
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(ep, "fab_installed", lambda: True)
    monkeypatch.setattr(ep.subprocess, "run", fake_run)
    return calls


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_airflow_2_standalone_creates_the_admin_through_fab(
    ep: ModuleType, tmp_path: Path, fab_calls: list[FabCall]
) -> None:
    plan = ep.plan_command(["standalone"], {}, 2)
    assert ep.provision_user(plan, {}, empty_cfg(), str(tmp_path)) == {}
    (call,) = fab_calls
    args = call.args
    # the airflow CLI through the launcher that answers its password prompt from stdin
    assert args[1:3] == ["-P", "-c"] and args[3] == ep.FAB_USERS_LAUNCHER
    assert args[4:6] == ["users", "create"]
    assert option(args, "--username") == "admin"
    assert option(args, "--role") == "Admin"
    stored = (tmp_path / ".hardflow" / "admin_password").read_text().strip()
    assert call.stdin == stored
    assert "--password" not in args and not any(stored in a for a in args)
    assert (tmp_path / ".hardflow" / "admin_password").stat().st_mode & 0o777 == 0o600
    # no SimpleAuthManager file on Airflow 2
    assert not list(tmp_path.glob("simple_auth_manager_passwords*"))
    # a restart uses the stored password again
    ep.provision_user(plan, {}, empty_cfg(), str(tmp_path))
    assert fab_calls[1].stdin == stored


def test_airflow_2_user_from_www_variables(
    ep: ModuleType, tmp_path: Path, fab_calls: list[FabCall]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("given-pass\n")
    env = ep.expand_file_variables({"_AIRFLOW_WWW_USER_PASSWORD_FILE": str(secret)}) | {
        "_AIRFLOW_WWW_USER_CREATE": "true",
        "_AIRFLOW_WWW_USER_USERNAME": "ops",
    }
    plan = ep.plan_command(["webserver"], {}, 2)
    ep.provision_user(plan, env, empty_cfg(), str(tmp_path))
    (call,) = fab_calls
    assert (option(call.args, "--username"), call.stdin) == ("ops", "given-pass")
    assert not any("given-pass" in a for a in call.args)
    # the child's environment holds no provisioning variable, the password least of all
    assert not [k for k in call.env if k.startswith("_AIRFLOW_WWW_USER_")]
    assert "given-pass" not in call.env.values()
    assert not (tmp_path / ".hardflow" / "admin_password").exists()


def test_airflow_2_webserver_without_create_flag_makes_no_user(
    ep: ModuleType, tmp_path: Path, fab_calls: list[FabCall]
) -> None:
    plan = ep.plan_command(["webserver"], {}, 2)
    assert ep.provision_user(plan, {}, empty_cfg(), str(tmp_path)) == {}
    assert fab_calls == []


def test_airflow_2_other_auth_manager_is_left_alone(
    ep: ModuleType, tmp_path: Path, fab_calls: list[FabCall]
) -> None:
    env = {"AIRFLOW__CORE__AUTH_MANAGER": "example.auth.MyManager"}
    ep.provision_user(ep.plan_command(["standalone"], {}, 2), env, empty_cfg(), str(tmp_path))
    assert fab_calls == []


# ---------------------------------------------------------------- health state


def test_health_state_points_at_the_webserver_health(ep: ModuleType) -> None:
    env = {"AIRFLOW__WEBSERVER__WEB_SERVER_PORT": "8181", "AIRFLOW__API__PORT": "9999"}
    state = ep.health_state(ep.plan_command(["webserver"], {}, 2), env, 7)
    assert state["airflow_major"] == 2
    assert state["api_health_url"] == "http://127.0.0.1:8181/health"
    state = ep.health_state(ep.plan_command(["webserver", "-p", "8282"], {}, 2), env, 7)
    assert state["api_health_url"] == "http://127.0.0.1:8282/health"
    env = {
        "AIRFLOW__WEBSERVER__WEB_SERVER_SSL_CERT": "/c.pem",
        "AIRFLOW__WEBSERVER__BASE_URL": "https://example.org/airflow",
    }
    state = ep.health_state(ep.plan_command(["standalone"], {}, 2), env, 7)
    assert state["api_health_url"] == "https://127.0.0.1:8080/airflow/health"
    assert ep.health_state(ep.plan_command(["api-server"], {}), {}, 7)["api_health_url"] == (
        "http://127.0.0.1:8080/api/v2/monitor/health"
    )


# ---------------------------------------------------------------- the script, end to end


def run_entrypoint(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_script_on_airflow_2_generates_its_secrets(tmp_path: Path) -> None:
    site, bindir = tmp_path / "site", tmp_path / "bin"
    fake_dist(site, "2.11.2")
    home = tmp_path / "home"
    home.mkdir()
    bindir.mkdir()
    # the exec'd 'airflow webserver' prints the Airflow settings it inherited
    fake = bindir / "airflow"
    fake.write_text(
        f"#!{sys.executable}\nimport json, os\nprint(json.dumps({{k: v for k, v in "
        "os.environ.items() if k.startswith('AIRFLOW__')}))\n"
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(site),
        "AIRFLOW_HOME": str(home),
        "HARDFLOW_STATE_FILE": str(tmp_path / "role.json"),
        "HARDFLOW_ALLOW_ROOT": "true",
    }
    done = run_entrypoint(["webserver"], env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert set(seen) == {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__WEBSERVER__SECRET_KEY"}
    assert json.loads((tmp_path / "role.json").read_text())["airflow_major"] == 2


def test_airflow_2_secret_needs_per_role(ep: ModuleType, tmp_path: Path) -> None:
    assert set(ep.secret_env({}, empty_cfg(), str(tmp_path), 2, "scheduler")) == {
        "AIRFLOW__CORE__FERNET_KEY"
    }
    # the webserver key now stored is used by a worker, which generates nothing itself
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert ep.secret_env({}, empty_cfg(), str(fresh), 2, "celery-worker") == {}
    assert not (fresh / ".hardflow").exists()


# ---------------------------------------------------------------- health check


class _Health(BaseHTTPRequestHandler):
    payload: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        if self.path != "/health":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(self.payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def webserver() -> Iterator[tuple[str, type[_Health]]]:
    handler = type("Handler", (_Health,), {"payload": {}})
    with serve(handler) as port:
        yield f"http://127.0.0.1:{port}", handler


def airflow2_health(
    scheduler: str | None, triggerer: str | None, dag_processor: str | None
) -> dict[str, Any]:
    return {
        "metadatabase": {"status": "healthy"},
        "scheduler": {"status": scheduler, "latest_scheduler_heartbeat": None},
        "triggerer": {"status": triggerer, "latest_triggerer_heartbeat": None},
        "dag_processor": {"status": dag_processor, "latest_dag_processor_heartbeat": None},
    }


def test_health_standalone_2_accepts_null_dag_processor(
    health: ModuleType, webserver: tuple[str, type[_Health]]
) -> None:
    base, handler = webserver
    state = {"role": "standalone", "airflow_major": 2, "api_health_url": f"{base}/health"}
    handler.payload = airflow2_health("healthy", "healthy", None)
    assert "scheduler=healthy" in health.check("standalone", state, {}, 5)
    handler.payload = airflow2_health("healthy", None, None)  # no triggerer yet
    with pytest.raises(health.Unhealthy, match="triggerer=unknown"):
        health.check("standalone", state, {}, 5)
    handler.payload = airflow2_health("healthy", "healthy", "unhealthy")
    with pytest.raises(health.Unhealthy, match="dag_processor=unhealthy"):
        health.check("standalone", state, {}, 5)


def test_health_webserver_2_needs_only_the_database(
    health: ModuleType, webserver: tuple[str, type[_Health]]
) -> None:
    base, handler = webserver
    handler.payload = airflow2_health("unhealthy", None, None)
    state = {"role": "webserver", "airflow_major": 2, "api_health_url": f"{base}/health"}
    assert "metadatabase=healthy" in health.check("webserver", state, {}, 5)
    handler.payload = {"metadatabase": {"status": "unhealthy"}}
    with pytest.raises(health.Unhealthy, match="metadatabase=unhealthy"):
        health.check("webserver", state, {}, 5)


def test_health_triggerer_2_heartbeat_through_the_webserver(
    health: ModuleType, webserver: tuple[str, type[_Health]]
) -> None:
    base, handler = webserver
    # a process whose command line looks like 'airflow triggerer'
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "airflow", "triggerer"]
    )
    try:
        # until the child has exec'd, /proc shows the forking test process's command line
        deadline = time.monotonic() + 10
        while b"triggerer" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the stand-in triggerer did not start"
            time.sleep(0.01)
        state = {"role": "triggerer", "airflow_major": 2, "pid": proc.pid}
        env = {"HARDFLOW_HEALTH_API_URL": base}
        handler.payload = airflow2_health("healthy", "healthy", None)
        assert "triggerer heartbeat healthy" in health.check("triggerer", state, env, 5)
        handler.payload = airflow2_health("healthy", "unhealthy", None)
        with pytest.raises(health.Unhealthy, match="triggerer=unhealthy"):
            health.check("triggerer", state, env, 5)
    finally:
        proc.kill()
        proc.wait()


def test_health_script_runs_with_python3_alias_shebang() -> None:
    first = HEALTH.read_text().splitlines()[0]
    assert first == "#!/usr/bin/python3 -IS"
    assert ENTRYPOINT.read_text().splitlines()[0] == "#!/usr/bin/python3"


def test_in_image_scripts_are_valid_python_3_11() -> None:
    """The Airflow 2 image runs them on CPython 3.11: no newer syntax."""
    import ast

    for path in (ENTRYPOINT, HEALTH):
        ast.parse(path.read_text(), str(path), feature_version=(3, 11))
