"""End to end: a spec that extends the default image, adds a provider and a library, and bakes a
DAG folder and a plugin folder (``tests/e2e/fixtures/extend``).

``hardflow build`` makes the image and loads the baked DAGs in it (check-dags); the image runs
hardened (read-only root, every capability dropped, no new privileges, an arbitrary UID in GID
0, no host folder mounted) and the DAG's task shows that the library and the plugin module were
used. A DAG edit then rebuilds the baked layer alone, and a DAG that does not load fails the
build.

The fixture's lock is committed (CI resolves nothing). Its spec checksum covers the flattened
spec, the default spec included: when the default spec changes,
``test_the_committed_lock_fits_the_fixture_spec`` fails and says how to make it again::

    .venv/bin/python tests/e2e/test_e2e_extend.py --relock
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardflow.lock.model import read_lock
from hardflow.run import engine as eng
from hardflow.run.airflow_api import trigger_dag
from hardflow.run.engine import Engine
from hardflow.run.runner import RunRequest, start, stop_container
from hardflow.spec import load_spec, resolve_spec_arg

FIXTURE = Path(__file__).parent / "fixtures" / "extend"
SPEC = FIXTURE / "extend.toml"
LOCK = FIXTURE / "extend.lock.json"
DAG_FILE = "dags/extend_e2e.py"
RELOCK = "python tests/e2e/test_e2e_extend.py --relock"


def relock() -> Path:
    """Make the fixture's lock again, keeping the default lock's pins where they fit (so the
    image shares its wheel layers with the default image's)."""
    from hardflow.lock.resolve import make_lock

    _, default_lock = resolve_spec_arg(None)
    LOCK.unlink(missing_ok=True)
    make_lock(load_spec(SPEC), LOCK, prefer=read_lock(default_lock))
    return LOCK


def test_the_committed_lock_fits_the_fixture_spec() -> None:
    lock = read_lock(LOCK)
    assert lock.spec_checksum == load_spec(SPEC).lock_checksum(), (
        f"{LOCK} no longer fits {SPEC}: its checksum covers the flattened spec, so a change "
        f"to the default spec needs a new fixture lock: run `{RELOCK}` and commit it"
    )
    names = {w.name for w in lock.wheels}
    assert {"apache-airflow-providers-http", "texttable"} <= names


def hardflow_build(spec: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any], str, float]:
    """``hardflow build --json`` as a user runs it: (exit status, summary, stderr, seconds)."""
    t = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hardflow.cli", "build", "--spec", str(spec), "--out", str(out),
         "--json", *extra],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - t
    summary = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, summary, done.stderr, seconds


def layer_digests(summary: dict[str, Any]) -> dict[str, str]:
    return {layer["name"]: layer["digest"] for layer in summary["layers"]}


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fixture spec built by the CLI, its baked DAGs checked in the new image."""
    out = tmp_path_factory.mktemp("extend") / "out"
    code, summary, stderr, seconds = hardflow_build(SPEC, out)
    assert code == 0, stderr[-4000:]
    print(f"first build: {seconds:.1f}s, built {summary['layers_built']}")
    return summary


@pytest.fixture(scope="module")
def image_ref(first: dict[str, Any], podman: Engine) -> Iterator[str]:
    ref = eng.load_archive(podman, Path(first["docker_archive"]))
    yield ref
    try:
        eng.remove_image(podman, ref)
    except eng.EngineError as exc:  # a container of another run still uses it
        print(f"left {ref} in podman: {exc.message}")


@pytest.mark.network
@pytest.mark.podman
@pytest.mark.slow
def test_the_build_checked_the_baked_dags_in_the_image(first: dict[str, Any]) -> None:
    names = [layer["name"] for layer in first["layers"]]
    assert names[-2:] == ["hardflow", "baked"]
    check = first["check_dags"]
    assert check is not None and check["errors"] == 0, check
    assert [d["dag_id"] for d in check["dags"]] == ["extend_e2e"]
    print(f"check-dags during the build: {first['timings_seconds']['check_dags']}s")


@pytest.mark.network
@pytest.mark.podman
@pytest.mark.slow
def test_the_dag_runs_hardened_with_the_library_and_the_plugin(
    podman: Engine, image_ref: str
) -> None:
    from helpers.podman import free_port  # here: the module also runs as a script (--relock)

    name = f"hf-h3-extend-{uuid.uuid4().hex[:6]}"
    # run_options: --read-only, --cap-drop=ALL, no-new-privileges, no host folder (dags=None)
    req = RunRequest(image=image_ref, port=free_port(), name=name, user="1234567:0",
                     detach=True)  # fmt: skip
    try:
        result = start(podman, req, print)
        assert result.password
        run = trigger_dag(result.url, result.username, result.password, "extend_e2e", 600)
        assert run.ok, run
        log = "\n".join(t.log for t in run.tasks)
        assert "hello from the baked plugin" in log  # the plugin module
        assert "| provider | HttpOperator" in log  # the provider, in texttable's table
        assert "+==========+" in log  # texttable's header rule: the library was used
        inspect = subprocess.run(
            ["podman", "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}} "
             "{{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{json .Mounts}}", name],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert inspect.startswith("true ") and "no-new-privileges" in inspect, inspect
        assert '"Type":"bind"' not in inspect.replace(" ", ""), inspect  # nothing from the host
    finally:
        if eng.container_exists(podman, name):
            stop_container(podman, name, remove=True, remove_volume=True)


def _copy_fixture(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest)
    return dest / SPEC.name


@pytest.mark.network
@pytest.mark.podman
@pytest.mark.slow
def test_a_dag_edit_rebuilds_the_baked_layer_alone(first: dict[str, Any], tmp_path: Path) -> None:
    spec = _copy_fixture(tmp_path / "copy")
    dag = spec.parent / DAG_FILE
    # a new edit every run: the same edit of an earlier run would find its layer in the cache
    edit = f'tags=["edited-{uuid.uuid4().hex[:8]}"]'
    dag.write_text(dag.read_text().replace('tags=["hardflow", "e2e"]', edit))
    assert edit in dag.read_text()
    code, again, stderr, seconds = hardflow_build(spec, tmp_path / "out")
    assert code == 0, stderr[-4000:]
    before, after = layer_digests(first), layer_digests(again)
    assert list(before) == list(after)
    assert [n for n in before if before[n] != after[n]] == ["baked"]
    assert again["layers_built"] == ["baked"]
    assert again["manifest_digest"] != first["manifest_digest"]
    code, unchecked, stderr, fast = hardflow_build(spec, tmp_path / "out2", "--no-check-dags")
    assert code == 0 and unchecked["check_dags"] is None, stderr[-4000:]
    assert unchecked["manifest_digest"] == again["manifest_digest"]
    print(
        f"DAG-edit rebuild: {seconds:.1f}s with check-dags "
        f"(check {again['timings_seconds']['check_dags']}s, pipeline "
        f"{again['timings_seconds']['total']}s, supply chain "
        f"{again['timings_seconds']['supply_chain']}s); warm rebuild without the check "
        f"{fast:.1f}s"
    )


@pytest.mark.network
@pytest.mark.podman
@pytest.mark.slow
def test_a_dag_that_does_not_load_fails_the_build(first: dict[str, Any], tmp_path: Path) -> None:
    spec = _copy_fixture(tmp_path / "copy")
    # DagBag only imports files that mention "airflow" and "dag" (its safe mode)
    (spec.parent / "dags" / "broken.py").write_text(
        "from airflow.sdk import DAG\nimport not_in_the_image_anywhere\n"
    )
    code, summary, stderr, _ = hardflow_build(spec, tmp_path / "out")
    assert code == 1, stderr[-4000:]
    errors = [f for f in summary["check_dags"]["findings"] if f["severity"] == "error"]
    assert [(f["file"], f["rule"]) for f in errors] == [("broken.py", "import-error")]
    assert "not_in_the_image_anywhere" in errors[0]["message"]


if __name__ == "__main__":
    if sys.argv[1:] == ["--relock"]:
        print(f"wrote {relock()}")
    else:
        sys.exit(f"usage: {RELOCK}")
