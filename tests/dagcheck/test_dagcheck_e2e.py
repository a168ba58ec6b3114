"""check-dags on the real images: the classic Airflow 2 DAG on the default Airflow 3 image
(fails, with AIR301's fix), cycles and duplicate DAG ids, the fixed DAG loading and running
to success in the image, and the classic DAG on the Airflow 2.11 image when it exists."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli.checkdags import check_dags_cmd
from hardflow.dagcheck.loader import CONTAINER_DAGS
from hardflow.run import engine as eng
from hardflow.run.engine import BindMount, Engine, RunOptions
from helpers.classic_dag import CLASSIC_DAG
from helpers.loaded_images import LoadedImage

pytestmark = [pytest.mark.podman, pytest.mark.slow]

AIRFLOW2_IMAGE = "localhost/hardflow/airflow:2.11.2"

CYCLE_DAG = """\
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG("cyclic", start_date=datetime(2024, 1, 1), schedule=None):
    a = EmptyOperator(task_id="a")
    b = EmptyOperator(task_id="b")
    a >> b >> a
"""
TWIN_DAG = """\
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG("twin", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="only")
"""


@pytest.fixture(scope="module")
def default_image(loaded_image: LoadedImage) -> str:
    """The default image's reference, built and loaded unless podman already has it."""
    return loaded_image("default")


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    folder.chmod(0o755)
    return folder


def _check(folder: Path, image: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        check_dags_cmd, [str(folder), "--image", image, "--engine", "podman", "--json", *extra]
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def _rules(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for f in doc["findings"]:
        found.setdefault(f["rule"], []).append(f)
    return found


def test_classic_dag_fails_on_airflow3_with_the_fix(default_image: str, tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"example.py": CLASSIC_DAG})
    code, doc = _check(folder, default_image)
    assert code == 1
    assert doc["airflow_version"].startswith("3.") and doc["airflow3_rules"] is True
    assert doc["dags"] == []
    rules = _rules(doc)
    [load] = rules["import-error"]
    assert (load["file"], load["line"]) == ("example.py", 4)
    assert "schedule_interval" in load["message"]
    [air301] = rules["AIR301"]
    assert (air301["file"], air301["line"], air301["column"]) == ("example.py", 4, 52)
    assert air301["severity"] == "error"
    assert air301["change"] == "`schedule_interval` → `schedule`"
    assert {f["severity"] for f in rules["AIR311"] + rules["AIR312"]} == {"warning"}
    text = CliRunner().invoke(check_dags_cmd, [str(folder), "--image", default_image])
    assert text.exit_code == 1
    assert "`schedule_interval` → `schedule`" in text.stdout


def test_cycle_and_duplicate_dag_id(default_image: str, tmp_path: Path) -> None:
    folder = _folder(
        tmp_path, {"cycle.py": CYCLE_DAG, "twin_a.py": TWIN_DAG, "twin_b.py": TWIN_DAG}
    )
    code, doc = _check(folder, default_image)
    assert code == 1
    rules = _rules(doc)
    [cycle] = rules["cycle"]
    assert cycle["file"] == "cycle.py" and "cyclic" in cycle["message"]
    [dup] = rules["duplicate-dag-id"]
    other = ({"twin_a.py", "twin_b.py"} - {dup["file"]}).pop()
    assert "twin" in dup["message"] and other in dup["message"]
    assert [d["dag_id"] for d in doc["dags"]] == ["twin"]
    assert not [f for f in doc["findings"] if f["rule"].startswith("AIR")]


def _dags_test(engine: Engine, image: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """`airflow dags test example 2024-01-01` in the image, as hardened as check-dags' load."""
    opts = RunOptions(
        image=image,
        name=f"hf-dagcheck-test-{secrets.token_hex(4)}",
        command=("airflow", "dags", "test", "example", "2024-01-01"),
        user="50000:0",
        tmpfs=("/tmp", "/opt/airflow"),
        binds=(BindMount(folder, CONTAINER_DAGS, read_only=True),),
        env={"_AIRFLOW_DB_MIGRATE": "true"},
        detach=False,
        remove=True,
        network="none",
    )
    env = dict(os.environ)
    env.update(opts.env)
    return subprocess.run(
        eng.run_argv(engine, opts), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", timeout=600, check=False,
    )  # fmt: skip


def test_fixed_dag_loads_and_runs(podman: Engine, default_image: str, tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"example.py": CLASSIC_DAG})
    code, doc = _check(folder, default_image, "--fix")
    assert code == 0, doc
    assert doc["fixed"] >= 1 and doc["errors"] == 0
    assert doc["dags"] == [{"dag_id": "example", "file": "example.py", "tasks": 1}]
    assert "schedule='@daily'" in (folder / "example.py").read_text()
    again, _ = _check(folder, default_image)
    assert again == 0
    proc = _dags_test(podman, default_image, folder)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "state=success" in proc.stdout, proc.stdout[-3000:]
    assert "hello" in proc.stdout


def test_classic_dag_loads_on_airflow2(loaded_image: LoadedImage, tmp_path: Path) -> None:
    assert loaded_image("airflow2") == AIRFLOW2_IMAGE
    folder = _folder(tmp_path, {"example.py": CLASSIC_DAG})
    code, doc = _check(folder, AIRFLOW2_IMAGE)
    assert code == 0, doc
    assert doc["airflow_version"].startswith("2.") and doc["airflow3_rules"] is False
    assert doc["errors"] == 0
    assert not [f for f in doc["findings"] if f["source"] == "ruff"]
    assert doc["dags"] == [{"dag_id": "example", "file": "example.py", "tasks": 1}]

