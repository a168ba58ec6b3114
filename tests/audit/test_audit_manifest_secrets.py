"""HF-M-0001: secrets in plain env values (Kubernetes, Compose) and in ConfigMaps are FATAL;
references, empty values and placeholders are not; hardflow's own renders pass."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hardflow.audit.manifest_checks import CHECKS, load_manifests, run_manifest_checks
from hardflow.audit.manifest_secrets import (
    canonical_name,
    is_placeholder,
    is_reference,
    secret_name,
)
from hardflow.audit.model import Finding, Level

Doc = dict[str, Any]
RULE = "HF-M-0001"
FERNET = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="  # the shape of a real Fernet key
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5" * 4


def finding(tmp_path: Path, *docs: Doc) -> Finding:
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return next(f for f in run_manifest_checks(load_manifests([path])) if f.id == RULE)


def details(f: Finding) -> list[str]:
    return [f"{i.subject}: {i.detail}" for i in f.items]


def deployment(env: list[Doc]) -> Doc:
    container = {"name": "scheduler", "image": "x:1", "env": env}
    init = {"name": "migrate", "image": "x:1", "env": [e for e in env if e["name"] == "INIT"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "airflow"},
        "spec": {"template": {"spec": {"initContainers": [init], "containers": [container]}}},
    }


def compose(environment: dict[str, Any] | list[str]) -> Doc:
    return {"services": {"airflow": {"image": "x:1", "environment": environment}}}


def config_map(data: dict[str, str] | None = None, binary: dict[str, str] | None = None) -> Doc:
    doc: Doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "airflow-config"}}
    if data is not None:
        doc["data"] = data
    if binary is not None:
        doc["binaryData"] = binary
    return doc


def test_the_rule_is_a_fatal_row_of_the_table() -> None:
    check = CHECKS[RULE]
    assert check.level == Level.FATAL and check.remediation and "ConfigMap" in check.title


# ---------------------------------------------------------------------------------------------
# Kubernetes env


def test_kubernetes_env_value_fails(tmp_path: Path) -> None:
    f = finding(tmp_path, deployment([
        {"name": "AIRFLOW__CORE__FERNET_KEY", "value": FERNET},
        {"name": "AIRFLOW__API_AUTH__JWT_SECRET", "value": "j9Kq2vLm"},
        {"name": "AIRFLOW_CONN_WAREHOUSE", "value": "postgres://etl:Tr0ub4dor@db:5432/dw"},
        {"name": "INIT", "value": "fine"},
        {"name": "AIRFLOW__API__SECRET_KEY", "value": "abc123"},
    ]))  # fmt: skip
    assert f.level == Level.FATAL
    assert details(f) == [
        "Deployment/airflow/scheduler: env AIRFLOW__CORE__FERNET_KEY: a secret by its name",
        "Deployment/airflow/scheduler: env AIRFLOW__API_AUTH__JWT_SECRET: a secret by its name",
        "Deployment/airflow/scheduler: env AIRFLOW_CONN_WAREHOUSE: credentials in a URL",
        "Deployment/airflow/scheduler: env AIRFLOW__API__SECRET_KEY: a secret by its name",
    ]
    assert all(i.location.endswith("input.yaml") for i in f.items)
    # the report names the variable, never the value
    assert not any(s in str(f.items) for s in (FERNET, "j9Kq2vLm", "Tr0ub4dor", "abc123"))


def test_an_init_container_is_looked_at(tmp_path: Path) -> None:
    f = finding(tmp_path, deployment([{"name": "INIT", "value": GITHUB_TOKEN}]))
    assert details(f) == [
        "Deployment/airflow/migrate: initContainer: env INIT: GitHub token",
        "Deployment/airflow/scheduler: env INIT: GitHub token",
    ]


def test_kubernetes_references_pass(tmp_path: Path) -> None:
    ref = {"secretKeyRef": {"name": "hardflow-fernet-key", "key": "fernet-key"}}
    f = finding(tmp_path, deployment([
        {"name": "AIRFLOW__CORE__FERNET_KEY", "valueFrom": ref},
        {"name": "AIRFLOW__CORE__FERNET_KEY_FILE", "value": "/run/secrets/airflow/fernet_key"},
        {"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "value": "cat /run/secrets/conn"},
        {"name": "AIRFLOW__CORE__FERNET_KEY_SECRET", "value": "airflow/config/fernet_key"},
        {"name": "AIRFLOW__SECRETS__BACKEND", "value": "airflow.secrets.local.LocalBackend"},
        {"name": "AIRFLOW__API__SECRET_KEY", "value": ""},
        {"name": "DB_PASSWORD", "value": "$(POSTGRES_PASSWORD)"},
        {"name": "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "value": "admin:admin"},
        {"name": "CONNECTION_CHECK_MAX_COUNT", "value": "60"},
        {"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "value": "postgresql://db/airflow"},
    ]))  # fmt: skip
    assert f.level == Level.PASS, details(f)


# ---------------------------------------------------------------------------------------------
# Compose environment


def test_compose_environment_fails_in_both_syntaxes(tmp_path: Path) -> None:
    conn = "postgresql+psycopg2://airflow:airflow@postgres/airflow"
    as_map = finding(tmp_path, compose({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
                                        "OIDC_CLIENT_SECRET": "0a1b2c3d"}))  # fmt: skip
    assert details(as_map) == [
        "service/airflow: environment AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: credentials in a URL",
        "service/airflow: environment OIDC_CLIENT_SECRET: a secret by its name",
    ]
    as_list = finding(tmp_path, compose(["_AIRFLOW_WWW_USER_PASSWORD=hunter2"]))
    assert as_list.level == Level.FATAL
    assert details(as_list) == [
        "service/airflow: environment _AIRFLOW_WWW_USER_PASSWORD: a secret by its name"
    ]


def test_compose_references_and_placeholders_pass(tmp_path: Path) -> None:
    doc = compose({
        "AIRFLOW__CORE__FERNET_KEY": "",
        "_AIRFLOW_WWW_USER_PASSWORD": "${_AIRFLOW_WWW_USER_PASSWORD:-}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:${PG_PASSWORD}@pg/airflow",
        "AIRFLOW__API_AUTH__JWT_SECRET_FILE": "/run/secrets/jwt_secret",
        "REDIS_PASSWORD": "<your redis password>",
        "API_TOKEN": "changeme",
        "FROM_THE_HOST_SECRET": None,
    })  # fmt: skip
    doc["services"]["airflow"]["secrets"] = ["jwt_secret"]
    assert finding(tmp_path, doc).level == Level.PASS
    assert finding(tmp_path, compose(["POSTGRES_PASSWORD", "POSTGRES_USER=airflow"])).level == (
        Level.PASS
    )


# ---------------------------------------------------------------------------------------------
# ConfigMaps


def test_config_map_data_fails_by_key_and_by_value(tmp_path: Path) -> None:
    cfg = "[api_auth]\njwt_secret = 5f4dcc3b5aa765d6\n[core]\nparallelism = 32\n"
    webserver = 'OAUTH_PROVIDERS = [{\n    "client_id": "airflow",\n    "client_secret": "Qz8-x",\n'
    f = finding(tmp_path, config_map({
        "AIRFLOW__CORE__FERNET_KEY": FERNET,
        "airflow.cfg": cfg,
        "webserver_config.py": webserver,
        "connections.json": json.dumps({"warehouse": {"conn_type": "postgres",
                                                      "password": "pg-Pass1"}}),
        "notes": f"token for the bot: {GITHUB_TOKEN}",
    }))  # fmt: skip
    assert f.level == Level.FATAL
    assert details(f) == [
        "ConfigMap/airflow-config: data.AIRFLOW__CORE__FERNET_KEY: a secret by its name",
        "ConfigMap/airflow-config: data.airflow.cfg: sets jwt_secret: a secret by its name",
        "ConfigMap/airflow-config: data.connections.json: field password: a secret by its name",
        "ConfigMap/airflow-config: data.notes: GitHub token",
        "ConfigMap/airflow-config: data.webserver_config.py: sets client_secret: a secret by "
        "its name",
    ]


def test_config_map_binary_data_and_an_embedded_pod_template_fail(tmp_path: Path) -> None:
    template = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker"},
        "spec": {"containers": [{"name": "base", "image": "x:1", "env": [
            {"name": "AIRFLOW__CORE__FERNET_KEY", "value": FERNET},
        ]}]},
    })  # fmt: skip
    encoded = base64.b64encode(f"export GITHUB_TOKEN={GITHUB_TOKEN}\n".encode()).decode()
    f = finding(tmp_path, config_map({"pod_template.yaml": template}, {"env.sh": encoded}))
    assert details(f) == [
        "ConfigMap/airflow-config: data.pod_template.yaml: base env AIRFLOW__CORE__FERNET_KEY: "
        "a secret by its name",
        "ConfigMap/airflow-config: binaryData.env.sh: GitHub token",
        "ConfigMap/airflow-config: binaryData.env.sh: sets GITHUB_TOKEN: a secret by its name",
    ]


def test_config_maps_of_settings_pass(tmp_path: Path) -> None:
    cfg = (
        "# secrets come from the *_FILE variables\n[core]\nexecutor = CeleryExecutor\n"
        "fernet_key =\nsecret_key = {{ .Values.secretKey }}\n[secrets]\n"
        "backend = airflow.providers.hashicorp.secrets.vault.VaultBackend\n"
    )
    webserver = 'AUTH_ROLE_PUBLIC = "Viewer"\nSECRET_KEY = os.environ["AIRFLOW__API__SECRET_KEY"]\n'
    template = "kind: Pod\nspec:\n  automountServiceAccountToken: false\n  volumes:\n" \
               "  - secret:\n      secretName: airflow\n"  # fmt: skip
    f = finding(tmp_path, config_map({
        "airflow.cfg": cfg, "webserver_config.py": webserver, "pod_template.yaml": template,
        "AIRFLOW__CORE__PARALLELISM": "32", "jwtSecretName": "hardflow-jwt-secret",
    }, {"logo.png": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()}))  # fmt: skip
    assert f.level == Level.PASS, details(f)


def test_a_token_response_field_name_is_no_secret(tmp_path: Path) -> None:
    # FAB's OAUTH_PROVIDERS "token_key" names the field of the token response it keeps: each of
    # the ways a ConfigMap or an environment may write it passes
    webserver = (
        'OAUTH_PROVIDERS = [\n    {\n        "name": "oidc",\n'
        '        "token_key": "access_token",\n        "remote_app": {\n'
        '            "client_secret": _client_secret(),\n        },\n    }\n]\n'
        "token_key = 'id_token'\ntoken_secret: oauth_token_secret\n"
    )
    fields = json.dumps({"providers": [{"name": "oidc", "token_key": "oauth_token"}]})
    f = finding(
        tmp_path,
        config_map({"webserver_config.py": webserver, "providers.json": fields}),
        compose({"TOKEN_KEY": "access_token"}),
    )
    assert f.level == Level.PASS, details(f)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('"token_key": "Qz8-x2vLm9",', "sets token_key: a secret by its name"),  # not a field
        ('"token_key": "refresh_token_Qz8",', "sets token_key: a secret by its name"),
        ('"oauth_token_key": "access_token",', "sets oauth_token_key: a secret by its name"),
        ('"client_secret": "access_token",', "sets client_secret: a secret by its name"),
        ('"token_secret": "access_token",', "sets token_secret: a secret by its name"),
        (f'"token_key": "{GITHUB_TOKEN}",', "GitHub token"),  # a real token's format
    ],
)
def test_the_token_field_allowance_is_narrow(tmp_path: Path, line: str, why: str) -> None:
    f = finding(tmp_path, config_map({"webserver_config.py": f"PROVIDER = {{\n    {line}\n}}\n"}))
    assert f.level == Level.FATAL
    assert f"ConfigMap/airflow-config: data.webserver_config.py: {why}" in details(f)
    env = finding(tmp_path, compose({"TOKEN_KEY": "Qz8-x2vLm9"}))
    assert details(env) == ["service/airflow: environment TOKEN_KEY: a secret by its name"]


def test_the_rendered_oidc_config_passes_and_an_inlined_client_secret_fails(
    tmp_path: Path,
) -> None:
    from hardflow.deploy import oidc

    secret = tmp_path / "client-secret"
    secret.write_text("cs-7Hq2vLm9xPz\n")
    settings = oidc.settings(
        "https://login.example.com/realms/corp", "airflow", secret, ["admins=Admin"]
    )
    text = oidc.render_webserver_config(settings)
    assert '\n        "token_key": "access_token",\n' in text  # on its own line
    assert finding(tmp_path, config_map({oidc.CONFIG_NAME: text})).level == Level.PASS
    inlined = text.replace(
        '"client_secret": _client_secret(),', '"client_secret": "cs-7Hq2vLm9xPz",'
    )
    assert inlined != text
    f = finding(tmp_path, config_map({oidc.CONFIG_NAME: inlined}))
    assert f.level == Level.FATAL
    assert details(f) == [
        f"ConfigMap/airflow-config: data.{oidc.CONFIG_NAME}: sets client_secret: a secret by its "
        "name"
    ]


def test_skipped_without_workloads_or_config_maps(tmp_path: Path) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {}}
    assert finding(tmp_path, service).level == Level.SKIP
    assert finding(tmp_path, config_map({"a": "b"})).level == Level.PASS


# ---------------------------------------------------------------------------------------------
# the name and value tests


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("AIRFLOW__CORE__FERNET_KEY", True), ("AIRFLOW__API_AUTH__JWT_SECRET", True),
        ("AIRFLOW__WEBSERVER__SECRET_KEY", True), ("OIDC_CLIENT_SECRET", True),
        ("clientSecret", True), ("db-password", True), ("AWS_ACCESS_KEY", True),
        ("SLACK_TOKEN", True), ("tls.key", True), ("GOOGLE_APPLICATION_CREDENTIALS_JSON", True),
        ("AIRFLOW__CORE__FERNET_KEY_FILE", False), ("AIRFLOW__API__SECRET_KEY_CMD", False),
        ("AIRFLOW__SECRETS__BACKEND_KWARGS", False), ("fernetKeySecretName", False),
        ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", False), ("TOKEN_URL", False),
        ("KEYCLOAK_REALM", False), ("AIRFLOW__API__ACCESS_CONTROL_ALLOW_ORIGINS", False),
        ("AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME", False), ("POSTGRES_USER", False),
    ],
)  # fmt: skip
def test_secret_names(name: str, secret: bool) -> None:
    assert secret_name(name) is secret, canonical_name(name)


def test_placeholders_and_references() -> None:
    for text in ("", "  ", "${X}", "$X", "$(X)", "{{ .Values.x }}", "<password>", "changeme",
                 "CHANGE_ME", "xxxx", "****", "true", "%(password)s"):  # fmt: skip
        assert is_placeholder(text), text
    for text in ("hunter2", "password", "secret", FERNET, "0"):
        assert not is_placeholder(text), text
    assert is_reference("AIRFLOW__CORE__FERNET_KEY_SECRET", "airflow/fernet_key")
    assert not is_reference("AIRFLOW__API_AUTH__JWT_SECRET", "airflow/jwt")
    assert not is_reference("AIRFLOW__CORE__FERNET_KEY_SECRET", "two words")
    assert not is_reference("OIDC_CLIENT_SECRET", "abc")


# ---------------------------------------------------------------------------------------------
# what hardflow deploy renders today


def _renders(tmp_path: Path) -> list[tuple[str, Path]]:
    from hardflow.deploy.chart import chart_documents
    from hardflow.deploy.compose import write_compose_project
    from hardflow.deploy.helm import render_helm_values
    from hardflow.deploy.k8s import K8sOptions, write_k8s_project
    from hardflow.deploy.topology import Images, Topology
    from hardflow.deploy.yamlout import dump_all

    images = Images("localhost/a/airflow:1", "localhost/a/postgres:1", "localhost/a/redis:1")
    top = Topology(images, workers=2)
    out = [("compose", write_compose_project(top, tmp_path / "c", chown=False).compose_file)]
    for executor in ("celery", "kubernetes"):
        opts = K8sOptions(executor=executor)
        out.append((f"k8s {executor}", write_k8s_project(top, opts, tmp_path / executor).manifests))
        chart = tmp_path / f"chart-{executor}.yaml"
        chart.write_text(dump_all(chart_documents(render_helm_values(top, opts))))
        out.append((f"helm-values {executor} (chart replay)", chart))
    return out


def test_hardflow_deploy_renders_have_no_plain_secret(tmp_path: Path) -> None:
    renders = _renders(tmp_path)
    assert len(renders) == 5
    seen_config_maps = 0
    for what, path in renders:
        manifests = load_manifests([path])
        seen_config_maps += len(manifests.config_maps)
        f = next(f for f in run_manifest_checks(manifests) if f.id == RULE)
        assert f.level == Level.PASS and f.items == (), (what, details(f))
    assert seen_config_maps >= 2  # the k8s renders' airflow.cfg and pod template were judged
