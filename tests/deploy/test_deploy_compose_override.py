"""`hardflow deploy compose --official-override` over the official Airflow 3.3 docker-compose.yaml.

The official file (a transcription in fixtures/, naming its source) is the user's world: it stays
as it is, and compose merges our override over it. ``podman-compose config`` does that merge
(no podman needed), and every service must come out on hardflow's images, read-only, with a
health check the image has (no curl, no shell), and airflow-init on the image's entrypoint. The
whole project running under podman-compose is test_deploy_e2e_official_compose.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli.deploy import deploy
from hardflow.contract import HEALTH_COMMAND
from hardflow.deploy.compose_official import (
    AIRFLOW_SERVICES,
    OVERRIDE_FILE,
    render_official_override,
    write_official_override,
)
from hardflow.deploy.topology import Images
from hardflow.spec import load_embedded

yaml = pytest.importorskip("yaml")

OFFICIAL = Path(__file__).parent / "fixtures" / "official-docker-compose-airflow-3.3.yaml"
IMAGES = Images("localhost/hf/airflow:3.3.2", "localhost/hf/postgres:17", "localhost/hf/redis:8")
OUR_HEALTH = {
    "postgres": ["CMD", "/usr/lib/postgresql/17/bin/pg_isready", "--host=/tmp", "--quiet"],
    "redis": ["CMD", "/usr/bin/bash", "/usr/local/bin/hardflow-redis-health"],
    **{name: ["CMD", *HEALTH_COMMAND, role] for name, role in AIRFLOW_SERVICES.items()},
}


def official_services() -> dict[str, Any]:
    return yaml.safe_load(OFFICIAL.read_text())["services"]  # type: ignore[no-any-return]


def merged(podman_compose: str, directory: Path) -> dict[str, Any]:
    """What compose runs: the official file with the override merged over it."""
    done = subprocess.run(
        [podman_compose, "--profile", "debug", "--profile", "flower",
         "-f", "docker-compose.yaml", "-f", OVERRIDE_FILE, "config"],
        cwd=directory, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return yaml.safe_load(done.stdout)["services"]  # type: ignore[no-any-return]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(OFFICIAL, tmp_path / "docker-compose.yaml")
    (tmp_path / ".env").write_text("AIRFLOW_UID=50000\n")  # the official guide's .env
    result = write_official_override(IMAGES, tmp_path)
    assert result.uncovered == ()
    return tmp_path


def test_the_override_covers_every_official_service() -> None:
    override = render_official_override(IMAGES)["services"]
    assert set(override) == set(official_services())


def test_every_service_runs_hardened_on_our_images(podman_compose: str, project: Path) -> None:
    services = merged(podman_compose, project)
    official = official_services()
    assert set(services) == set(official)
    for name, svc in services.items():
        assert svc["healthcheck"]["test"] == OUR_HEALTH[name], name
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert any(t.startswith("/tmp:") for t in svc["tmpfs"]), name
        assert not str(svc["user"]).startswith("0"), (name, svc["user"])
        text = yaml.safe_dump(svc)
        assert "curl" not in text and "CMD-SHELL" not in text, name
        assert svc["image"] in (IMAGES.airflow, IMAGES.postgres, IMAGES.redis), name
    init = services["airflow-init"]
    assert init["entrypoint"] == list(load_embedded("default").entrypoint)
    assert init["command"] == ["airflow", "version"]
    assert init["user"] == "50000:0"  # the official file ran it as root to chown
    # unchanged otherwise: the official settings stay (FAB, migrate and create the user at init)
    env = init["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    assert env["_AIRFLOW_DB_MIGRATE"] == "true" and env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert services["airflow-apiserver"]["command"] == [official["airflow-apiserver"]["command"]]
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {
        "condition": "service_healthy"
    }
    assert "hardflow-redis-data:/data" in services["redis"]["volumes"]
    assert services["redis"]["environment"]["REDIS_ALLOW_EMPTY_PASSWORD"] == "yes"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "airflow"


def test_without_the_override_the_official_file_needs_what_the_image_lacks(
    podman_compose: str, project: Path
) -> None:
    """The fixture is the real problem: curl, shells and root are what the override removes."""
    (project / OVERRIDE_FILE).unlink()
    done = subprocess.run(
        [podman_compose, "-f", "docker-compose.yaml", "config"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    services = yaml.safe_load(done.stdout)["services"]
    assert services["airflow-scheduler"]["healthcheck"]["test"][1] == "curl"
    assert services["airflow-init"]["entrypoint"] in ("/bin/bash", ["/bin/bash"])
    assert services["airflow-init"]["user"] == "0:0"


class OverrideLoader(yaml.SafeLoader):
    """Reads compose's !override tag as {"!override": value}."""


OverrideLoader.add_constructor(
    "!override", lambda loader, node: {"!override": loader.construct_sequence(node)}
)


def test_the_health_tests_replace_rather_than_append(project: Path) -> None:
    """Compose appends lists when merging: a test the official file has is marked !override
    (and one it lacks is not: podman-compose cannot write out an !override of nothing)."""
    ours = yaml.load((project / OVERRIDE_FILE).read_text(), Loader=OverrideLoader)["services"]
    for name, svc in official_services().items():
        test = ours[name]["healthcheck"]["test"]
        if "healthcheck" in svc:
            assert test == {"!override": OUR_HEALTH[name]}, name
        else:
            assert test == OUR_HEALTH[name], name


def test_cli_names_services_it_does_not_cover(tmp_path: Path) -> None:
    official = yaml.safe_load(OFFICIAL.read_text())
    official["services"]["my-extra"] = {"image": "busybox"}
    (tmp_path / "docker-compose.yaml").write_text(yaml.safe_dump(official))
    result = CliRunner().invoke(
        deploy, ["compose", "--official-override", "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"uncovered": [\n    "my-extra"\n  ]' in result.output
    assert (tmp_path / OVERRIDE_FILE).is_file()
    assert not (tmp_path / "secrets").exists()  # nothing but the override is written
