"""``hardflow demo``: build the default image when needed, run it hardened, run the example DAG.

The one flow that spans the build and the run, so it sits above both (``run/`` never reaches
back into the build).

The steps are separate functions so that the CLI can show each with its own display (progress
bars while building, a status line while Airflow starts): rich allows one live display at a
time. :func:`needs_build` and :func:`build_and_load` make sure the engine holds an image built
from the current spec and lock; :func:`run_example` starts it and drives one DAG run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardflow.contract import API_PORT, local_reference
from hardflow.errors import EngineError
from hardflow.lock.model import Lock, read_lock
from hardflow.progress import Progress
from hardflow.run.airflow_api import DagRunResult, TaskResult, trigger_dag
from hardflow.run.engine import Engine, container_exists, image_exists, load_archive
from hardflow.run.runner import RunRequest, RunResult, start, stop_container
from hardflow.spec import ImageSpec

EXAMPLE_DAG = "example"
"""The DAG every hardflow image ships in its DAG folder (``hardflow/examples/example_dag.py``)."""
GREETING = "hello"
"""What the example DAG's task echoes: its log must show it for the demo to pass."""
DAG_TIMEOUT = 600.0
BUILD_SUMMARY = "build.json"

Say = Callable[[str], None]
"""One progress message at a time, as the runner reports them."""


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class DemoImage:
    """The image the demo runs: a spec, its lock, where its build goes and its engine name."""

    spec: ImageSpec
    lock: Lock
    lock_path: Path
    out_dir: Path

    @classmethod
    def load(cls, spec: ImageSpec, lock_path: Path, out_dir: Path) -> DemoImage:
        return cls(spec, read_lock(lock_path), lock_path, out_dir)

    @property
    def reference(self) -> str:
        return local_reference(self.spec.reference)


def _previous_build(summary_path: Path) -> Mapping[str, Any]:
    """The summary an earlier build left in the output directory; {} when none is usable
    (a missing or damaged summary only means the image is built again)."""
    try:
        data = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build_is_current(image: DemoImage) -> bool:
    """Whether the output directory holds a build of exactly this spec and lock."""
    previous = _previous_build(image.out_dir / BUILD_SUMMARY)
    return (
        previous.get("spec_checksum") == image.spec.checksum()
        and previous.get("lock_checksum") == image.lock.spec_checksum
    )


def needs_build(engine: Engine, image: DemoImage) -> bool:
    """A stale (or missing) build, or an engine that does not hold the image, means a build."""
    return not build_is_current(image) or not image_exists(engine, image.reference)


def build_and_load(engine: Engine, image: DemoImage, progress: Progress) -> str:
    """Build the image into its output directory, load it into the engine; its digest."""
    from hardflow.build.pipeline import BuildOptions, build
    from hardflow.lock.fetch import Cache

    options = BuildOptions(image.out_dir, Cache())
    result = build(image.spec, image.lock, image.lock_path, options, progress)
    if result.image.archive_path is None:
        raise EngineError(f"{image.out_dir}: the build wrote no docker-archive to load")
    load_archive(engine, result.image.archive_path)
    return result.image.manifest_digest


def greeting(task: TaskResult) -> str:
    """The line of a task's log that shows the greeting; the echo's own output over the line
    that logs the command, "" when the log has neither."""
    lines = [line for line in task.log.splitlines() if GREETING in line]
    said = [line for line in lines if "echo" not in line]
    return (said or lines or [""])[0].strip()


@dataclass(frozen=True)
class DemoResult:
    started: RunResult
    run: DagRunResult

    @property
    def log_has_greeting(self) -> bool:
        return any(GREETING in task.log for task in self.run.tasks)

    @property
    def ok(self) -> bool:
        return self.run.ok and self.log_has_greeting

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.started.url,
            "seconds_to_healthy": round(self.started.seconds_to_healthy, 2),
            "dag_id": self.run.dag_id,
            "run_id": self.run.run_id,
            "state": self.run.state,
            "seconds_to_success": round(self.run.seconds, 2),
            "log_has_hello": self.log_has_greeting,
        }


def run_example(
    engine: Engine,
    reference: str,
    *,
    name: str,
    port: int = API_PORT,
    keep: bool = True,
    dag_id: str = EXAMPLE_DAG,
    timeout: float = DAG_TIMEOUT,
    on_progress: Say = _quiet,
) -> DemoResult:
    """Start ``reference`` as ``name`` (replacing an earlier demo container and its volume),
    run ``dag_id`` once and fetch its task logs; stop and remove it afterwards unless ``keep``.

    A DAG run that fails is returned (see :attr:`DemoResult.ok`); a container that does not
    become healthy, or a run that does not finish within ``timeout``, raises EngineError and
    leaves the container for inspection.
    """
    if container_exists(engine, name):
        stop_container(engine, name, remove=True, remove_volume=True)
    started = start(engine, RunRequest(image=reference, port=port, name=name), on_progress)
    if started.password is None:
        raise EngineError(f"{name}: no generated admin password found")
    run = trigger_dag(
        started.url, started.username, started.password, dag_id, timeout, on_progress=on_progress
    )
    if not keep:
        stop_container(engine, name, remove=True, remove_volume=True)
    return DemoResult(started, run)
