"""check-dags of a fresh build (``hardflow build``): the loader reads the folders the image
holds itself, nothing of the host is mounted but the loader, and the image is named apart from
the user's NAME:TAG."""

from __future__ import annotations

from pathlib import Path

from hardflow.dagcheck import run
from hardflow.dagcheck.loader import CONTAINER_LOADER, parse_load_report
from hardflow.run import engine as eng
from hardflow.run.engine import Engine

ENGINE = Engine("podman", "/usr/bin/podman")


def test_a_built_image_is_checked_with_its_own_folders(tmp_path: Path) -> None:
    req = run.CheckRequest(folder=tmp_path, image="img:1", image_dags="/home/af/dags",
                           image_plugins="/home/af/plugins")  # fmt: skip
    loader = tmp_path / "loader.py"
    opts = run.loader_run_options(req, tmp_path, "hf-dc-test", loader)
    argv = eng.run_argv(ENGINE, opts)
    for flag in ("--read-only", "--cap-drop=ALL", "--network=none", "--rm"):
        assert flag in argv
    tmpfs = [argv[i + 1].split(":")[0] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert tmpfs == ["/tmp"]  # the image's AIRFLOW_HOME (and its baked folders) stay visible
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--mount"]
    assert mounts == [f"type=bind,source={loader},target={CONTAINER_LOADER},readonly=true"]
    assert argv[-3:] == ["img:1", CONTAINER_LOADER, "/home/af/dags"]
    assert opts.env["AIRFLOW__CORE__DAGS_FOLDER"] == "/home/af/dags"
    assert opts.env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/home/af/plugins"
    assert opts.env["AIRFLOW_HOME"] == "/tmp"
    assert opts.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:////tmp/")


def test_findings_are_relative_to_the_image_folder() -> None:
    doc = {
        "schema": 1, "airflow_version": "3.3.2", "dags": [],
        "import_errors": [{"file": "/home/af/dags/sub/x.py",
                           "message": "ModuleNotFoundError: No module named 'nope'"}],
    }  # fmt: skip
    report = parse_load_report(doc, "img:1", "/home/af/dags")
    (finding,) = report.findings
    assert (finding.file, finding.rule) == ("sub/x.py", "import-error")


def test_check_names_are_image_path_components() -> None:
    assert run.check_name("hardflow/extend-e2e:1") == "hardflow-extend-e2e-1"
    assert run.check_name("acme/Airflow:V1.2__x") == "acme-airflow-v1-2-x"
    for name in ("hardflow/extend-e2e:1", "x_y:z", "--:--"):
        eng.check_image_ref(f"localhost/tmp/hardflow-check-0/{run.check_name(name)}")
