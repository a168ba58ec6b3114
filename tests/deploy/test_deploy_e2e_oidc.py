"""End-to-end: log in to Airflow through a real OpenID Connect provider, in headless Chromium.

The provider is panva's certified ``oidc-provider`` (npm) on loopback, as ``nobody`` without
capabilities (see ``oidc_e2e_helpers`` for the choice and why). Its directory has three users:
``alice`` in ``admins``, ``bob`` in ``viewers`` and ``carol`` in no group. Airflow is the default
image's API server (FAB auth manager) run hardened by podman with what ``hardflow deploy compose
--oidc-issuer ... --role-map admins=Admin --role-map viewers=Viewer`` rendered: its
webserver_config.py, its environment and its secret files (the client secret among them), on
SQLite instead of the project's PostgreSQL, on the host's network so that Airflow and the browser
reach the provider at the same issuer URL. Chromium logs each user in through the provider's
form; the roles are then checked through Airflow's API with the token the UI got:

- alice gets Admin (and may trigger the example DAG);
- bob gets Viewer: may read, is refused triggering (403), in the UI and through the API;
- carol, in no mapped group, is refused at login: no token, no user;
- moving bob into ``admins`` makes him Admin at his next login, and back;
- a wrong password is refused by the provider;
- an ID token naming another issuer, expired, for another audience or with a forged signature is
  refused (the same token re-signed with the real key is accepted: the control);
- the client secret is in no log and in no process environment.

One provider and one API server serve every case (module fixtures). Node.js and npm absent:
skipped, saying so; Node.js too old: failed. ``HARDFLOW_OIDC_TEST_IMAGE`` (local use) names an
image already in podman to test instead of the default spec's (CI builds that once, shared with
the other tests through the ``loaded_image`` fixture).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from oidc_e2e_helpers import (
    ACCESS_DENIED,
    NO_PERMISSION,
    NOBODY,
    TRIGGER_FAILED,
    TRIGGERED,
    Login,
    Provider,
    api,
    browser,
    browser_login,
    hardflow_cache,
    install_provider,
    private_home,
    require_node,
    ui_trigger,
    wait_http,
)

from hardflow.deploy import oidc
from hardflow.deploy.compose import render_compose, write_compose_project
from hardflow.deploy.topology import Images, Topology
from helpers.podman import HARDENED, free_port

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

CLIENT_ID = "hardflow-airflow"
USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-pw-4Jq", "groups": ["admins", "staff"]},
    "bob": {"password": "bob-pw-8Tz", "groups": ["viewers"]},
    "carol": {"password": "carol-pw-2Hk", "groups": ["staff"]},
}
ROLE_MAP = ("admins=Admin", "viewers=Viewer")
DAG = "example"
START_TIMEOUT = 900  # a loaded 2-core CI machine migrates the database slowly
ROLE_CACHE_TTL = 30 + 30  # FAB's [fab] cache_ttl (default 30 s), and a loaded machine's margin


@dataclass
class Airflow:
    url: str
    name: str
    out: Path


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    require_node()
    home = private_home(install_provider(hardflow_cache()))
    secret = home / "client_secret"
    secret.write_text(f"cs-{uuid.uuid4().hex}\n")
    secret.chmod(0o644)  # the test's own secret: readable by the provider's user
    users = home / "users.json"
    state = home / "state"  # the provider's signing key, written once by the provider itself
    state.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(state, NOBODY, NOBODY)
    api_port = free_port()
    prov = Provider(home=home, settings={
        "client_id": CLIENT_ID,
        "client_secret_file": str(secret),
        "redirect_uri": oidc.callback_url(f"http://127.0.0.1:{api_port}"),
        "users_file": str(users),
        "key_file": str(state / "signing-key.json"),
        "api_port": api_port,
    })  # fmt: skip
    prov.set_users(USERS)
    try:
        prov.start("normal")
        yield prov
    finally:
        prov.stop()
        shutil.rmtree(home.parent, ignore_errors=True)


def _podman(
    *args: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} ... failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


@pytest.fixture(scope="module")
def airflow(
    provider: Provider, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Airflow]:
    # HARDFLOW_OIDC_TEST_IMAGE (local use): an image already in podman, e.g. a branch's build
    # under its own name, so that the shared localhost/hardflow/airflow tag is left alone
    image = os.environ.get("HARDFLOW_OIDC_TEST_IMAGE") or request.getfixturevalue("loaded_image")(
        "default"
    )
    port = int(provider.settings["api_port"])
    out = tmp_path_factory.mktemp("oidc-compose")
    settings = oidc.settings(
        provider.issuer, CLIENT_ID, Path(provider.settings["client_secret_file"]), ROLE_MAP
    )
    top = Topology(Images(image, "unused/postgres", "unused/redis"), project="oidc", oidc=settings)
    write_compose_project(top, out)
    # SQLite in a tmpfs instead of the project's PostgreSQL: one container is enough here
    (out / "secrets" / "sql_alchemy_conn").write_text("sqlite:////data/airflow.db")
    service = render_compose(top)["services"]["api-server"]  # type: ignore[index]
    env = dict(service["environment"])
    for var in ("AIRFLOW__CELERY__BROKER_URL_FILE", "AIRFLOW__CELERY__RESULT_BACKEND_FILE",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY"):  # fmt: skip
        env.pop(var, None)
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__WORKERS": "1",  # one process: one cache of the provider's metadata
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "HARDFLOW_HEALTH_API_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__FAB__COOKIE_SECURE": "False",
    })  # fmt: skip
    name = f"oidc-api-{uuid.uuid4().hex[:8]}"
    args = [
        "run", "-d", "--pull=never", "--name", name, *HARDENED, "--network", "host",
        "--user", "50000:0", "--health-cmd", "none",
        "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m,mode=1777",
        "--tmpfs", "/data:rw,nosuid,nodev,size=256m,mode=1777",
        "--tmpfs", "/opt/airflow/logs:rw,nosuid,nodev,size=64m,mode=1777",
        "-v", f"{out / 'config' / 'airflow.cfg'}:/opt/airflow/config/airflow.cfg:ro",
        "-v", f"{out / 'config' / oidc.CONFIG_NAME}:{oidc.CONFIG_PATH}:ro",
    ]  # fmt: skip
    # each secret file on its own, as compose's secrets are (the directory itself is 0700)
    for secret in sorted((out / "secrets").iterdir()):
        args += ["-v", f"{secret}:/run/secrets/{secret.name}:ro"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    args += [image, "api-server", "--host", "127.0.0.1", "--port", str(port)]
    _podman(*args)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/api/v2/monitor/health", START_TIMEOUT, alive=lambda: running(name))
        except TimeoutError:
            logs = _podman("logs", "--tail", "80", name, check=False)
            pytest.fail(f"the API server did not come up:\n{logs.stdout}\n{logs.stderr}")
        _podman("exec", "-e", "_AIRFLOW_DB_MIGRATE=false", "-e", "_AIRFLOW_WWW_USER_CREATE=false",
                name, "/entrypoint", "airflow", "dags", "reserialize", timeout=900)  # fmt: skip
        yield Airflow(url, name, out)
    finally:
        logs = _podman("logs", "--tail", "200", name, check=False)
        (out / "api-server.log").write_text(logs.stdout + logs.stderr)
        _podman("rm", "-f", "-t", "10", name, check=False)


def running(name: str) -> bool:
    state = _podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return state.stdout.strip() == "true"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("selenium")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed (scripts/setup.sh)")
    d = browser(tmp_path_factory.mktemp("oidc-chromium") / "profile")
    try:
        yield d
    finally:
        d.quit()


def login(driver: Any, airflow: Airflow, user: str) -> Login:
    return browser_login(driver, airflow.url, user, USERS[user]["password"])


@pytest.fixture(scope="module")
def admin_token(airflow: Airflow, driver: Any) -> str:
    """alice's token (Admin): to read the users, roles and runs the other cases made."""
    token = login(driver, airflow, "alice").token
    assert token, "alice (admins) got no token"
    return token


def roles_of(airflow: Airflow, admin_token: str, user: str) -> list[str]:
    status, body = api("GET", f"{airflow.url}/auth/fab/v1/users/oidc_{user}", admin_token)
    assert status == 200, body
    return sorted(r["name"] for r in body["roles"])


def trigger(airflow: Airflow, token: str) -> int:
    status, _ = api("POST", f"{airflow.url}/api/v2/dags/{DAG}/dagRuns", token,
                    {"logical_date": None})  # fmt: skip
    return status


def run_count(airflow: Airflow, admin_token: str) -> int:
    status, body = api("GET", f"{airflow.url}/api/v2/dags/{DAG}/dagRuns", admin_token)
    assert status == 200, body
    return int(body["total_entries"])


def now() -> str:
    """A time ``podman logs --since`` takes (RFC 3339, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def logs(airflow: Airflow, since: str | None = None) -> str:
    """The API server's log (stdout and stderr), from ``since`` on."""
    done = _podman("logs", *(["--since", since] if since else []), airflow.name, check=False)
    return done.stdout + done.stderr


def test_admin_group_gets_admin(airflow: Airflow, driver: Any) -> None:
    result = login(driver, airflow, "alice")
    assert result.token, f"no Airflow token after login; at {result.url}: {result.page[:500]}"
    assert roles_of(airflow, result.token, "alice") == ["Admin"]
    assert api("GET", f"{airflow.url}/api/v2/dags", result.token)[0] == 200
    before = run_count(airflow, result.token)
    assert trigger(airflow, result.token) == 200
    shown = ui_trigger(driver, airflow.url, DAG)
    assert TRIGGERED in shown, shown[:500]
    assert run_count(airflow, result.token) == before + 2


def test_viewer_group_gets_viewer_and_cannot_trigger(
    airflow: Airflow, driver: Any, admin_token: str
) -> None:
    result = login(driver, airflow, "bob")
    assert result.token, f"no Airflow token after login; at {result.url}: {result.page[:500]}"
    assert roles_of(airflow, admin_token, "bob") == ["Viewer"]
    assert api("GET", f"{airflow.url}/api/v2/dags/{DAG}", result.token)[0] == 200
    before = run_count(airflow, admin_token)
    assert trigger(airflow, result.token) == 403
    # the UI's own Trigger dialog: refused with the UI's 403 toast, and no run was made
    shown = ui_trigger(driver, airflow.url, DAG)
    assert ACCESS_DENIED in shown and NO_PERMISSION in shown, shown[:500]
    assert TRIGGERED not in shown and TRIGGER_FAILED not in shown, shown[:500]
    assert run_count(airflow, admin_token) == before


def test_user_in_no_mapped_group_gets_no_access(
    airflow: Airflow, driver: Any, admin_token: str
) -> None:
    start = now()
    result = login(driver, airflow, "carol")
    assert result.token is None, f"carol got a token; at {result.url}"
    assert "/auth/login" in result.url, result.url
    # refused before FAB registered her: no user, so no role either
    status, body = api("GET", f"{airflow.url}/auth/fab/v1/users/oidc_carol", admin_token)
    assert status == 404, body
    refusal = "OpenID Connect login of oidc_carol refused: in no mapped group"
    assert refusal in logs(airflow, start)


def eventually(check: Callable[[], int], expected: int, timeout: float) -> int:
    """``check()`` until it gives ``expected`` (at most ``timeout`` s); its last answer."""
    deadline = time.monotonic() + timeout
    while (got := check()) != expected and time.monotonic() < deadline:
        time.sleep(3)
    return got


def test_moving_a_user_between_groups_changes_the_role_at_next_login(
    airflow: Airflow, driver: Any, provider: Provider, admin_token: str
) -> None:
    assert login(driver, airflow, "bob").token
    assert roles_of(airflow, admin_token, "bob") == ["Viewer"]
    provider.set_users({**USERS, "bob": {**USERS["bob"], "groups": ["admins"]}})
    try:
        result = login(driver, airflow, "bob")
        assert result.token
        assert roles_of(airflow, admin_token, "bob") == ["Admin"]  # synced at this login
        # the API server keeps a user's roles for [fab] cache_ttl (30 s) after their last use
        token = result.token
        assert eventually(lambda: trigger(airflow, token), 200, ROLE_CACHE_TTL) == 200
    finally:
        provider.set_users(USERS)
    result = login(driver, airflow, "bob")
    assert result.token
    assert roles_of(airflow, admin_token, "bob") == ["Viewer"]
    token = result.token
    assert eventually(lambda: trigger(airflow, token), 403, ROLE_CACHE_TTL) == 403


def test_wrong_password_is_refused_by_the_provider(airflow: Airflow, driver: Any) -> None:
    result = browser_login(driver, airflow.url, "alice", "not-her-password")
    assert result.token is None
    assert "Invalid login or password" in result.page


# what FAB logs when Authlib or the rendered security manager refuses the ID token
REFUSALS = {
    "wrong-issuer": "iss",
    "expired": "expired",
    "other-audience": "audience mismatch",  # the rendered config's check (Authlib's passes)
    "forged-signature": "signature",
}


@pytest.mark.parametrize("mode", [*REFUSALS, "resigned"])
def test_a_bad_id_token_is_refused(
    airflow: Airflow, driver: Any, provider: Provider, mode: str
) -> None:
    start = now()
    provider.start(mode)
    try:
        result = login(driver, airflow, "alice")
    finally:
        provider.start("normal")
    logged = logs(airflow, start)
    if mode == "resigned":  # the control: re-signed by the real key, nothing changed
        assert result.token, f"resigned: no token; at {result.url}; log:\n{logged[-3000:]}"
        return
    assert result.token is None, f"{mode}: alice got a token; at {result.url}"
    assert "/auth/login" in result.url, result.url
    print(f"{mode}: the API server logged:\n{logged[-1500:]}")
    assert REFUSALS[mode] in logged.lower(), logged[-3000:]


def test_client_secret_is_in_no_log_or_environment(
    airflow: Airflow, driver: Any, provider: Provider
) -> None:
    assert login(driver, airflow, "alice").token  # one more login: the secret was used
    secret = Path(provider.settings["client_secret_file"]).read_text().strip()
    assert secret not in logs(airflow)  # never in a log
    env = _podman("inspect", "--format", "{{json .Config.Env}}", airflow.name).stdout
    assert oidc.SECRET_ENV in env and secret not in env  # nor in the environment listing
    script = (
        "import glob\n"
        "for f in glob.glob('/proc/[0-9]*/environ'):\n"
        "    try: print(open(f, 'rb').read().decode('utf-8', 'replace'))\n"
        "    except OSError: pass\n"
    )
    environs = _podman("exec", airflow.name, "/usr/bin/python3.13", "-c", script).stdout
    assert "AIRFLOW__" in environs  # the API server's processes were read
    assert secret not in environs  # the secret is in none of their environments
    rendered = [p for p in airflow.out.rglob("*") if p.is_file() and p.parent.name != "secrets"]
    assert rendered and not [p for p in rendered if secret in p.read_text(errors="replace")]
