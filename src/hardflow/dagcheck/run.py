"""``hardflow check-dags``: load a DAG folder inside the target image, add ruff's AIR3 findings.

The in-image load runs with the hardening of ``hardflow run`` and less: read-only root, every
capability dropped, no privilege escalation, a non-root UID with GID 0, tmpfs ``/tmp`` and
AIRFLOW_HOME (nothing persists, no volume), no network at all, the DAG folder mounted
read-only, the image's entrypoint replaced by its ``python`` running the loader, which is
bind-mounted read-only into the tmpfs ``/tmp``: the loader need not be in the image. DagBag
needs no metadata database; the SQLite URL points into the tmpfs should a code path open one
anyway. The interpreter runs without ``-I``: images that install Airflow in a user site or
through ``PYTHONPATH`` must keep them.

:func:`check_built_image` checks a fresh build's baked DAG folder (``hardflow build``): the
loader reads the DAG and plugin folders the image itself holds (nothing is mounted but the
loader), with AIRFLOW_HOME in the tmpfs ``/tmp``. With podman the build's OCI layout is loaded
under a name of its own (see :func:`_in_engine`), never the user's NAME:TAG; docker loads the
docker-archive, which names the image NAME:TAG as ``build --load`` would.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
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
    # The DAG and plugin folders the image holds itself (a build's baked folders): nothing
    # is mounted, ``folder`` is the host copy findings are reported against (ruff reads it).
    image_dags: str | None = None
    image_plugins: str | None = None

    @property
    def container_dags(self) -> str:
        return self.image_dags or CONTAINER_DAGS


BUILT_HOME = "/tmp"  # AIRFLOW_HOME of a built image's check: the tmpfs, the image's own untouched


def loader_env(req: CheckRequest | None = None) -> dict[str, str]:
    if req is not None and req.image_dags:
        env = {
            "AIRFLOW_HOME": BUILT_HOME,
            "AIRFLOW__CORE__DAGS_FOLDER": req.image_dags,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        if req.image_plugins:
            env["AIRFLOW__CORE__PLUGINS_FOLDER"] = req.image_plugins
        return {**loader_env(), **env}
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


def loader_run_options(req: CheckRequest, folder: Path, name: str, loader: Path) -> RunOptions:
    """The hardened, network-less, attached, self-removing run of the loader (pure)."""
    in_image = bool(req.image_dags)
    binds: tuple[BindMount, ...] = (BindMount(loader, CONTAINER_LOADER, read_only=True),)
    if not in_image:
        binds = (BindMount(folder, CONTAINER_DAGS, read_only=True), *binds)
    return RunOptions(
        image=req.image,
        name=name,
        command=(CONTAINER_LOADER, req.container_dags),
        entrypoint=req.python,
        user=req.user,
        read_only=True,
        cap_drop_all=True,
        no_new_privileges=True,
        tmpfs=("/tmp",) if in_image else ("/tmp", AIRFLOW_HOME),
        binds=binds,
        env=loader_env(req),
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
    return parse_load_report(extract_report(stdout, req.image), req.image, req.container_dags)


def _air_count(diagnostics: list[dict[str, Any]]) -> int:
    return sum(1 for d in diagnostics if str(d.get("code") or "").startswith("AIR"))


def check_dags(engine: Engine, req: CheckRequest, on_progress: Progress = _quiet) -> CheckReport:
    """Load ``req.folder`` in ``req.image``, add ruff's AIR3 findings for Airflow 3 targets."""
    folder = preflight(engine, req)
    on_progress(f"loading {req.folder} with Airflow's DagBag in {req.image}")
    loaded = load_in_image(engine, req, folder)
    air3 = (
        req.airflow3_rules
        if req.airflow3_rules is not None
        else is_airflow3(loaded.airflow_version)
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


@dataclass(frozen=True)
class BuiltImage:
    """A fresh build whose baked DAG folder is to be checked in the image itself."""

    layout: Path  # the build's OCI layout (podman loads it)
    archive: Path | None  # its docker-archive (docker loads it)
    reference: str  # NAME:TAG of the image
    dags: Path  # the baked DAG folder on the host: findings are relative to it
    image_dags: str  # the same folder in the image
    image_plugins: str  # the plugin folder in the image (baked or not)


def _check_dir() -> Path:
    """This user's folder for the links podman loads checked images through (0700, owned)."""
    base = Path(tempfile.gettempdir())
    if not re.fullmatch(r"[a-z0-9][a-z0-9/._-]*", str(base).lstrip("/")):
        base = Path("/tmp")  # podman names the image after the path: lower case only
    path = base / f"hardflow-check-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise DagCheckInputError(
            f"{path} is not a private folder of this user (uid {os.getuid()}): the DAG check "
            "loads images through links in it",
            hint="remove it, or point TMPDIR at another folder",
        )
    return path


def check_name(reference: str) -> str:
    """The file name of the link a checked image is loaded through (one per NAME:TAG)."""
    return re.sub(r"[^a-z0-9]+", "-", reference.lower()).strip("-") or "image"


@contextlib.contextmanager
def _in_engine(engine: Engine, built: BuiltImage, on_progress: Progress) -> Iterator[str]:
    """The image's reference in the engine for the duration of the block.

    podman: the layout is loaded through a link ``$TMPDIR/hardflow-check-UID/NAME-TAG``, so
    the image is named after that path (never the user's NAME:TAG); layers already in the
    store are not copied again. The image checked before under that name is removed when
    nothing else names it: its layers shared with the new image stay, so the next check
    loads only what changed. docker: the docker-archive is loaded (named NAME:TAG).
    """
    if engine.name == "docker":
        if built.archive is None:
            raise DagCheckInputError(
                "docker needs the build's docker-archive to check its DAGs, and there is none",
                hint="skip the check with --no-check-dags",
            )
        on_progress("loading the image into docker")
        yield eng.load_archive(engine, built.archive)
        return
    folder = _check_dir()
    link = folder / check_name(built.reference)
    with open(folder / ".lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # one check per NAME:TAG at a time
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(built.layout.resolve(), target_is_directory=True)
        before = eng.image_info(engine, f"localhost{link}")  # podman's name for the link
        on_progress("loading the image into podman (only new layers are copied)")
        ref = eng.load_layout(engine, link)
        after = eng.image_info(engine, ref)
        old, new = (before or ("",))[0], (after or ("",))[0]
        if old and old != new and eng.image_info(engine, old) == (old, ()):
            # the previous check's image, named by nothing now (a container keeps it)
            with contextlib.suppress(EngineError):
                eng.remove_image(engine, old)
        yield ref


def check_built_image(
    engine: Engine,
    built: BuiltImage,
    python: str = DEFAULT_PYTHON,
    on_progress: Progress = _quiet,
) -> CheckReport:
    """Load the baked DAG folder with Airflow's DagBag inside the freshly built image (and,
    for Airflow 3, add ruff's AIR3 findings on the host copy), as ``check-dags`` would."""
    with _in_engine(engine, built, on_progress) as ref:
        req = CheckRequest(
            folder=built.dags,
            image=ref,
            python=python,
            image_dags=built.image_dags,
            image_plugins=built.image_plugins,
        )
        return check_dags(engine, req, on_progress)
