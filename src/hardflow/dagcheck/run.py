"""``hardflow check-dags``: load a DAG folder inside the target image, add ruff's AIR3 findings.

The in-image load runs with the hardening of ``hardflow run`` and less: read-only root, every
capability dropped, no privilege escalation, a non-root UID with GID 0, tmpfs ``/tmp`` and
AIRFLOW_HOME (nothing persists, no volume), no network at all, the DAG folder mounted
read-only, the image's entrypoint replaced by its ``python`` running the loader, which is
bind-mounted read-only into the tmpfs ``/tmp``: the loader need not be in the image. DagBag
needs no metadata database; the SQLite URL points into the tmpfs should a code path open one
anyway. The interpreter runs without ``-I``: images that install Airflow in a user site or
through ``PYTHONPATH`` must keep them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardflow.contract import AIRFLOW_HOME, USER_GID, USER_UID
from hardflow.dagcheck import ruff as ruff_mod
from hardflow.dagcheck.loader import (
    CONTAINER_DAGS,
    CONTAINER_LOADER,
    extract_report,
    loader_path,
    parse_load_report,
)
from hardflow.dagcheck.model import CheckReport, DagCheckInputError, LoadResult, is_airflow3
from hardflow.errors import EngineError
from hardflow.run import engine as eng
from hardflow.run.engine import BindMount, Engine, RunOptions

Progress = Callable[[str], None]

DEFAULT_USER = f"{USER_UID}:{USER_GID}"
DEFAULT_PYTHON = "python"
TRACEBACK_DEPTH = 64


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class CheckRequest:
    folder: Path
    image: str
    python: str = DEFAULT_PYTHON
    airflow3_rules: bool | None = None  # None: when the image's Airflow is 3.x or later
    fix: bool = False
    unsafe_fixes: bool = False
    user: str = DEFAULT_USER


def loader_env() -> dict[str, str]:
    return {
        "AIRFLOW_HOME": AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": CONTAINER_DAGS,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH": str(TRACEBACK_DEPTH),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/hardflow-dagcheck.db",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def container_name() -> str:
    return f"hardflow-dagcheck-{os.getpid()}-{secrets.token_hex(4)}"


def loader_run_options(
    req: CheckRequest, folder: Path, name: str, loader: Path
) -> RunOptions:
    """The hardened, network-less, attached, self-removing run of the loader (pure)."""
    return RunOptions(
        image=req.image,
        name=name,
        command=(CONTAINER_LOADER, CONTAINER_DAGS),
        entrypoint=req.python,
        user=req.user,
        read_only=True,
        cap_drop_all=True,
        no_new_privileges=True,
        tmpfs=("/tmp", AIRFLOW_HOME),
        binds=(
            BindMount(folder, CONTAINER_DAGS, read_only=True),
            BindMount(loader, CONTAINER_LOADER, read_only=True),
        ),
        env=loader_env(),
        labels={"io.hardflow.managed": "true", "io.hardflow.role": "check-dags"},
        detach=False,
        remove=True,
        network="none",
        pids_limit=1024,
        memory="2g",
        workdir="/tmp",
    )


def preflight(engine: Engine, req: CheckRequest) -> Path:
    """The resolved DAG folder; DagCheckInputError when it or the image is not usable."""
    given = req.folder.expanduser()
    if not given.exists():
        raise DagCheckInputError(f"DAG folder {req.folder} does not exist")
    if not given.is_dir():
        raise DagCheckInputError(f"{req.folder} is not a directory: expected a DAG folder")
    folder = given.resolve()
    if "," in str(folder):
        raise DagCheckInputError(f"DAG folder {folder}: a path with ',' cannot be mounted")
    if not eng.image_exists(engine, req.image):
        raise DagCheckInputError(
            f"image {req.image} is not in {engine.name}'s local storage",
            hint="build and load the default image with `hardflow build --load` "
            "(or `--spec NAME`), or load an archive with `podman load -i FILE`",
        )
    return folder


def load_in_image(engine: Engine, req: CheckRequest, folder: Path) -> LoadResult:
    with loader_path() as loader:
        opts = loader_run_options(req, folder, container_name(), loader)
        try:
            stdout = eng.run_container(engine, opts)
        except EngineError as exc:
            if f'"{req.python}": executable file not found' in exc.message:
                raise DagCheckInputError(
                    f"{req.image} has no `{req.python}` on its PATH to run the DAG loader",
                    hint="name the image's Python with --python (e.g. python3)",
                ) from exc
            raise
    return parse_load_report(extract_report(stdout, req.image), req.image)


def _air_count(diagnostics: list[dict[str, Any]]) -> int:
    return sum(1 for d in diagnostics if str(d.get("code") or "").startswith("AIR"))


def check_dags(
    engine: Engine, req: CheckRequest, on_progress: Progress = _quiet
) -> CheckReport:
    """Load ``req.folder`` in ``req.image``, add ruff's AIR3 findings for Airflow 3 targets."""
    folder = preflight(engine, req)
    on_progress(f"loading {req.folder} with Airflow's DagBag in {req.image}")
    loaded = load_in_image(engine, req, folder)
    air3 = req.airflow3_rules if req.airflow3_rules is not None else is_airflow3(
        loaded.airflow_version
    )
    notes: list[str] = []
    if not air3:
        if req.fix:
            notes.append(
                f"--fix did nothing: Airflow {loaded.airflow_version} is not a 3.x target "
                "(force the AIR3 rules with --airflow3-rules)"
            )
        return CheckReport(
            folder=str(req.folder),
            image=req.image,
            airflow_version=loaded.airflow_version,
            dags=loaded.dags,
            findings=loaded.findings,
            airflow3_rules=False,
            notes=tuple(notes),
        )
    ruff = ruff_mod.find_ruff()
    version = ruff_mod.ruff_version(ruff)
    fixed = 0
    if req.fix:
        before = ruff_mod.run_ruff(ruff, folder)
        on_progress("applying ruff's fixes")
        diagnostics = ruff_mod.run_ruff(ruff, folder, fix=True, unsafe_fixes=req.unsafe_fixes)
        fixed = max(0, _air_count(before) - _air_count(diagnostics))
        if fixed:
            on_progress(f"{fixed} fixed; loading {req.folder} again")
            loaded = load_in_image(engine, req, folder)
    else:
        on_progress(f"running ruff {version} --select AIR3 over {req.folder}")
        diagnostics = ruff_mod.run_ruff(ruff, folder)
    air = ruff_mod.diagnostics_to_findings(
        diagnostics, folder, loaded.airflow_version, ruff_mod.read_text_or_none
    )
    return CheckReport(
        folder=str(req.folder),
        image=req.image,
        airflow_version=loaded.airflow_version,
        dags=loaded.dags,
        findings=(*loaded.findings, *air),
        airflow3_rules=True,
        ruff_version=version,
        fixed=fixed,
        notes=tuple(notes),
    )
