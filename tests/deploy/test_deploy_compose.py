"""`hardflow deploy compose`: the rendered project is hardened service by service."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli.deploy import deploy
from hardflow.deploy.compose import render_compose, service_names, write_compose_project
from hardflow.deploy.topology import Images, Topology
from hardflow.errors import HardflowError

yaml = pytest.importorskip("yaml")

IMAGES = Images("localhost/a/airflow:1", "localhost/a/postgres:1", "localhost/a/redis:1")


def render(**kw: Any) -> dict[str, Any]:
    return render_compose(Topology(IMAGES, **kw))


def test_topology_services() -> None:
    doc = render(workers=3)
    assert list(doc["services"]) == [
        "postgres", "redis", "airflow-init", "api-server", "scheduler", "dag-processor",
        "triggerer", "celery-worker-1", "celery-worker-2", "celery-worker-3",
    ]  # fmt: skip
    services = doc["services"]
    assert services["postgres"]["image"] == IMAGES.postgres
    assert services["redis"]["image"] == IMAGES.redis
    assert services["scheduler"]["image"] == IMAGES.airflow
    assert services["celery-worker-2"]["command"] == ["celery-worker"]
    assert services["celery-worker-2"]["hostname"] == "celery-worker-2"
    assert services["airflow-init"]["command"][:2] == ["airflow", "db"]
    assert services["airflow-init"]["restart"].startswith("on-failure")
    assert set(doc["volumes"]) == {"postgres-data", "redis-data", "airflow-logs"}


@pytest.mark.parametrize("name", service_names(Topology(IMAGES, workers=2, metrics=True)))
def test_every_service_is_hardened(name: str) -> None:
    svc = render(workers=2, metrics=True)["services"][name]
    assert svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"]
    assert svc["security_opt"] == ["no-new-privileges:true"]
    uid = int(svc["user"].split(":")[0])
    assert uid != 0
    assert any(t.startswith("/tmp:") for t in svc["tmpfs"])
    test = svc["healthcheck"]["test"]
    # exec form only (no /bin/sh in the images), and never a one-element command: podman 4.3
    # stores a one-element exec test as CMD-SHELL
    assert test[0] == "CMD" and len(test) >= 3
    assert svc["restart"] in ("unless-stopped", "on-failure:5")
    limits = svc["deploy"]["resources"]["limits"]
    assert limits["memory"] and float(limits["cpus"]) > 0 and limits["pids"] > 0
    assert "depends_on" not in svc  # see render_compose: podman --requires breaks restarts
    for port in svc.get("ports", []):
        assert port.startswith("127.0.0.1:")
    assert "privileged" not in svc and "network_mode" not in svc


def test_only_the_api_server_publishes_a_port_on_loopback() -> None:
    services = render(api_port=18080)["services"]
    published = {name: svc["ports"] for name, svc in services.items() if "ports" in svc}
    assert published == {"api-server": ["127.0.0.1:18080:8080"]}


def test_airflow_secrets_come_from_files() -> None:
    doc = render()
    env = doc["services"]["scheduler"]["environment"]
    for var in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_FILE", "AIRFLOW__CELERY__BROKER_URL_FILE",
        "AIRFLOW__CELERY__RESULT_BACKEND_FILE", "AIRFLOW__CORE__FERNET_KEY_FILE",
        "AIRFLOW__API__SECRET_KEY_FILE", "AIRFLOW__API_AUTH__JWT_SECRET_FILE",
    ):  # fmt: skip
        name = env[var].removeprefix("/run/secrets/")
        assert name in doc["secrets"] and name in doc["services"]["scheduler"]["secrets"]
        assert var.removesuffix("_FILE") not in env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
    pg = doc["services"]["postgres"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert doc["services"]["redis"]["secrets"] == ["redis_password"]
    assert all(s["file"].startswith("./secrets/") for s in doc["secrets"].values())


def test_written_project(tmp_path: Path) -> None:
    project = write_compose_project(Topology(IMAGES, workers=2), tmp_path, chown=False)
    text = project.compose_file.read_text()
    assert yaml.safe_load(text) == render(workers=2)
    for path in project.secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() not in text  # no secret value in the compose file
    cfg = tmp_path / "config" / "airflow.cfg"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o644
    assert not project.secrets_reused
    before = (tmp_path / "secrets" / "postgres_password").read_text()
    again = write_compose_project(Topology(IMAGES, workers=2), tmp_path, chown=False)
    assert again.secrets_reused
    assert (tmp_path / "secrets" / "postgres_password").read_text() == before


def test_bad_input_is_a_hardflow_error(tmp_path: Path) -> None:
    with pytest.raises(HardflowError, match="workers"):
        Topology(IMAGES, workers=0)
    with pytest.raises(HardflowError, match="project"):
        Topology(IMAGES, project="Bad Name")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HardflowError, match="expected a directory"):
        write_compose_project(Topology(IMAGES), tmp_path / "file")


def test_cli_never_prints_secrets(tmp_path: Path) -> None:
    out = tmp_path / "c"
    result = CliRunner().invoke(deploy, ["compose", "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "compose.yaml" in result.output
    for path in (out / "secrets").iterdir():
        assert path.read_text() not in result.output
    json_run = CliRunner().invoke(deploy, ["compose", "--out", str(out), "--json"])
    assert '"secrets_reused": true' in json_run.output


def test_passes_the_manifest_audit(tmp_path: Path) -> None:
    audit = pytest.importorskip("hardflow.audit.run")
    from hardflow.audit.model import Level

    project = write_compose_project(Topology(IMAGES, workers=2), tmp_path, chown=False)
    report = audit.audit_manifests([project.compose_file])
    assert not report.fails(Level.WARN)


def test_the_audit_would_catch_a_weakened_service(tmp_path: Path) -> None:
    audit = pytest.importorskip("hardflow.audit.run")
    from hardflow.audit.model import Level
    from hardflow.deploy.yamlout import dump

    doc = render()
    doc["services"]["scheduler"]["read_only"] = False
    doc["services"]["scheduler"]["cap_drop"] = []
    path = tmp_path / "compose.yaml"
    path.write_text(dump(doc))
    assert audit.audit_manifests([path]).fails(Level.WARN)


def test_dags_directory_is_mounted_read_only() -> None:
    services = render(dags_dir="/srv/dags")["services"]
    for name in ("scheduler", "dag-processor", "celery-worker-1", "api-server"):
        assert "/srv/dags:/opt/airflow/dags:ro" in services[name]["volumes"]
    assert not any("dags" in v for v in services["postgres"]["volumes"])
