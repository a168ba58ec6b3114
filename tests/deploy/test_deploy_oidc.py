"""`hardflow deploy ... --oidc-issuer`: options, the rendered webserver_config.py and the secret.

The rendered config is executed here against small stand-ins for the two modules it imports
(FAB's security manager base and ``AUTH_OAUTH``), so its login logic is tested for real: the
identity from the validated ID token, the issuer pinned, the groups claim (with the userinfo
fallback), refusal of a user in no mapped group, and the client secret read from its file.
The end-to-end test against a real provider is ``test_deploy_e2e_oidc.py``.
"""

from __future__ import annotations

import ast
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli.deploy import deploy
from hardflow.deploy import oidc
from hardflow.deploy.compose import render_compose, write_compose_project
from hardflow.deploy.helm import write_helm_values
from hardflow.deploy.k8s import K8sOptions, render_manifests, write_k8s_project
from hardflow.deploy.topology import AIRFLOW_ROLES, Images, Topology
from hardflow.errors import HardflowError

yaml = pytest.importorskip("yaml")

SECRET = "Zx9-client-SECRET-4b1d"
ISSUER = "https://idp.example.com/realms/airflow"
IMAGES = Images("localhost/a/airflow:1", "localhost/a/postgres:1", "localhost/a/redis:1")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(SECRET + "\n")
    return path


def make(secret_file: Path, role_map: tuple[str, ...] = ("admins=Admin", "viewers=Viewer"),
         **kw: Any) -> oidc.OidcSettings:  # fmt: skip
    return oidc.settings(ISSUER, "airflow", secret_file, role_map, **kw)


# --------------------------------------------------------------------------- options


def test_role_map_parsing() -> None:
    mapping, custom = oidc.parse_role_map(
        ["admins=Admin", " viewers = Viewer", "ops=Op", "ops=User", "cn=audit,ou=groups=Auditor"]
    )
    assert mapping == {
        "admins": ("Admin",), "viewers": ("Viewer",), "ops": ("Op", "User"),
        "cn=audit,ou=groups": ("Auditor",),  # an LDAP DN as the group: the last '=' splits
    }  # fmt: skip
    assert custom == ("Auditor",)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("admins", "expected GROUP=ROLE"),
        ("=Admin", "the group (before '=') is empty"),
        ("admins=", "the role (after '=') is empty"),
        ("admins=admin", "Airflow's role is 'Admin' (role names are case sensitive)"),
        ("admins=VIEWER", "Airflow's role is 'Viewer'"),
        ("admins=Ad$min", "expected one of Admin, Op, User, Viewer, Public or a custom role"),
        ("adm\x07ins=Admin", "control characters"),
    ],
)
def test_role_map_errors_are_clear(item: str, expected: str) -> None:
    with pytest.raises(oidc.OidcError) as err:
        oidc.parse_role_map([item])
    assert expected in err.value.message
    assert repr(item) in err.value.message  # names the option value it refuses


def test_role_map_twice_and_custom_roles() -> None:
    with pytest.raises(oidc.OidcError, match="given twice"):
        oidc.parse_role_map(["a=Admin", "a=Admin"])
    _, custom = oidc.parse_role_map(["auditors=Auditor", "b=Auditor", "c=Admin"])
    assert custom == ("Auditor",)


@pytest.mark.parametrize(
    "issuer",
    ["https://idp.example.com", "https://idp.example.com:8443/realms/a/", "http://127.0.0.1:9000",
     "http://localhost:3000/oidc", "http://[::1]:4000"],
)  # fmt: skip
def test_good_issuers(issuer: str) -> None:
    oidc.check_issuer(issuer)


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("http://idp.example.com", "plain http is accepted only for a provider on a loopback"),
        ("ftp://idp.example.com", "expected https://HOST"),
        ("idp.example.com", "expected https://HOST"),
        ("https://idp.example.com/?a=1", "no query, fragment or user info"),
        ("https://u:p@idp.example.com", "no query, fragment or user info"),
        ('https://idp.example.com/"""x', "without spaces, quotes"),
        ("https://idp.example.com/{{x}}", "without spaces, quotes"),
        ("https://idp.example.com:99999", "not a URL"),
    ],
)
def test_bad_issuers(issuer: str, expected: str) -> None:
    with pytest.raises(oidc.OidcError, match=expected.replace("?", r"\?")):
        oidc.check_issuer(issuer)


def test_settings_need_a_role_map_openid_and_a_sane_claim(secret_file: Path) -> None:
    with pytest.raises(oidc.OidcError, match="at least one --role-map"):
        make(secret_file, role_map=())
    with pytest.raises(oidc.OidcError, match="expected 'openid'"):
        make(secret_file, scopes=("email",))
    with pytest.raises(oidc.OidcError, match="--groups-claim"):
        make(secret_file, groups_claim="gr oups")
    with pytest.raises(oidc.OidcError, match="--oidc-client-id"):
        oidc.settings(ISSUER, "air flow", secret_file, ["a=Admin"])
    assert make(secret_file, groups_claim="https://example.com/groups").groups_claim


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"  \n", "the file is empty"),
        (b"two words", "white space or control characters inside it"),
        (b"\xff\xfe\x00", "expected UTF-8 text"),
        (b"x" * 5000, "more than 4096 bytes"),
    ],
)
def test_bad_secret_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "s"
    path.write_bytes(content)
    with pytest.raises(oidc.OidcError, match=expected) as err:
        oidc.read_client_secret(path)
    assert str(path) in err.value.message
    if content.strip():
        assert content.decode("utf-8", "replace")[:8] not in err.value.message


def test_missing_secret_file(tmp_path: Path) -> None:
    with pytest.raises(oidc.OidcError, match="expected a file"):
        oidc.read_client_secret(tmp_path / "nope")
    with pytest.raises(oidc.OidcError, match="expected a file"):
        oidc.read_client_secret(tmp_path)


# --------------------------------------------------------------------------- the rendered config


def literals(text: str) -> dict[str, Any]:
    """Module-level NAME = <literal> assignments of the rendered file."""
    found: dict[str, Any] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def test_config_is_valid_python_without_the_secret(secret_file: Path) -> None:
    text = oidc.render_webserver_config(make(secret_file))
    compile(text, "webserver_config.py", "exec")
    assert SECRET not in text
    # the chart's tpl and compose's interpolation must leave it alone
    assert "{{" not in text
    values = literals(text)
    assert values["AUTH_ROLES_MAPPING"] == {"admins": ["Admin"], "viewers": ["Viewer"]}
    assert values["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert values["AUTH_USER_REGISTRATION"] is True
    assert values["AUTH_USER_REGISTRATION_ROLE"] is None
    assert values["OIDC_ISSUER"] == ISSUER
    assert values["OIDC_GROUPS_CLAIM"] == "groups"


def test_hostile_values_stay_literals(secret_file: Path) -> None:
    hostile = "a'\"\"\"\\); import os; os.system('x') #"
    settings = make(secret_file, role_map=(f"{hostile}=Admin",), groups_claim="x.y:z/w-1")
    text = oidc.render_webserver_config(settings)
    assert literals(text)["AUTH_ROLES_MAPPING"] == {hostile.strip(): ["Admin"]}
    assert "import os;" not in text.replace(repr(hostile.strip()), "")


class FakeRemote:
    def __init__(self, issuer: str, userinfo: dict[str, Any] | None = None) -> None:
        self.server_metadata: dict[str, Any] = {"issuer": issuer}
        if userinfo is not None:
            self.server_metadata["userinfo_endpoint"] = f"{issuer}/me"
        self._userinfo = userinfo or {}
        self.userinfo_calls = 0

    def load_server_metadata(self) -> dict[str, Any]:
        return self.server_metadata

    def userinfo(self, token: dict[str, Any]) -> dict[str, Any]:
        assert "access_token" in token
        self.userinfo_calls += 1
        return self._userinfo


class FakeBase:
    """Stand-in for FabAirflowSecurityManagerOverride: the few members the config uses."""

    def __init__(self, roles: dict[str, str], remote: FakeRemote) -> None:
        self.oauth_remotes = {"oidc": remote}
        self.mapping = roles
        self.logged_in: list[dict[str, Any]] = []

    def get_roles_from_keys(self, keys: list[str]) -> set[str]:
        return {role for key in keys for role in self.config["AUTH_ROLES_MAPPING"].get(key, [])}

    def auth_user_oauth(self, userinfo: dict[str, Any], rotate_session_id: bool = True) -> str:
        self.logged_in.append(userinfo)
        return userinfo["username"]


@pytest.fixture
def load_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Execute a rendered config with the stand-in modules; returns its namespace."""
    override = types.ModuleType("airflow.providers.fab.auth_manager.security_manager.override")
    override.FabAirflowSecurityManagerOverride = FakeBase  # type: ignore[attr-defined]
    const = types.ModuleType("flask_appbuilder.const")
    const.AUTH_OAUTH = 4  # type: ignore[attr-defined]
    parts = ["airflow", "providers", "fab", "auth_manager", "security_manager"]
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    monkeypatch.setitem(sys.modules, override.__name__, override)
    monkeypatch.setitem(sys.modules, "flask_appbuilder", types.ModuleType("flask_appbuilder"))
    monkeypatch.setitem(sys.modules, "flask_appbuilder.const", const)

    def load(text: str) -> dict[str, Any]:
        namespace: dict[str, Any] = {"__name__": "webserver_config"}
        exec(compile(text, "webserver_config.py", "exec"), namespace)
        namespace["SECURITY_MANAGER_CLASS"].config = namespace
        return namespace

    yield load


def manager(ns: dict[str, Any], remote: FakeRemote) -> Any:
    return ns["SECURITY_MANAGER_CLASS"]({}, remote)


def token(claims: dict[str, Any] | None) -> dict[str, Any]:
    resp: dict[str, Any] = {"access_token": "at", "id_token": "x.y.z"}
    if claims is not None:
        resp["userinfo"] = claims
    return resp


def test_config_reads_the_secret_from_the_file_at_start(
    load_config: Any, secret_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = oidc.render_webserver_config(make(secret_file))
    monkeypatch.setenv(oidc.SECRET_ENV, str(secret_file))
    ns = load_config(text)
    assert ns["AUTH_TYPE"] == 4
    assert ns["SECURITY_MANAGER_CLASS"].__mro__[1] is FakeBase
    app = ns["OAUTH_PROVIDERS"][0]["remote_app"]
    assert app["client_secret"] == SECRET
    assert app["server_metadata_url"] == f"{ISSUER}/.well-known/openid-configuration"
    assert app["client_kwargs"]["code_challenge_method"] == "S256"
    assert "openid" in app["client_kwargs"]["scope"].split()
    monkeypatch.delenv(oidc.SECRET_ENV)
    assert load_config(text)["OAUTH_PROVIDERS"][0]["remote_app"]["client_secret"] is None
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv(oidc.SECRET_ENV, str(empty))
    with pytest.raises(RuntimeError, match="the file is empty"):
        load_config(text)
    monkeypatch.setenv(oidc.SECRET_ENV, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="cannot read"):
        load_config(text)


def test_login_takes_identity_and_groups_from_the_id_token(
    load_config: Any, secret_file: Path
) -> None:
    ns = load_config(oidc.render_webserver_config(make(secret_file)))
    remote = FakeRemote(ISSUER, userinfo={"sub": "u1", "groups": ["admins"]})
    sm = manager(ns, remote)
    claims = {"iss": ISSUER, "aud": "airflow", "sub": "u1", "preferred_username": "admin",
              "email": "a@x", "groups": ["viewers", 7]}  # fmt: skip
    info = sm.get_oauth_user_info("oidc", token(claims))
    # keyed on sub, never on a name the user chooses (no take-over of the local "admin")
    assert info["username"] == "oidc_u1"
    assert info["role_keys"] == ["viewers"]
    assert remote.userinfo_calls == 0
    assert sm.auth_user_oauth(info) == "oidc_u1"
    assert sm._oauth_calculate_user_roles(info) == ["Viewer"]


def test_groups_from_userinfo_when_the_token_has_none(load_config: Any, secret_file: Path) -> None:
    ns = load_config(oidc.render_webserver_config(make(secret_file, groups_claim="roles")))
    remote = FakeRemote(ISSUER, userinfo={"sub": "u2", "roles": "admins"})
    info = manager(ns, remote).get_oauth_user_info(
        "oidc", token({"iss": ISSUER, "aud": "airflow", "sub": "u2"})
    )
    assert info["role_keys"] == ["admins"]
    assert remote.userinfo_calls == 1
    other = FakeRemote(ISSUER, userinfo={"sub": "someone-else", "roles": ["admins"]})
    with pytest.raises(ValueError, match="another subject"):
        manager(ns, other).get_oauth_user_info(
            "oidc", token({"iss": ISSUER, "aud": "airflow", "sub": "u2"})
        )


@pytest.mark.parametrize(
    ("metadata_issuer", "claims", "expected"),
    [
        (
            "https://evil.example.com",
            {"iss": "https://evil.example.com", "aud": "airflow", "sub": "u"},
            "issuer",
        ),
        (
            ISSUER,
            {"iss": "https://evil.example.com", "aud": "airflow", "sub": "u"},
            "issuer mismatch",
        ),
        (ISSUER, None, "no validated ID token"),
        (ISSUER, {"iss": ISSUER}, "no validated ID token"),
    ],
)
def test_wrong_issuer_or_no_id_token_is_refused(
    load_config: Any, secret_file: Path, metadata_issuer: str, claims: Any, expected: str
) -> None:
    ns = load_config(oidc.render_webserver_config(make(secret_file)))
    sm = manager(ns, FakeRemote(metadata_issuer, userinfo={"sub": "u", "groups": ["admins"]}))
    with pytest.raises(ValueError, match=expected):
        sm.get_oauth_user_info("oidc", token(claims))


@pytest.mark.parametrize(
    ("aud", "azp", "refused"),
    [
        ("airflow", None, False),
        (["airflow"], None, False),
        (["airflow", "api"], "airflow", False),
        ("other", None, True),
        (["other"], "airflow", True),  # Authlib lets this one through (aud checked via azp)
        (["other", "api"], "airflow", True),
        (["airflow", "api"], None, True),  # several audiences: azp must name the client
        (["airflow", "api"], "api", True),
        (None, None, True),
    ],
)
def test_the_audience_must_be_the_client(
    load_config: Any, secret_file: Path, aud: Any, azp: Any, refused: bool
) -> None:
    ns = load_config(oidc.render_webserver_config(make(secret_file)))
    sm = manager(ns, FakeRemote(ISSUER))
    claims = {"iss": ISSUER, "sub": "u", "groups": ["admins"], "aud": aud, "azp": azp}
    if not refused:
        assert sm.get_oauth_user_info("oidc", token(claims))["username"] == "oidc_u"
        return
    with pytest.raises(ValueError, match="audience mismatch"):
        sm.get_oauth_user_info("oidc", token(claims))


def test_user_in_no_mapped_group_is_refused(load_config: Any, secret_file: Path) -> None:
    ns = load_config(oidc.render_webserver_config(make(secret_file)))
    sm = manager(ns, FakeRemote(ISSUER))
    info = sm.get_oauth_user_info(
        "oidc", token({"iss": ISSUER, "aud": "airflow", "sub": "u3", "groups": ["x"]})
    )
    assert sm.auth_user_oauth(info) is None
    assert sm.logged_in == []
    assert sm._oauth_calculate_user_roles(info) == []  # and never a default role


# --------------------------------------------------------------------------- the deployments


def every_file(root: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path, path.read_text(encoding="utf-8", errors="replace")


def test_compose_secret_only_in_the_secret_file(secret_file: Path, tmp_path: Path) -> None:
    top = Topology(IMAGES, project="hf", oidc=make(secret_file))
    out = tmp_path / "compose"
    write_compose_project(top, out, chown=False)
    holders = [p.relative_to(out).as_posix() for p, text in every_file(out) if SECRET in text]
    assert holders == ["secrets/oidc_client_secret"]
    assert (out / "secrets/oidc_client_secret").stat().st_mode & 0o777 == 0o600
    config = (out / "config/webserver_config.py").read_text()
    assert literals(config)["AUTH_ROLES_MAPPING"] == {"admins": ["Admin"], "viewers": ["Viewer"]}
    doc = yaml.safe_load((out / "compose.yaml").read_text())
    assert doc["secrets"]["oidc_client_secret"] == {"file": "./secrets/oidc_client_secret"}
    for name in ("airflow-init", *AIRFLOW_ROLES, "celery-worker-1"):
        svc = doc["services"][name]
        env = svc["environment"]
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == oidc.FAB_AUTH_MANAGER
        assert env["AIRFLOW__FAB__CONFIG_FILE"] == oidc.CONFIG_PATH
        assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" not in env
        assert f"./config/webserver_config.py:{oidc.CONFIG_PATH}:ro" in svc["volumes"]
        login = name == "api-server"
        assert ("oidc_client_secret" in svc["secrets"]) is login
        assert (env.get(oidc.SECRET_ENV) == "/run/secrets/oidc_client_secret") is login


def test_compose_leaves_the_api_base_url_unset(secret_file: Path) -> None:
    # Unset, FAB sends the browser to "/" after the login ([api] base_url's fallback): the host
    # and port the browser used, whatever the proxy or --port in front (the OIDC e2e logs in
    # so). A base_url guessed from --port would send users behind a proxy to 127.0.0.1.
    for port in (8080, 18080):
        top = Topology(IMAGES, project="hf", api_port=port, oidc=make(secret_file))
        for name, svc in render_compose(top)["services"].items():  # type: ignore[attr-defined]
            env = svc.get("environment", {})
            assert not [k for k in env if k.endswith("__BASE_URL")], name


def test_compose_without_oidc_is_unchanged() -> None:
    doc = render_compose(Topology(IMAGES, project="hf"))
    env = doc["services"]["api-server"]["environment"]  # type: ignore[index]
    assert "AIRFLOW__CORE__AUTH_MANAGER" not in env and oidc.SECRET_ENV not in env
    assert "oidc_client_secret" not in doc["secrets"]  # type: ignore[operator]


def test_k8s_secret_only_in_secrets_yaml(secret_file: Path, tmp_path: Path) -> None:
    top = Topology(IMAGES, project="hf", oidc=make(secret_file))
    out = tmp_path / "k8s"
    write_k8s_project(top, K8sOptions(), out)
    assert [p.name for p, text in every_file(out) if SECRET in text] == ["secrets.yaml"]
    secrets = [d for d in yaml.safe_load_all((out / "secrets.yaml").read_text()) if d]
    assert {"hf-oidc"} <= {d["metadata"]["name"] for d in secrets}
    docs = render_manifests(top, K8sOptions())
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert oidc.CONFIG_NAME in config["data"]
    for doc in docs:
        if doc["kind"] != "Deployment" or doc["metadata"]["name"] in ("postgres", "redis"):
            continue
        spec = doc["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == oidc.FAB_AUTH_MANAGER
        login = doc["metadata"]["name"].endswith("api-server")
        secrets_used = {v.get("secret", {}).get("secretName") for v in spec["volumes"]}
        assert ("hf-oidc" in secrets_used) is login, doc["metadata"]["name"]
        assert (oidc.SECRET_ENV in env) is login


def test_oidc_deployments_pass_the_manifest_audit(secret_file: Path, tmp_path: Path) -> None:
    audit = pytest.importorskip("hardflow.audit.run")
    from hardflow.audit.model import Level

    top = Topology(IMAGES, project="hf", oidc=make(secret_file))
    compose = write_compose_project(top, tmp_path / "c", chown=False)
    k8s = write_k8s_project(top, K8sOptions(), tmp_path / "k", podman_play=True)
    write_helm_values(top, K8sOptions(), tmp_path / "h")  # its ConfigMap: webserver_config.py
    for path in (compose.compose_file, k8s.manifests, tmp_path / "h" / "helm-secrets.yaml"):
        report = audit.audit_manifests([path])
        assert not report.fails(Level.WARN), path


def test_helm_secret_only_in_helm_secrets(secret_file: Path, tmp_path: Path) -> None:
    top = Topology(IMAGES, project="hf", oidc=make(secret_file))
    out = tmp_path / "helm"
    write_helm_values(top, K8sOptions(), out)
    assert [p.name for p, text in every_file(out) if SECRET in text] == ["helm-secrets.yaml"]
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert values["config"]["core"]["auth_manager"] == oidc.FAB_AUTH_MANAGER
    api = values["apiServer"]
    env = {e["name"]: e["value"] for e in api["env"]}
    mounts = {m["mountPath"] for m in api["extraVolumeMounts"]}
    assert env["AIRFLOW__FAB__CONFIG_FILE"].rpartition("/")[0] in mounts
    assert env[oidc.SECRET_ENV].rpartition("/")[0] in mounts
    docs = [d for d in yaml.safe_load_all((out / "helm-secrets.yaml").read_text()) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    compile(config["data"][oidc.CONFIG_NAME], "webserver_config.py", "exec")


def test_replayed_chart_mounts_the_oidc_files_in_the_api_server_alone(
    secret_file: Path, tmp_path: Path
) -> None:
    from hardflow.deploy.chart import chart_documents
    from hardflow.deploy.helm import oidc_names, render_helm_values
    from hardflow.deploy.yamlout import dump_all

    top = Topology(IMAGES, project="hf", oidc=make(secret_file))
    docs = chart_documents(render_helm_values(top, K8sOptions()))
    config_map, secret = oidc_names(top)
    for doc in docs:
        spec = doc["spec"]["template"]["spec"]
        used = {v.get("secret", {}).get("secretName") or v.get("configMap", {}).get("name")
                for v in spec.get("volumes", [])}  # fmt: skip
        api = doc["metadata"]["name"].endswith("api-server")
        assert ({config_map, secret} <= used) is api, doc["metadata"]["name"]
    audit = pytest.importorskip("hardflow.audit.run")
    path = tmp_path / "chart.yaml"
    path.write_text(dump_all(docs))
    failed = [f.id for f in audit.audit_manifests([path]).findings if f.failed]
    assert not [f for f in failed if f.startswith("PSS-")], failed


def test_cli_renders_and_never_prints_the_secret(secret_file: Path, tmp_path: Path) -> None:
    args = ["--oidc-issuer", ISSUER, "--oidc-client-id", "airflow",
            "--oidc-client-secret-file", str(secret_file), "--role-map", "admins=Admin",
            "--role-map", "viewers=Viewer", "--groups-claim", "grp"]  # fmt: skip
    for command in (["compose", "--port", "18080"], ["k8s"], ["helm-values"]):
        out = tmp_path / command[0]
        result = CliRunner().invoke(deploy, [*command, "--out", str(out), *args, "--json"])
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
        data = json.loads(result.output)
        assert data["oidc"]["role_map"] == {"admins": ["Admin"], "viewers": ["Viewer"]}
        assert data["oidc"]["redirect_uri"].endswith("/auth/oauth-authorized/oidc")
    text = CliRunner().invoke(deploy, ["compose", "--out", str(tmp_path / "t"), *args])
    assert text.exit_code == 0 and SECRET not in text.output
    assert "http://127.0.0.1:8080/auth/oauth-authorized/oidc" in text.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--role-map", "a=Admin"], "--role-map: expected --oidc-issuer URL with them"),
        (
            ["--oidc-issuer", ISSUER],
            "needs --oidc-client-id, --oidc-client-secret-file, --role-map",
        ),
        (
            [
                "--oidc-issuer",
                ISSUER,
                "--oidc-client-id",
                "c",
                "--oidc-client-secret-file",
                "S",
                "--role-map",
                "a=admin",
            ],
            "Airflow's role is 'Admin'",
        ),
        (
            [
                "--official-override",
                "--oidc-issuer",
                ISSUER,
                "--oidc-client-id",
                "c",
                "--oidc-client-secret-file",
                "S",
                "--role-map",
                "a=Admin",
            ],
            "without --official",
        ),
    ],
)
def test_cli_errors(secret_file: Path, tmp_path: Path, args: list[str], expected: str) -> None:
    args = [str(secret_file) if a == "S" else a for a in args]
    result = CliRunner().invoke(deploy, ["compose", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, HardflowError), result.output
    assert expected in result.exception.message
    assert not (tmp_path / "o").exists()  # nothing rendered


# --------------------------------------------------------------------------- the e2e's guard


def test_the_e2e_skips_without_node_and_fails_on_an_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import oidc_e2e_helpers as e2e

    monkeypatch.setattr(e2e.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="node and npm not installed"):
        e2e.require_node()
    monkeypatch.setattr(e2e.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(e2e, "node_version", lambda: (18, 19))
    with pytest.raises(pytest.fail.Exception, match=r"Node.js 18.19 .*needs Node.js >= 20.19"):
        e2e.require_node()
    monkeypatch.setattr(e2e, "node_version", lambda: (20, 19))
    e2e.require_node()
